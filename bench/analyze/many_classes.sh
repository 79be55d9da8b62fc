#!/usr/bin/env bash
# Many classes: nclab's metrics engine (load-and-compute, crates/nc-math/examples/many_classes.rs)
# against the dense float64 numpy reference (load-and-compute, many_classes.py ref) on the same
# raw float32 files, same machine, same run, 2 threads each. Usage, from the repository root:
#   bash bench/analyze/many_classes.sh            (needs python3 with numpy: PYTHON=...)
# Data goes to ${BENCH_DATA:-/tmp/nclab_bench} (about 1.4 GB), not to the repository.
# Each timed run also reports on stderr the CPU time other processes took during it (from
# /proc/stat): on a shared 2-core machine a busy neighbour halves a side's speed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
py="${PYTHON:-python3}"
data="${BENCH_DATA:-/tmp/nclab_bench}"
export OPENBLAS_NUM_THREADS=2 RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2
cargo build --release -p nc-math --example many_classes --manifest-path "$root/Cargo.toml" >/dev/null 2>&1
bin="$root/target/release/examples/many_classes"
hz=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# timed NAME CMD...: /usr/bin/time's "%e %M %U %S" into $dir/NAME.time, other load into NAME.load.
timed() {
  local name=$1 b0 b1 rc=0
  shift
  b0=$(busy)
  /usr/bin/time -f "%e %M %U %S" -o "$dir/$name.time" "$@" || rc=$?
  b1=$(busy)
  tail -n 1 "$dir/$name.time" | awk -v t=$((b1 - b0)) -v hz="$hz" -v n="$name" \
    '{ printf "%s: %.1f CPU-s taken by other processes during its %.1f s\n", n, t / hz - $3 - $4, $1 }' \
    >"$dir/$name.load"
  return $rc
}
echo "| K | d | N | nclab wall s | numpy wall s | speed-up | nclab peak RSS MiB | numpy peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for shape in "1000 512 200000" "10000 512 500000"; do
  set -- $shape
  dir="$data/k$1_d$2_n$3"
  [ -f "$dir/shape.txt" ] || "$py" "$root/bench/analyze/many_classes.py" gen "$dir" "$1" "$2" "$3" 1
  cat "$dir"/*.f32 >/dev/null  # both read from the page cache
  timed nclab "$bin" "$dir" >"$dir/nclab.json" 2>"$dir/nclab.err"
  # The numpy reference under a 16 GB address-space limit; it reports running out of memory.
  if (ulimit -v $((16 << 20)); timed numpy "$py" "$root/bench/analyze/many_classes.py" ref "$dir" \
        >"$dir/numpy.json" 2>"$dir/numpy.err"); then
    "$py" "$root/bench/analyze/many_classes.py" compare "$dir/nclab.json" "$dir/numpy.json" >&2
    read -r nw nm _ <"$dir/numpy.time"
  else
    nw="out of memory"; nm="-"
    tail -n 3 "$dir/numpy.err" >&2
  fi
  read -r cw cm _ <"$dir/nclab.time"
  ratio=$(awk -v a="$cw" -v b="$nw" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", b / a; else print "-" }')
  echo "| $1 | $2 | $3 | $cw | $nw | $ratio | $((cm / 1024)) | $([ "$nm" = - ] && echo - || echo $((nm / 1024))) |"
  cat "$dir/nclab.err" "$dir"/*.load >&2
done
