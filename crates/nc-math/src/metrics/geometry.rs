//! Class-level geometry, from the class means and the classifier alone (no sample): the
//! truncated singular basis of the centred means, the distances to a simplex ETF (`nc2`,
//! `nc3`, `nc2_means`), equinorm and equiangle, `bias_relation` and the distances between
//! class means that `cdnv` divides by.

use super::convention::{kept_directions, Convention, Equiangle, Equinorm, Nc3Form, PinvCutoff};
use super::tiles::fold_tiles;
use super::{ClassMeans, Classifier};
use crate::linalg::dot_in_order;
use crate::{Error, Result};
use faer::{Mat, MatRef};

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

/// P_ij = (delta_ij - 1/K) / sqrt(K-1), the simplex ETF's normalised Gram matrix.
fn simplex_entry(i: usize, j: usize, k: usize) -> f64 {
    let diagonal = if i == j { 1.0 } else { 0.0 };
    (diagonal - 1.0 / k as f64) / ((k - 1) as f64).sqrt()
}

/// ||G||_F^2 of a product visited in tiles (see [`fold_tiles`]).
fn squared_frobenius(a: MatRef<'_, f64>, b: MatRef<'_, f64>, symmetric: bool) -> f64 {
    fold_tiles(
        a,
        b,
        symmetric,
        || 0.0,
        |sum, tile| {
            *sum += tile.multiplicity(symmetric) * tile.entries().map(|(.., g)| g * g).sum::<f64>()
        },
        |x, y| x + y,
    )
}

/// || G / ||G||_F - P ||_F for the K x K product G = A^T B (A, B: d x K), in two passes over
/// its tiles (the norm first, so that nothing cancels near the simplex).
fn distance_to_simplex(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
    let k = a.ncols();
    let norm = squared_frobenius(a, b, false).sqrt();
    let sq = fold_tiles(
        a,
        b,
        false,
        || 0.0,
        |sum, tile| {
            for (i, j, g) in tile.entries() {
                *sum += (g / norm - simplex_entry(i, j, k)).powi(2);
            }
        },
        |x, y| x + y,
    );
    sq.sqrt()
}

/// The metrics of K vectors (the columns of a d x K matrix) read from their Gram matrix.
pub(super) struct GramMetrics {
    /// The vectors' norms.
    pub(super) norms: Vec<f64>,
    /// || G / ||G||_F - P ||_F.
    pub(super) simplex_distance: f64,
    pub(super) equinorm: f64,
    pub(super) equiangle: f64,
    /// The hyperspherical energies of the normalised vectors x_k = v_k / ||v_k||: the mean
    /// over pairs k < l of log(1 / ||x_k - x_l||) and of ||x_k - x_l||^-s (s = [`RIESZ_S`]).
    pub(super) log_energy: f64,
    pub(super) riesz_energy: f64,
}

/// The exponent s of the Riesz s-energy (`gnc2_riesz_h`, `gnc2_riesz_w`).
pub(super) const RIESZ_S: f64 = 1.0;

