"""Many-class benchmark data and the dense numpy reference (bench/analyze/many_classes.sh).

  python many_classes.py gen DIR K D N SEED   raw files: features.f32, labels.u32, weight.f64,
                                              bias.f64, shape.txt ("K d N")
  python many_classes.py ref DIR              the metrics of docs/metrics.md in float64 numpy,
                                              as JSON with nclab's keys (load included)
  python many_classes.py compare A.json B.json
"""

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 20_000


def gen(out: Path, k: int, d: int, n: int, seed: int) -> None:
    need = n * d * 4 + n * 4 + k * d * 8 + k * 8
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path("/")).free
    if free < need + (2 << 30):
        sys.exit(f"{out}: {need / 1e9:.1f} GB needed plus 2 GB spare, {free / 1e9:.1f} GB free")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    # W = centres + noise, b small: well above chance, not exactly the NCC rule.
    (centres + 0.3 * rng.standard_normal((k, d))).tofile(out / "weight.f64")
    (0.1 * rng.standard_normal(k)).tofile(out / "bias.f64")
    labels = (np.arange(n) % k).astype(np.uint32)
    rng.shuffle(labels)
    labels.tofile(out / "labels.u32")
    with open(out / "features.f32", "wb") as f:
        for start in range(0, n, CHUNK):
            y = labels[start : start + CHUNK]
            x = centres[y] + 0.45 * rng.standard_normal((len(y), d))
            x.astype(np.float32).tofile(f)
    (out / "shape.txt").write_text(f"{k} {d} {n}\n")


def _simplex_distance(g: np.ndarray) -> float:
    k = g.shape[0]
    p = (np.eye(k) - 1.0 / k) / np.sqrt(k - 1)
    return float(np.linalg.norm(g / np.linalg.norm(g) - p))


def _norm_angle_energy(v: np.ndarray):
    """equinorm, equiangle, log and Riesz (s=1) energies of the rows of v (K x d)."""
    k = v.shape[0]
    norms = np.linalg.norm(v, axis=1)
    unit = v / norms[:, None]
    cos = unit @ unit.T
    upper = np.triu_indices(k, 1)
    c = cos[upper]
    r = np.sqrt(np.maximum(2 - 2 * c, 0))
    return (
        float(norms.std() / norms.mean()),
        float(np.mean(np.abs(c + 1 / (k - 1)))),
        float(np.mean(np.log(1 / r))),
        float(np.mean(1 / r)),
    )


