//! The metrics engine against exact constructions, hand-computed cases, a dense brute-force
//! implementation of the docs/metrics.md formulas, and the invariances the metrics must have.

use faer::Mat;
use nc_math::metrics::{
    compute_metrics, ClassMeans, Classifier, LeF32, LeF64, MeanAccumulator, MetricsPlan, NcMetrics,
};
use nc_math::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

fn gaussian(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// A random orthogonal a x a matrix (QR of a Gaussian matrix).
fn random_rotation(rng: &mut StdRng, a: usize) -> Mat<f64> {
    let g = Mat::from_fn(a, a, |_, _| rng.sample::<f64, _>(StandardNormal));
    g.qr().compute_Q()
}

/// A random d x m matrix with orthonormal columns (m <= d).
fn random_orthonormal(rng: &mut StdRng, d: usize, m: usize) -> Mat<f64> {
    let q = random_rotation(rng, d);
    Mat::from_fn(d, m, |i, j| q[(i, j)])
}

struct Data {
    features: Vec<f64>,
    labels: Vec<u32>,
    dim: usize,
    classes: usize,
}

/// Gaussian classes with unequal counts, centres spread `spread`, noise `noise`.
fn random_data(rng: &mut StdRng, classes: usize, dim: usize, spread: f64, noise: f64) -> Data {
    let centres = gaussian(rng, classes * dim);
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for k in 0..classes {
        let count = 5 + rng.random_range(0..20);
        for _ in 0..count {
            for i in 0..dim {
                features.push(
                    spread * centres[k * dim + i] + noise * rng.sample::<f64, _>(StandardNormal),
                );
            }
            labels.push(k as u32);
        }
    }
    // Unsorted labels: shuffle the rows.
    let n = labels.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let features = order
        .iter()
        .flat_map(|&r| features[r * dim..(r + 1) * dim].to_vec())
        .collect();
    let labels = order.iter().map(|&r| labels[r]).collect();
    Data {
        features,
        labels,
        dim,
        classes,
    }
}

fn random_classifier(rng: &mut StdRng, classes: usize, dim: usize) -> Classifier {
    Classifier::new(
        classes,
        dim,
        gaussian(rng, classes * dim),
        Some(gaussian(rng, classes)),
    )
    .unwrap()
}

/// Straight from the docs/metrics.md formulas: dense d x d Sigma_W and Sigma_B, pseudo-inverse by
/// a full SVD of Sigma_B, distances and logits sample by sample.
fn brute_force(
    data: &Data,
    clf: Option<&Classifier>,
    reference: Option<&[f64]>,
) -> (NcMetrics, usize) {
    let (k, d) = (data.classes, data.dim);
    let n = data.labels.len();
    let mut counts = vec![0usize; k];
    let mut means = vec![0.0; k * d];
    for (row, &y) in data.features.chunks(d).zip(&data.labels) {
        counts[y as usize] += 1;
        for i in 0..d {
            means[y as usize * d + i] += row[i];
        }
    }
    for c in 0..k {
        for i in 0..d {
            means[c * d + i] /= counts[c] as f64;
        }
    }
    let global: Vec<f64> = (0..d)
        .map(|i| data.features.chunks(d).map(|r| r[i]).sum::<f64>() / n as f64)
        .collect();
    let m = Mat::from_fn(d, k, |i, c| means[c * d + i] - global[i]);
    let mut sigma_w = Mat::<f64>::zeros(d, d);
    for (row, &y) in data.features.chunks(d).zip(&data.labels) {
        let c: Vec<f64> = (0..d).map(|i| row[i] - means[y as usize * d + i]).collect();
        for a in 0..d {
            for b in 0..d {
                sigma_w[(a, b)] += c[a] * c[b] / n as f64;
            }
        }
    }
    let sigma_b = Mat::from_fn(d, d, |a, b| {
        (0..k).map(|c| m[(a, c)] * m[(b, c)]).sum::<f64>() / k as f64
    });
    let svd = sigma_b.svd().unwrap();
    let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
    let largest = s[0];
    let mut pinv = Mat::<f64>::zeros(d, d);
    let mut rank = 0;
    for (j, &sj) in s.iter().enumerate() {
        // Singular values of Sigma_B are s_M^2 / K, so the spec's cutoff 1e-8 on s_M is 1e-16
        // here: below what a dense d x d decomposition resolves. On these well-conditioned
        // data the exact zeros come out near 1e-17 and the others far above 1e-12, so 1e-12
        // separates them (the test also checks the rank is min(K-1, d)).
        if sj > 1e-12 * largest {
            rank += 1;
            for a in 0..d {
                for b in 0..d {
                    pinv[(a, b)] += svd.U()[(a, j)] * svd.V()[(b, j)] / sj;
                }
            }
        }
    }
    let nc1 = (&sigma_w * &pinv)
        .diagonal()
        .column_vector()
        .iter()
        .sum::<f64>()
        / k as f64;

    let p = |a: usize, b: usize| ((a == b) as u8 as f64 - 1.0 / k as f64) / ((k - 1) as f64).sqrt();
    let simplex_distance = |g: &Mat<f64>| {
        let norm = g.norm_l2();
        let mut sq = 0.0;
        for a in 0..k {
            for b in 0..k {
                sq += (g[(a, b)] / norm - p(a, b)).powi(2);
            }
        }
        sq.sqrt()
    };
    let pairs = (k * (k - 1) / 2) as f64;
    let equi = |vectors: &Mat<f64>| {
        // vectors: K x d rows
        let norms: Vec<f64> = (0..k)
            .map(|a| (0..d).map(|i| vectors[(a, i)].powi(2)).sum::<f64>().sqrt())
            .collect();
        let mean = norms.iter().sum::<f64>() / k as f64;
        let std = (norms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k as f64).sqrt();
        let mut angle = 0.0;
        for a in 0..k {
            for b in a + 1..k {
                let cos = (0..d)
                    .map(|i| vectors[(a, i)] * vectors[(b, i)])
                    .sum::<f64>()
                    / (norms[a] * norms[b]);
                angle += (cos + 1.0 / (k - 1) as f64).abs();
            }
        }
        (std / mean, angle / pairs)
    };
    // Hyperspherical energies of the normalised rows, from their differences directly.
    let energies = |vectors: &Mat<f64>| {
        let unit = |a: usize| -> Vec<f64> {
            let norm = (0..d).map(|i| vectors[(a, i)].powi(2)).sum::<f64>().sqrt();
            (0..d).map(|i| vectors[(a, i)] / norm).collect()
        };
        let (mut log, mut riesz) = (0.0, 0.0);
        for a in 0..k {
            for b in a + 1..k {
                let (x, y) = (unit(a), unit(b));
                let dist = (0..d).map(|i| (x[i] - y[i]).powi(2)).sum::<f64>().sqrt();
                log += (1.0 / dist).ln();
                riesz += 1.0 / dist;
            }
        }
        (log / pairs, riesz / pairs)
    };
    let mt = m.transpose().to_owned();
    let (equinorm_h, equiangle_h) = equi(&mt);
    let nc2_means = simplex_distance(&(&mt * &m));

    let reference: Vec<f64> = reference
        .map(|r| r.to_vec())
        .unwrap_or_else(|| means.clone());
    let ncc = |row: &[f64]| {
        let mut best = (0, f64::INFINITY);
        for c in 0..k {
            let dist: f64 = (0..d)
                .map(|i| (row[i] - reference[c * d + i]).powi(2))
                .sum();
            if dist < best.1 {
                best = (c, dist);
            }
        }
        best.0
    };
    let mut ncc_correct = 0;
    let mut var = vec![0.0; k];
    for (row, &y) in data.features.chunks(d).zip(&data.labels) {
        if ncc(row) == y as usize {
            ncc_correct += 1;
        }
        var[y as usize] += (0..d)
            .map(|i| (row[i] - means[y as usize * d + i]).powi(2))
            .sum::<f64>()
            / counts[y as usize] as f64;
    }
    let mut cdnv = 0.0;
    for a in 0..k {
        for b in a + 1..k {
            let dist: f64 = (0..d)
                .map(|i| (means[a * d + i] - means[b * d + i]).powi(2))
                .sum();
            cdnv += (var[a] + var[b]) / (2.0 * dist) / pairs;
        }
    }

    let mut metrics = NcMetrics {
        nc1,
        nc2: None,
        nc3: None,
        nc4: None,
        bias_relation: None,
        accuracy: None,
        ncc_accuracy: ncc_correct as f64 / n as f64,
        equinorm_w: None,
        equinorm_h,
        equiangle_w: None,
        equiangle_h,
        nc2_means,
        cdnv,
        num_samples: n as u64,
        num_classes: k,
        dim: d,
        sigma_b_rank: rank,
        convention: Default::default(),
        nc1_trace_ratio: Some(
            sigma_w.diagonal().column_vector().iter().sum::<f64>()
                / sigma_b.diagonal().column_vector().iter().sum::<f64>(),
        ),
        gnc2_log_h: Some(energies(&mt).0),
        gnc2_riesz_h: Some(energies(&mt).1),
        gnc2_log_w: None,
        gnc2_riesz_w: None,
        gnc3: None,
        gnc2_margin_w: None,
    };
    if let Some(clf) = clf {
        let w = Mat::from_fn(k, d, |a, i| clf.weight()[a * d + i]);
        let wc = Mat::from_fn(k, d, |a, i| {
            w[(a, i)] - (0..k).map(|c| w[(c, i)]).sum::<f64>() / k as f64
        });
        let (equinorm_w, equiangle_w) = equi(&wc);
        let logits = |row: &[f64]| -> usize {
            let mut best = (0, f64::NEG_INFINITY);
            for c in 0..k {
                let z = (0..d).map(|i| w[(c, i)] * row[i]).sum::<f64>() + clf.bias()[c];
                if z > best.1 {
                    best = (c, z);
                }
            }
            best.0
        };
        let (mut correct, mut mismatch) = (0, 0);
        for (row, &y) in data.features.chunks(d).zip(&data.labels) {
            let predicted = logits(row);
            correct += (predicted == y as usize) as usize;
            mismatch += (predicted != ncc(row)) as usize;
        }
        let bias_relation = (0..k)
            .map(|c| ((0..d).map(|i| w[(c, i)] * global[i]).sum::<f64>() + clf.bias()[c]).powi(2))
            .sum::<f64>()
            .sqrt();
        metrics.nc2 = Some(simplex_distance(&(&wc * wc.transpose())));
        metrics.nc3 = Some(simplex_distance(&(&wc * &m)));
        metrics.nc4 = Some(mismatch as f64 / n as f64);
        metrics.bias_relation = Some(bias_relation);
        metrics.accuracy = Some(correct as f64 / n as f64);
        metrics.equinorm_w = Some(equinorm_w);
        metrics.equiangle_w = Some(equiangle_w);
        metrics.gnc2_log_w = Some(energies(&wc).0);
        metrics.gnc2_riesz_w = Some(energies(&wc).1);
        let cosine = |c: usize| {
            let dot: f64 = (0..d).map(|i| wc[(c, i)] * m[(i, c)]).sum();
            let wn = (0..d).map(|i| wc[(c, i)].powi(2)).sum::<f64>().sqrt();
            let mn = (0..d).map(|i| m[(i, c)].powi(2)).sum::<f64>().sqrt();
            dot / (wn * mn)
        };
        metrics.gnc3 = Some((0..k).map(|c| 1.0 - cosine(c)).sum::<f64>() / k as f64);
        metrics.gnc2_margin_w = Some(one_vs_rest_margin(&wc));
    }
    (metrics, rank)
}

/// min_k dist(x_k, conv{x_j : j != k}) for the normalised rows x_k of `rows`, by
/// enumerating every subset of the other rows: the nearest point of a polytope is the
/// affine minimiser of the vertices of the face it lies in, with nonnegative weights, so
/// the smallest such minimiser over the subsets whose weights are nonnegative is the
/// distance (subsets of more than d + 1 points are affinely dependent and skipped).
fn one_vs_rest_margin(rows: &Mat<f64>) -> f64 {
    let (k, d) = (rows.nrows(), rows.ncols());
    let unit: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            let norm = (0..d).map(|i| rows[(c, i)].powi(2)).sum::<f64>().sqrt();
            (0..d).map(|i| rows[(c, i)] / norm).collect()
        })
        .collect();
    let mut best = f64::INFINITY;
    for own in 0..k {
        let others: Vec<usize> = (0..k).filter(|&j| j != own).collect();
        for mask in 1u32..(1 << others.len()) {
            let points: Vec<Vec<f64>> = (0..others.len())
                .filter(|&i| mask & (1 << i) != 0)
                .map(|i| (0..d).map(|t| unit[own][t] - unit[others[i]][t]).collect())
                .collect();
            let n = points.len();
            if n > d + 1 {
                continue;
            }
            // [[P^T P, 1], [1^T, 0]] [a; mu] = [0; 1].
            let mut system = vec![vec![0.0; n + 2]; n + 1];
            for i in 0..n {
                for j in 0..n {
                    system[i][j] = (0..d).map(|t| points[i][t] * points[j][t]).sum();
                }
                system[i][n] = 1.0;
                system[n][i] = 1.0;
            }
            system[n][n + 1] = 1.0;
            let Some(weights) = solve_augmented(system) else {
                continue;
            };
            if weights[..n].iter().any(|&a| a < -1e-12) {
                continue;
            }
            let norm_sq: f64 = (0..d)
                .map(|t| {
                    (0..n)
                        .map(|i| weights[i] * points[i][t])
                        .sum::<f64>()
                        .powi(2)
                })
                .sum();
            best = best.min(norm_sq.sqrt());
        }
    }
    best
}

