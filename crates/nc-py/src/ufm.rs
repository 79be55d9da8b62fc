//! `nclab.ufm`: the closed-form optimum of the unconstrained feature model and the solver,
//! with the checks and report fields of `nclab ufm` (crates/nclab/src/cmd/ufm.rs, docs/ufm.md);
//! messages name the Python arguments where the CLI names its flags.

use crate::error::{value, Result};
use crate::guard;
use nc_math::loss::{LossKind, LossParams};
use nc_math::ufm::solver::{minimize, random_start, Optimizer, SolveOptions};
use nc_math::ufm::{relative_gap, solution_metrics, theory, Ufm};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::time::Instant;

/// A point with ||(W, H)||_F at most this is the origin, where the NC metrics are 0/0 (as in
/// crates/nclab/src/cmd/ufm.rs).
const ORIGIN_NORM: f64 = 1e-6;

/// The UFM instance, checked as `nclab ufm` checks its flags.
#[allow(clippy::too_many_arguments)]
fn instance(
    loss: &str,
    classes: i64,
    per_class: i64,
    dim: i64,
    lambda_w: f64,
    lambda_h: f64,
    lambda_b: f64,
    alpha: f64,
    gamma: f64,
    rescale: f64,
) -> Result<Ufm> {
    let kind: LossKind = loss.parse()?;
    for (name, v) in [
        ("alpha", alpha),
        ("gamma", gamma),
        ("rescale", rescale),
        ("lambda_w", lambda_w),
        ("lambda_h", lambda_h),
        ("lambda_b", lambda_b),
    ] {
        if !v.is_finite() {
            return Err(value(format!("{name} must be a finite number, got {v}")));
        }
    }
    let count = |name: &str, v: i64, min: i64| -> Result<usize> {
        if v < min {
            return Err(value(format!("{name} must be at least {min}, got {v}")));
        }
        Ok(v as usize)
    };
    let (classes, per_class, dim) = (
        count("classes", classes, 2)?,
        count("per_class", per_class, 1)?,
        count("dim", dim, 1)?,
    );
    for (name, v) in [
        ("lambda_w", lambda_w),
        ("lambda_h", lambda_h),
        ("lambda_b", lambda_b),
    ] {
        if v < 0.0 {
            return Err(value(format!("{name} must be >= 0, got {v}")));
        }
    }
    let params = LossParams {
        alpha,
        gamma,
        rescale,
    };
    Ok(Ufm::new(
        kind.with_params(params),
        classes,
        per_class,
        dim,
        lambda_w,
        lambda_h,
        lambda_b,
    )?)
}

/// f* of the theory: {value, margin, origin_is_optimal, origin_is_spurious_local_minimum},
/// or None where the theory does not cover the instance.
#[pyfunction]
#[pyo3(signature = (loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b, *, alpha=0.05, gamma=3.0, rescale=15.0))]
#[allow(clippy::too_many_arguments)]
pub fn ufm_optimum<'py>(
    py: Python<'py>,
    loss: &str,
    classes: i64,
    per_class: i64,
    dim: i64,
    lambda_w: f64,
    lambda_h: f64,
    lambda_b: f64,
    alpha: f64,
    gamma: f64,
    rescale: f64,
) -> Result<Option<Bound<'py, PyDict>>> {
    let ufm = instance(
        loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b, alpha, gamma, rescale,
    )?;
    let Some(optimum) = guard::compute(py, || Ok(theory::optimum(&ufm)))? else {
        return Ok(None);
    };
    let dict = PyDict::new(py);
    dict.set_item("value", optimum.value)?;
    dict.set_item("margin", optimum.margin)?;
    dict.set_item("origin_is_optimal", optimum.origin_is_optimal)?;
    dict.set_item(
        "origin_is_spurious_local_minimum",
        optimum.origin_is_spurious_local_minimum(),
    )?;
    Ok(Some(dict))
}

/// Why the theory gives no f* for the instance, or None when it does.
#[pyfunction]
#[pyo3(signature = (loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b, *, alpha=0.05, gamma=3.0, rescale=15.0))]
#[allow(clippy::too_many_arguments)]
pub fn ufm_not_covered_reason(
    loss: &str,
    classes: i64,
    per_class: i64,
    dim: i64,
    lambda_w: f64,
    lambda_h: f64,
    lambda_b: f64,
    alpha: f64,
    gamma: f64,
    rescale: f64,
) -> Result<Option<String>> {
    let ufm = instance(
        loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b, alpha, gamma, rescale,
    )?;
    guard::caught(|| Ok(theory::not_covered_reason(&ufm)))
}

