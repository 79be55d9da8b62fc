#!/usr/bin/env bash
# Benchmark: `nclab analyze` against the dense numpy/scipy reference on the same files, same
# machine, same run. Usage (from the repository root):  bash bench/analyze/run.sh [REPEATS]
# Needs bench/.venv with numpy and scipy:  python3 -m venv bench/.venv && bench/.venv/bin/pip install numpy scipy
set -euo pipefail
repeats=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/bench/out/analyze"
# NCLAB_BIN and PYTHON name another binary and interpreter (e.g. on a machine without cargo).
py="${PYTHON:-$root/bench/.venv/bin/python}"
mkdir -p "$out"
if [ -z "${NCLAB_BIN:-}" ]; then
  cargo build --release -p nclab --manifest-path "$root/Cargo.toml" >/dev/null
fi
nclab="${NCLAB_BIN:-$root/target/release/nclab}"
[ -f "$out/features_d2048_k100_random_w.npz" ] || "$py" "$root/bench/analyze/make_data.py" "$out"

# A current numpy is slowed by the OPENBLAS_* overrides some machines here set: unset them
# for the peer only, so it runs its best kernel.
peer() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$root/bench/analyze/reference.py" "$1"; }

# One run of a tool on a file: its JSON to $out/<tool>.json, "wall_s peak_kib" on stdout.
run_tool() {
  if [ "$1" = nclab ]; then
    /usr/bin/time -f "%e %M" -o "$out/time.txt" "$nclab" analyze "$2" --json >"$out/$1.json"
  else
    /usr/bin/time -f "%e %M" -o "$out/time.txt" bash -c "$(declare -f peer); py=$py root=$root peer $2" >"$out/$1.json"
  fi
  cat "$out/time.txt"
}
median() { printf '%s\n' "$@" | sort -n | awk -v n="$#" 'NR == int((n + 1) / 2)'; }

echo "| file | nclab wall s | numpy wall s | speed-up | nclab peak RSS MiB | numpy peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for file in "$out"/features_d512_k10.npz "$out"/features_d2048_k100.npz "$out"/features_d2048_k100_random_w.npz; do
  # The two must agree before their times mean anything (this run also warms the page cache).
  run_tool nclab "$file" >/dev/null
  run_tool numpy "$file" >/dev/null
  "$py" - "$out/nclab.json" "$out/numpy.json" <<'PY'
import json, sys
ours, ref = (json.load(open(p)) for p in sys.argv[1:3])
for key in ref:
    a, b = ours[key], ref[key]
    assert abs(a - b) <= 1e-9 * max(1.0, abs(b)), f"{key}: nclab {a} vs numpy {b}"
PY
  # Alternating, so that a change in the machine's speed during the run hits both tools.
  ours=() peers=()
  for _ in $(seq "$repeats"); do
    ours+=("$(run_tool nclab "$file")")
    peers+=("$(run_tool numpy "$file")")
  done
  read -r our_wall our_kib <<<"$(median "${ours[@]}")"
  read -r peer_wall peer_kib <<<"$(median "${peers[@]}")"
  ratio=$(awk -v a="$peer_wall" -v b="$our_wall" 'BEGIN { printf "%.1fx", a / b }')
  echo "| $(basename "$file") | $our_wall | $peer_wall | $ratio | $((our_kib / 1024)) | $((peer_kib / 1024)) |"
done