/// Gauss-Jordan elimination with partial pivoting on an n x (n + 1) augmented matrix; None
/// when it is singular.
fn solve_augmented(mut m: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let n = m.len();
    for c in 0..n {
        let pivot = (c..n).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))?;
        if m[pivot][c].abs() < 1e-12 {
            return None;
        }
        m.swap(c, pivot);
        let pivot_row = m[c].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot_row[c];
                for (x, y) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *x -= f * y;
                }
            }
        }
    }
    Some((0..n).map(|r| m[r][n] / m[r][r]).collect())
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    let scale = a.abs().max(b.abs()).max(1.0);
    assert!(
        a == b || (a - b).abs() <= tol * scale,
        "{what}: {a} vs {b} (tolerance {tol})"
    );
}

fn assert_metrics_close(a: &NcMetrics, b: &NcMetrics, tol: f64) {
    assert_close(a.nc1, b.nc1, tol, "nc1");
    let opt = |x: Option<f64>, y: Option<f64>, what: &str| match (x, y) {
        (Some(x), Some(y)) => assert_close(x, y, tol, what),
        (None, None) => {}
        _ => panic!("{what}: {x:?} vs {y:?}"),
    };
    opt(a.nc2, b.nc2, "nc2");
    opt(a.nc3, b.nc3, "nc3");
    opt(a.nc4, b.nc4, "nc4");
    opt(a.bias_relation, b.bias_relation, "bias_relation");
    opt(a.accuracy, b.accuracy, "accuracy");
    opt(a.equinorm_w, b.equinorm_w, "equinorm_w");
    opt(a.equiangle_w, b.equiangle_w, "equiangle_w");
    opt(a.nc1_trace_ratio, b.nc1_trace_ratio, "nc1_trace_ratio");
    opt(a.gnc2_log_h, b.gnc2_log_h, "gnc2_log_h");
    opt(a.gnc2_riesz_h, b.gnc2_riesz_h, "gnc2_riesz_h");
    opt(a.gnc2_log_w, b.gnc2_log_w, "gnc2_log_w");
    opt(a.gnc2_riesz_w, b.gnc2_riesz_w, "gnc2_riesz_w");
    opt(a.gnc3, b.gnc3, "gnc3");
    opt(a.gnc2_margin_w, b.gnc2_margin_w, "gnc2_margin_w");
    assert_close(a.ncc_accuracy, b.ncc_accuracy, tol, "ncc_accuracy");
    assert_close(a.equinorm_h, b.equinorm_h, tol, "equinorm_h");
    assert_close(a.equiangle_h, b.equiangle_h, tol, "equiangle_h");
    assert_close(a.nc2_means, b.nc2_means, tol, "nc2_means");
    assert_close(a.cdnv, b.cdnv, tol, "cdnv");
    assert_eq!(a.num_samples, b.num_samples);
    assert_eq!(
        (a.num_classes, a.dim, a.sigma_b_rank),
        (b.num_classes, b.dim, b.sigma_b_rank)
    );
}

