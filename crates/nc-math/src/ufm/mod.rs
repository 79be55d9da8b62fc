//! The unconstrained feature model (UFM): its objective with exact derivatives, the
//! closed-form optimum of the theory, full-batch solvers, and the landscape probe.

pub mod landscape;
pub mod objective;
pub mod solver;
pub mod theory;

pub use objective::{Objective, Ufm};

use crate::error::{Error, Result};
use crate::metrics::{compute_metrics, Classifier, NcMetrics};

/// NC metrics of a UFM point (features H, classifier W, bias b), or `None` when every
/// class mean coincides (e.g. at the origin), where they are 0/0.
pub fn solution_metrics(ufm: &Ufm, x: &[f64]) -> Result<Option<NcMetrics>> {
    let blocks = ufm.blocks(x);
    let classifier = Classifier::new(
        ufm.classes,
        ufm.dim,
        ufm.weight_row_major(x),
        Some(blocks.b.to_vec()),
    )?;
    // H is d x N column-major, which is the N x d row-major feature matrix.
    let features = &x[ufm.classes * ufm.dim..ufm.classes * ufm.dim + ufm.dim * ufm.samples()];
    match compute_metrics::<f64>(
        features,
        &ufm.labels(),
        ufm.dim,
        ufm.classes,
        Some(&classifier),
        None,
    ) {
        Ok(metrics) => Ok(Some(metrics)),
        Err(Error::DegenerateMeans) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Relative distance to the optimum, `(f - f*) / |f*|` (`f - f*` when `f* = 0`). Signed:
/// a value below -1e-12 or so would contradict the theory.
pub fn relative_gap(objective: f64, optimum: f64) -> f64 {
    if optimum == 0.0 {
        objective
    } else {
        (objective - optimum) / optimum.abs()
    }
}

/// The objective value at relative gap `gap` from `optimum`, the inverse of
/// [`relative_gap`]: `f* + gap |f*|`, or `gap` itself when `f* = 0`.
pub fn objective_at_gap(gap: f64, optimum: f64) -> f64 {
    let scale = if optimum == 0.0 { 1.0 } else { optimum.abs() };
    optimum + gap * scale
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    #[test]
    fn objective_at_gap_inverts_relative_gap() {
        for optimum in [0.0, 2.5, -4.0, 1e-3] {
            for gap in [0.0, 1e-9, 0.25] {
                let f = objective_at_gap(gap, optimum);
                assert!(
                    (relative_gap(f, optimum) - gap).abs() < 1e-15,
                    "{optimum} {gap}"
                );
            }
        }
        assert_eq!(objective_at_gap(0.5, 0.0), 0.5);
        assert_eq!(objective_at_gap(0.5, -4.0), -2.0);
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Ufm;
    use crate::loss::Loss;

    pub fn all_losses() -> Vec<Loss> {
        vec![
            Loss::CrossEntropy,
            Loss::LabelSmoothing { alpha: 0.05 },
            Loss::Focal { gamma: 3.0 },
            Loss::Mse { rescale: 15.0 },
        ]
    }

    pub fn random_point(ufm: &Ufm, seed: u64, scale: f64) -> Vec<f64> {
        super::solver::random_start(ufm, seed, scale).unwrap()
    }
}
