//! The landscape probe: random restarts, and the curvature of the full UFM objective at
//! critical points (the origin, a point where two classes share one mean, the global NC
//! solution), measured as the extreme eigenvalues of the exact Hessian by Lanczos.

use super::objective::{Objective, Ufm};
use super::solver::{minimize, random_start, Solution, SolveOptions};
use super::{relative_gap, theory};
use crate::error::Result;
use crate::linalg::dot_in_order;
use crate::loss::Loss;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

/// Extreme eigenvalues of a Hessian, from Lanczos.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Curvature {
    /// Smallest Ritz value: an upper bound on the smallest eigenvalue; when negative, the
    /// Ritz vector is a direction of negative curvature.
    pub smallest: f64,
    /// Largest Ritz value: a lower bound on the largest eigenvalue.
    pub largest: f64,
    /// Lanczos steps taken (Krylov dimension).
    pub steps: usize,
}

impl Curvature {
    /// Scale below which an eigenvalue counts as zero: `1e-8 * max(1, |largest|)`.
    pub fn zero_tolerance(&self) -> f64 {
        1e-8 * self.largest.abs().max(1.0)
    }

    /// True when the Hessian has an eigenvalue clearly below zero.
    pub fn has_negative_curvature(&self) -> bool {
        self.smallest < -self.zero_tolerance()
    }
}

/// Extreme eigenvalues of `Hess f(x)` by `steps` Lanczos iterations (capped at the number
/// of parameters) with full reorthogonalisation, from a seeded random start vector, on
/// exact Hessian-vector products. The Ritz values come from Sturm-sequence bisection on the
/// tridiagonal matrix.
pub fn hessian_curvature(ufm: &Ufm, x: &[f64], steps: usize, seed: u64) -> Curvature {
    let dim = ufm.num_params();
    let steps = steps.clamp(1, dim);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut q: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
    normalise(&mut q);
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(steps);
    let (mut diagonal, mut off_diagonal) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    let mut w = vec![0.0; dim];
    for step in 0..steps {
        ufm.hvp(x, &q, &mut w);
        let alpha = dot_in_order(&w, &q);
        diagonal.push(alpha);
        basis.push(q);
        // Full reorthogonalisation (twice is enough) against every earlier Lanczos vector.
        for _ in 0..2 {
            for v in &basis {
                let overlap = dot_in_order(&w, v);
                w.iter_mut().zip(v).for_each(|(wi, vi)| *wi -= overlap * vi);
            }
        }
        let beta = dot_in_order(&w, &w).sqrt();
        if step + 1 == steps
            || beta
                <= 1e-12
                    * diagonal
                        .iter()
                        .map(|a: &f64| a.abs())
                        .fold(1e-300, f64::max)
        {
            break;
        }
        off_diagonal.push(beta);
        q = w.iter().map(|wi| wi / beta).collect();
    }
    let steps = diagonal.len();
    let off = &off_diagonal[..steps - 1];
    Curvature {
        smallest: tridiagonal_eigenvalue(&diagonal, off, 0),
        largest: tridiagonal_eigenvalue(&diagonal, off, steps - 1),
        steps,
    }
}