/// [`GramMetrics`] of the columns of `v` (d x K) in the forms of `convention`, in two passes
/// over the tiles of V^T V on and above the diagonal.
pub(super) fn gram_metrics(v: MatRef<'_, f64>, convention: &Convention) -> GramMetrics {
    let k = v.ncols();
    let (frobenius_sq, diagonal) = fold_tiles(
        v,
        v,
        true,
        || (0.0, Vec::new()),
        |(sum, diagonal), tile| {
            *sum += tile.multiplicity(true) * tile.entries().map(|(.., g)| g * g).sum::<f64>();
            if tile.is_diagonal() {
                diagonal.extend((0..tile.rows.len()).map(|i| tile.values[(i, i)]));
            }
        },
        |(s, mut d), (t, e)| {
            d.extend(e);
            (s + t, d)
        },
    );
    let norm = frobenius_sq.sqrt();
    let norms: Vec<f64> = diagonal.iter().map(|g| g.max(0.0).sqrt()).collect();
    let shift = 1.0 / (k - 1) as f64;
    let [simplex_sq, angle_sum, log_sum, riesz_sum] = fold_tiles(
        v,
        v,
        true,
        || [0.0; 4],
        |[simplex, angle, log, riesz], tile| {
            let weight = tile.multiplicity(true);
            let mut tile_simplex = 0.0;
            for (i, j, g) in tile.entries() {
                tile_simplex += (g / norm - simplex_entry(i, j, k)).powi(2);
                if j <= i {
                    continue;
                }
                let cos = g / (norms[i] * norms[j]);
                *angle += match convention.equiangle {
                    Equiangle::Absolute => (cos + shift).abs(),
                    Equiangle::Signed => cos + shift,
                };
                // ||x_i - x_j||^2 = 2 - 2 cos for unit vectors.
                let distance_sq = (2.0 - 2.0 * cos).max(0.0);
                *log -= 0.5 * distance_sq.ln();
                *riesz += distance_sq.powf(-RIESZ_S / 2.0);
            }
            *simplex += weight * tile_simplex;
        },
        |[a, b, c, d], [e, f, g, h]| [a + e, b + f, c + g, d + h],
    );
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
            let logs: Vec<f64> = norms.iter().map(|n| n.ln()).collect();
            let mut sum = 0.0;
            for i in 0..k {
                for j in i + 1..k {
                    sum += logs[i] - logs[j];
                }
            }
            sum / pairs
        }
    };
    GramMetrics {
        norms,
        simplex_distance: simplex_sq.sqrt(),
        equinorm,
        equiangle: angle_sum / pairs,
        log_energy: log_sum / pairs,
        riesz_energy: riesz_sum / pairs,
    }
}