fn metrics_of(data: &Data, clf: Option<&Classifier>) -> NcMetrics {
    compute_metrics(
        &data.features,
        &data.labels,
        data.dim,
        data.classes,
        clf,
        None,
    )
    .unwrap()
}

#[test]
fn agrees_with_dense_brute_force_on_random_data() {
    let mut rng = StdRng::seed_from_u64(7);
    // (K, d) including d < K-1 (rank-deficient Sigma_B), d = K-1 and d > K.
    for &(k, d) in &[(2, 1), (3, 5), (5, 4), (10, 3), (6, 20), (4, 64)] {
        let data = random_data(&mut rng, k, d, 1.0, 0.7);
        let clf = random_classifier(&mut rng, k, d);
        let ours = metrics_of(&data, Some(&clf));
        let (reference, rank) = brute_force(&data, Some(&clf), None);
        assert_eq!(rank, (k - 1).min(d), "brute-force rank for K={k}, d={d}");
        assert_metrics_close(&ours, &reference, 1e-9);
        let no_clf = metrics_of(&data, None);
        assert_metrics_close(&no_clf, &brute_force(&data, None, None).0, 1e-9);
    }
}

#[test]
fn reference_means_drive_nc4_and_ncc_accuracy() {
    let mut rng = StdRng::seed_from_u64(11);
    let (k, d) = (5, 12);
    let data = random_data(&mut rng, k, d, 1.0, 1.5);
    let clf = random_classifier(&mut rng, k, d);
    let other_means = gaussian(&mut rng, k * d);
    let reference = ClassMeans::from_means(k, d, other_means.clone()).unwrap();
    let ours = compute_metrics(
        &data.features,
        &data.labels,
        d,
        k,
        Some(&clf),
        Some(&reference),
    )
    .unwrap();
    let (expected, _) = brute_force(&data, Some(&clf), Some(&other_means));
    assert_metrics_close(&ours, &expected, 1e-9);
    // It must differ from the own-means answer, or this test checks nothing.
    let own = metrics_of(&data, Some(&clf));
    assert_ne!(own.ncc_accuracy, ours.ncc_accuracy);
}

/// Simplex ETF class means in d dimensions (d >= K-1), scaled by `scale`, rotated randomly.
fn simplex_etf(rng: &mut StdRng, k: usize, d: usize, scale: f64) -> Vec<f64> {
    // The centred standard basis vectors of R^K span a (K-1)-dim space; an orthonormal
    // basis B of it (K x (K-1)) maps them to R^(K-1), a random isometry into R^d.
    let ones_complement = {
        // Column 0 is the all-ones vector, the rest the identity's: QR makes columns 1.. an
        // orthonormal basis of the complement of 1.
        let a = Mat::from_fn(k, k, |i, j| if j == 0 || i == j { 1.0 } else { 0.0 });
        let q = a.qr().compute_Q();
        Mat::from_fn(k, k - 1, |i, j| q[(i, j + 1)])
    };
    let embed = random_orthonormal(rng, d, k - 1);
    let mut means = vec![0.0; k * d];
    for c in 0..k {
        let centred: Vec<f64> = (0..k)
            .map(|i| (i == c) as u8 as f64 - 1.0 / k as f64)
            .collect();
        let coords: Vec<f64> = (0..k - 1)
            .map(|j| (0..k).map(|i| ones_complement[(i, j)] * centred[i]).sum())
            .collect();
        for i in 0..d {
            means[c * d + i] = scale * (0..k - 1).map(|j| embed[(i, j)] * coords[j]).sum::<f64>();
        }
    }
    means
}

#[test]
fn collapsed_simplex_etf_gives_zero_nc() {
    let mut rng = StdRng::seed_from_u64(3);
    for &(k, d) in &[(2, 1), (3, 2), (4, 3), (10, 9), (10, 32), (7, 50)] {
        let means = simplex_etf(&mut rng, k, d, 3.0);
        let offset = gaussian(&mut rng, d);
        let mut features = Vec::new();
        let mut labels = Vec::new();
        // Equal class counts, several copies of each mean, shifted by a common offset.
        for copy in 0..4 {
            for c in 0..k {
                let _ = copy;
                features.extend((0..d).map(|i| means[c * d + i] + offset[i]));
                labels.push(c as u32);
            }
        }
        // Self-dual classifier W = 2 M^T with a common row added (removed by centring) and
        // a bias that keeps the decision rule the NCC rule: b = -W mu_G.
        let shift = gaussian(&mut rng, d);
        let weight: Vec<f64> = (0..k)
            .flat_map(|c| {
                (0..d)
                    .map(|i| 2.0 * means[c * d + i] + shift[i])
                    .collect::<Vec<_>>()
            })
            .collect();
        let bias: Vec<f64> = (0..k)
            .map(|c| -(0..d).map(|i| weight[c * d + i] * offset[i]).sum::<f64>())
            .collect();
        let clf = Classifier::new(k, d, weight, Some(bias)).unwrap();
        let m = compute_metrics(&features, &labels, d, k, Some(&clf), None).unwrap();
        let label = format!("K={k}, d={d}");
        assert!(m.nc1.abs() < 1e-10, "nc1 {label}: {}", m.nc1);
        assert!(m.nc2.unwrap() < 1e-10, "nc2 {label}: {:?}", m.nc2);
        assert!(m.nc3.unwrap() < 1e-10, "nc3 {label}: {:?}", m.nc3);
        assert_eq!(m.nc4, Some(0.0), "nc4 {label}");
        assert!(
            m.nc2_means < 1e-10 && m.equinorm_h < 1e-10 && m.equiangle_h < 1e-10,
            "{label}: {m:?}"
        );
        assert!(
            m.equinorm_w.unwrap() < 1e-10 && m.equiangle_w.unwrap() < 1e-10,
            "{label}: {m:?}"
        );
        assert_eq!(m.accuracy, Some(1.0));
        assert_eq!(m.ncc_accuracy, 1.0);
        assert_eq!(m.cdnv, 0.0);
        assert_eq!(m.sigma_b_rank, k - 1);
        assert!(m.bias_relation.unwrap() < 1e-9, "{label}: {m:?}");
        // Generalised NC: no within-class spread, every pair of normalised means (and of
        // normalised classifier rows) at the ETF distance sqrt(2K/(K-1)), the classifier
        // self-dual. The energies are then those of the simplex, their minimum for K <= d+1.
        assert_eq!(m.nc1_trace_ratio, Some(0.0), "{label}");
        let distance_sq = 2.0 * k as f64 / (k - 1) as f64;
        let (log, riesz) = (-0.5 * distance_sq.ln(), distance_sq.powf(-0.5));
        for (key, got, expected) in [
            ("gnc2_log_h", m.gnc2_log_h, log),
            ("gnc2_riesz_h", m.gnc2_riesz_h, riesz),
            ("gnc2_log_w", m.gnc2_log_w, log),
            ("gnc2_riesz_w", m.gnc2_riesz_w, riesz),
        ] {
            let got = got.unwrap();
            assert!(
                (got - expected).abs() < 1e-10,
                "{key} {label}: {got} vs {expected}"
            );
        }
        assert!(m.gnc3.unwrap().abs() < 1e-12, "gnc3 {label}: {:?}", m.gnc3);
        // Each normalised row is K/(K-1) from the hull of the others (their centroid
        // -x_k/(K-1)): the largest margin K unit vectors can have.
        let margin = m.gnc2_margin_w.unwrap();
        let expected = k as f64 / (k - 1) as f64;
        assert!(
            (margin - expected).abs() < 1e-10,
            "gnc2_margin_w {label}: {margin}"
        );
    }
}

