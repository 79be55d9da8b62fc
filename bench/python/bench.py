"""Benchmark: nclab.metrics on in-memory float32 arrays against two peers, same machine, same
threads, alternating runs: the numpy/scipy reference of bench/analyze/reference.py, and the
accumulate-then-measure path of rhubarbwu/neural-collapse (torch), in its default float32 and
with float64 accumulators.

Usage (from the repository root, with a venv holding numpy, scipy and the nclab wheel, plus
torch and the rhubarbwu snapshot for its rows; bench/python/README.md has the commands):

    python bench/python/bench.py [REPEATS] [N] [D] [K] [--only-rhubarbwu] [--omp-default]

--only-rhubarbwu runs nclab and rhubarbwu (float32) only; --omp-default leaves torch's OpenMP
wait policy as the environment has it instead of PASSIVE (see one_run).

Each run is a fresh process that makes the data (seed 0: Gaussian classes, a classifier near
the class centres, as bench/analyze/make_data.py makes them, in blocks), then times one call
and records the growth of its peak resident memory during that call against the features'
own bytes. Imports, a tiny warm-up call (load the code, start the threads) and the
torch.from_numpy views (no copy) come before the clock.

- nclab: nclab.metrics(features, labels, weight, bias).
- numpy: bench/analyze/reference.py itself, run unchanged on the same arrays (its np.load is
  handed the in-memory arrays instead of reading a file).
- rhubarbwu / rhubarbwu-f64: MeanAccumulator over batches of 10,000 rows -> compute; then one
  pass with CovarAccumulator, VarNormAccumulator and DecAccumulator -> compute; then
  covariance_ratio (pinv), simplex_etf_error(W), self_duality_error(W, M, m_G),
  1 - clf_ncc_agreement, variability_cdnv (tile_size=64, as its example), and
  simplex_etf_error(M, m_G); the library's defaults otherwise (mean of the class means as m_G,
  raw W, no bias). Skipped when torch or neural_collapse is not importable.

The first run of each tool is a check run (not timed in the table): nclab and numpy must give
the same nc1..nc4 and accuracies (1e-9); rhubarbwu's values are printed beside nclab's, with
its quantities recomputed under nclab's conventions where its API allows (untimed), since the
two differ by convention. nclab and numpy must not import torch (checked on every run).
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
TOOLS = ("nclab", "numpy", "rhubarbwu", "rhubarbwu-f64")
OMP_DEFAULT = False  # --omp-default: leave OMP_WAIT_POLICY as the environment has it

ONE_RUN = r"""
import contextlib, io, json, os, runpy, sys, time
import numpy as np
tool, n, d, k, check = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"


def status_kib(key):
    # Peak RSS from /proc/self/status VmHWM, the high-water mark of this process's own memory
    # map, which exec starts afresh. Not ru_maxrss: Linux carries that over from the parent
    # across fork and exec (a parent that imported torch hands every child a ~500 MB peak).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(key + " not in /proc/self/status")


def reset_peak():
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so that no
    # earlier peak (data generation, imports) hides the call's. Where refused, VmHWM keeps the
    # earlier peak and the growth is a lower bound ("reset": false in the output).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


rng = np.random.default_rng(0)
centres = rng.standard_normal((k, d), dtype=np.float32)
labels = rng.integers(0, k, size=n)
# Made in blocks, so that no temporary of the data generation weighs on the memory.
features = np.empty((n, d), dtype=np.float32)
for i in range(0, n, 2048):
    j = min(i + 2048, n)
    features[i:j] = centres[labels[i:j]] + 0.5 * rng.standard_normal((j - i, d), dtype=np.float32)
weight = (centres + 0.1 * rng.standard_normal((k, d), dtype=np.float32)).astype(np.float32)
bias = rng.standard_normal(k).astype(np.float32)
extra = {}
threads = None
if tool == "nclab":
    import nclab
    nclab.metrics(features[:200], labels[:200] % 2)  # load the module, start the threads
    reset = reset_peak()
    before = status_kib("VmHWM:")
    start = time.perf_counter()
    m = nclab.metrics(features, labels, weight, bias)
    wall = time.perf_counter() - start
    after = status_kib("VmHWM:")
    if check:  # untimed: nc4 with b = 0, as rhubarbwu's linear rule has no bias
        extra["nc4_without_bias"] = nclab.metrics(features, labels, weight)["nc4"]
