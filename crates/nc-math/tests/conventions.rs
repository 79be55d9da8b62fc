//! Each named convention against a small dense reimplementation of its codebase's formulas
//! in f64, written here from the reading of that code that docs/metrics.md quotes
//! ("Conventions"): dense Sigma_W, the pseudo-inverse of Sigma_B from its eigenpairs with the
//! library's cutoff rule, W used as that code uses it, NC4 from the
//! argmax and argmin over every sample. The fixture separates the conventions: unequal class
//! counts (global mean), classifier rows sharing a large common component (W centring), a
//! between-class direction 1e-3 of the largest (pinv cutoffs), a bias that changes decisions.

// The reference spells the formulas index by index, as the codebases it mirrors do.
#![allow(clippy::needless_range_loop)]
use faer::Mat;
use nc_math::metrics::convention::{PinvCutoff, WeightCentring};
use nc_math::metrics::{
    compute_metrics_with, Classifier, Convention, NcMetrics, Preset, RANK_CUTOFF,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

struct Fixture {
    features: Vec<f64>,
    labels: Vec<u32>,
    k: usize,
    d: usize,
    clf: Classifier,
}

/// K = 5 classes in d = 12 with counts 3..27, class centres spanning four directions
/// with scales 10, 6, 3 and 0.008 (so Sigma_B's smallest eigenvalue is ~1e-7 of the
/// largest), noise 0.5; W = centres + a common row component + noise, and a bias.
fn fixture(seed: u64) -> Fixture {
    let mut rng = StdRng::seed_from_u64(seed);
    let (k, d) = (5, 12);
    let normal = |rng: &mut StdRng| rng.sample::<f64, _>(StandardNormal);
    let scales = [10.0, 6.0, 3.0, 0.008];
    let directions: Vec<Vec<f64>> = (0..4)
        .map(|_| (0..d).map(|_| normal(&mut rng)).collect())
        .collect();
    let offset: Vec<f64> = (0..d).map(|_| 2.0 * normal(&mut rng)).collect();
    let coefficients: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..4).map(|_| normal(&mut rng)).collect())
        .collect();
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            (0..d)
                .map(|i| {
                    offset[i]
                        + (0..4)
                            .map(|j| scales[j] * coefficients[c][j] * directions[j][i])
                            .sum::<f64>()
                })
                .collect()
        })
        .collect();
    // Each class's noise has mean zero, so the class means are the centres (up to
    // rounding) and the 0.008 direction is not buried under the means' sampling noise.
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for (c, count) in [3, 27, 8, 15, 11].into_iter().enumerate() {
        let noise: Vec<Vec<f64>> = (0..count)
            .map(|_| (0..d).map(|_| 0.5 * normal(&mut rng)).collect())
            .collect();
        let noise_mean: Vec<f64> = (0..d)
            .map(|i| noise.iter().map(|z| z[i]).sum::<f64>() / count as f64)
            .collect();
        for z in &noise {
            features.extend((0..d).map(|i| centres[c][i] + z[i] - noise_mean[i]));
            labels.push(c as u32);
        }
    }
    let common: Vec<f64> = (0..d).map(|_| 3.0 * normal(&mut rng)).collect();
    let weight: Vec<f64> = (0..k * d)
        .map(|at| 0.1 * centres[at / d][at % d] + common[at % d] + 0.2 * normal(&mut rng))
        .collect();
    let bias: Vec<f64> = (0..k).map(|_| 2.0 * normal(&mut rng)).collect();
    let clf = Classifier::new(k, d, weight, Some(bias)).unwrap();
    Fixture {
        features,
        labels,
        k,
        d,
        clf,
    }
}

