//! The UFM's global optimum in closed form (docs/ufm.md, "The optimum f*").
//!
//! For `ce`, `ls`, `fl` every global minimiser is a neural-collapse solution, and with
//! `c = sqrt(n lW lH)` the optimal value reduces to a problem in the logit margin r:
//! `f* = min_{r >= 0} g(r)`, `g(r) = L(r) + (K-1) c r`, where `L(r)` is the loss at logits
//! `r (1 - 1/K)` for the true class and `-r/K` for the others. `g` need not be convex (focal
//! loss with many classes is concave near 0), so it is minimised globally: every sign change
//! of `g'` on a grid over `[0, L(0) / ((K-1) c)]` (past that, `g(r) > g(0)`) is refined by
//! bisection.
//! For `mse` (rescale s) with `lb = 0`: `f* = (K-1) [ (t-s)^2 / K^2 + c t ]`,
//! `t = max(0, s - c K^2 / 2)`.
//!
//! The theory needs `d >= K-1` and `lW, lH > 0` (otherwise the infimum is not attained);
//! for `mse` it covers `lb = 0` only.

use super::objective::Ufm;
use crate::loss::Loss;

/// Grid points of the margin bracket (log-spaced, plus r = 0).
const MARGIN_GRID: usize = 4000;
/// The grid starts at this fraction of the bracket's upper end.
const MARGIN_GRID_START: f64 = 1e-10;

/// A local minimum of the margin problem `g(r)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarginMinimum {
    pub margin: f64,
    pub value: f64,
}

/// The global optimum of a UFM instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimum {
    /// `f*`.
    pub value: f64,
    /// Optimal logit margin `r* = z_true - z_other`; 0 when the origin is optimal.
    pub margin: f64,
    /// True when `W = H = 0` is a global minimiser (`r* = 0`).
    pub origin_is_optimal: bool,
    /// Every local minimum of `g(r)` (for `mse`, the single one), by increasing margin.
    pub margin_minima: Vec<MarginMinimum>,
}

impl Optimum {
    /// True when `r = 0` is a local minimum of `g` but not the global one (focal loss with
    /// many classes): the origin is then a local minimiser of the UFM that is not global.
    pub fn origin_is_spurious_local_minimum(&self) -> bool {
        !self.origin_is_optimal && self.margin_minima.first().is_some_and(|m| m.margin == 0.0)
    }
}

/// Why the theory does not give the optimum of an instance, if it does not.
pub fn not_covered_reason(ufm: &Ufm) -> Option<String> {
    if ufm.dim + 1 < ufm.classes {
        return Some(format!(
            "the theory needs d >= K-1 (d = {}, K = {})",
            ufm.dim, ufm.classes
        ));
    }
    if ufm.lambda_w <= 0.0 || ufm.lambda_h <= 0.0 {
        return Some("with lambda_w = 0 or lambda_h = 0 the infimum is not attained".into());
    }
    if !ufm.loss.is_shift_invariant() && ufm.lambda_b != 0.0 {
        return Some("the closed form for mse needs lambda_b = 0".into());
    }
    None
}

/// `c = sqrt(n lW lH)`.
fn coupling(ufm: &Ufm) -> f64 {
    (ufm.per_class as f64 * ufm.lambda_w * ufm.lambda_h).sqrt()
}

/// Logits of an NC solution with margin r: `r (1 - 1/K)` at the true class 0, `-r/K` elsewhere.
fn margin_logits(classes: usize, margin: f64) -> Vec<f64> {
    let k = classes as f64;
    let mut z = vec![-margin / k; classes];
    z[0] = margin * (1.0 - 1.0 / k);
    z
}

/// `L(r)`: the loss at the margin-r logits.
pub fn margin_loss(loss: &Loss, classes: usize, margin: f64) -> f64 {
    loss.value(&margin_logits(classes, margin), 0)
}

/// `g(r) = L(r) + (K-1) c r` and `g'(r) = grad L . (e_k - 1/K) + (K-1) c`, where
/// `grad L . (e_k - 1/K) = (grad L)_k`: the losses that reach here (`ce`, `ls`, `fl`) are
/// shift-invariant, so their gradient sums to 0.
fn margin_objective(ufm: &Ufm, margin: f64) -> (f64, f64) {
    let k = ufm.classes;
    let z = margin_logits(k, margin);
    let mut grad = vec![0.0; k];
    let value = ufm.loss.value_grad(&z, 0, &mut grad);
    let linear = (k - 1) as f64 * coupling(ufm);
    (value + linear * margin, grad[0] + linear)
}

/// The optimum, or `None` where [`not_covered_reason`] gives a reason.
pub fn optimum(ufm: &Ufm) -> Option<Optimum> {
    if not_covered_reason(ufm).is_some() {
        return None;
    }
    let minima = match ufm.loss {
        Loss::Mse { rescale } => vec![mse_minimum(ufm, rescale)],
        _ => margin_minima(ufm),
    };
    let best = *minima
        .iter()
        .min_by(|a, b| a.value.total_cmp(&b.value))
        .expect("margin_minima brackets the global minimum (see there)");
    Some(Optimum {
        value: best.value,
        margin: best.margin,
        origin_is_optimal: best.margin == 0.0,
        margin_minima: minima,
    })
}

