"""Shared helpers of the nclab Python tests: the repository's paths, the CLI to compare
with, and an independent numpy brute force of docs/metrics.md."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "gaussian-k10-d32.npz"
FIXTURES = REPO / "crates" / "nc-data" / "tests" / "fixtures"


@pytest.fixture(scope="session")
def cli() -> str:
    """The nclab binary: $NCLAB_CLI (set by .ci/run, so a missing binary fails there), else
    target/release or target/debug of this checkout."""
    given = os.environ.get("NCLAB_CLI")
    if given:
        assert Path(given).is_file(), f"NCLAB_CLI={given} does not exist"
        return given
    for profile in ("release", "debug"):
        path = REPO / "target" / profile / "nclab"
        if path.is_file():
            return str(path)
    found = shutil.which("nclab")
    if found:
        return found
    pytest.skip("no nclab binary: cargo build -p nclab, or set NCLAB_CLI")


def simplex_p(k: int) -> np.ndarray:
    return (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)


def _distance_to_simplex(g: np.ndarray) -> float:
    norm = np.linalg.norm(g)
    return float(np.linalg.norm(g / norm - simplex_p(g.shape[0])))


def _equinorm(vectors: np.ndarray) -> float:
    norms = np.linalg.norm(vectors, axis=1)
    return float(norms.std() / norms.mean())


def _equiangle(vectors: np.ndarray) -> float:
    k = vectors.shape[0]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    pairs = [abs(cos[a, b] + 1 / (k - 1)) for a, b in itertools.combinations(range(k), 2)]
    return float(np.mean(pairs))


def _energies(vectors: np.ndarray) -> tuple:
    """Mean over pairs of log(1/r) and of 1/r, r the distance of the normalised rows."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    r = [np.linalg.norm(unit[a] - unit[b]) for a, b in itertools.combinations(range(len(unit)), 2)]
    return float(np.mean(np.log(1 / np.array(r)))), float(np.mean(1 / np.array(r)))


def _one_vs_rest_margin(rows: np.ndarray) -> float:
    """min_k dist(x_k, conv{x_j : j != k}) for the normalised rows x_k, by enumerating the
    faces: the nearest point is the affine minimiser of some subset of the other rows with
    nonnegative weights (subsets of more than d + 1 points are affinely dependent)."""
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    k, d = unit.shape
    best = np.inf
    for own in range(k):
        others = [j for j in range(k) if j != own]
        for size in range(1, min(len(others), d + 1) + 1):
            for subset in itertools.combinations(others, size):
                p = unit[own] - unit[list(subset)]
                system = np.zeros((size + 1, size + 1))
                system[:size, :size] = p @ p.T
                system[:size, size] = system[size, :size] = 1.0
                rhs = np.zeros(size + 1)
                rhs[size] = 1.0
                try:
                    weights = np.linalg.solve(system, rhs)[:size]
                except np.linalg.LinAlgError:
                    continue
                if np.linalg.cond(system) > 1e12 or weights.min() < -1e-12:
                    continue
                best = min(best, float(np.linalg.norm(weights @ p)))
    return best


