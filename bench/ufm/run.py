#!/usr/bin/env python3
"""Times `nclab ufm` against scipy's L-BFGS-B (scipy_ufm.py) on the same UFM: wall-clock
time of the whole process, start-up included, until the relative gap to f* is <= 1e-9.

Usage (from the repository root, after `cargo build --release -p nclab`):
    bench/.venv/bin/python bench/ufm/run.py [--repeats 3] [--sizes 10,100,64 100,50,256]
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


def timed(command):
    clock = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - clock, json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["10,100,64", "100,50,256"])
    args = parser.parse_args()
    rows, raw = [], []
    for size in args.sizes:
        k, n, d = size.split(",")
        problem = ["--classes", k, "--per-class", n, "--dim", d,
                   "--lambda-w", LAMBDA, "--lambda-h", LAMBDA, "--lambda-b", LAMBDA]
        nclab = [str(NCLAB), "ufm", "--loss", "ce", *problem, "--json", "--target-gap", GAP, "--max-iter", "100000"]
        runs = {"nclab": [], "scipy": []}
        for _ in range(args.repeats):
            wall, report = timed(nclab)
            runs["nclab"].append({"wall": wall, **report})
            scipy = [sys.executable, str(SCIPY), *problem, "--optimum", repr(report["optimum"]), "--target-gap", GAP]
            wall, report = timed(scipy)
            runs["scipy"].append({"wall": wall, **report})
        raw.append({"size": size, **runs})
        median = {tool: statistics.median(r["wall"] for r in runs[tool]) for tool in runs}
        last = {tool: runs[tool][-1] for tool in runs}
        rows.append(
            f"| ({k}, {n}, {d}) | {median['nclab']:.2f} s | {last['nclab']['iterations']} | "
            f"{last['nclab']['relative_gap']:.1e} | {median['scipy']:.2f} s | {last['scipy']['iterations']} | "
            f"{last['scipy']['relative_gap']:.1e} | {median['scipy'] / median['nclab']:.1f}x |"
        )
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ufm.json").write_text(json.dumps(raw, indent=1))
    print("| (K, n, d) | nclab wall | nclab iters | nclab gap | scipy wall | scipy iters | scipy gap | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