/// || W^T / ||W||_F - M / ||M||_F ||_F for W (K x d) and M (d x K), squared or not.
fn duality_distance(weight: MatRef<'_, f64>, centred: &Mat<f64>, squared: bool) -> f64 {
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

/// Below this ratio of ||mu_a - mu_b||^2 to ||m_a||^2 + ||m_b||^2 the Gram form of the
/// distance has lost more than a bit or so to cancellation, and the distance is computed
/// from the difference itself.
const CANCELLATION_RATIO: f64 = 0.5;

/// c_a = sum over b != a of 1 / (2 ||mu_a - mu_b||^2) for every class, and whether two
/// means coincide. The squared distances come from the Gram matrix of the centred means
/// M (d x K), ||m_a||^2 + ||m_b||^2 - 2 m_a.m_b, whose rounding error is at most about
/// 2 d u (||m_a||^2 + ||m_b||^2); where that could exceed 4 d u of the distance itself (the
/// two means close next to their norms), the distance is recomputed as
/// ||mu_a - mu_b||^2 directly, so every distance keeps nearly full f64 precision.
fn inverse_distance_sums(own: &ClassMeans, centred: &Mat<f64>) -> (Vec<f64>, bool) {
    let k = centred.ncols();
    let norms_sq: Vec<f64> = (0..k)
        .map(|c| crate::vector::dot(centred.col_as_slice(c), centred.col_as_slice(c)))
        .collect();
    let (sums, coincident) = fold_tiles(
        centred.as_ref(),
        centred.as_ref(),
        true,
        || (vec![0.0; k], false),
        |(sums, coincident), tile| {
            for (a, b, g) in tile.entries() {
                if b <= a {
                    continue;
                }
                let scale = norms_sq[a] + norms_sq[b];
                let mut distance = scale - 2.0 * g;
                if distance.is_nan() || distance <= CANCELLATION_RATIO * scale {
                    distance = crate::vector::squared_distance(own.mean(a), own.mean(b));
                }
                if distance > 0.0 {
                    let term = 1.0 / (2.0 * distance);
                    sums[a] += term;
                    sums[b] += term;
                } else {
                    *coincident = true;
                }
            }
        },
        |(mut s, c), (t, e)| {
            crate::linalg::add_into(&mut s, &t);
            (s, c || e)
        },
    );
    (sums, coincident)
}

/// Class-level metrics (no sample needed) that need the classifier.
pub(super) struct ClassifierMetrics {
    pub(super) nc2: f64,
    pub(super) nc3: f64,
    pub(super) bias_relation: f64,
    pub(super) equinorm_w: f64,
    pub(super) equiangle_w: f64,
    pub(super) gnc2_log_w: f64,
    pub(super) gnc2_riesz_w: f64,
    /// The mean over classes of 1 - cos(w_k, mu_k - mu_G).
    pub(super) gnc3: f64,
    /// min_k dist(x_k, conv{x_j : j != k}) for the normalised rows x_k.
    pub(super) gnc2_margin_w: f64,
}

/// Every metric that needs no sample, and what `cdnv` needs of the class means.
pub(super) struct ClassLevel {
    pub(super) classifier: Option<ClassifierMetrics>,
    pub(super) equinorm_h: f64,
    pub(super) equiangle_h: f64,
    pub(super) nc2_means: f64,
    pub(super) gnc2_log_h: f64,
    pub(super) gnc2_riesz_h: f64,
    /// tr(Sigma_B) = ||M||_F^2 / K.
    pub(super) trace_sigma_b: f64,
    /// sum over l != k of 1 / (2 ||mu_k - mu_l||^2), per class k: the cdnv is
    /// sum_k var_k c_k over the number of pairs.
    pub(super) inverse_distance_sums: Vec<f64>,
    /// Whether two classes have the same mean (their cdnv term is inf or 0/0, which the
    /// per-class sums cannot carry).
    pub(super) coincident_means: bool,
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
        let means = gram_metrics(centred.as_ref(), convention);
        let (inverse_distance_sums, coincident_means) = inverse_distance_sums(own, centred);
        let classifier = classifier.map(|(clf, weight_rows)| {
            let w = MatRef::from_row_major_slice(weight_rows, k, d);
            let gram_w = gram_metrics(w.transpose(), convention);
            let nc3 = match convention.nc3 {
                Nc3Form::Gram => distance_to_simplex(w.transpose(), centred.as_ref()),
                Nc3Form::Duality => duality_distance(w, centred, false),
                Nc3Form::DualitySquared => duality_distance(w, centred, true),
            };
            let bias_relation = (0..k)
                .map(|c| (dot_in_order(clf.row(c), global_mean) + clf.bias()[c]).powi(2))
                .sum::<f64>()
                .sqrt();
            let gnc3 = (0..k)
                .map(|c| {
                    let mean = centred.col_as_slice(c);
                    let row = &weight_rows[c * d..(c + 1) * d];
                    1.0 - dot_in_order(row, mean) / (gram_w.norms[c] * means.norms[c])
                })
                .sum::<f64>()
                / k as f64;
            ClassifierMetrics {
                nc2: gram_w.simplex_distance,
                nc3,
                bias_relation,
                equinorm_w: gram_w.equinorm,
                equiangle_w: gram_w.equiangle,
                gnc2_log_w: gram_w.log_energy,
                gnc2_riesz_w: gram_w.riesz_energy,
                gnc3,
                gnc2_margin_w: super::margin::one_vs_rest_margin(w.transpose()),
            }
        });
        Self {
            classifier,
            equinorm_h: means.equinorm,
            equiangle_h: means.equiangle,
            nc2_means: means.simplex_distance,
            gnc2_log_h: means.log_energy,
            gnc2_riesz_h: means.riesz_energy,
            trace_sigma_b: centred.squared_norm_l2() / k as f64,
            inverse_distance_sums,
            coincident_means,
        }
    }
}
