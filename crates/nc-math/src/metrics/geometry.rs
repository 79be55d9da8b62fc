//! Class-level geometry, from the class means and the classifier alone (no sample): the
//! truncated singular basis of the centred means, the distances to a simplex ETF (`nc2`,
//! `nc3`, `nc2_means`), equinorm and equiangle, `bias_relation` and the distances between
//! class means that `cdnv` divides by.

use super::convention::{kept_directions, Convention, Equiangle, Equinorm, Nc3Form, PinvCutoff};
use super::{ClassMeans, Classifier};
use crate::linalg::{dot_in_order, product};
use crate::{Error, Result};
use faer::{Mat, Par};
use rayon::prelude::*;

/// The truncated thin SVD basis of a centred-means matrix: columns of `basis` (d x r) and
/// the singular values kept.
pub(super) struct Subspace {
    pub(super) basis: Mat<f64>,
    pub(super) singular_values: Vec<f64>,
}

/// The thin SVD of a centred-means matrix (d x K): left singular vectors `u` and all
/// min(d, K) singular values.
pub(super) struct Spectrum {
    u: Mat<f64>,
    pub(super) singular_values: Vec<f64>,
}

impl Spectrum {
    /// The SVD of `centred`; an error when all of its singular values are 0.
    pub(super) fn new(centred: &Mat<f64>) -> Result<Self> {
        let svd = centred
            .thin_svd()
            .map_err(|e| Error::Linalg(format!("{e:?}")))?;
        let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
        let largest = s.iter().copied().fold(0.0f64, f64::max);
        if largest <= 0.0 || !largest.is_finite() {
            return Err(Error::DegenerateMeans);
        }
        Ok(Self {
            u: svd.U().to_owned(),
            singular_values: s,
        })
    }

    /// The directions kept by the pseudo-inverse rule `rule` (see [`kept_directions`]).
    pub(super) fn kept(&self, rule: PinvCutoff, num_classes: usize) -> Vec<usize> {
        kept_directions(&self.singular_values, rule, self.u.nrows(), num_classes)
    }

    /// The singular vectors and values of the directions `kept`.
    pub(super) fn subspace(&self, kept: &[usize]) -> Subspace {
        Subspace {
            basis: Mat::from_fn(self.u.nrows(), kept.len(), |i, j| self.u[(i, kept[j])]),
            singular_values: kept.iter().map(|&j| self.singular_values[j]).collect(),
        }
    }
}

/// The left singular vectors of `centred` (d x K) whose singular values exceed
/// [`super::RANK_CUTOFF`] times the largest; an error when all of them are 0.
pub(super) fn truncated_basis(centred: &Mat<f64>) -> Result<Subspace> {
    let spectrum = Spectrum::new(centred)?;
    Ok(spectrum.subspace(&spectrum.kept(PinvCutoff::Nclab, centred.ncols())))
}

/// || G / ||G||_F - P ||_F for a K x K matrix G, with P = (I - 11^T/K) / sqrt(K-1).
fn distance_to_simplex(gram: &Mat<f64>) -> f64 {
    let k = gram.nrows();
    let norm = gram.norm_l2();
    let p_diag = (1.0 - 1.0 / k as f64) / ((k - 1) as f64).sqrt();
    let p_off = -1.0 / k as f64 / ((k - 1) as f64).sqrt();
    let mut sq = 0.0;
    for i in 0..k {
        for j in 0..k {
            let p = if i == j { p_diag } else { p_off };
            sq += (gram[(i, j)] / norm - p).powi(2);
        }
    }
    sq.sqrt()
}

/// (equinorm, equiangle) of vectors given by their K x K Gram matrix, in the forms of
/// `convention`.
fn equinorm_equiangle(gram: &Mat<f64>, convention: &Convention) -> (f64, f64) {
    let k = gram.nrows();
    let norms: Vec<f64> = (0..k).map(|i| gram[(i, i)].max(0.0).sqrt()).collect();
    let pairs = (k * (k - 1) / 2) as f64;
    let equinorm = match convention.equinorm {
        Equinorm::Cv | Equinorm::CvSample => {
            let mean = norms.iter().sum::<f64>() / k as f64;
            let ddof = if convention.equinorm == Equinorm::Cv {
                0
            } else {
                1
            };
            let var = norms.iter().map(|n| (n - mean).powi(2)).sum::<f64>() / (k - ddof) as f64;
            var.sqrt() / mean
        }
        Equinorm::LogRatio => {
            let mut sum = 0.0;
            for i in 0..k {
                for j in i + 1..k {
                    sum += norms[i].ln() - norms[j].ln();
                }
            }
            sum / pairs
        }
    };
    let mut angle_sum = 0.0;
    for i in 0..k {
        for j in i + 1..k {
            let shifted = gram[(i, j)] / (norms[i] * norms[j]) + 1.0 / (k - 1) as f64;
            angle_sum += match convention.equiangle {
                Equiangle::Absolute => shifted.abs(),
                Equiangle::Signed => shifted,
            };
        }
    }
    (equinorm, angle_sum / pairs)
}