/// What the codebases compute, each switch as the reference code spells it.
struct Reference {
    nc1: f64,
    nc2: f64,
    nc3: f64,
    nc4: f64,
    bias_relation: f64,
    equinorm_w: f64,
    equinorm_h: f64,
    equiangle_w: f64,
    equiangle_h: f64,
    nc2_means: f64,
    cdnv: f64,
    rank: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// || G/||G||_F - (I - 11^T/K)/sqrt(K-1) ||_F of rows `a` against rows `b` (G_ij = a_i.b_j).
fn etf_distance(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let k = a.len();
    let g: Vec<Vec<f64>> = a
        .iter()
        .map(|x| b.iter().map(|y| dot(x, y)).collect())
        .collect();
    let g_norm = g.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
    let mut sq = 0.0;
    for i in 0..k {
        for j in 0..k {
            let p = (if i == j { 1.0 } else { 0.0 } - 1.0 / k as f64) / ((k - 1) as f64).sqrt();
            sq += (g[i][j] / g_norm - p).powi(2);
        }
    }
    sq.sqrt()
}

fn reference(f: &Fixture, c: &Convention) -> Reference {
    use nc_math::metrics::convention::*;
    let (k, d) = (f.k, f.d);
    let rows: Vec<&[f64]> = f.features.chunks_exact(d).collect();
    let n = rows.len();
    let mut counts = vec![0usize; k];
    let mut means = vec![vec![0.0; d]; k];
    for (h, &y) in rows.iter().zip(&f.labels) {
        counts[y as usize] += 1;
        for i in 0..d {
            means[y as usize][i] += h[i];
        }
    }
    for (m, &count) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|v| *v /= count as f64);
    }
    let mu_g: Vec<f64> = match c.global_mean {
        GlobalMean::Samples => (0..d)
            .map(|i| rows.iter().map(|h| h[i]).sum::<f64>() / n as f64)
            .collect(),
        GlobalMean::ClassMeans => (0..d)
            .map(|i| means.iter().map(|m| m[i]).sum::<f64>() / k as f64)
            .collect(),
    };
    let centred: Vec<Vec<f64>> = means
        .iter()
        .map(|m| m.iter().zip(&mu_g).map(|(a, b)| a - b).collect())
        .collect();
    // Dense Sigma_W (1/N) and Sigma_B (1/K), d x d.
    let mut sigma_w = Mat::<f64>::zeros(d, d);
    for (h, &y) in rows.iter().zip(&f.labels) {
        let z: Vec<f64> = h
            .iter()
            .zip(&means[y as usize])
            .map(|(a, b)| a - b)
            .collect();
        for i in 0..d {
            for j in 0..d {
                sigma_w[(i, j)] += z[i] * z[j] / n as f64;
            }
        }
    }
    // Sigma_B = M M^T / K: its eigenpairs are (s_j^2 / K, u_j) from the SVD of M (d x K).
    // (A dense eigensolver of Sigma_B itself cannot resolve the fixture's smallest
    // eigenvalue, ~1e-7 of the largest, to 1e-9.)
    let m = Mat::from_fn(d, k, |i, a| centred[a][i]);
    let svd = m.thin_svd().unwrap();
    let lambda: Vec<f64> = svd
        .S()
        .column_vector()
        .iter()
        .map(|s| s * s / k as f64)
        .collect();
    let top = lambda.iter().copied().fold(0.0, f64::max);
    let mut order: Vec<usize> = (0..lambda.len()).collect();
    order.sort_by(|&a, &b| lambda[b].total_cmp(&lambda[a]));
    let above = |relative: f64| -> Vec<usize> {
        order
            .iter()
            .copied()
            .filter(|&j| lambda[j] > relative * top)
            .collect()
    };
    let kept: Vec<usize> = match c.pinv {
        // nclab: singular values of M above 1e-8 of the largest, i.e. lambda above 1e-16.
        PinvCutoff::Nclab => above(RANK_CUTOFF * RANK_CUTOFF),
        PinvCutoff::DimEpsF32 => above(d as f64 * 1.1920929e-7),
        PinvCutoff::DimEpsF64 => above(d as f64 * 2.220446049250313e-16),
        PinvCutoff::Rcond15 => above(1e-15),
        PinvCutoff::TopKMinus1 => order.iter().copied().take(k - 1).collect(),
    };
    let u = svd.U();
    let mut trace = 0.0;
    for &j in &kept {
        let uj: Vec<f64> = (0..d).map(|i| u[(i, j)]).collect();
        let mut quad = 0.0;
        for a in 0..d {
            for b in 0..d {
                quad += uj[a] * sigma_w[(a, b)] * uj[b];
            }
        }
        trace += quad / lambda[j];
    }
    let nc1 = match c.nc1_scale {
        Nc1Scale::PerClass => trace / k as f64,
        Nc1Scale::Total => trace,
    };
    // The classifier as the code uses it.
    let raw: Vec<Vec<f64>> = (0..k)
        .map(|a| f.clf.weight()[a * d..(a + 1) * d].to_vec())
        .collect();
    let mean_row: Vec<f64> = (0..d)
        .map(|i| raw.iter().map(|w| w[i]).sum::<f64>() / k as f64)
        .collect();
    let w: Vec<Vec<f64>> = match c.weight {
        WeightCentring::Centred => raw
            .iter()
            .map(|r| r.iter().zip(&mean_row).map(|(a, b)| a - b).collect())
            .collect(),
        WeightCentring::Raw => raw.clone(),
    };
    let nc3 = match c.nc3 {
        Nc3Form::Gram => etf_distance(&w, &centred),
        Nc3Form::Duality | Nc3Form::DualitySquared => {
            let w_norm = w.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
            let m_norm = centred.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
            let sq: f64 = w
                .iter()
                .flatten()
                .zip(centred.iter().flatten())
                .map(|(a, b)| (a / w_norm - b / m_norm).powi(2))
                .sum();
            if c.nc3 == Nc3Form::Duality {
                sq.sqrt()
            } else {
                sq
            }
        }
    };
    let equinorm = |v: &[Vec<f64>]| {
        let norms: Vec<f64> = v.iter().map(|x| norm(x)).collect();
        let mean = norms.iter().sum::<f64>() / k as f64;
        let sq: f64 = norms.iter().map(|x| (x - mean).powi(2)).sum();
        match c.equinorm {
            Equinorm::Cv => (sq / k as f64).sqrt() / mean,
            Equinorm::CvSample => (sq / (k - 1) as f64).sqrt() / mean,
            Equinorm::LogRatio => {
                let mut diffs = Vec::new();
                for i in 0..k {
                    for j in i + 1..k {
                        diffs.push(norms[i].ln() - norms[j].ln());
                    }
                }
                diffs.iter().sum::<f64>() / diffs.len() as f64
            }
        }
    };
    let equiangle = |v: &[Vec<f64>]| {
        let mut values = Vec::new();
        for i in 0..k {
            for j in 0..k {
                if i != j {
                    // Ordered pairs i != j, as the notebook and Intermediate_NC take them.
                    let shifted =
                        dot(&v[i], &v[j]) / (norm(&v[i]) * norm(&v[j])) + 1.0 / (k - 1) as f64;
                    values.push(if c.equiangle == Equiangle::Absolute {
                        shifted.abs()
                    } else {
                        shifted
                    });
                }
            }
        }
        values.iter().sum::<f64>() / values.len() as f64
    };
    // NC4 by brute force over the samples: the network's argmax against the nearest mean.
    let mut mismatches = 0;
    for h in &rows {
        let logit = |a: usize| {
            dot(&raw[a], h)
                + if c.nc4_bias == Nc4Bias::With {
                    f.clf.bias()[a]
                } else {
                    0.0
                }
        };
        let predicted = (0..k).fold(0, |best, a| if logit(a) > logit(best) { a } else { best });
        let distance = |a: usize| {
            h.iter()
                .zip(&means[a])
                .map(|(x, m)| (x - m).powi(2))
                .sum::<f64>()
        };
        let nearest = (0..k).fold(0, |best, a| {
            if distance(a) < distance(best) {
                a
            } else {
                best
            }
        });
        mismatches += usize::from(predicted != nearest);
    }
    let nc4 = match c.nc4 {
        Nc4Form::Mismatch => mismatches as f64 / n as f64,
        Nc4Form::Agreement => 1.0 - mismatches as f64 / n as f64,
    };
    let mut deviation = vec![0.0; k];
    for (h, &y) in rows.iter().zip(&f.labels) {
        deviation[y as usize] += h
            .iter()
            .zip(&means[y as usize])
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>();
    }
    let variance: Vec<f64> = deviation
        .iter()
        .zip(&counts)
        .map(|(s, &m)| {
            if c.cdnv_variance == CdnvVariance::Population {
                s / m as f64
            } else {
                s / (m - 1) as f64
            }
        })
        .collect();
    let mut cdnv = Vec::new();
    for a in 0..k {
        for b in a + 1..k {
            let gap: f64 = means[a]
                .iter()
                .zip(&means[b])
                .map(|(x, y)| (x - y).powi(2))
                .sum();
            cdnv.push((variance[a] + variance[b]) / (2.0 * gap));
        }
    }
    let bias_relation = (0..k)
        .map(|a| (dot(&raw[a], &mu_g) + f.clf.bias()[a]).powi(2))
        .sum::<f64>()
        .sqrt();
    Reference {
        nc1,
        nc2: etf_distance(&w, &w),
        nc3,
        nc4,
        bias_relation,
        equinorm_w: equinorm(&w),
        equinorm_h: equinorm(&centred),
        equiangle_w: equiangle(&w),
        equiangle_h: equiangle(&centred),
        nc2_means: etf_distance(&centred, &centred),
        cdnv: cdnv.iter().sum::<f64>() / cdnv.len() as f64,
        rank: kept.len(),
    }
}