/// The simplex ETF minimises both energies (K <= d+1): moving one class mean off it raises
/// them, and the numbers at K = 10 are the closed forms -log(20/9)/2 and (20/9)^-1/2.
#[test]
fn moving_a_mean_off_the_simplex_raises_the_energies() {
    let mut rng = StdRng::seed_from_u64(11);
    let (k, d) = (10, 12);
    let means = simplex_etf(&mut rng, k, d, 2.0);
    let energies = |means: &[f64]| {
        let labels: Vec<u32> = (0..k as u32).collect();
        let m = compute_metrics(means, &labels, d, k, None, None).unwrap();
        (m.gnc2_log_h.unwrap(), m.gnc2_riesz_h.unwrap())
    };
    let (log, riesz) = energies(&means);
    assert!((log - -0.399_253_848).abs() < 1e-8, "{log}");
    assert!((riesz - 0.670_820_393).abs() < 1e-8, "{riesz}");
    for scale in [0.05, 0.3] {
        let mut moved = means.clone();
        let direction = gaussian(&mut rng, d);
        for i in 0..d {
            moved[i] += scale * direction[i];
        }
        let (log2, riesz2) = energies(&moved);
        assert!(
            log2 > log && riesz2 > riesz,
            "scale {scale}: {log2} {riesz2}"
        );
    }
}

#[test]
fn hand_computed_one_dimensional_case() {
    // Class 0 at -1 +/- 0.5, class 1 at +1 +/- 0.5 (d = 1, K = 2).
    let features = [-1.5, -0.5, 0.5, 1.5];
    let labels = [0u32, 0, 1, 1];
    // Sigma_W = 0.25, M = [-1, 1], Sigma_B = (1 + 1) / 2 = 1, nc1 = 0.25 / 1 / K = 0.125.
    // W = [-1, 1], b = [1.2, 0]: class 1 iff 2h > 1.2, so h = 0.5 is put in class 0 while
    // the nearest mean is class 1's: nc4 = 1/4, accuracy 3/4, ncc_accuracy 1.
    let clf = Classifier::new(2, 1, vec![-1.0, 1.0], Some(vec![1.2, 0.0])).unwrap();
    let m = compute_metrics(&features, &labels, 1, 2, Some(&clf), None).unwrap();
    assert_close(m.nc1, 0.125, 1e-14, "nc1");
    assert_eq!(m.nc4, Some(0.25));
    assert_eq!(m.accuracy, Some(0.75));
    assert_eq!(m.ncc_accuracy, 1.0);
    // W mu_G + b = b since mu_G = 0.
    assert_close(m.bias_relation.unwrap(), 1.2, 1e-14, "bias_relation");
    // var_k = 0.25, ||mu_0 - mu_1||^2 = 4: (0.25 + 0.25) / 8.
    assert_close(m.cdnv, 0.0625, 1e-14, "cdnv");
    assert!(m.nc2.unwrap() < 1e-14 && m.nc3.unwrap() < 1e-14);
    // A classifier pointing the wrong way: Wc M = -P after normalising, so nc3 = ||-2P|| = 2.
    let flipped = Classifier::new(2, 1, vec![1.0, -1.0], None).unwrap();
    let m = compute_metrics(&features, &labels, 1, 2, Some(&flipped), None).unwrap();
    assert_close(m.nc3.unwrap(), 2.0, 1e-14, "nc3");
    assert_eq!(m.accuracy, Some(0.0));
    assert_eq!(m.nc4, Some(1.0));
}

