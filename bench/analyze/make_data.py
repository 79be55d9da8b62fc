"""Synthetic feature files for the `nclab analyze` benchmark.

Usage: python make_data.py OUT_DIR [N]
Writes features_d{d}_k{K}.npz (uncompressed, as np.savez) holding float32 `features` (N x d),
int64 `labels`, float32 `weight` (K x d) and `bias` (K), for (d, K) = (512, 10), (2048, 100).
The classifier is the class centres plus noise (a trained network near collapse); a second
(2048, 100) file, features_d2048_k100_random_w.npz, holds the same features and labels with a
classifier drawn independently of the centres (far from collapse).
"""
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 50_000
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for d, k in [(512, 10), (2048, 100)]:
    centres = rng.standard_normal((k, d), dtype=np.float32)
    labels = rng.integers(0, k, size=n)
    features = centres[labels] + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    weight = (centres + 0.1 * rng.standard_normal((k, d), dtype=np.float32)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    np.savez(out / f"features_d{d}_k{k}.npz", features=features, labels=labels, weight=weight, bias=bias)
    print(f"wrote {out}/features_d{d}_k{k}.npz: N={n}, d={d}, K={k}")
    if k == 100:
        weight = rng.standard_normal((k, d), dtype=np.float32)
        np.savez(out / f"features_d{d}_k{k}_random_w.npz", features=features, labels=labels, weight=weight, bias=bias)
        print(f"wrote {out}/features_d{d}_k{k}_random_w.npz: the same with a random classifier")