def brute_force(h, y, k, weight=None, bias=None, reference=None) -> dict:
    """docs/metrics.md the slow, obvious way: dense d x d Sigma_W and Sigma_B, the
    pseudo-inverse from the SVD of the centred means M with singular values above 1e-8 of
    the largest kept (1e-16 on Sigma_B's eigenvalues), per-sample decisions."""
    h = np.asarray(h, dtype=np.float64)
    y = np.asarray(y)
    n, d = h.shape
    mu = np.stack([h[y == c].mean(axis=0) for c in range(k)])
    mu_g = h.mean(axis=0)
    m = (mu - mu_g).T  # d x K
    dev = h - mu[y]
    sigma_w = dev.T @ dev / n
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    keep = s > 1e-8 * s[0]
    ur = u[:, keep]
    # Sigma_B = M M^T / K = U diag(s^2 / K) U^T, so Sigma_B^+ = U diag(K / s^2) U^T.
    sigma_b_pinv = ur @ np.diag(k / s[keep] ** 2) @ ur.T
    ref = mu if reference is None else np.asarray(reference, dtype=np.float64)
    distances = ((h[:, None, :] - ref[None, :, :]) ** 2).sum(axis=2)
    ncc = distances.argmin(axis=1)
    variances = np.array([(dev[y == c] ** 2).sum(axis=1).mean() for c in range(k)])
    cdnv = np.mean(
        [
            (variances[a] + variances[b]) / (2 * np.sum((mu[a] - mu[b]) ** 2))
            for a, b in itertools.combinations(range(k), 2)
        ]
    )
    out = {
        "nc1": float(np.trace(sigma_w @ sigma_b_pinv) / k),
        "ncc_accuracy": float(np.mean(ncc == y)),
        "equinorm_h": _equinorm(m.T),
        "equiangle_h": _equiangle(m.T),
        "nc2_means": _distance_to_simplex(m.T @ m),
        "cdnv": float(cdnv),
        "num_samples": n,
        "num_classes": k,
        "dim": d,
        "sigma_b_rank": int(keep.sum()),
        "convention": "nclab",
        "nc1_trace_ratio": float(np.trace(sigma_w) / np.trace(m @ m.T / k)),
        "gnc2_log_h": _energies(m.T)[0],
        "gnc2_riesz_h": _energies(m.T)[1],
    }
    if weight is None:
        out.update(dict.fromkeys(
            ["nc2", "nc3", "nc4", "bias_relation", "accuracy", "equinorm_w", "equiangle_w",
             "gnc2_log_w", "gnc2_riesz_w", "gnc3", "gnc2_margin_w"]
        ))  # fmt: skip
        return out
    w = np.asarray(weight, dtype=np.float64)
    b = np.zeros(k) if bias is None else np.asarray(bias, dtype=np.float64)
    wc = w - w.mean(axis=0)
    predicted = (h @ w.T + b).argmax(axis=1)
    out.update(
        nc2=_distance_to_simplex(wc @ wc.T),
        nc3=_distance_to_simplex(wc @ m),
        nc4=float(np.mean(predicted != ncc)),
        bias_relation=float(np.linalg.norm(w @ mu_g + b)),
        accuracy=float(np.mean(predicted == y)),
        equinorm_w=_equinorm(wc),
        equiangle_w=_equiangle(wc),
        gnc2_log_w=_energies(wc)[0],
        gnc2_riesz_w=_energies(wc)[1],
        gnc3=float(np.mean(1 - np.sum(wc * m.T, axis=1)
                           / (np.linalg.norm(wc, axis=1) * np.linalg.norm(m.T, axis=1)))),
        gnc2_margin_w=_one_vs_rest_margin(wc),
    )
    return out


def assert_metrics_close(got: dict, expected: dict, rtol: float = 1e-9, atol: float = 1e-12):
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        have = got[key]
        if want is None or isinstance(want, (int, str)):
            assert have == want, f"{key}: {have} != {want}"
        else:
            assert have is not None and np.isclose(have, want, rtol=rtol, atol=atol), (
                f"{key}: {have} vs {want}"
            )


def gaussian(rng, k, d, counts, spread=1.0, scale=3.0, dtype=np.float64):
    """Gaussian classes with ``counts[c]`` samples each, labels in random order, and a
    classifier near the class means."""
    centres = scale * rng.standard_normal((k, d))
    y = np.repeat(np.arange(k), counts)
    rng.shuffle(y)
    h = (centres[y] + spread * rng.standard_normal((len(y), d))).astype(dtype)
    w = centres - centres.mean(axis=0) + 0.5 * rng.standard_normal((k, d))
    b = 0.1 * rng.standard_normal(k)
    return h, y, w, b
