#!/usr/bin/env bash
# Benchmark: `nclab analyze` against the dense numpy/scipy reference on the same files, same
# machine, same run. Usage (from the repository root):  bash bench/analyze/run.sh [REPEATS]
# Needs bench/.venv with numpy and scipy:  python3 -m venv bench/.venv && bench/.venv/bin/pip install numpy scipy
set -euo pipefail
repeats=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/bench/out/analyze"
py="$root/bench/.venv/bin/python"
mkdir -p "$out"
cargo build --release -p nclab --manifest-path "$root/Cargo.toml" >/dev/null
nclab="$root/target/release/nclab"
[ -f "$out/features_d2048_k100.npz" ] || "$py" "$root/bench/analyze/make_data.py" "$out"

# A current numpy is slowed by the OPENBLAS_* overrides some machines here set: unset them
# for the peer only, so it runs its best kernel.
peer() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/analyze/reference.py" "$1"; }

echo "| file | tool | wall s (median of $repeats) | peak RSS MiB |"
echo "|---|---|---|---|"
for file in "$out"/features_d512_k10.npz "$out"/features_d2048_k100.npz; do
  for tool in nclab numpy; do
    times=()
    for _ in $(seq "$repeats"); do
      if [ "$tool" = nclab ]; then
        /usr/bin/time -f "%e %M" -o "$out/time.txt" "$nclab" analyze "$file" --json >"$out/$tool.json"
      else
        /usr/bin/time -f "%e %M" -o "$out/time.txt" bash -c "$(declare -f peer); py=$py root=$root peer $file" >"$out/$tool.json"
      fi
      times+=("$(cat "$out/time.txt")")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk -v n="$repeats" 'NR == int((n + 1) / 2)')
    read -r wall rss_kb <<<"$median"
    echo "| $(basename "$file") | $tool | $wall | $((rss_kb / 1024)) |"
  done
  # The two must agree before their times mean anything.
  "$py" - "$out/nclab.json" "$out/numpy.json" <<'PY'
import json, sys
ours, ref = (json.load(open(p)) for p in sys.argv[1:3])
for key in ref:
    a, b = ours[key], ref[key]
    assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), f"{key}: nclab {a} vs numpy {b}"
PY
done