elif tool == "numpy":
    arrays = {"features": features, "labels": labels, "weight": weight, "bias": bias}
    np.load = lambda _path: arrays  # the reference reads these instead of a file
    import scipy.linalg  # imported before the clock, like nclab's module above
    reset = reset_peak()
    before = status_kib("VmHWM:")
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        sys.argv = ["reference.py", "in-memory"]
        runpy.run_path(REFERENCE, run_name="__main__")
    wall = time.perf_counter() - start
    after = status_kib("VmHWM:")
    m = json.loads(out.getvalue())
else:
    import torch
    from neural_collapse.accumulate import (
        CovarAccumulator, DecAccumulator, MeanAccumulator, VarNormAccumulator)
    from neural_collapse.measure import (
        clf_ncc_agreement, covariance_ratio, self_duality_error, simplex_etf_error,
        variability_cdnv)
    # The threads of the other sides: RAYON_NUM_THREADS for nclab, OPENBLAS_NUM_THREADS numpy.
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count()))
    threads = torch.get_num_threads()
    dtype = torch.float64 if tool == "rhubarbwu-f64" else torch.float32
    BATCH = 10_000

    def peer(X, Y, W, k, d):
        # The library's accumulate-then-measure sequence (README, examples/mnist.py): pass 1
        # the class means; pass 2 the within-class covariance, the per-class variances and
        # the classifier/NCC decisions (no FAISS installed: NCC by its torch expansion).
        mean_accum = MeanAccumulator(k, d, "cpu", dtype=dtype)
        for i in range(0, len(X), BATCH):
            mean_accum.accumulate(X[i:i + BATCH], Y[i:i + BATCH])
        means, m_g = mean_accum.compute()
        covar_accum = CovarAccumulator(k, d, "cpu", dtype=dtype, M=means)
        var_norms_accum = VarNormAccumulator(k, d, "cpu", dtype=dtype, M=means)
        dec_accum = DecAccumulator(k, d, "cpu", dtype=dtype, M=means, W=W)
        for i in range(0, len(X), BATCH):
            x, y = X[i:i + BATCH], Y[i:i + BATCH]
            covar_accum.accumulate(x, y, means)
            var_norms_accum.accumulate(x, y, means)
            dec_accum.accumulate(x, y, W, means)
        sigma_w = covar_accum.compute()
        var_norms, _ = var_norms_accum.compute()
        w = W.to(dtype)  # its matmuls need one dtype (a no-op in float32)
        m = {
            "nc1": covariance_ratio(sigma_w, means, m_g),  # "pinv", /K
            "nc2": simplex_etf_error(w),  # raw W
            "nc3": self_duality_error(w, means, m_g),
            "nc4": 1.0 - clf_ncc_agreement(dec_accum),
            "cdnv": variability_cdnv(var_norms, means, tile_size=64),
            "nc2_means": simplex_etf_error(means, m_g),
        }
        return m, (mean_accum, means, sigma_w, w)

    small = torch.from_numpy(features[:40, :8].copy())
    peer(small, torch.arange(40) % 4, torch.from_numpy(weight[:4, :8].copy()), 4, 8)  # warm-up
    X, Y, W = torch.from_numpy(features), torch.from_numpy(labels), torch.from_numpy(weight)
    reset = reset_peak()
    before = status_kib("VmHWM:")
    start = time.perf_counter()
    m, state = peer(X, Y, W, k, d)
    wall = time.perf_counter() - start
    after = status_kib("VmHWM:")
    if check:  # untimed: its quantities under nclab's conventions, where its API allows
        mean_accum, means, sigma_w, w = state
        # The sample mean, nclab's mu_G. Not compute(weighted=True): at this commit it
        # multiplies the (K, 1) counts by the (K, d) means and raises a shape error.
        counts = mean_accum.ns_samples.to(means.dtype)
        m_sample = counts @ means / counts.sum()
        wc = w - w.mean(dim=0)
        extra = {
            "nc1_sample_mean": covariance_ratio(sigma_w, means, m_sample),
            "nc2_centred_w": simplex_etf_error(wc),
            "nc3_sample_mean": self_duality_error(w, means, m_sample),
            "nc3_sample_mean_centred_w": self_duality_error(wc, means, m_sample),
            "nc2_means_sample_mean": simplex_etf_error(means, m_sample),
        }
keys = ["nc1", "nc2", "nc3", "nc4", "accuracy", "ncc_accuracy", "cdnv", "nc2_means"]
print(json.dumps({"wall": wall, "growth": (after - before) * 1024 / features.nbytes,
                  "reset": reset, "torch": "torch" in sys.modules, "threads": threads,
                  "metrics": {key: m[key] for key in keys if key in m}, "extra": extra}))
