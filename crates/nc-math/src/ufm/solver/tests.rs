use super::*;
use crate::loss::Loss;
use crate::ufm::test_support::{all_losses, random_point};
use crate::ufm::{relative_gap, solution_metrics, theory};

fn lbfgs(max_iter: usize) -> SolveOptions {
    SolveOptions {
        optimizer: Optimizer::Lbfgs { memory: 10 },
        grad_tol: 1e-12,
        max_iter,
        target: None,
    }
}

/// (K, n, d, lambda_w, lambda_h, lambda_b): d = K-1, d > K, strong (origin-optimal for the
/// softmax losses) and strong-but-not-origin regularisation.
const GRID: [(usize, usize, usize, f64, f64, f64); 4] = [
    (4, 5, 3, 5e-3, 5e-3, 1e-2),
    (3, 4, 6, 1e-2, 2e-2, 0.0),
    (4, 5, 6, 0.2, 0.2, 0.1),
    (5, 3, 8, 0.05, 0.05, 0.05),
];

#[test]
fn lbfgs_reaches_the_theoretical_optimum_with_neural_collapse() {
    for loss in all_losses() {
        let rescales: &[Loss] = match loss {
            Loss::Mse { .. } => &[Loss::Mse { rescale: 15.0 }, Loss::Mse { rescale: 1.0 }],
            _ => &[loss],
        };
        for &loss in rescales {
            for (case, &(k, n, d, lw, lh, lb)) in GRID.iter().enumerate() {
                let lb = if loss.is_shift_invariant() { lb } else { 0.0 };
                let ufm = Ufm::new(loss, k, n, d, lw, lh, lb).unwrap();
                let optimum = theory::optimum(&ufm).unwrap();
                let start = random_start(&ufm, case as u64, 0.1).unwrap();
                let solution = minimize(&ufm, start, &lbfgs(20_000), |_, _| {}).unwrap();
                let gap = relative_gap(solution.objective, optimum.value);
                let label =
                    format!("{loss} K={k} n={n} d={d} lambdas=({lw},{lh},{lb}): {solution:?}");
                assert!(
                    gap.abs() <= 1e-9,
                    "gap {gap} {}",
                    &label[..label.len().min(400)]
                );
                assert!(solution.stop != Stop::MaxIterations, "{}", &label[..200]);
                if optimum.origin_is_optimal {
                    let blocks = ufm.blocks(&solution.x);
                    let norm = (blocks.w.norm_l2().powi(2) + blocks.h.norm_l2().powi(2)).sqrt();
                    assert!(
                        norm <= 1e-6,
                        "|(W, H)| = {norm} at an optimal origin, {}",
                        &label[..200]
                    );
                } else {
                    let metrics = solution_metrics(&ufm, &solution.x)
                        .unwrap()
                        .expect("distinct class means");
                    let (nc2, nc3) = (metrics.nc2.unwrap(), metrics.nc3.unwrap());
                    assert!(
                        metrics.nc1 <= 1e-5 && nc2 <= 1e-5 && nc3 <= 1e-5,
                        "NC {} {nc2} {nc3}, {}",
                        metrics.nc1,
                        &label[..200]
                    );
                }
            }
        }
    }
}

#[test]
fn fixed_step_methods_descend() {
    let ufm = Ufm::new(
        Loss::LabelSmoothing { alpha: 0.1 },
        3,
        4,
        4,
        1e-2,
        1e-2,
        1e-2,
    )
    .unwrap();
    let start = random_point(&ufm, 7, 0.1);
    let initial = ufm.value(&start);
    for optimizer in [
        Optimizer::GradientDescent { step: 0.5 },
        Optimizer::Momentum {
            step: 0.1,
            momentum: 0.9,
        },
    ] {
        let mut trace = Vec::new();
        let options = SolveOptions {
            optimizer,
            grad_tol: 1e-6,
            max_iter: 300,
            target: None,
        };
        let solution = minimize(&ufm, start.clone(), &options, |it, _| trace.push(*it)).unwrap();
        assert_eq!(
            trace.len(),
            solution.iterations + 1,
            "the start and every iterate are observed"
        );
        assert!((trace[0].objective - initial).abs() <= 1e-15 * initial);
        assert!(
            solution.objective < 0.9 * initial,
            "{optimizer:?}: {} from {initial}",
            solution.objective
        );
    }
    let diverging = SolveOptions {
        optimizer: Optimizer::GradientDescent { step: 1e6 },
        grad_tol: 0.0,
        max_iter: 50,
        target: None,
    };
    assert!(minimize(&ufm, start, &diverging, |_, _| {}).is_err());
}

