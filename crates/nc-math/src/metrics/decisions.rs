//! The classifier's decisions (`accuracy`, `nc4`) by the cheapest route that provably gives
//! the class of the f64 logits W (h - mu_y) + (W mu_y + b), and the rounding bounds that
//! prove it: from the NC1 projections ([`ProjectedLogits`]), from an f32 logit product
//! ([`F32Logits`]), else from the f64 logits themselves, whose own error is
//! [`ExactLogitError`]. Also the one tie rule of every decision, [`argmin`].

use super::tiles::tile;
use super::{ClassMeans, Classifier};
use crate::linalg::{product, product_into};
use faer::{Mat, MatRef, Par};
use rayon::prelude::*;

/// Unit roundoffs u32 = 2^-24 and u64 = 2^-53.
const UNIT_F32: f64 = f32::EPSILON as f64 / 2.0;
const UNIT_F64: f64 = f64::EPSILON / 2.0;
/// Above this |W||h|, an f32 product may overflow (f32::MAX is 3.4e38).
const F32_PRODUCT_LIMIT: f64 = 1e36;

/// The index paired with the smallest value, the first one on ties (0 when there is none
/// smaller than +Inf): argmin_k d_k and, on negated logits, argmax_k z_k, with ties to the
/// lowest class index (numpy's convention).
pub(super) fn argmin(indexed: impl Iterator<Item = (usize, f64)>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, v) in indexed {
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// gamma_n = n u / (1 - n u), the relative error bound of an n-term sum of products
/// rounded with unit roundoff u (any order of summation, with or without FMA); `None` when
/// n u >= 1/2 (no useful bound).
fn gamma(n: usize, u: f64) -> Option<f64> {
    let nu = n as f64 * u;
    (nu < 0.5).then(|| nu / (1.0 - nu))
}

/// An upper bound on ||h - mu_y|| from the computed s = fl((h - mu_y).(h - mu_y)) of the
/// rounded difference: ||fl(h - mu_y) - (h - mu_y)|| <= u ||h - mu_y||, the sum of squares is
/// within gamma_d of its value, and squares below 2^-1074 may vanish (d 2^-1074 in all).
pub(super) fn deviation_norm_bound(deviation_sq: f64, dim: usize) -> f64 {
    let relative = gamma(dim + 2, UNIT_F64).unwrap_or(f64::INFINITY);
    deviation_sq.sqrt() * (1.0 + 2.0 * relative) + (dim as f64).sqrt() * 2f64.powi(-536)
}

/// Rows of the K x K table o_yk = w_k.mu_y + b_k (w_k: the rows of a weight: W for the
/// logits' offsets, Wc for the projected estimates') for a set of classes y, from one
/// matrix product. The plan computes every row once when K <= [`super::tiles::TILE`]; above that each
/// block of samples computes the rows of the classes it holds, so that no K x K table is
/// held at large K.
pub(super) struct OffsetRows {
    /// For each class, its column in `values`, or `u32::MAX` when it has none.
    slot: Vec<u32>,
    classes: Vec<usize>,
    /// The means of `classes`, row-major (a buffer reused from block to block).
    gathered: Vec<f64>,
    /// K x L: column l is row `classes[l]` of the table.
    values: Mat<f64>,
}

impl OffsetRows {
    /// A table with no rows yet, for K classes.
    pub(super) fn empty(num_classes: usize) -> Self {
        Self {
            slot: vec![u32::MAX; num_classes],
            classes: Vec::new(),
            gathered: Vec::new(),
            values: Mat::zeros(0, 0),
        }
    }

    /// Every row. `means`: K x d row-major; `weight`: K x d row-major; `bias`: K.
    pub(super) fn all(means: &[f64], weight: &[f64], bias: &[f64]) -> Self {
        let mut table = Self::empty(bias.len());
        table.fill(means, weight, bias, 0..bias.len());
        table
    }

    /// Replaces the table's rows by those of `classes` (repeats allowed).
    pub(super) fn fill(
        &mut self,
        means: &[f64],
        weight: &[f64],
        bias: &[f64],
        classes: impl IntoIterator<Item = usize>,
    ) {
        let k = bias.len();
        let d = weight.len() / k.max(1);
        for &c in &self.classes {
            self.slot[c] = u32::MAX;
        }
        self.classes.clear();
        self.gathered.clear();
        for c in classes {
            if self.slot[c] == u32::MAX {
                self.slot[c] = self.classes.len() as u32;
                self.classes.push(c);
                self.gathered.extend_from_slice(&means[c * d..(c + 1) * d]);
            }
        }
        let rows = self.classes.len();
        let weight = MatRef::from_row_major_slice(weight, k, d);
        let gathered = MatRef::from_row_major_slice(&self.gathered, rows, d);
        product_into(&mut self.values, weight, gathered.transpose());
        for l in 0..rows {
            for (o, b) in self.values.col_as_slice_mut(l).iter_mut().zip(bias) {
                *o += b;
            }
        }
    }

    /// Whether the table holds row `y`.
    pub(super) fn has(&self, y: usize) -> bool {
        self.slot[y] != u32::MAX
    }

    /// Row y: o_yk for every k. Only for a class the table holds.
    pub(super) fn row(&self, y: usize) -> &[f64] {
        debug_assert!(self.has(y), "offset row {y} was not computed");
        self.values.col_as_slice(self.slot[y] as usize)
    }
}

/// max_k |o_yk| for every class y, computed [`super::tiles::TILE`] rows at a time (see [`OffsetRows`]).
fn offset_row_maxima(means: &[f64], weight: &[f64], bias: &[f64]) -> Vec<f64> {
    let k = bias.len();
    let side = tile();
    let stripes: Vec<usize> = (0..k).step_by(side).collect();
    stripes
        .into_par_iter()
        .flat_map_iter(|start| {
            let classes = start..(start + side).min(k);
            let mut table = OffsetRows::empty(k);
            table.fill(means, weight, bias, classes.clone());
            classes
                .map(|y| table.row(y).iter().fold(0.0f64, |m, o| o.abs().max(m)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The error of the exact path's logits: for a sample h of class y, the f64 path computes
/// z64_k = fl(w_k.c) + fl(w_k.mu_y + b_k) with c = fl(h - mu_y) (one matrix product per
/// block, then the offset), and with A = max_k ||w_k||, gamma_n for u64 = 2^-53,
///
/// |z64_k - (w_k.h + b_k)| <= gamma_{d+4} (A (||h|| + 3 ||mu_y||) + 2 |b|) + (d + 4) 2^-1022,
///
/// the last term for products below the normal range. Any f64 evaluation of these logits
/// (any order of summation) is within this bound, so a decision that holds with twice this
/// margin is the decision of every one of them.
pub(super) struct ExactLogitError {
    max_row_norm: f64,
    max_abs_bias: f64,
    /// ||mu_y|| per class.
    mean_norms: Vec<f64>,
    /// gamma64_{d+4}.
    relative: f64,
    dim: usize,
}

impl ExactLogitError {
    pub(super) fn new(classifier: &Classifier, own: &ClassMeans) -> Option<Self> {
        let k = classifier.num_classes();
        Some(Self {
            max_row_norm: (0..k)
                .map(|c| crate::vector::dot(classifier.row(c), classifier.row(c)).sqrt())
                .fold(0.0, f64::max),
            max_abs_bias: classifier.bias().iter().fold(0.0, |m, b| b.abs().max(m)),
            mean_norms: (0..k)
                .map(|y| crate::vector::dot(own.mean(y), own.mean(y)).sqrt())
                .collect(),
            relative: gamma(classifier.dim() + 4, UNIT_F64)?,
            dim: classifier.dim(),
        })
    }

    /// ||h|| <= ||h - mu_y|| + ||mu_y|| for a sample of class y with ||h - mu_y|| <= `deviation`.
    pub(super) fn sample_norm(&self, deviation: f64, y: usize) -> f64 {
        deviation + self.mean_norms[y]
    }

    /// The bound above (times 1.01, for the rounding of the norms it is made of) for a
    /// sample of class y with ||h|| <= `norm`.
    pub(super) fn bound(&self, norm: f64, y: usize) -> f64 {
        let d = self.dim as f64;
        1.01 * (self.relative
            * (self.max_row_norm * (norm + 3.0 * self.mean_norms[y]) + 2.0 * self.max_abs_bias)
            + (d + 4.0) * 2f64.powi(-1022))
    }
}

/// The classifier's decisions (`accuracy`, `nc4`) from the NC1 projections, with no product
/// of W and the sample: where the class means' span captures W (as it does near collapse,
/// NC3) the logits are the projections' functionals plus a part bounded by Cauchy-Schwarz.
///
/// With s the mean row of W (a common shift: argmax_k z_k = argmax_k (z_k - s.h)),
/// v_k = w_k - s, a_k = U^T v_k (U: the d x r truncated basis of the centred means) and the
/// residual e_k = v_k - U a_k, a sample h = mu_y + c of class y has, exactly,
///
/// z_k - s.h = (v_k.mu_y + b_k) + a_k.(U^T c) + e_k.c,   |e_k.c| <= ||e_k|| ||c||.
///
/// The estimate zeta_k = o_yk + a_k.p, with o_yk = fl(v_k.mu_y + b_k) and the computed
/// projection p = fl(U^T fl(c)) of the NC1 product, is therefore within
/// T_k = E_k ||c|| + R_y(||c||) of z_k - s.h. With gamma_n for u64 = 2^-53,
/// g_d = gamma_{d+2} and g_r = gamma_{r+2} (each above the rounding bound of the sums they
/// stand for), F = ||U||_F and maxima over k: E_k >= ||e_k|| is the computed residual norm
/// plus its rounding, g_r (2 ||v_k|| + F ||a_k||), and R_y collects the rounding of v_k
/// (u ||v_k||), o (g_d), p (F (g_d + u) ||c||), the product a_k.p and the sum (g_r):
///
/// R_y(x) = g_d (2 max||v_k|| ||mu_y|| + max|b_k|) + g_r max_k |o_yk|
///          + max||a_k|| F (g_d + 2 g_r) x + (2d + 2r + 8) 2^-1022,
///
/// the last term for products below the normal range (times 1.01 in use, for the rounding of
/// the norms themselves).
///
/// With X the exact path's error ([`ExactLogitError`]), class j is the strict argmax of the
/// exact path's logits when zeta_j - T_j - X > zeta_k + T_k + X for every k != j: then the
/// decision is j, whatever the order of summation. Otherwise the sample goes to the logit
/// product (f32 under its own bound, or f64).
pub(super) struct ProjectedLogits {
    /// a_k as rows: K x r.
    pub(super) coefficients: Mat<f64>,
    /// o_yk = v_k.mu_y + b_k for every class when K <= [`super::tiles::TILE`] (else each block computes
    /// the rows it needs).
    pub(super) offsets: Option<OffsetRows>,
    /// E_k (times 1.01).
    residual_norms: Vec<f64>,
    /// R_y(0) per class y, and the slope of R_y in ||c||.
    rounding_constant: Vec<f64>,
    rounding_slope: f64,
}

impl ProjectedLogits {
    /// `centred_weight`: the rows v_k of Wc ([`Classifier::centred_weight`]). `basis`: U,
    /// d x r with orthonormal columns (up to rounding; the bound does not rely on it).
    /// `None` when d is so large that the sums carry no guarantee.
    pub(super) fn new(
        classifier: &Classifier,
        centred_weight: &[f64],
        own: &ClassMeans,
        basis: MatRef<'_, f64>,
        exact: &ExactLogitError,
    ) -> Option<Self> {
        let (k, d, r) = (classifier.num_classes(), classifier.dim(), basis.ncols());
        let (gamma_r, gamma_d) = (gamma(r + 2, UNIT_F64)?, gamma(d + 2, UNIT_F64)?);
        let shifted = MatRef::from_row_major_slice(centred_weight, k, d);
        let coefficients = product(shifted, basis, Par::Seq);
        let row_norm = |m: MatRef<'_, f64>, c: usize| {
            (0..m.ncols())
                .map(|j| m[(c, j)] * m[(c, j)])
                .sum::<f64>()
                .sqrt()
        };
        let shifted_norms: Vec<f64> = (0..k).map(|c| row_norm(shifted, c)).collect();
        let coefficient_norms: Vec<f64> =
            (0..k).map(|c| row_norm(coefficients.as_ref(), c)).collect();
        let basis_norm = basis.norm_l2();
        // ||v_k - U a_k||, U a_k for a stripe of classes at a time (no K x d product held).
        let side = tile();
        let residual_norms = (0..k)
            .step_by(side)
            .collect::<Vec<_>>()
            .into_par_iter()
            .flat_map_iter(|start| {
                let rows = side.min(k - start);
                let in_span = product(
                    coefficients.as_ref().subrows(start, rows),
                    basis.transpose(),
                    Par::Seq,
                );
                (0..rows)
                    .map(|i| {
                        let c = start + i;
                        let residual = (0..d)
                            .map(|j| (shifted[(c, j)] - in_span[(i, j)]).powi(2))
                            .sum::<f64>()
                            .sqrt();
                        1.01 * (residual
                            + gamma_r
                                * (2.0 * shifted_norms[c] + basis_norm * coefficient_norms[c]))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let offsets =
            (k <= tile()).then(|| OffsetRows::all(own.means(), centred_weight, classifier.bias()));
        let max_offsets = match &offsets {
            Some(table) => (0..k)
                .map(|y| table.row(y).iter().fold(0.0f64, |m, o| o.abs().max(m)))
                .collect(),
            None => offset_row_maxima(own.means(), centred_weight, classifier.bias()),
        };
        let max = |values: &[f64]| values.iter().fold(0.0f64, |m, v| v.abs().max(m));
        let (max_shifted, max_coefficient) = (max(&shifted_norms), max(&coefficient_norms));
        let rounding_constant = (0..k)
            .map(|y| {
                gamma_d * (2.0 * max_shifted * exact.mean_norms[y] + exact.max_abs_bias)
                    + gamma_r * max_offsets[y]
                    + (2 * d + 2 * r + 8) as f64 * 2f64.powi(-1022)
            })
            .collect();
        let rounding_slope = max_coefficient * basis_norm * (gamma_d + 2.0 * gamma_r);
        Some(Self {
            coefficients,
            offsets,
            residual_norms,
            rounding_constant,
            rounding_slope,
        })
    }

    /// The exact path's argmax for a sample of class y with ||h - mu_y|| <= `deviation`,
    /// given a_k.p for every k (`projected`), row y of the offsets o_yk (`offsets`) and the
    /// exact path's error bound for this sample, when the bound proves it; else `None`.
    pub(super) fn decide(
        &self,
        projected: &[f64],
        offsets: &[f64],
        y: usize,
        deviation: f64,
        exact: f64,
    ) -> Option<usize> {
        let k = projected.len();
        let slack = 1.01 * (self.rounding_constant[y] + self.rounding_slope * deviation) + exact;
        // The class with the largest lower bound, and the largest upper bound of the others.
        let mut best = (0, f64::NEG_INFINITY);
        let mut uppers = [(usize::MAX, f64::NEG_INFINITY); 2];
        for c in 0..k {
            let estimate = offsets[c] + projected[c];
            let spread = self.residual_norms[c] * deviation;
            if !(estimate.is_finite() && spread.is_finite()) {
                return None;
            }
            if estimate - spread > best.1 {
                best = (c, estimate - spread);
            }
            let upper = estimate + spread;
            if upper > uppers[0].1 {
                uppers = [(c, upper), uppers[0]];
            } else if upper > uppers[1].1 {
                uppers[1] = (c, upper);
            }
        }
        let others = if uppers[0].0 == best.0 {
            uppers[1].1
        } else {
            uppers[0].1
        };
        (best.1 - slack > others + slack && slack.is_finite()).then_some(best.0)
    }
}

/// The classifier's decisions from f32 logits, for the samples [`ProjectedLogits`] cannot
/// decide when the features are f32 values: the f32 product W h runs at twice the f64
/// speed, and a proved bound on its error decides which classes can still be the f64 argmax.
///
/// For a sample h with logits z_k = w_k.h + b_k, let z32_k be the f32 product of the
/// f32-rounded w_k with h plus b_k in f64. With u32 = 2^-24, u64 = 2^-53,
/// A = max_k ||w_k|| ||h|| and gamma_n = n u / (1 - n u), for every k (Cauchy-Schwarz bounds
/// sum_j |w_kj h_j| by A; the bound holds for any order of summation, with or without FMA):
///
/// |z32_k - z_k| <= (gamma32_d (1 + u32) + u32) A + 2 sqrt(d) ||h|| 2^-149 + 2 d 2^-126
///                  + 2 u64 (A + |b|)   (rounding of W to f32, underflow, adding b)
///
/// With B above the sum of this (times 1.01) and the exact path's error
/// ([`ExactLogitError`]), a class whose z32 is more than 2B below the largest z32 has a
/// smaller z64 than the class of the largest z32, so the f64 argmax is among the classes
/// within 2B of the top: when that is one class it is the decision; else those classes'
/// z64 are computed and compared as on the exact path. Samples whose f32 product could
/// overflow, or gives a non-finite value, take every class as a candidate.
pub(super) struct F32Logits {
    /// W rounded to f32, K x d.
    pub(super) weight: Mat<f32>,
    /// gamma32_d (1 + u32) + u32.
    relative_f32: f64,
    dim: usize,
}

impl F32Logits {
    /// `None` when d is so large that f32 sums carry no guarantee.
    pub(super) fn new(classifier: &Classifier) -> Option<Self> {
        let (k, d) = (classifier.num_classes(), classifier.dim());
        Some(Self {
            weight: Mat::from_fn(k, d, |c, j| classifier.row(c)[j] as f32),
            relative_f32: gamma(d, UNIT_F32)? * (1.0 + UNIT_F32) + UNIT_F32,
            dim: d,
        })
    }

    /// The f32 part of B for a sample with ||h|| <= `norm` (max_k ||w_k|| and max_k |b_k|
    /// from `exact`); infinite where f32 could overflow.
    fn error_bound(&self, exact: &ExactLogitError, norm: f64) -> f64 {
        let a = exact.max_row_norm * norm;
        if a.is_nan() || a >= F32_PRODUCT_LIMIT {
            return f64::INFINITY;
        }
        let d = self.dim as f64;
        1.01 * (self.relative_f32 * a
            + 2.0 * d.sqrt() * norm * 2f64.powi(-149)
            + 2.0 * d * 2f64.powi(-126)
            + 2.0 * UNIT_F64 * (a + exact.max_abs_bias))
    }

    /// The argmax over classes of the exact path's logits `exact(c)` (first class on ties,
    /// as [`argmin`] of their negatives), decided from the f32 products `z32` = W h and the
    /// bias wherever the bound allows, for a sample of class y with ||h|| <= `norm`.
    pub(super) fn decide(
        &self,
        z32: &[f32],
        bias: &[f64],
        errors: &ExactLogitError,
        norm: f64,
        y: usize,
        exact: impl Fn(usize) -> f64,
    ) -> usize {
        let bound = self.error_bound(errors, norm) + errors.bound(norm, y);
        let z = |c: usize| f64::from(z32[c]) + bias[c];
        let classes = 0..z32.len();
        let certified = bound.is_finite() && classes.clone().all(|c| z(c).is_finite());
        let top = classes.clone().map(z).fold(f64::NEG_INFINITY, f64::max);
        let floor = top - 2.0 * bound;
        let mut candidates = classes.filter(|&c| !certified || z(c) >= floor);
        match (candidates.next(), candidates.clone().next()) {
            (Some(only), None) => only,
            (first, _) => argmin(first.into_iter().chain(candidates).map(|c| (c, -exact(c)))),
        }
    }
}

#[cfg(test)]
mod tests;