def ref(out: Path) -> dict:
    k, d, n = map(int, (out / "shape.txt").read_text().split())
    x32 = np.fromfile(out / "features.f32", dtype=np.float32).reshape(n, d)
    y = np.fromfile(out / "labels.u32", dtype=np.uint32).astype(np.int64)
    w = np.fromfile(out / "weight.f64").reshape(k, d)
    b = np.fromfile(out / "bias.f64")
    chunk = min(CHUNK, 20_000_000 // k)  # N x K products a chunk at a time (160 MB)
    counts = np.bincount(y, minlength=k)
    sums = np.zeros((k, d))
    for s in range(0, n, CHUNK):
        np.add.at(sums, y[s : s + CHUNK], x32[s : s + CHUNK].astype(np.float64))
    mu = sums / counts[:, None]
    mu_g = sums.sum(axis=0) / n
    m = (mu - mu_g).T  # d x K
    sigma_w = np.zeros((d, d))
    dev_sq = np.zeros(k)
    correct = ncc_correct = mismatch = 0
    mu_sq = (mu**2).sum(axis=1)
    for s in range(0, n, chunk):
        h = x32[s : s + chunk].astype(np.float64)
        ys = y[s : s + chunk]
        dev = h - mu[ys]
        sigma_w += dev.T @ dev
        np.add.at(dev_sq, ys, (dev**2).sum(axis=1))
        ncc = (mu_sq[None, :] - 2 * h @ mu.T).argmin(axis=1)
        pred = (h @ w.T + b).argmax(axis=1)
        correct += int((pred == ys).sum())
        ncc_correct += int((ncc == ys).sum())
        mismatch += int((pred != ncc).sum())
    sigma_w /= n
    u, sv, _ = np.linalg.svd(m, full_matrices=False)
    keep = sv > 1e-8 * sv[0]
    proj = u[:, keep].T @ sigma_w @ u[:, keep]
    nc1 = float(np.sum(np.diag(proj) / sv[keep] ** 2))
    var = dev_sq / counts
    wc = w - w.mean(axis=0)
    en_h, ea_h, log_h, riesz_h = _norm_angle_energy(m.T)
    en_w, ea_w, log_w, riesz_w = _norm_angle_energy(wc)
    upper = np.triu_indices(k, 1)
    dist = ((mu[:, None, :] - mu[None, :, :]) ** 2).sum(axis=2)[upper] if k <= 2000 else None
    if dist is None:  # row blocks: a K x K x d array does not fit
        terms = []
        for a in range(0, k, 256):
            block = mu_sq[a : a + 256, None] + mu_sq[None, :] - 2 * mu[a : a + 256] @ mu.T
            rows = np.arange(a, min(a + 256, k))[:, None]
            cols = np.arange(k)[None, :]
            mask = cols > rows  # pairs k < l only (the diagonal of the block is 0)
            terms.append((var[rows] + var[cols])[mask] / (2 * block[mask]))
        cdnv = float(np.concatenate(terms).mean())
    else:
        cdnv = float(np.mean((var[upper[0]] + var[upper[1]]) / (2 * dist)))
    cos_wm = np.sum(wc * m.T, axis=1) / (np.linalg.norm(wc, axis=1) * np.linalg.norm(m.T, axis=1))
    return {
        "nc1": nc1,
        "nc2": _simplex_distance(wc @ wc.T),
        "nc3": _simplex_distance(wc @ m),
        "nc4": mismatch / n,
        "bias_relation": float(np.linalg.norm(w @ mu_g + b)),
        "accuracy": correct / n,
        "ncc_accuracy": ncc_correct / n,
        "equinorm_w": en_w,
        "equinorm_h": en_h,
        "equiangle_w": ea_w,
        "equiangle_h": ea_h,
        "nc2_means": _simplex_distance(m.T @ m),
        "cdnv": cdnv,
        "nc1_trace_ratio": float(np.trace(sigma_w) / (np.sum(m**2) / k)),
        "gnc2_log_h": log_h,
        "gnc2_riesz_h": riesz_h,
        "gnc2_log_w": log_w,
        "gnc2_riesz_w": riesz_w,
        "gnc3": float(np.mean(1 - cos_wm)),
        "sigma_b_rank": int(keep.sum()),
    }


def compare(a: Path, b: Path) -> None:
    x, y = json.loads(a.read_text()), json.loads(b.read_text())
    worst = 0.0
    for key, want in y.items():
        got = x[key]
        if isinstance(want, float):
            rel = abs(got - want) / max(abs(want), 1e-300)
            # Decision fractions may differ by a few exact ties; the rest must agree.
            tol = 1e-4 if key in ("accuracy", "ncc_accuracy", "nc4") else 1e-6
            if rel > tol:
                sys.exit(f"{key}: nclab {got} vs numpy {want} (relative {rel:.2e})")
            worst = max(worst, rel)
        elif got != want:
            sys.exit(f"{key}: nclab {got} vs numpy {want}")
    print(f"agree: worst relative difference {worst:.1e} over {len(y)} keys")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(Path(sys.argv[2]), *map(int, sys.argv[3:7]))
    elif cmd == "ref":
        t = time.perf_counter()
        out = ref(Path(sys.argv[2]))
        print(json.dumps(out))
        print(f"numpy_s {time.perf_counter() - t:.3f}", file=sys.stderr)
    elif cmd == "compare":
        compare(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
