"""Makes examples/gaussian-k10-d32.npz, the small feature file the README's first command reads.

Ten Gaussian classes in 32 dimensions, 50 samples each (float32 features, int64 labels), and a
classifier near the class means (float32 weight and bias): partly collapsed, so every metric
has a value worth reading. Run with numpy: python examples/make_example.py
"""
from pathlib import Path

import numpy as np

rng = np.random.default_rng(2022)
k, d, n = 10, 32, 50
centres = 3.0 * rng.standard_normal((k, d))
labels = np.repeat(np.arange(k), n)
features = (centres[labels] + rng.standard_normal((k * n, d))).astype(np.float32)
weight = (centres - centres.mean(axis=0) + 0.5 * rng.standard_normal((k, d))).astype(np.float32)
bias = (0.1 * rng.standard_normal(k)).astype(np.float32)
out = Path(__file__).with_name("gaussian-k10-d32.npz")
np.savez_compressed(out, features=features, labels=labels, weight=weight, bias=bias)
print(f"wrote {out}")
