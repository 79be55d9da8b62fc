"""ImageNet-scale benchmark of `nclab analyze SHARD...` (bench/analyze/README.md, "Scale").

Usage (from the repository root, after `cargo build --release -p nclab`):
    bench/.venv/bin/python bench/analyze/scale.py [DATA_DIR] [--n N] [--shards S] [--skip-numpy]

Writes (once; kept for later runs) S shards of synthetic ImageNet-1k-sized features into
DATA_DIR (default bench/out/scale): N = 1,281,167 rows in total, d = 2048, K = 1,000, float32,
as `np.savez` writes them (stored), each shard with the same classifier (class centres plus
noise, float32). It checks for free disk first. Then, on the same files:

1. the read bound: a plain sequential read of every shard (64 MiB `readinto`), twice; the
   second pass is what nclab sees when the files are in the page cache;
2. the flop bound, at the machine's peak measured here with numpy matrix products: phase 2's
   projections of every centred sample on the K - 1 directions of the class means
   (2 N d (K-1) flops, f64), the nearest-class-centre decisions from them (distances to the K
   means in those coordinates, 2 N (K-1) K, f64), and the classifier's decisions, taken from
   the projections (the route the engine takes on these features, 2 N (K-1) K in f64) or, for
   comparison, as one f32 logit product (2 N d K in f32);
3. `nclab analyze 'DATA_DIR/shard-*.npz' --json`: wall time, and peak RssAnon / RssFile
   sampled from /proc every 50 ms (RssAnon is the process's own memory; RssFile the mapped
   file pages, which belong to the page cache);
4. the dense numpy reference (reference.py's formulas: features in float64, d x d Sigma_W)
   over all shards under an address-space limit of 16 GiB: it runs out of memory, or its time.

Prints one JSON object and a Markdown table row.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
D, K = 2048, 1000


def generate(out: Path, n: int, shards: int) -> list[Path]:
    paths = [out / f"shard-{i:03d}.npz" for i in range(shards)]
    if all(p.exists() for p in paths):
        return paths
    need = n * D * 4 + shards * (K * D * 4 + (n // shards) * 8) + (1 << 30)
    free = shutil.disk_usage(out).free
    if free < need:
        sys.exit(f"{out}: {free / 2**30:.1f} GiB free, the shards need {need / 2**30:.1f} GiB")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((K, D), dtype=np.float32)
    weight = centres + np.float32(0.1) * rng.standard_normal((K, D), dtype=np.float32)
    bias = (0.1 * rng.standard_normal(K)).astype(np.float32)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for i, path in enumerate(paths):
        rows = bounds[i + 1] - bounds[i]
        labels = rng.integers(0, K, size=rows)
        features = centres[labels]
        features += np.float32(0.8) * rng.standard_normal((rows, D), dtype=np.float32)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=features, labels=labels, weight=weight, bias=bias)
        tmp.rename(path)
        print(f"wrote {path}: {rows} rows", file=sys.stderr)
        del features
    return paths


def read_bound(paths: list[Path]) -> tuple[float, float]:
    """(seconds, GB/s) of the second of two sequential reads of every shard."""
    buf = bytearray(64 << 20)
    total = sum(p.stat().st_size for p in paths)
    for _ in range(2):
        start = time.perf_counter()
        for p in paths:
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        seconds = time.perf_counter() - start
    return seconds, total / seconds / 1e9


def peak_gflops(dtype) -> float:
    """Best of 3 products of 3072 x 3072 matrices, in GFLOP/s."""
    a = np.random.default_rng(1).standard_normal((3072, 3072)).astype(dtype)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 3072**3 / (time.perf_counter() - start) / 1e9)
    return best


def run_monitored(cmd: list[str]) -> dict:
    """Runs `cmd`, sampling RssAnon/RssFile (KiB) every 50 ms; wall seconds and peaks."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                key, _, value = line.partition(":")
                if key in peak:
                    peak[key] = max(peak[key], int(value.split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "rc": proc.returncode, "stdout": stdout, "stderr": stderr,
            "peak_rss_anon_mib": peak["RssAnon"] / 1024, "peak_rss_file_mib": peak["RssFile"] / 1024,
            "peak_vm_rss_mib": peak["VmRSS"] / 1024}


DENSE = r"""
import resource, sys, time, numpy as np, scipy.linalg
resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
start = time.perf_counter()
step = "loading"
try:
    parts = [np.load(p) for p in sys.argv[1:]]
    step = "concatenating the features in float64"
    H = np.concatenate([p["features"].astype(np.float64) for p in parts])
    y = np.concatenate([p["labels"] for p in parts])
    W = parts[0]["weight"].astype(np.float64)
    N, d = H.shape
    step = "the class means"
    counts = np.bincount(y, minlength=W.shape[0])
    means = np.zeros((W.shape[0], d)); np.add.at(means, y, H); means /= counts[:, None]
    step = "Sigma_W (d x d)"
    centred = H - means[y]
    sigma_w = centred.T @ centred / N
    M = (means - H.mean(axis=0)).T
    nc1 = float(np.trace(sigma_w @ scipy.linalg.pinv(M @ M.T / W.shape[0])) / W.shape[0])
    print(f"ok {time.perf_counter() - start:.1f} nc1={nc1}")
except MemoryError:
    print(f"MemoryError {time.perf_counter() - start:.1f} at {step}")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=str(ROOT / "bench/out/scale"))
    parser.add_argument("--n", type=int, default=1_281_167)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--nclab", default=str(ROOT / "target/release/nclab"))
    parser.add_argument("--skip-numpy", action="store_true")
    args = parser.parse_args()
    out = Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    paths = generate(out, args.n, args.shards)
    total_bytes = sum(p.stat().st_size for p in paths)
    n = args.n

    read_s, read_gbs = read_bound(paths)
    f64, f32 = peak_gflops(np.float64), peak_gflops(np.float32)
    projections_and_ncc = (2 * n * D * (K - 1) + 2 * n * (K - 1) * K) / (f64 * 1e9)
    flop_s = projections_and_ncc + 2 * n * (K - 1) * K / (f64 * 1e9)
    flop_s_f32_logits = projections_and_ncc + 2 * n * D * K / (f32 * 1e9)

    nclab = run_monitored([args.nclab, "analyze", str(out / "shard-*.npz"), "--json"])
    if nclab["rc"] != 0:
        sys.exit(f"nclab failed: {nclab['stderr']}")
    metrics = json.loads(nclab["stdout"])

    dense = None
    if not args.skip_numpy:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", DENSE, *map(str, paths)],
                              capture_output=True, text=True,
                              env={k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_C")})
        dense = {"wall_s": time.perf_counter() - start, "result": (proc.stdout.strip() or proc.stderr.strip()[-300:])}

    bound = max(read_s, flop_s)
    report = {
        "n": n, "d": D, "k": K, "shards": len(paths), "bytes": total_bytes,
        "read_s": read_s, "read_gb_per_s": read_gbs,
        "peak_gflops_f64": f64, "peak_gflops_f32": f32, "flop_bound_s": flop_s,
        "flop_bound_f32_logits_s": flop_s_f32_logits,
        "nclab_over_f32_logit_bound": nclab["wall_s"] / max(read_s, flop_s_f32_logits),
        "nclab_wall_s": nclab["wall_s"], "nclab_peak_rss_anon_mib": nclab["peak_rss_anon_mib"],
        "nclab_peak_rss_file_mib": nclab["peak_rss_file_mib"],
        "nclab_over_bound": nclab["wall_s"] / bound,
        "nc1": metrics["nc1"], "accuracy": metrics["accuracy"], "num_samples": metrics["num_samples"],
        "threads": os.cpu_count(), "dense_numpy": dense,
    }
    print(json.dumps(report, indent=1))
    print(f"| {n} x {D}, K = {K}, {len(paths)} shards, {total_bytes / 2**30:.1f} GiB "
          f"| {nclab['wall_s']:.0f} s | {nclab['peak_rss_anon_mib']:.0f} MiB "
          f"| {read_s:.1f} s ({read_gbs:.2f} GB/s) | {flop_s:.0f} s / {flop_s_f32_logits:.0f} s "
          f"({f64:.0f} / {f32:.0f} GFLOP/s) "
          f"| {nclab['wall_s'] / bound:.2f}x / {nclab['wall_s'] / max(read_s, flop_s_f32_logits):.2f}x "
          f"| {dense['result'] if dense else 'skipped'} |")


if __name__ == "__main__":
    main()