/// The `index`-th smallest eigenvalue of the symmetric tridiagonal matrix with `diagonal`
/// and `off` (one shorter), by bisection on the Sturm count of eigenvalues below a shift.
fn tridiagonal_eigenvalue(diagonal: &[f64], off: &[f64], index: usize) -> f64 {
    // Gershgorin bounds.
    let radius =
        |i: usize| off.get(i).map_or(0.0, |b| b.abs()) + if i > 0 { off[i - 1].abs() } else { 0.0 };
    let mut lo = (0..diagonal.len())
        .map(|i| diagonal[i] - radius(i))
        .fold(f64::INFINITY, f64::min);
    let mut hi = (0..diagonal.len())
        .map(|i| diagonal[i] + radius(i))
        .fold(f64::NEG_INFINITY, f64::max);
    let count_below = |shift: f64| {
        let mut count = 0;
        let mut d = 1.0;
        for (i, a) in diagonal.iter().enumerate() {
            let coupling = if i > 0 { off[i - 1] * off[i - 1] } else { 0.0 };
            d = a - shift - if i > 0 { coupling / d } else { 0.0 };
            if d == 0.0 {
                d = -f64::EPSILON * (a.abs() + shift.abs()).max(f64::MIN_POSITIVE);
            }
            if d < 0.0 {
                count += 1;
            }
        }
        count
    };
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if count_below(mid) > index {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The critical point at the origin: `W = H = 0` and the bias that zeroes the gradient
/// there — `b = 0` for `ce`/`ls`/`fl`; for `mse` (rescale s), `b = (2 s / K^2) / (2/K + lb) 1`
/// (`(s/K) 1` when `lb = 0`).
pub fn origin(ufm: &Ufm) -> Vec<f64> {
    let mut x = vec![0.0; ufm.num_params()];
    if let Loss::Mse { rescale } = ufm.loss {
        let k = ufm.classes as f64;
        let bias = 2.0 * rescale / (k * k) / (2.0 / k + ufm.lambda_b);
        ufm.blocks_mut(&mut x).b.iter_mut().for_each(|b| *b = bias);
    }
    x
}

/// The UFM restricted to points where classes 0 and 1 share everything: equal classifier
/// rows, equal biases, and `h_{0,i} = h_{1,i}`. It is `f(P x)` with `P` the orthogonal
/// projection that averages the two classes. `f` is invariant under swapping the two
/// classes, so its gradient at a fixed point is fixed: a critical point of this restricted
/// problem is a critical point of the full UFM (symmetric criticality).
pub struct MergedClasses<'a> {
    pub ufm: &'a Ufm,
}

impl MergedClasses<'_> {
    /// `P x`: averages W rows 0 and 1, `b_0` and `b_1`, and the features of the two classes.
    pub fn project(&self, x: &mut [f64]) {
        let ufm = self.ufm;
        let n = ufm.per_class;
        let mut blocks = ufm.blocks_mut(x);
        for j in 0..ufm.dim {
            let mean = 0.5 * (blocks.w[(0, j)] + blocks.w[(1, j)]);
            blocks.w[(0, j)] = mean;
            blocks.w[(1, j)] = mean;
            for i in 0..n {
                let mean = 0.5 * (blocks.h[(j, i)] + blocks.h[(j, n + i)]);
                blocks.h[(j, i)] = mean;
                blocks.h[(j, n + i)] = mean;
            }
        }
        let mean = 0.5 * (blocks.b[0] + blocks.b[1]);
        blocks.b[0] = mean;
        blocks.b[1] = mean;
    }
}

impl Objective for MergedClasses<'_> {
    fn num_params(&self) -> usize {
        self.ufm.num_params()
    }

    /// `f(P x)` and `P grad f(P x)`.
    fn value_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut projected = x.to_vec();
        self.project(&mut projected);
        let value = self.ufm.value_grad(&projected, grad);
        self.project(grad);
        value
    }
}

/// What the probe should do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOptions {
    pub restarts: usize,
    pub seed: u64,
    pub init_scale: f64,
    pub solve: SolveOptions,
    pub lanczos_steps: usize,
}

/// One random restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    pub seed: u64,
    pub objective: f64,
    /// `(f - f*) / |f*|`, when the theory gives `f*`.
    pub relative_gap: Option<f64>,
    pub grad_norm: f64,
    pub iterations: usize,
}

/// A critical point and the curvature there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriticalPoint {
    /// `origin`, `merged_classes` or `global`.
    pub name: &'static str,
    pub objective: f64,
    pub relative_gap: Option<f64>,
    /// `||grad f||` there: how critical the point is.
    pub grad_norm: f64,
    pub curvature: Curvature,
    /// Plain-words reading of the numbers against the theory.
    pub verdict: String,
}

/// The whole probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Landscape {
    pub optimum: Option<f64>,
    pub optimal_margin: Option<f64>,
    /// Why the theory gives no optimum, if it does not.
    pub theory_gap: Option<String>,
    pub restarts: Vec<Restart>,
    pub critical_points: Vec<CriticalPoint>,
}