"""


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def one_run(tool: str, n: int, d: int, k: int, check: bool = False) -> dict:
    code = ONE_RUN.replace("REFERENCE", repr(str(REFERENCE)))
    env = dict(os.environ)
    if tool == "numpy":
        # As bench/analyze/run.sh: these overrides slow a current numpy's OpenBLAS.
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if tool.startswith("rhubarbwu") and not OMP_DEFAULT:
        # torch's OpenMP threads wait for each other by spinning; on a machine whose cores
        # another job also uses, that made its 2-thread SVD (torch.linalg.pinv) 40x slower
        # than on 1 thread (1024 x 1024: 21 s against 0.5 s; 0.8 s with PASSIVE). PASSIVE
        # waits sleeping, which an idle machine barely notices. --omp-default leaves the
        # environment's policy (unset: OpenMP's default) to measure that effect.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load = loadavg()
    out = subprocess.run(
        [sys.executable, "-c", code, tool, str(n), str(d), str(k), "1" if check else "0"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"{tool} run failed (exit {out.returncode}):\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = load
    if tool in ("nclab", "numpy"):
        assert not result["torch"], f"{tool}: torch was imported"
    return result


def have_peer() -> bool:
    probe = "import torch, neural_collapse.measure"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def main() -> None:
    global OMP_DEFAULT
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    assert flags <= {"--omp-default", "--only-rhubarbwu"}, f"unknown flags {flags}"
    OMP_DEFAULT = "--omp-default" in flags
    repeats = int(args[0]) if args else 3
    n, d, k = (int(a) for a in args[1:4]) if len(args) > 3 else (50_000, 2048, 100)
    tools = TOOLS if have_peer() else TOOLS[:2]
    if "--only-rhubarbwu" in flags:  # nclab (the reference of the ratios) and rhubarbwu
        tools = ("nclab", "rhubarbwu")
    print(f"load average (1, 5, 15 min) at start: {loadavg()}", flush=True)
    first = {tool: one_run(tool, n, d, k, check=True) for tool in tools}
    ours = first["nclab"]
    for key, want in first.get("numpy", {"metrics": {}})["metrics"].items():
        have = ours["metrics"][key]
        assert abs(have - want) <= 1e-9 * max(1.0, abs(want)), f"{key}: nclab {have} vs numpy {want}"
    print("check runs (first run of each tool), metric values:")
    for tool, r in first.items():
        print(f"  {tool}: {json.dumps(r['metrics'])}")
        if r["extra"]:
            print(f"  {tool}, untimed variants: {json.dumps(r['extra'])}")
    for tool in (t for t in tools if t.startswith("rhubarbwu")):
        for key, have in first[tool]["metrics"].items():
            want = ours["metrics"][key]
            rel = f" (relative {(have - want) / want:+.2e})" if want else ""
            print(f"  {tool} - nclab, {key}: {have - want:+.3e}{rel}")
    runs = {tool: [] for tool in tools}
    for _ in range(repeats):  # alternating, so a drift in the machine's speed hits every tool
        for tool in tools:
            runs[tool].append(one_run(tool, n, d, k))
            last = runs[tool][-1]
            print(f"  {tool}: {last['wall']:.2f} s, load {last['load']}", flush=True)
    wall = {t: statistics.median(r["wall"] for r in rs) for t, rs in runs.items()}
    growth = {t: statistics.median(r["growth"] for r in rs) for t, rs in runs.items()}
    resets = all(r["reset"] for rs in runs.values() for r in rs)
    torch_threads = runs["rhubarbwu"][0]["threads"] if "rhubarbwu" in runs else None
    policy = os.environ.get("OMP_WAIT_POLICY", "unset" if OMP_DEFAULT else "PASSIVE")
    print(f"N = {n}, d = {d}, K = {k}, float32 in memory; {repeats} alternating runs, medians;"
          f" threads: RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all cores')},"
          f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'all cores')},"
          f" torch {torch_threads} (OMP_WAIT_POLICY {policy});"
          f" peak reset before the call: {resets}")
    print(f"load average at end: {loadavg()}")
    print("| tool | wall s, median (runs) | peak RSS growth during the call / features |")
    print("|---|---|---|")
    for tool, rs in runs.items():
        walls = ", ".join(f"{r['wall']:.2f}" for r in rs)
        growths = ", ".join(f"{r['growth']:.2f}" for r in rs)
        print(f"| {tool} | {wall[tool]:.2f} ({walls}) | {growth[tool]:.2f}x ({growths}) |")
    for tool in tools[1:]:
        rounds = ", ".join(f"{p['wall'] / o['wall']:.1f}" for p, o in zip(runs[tool], runs["nclab"]))
        print(f"nclab vs {tool}: {wall[tool] / wall['nclab']:.1f}x (medians; per round {rounds})")


if __name__ == "__main__":
    main()