fn measured(f: &Fixture, c: &Convention) -> NcMetrics {
    compute_metrics_with(&f.features, &f.labels, f.d, f.k, Some(&f.clf), None, c).unwrap()
}

fn assert_agrees(got: &NcMetrics, want: &Reference, what: &str) {
    let close = |a: f64, b: f64, name: &str| {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1e-3),
            "{what} {name}: engine {a}, reference {b}"
        );
    };
    close(got.nc1, want.nc1, "nc1");
    close(got.nc2.unwrap(), want.nc2, "nc2");
    close(got.nc3.unwrap(), want.nc3, "nc3");
    close(got.nc4.unwrap(), want.nc4, "nc4");
    close(
        got.bias_relation.unwrap(),
        want.bias_relation,
        "bias_relation",
    );
    close(got.equinorm_w.unwrap(), want.equinorm_w, "equinorm_w");
    close(got.equinorm_h, want.equinorm_h, "equinorm_h");
    close(got.equiangle_w.unwrap(), want.equiangle_w, "equiangle_w");
    close(got.equiangle_h, want.equiangle_h, "equiangle_h");
    close(got.nc2_means, want.nc2_means, "nc2_means");
    close(got.cdnv, want.cdnv, "cdnv");
    assert_eq!(got.sigma_b_rank, want.rank, "{what} sigma_b_rank");
}