/// || W^T / ||W||_F - M / ||M||_F ||_F for W (K x d) and M (d x K), squared or not.
fn duality_distance(weight: &Mat<f64>, centred: &Mat<f64>, squared: bool) -> f64 {
    let (w_norm, m_norm) = (weight.norm_l2(), centred.norm_l2());
    let mut sq = 0.0;
    for k in 0..weight.nrows() {
        for i in 0..weight.ncols() {
            sq += (weight[(k, i)] / w_norm - centred[(i, k)] / m_norm).powi(2);
        }
    }
    if squared {
        sq
    } else {
        sq.sqrt()
    }
}

/// Class-level metrics (no sample needed) that need the classifier.
pub(super) struct ClassifierMetrics {
    pub(super) nc2: f64,
    pub(super) nc3: f64,
    pub(super) bias_relation: f64,
    pub(super) equinorm_w: f64,
    pub(super) equiangle_w: f64,
}

/// Every metric that needs no sample, and the class-mean distances of `cdnv`.
pub(super) struct ClassLevel {
    pub(super) classifier: Option<ClassifierMetrics>,
    pub(super) equinorm_h: f64,
    pub(super) equiangle_h: f64,
    pub(super) nc2_means: f64,
    /// ||mu_k - mu_l||^2, K x K row-major.
    pub(super) mean_distance_sq: Vec<f64>,
}

impl ClassLevel {
    /// `centred`: M = [mu_k - mu_G] (d x K) with the global mean `global_mean` of the
    /// convention; `weight`: the classifier and the rows its geometry uses (K x d
    /// row-major: Wc or W, as the convention says).
    pub(super) fn new(
        own: &ClassMeans,
        centred: &Mat<f64>,
        global_mean: &[f64],
        classifier: Option<(&Classifier, &[f64])>,
        convention: &Convention,
    ) -> Self {
        let (k, d) = (own.num_classes(), own.dim());
        let gram_means = product(centred.transpose(), centred.as_ref(), Par::Seq);
        let (equinorm_h, equiangle_h) = equinorm_equiangle(&gram_means, convention);
        let nc2_means = distance_to_simplex(&gram_means);
        let upper: Vec<Vec<f64>> = (0..k)
            .into_par_iter()
            .map(|a| {
                (a + 1..k)
                    .map(|b| crate::vector::squared_distance(own.mean(a), own.mean(b)))
                    .collect()
            })
            .collect();
        let mut mean_distance_sq = vec![0.0; k * k];
        for (a, row) in upper.iter().enumerate() {
            for (b, &distance) in (a + 1..k).zip(row) {
                mean_distance_sq[a * k + b] = distance;
                mean_distance_sq[b * k + a] = distance;
            }
        }
        let classifier = classifier.map(|(clf, weight_rows)| {
            // Column-major, as these two products have always read it: faer's kernels may
            // sum in another order for another layout, and the numbers must not change.
            let w = Mat::from_fn(k, d, |c, i| weight_rows[c * d + i]);
            let gram_w = product(w.as_ref(), w.transpose(), Par::Seq);
            let (equinorm_w, equiangle_w) = equinorm_equiangle(&gram_w, convention);
            let nc3 = match convention.nc3 {
                Nc3Form::Gram => {
                    distance_to_simplex(&product(w.as_ref(), centred.as_ref(), Par::Seq))
                }
                Nc3Form::Duality => duality_distance(&w, centred, false),
                Nc3Form::DualitySquared => duality_distance(&w, centred, true),
            };
            let bias_relation = (0..k)
                .map(|c| (dot_in_order(clf.row(c), global_mean) + clf.bias()[c]).powi(2))
                .sum::<f64>()
                .sqrt();
            ClassifierMetrics {
                nc2: distance_to_simplex(&gram_w),
                nc3,
                bias_relation,
                equinorm_w,
                equiangle_w,
            }
        });
        Self {
            classifier,
            equinorm_h,
            equiangle_h,
            nc2_means,
            mean_distance_sq,
        }
    }
}
