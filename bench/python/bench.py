"""Benchmark: nclab.metrics on in-memory float32 arrays against the numpy/scipy reference of
bench/analyze/reference.py, same machine, same threads, alternating runs.

Usage (from the repository root, with bench/.venv holding numpy, scipy and the nclab wheel;
bench/python/README.md has the commands):

    bench/.venv/bin/python bench/python/bench.py [REPEATS] [N] [D] [K]

Each run is a fresh process that makes the data (seed 0: Gaussian classes, a classifier near
the class centres, as bench/analyze/make_data.py makes them, in blocks), then times one call and records the growth
of its peak resident memory during that call (ru_maxrss after - before) against the
features' own bytes. The numpy peer is bench/analyze/reference.py itself, run unchanged on
the same arrays (its np.load is handed the in-memory arrays instead of reading a file). The
first run of each tool checks that both give the same nc1..nc4 and accuracies (1e-9).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "bench" / "analyze" / "reference.py"

ONE_RUN = r"""
import contextlib, io, json, resource, runpy, sys, time
import numpy as np
tool, n, d, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
centres = rng.standard_normal((k, d), dtype=np.float32)
labels = rng.integers(0, k, size=n)
# Made in blocks, so that no temporary raises the peak RSS above the features themselves
# before the measured call (ru_maxrss only ever grows).
features = np.empty((n, d), dtype=np.float32)
for i in range(0, n, 2048):
    j = min(i + 2048, n)
    features[i:j] = centres[labels[i:j]] + 0.5 * rng.standard_normal((j - i, d), dtype=np.float32)
weight = (centres + 0.1 * rng.standard_normal((k, d), dtype=np.float32)).astype(np.float32)
bias = rng.standard_normal(k).astype(np.float32)
if tool == "nclab":
    import nclab
    nclab.metrics(features[:200], labels[:200] % 2)  # load the module, start the threads
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    m = nclab.metrics(features, labels, weight, bias)
    wall = time.perf_counter() - start
else:
    arrays = {"features": features, "labels": labels, "weight": weight, "bias": bias}
    np.load = lambda _path: arrays  # the reference reads these instead of a file
    import scipy.linalg  # imported before the clock, like nclab's module above
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        sys.argv = ["reference.py", "in-memory"]
        runpy.run_path(REFERENCE, run_name="__main__")
    wall = time.perf_counter() - start
    m = json.loads(out.getvalue())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
keys = ["nc1", "nc2", "nc3", "nc4", "accuracy", "ncc_accuracy"]
print(json.dumps({"wall": wall, "growth": (after - before) * 1024 / features.nbytes,
                  "torch": "torch" in sys.modules, "metrics": {key: m[key] for key in keys}}))
"""


def one_run(tool: str, n: int, d: int, k: int) -> dict:
    code = ONE_RUN.replace("REFERENCE", repr(str(REFERENCE)))
    env = dict(os.environ)
    if tool == "numpy":
        # As bench/analyze/run.sh: these overrides slow a current numpy's OpenBLAS.
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run(
        [sys.executable, "-c", code, tool, str(n), str(d), str(k)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n, d, k = (int(a) for a in sys.argv[2:5]) if len(sys.argv) > 4 else (50_000, 2048, 100)
    ours, peers = one_run("nclab", n, d, k), one_run("numpy", n, d, k)
    for key, want in peers["metrics"].items():
        have = ours["metrics"][key]
        assert abs(have - want) <= 1e-9 * max(1.0, abs(want)), f"{key}: nclab {have} vs numpy {want}"
    assert not ours["torch"], "torch was imported"
    runs = {"nclab": [], "numpy": []}
    for _ in range(repeats):  # alternating, so a drift in the machine's speed hits both
        for tool in ("nclab", "numpy"):
            runs[tool].append(one_run(tool, n, d, k))
    wall = {t: statistics.median(r["wall"] for r in rs) for t, rs in runs.items()}
    growth = {t: statistics.median(r["growth"] for r in rs) for t, rs in runs.items()}
    print(f"N = {n}, d = {d}, K = {k}, float32 in memory; {repeats} alternating runs, medians;"
          f" threads: RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all cores')},"
          f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'all cores')}")
    print("| tool | wall s (runs) | peak RSS growth / features |")
    print("|---|---|---|")
    for tool, rs in runs.items():
        walls = ", ".join(f"{r['wall']:.2f}" for r in rs)
        print(f"| {tool} | {wall[tool]:.2f} ({walls}) | {growth[tool]:.2f}x |")
    print(f"speed-up: {wall['numpy'] / wall['nclab']:.1f}x")


if __name__ == "__main__":
    main()