/// `t = max(0, s - c K^2 / 2)`, `f* = (K-1) [ (t-s)^2 / K^2 + c t ]`.
fn mse_minimum(ufm: &Ufm, rescale: f64) -> MarginMinimum {
    let (k, c) = (ufm.classes as f64, coupling(ufm));
    let t = (rescale - c * k * k / 2.0).max(0.0);
    MarginMinimum {
        margin: t,
        value: (k - 1.0) * ((t - rescale).powi(2) / (k * k) + c * t),
    }
}

/// All local minima of `g` on `[0, r_max]`, each refined to machine precision: the origin
/// when `g'(0) >= 0`, and every grid cell where `g'` turns from negative to non-negative.
///
/// The global minimum is among them: `g(r) >= (K-1) c r >= g(0)` for `r >= r_max`, and
/// `g(r_max) > g(0)` (L > 0), so when `g'(0) < 0` the minimum is interior and `g'` changes
/// sign on the way to it. A cell holds at most one critical point unless `g` has two within
/// 0.6% of each other (or within 1e-10 r_max of 0), which these losses do not.
fn margin_minima(ufm: &Ufm) -> Vec<MarginMinimum> {
    let (origin_value, origin_slope) = margin_objective(ufm, 0.0);
    let r_max = origin_value / ((ufm.classes - 1) as f64 * coupling(ufm));
    let ratio = (1.0 / MARGIN_GRID_START).powf(1.0 / (MARGIN_GRID - 1) as f64);
    let grid: Vec<f64> = std::iter::once(0.0)
        .chain((0..MARGIN_GRID).map(|i| r_max * MARGIN_GRID_START * ratio.powi(i as i32)))
        .collect();
    let slopes: Vec<f64> = grid.iter().map(|&r| margin_objective(ufm, r).1).collect();

    let mut minima = Vec::new();
    if origin_slope >= 0.0 {
        minima.push(MarginMinimum {
            margin: 0.0,
            value: origin_value,
        });
    }
    for (cell, slope) in grid.windows(2).zip(slopes.windows(2)) {
        if slope[0] < 0.0 && slope[1] >= 0.0 {
            minima.push(refine_minimum(ufm, cell[0], cell[1]));
        }
    }
    minima
}

/// The minimum of `g` in `[lo, hi]`, where `g'(lo) < 0 <= g'(hi)`: bisection on the sign of
/// `g'` down to adjacent floats.
fn refine_minimum(ufm: &Ufm, mut lo: f64, mut hi: f64) -> MarginMinimum {
    let slope = |r| margin_objective(ufm, r).1;
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if slope(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let margin = 0.5 * (lo + hi);
    MarginMinimum {
        margin,
        value: margin_objective(ufm, margin).0,
    }
}

/// Columns `E_k` (length d) of a d x K matrix with `E^T E = I_K - 11^T/K`: a simplex ETF
/// of K unit-free directions, built from the Helmert basis of the sum-zero subspace
/// (needs `d >= K-1`). Returned as `etf[k][j]`.
pub fn simplex_etf(classes: usize, dim: usize) -> Vec<Vec<f64>> {
    assert!(
        dim + 1 >= classes,
        "a simplex ETF of K vectors needs d >= K-1"
    );
    let mut etf = vec![vec![0.0; dim]; classes];
    for j in 0..classes - 1 {
        let norm = (((j + 1) * (j + 2)) as f64).sqrt();
        for row in etf.iter_mut().take(j + 1) {
            row[j] = 1.0 / norm;
        }
        etf[j + 1][j] = -((j + 1) as f64) / norm;
    }
    etf
}

/// The NC solution at the optimum as a parameter vector `[W | H | b]`:
/// `W_k = w E_k`, `h_{k,i} = h E_k`, with the self-dual scaling `w^2 = r sqrt(n lH / lW)`,
/// `h^2 = r sqrt(lW / (n lH))` (so `w h = r` and `lW w^2 = n lH h^2`), and
/// `b = 0` for `ce`/`ls`/`fl`, `b = (s/K) 1` for `mse`.
pub fn nc_solution(ufm: &Ufm, optimum: &Optimum) -> Vec<f64> {
    let n = ufm.per_class as f64;
    let r = optimum.margin;
    let w_scale = (r * (n * ufm.lambda_h / ufm.lambda_w).sqrt()).sqrt();
    let h_scale = (r * (ufm.lambda_w / (n * ufm.lambda_h)).sqrt()).sqrt();
    let etf = simplex_etf(ufm.classes, ufm.dim);
    let mut x = vec![0.0; ufm.num_params()];
    let mut blocks = ufm.blocks_mut(&mut x);
    for (k, direction) in etf.iter().enumerate() {
        for (j, e) in direction.iter().enumerate() {
            blocks.w[(k, j)] = w_scale * e;
        }
    }
    for i in 0..ufm.samples() {
        for (j, e) in etf[ufm.label(i)].iter().enumerate() {
            blocks.h[(j, i)] = h_scale * e;
        }
    }
    if let Loss::Mse { rescale } = ufm.loss {
        blocks
            .b
            .iter_mut()
            .for_each(|b| *b = rescale / ufm.classes as f64);
    }
    x
}

#[cfg(test)]
mod tests;
