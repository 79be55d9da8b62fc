"""Dense, vectorised numpy/scipy reference for `nclab analyze` (the peer of the benchmark).

It computes the official evaluate.py formulas the way that code does, minus its per-sample
Python loops: Sigma_W as a d x d matrix from all centred features, scipy.linalg.pinv of the
d x d Sigma_B, nc1 = tr(Sigma_W Sigma_B^+) / K; nc2/nc3 from the centred classifier; nc4 as
the mismatch between argmax(W h + b) and the nearest class mean (distances by the expansion
||h||^2 - 2 h.mu + ||mu||^2, as a matrix product). Everything in float64.

Usage: python reference.py FILE.npz   (prints a JSON object with nc1..nc4 and accuracies)
"""
import json
import sys

import numpy as np
import scipy.linalg

path = sys.argv[1]
data = np.load(path)
H = data["features"].astype(np.float64)
y = data["labels"].astype(np.int64)
W = data["weight"].astype(np.float64)
b = data["bias"].astype(np.float64)
N, d = H.shape
K = W.shape[0]

counts = np.bincount(y, minlength=K)
means = np.zeros((K, d))
np.add.at(means, y, H)
means /= counts[:, None]
mu_g = H.mean(axis=0)
M = (means - mu_g).T  # d x K

centred = H - means[y]
sigma_w = centred.T @ centred / N
sigma_b = M @ M.T / K
nc1 = float(np.trace(sigma_w @ scipy.linalg.pinv(sigma_b)) / K)

P = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
Wc = W - W.mean(axis=0)


def simplex_distance(G):
    return float(np.linalg.norm(G / np.linalg.norm(G) - P))


nc2 = simplex_distance(Wc @ Wc.T)
nc3 = simplex_distance(Wc @ M)
logits = H @ W.T + b
pred = logits.argmax(axis=1)
dist = (H * H).sum(axis=1)[:, None] - 2 * H @ means.T + (means * means).sum(axis=1)[None, :]
ncc = dist.argmin(axis=1)
print(json.dumps({
    "nc1": nc1,
    "nc2": nc2,
    "nc3": nc3,
    "nc4": float((pred != ncc).mean()),
    "accuracy": float((pred == y).mean()),
    "ncc_accuracy": float((ncc == y).mean()),
}))