#[test]
fn rotation_scaling_and_permutation_change_nothing() {
    let mut rng = StdRng::seed_from_u64(5);
    let (k, d) = (6, 9);
    let data = random_data(&mut rng, k, d, 1.0, 0.8);
    let clf = random_classifier(&mut rng, k, d);
    let base = metrics_of(&data, Some(&clf));

    let q = random_rotation(&mut rng, d);
    let rotate = |v: &[f64]| -> Vec<f64> {
        v.chunks(d)
            .flat_map(|row| {
                (0..d)
                    .map(|i| (0..d).map(|j| q[(i, j)] * row[j]).sum::<f64>())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let rotated = Data {
        features: rotate(&data.features),
        labels: data.labels.clone(),
        dim: d,
        classes: k,
    };
    let rotated_clf =
        Classifier::new(k, d, rotate(clf.weight()), Some(clf.bias().to_vec())).unwrap();
    assert_metrics_close(&metrics_of(&rotated, Some(&rotated_clf)), &base, 1e-9);

    let scaled = Data {
        features: data.features.iter().map(|x| 37.5 * x).collect(),
        labels: data.labels.clone(),
        dim: d,
        classes: k,
    };
    assert_close(
        metrics_of(&scaled, None).nc1,
        base.nc1,
        1e-12,
        "nc1 under scaling",
    );

    let n = data.labels.len();
    let order: Vec<usize> = (0..n).rev().collect();
    let permuted = Data {
        features: order
            .iter()
            .flat_map(|&r| data.features[r * d..(r + 1) * d].to_vec())
            .collect(),
        labels: order.iter().map(|&r| data.labels[r]).collect(),
        dim: d,
        classes: k,
    };
    assert_metrics_close(&metrics_of(&permuted, Some(&clf)), &base, 1e-12);
}

#[test]
fn merged_shards_equal_one_pass() {
    let mut rng = StdRng::seed_from_u64(9);
    let (k, d) = (4, 7);
    let data = random_data(&mut rng, k, d, 1.0, 0.5);
    let clf = random_classifier(&mut rng, k, d);
    let whole = metrics_of(&data, Some(&clf));
    let split = data.labels.len() / 3;
    let (fa, fb) = data.features.split_at(split * d);
    let (la, lb) = data.labels.split_at(split);
    let mut first = MeanAccumulator::new(k, d);
    first.add_batch(fa, la).unwrap();
    let mut second = MeanAccumulator::new(k, d);
    // Uneven batches, in a different order.
    second.add_batch(&fb[..5 * d], &lb[..5]).unwrap();
    second.add_batch(&fb[5 * d..], &lb[5..]).unwrap();
    second.merge(&first).unwrap();
    let means = second.finish().unwrap();
    let plan = MetricsPlan::new(&means, Some(&clf), None).unwrap();
    let mut shard_a = plan.accumulator();
    shard_a.add_batch(fb, lb).unwrap();
    let mut shard_b = plan.accumulator();
    shard_b.add_batch(fa, la).unwrap();
    shard_a.merge(&shard_b).unwrap();
    assert_metrics_close(&shard_a.finish().unwrap(), &whole, 1e-12);
}

#[test]
fn phase_two_must_see_what_phase_one_saw() {
    let mut rng = StdRng::seed_from_u64(2);
    let data = random_data(&mut rng, 3, 4, 1.0, 0.5);
    let mut acc = MeanAccumulator::new(3, 4);
    acc.add_batch(&data.features, &data.labels).unwrap();
    let means = acc.finish().unwrap();
    let plan = MetricsPlan::new(&means, None, None).unwrap();
    let mut scatter = plan.accumulator();
    scatter
        .add_batch(&data.features[..4 * 3], &data.labels[..3])
        .unwrap();
    assert!(matches!(scatter.finish(), Err(Error::Mismatch(_))));
}

#[test]
fn large_common_offset_does_not_cancel() {
    let mut rng = StdRng::seed_from_u64(13);
    let (k, d) = (5, 16);
    let data = random_data(&mut rng, k, d, 1.0, 1e-3);
    let clf = random_classifier(&mut rng, k, d);
    let shifted = Data {
        features: data.features.iter().map(|x| x + 1e6).collect(),
        labels: data.labels.clone(),
        dim: d,
        classes: k,
    };
    let plain = metrics_of(&data, Some(&clf));
    let offset = metrics_of(&shifted, Some(&clf));
    assert!(
        plain.nc1 < 1e-4,
        "the case must be nearly collapsed: {}",
        plain.nc1
    );
    assert_close(offset.nc1, plain.nc1, 1e-6, "nc1 with a 1e6 offset");
    assert!(
        (offset.nc1 - plain.nc1).abs() <= 1e-6 * plain.nc1,
        "relative: {} vs {}",
        offset.nc1,
        plain.nc1
    );
    assert!((offset.cdnv - plain.cdnv).abs() <= 1e-6 * plain.cdnv);
    assert_eq!(offset.ncc_accuracy, plain.ncc_accuracy);
}

#[test]
fn f32_input_accumulates_in_f64() {
    let mut rng = StdRng::seed_from_u64(17);
    let data = random_data(&mut rng, 4, 6, 1.0, 0.5);
    let as_f32: Vec<f32> = data.features.iter().map(|&x| x as f32).collect();
    let widened = Data {
        features: as_f32.iter().map(|&x| x as f64).collect(),
        labels: data.labels.clone(),
        dim: 6,
        classes: 4,
    };
    let from_f32 = compute_metrics(&as_f32, &data.labels, 6, 4, None, None).unwrap();
    assert_metrics_close(&from_f32, &metrics_of(&widened, None), 1e-12);
}

#[test]
fn bad_input_is_an_error_not_a_number() {
    let features = [0.0, 1.0, 2.0, 3.0];
    assert!(matches!(
        compute_metrics(&features, &[0, 1, 2, 0], 1, 2, None, None),
        Err(Error::LabelOutOfRange {
            label: 2,
            row: 2,
            num_classes: 2
        })
    ));
    assert!(matches!(
        compute_metrics(&features, &[0, 0, 0, 0], 1, 2, None, None),
        Err(Error::EmptyClass { class: 1, .. })
    ));
    assert!(matches!(
        compute_metrics(&features, &[0, 0, 0, 0], 1, 1, None, None),
        Err(Error::TooFewClasses(1))
    ));
    assert!(matches!(
        compute_metrics(&features, &[0, 1, 0], 1, 2, None, None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        compute_metrics(&[0.0, f64::NAN, 2.0, 3.0], &[0, 1, 0, 1], 1, 2, None, None),
        Err(Error::NonFinite { row: 1, .. })
    ));
    assert!(matches!(
        compute_metrics(
            &[0.0, 1.0, 2.0, f64::NEG_INFINITY],
            &[0, 1, 0, 1],
            1,
            2,
            None,
            None
        ),
        Err(Error::NonFinite { row: 3, col: 0, .. })
    ));
    // +Inf and -Inf in one class sum to NaN; the element named is still the first bad one.
    let mut wide = vec![0.5f32; 3 * 600];
    wide[2 * 600 + 7] = f32::INFINITY;
    wide[600 + 599] = f32::NEG_INFINITY;
    assert!(matches!(
        compute_metrics(&wide, &[1, 1, 1], 600, 2, None, None),
        Err(Error::NonFinite {
            row: 1,
            col: 599,
            ..
        })
    ));
    // A later batch names its row counted over all batches.
    let mut acc = MeanAccumulator::new(2, 2);
    acc.add_batch(&[0.0f64, 1.0, 2.0, 3.0], &[0, 1]).unwrap();
    assert!(matches!(
        acc.add_batch(&[0.0f64, 1.0, 2.0, f64::NAN], &[0, 1]),
        Err(Error::NonFinite { row: 3, col: 1, .. })
    ));
    // Finite features whose class sum overflows f64 are refused, not turned into Inf means.
    assert!(matches!(
        compute_metrics(&[1e308, 1e308, 0.0, 1.0], &[0, 0, 1, 1], 1, 2, None, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        compute_metrics(&[1.0, 1.0, 1.0, 1.0], &[0, 1, 0, 1], 1, 2, None, None),
        Err(Error::DegenerateMeans)
    ));
    assert!(Classifier::new(2, 2, vec![0.0; 3], None).is_err());
    assert!(Classifier::new(2, 1, vec![0.0; 2], Some(vec![0.0])).is_err());
    assert!(Classifier::new(2, 1, vec![f64::INFINITY, 0.0], None).is_err());
    let clf = Classifier::new(3, 1, vec![0.0; 3], None).unwrap();
    assert!(matches!(
        compute_metrics(&features, &[0, 1, 0, 1], 1, 2, Some(&clf), None),
        Err(Error::Mismatch(_))
    ));
}

/// Features read in place from a file are little-endian bytes at any alignment: they must give
/// exactly the metrics of the same values held as f32 / f64.
#[test]
fn unaligned_little_endian_features_give_the_same_metrics() {
    let mut rng = StdRng::seed_from_u64(41);
    let data = random_data(&mut rng, 6, 9, 2.0, 0.7);
    let clf = Classifier::new(6, 9, gaussian(&mut rng, 54), Some(gaussian(&mut rng, 6))).unwrap();

    let as_f32: Vec<f32> = data.features.iter().map(|&x| x as f32).collect();
    // Two bytes of padding first, as in an np.savez member whose data start at offset 190.
    let mut bytes32 = vec![0u8; 2];
    bytes32.extend(as_f32.iter().flat_map(|x| x.to_le_bytes()));
    let le32 = LeF32::slice_from_bytes(&bytes32[2..]).unwrap();
    assert_eq!(le32.len(), as_f32.len());
    let expected = compute_metrics(&as_f32, &data.labels, 9, 6, Some(&clf), None).unwrap();
    let got = compute_metrics(le32, &data.labels, 9, 6, Some(&clf), None).unwrap();
    assert_eq!(got, expected);

    let mut bytes64 = vec![0u8; 3];
    bytes64.extend(data.features.iter().flat_map(|x| x.to_le_bytes()));
    let le64 = LeF64::slice_from_bytes(&bytes64[3..]).unwrap();
    let expected = compute_metrics(&data.features, &data.labels, 9, 6, Some(&clf), None).unwrap();
    let got = compute_metrics(le64, &data.labels, 9, 6, Some(&clf), None).unwrap();
    assert_eq!(got, expected);

    assert!(LeF32::slice_from_bytes(&bytes32[..7]).is_none());
    assert!(LeF64::slice_from_bytes(&bytes64[..12]).is_none());
}

/// argmax_k (W h + b)_k in plain f64, first class on ties: the decision f32 features with a
/// classifier must reproduce, whatever route the engine takes to it.
fn decisions(features: &[f64], dim: usize, clf: &Classifier) -> Vec<u32> {
    let k = clf.num_classes();
    features
        .chunks(dim)
        .map(|h| {
            let mut best = (0, f64::NEG_INFINITY);
            for c in 0..k {
                let w = &clf.weight()[c * dim..(c + 1) * dim];
                let z = w.iter().zip(h).map(|(a, b)| a * b).sum::<f64>() + clf.bias()[c];
                if z > best.1 {
                    best = (c, z);
                }
            }
            best.0 as u32
        })
        .collect()
}

/// f32 features with a classifier take the f32-logit route (a proved error bound, f64 for
/// the classes it cannot separate). Labelled with the exact f64 decisions, every sample must
/// count as correct, also where two classifier rows differ at or below f32 resolution (a
/// route that trusted f32 logits gets some of those wrong) and where f32 products overflow;
/// the same values given as f64 (the all-f64 route) must agree exactly.
#[test]
fn f32_logits_reproduce_the_exact_decisions() {
    let mut rng = StdRng::seed_from_u64(23);
    let (k, d, n) = (5, 12, 600);
    // Rows 2 and 3 apart by 1e-10 (f32 rounds them to the same row) or 1e-7 relative (f32
    // products of that accuracy order them wrongly now and then); at 1e19, f32 W h overflows.
    for (scale, apart) in [(1.0f64, 1e-10), (1.0, 1e-7), (1e19, 1e-7)] {
        let mut weight = gaussian(&mut rng, k * d);
        for j in 0..d {
            weight[2 * d + j] *= 4.0;
            weight[3 * d + j] = weight[2 * d + j] * (1.0 + apart * rng.random_range(-1.0..1.0));
        }
        let weight: Vec<f64> = weight.iter().map(|w| w * scale).collect();
        let mut bias = gaussian(&mut rng, k);
        bias[3] = bias[2];
        let clf = Classifier::new(k, d, weight, Some(bias)).unwrap();
        let as_f32: Vec<f32> = gaussian(&mut rng, n * d)
            .iter()
            .map(|&x| (x * scale) as f32)
            .collect();
        let widened: Vec<f64> = as_f32.iter().map(|&x| f64::from(x)).collect();
        let labels = decisions(&widened, d, &clf);
        let counts = (0..k as u32).map(|c| labels.iter().filter(|&&y| y == c).count());
        let counts: Vec<usize> = counts.collect();
        assert!(
            counts[2] >= 20 && counts[3] >= 20,
            "near-tied classes too rare: {counts:?}"
        );
        assert!(!counts.contains(&0), "every class must occur: {counts:?}");
        let via_f32 = compute_metrics(&as_f32, &labels, d, k, Some(&clf), None).unwrap();
        let via_f64 = compute_metrics(&widened, &labels, d, k, Some(&clf), None).unwrap();
        assert_eq!(via_f32.accuracy, Some(1.0), "scale {scale}");
        assert_eq!(via_f64.accuracy, Some(1.0), "scale {scale}");
        assert_eq!(via_f32.nc4, via_f64.nc4, "scale {scale}");
        assert_metrics_close(&via_f32, &via_f64, 1e-12);
    }
}

/// Exact ties (two identical classifier rows and biases) go to the first class on both
/// routes, and random data give identical decisions on both.
#[test]
fn f32_logits_break_ties_like_the_f64_path() {
    let mut rng = StdRng::seed_from_u64(29);
    for &(k, d) in &[(3, 5), (6, 20), (10, 64), (4, 300)] {
        let data = random_data(&mut rng, k, d, 1.0, 0.7);
        let as_f32: Vec<f32> = data.features.iter().map(|&x| x as f32).collect();
        let widened = Data {
            features: as_f32.iter().map(|&x| f64::from(x)).collect(),
            ..data
        };
        let mut weight = gaussian(&mut rng, k * d);
        let mut bias = gaussian(&mut rng, k);
        weight.copy_within(0..d, d);
        bias[1] = bias[0];
        let clf = Classifier::new(k, d, weight, Some(bias)).unwrap();
        let via_f32 = compute_metrics(&as_f32, &widened.labels, d, k, Some(&clf), None).unwrap();
        let via_f64 = metrics_of(&widened, Some(&clf));
        assert_eq!(
            (via_f32.accuracy, via_f32.nc4),
            (via_f64.accuracy, via_f64.nc4),
            "K={k}, d={d}"
        );
        assert_metrics_close(&via_f32, &brute_force(&widened, Some(&clf), None).0, 1e-9);
        // Class 1 duplicates class 0, so no sample is ever predicted 1.
        let predicted_one = decisions(&widened.features, d, &clf).contains(&1);
        assert!(!predicted_one);
    }
}

/// The projections decide a sample only where the part of W outside the span of the class
/// means cannot change the decision. Here W carries large components outside the span of
/// the class centres, along which the samples spread too, so that part moves many
/// decisions; labelled with the exact f64 decisions, every sample must still count as
/// correct, for f64 and for f32 features (a route that trusted the projections alone gets
/// many of them wrong).
#[test]
fn classifier_parts_outside_the_means_span_are_not_ignored() {
    let mut rng = StdRng::seed_from_u64(31);
    let (k, d, n, span) = (4, 12, 800, 3);
    let centres: Vec<f64> = (0..k * d)
        .map(|at| {
            if at % d < span {
                4.0 * rng.sample::<f64, _>(StandardNormal)
            } else {
                0.0
            }
        })
        .collect();
    let weight: Vec<f64> = (0..k * d)
        .map(|at| {
            let off_span = if at % d < span { 0.0 } else { 1.5 };
            centres[at] + off_span * rng.sample::<f64, _>(StandardNormal)
        })
        .collect();
    let clf = Classifier::new(k, d, weight, Some(gaussian(&mut rng, k))).unwrap();
    let as_f32: Vec<f32> = (0..n)
        .flat_map(|_| {
            let y = rng.random_range(0..k);
            let spread: Vec<f64> = (0..d).map(|i| if i < span { 0.3 } else { 1.0 }).collect();
            (0..d)
                .map(|i| {
                    (centres[y * d + i] + spread[i] * rng.sample::<f64, _>(StandardNormal)) as f32
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let widened: Vec<f64> = as_f32.iter().map(|&x| f64::from(x)).collect();
    let labels = decisions(&widened, d, &clf);
    let data = Data {
        features: widened.clone(),
        labels: labels.clone(),
        dim: d,
        classes: k,
    };
    let via_f64 = metrics_of(&data, Some(&clf));
    let via_f32 = compute_metrics(&as_f32, &labels, d, k, Some(&clf), None).unwrap();
    assert_eq!(via_f64.accuracy, Some(1.0));
    assert_eq!(via_f32.accuracy, Some(1.0));
    assert_metrics_close(&via_f64, &brute_force(&data, Some(&clf), None).0, 1e-9);
}

#[test]
fn split_columns_name_the_json_fields_they_hold() {
    // Every field a distinct value, so a swapped or misnamed column shows.
    let m = NcMetrics {
        nc1: 0.11,
        nc2: Some(0.12),
        nc3: Some(0.13),
        nc4: Some(0.14),
        bias_relation: Some(0.15),
        accuracy: Some(0.16),
        ncc_accuracy: 0.17,
        equinorm_w: Some(0.18),
        equinorm_h: 0.19,
        equiangle_w: None,
        equiangle_h: 0.21,
        nc2_means: 0.22,
        cdnv: 0.23,
        num_samples: 24,
        num_classes: 25,
        dim: 26,
        sigma_b_rank: 27,
        convention: Default::default(),
        nc1_trace_ratio: Some(0.28),
        gnc2_log_h: Some(0.29),
        gnc2_riesz_h: Some(0.30),
        gnc2_log_w: None,
        gnc2_riesz_w: None,
        gnc3: None,
        gnc2_margin_w: None,
    };
    let json = serde_json::to_value(&m).unwrap();
    let values = m.split_column_values();
    for (name, value) in NcMetrics::SPLIT_COLUMNS.iter().zip(values) {
        assert_eq!(json[name].as_f64(), value, "{name}");
        assert_eq!(m.split_column(name), value, "{name}");
    }
    assert_eq!(
        m.split_column("accuracy"),
        None,
        "accuracy is the run's own column"
    );
    assert_eq!(m.split_column("nc5"), None);
}

#[test]
fn classifier_predictions_are_the_first_largest_logit() {
    let w = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, 0.0];
    let clf = Classifier::new(4, 2, w.clone(), Some(vec![0.0, 0.0, -1.0, 0.5])).unwrap();
    let brute = |h: &[f64]| {
        let z: Vec<f64> = (0..4)
            .map(|k| w[2 * k] * h[0] + w[2 * k + 1] * h[1] + clf.bias()[k])
            .collect();
        let top = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        z.iter().position(|&v| v == top).unwrap()
    };
    for h in [
        [2.0, 0.5],
        [0.5, 2.0],
        [3.0, 3.0],
        [-2.0, 0.0],
        [0.0, 0.0],
        [1.0, 1.0],
        [-0.5, -0.5],
    ] {
        assert_eq!(clf.predict(&h), brute(&h), "{h:?}");
    }
    // Ties go to the lowest class: h = (1, 1) gives logits (1, 1, 1, -0.5).
    assert_eq!(clf.predict(&[1.0, 1.0]), 0);
    // h = (0, 0) gives (0, 0, -1, 0.5): class 3.
    assert_eq!(clf.predict(&[0.0, 0.0]), 3);
}

/// Samples around K centres; each labelled with its own centre's class with probability
/// `faithful`, else with a uniformly random class: labels agree with the decisions of a
/// classifier aligned with the centres well above chance (0.7) or at chance (0.0).
fn mislabelled(
    rng: &mut StdRng,
    k: usize,
    d: usize,
    n: usize,
    spread: f64,
    faithful: f64,
) -> (Vec<f64>, Vec<u32>, Vec<f64>) {
    let centres: Vec<f64> = gaussian(rng, k * d).iter().map(|c| 3.0 * c).collect();
    let mut features = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let own = i % k;
        features.extend(
            (0..d).map(|j| centres[own * d + j] + spread * rng.sample::<f64, _>(StandardNormal)),
        );
        let label = if rng.random_bool(faithful) {
            own
        } else {
            rng.random_range(0..k)
        };
        labels.push(label as u32);
    }
    (features, labels, centres)
}

/// Every decision route (projections, f32 logits under their bound, f64 logits; f32 values
/// read as f32, as f64 and as unaligned little-endian bytes) must count exactly the
/// brute-force decisions, on labels that agree with the classifier only in part or not at
/// all, so that a route deciding any sample differently shows in `accuracy` or `nc4`.
#[test]
fn every_route_counts_the_brute_force_decisions_on_unrelated_labels() {
    let mut rng = StdRng::seed_from_u64(43);
    // d = 24 > 2 (K-1): projections first; d = 6 <= 2 (K-1): f32 logits straight away.
    for &(k, d) in &[(5, 24), (6, 6)] {
        for faithful in [0.7, 0.0] {
            for (name, spread, aligned) in [
                ("collapsed", 0.05, true),
                ("spread", 1.5, true),
                ("random W", 1.0, false),
            ] {
                let (features, labels, centres) =
                    mislabelled(&mut rng, k, d, 700, spread, faithful);
                let weight = if aligned {
                    centres
                        .iter()
                        .map(|c| c + 0.01 * rng.sample::<f64, _>(StandardNormal))
                        .collect()
                } else {
                    gaussian(&mut rng, k * d)
                };
                let clf = Classifier::new(k, d, weight, Some(gaussian(&mut rng, k))).unwrap();
                let as_f32: Vec<f32> = features.iter().map(|&x| x as f32).collect();
                let widened: Vec<f64> = as_f32.iter().map(|&x| f64::from(x)).collect();
                let data = Data {
                    features: widened.clone(),
                    labels: labels.clone(),
                    dim: d,
                    classes: k,
                };
                let (expected, _) = brute_force(&data, Some(&clf), None);
                let case = format!("K={k}, d={d}, {name}, labels faithful {faithful}");
                if faithful > 0.0 && aligned {
                    assert!(
                        expected.accuracy.unwrap() > 0.6,
                        "{case}: {:?}",
                        expected.accuracy
                    );
                } else {
                    assert!(
                        expected.accuracy.unwrap() < 0.45,
                        "{case}: {:?}",
                        expected.accuracy
                    );
                }
                let bytes: Vec<u8> = std::iter::once(0u8)
                    .chain(as_f32.iter().flat_map(|x| x.to_le_bytes()))
                    .collect();
                let le32 = LeF32::slice_from_bytes(&bytes[1..]).unwrap();
                let routes = [
                    (
                        "f64",
                        compute_metrics(&widened, &labels, d, k, Some(&clf), None).unwrap(),
                    ),
                    (
                        "f32",
                        compute_metrics(&as_f32, &labels, d, k, Some(&clf), None).unwrap(),
                    ),
                    (
                        "LeF32",
                        compute_metrics(le32, &labels, d, k, Some(&clf), None).unwrap(),
                    ),
                ];
                for (route, got) in routes {
                    assert_eq!(got.accuracy, expected.accuracy, "{case}, {route} features");
                    assert_eq!(got.nc4, expected.nc4, "{case}, {route} features");
                    assert_eq!(
                        got.ncc_accuracy, expected.ncc_accuracy,
                        "{case}, {route} features"
                    );
                }
            }
        }
    }
}

/// Three shards of uneven sizes and an empty one, merged in both phases (as accumulators and
/// as states), give the one-pass metrics; the merged counters carry on: a later batch names
/// its bad row counted over every merged row, and a merged phase-1 state reads back.
#[test]
fn uneven_shards_with_an_empty_one_merge_to_one_pass() {
    let mut rng = StdRng::seed_from_u64(47);
    let (k, d) = (4, 6);
    let data = random_data(&mut rng, k, d, 1.0, 0.6);
    let clf = random_classifier(&mut rng, k, d);
    let whole = metrics_of(&data, Some(&clf));
    let n = data.labels.len();
    let cuts = [0, 3, 3, n / 2, n];
    let shard = |s: usize| {
        (
            &data.features[cuts[s] * d..cuts[s + 1] * d],
            &data.labels[cuts[s]..cuts[s + 1]],
        )
    };

    let mut phase1: Vec<MeanAccumulator> = (0..4)
        .map(|s| {
            let mut acc = MeanAccumulator::new(k, d);
            let (f, l) = shard(s);
            acc.add_batch(f, l).unwrap();
            acc
        })
        .collect();
    let mut merged = phase1.remove(3);
    for other in &phase1 {
        merged.merge(other).unwrap();
    }
    let state = serde_json::to_string(&merged).unwrap();
    let mut read_back: MeanAccumulator = serde_json::from_str(&state).unwrap();
    assert_eq!(read_back, merged);
    let bad = read_back.add_batch(&[0.0; 3 * 6], &[0, 1, 9]);
    assert!(
        matches!(bad, Err(Error::LabelOutOfRange { label: 9, row, .. }) if row == n + 2),
        "{bad:?}"
    );
    let means = merged.finish().unwrap();
    assert_eq!(means.counts().unwrap().iter().sum::<u64>(), n as u64);

    let plan = MetricsPlan::new(&means, Some(&clf), None).unwrap();
    let mut phase2 = plan.accumulator();
    let (f, l) = shard(2);
    phase2.add_batch(f, l).unwrap();
    for s in [0, 1, 3] {
        let mut acc = plan.accumulator();
        let (f, l) = shard(s);
        acc.add_batch(f, l).unwrap();
        if s == 3 {
            phase2.merge_state(acc.state()).unwrap();
        } else {
            phase2.merge(&acc).unwrap();
        }
    }
    let mut carried_on =
        nc_math::metrics::ScatterAccumulator::from_state(&plan, phase2.state().clone()).unwrap();
    let bad = carried_on.add_batch(&[0.0; 2 * 6], &[4, 0]);
    assert!(
        matches!(bad, Err(Error::LabelOutOfRange { label: 4, row, .. }) if row == n),
        "{bad:?}"
    );
    let bad = carried_on.add_batch(&[0.0; 6], &[0, 1]);
    assert!(matches!(bad, Err(Error::Shape { .. })), "{bad:?}");
    assert_metrics_close(&phase2.finish().unwrap(), &whole, 1e-12);
}

/// Means given directly: K = 2 is allowed, the global mean is the plain mean of the class
/// means, and they drive the NCC rule as the reference; means from samples keep their
/// counts and give the sample mean.
#[test]
fn class_means_given_directly_or_from_samples() {
    let given = ClassMeans::from_means(2, 3, vec![1.0, 2.0, 3.0, -3.0, 0.0, 5.0]).unwrap();
    assert_eq!(
        (given.num_classes(), given.dim(), given.counts()),
        (2, 3, None)
    );
    assert_eq!(given.means(), &[1.0, 2.0, 3.0, -3.0, 0.0, 5.0]);
    assert_eq!(given.mean(1), &[-3.0, 0.0, 5.0]);
    assert_eq!(given.global_mean(), &[-1.0, 1.0, 4.0]);
    assert!(matches!(
        ClassMeans::from_means(1, 3, vec![0.0; 3]),
        Err(Error::TooFewClasses(1))
    ));
    assert!(matches!(
        ClassMeans::from_means(2, 3, vec![0.0; 5]),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        ClassMeans::from_means(2, 1, vec![0.0, f64::NAN]),
        Err(Error::NonFinite { .. })
    ));

    // Class 0: three samples at 0, 1, 2 (mean 1); class 1: one sample at 9. Sample mean 3.
    let mut acc = MeanAccumulator::new(2, 1);
    acc.add_batch(&[0.0, 9.0, 1.0, 2.0], &[0, 1, 0, 0]).unwrap();
    let own = acc.finish().unwrap();
    assert_eq!(
        (own.num_classes(), own.dim(), own.counts()),
        (2, 1, Some(&[3u64, 1][..]))
    );
    assert_eq!(own.means(), &[1.0, 9.0]);
    assert_eq!(own.global_mean(), &[3.0]);

    // As the NCC reference, means at (8, 10) keep 0, 1 and 2 in class 0 (right for them)
    // and tie the sample at 9 between the two, a tie that goes to class 0 (wrong for it):
    // ncc accuracy 3/4, where the own means (1, 9) get all four right.
    let features = [0.0, 9.0, 1.0, 2.0];
    let labels = [0u32, 1, 0, 0];
    let reference = ClassMeans::from_means(2, 1, vec![8.0, 10.0]).unwrap();
    let m = compute_metrics(&features, &labels, 1, 2, None, Some(&reference)).unwrap();
    assert_eq!(m.ncc_accuracy, 0.75);
    let own_rule = compute_metrics(&features, &labels, 1, 2, None, None).unwrap();
    assert_eq!(own_rule.ncc_accuracy, 1.0);
    let clf = Classifier::new(2, 1, vec![1.0, -1.0], None).unwrap();
    assert_eq!((clf.num_classes(), clf.dim()), (2, 1));
}

/// The rank cutoff keeps singular values of the centred means above 1e-8 of the largest:
/// means whose two singular values have the ratio 1e-8 (1 +/- 1e-6) keep 2 and 1 directions.
#[test]
fn the_rank_cutoff_sits_at_1e_8_of_the_largest_singular_value() {
    // mu_0 = (1, t), mu_1 = (-1, t), mu_2 = (0, -2t): orthogonal rows of M with norms
    // sqrt(2) and sqrt(6) t, so the ratio of singular values is sqrt(3) t.
    for (ratio, rank) in [(1e-8 * (1.0 + 1e-6), 2), (1e-8 * (1.0 - 1e-6), 1)] {
        let t = ratio / 3f64.sqrt();
        let features = [1.0, t, -1.0, t, 0.0, -2.0 * t];
        let m = compute_metrics(&features, &[0, 1, 2], 2, 3, None, None).unwrap();
        assert_eq!(m.sigma_b_rank, rank, "ratio {ratio:e}");
    }
}

/// Every element type converts to the nearest f32 and to its f64 value (`to_f32` feeds the
/// f32 logits, `to_f64` everything else).
#[test]
fn feature_elements_convert_to_the_nearest_f32_and_their_f64_value() {
    use nc_math::metrics::Feature;
    // 1 + 2^-30 is no f32: it rounds to 1; 0.1 rounds to the f32 nearest 0.1.
    let off_grid = 1.0 + 2f64.powi(-30);
    assert_eq!(Feature::to_f32(off_grid), 1.0f32);
    assert_eq!(Feature::to_f32(0.1f64), 0.1f32);
    assert_eq!(LeF64(0.1f64.to_le_bytes()).to_f32(), 0.1f32);
    assert_eq!(LeF64((-off_grid).to_le_bytes()).to_f32(), -1.0f32);
    assert_eq!(LeF32(0.1f32.to_le_bytes()).to_f32(), 0.1f32);
    assert_eq!(Feature::to_f32(-2.5f32), -2.5f32);
    assert_eq!(LeF64(off_grid.to_le_bytes()).to_f64(), off_grid);
    assert_eq!(LeF32(0.1f32.to_le_bytes()).to_f64(), f64::from(0.1f32));
    assert_eq!(Feature::to_f64(0.1f32), f64::from(0.1f32));
    const { assert!(<f32 as Feature>::EXACT_F32 && <LeF32 as Feature>::EXACT_F32) };
    const { assert!(!<f64 as Feature>::EXACT_F32 && !<LeF64 as Feature>::EXACT_F32) };
}
