//! Class-level geometry, from the class means and the classifier alone (no sample): the
//! truncated singular basis of the centred means, the distances to a simplex ETF (`nc2`,
//! `nc3`, `nc2_means`), equinorm and equiangle, `bias_relation` and the distances between
//! class means that `cdnv` divides by.

use super::{ClassMeans, Classifier, RANK_CUTOFF};
use crate::linalg::{dot_in_order, product};
use crate::{Error, Result};
use faer::{Mat, Par};
use rayon::prelude::*;

/// The truncated thin SVD basis of a centred-means matrix: columns of `basis` (d x r) and
/// the singular values above the cutoff.
pub(super) struct Subspace {
    pub(super) basis: Mat<f64>,
    pub(super) singular_values: Vec<f64>,
}

/// The left singular vectors of `centred` (d x K) whose singular values exceed
/// [`RANK_CUTOFF`] times the largest; an error when all of them are 0.
pub(super) fn truncated_basis(centred: &Mat<f64>) -> Result<Subspace> {
    let svd = centred
        .thin_svd()
        .map_err(|e| Error::Linalg(format!("{e:?}")))?;
    let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
    let largest = s.iter().copied().fold(0.0f64, f64::max);
    if largest <= 0.0 || !largest.is_finite() {
        return Err(Error::DegenerateMeans);
    }
    let kept: Vec<usize> = (0..s.len())
        .filter(|&j| s[j] > RANK_CUTOFF * largest)
        .collect();
    let u = svd.U();
    let basis = Mat::from_fn(centred.nrows(), kept.len(), |i, j| u[(i, kept[j])]);
    Ok(Subspace {
        basis,
        singular_values: kept.iter().map(|&j| s[j]).collect(),
    })
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

/// (equinorm, equiangle) of vectors given by their K x K Gram matrix.
fn equinorm_equiangle(gram: &Mat<f64>) -> (f64, f64) {
    let k = gram.nrows();
    let norms: Vec<f64> = (0..k).map(|i| gram[(i, i)].max(0.0).sqrt()).collect();
    let mean = norms.iter().sum::<f64>() / k as f64;
    let var = norms.iter().map(|n| (n - mean).powi(2)).sum::<f64>() / k as f64;
    let mut angle_sum = 0.0;
    for i in 0..k {
        for j in i + 1..k {
            let cos = gram[(i, j)] / (norms[i] * norms[j]);
            angle_sum += (cos + 1.0 / (k - 1) as f64).abs();
        }
    }
    (var.sqrt() / mean, angle_sum / (k * (k - 1) / 2) as f64)
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
    /// `centred`: M = [mu_k - mu_G] (d x K); `centred_weight`: Wc (K x d row-major, see
    /// [`Classifier::centred_weight`]), given with the classifier.
    pub(super) fn new(
        own: &ClassMeans,
        centred: &Mat<f64>,
        classifier: Option<(&Classifier, &[f64])>,
    ) -> Self {
        let (k, d) = (own.num_classes(), own.dim());
        let gram_means = product(centred.transpose(), centred.as_ref(), Par::Seq);
        let (equinorm_h, equiangle_h) = equinorm_equiangle(&gram_means);
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
        let classifier = classifier.map(|(clf, centred_weight)| {
            // Column-major, as these two products have always read it: faer's kernels may
            // sum in another order for another layout, and the numbers must not change.
            let centred_w = Mat::from_fn(k, d, |c, i| centred_weight[c * d + i]);
            let gram_w = product(centred_w.as_ref(), centred_w.transpose(), Par::Seq);
            let (equinorm_w, equiangle_w) = equinorm_equiangle(&gram_w);
            let wm = product(centred_w.as_ref(), centred.as_ref(), Par::Seq);
            let bias_relation = (0..k)
                .map(|c| (dot_in_order(clf.row(c), own.global_mean()) + clf.bias()[c]).powi(2))
                .sum::<f64>()
                .sqrt();
            ClassifierMetrics {
                nc2: distance_to_simplex(&gram_w),
                nc3: distance_to_simplex(&wm),
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