/// Runs the restarts and measures the curvature at the origin, at the merged-classes
/// critical point (found by minimising [`MergedClasses`] from a random start) and at the
/// global solution (the constructed NC solution; when the theory does not cover the case,
/// the best restart).
pub fn probe(ufm: &Ufm, options: &ProbeOptions) -> Result<Landscape> {
    let optimum = theory::optimum(ufm);
    let gap = |value: f64| optimum.as_ref().map(|o| relative_gap(value, o.value));
    let mut restarts = Vec::with_capacity(options.restarts);
    let mut best: Option<Solution> = None;
    for r in 0..options.restarts {
        let seed = options.seed.wrapping_add(r as u64);
        let solution = minimize(
            ufm,
            random_start(ufm, seed, options.init_scale)?,
            &options.solve,
            |_, _| {},
        )?;
        restarts.push(Restart {
            seed,
            objective: solution.objective,
            relative_gap: gap(solution.objective),
            grad_norm: solution.grad_norm,
            iterations: solution.iterations,
        });
        if best
            .as_ref()
            .is_none_or(|b| solution.objective < b.objective)
        {
            best = Some(solution);
        }
    }

    let measure = |name: &'static str, x: &[f64]| {
        let mut grad = vec![0.0; x.len()];
        let objective = ufm.value_grad(x, &mut grad);
        let curvature = hessian_curvature(ufm, x, options.lanczos_steps, options.seed);
        CriticalPoint {
            name,
            objective,
            relative_gap: gap(objective),
            grad_norm: dot_in_order(&grad, &grad).sqrt(),
            curvature,
            verdict: String::new(),
        }
    };
    let mut points = Vec::new();

    let mut at_origin = measure("origin", &origin(ufm));
    at_origin.verdict = match (&optimum, at_origin.curvature.has_negative_curvature()) {
        (_, true) => "strict saddle: negative curvature, escapable by gradient methods".into(),
        (Some(o), false) if o.origin_is_optimal => {
            "global minimiser (origin-optimal regime)".into()
        }
        (Some(o), false) if o.origin_is_spurious_local_minimum() => {
            "local minimiser that is NOT global: no negative curvature, yet f* is lower".into()
        }
        _ => "no negative curvature found".into(),
    };
    points.push(at_origin);

    let merged = MergedClasses { ufm };
    let mut start = random_start(ufm, options.seed.wrapping_add(1 << 32), options.init_scale)?;
    merged.project(&mut start);
    let mut merged_point = minimize(&merged, start, &options.solve, |_, _| {})?.x;
    merged.project(&mut merged_point);
    let mut at_merged = measure("merged_classes", &merged_point);
    at_merged.verdict = point_verdict(&at_merged, optimum.is_some());
    points.push(at_merged);

    let global = match &optimum {
        Some(o) => Some(theory::nc_solution(ufm, o)),
        None => best.map(|b| b.x),
    };
    if let Some(x) = global {
        let mut at_global = measure("global", &x);
        at_global.verdict = if at_global.curvature.has_negative_curvature() {
            "negative curvature at the claimed optimum: contradicts the theory".into()
        } else {
            "no negative curvature (zero modes from rotations of W, H and, with lambda_b = 0, the bias direction 1)"
                .into()
        };
        points.push(at_global);
    }

    Ok(Landscape {
        optimum: optimum.as_ref().map(|o| o.value),
        optimal_margin: optimum.as_ref().map(|o| o.margin),
        theory_gap: theory::not_covered_reason(ufm),
        restarts,
        critical_points: points,
    })
}

fn point_verdict(point: &CriticalPoint, theory_known: bool) -> String {
    let suboptimal = point.relative_gap.is_some_and(|g| g > 1e-9);
    match (point.curvature.has_negative_curvature(), suboptimal) {
        (true, true) => {
            "non-optimal critical point with negative curvature: a strict saddle".into()
        }
        (true, false) => "negative curvature".into(),
        (false, true) => {
            "non-optimal critical point WITHOUT negative curvature: a spurious local minimum".into()
        }
        (false, false) if theory_known => {
            "optimal: the merged point is the global solution (origin regime)".into()
        }
        (false, false) => "no negative curvature found".into(),
    }
}

fn normalise(v: &mut [f64]) {
    let norm = dot_in_order(v, v).sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests;
