#!/usr/bin/env bash
# Many classes: nclab's metrics engine (load-and-compute, crates/nc-math/examples/many_classes.rs)
# against the dense float64 numpy reference (load-and-compute, many_classes.py ref) on the same
# raw float32 files, same machine, same run, 2 threads each. Usage, from the repository root:
#   bash bench/analyze/many_classes.sh            (needs python3 with numpy: PYTHON=...)
# Data goes to ${BENCH_DATA:-/tmp/nclab_bench} (about 1.4 GB), not to the repository.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
py="${PYTHON:-python3}"
data="${BENCH_DATA:-/tmp/nclab_bench}"
export OPENBLAS_NUM_THREADS=2 RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
cargo build --release -p nc-math --example many_classes --manifest-path "$root/Cargo.toml" >/dev/null 2>&1
bin="$root/target/release/examples/many_classes"
echo "| K | d | N | nclab wall s | numpy wall s | speed-up | nclab peak RSS MiB | numpy peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for shape in "1000 512 200000" "10000 512 500000"; do
  set -- $shape
  dir="$data/k$1_d$2_n$3"
  [ -f "$dir/shape.txt" ] || "$py" "$root/bench/analyze/many_classes.py" gen "$dir" "$1" "$2" "$3" 1
  cat "$dir"/*.f32 >/dev/null  # both read from the page cache
  /usr/bin/time -f "%e %M" -o "$dir/nclab.time" "$bin" "$dir" >"$dir/nclab.json" 2>"$dir/nclab.err"
  # The numpy reference under a 16 GB address-space limit; it reports running out of memory.
  if (ulimit -v $((16 << 20)); /usr/bin/time -f "%e %M" -o "$dir/numpy.time" \
        "$py" "$root/bench/analyze/many_classes.py" ref "$dir" >"$dir/numpy.json" 2>"$dir/numpy.err"); then
    "$py" "$root/bench/analyze/many_classes.py" compare "$dir/nclab.json" "$dir/numpy.json" >&2
    read -r nw nm <"$dir/numpy.time"
  else
    nw="out of memory"; nm="-"
  fi
  read -r cw cm <"$dir/nclab.time"
  ratio=$(awk -v a="$cw" -v b="$nw" 'BEGIN { if (b + 0 > 0) printf "%.1fx", b / a; else print "-" }')
  echo "| $1 | $2 | $3 | $cw | $nw | $ratio | $((cm / 1024)) | $([ "$nm" = - ] && echo - || echo $((nm / 1024))) |"
  cat "$dir/nclab.err" >&2
done