#[test]
fn random_starts_are_seeded_and_options_are_checked() {
    let ufm = Ufm::new(Loss::CrossEntropy, 3, 2, 2, 0.1, 0.1, 0.1).unwrap();
    assert_eq!(
        random_start(&ufm, 1, 0.1).unwrap(),
        random_start(&ufm, 1, 0.1).unwrap()
    );
    assert_ne!(
        random_start(&ufm, 1, 0.1).unwrap(),
        random_start(&ufm, 2, 0.1).unwrap()
    );
    assert!(random_start(&ufm, 1, f64::NAN).is_err());
    let start = random_point(&ufm, 0, 0.1);
    for optimizer in [
        Optimizer::Lbfgs { memory: 0 },
        Optimizer::GradientDescent { step: -1.0 },
        Optimizer::Momentum {
            step: 0.1,
            momentum: 1.0,
        },
    ] {
        let options = SolveOptions {
            optimizer,
            grad_tol: 1e-8,
            max_iter: 10,
            target: None,
        };
        assert!(
            minimize(&ufm, start.clone(), &options, |_, _| {}).is_err(),
            "{optimizer:?}"
        );
    }
    assert!(minimize(&ufm, vec![0.0; 3], &lbfgs(10), |_, _| {}).is_err());
}

#[test]
fn a_target_value_stops_the_solve_early() {
    let ufm = Ufm::new(Loss::CrossEntropy, 4, 5, 6, 5e-3, 5e-3, 1e-2).unwrap();
    let optimum = theory::optimum(&ufm).unwrap().value;
    let start = random_point(&ufm, 0, 0.1);
    let full = minimize(&ufm, start.clone(), &lbfgs(10_000), |_, _| {}).unwrap();
    let options = SolveOptions {
        target: Some(optimum * (1.0 + 1e-3)),
        ..lbfgs(10_000)
    };
    let early = minimize(&ufm, start, &options, |_, _| {}).unwrap();
    assert_eq!(early.stop, Stop::ReachedTarget);
    assert!(early.iterations < full.iterations);
    assert!(relative_gap(early.objective, optimum) <= 1e-3);
}

/// The textbook two-loop recursion on explicit vectors (Nocedal & Wright, Algorithm 7.4).
fn explicit_two_loop(pairs: &[(Vec<f64>, Vec<f64>)], grad: &[f64]) -> Vec<f64> {
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut q: Vec<f64> = grad.iter().map(|g| -g).collect();
    let mut alphas = vec![0.0; pairs.len()];
    for (i, (s, y)) in pairs.iter().enumerate().rev() {
        alphas[i] = dot(s, &q) / dot(y, s);
        q.iter_mut()
            .zip(y)
            .for_each(|(qj, yj)| *qj -= alphas[i] * yj);
    }
    let gamma = match pairs.last() {
        Some((s, y)) => dot(s, y) / dot(y, y),
        None => 1.0 / dot(grad, grad).sqrt(),
    };
    q.iter_mut().for_each(|qj| *qj *= gamma);
    for (i, (s, y)) in pairs.iter().enumerate() {
        let beta = dot(y, &q) / dot(y, s);
        q.iter_mut()
            .zip(s)
            .for_each(|(qj, sj)| *qj += (alphas[i] - beta) * sj);
    }
    q
}

#[test]
fn vector_free_direction_equals_the_explicit_two_loop_recursion() {
    use rand::Rng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Long enough for the threaded passes; a diagonal quadratic gives pairs with s.y > 0.
    let n = 3 * crate::vector::PARALLEL_LENGTH + 11;
    let curvature: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..4.0)).collect();
    let state_at = |x: Vec<f64>| {
        let grad: Vec<f64> = x.iter().zip(&curvature).map(|(x, c)| c * x).collect();
        let grad_norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        State {
            x,
            value: 0.0,
            grad,
            grad_norm,
        }
    };
    let memory = 3;
    let mut lbfgs = Lbfgs::new(memory);
    let mut explicit: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut state = state_at((0..n).map(|_| rng.random_range(-1.0..1.0)).collect());
    // Six updates: the memory fills, then the oldest pairs are dropped.
    for update in 0..6 {
        let (direction, slope) = lbfgs.direction(&state);
        let expected = explicit_two_loop(&explicit, &state.grad);
        let scale = expected.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let worst = direction
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-10 * scale,
            "update {update}: {worst} vs scale {scale}"
        );
        let expected_slope: f64 = expected.iter().zip(&state.grad).map(|(d, g)| d * g).sum();
        assert!((slope - expected_slope).abs() <= 1e-10 * expected_slope.abs());
        let next = state_at(
            state
                .x
                .iter()
                .map(|x| x + rng.random_range(-0.3..0.3) * x.abs().max(0.1))
                .collect(),
        );
        let s: Vec<f64> = next.x.iter().zip(&state.x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next
            .grad
            .iter()
            .zip(&state.grad)
            .map(|(a, b)| a - b)
            .collect();
        lbfgs.update(&state, &next);
        if explicit.len() == memory {
            explicit.remove(0);
        }
        explicit.push((s, y));
        assert_eq!(lbfgs.pairs.len(), explicit.len());
        state = next;
    }
}