#[test]
fn every_preset_equals_its_reference_formulas() {
    for seed in [1, 2, 3] {
        let f = fixture(seed);
        for preset in Preset::ALL {
            let convention = preset.convention();
            let got = measured(&f, &convention);
            assert_eq!(got.convention, convention);
            assert_agrees(
                &got,
                &reference(&f, &convention),
                &format!("{} seed {seed}", preset.name()),
            );
        }
    }
}

#[test]
fn every_value_of_every_switch_equals_its_reference_formula() {
    let f = fixture(7);
    for name in Convention::switch_names() {
        for preset in [Preset::Nclab, Preset::Papyan2020] {
            // Each value of the switch, on two different bases.
            for value in [
                "per-class",
                "total",
                "samples",
                "class-means",
                "centred",
                "raw",
                "nclab",
                "dim-eps-f32",
                "dim-eps-f64",
                "rcond-1e-15",
                "top-k-minus-1",
                "gram",
                "duality",
                "duality-squared",
                "cv",
                "cv-sample",
                "log-ratio",
                "absolute",
                "signed",
                "mismatch",
                "agreement",
                "with",
                "without",
                "population",
                "sample",
            ] {
                let mut convention = preset.convention();
                if convention.set(name, value).is_err() {
                    continue; // not a value of this switch
                }
                let got = measured(&f, &convention);
                assert_agrees(&got, &reference(&f, &convention), &convention.label());
            }
        }
    }
}

