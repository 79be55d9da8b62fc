"""Writes crates/nclab/tests/fixtures/conventions/fixture.npz (numpy only, seeded).

The fixture on which the published codebases' own metric code is run (record.py) and
compared with `nclab analyze --convention PRESET` (crates/nclab/tests/conventions_recorded.rs).

    python bench/conventions/make_fixture.py [OUT.npz]

Design (d = 16, K = 5, N = 335):

- unequal classes, 20, 45, 70, 90 and 110 samples, so the sample mean (nclab, zhou2022,
  zhu2021, nctoolbox) and the mean of the class means (papyan2020, rhubarbwu) differ;
- class centres = a common offset (norm ~9) + four orthonormal directions with scales
  10, 6, 3 and 0.003. The coefficient vectors are orthonormal and orthogonal to the ones
  vector, so the means centred by the mean of the class means have exactly these singular
  values; the smallest one's coefficients are also orthogonal to the class weights n_k/N, so
  it is the same under sample-mean centring. Its eigenvalue ratio in Sigma_B,
  (0.003/10)^2 = 9e-8, is below the float32 pinv cutoff d eps_f32 = 1.9e-6 (dropped by
  `dim-eps-f32`: zhou2022, zhu2021, rhubarbwu) and far above nclab's 1e-16 and numpy's
  1e-15 (kept by nclab, `rcond-1e-15` and `top-k-minus-1`), so nc1 differs by orders of
  magnitude between the two groups;
- within-class noise is anisotropic Gaussian, re-centred per class to exact zero mean (in
  f64, before the cast to float32), so the class means are the centres;
- the classifier is 0.3 x the centred centres + noise + a common row of norm ~6 (so centred
  and raw W give different nc2/nc3/equiangle_w), with a bias that moves some decisions
  (so `nc4-bias` with/without differ);
- the seed is the first from 0 for which every decision that nc4 and the accuracies depend
  on (nearest class centre, argmax W h + b, argmax W h, in f64) wins by at least 1e-2
  (squared distance / logit units), so float32 codebases cannot flip one by round-off.

The archive is written with fixed zip timestamps, so the same numpy writes the same bytes.
"""

import io
import sys
import zipfile

import numpy as np

D, K = 16, 5
COUNTS = np.array([20, 45, 70, 90, 110])
SCALES = np.array([10.0, 6.0, 3.0, 0.003])
NOISE = 0.7
MARGIN = 1e-2


def orthonormal_complement(vectors, dim):
    """An orthonormal basis (columns) of the complement of span(vectors) in R^dim."""
    q, _ = np.linalg.qr(np.column_stack(vectors + [np.eye(dim)]))
    return q[:, len(vectors):dim]


def generate(seed):
    rng = np.random.default_rng(seed)
    n = int(COUNTS.sum())
    weights = COUNTS / n
    ones = np.ones(K) / np.sqrt(K)
    # Coefficients: a4 orthogonal to 1 and to the class weights; a1..a3 span the rest of 1-perp.
    rest = orthonormal_complement([ones, weights], K)  # K x 3
    a4 = rest @ rng.normal(size=3)
    a4 /= np.linalg.norm(a4)
    big = orthonormal_complement([ones, a4], K)  # K x 3, orthonormal, orthogonal to 1 and a4
    big = big @ np.linalg.qr(rng.normal(size=(3, 3)))[0]  # a random rotation inside
    coeff = np.column_stack([big, a4])  # K x 4, orthonormal columns, all orthogonal to 1
    directions = np.linalg.qr(rng.normal(size=(D, D)))[0][:, :4]  # D x 4
    offset = 2.0 + 2.0 * rng.normal(size=D)
    centred = coeff @ np.diag(SCALES) @ directions.T  # K x D, mean row exactly 0
    centres = offset + centred

    mixing = np.eye(D) + 0.4 * rng.normal(size=(D, D))
    features, labels = [], []
    for k in range(K):
        z = rng.normal(size=(COUNTS[k], D)) @ mixing * NOISE
        z -= z.mean(axis=0)
        features.append(centres[k] + z)
        labels.append(np.full(COUNTS[k], k, dtype=np.int64))
    order = rng.permutation(n)  # classes interleaved, as a loader would see them
    features = np.concatenate(features)[order].astype(np.float32)
    labels = np.concatenate(labels)[order]

    common = 1.5 * rng.normal(size=D)
    weight = (0.3 * centred + 0.5 * rng.normal(size=(K, D)) + common).astype(np.float32)
    bias = (1.5 * rng.normal(size=K)).astype(np.float32)
    return features, labels, weight, bias


def runner_up_gap(scores):
    """Per row, the best score minus the second best (scores to maximise)."""
    part = np.sort(scores, axis=1)
    return part[:, -1] - part[:, -2]


def margins(features, labels, weight, bias):
    h = features.astype(np.float64)
    w = weight.astype(np.float64)
    b = bias.astype(np.float64)
    means = np.stack([h[labels == k].mean(axis=0) for k in range(K)])
    sq = ((h[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    return {
        "ncc": runner_up_gap(-sq).min(),
        "with_bias": runner_up_gap(h @ w.T + b).min(),
        "without_bias": runner_up_gap(h @ w.T).min(),
    }


def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def write_npz(path, arrays):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays:
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, npy_bytes(array))


def report(features, labels, weight, bias):
    h = features.astype(np.float64)
    means = np.stack([h[labels == k].mean(axis=0) for k in range(K)])
    for name, centre in [("sample mean", h.mean(axis=0)), ("mean of class means", means.mean(axis=0))]:
        s = np.linalg.svd(means - centre, compute_uv=False)
        ratios = (s / s[0]) ** 2
        print(f"  Sigma_B eigenvalue ratios ({name}): " + ", ".join(f"{r:.3g}" for r in ratios))
    print(f"  float32 pinv cutoff d*eps32 = {D * np.finfo(np.float32).eps:.3g}")
    # What a float32 pinv of the d x d Sigma_B actually sees (its singular values, in f32).
    sb = ((means - h.mean(axis=0)).astype(np.float32))
    sb = sb.T @ sb / np.float32(K)
    s32 = np.linalg.svd(sb, compute_uv=False)
    print("  float32 Sigma_B singular values / largest: " + ", ".join(f"{v:.3g}" for v in s32[:6] / s32[0]))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/nclab/tests/fixtures/conventions/fixture.npz"
    for seed in range(1000):
        arrays = generate(seed)
        m = margins(*arrays)
        if min(m.values()) >= MARGIN:
            break
    else:
        raise SystemExit("no seed below 1000 gives the decision margins")
    features, labels, weight, bias = arrays
    write_npz(out, [("features", features), ("labels", labels), ("weight", weight), ("bias", bias)])
    print(f"wrote {out}: seed {seed}, N = {len(labels)}, d = {D}, K = {K}, counts {COUNTS.tolist()}")
    print("  smallest decision margins (f64): " + ", ".join(f"{k} {v:.3g}" for k, v in m.items()))
    report(features, labels, weight, bias)


if __name__ == "__main__":
    main()
