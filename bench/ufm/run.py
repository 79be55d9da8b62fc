#!/usr/bin/env python3
"""Times `nclab ufm` against scipy's L-BFGS-B (scipy_ufm.py) on the same UFM, until the
relative gap to f* is <= 1e-9, two ways: the solve alone (nclab's own `seconds`, the time of
its solver loop; scipy's `minimize` call, timed inside the script) and the whole process,
start-up included (Python interpreter and imports; the nclab binary's start). Each size runs
at every thread count given, the same on both sides: RAYON_NUM_THREADS for nclab,
OPENBLAS_NUM_THREADS (and OMP_/MKL_NUM_THREADS) for numpy/scipy. Runs alternate between the
two tools.

Usage (from the repository root, after `cargo build --release -p nclab`):
    bench/.venv/bin/python bench/ufm/run.py [--repeats 3] [--sizes 10,100,64 100,50,256] [--threads 1 2]
Writes a Markdown table to stdout and the raw runs to bench/out/ufm.json. NCLAB_BIN names
another nclab binary (e.g. a copy built here and run on another machine).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
NCLAB = pathlib.Path(os.environ.get("NCLAB_BIN", ROOT / "target" / "release" / "nclab"))
SCIPY = pathlib.Path(__file__).resolve().parent / "scipy_ufm.py"
LAMBDA = "5e-4"  # the paper's weight decay, on W, H and b
GAP = "1e-9"


def timed(command, threads):
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENBLAS_C")}
    env.pop("OPENBLAS_L2_SIZE", None)
    for name in ("RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    clock = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - clock, json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["10,100,64", "100,50,256"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    rows, raw = [], []
    for size in args.sizes:
        k, n, d = size.split(",")
        problem = ["--classes", k, "--per-class", n, "--dim", d,
                   "--lambda-w", LAMBDA, "--lambda-h", LAMBDA, "--lambda-b", LAMBDA]
        nclab = [str(NCLAB), "ufm", "--loss", "ce", *problem, "--json", "--target-gap", GAP, "--max-iter", "100000"]
        for threads in args.threads:
            runs = {"nclab": [], "scipy": []}
            for _ in range(args.repeats):
                wall, report = timed(nclab, threads)
                runs["nclab"].append({"wall": wall, **report})
                scipy = [sys.executable, str(SCIPY), *problem, "--optimum", repr(report["optimum"]), "--target-gap", GAP]
                wall, report = timed(scipy, threads)
                runs["scipy"].append({"wall": wall, **report})
            raw.append({"size": size, "threads": threads, **runs})
            med = {
                (tool, key): statistics.median(r[key] for r in runs[tool])
                for tool in runs for key in ("seconds", "wall")
            }
            last = {tool: runs[tool][-1] for tool in runs}
            rows.append(
                f"| ({k}, {n}, {d}) | {threads} | {med['nclab', 'seconds']:.3f} s | {med['scipy', 'seconds']:.3f} s | "
                f"**{med['scipy', 'seconds'] / med['nclab', 'seconds']:.1f}x** | {med['nclab', 'wall']:.2f} s | "
                f"{med['scipy', 'wall']:.2f} s | {med['scipy', 'wall'] / med['nclab', 'wall']:.1f}x | "
                f"{last['nclab']['iterations']} / {last['scipy']['iterations']} | "
                f"{last['nclab']['relative_gap']:.1e} / {last['scipy']['relative_gap']:.1e} |"
            )
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ufm.json").write_text(json.dumps(raw, indent=1))
    print("| (K, n, d) | threads | nclab solve | scipy solve | solve speed-up | nclab process | scipy process | process speed-up | iterations (nclab / scipy) | gap (nclab / scipy) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