/// Solves the UFM from a seeded random start: the keys of `nclab ufm --json`.
#[pyfunction]
#[pyo3(signature = (loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b, *, alpha=0.05, gamma=3.0, rescale=15.0, seed=0, init_scale=0.1, optimizer="lbfgs", tol=1e-10, max_iter=10000, lr=0.1, momentum=0.9, memory=10, target_gap=None))]
#[allow(clippy::too_many_arguments)]
pub fn ufm_solve<'py>(
    py: Python<'py>,
    loss: &str,
    classes: i64,
    per_class: i64,
    dim: i64,
    lambda_w: f64,
    lambda_h: f64,
    lambda_b: f64,
    alpha: f64,
    gamma: f64,
    rescale: f64,
    seed: u64,
    init_scale: f64,
    optimizer: &str,
    tol: f64,
    max_iter: usize,
    lr: f64,
    momentum: f64,
    memory: usize,
    target_gap: Option<f64>,
) -> Result<Bound<'py, PyDict>> {
    let ufm = instance(
        loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b, alpha, gamma, rescale,
    )?;
    for (name, v) in [
        ("init_scale", init_scale),
        ("tol", tol),
        ("lr", lr),
        ("momentum", momentum),
    ] {
        if !v.is_finite() {
            return Err(value(format!("{name} must be a finite number, got {v}")));
        }
    }
    if init_scale < 0.0 {
        return Err(value(format!("init_scale must be >= 0, got {init_scale}")));
    }
    let optimizer = match optimizer {
        "lbfgs" => Optimizer::Lbfgs { memory },
        "gd" => Optimizer::GradientDescent { step: lr },
        "momentum" => Optimizer::Momentum { step: lr, momentum },
        other => {
            return Err(value(format!(
                "optimizer must be 'lbfgs', 'gd' or 'momentum', got '{other}'"
            )))
        }
    };
    let pairs = if matches!(optimizer, Optimizer::Lbfgs { .. }) {
        memory
    } else {
        0
    };
    let limit = nc_data::limits::max_memory();
    match ufm.working_set_bytes(pairs) {
        Some(bytes) if bytes <= limit => {}
        estimate => {
            return Err(value(format!(
                "K = {}, n = {}, d = {} needs about {} (W, H, b, the solver's vectors and the N x K logits), above the memory limit of {} (raise it with NCLAB_MAX_MEMORY)",
                ufm.classes,
                ufm.per_class,
                ufm.dim,
                estimate.map_or("more than 16 EiB".to_string(), nc_data::limits::human),
                nc_data::limits::human(limit)
            )))
        }
    }
    if memory == 0 {
        return Err(value("memory must be at least 1"));
    }
    if lr <= 0.0 {
        return Err(value(format!("lr must be > 0, got {lr}")));
    }
    if !(0.0..1.0).contains(&momentum) {
        return Err(value(format!("momentum must be in [0, 1), got {momentum}")));
    }
    if tol < 0.0 {
        return Err(value(format!("tol must be >= 0, got {tol}")));
    }
    let report = guard::compute(py, move || {
        let optimum = theory::optimum(&ufm);
        let mut options = SolveOptions {
            optimizer,
            grad_tol: tol,
            max_iter,
            target: None,
        };
        if let Some(gap) = target_gap {
            if !(gap.is_finite() && gap >= 0.0) {
                return Err(value(format!(
                    "target_gap must be a finite number >= 0, got {gap}"
                )));
            }
            let Some(optimum) = &optimum else {
                return Err(value(format!(
                    "target_gap needs f*, which the theory does not give here: {}",
                    theory::not_covered_reason(&ufm).unwrap_or_default()
                )));
            };
            options.target = Some(nc_math::ufm::objective_at_gap(gap, optimum.value));
        }
        let start = random_start(&ufm, seed, init_scale)?;
        let clock = Instant::now();
        let solution = minimize(&ufm, start, &options, |_, _| {})?;
        let seconds = clock.elapsed().as_secs_f64();
        let nc = nc_values(&ufm, &solution.x)?;
        Ok((solution, optimum.map(|o| o.value), seconds, nc))
    })?;
    let (solution, optimum, seconds, [nc1, nc2, nc3, nc4]) = report;
    let dict = PyDict::new(py);
    dict.set_item("objective", solution.objective)?;
    dict.set_item("optimum", optimum)?;
    dict.set_item(
        "relative_gap",
        optimum.map(|o| relative_gap(solution.objective, o)),
    )?;
    dict.set_item("grad_norm", solution.grad_norm)?;
    dict.set_item("iterations", solution.iterations)?;
    dict.set_item("seconds", seconds)?;
    for (key, v) in [("nc1", nc1), ("nc2", nc2), ("nc3", nc3), ("nc4", nc4)] {
        dict.set_item(key, v.filter(|v| v.is_finite()))?;
    }
    Ok(dict)
}

/// [nc1, nc2, nc3, nc4] of a point; all None at the origin or where the class means
/// coincide (crates/nclab/src/cmd/ufm.rs).
fn nc_values(ufm: &Ufm, x: &[f64]) -> Result<[Option<f64>; 4]> {
    let weights_and_features = &x[..x.len() - ufm.classes];
    let norm = weights_and_features
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt();
    if norm <= ORIGIN_NORM {
        return Ok([None; 4]);
    }
    Ok(match solution_metrics(ufm, x)? {
        Some(m) => [Some(m.nc1), m.nc2, m.nc3, m.nc4],
        None => [None; 4],
    })
}