#[test]
fn the_presets_differ_where_their_codebases_do() {
    let f = fixture(11);
    let m = |p: Preset| measured(&f, &p.convention());
    let (nclab, zhou, zhu, papyan, rhubarbwu, nctoolbox) = (
        m(Preset::Nclab),
        m(Preset::Zhou2022),
        m(Preset::Zhu2021),
        m(Preset::Papyan2020),
        m(Preset::Rhubarbwu),
        m(Preset::Nctoolbox),
    );
    let differ = |a: f64, b: f64| (a - b).abs() > 1e-3 * a.abs().max(b.abs());
    // The float32 pinv cutoff drops the 1e-3 direction nclab keeps: NC1 loses a large term.
    assert_eq!((nclab.sigma_b_rank, zhou.sigma_b_rank), (4, 3));
    assert!(differ(nclab.nc1, zhou.nc1) && zhou.nc1 < nclab.nc1);
    // Same NC2/NC3 where zhou2022 keeps nclab's centred W; raw W (zhu2021) changes both.
    assert_eq!((zhou.nc2, zhou.nc3), (nclab.nc2, nclab.nc3));
    assert!(
        differ(zhu.nc2.unwrap(), nclab.nc2.unwrap())
            && differ(zhu.nc3.unwrap(), nclab.nc3.unwrap())
    );
    // The notebook: not divided by K, the mean of class means, the squared duality form.
    assert!(differ(papyan.nc1, nclab.nc1) && differ(papyan.equinorm_h, nclab.equinorm_h));
    assert!(
        differ(papyan.nc2_means, nclab.nc2_means)
            && differ(papyan.nc3.unwrap(), nclab.nc3.unwrap())
    );
    // Agreement rather than mismatch, the bias left out, or both.
    assert!(differ(rhubarbwu.nc4.unwrap(), 1.0 - nclab.nc4.unwrap()));
    assert!((nctoolbox.nc4.unwrap() - (1.0 - nclab.nc4.unwrap())).abs() < 1e-15);
    assert!(differ(nctoolbox.cdnv, nclab.cdnv) && nctoolbox.cdnv > nclab.cdnv);
    assert!(differ(nctoolbox.equiangle_h, nclab.equiangle_h));
    // What no convention changes: the accuracies.
    for other in [&zhou, &zhu, &papyan, &rhubarbwu, &nctoolbox] {
        assert_eq!(
            (other.accuracy, other.ncc_accuracy),
            (nclab.accuracy, nclab.ncc_accuracy)
        );
    }
}

#[test]
fn the_default_convention_gives_the_specification_numbers_exactly() {
    let f = fixture(5);
    let spec =
        nc_math::metrics::compute_metrics(&f.features, &f.labels, f.d, f.k, Some(&f.clf), None)
            .unwrap();
    assert_eq!(measured(&f, &Convention::NCLAB), spec);
    assert_eq!(spec.convention, Convention::NCLAB);
    // A weight switch alone leaves every metric without W exactly as it was.
    let mut raw = Convention::NCLAB;
    raw.weight = WeightCentring::Raw;
    let r = measured(&f, &raw);
    assert_eq!(
        (r.nc1, r.nc2_means, r.cdnv, r.nc4),
        (spec.nc1, spec.nc2_means, spec.cdnv, spec.nc4)
    );
    // Top-K-1 keeps a direction below nclab's cutoff when M has one: a fifth class mean on
    // the line through two others leaves Sigma_B rank 3 < K-1 = 4 and NC1 blows up.
    let mut degenerate = f.features.clone();
    let d = f.d;
    let (mut sums, mut counts) = (vec![vec![0.0; d]; f.k], vec![0.0; f.k]);
    for (h, &y) in f.features.chunks_exact(d).zip(&f.labels) {
        counts[y as usize] += 1.0;
        for i in 0..d {
            sums[y as usize][i] += h[i];
        }
    }
    let mean = |c: usize, i: usize| sums[c][i] / counts[c];
    for (h, &y) in degenerate.chunks_exact_mut(d).zip(&f.labels) {
        if y == 4 {
            for i in 0..d {
                h[i] += 0.5 * (mean(0, i) + mean(1, i)) - mean(4, i);
            }
        }
    }
    let mut top = Convention::NCLAB;
    top.pinv = PinvCutoff::TopKMinus1;
    let spec_rank =
        nc_math::metrics::compute_metrics(&degenerate, &f.labels, d, f.k, Some(&f.clf), None)
            .unwrap();
    let all =
        compute_metrics_with(&degenerate, &f.labels, d, f.k, Some(&f.clf), None, &top).unwrap();
    assert_eq!((spec_rank.sigma_b_rank, all.sigma_b_rank), (3, 4));
    assert!(
        all.nc1 > 1e6 * spec_rank.nc1,
        "{} vs {}",
        all.nc1,
        spec_rank.nc1
    );
}
