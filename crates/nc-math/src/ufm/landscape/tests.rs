use super::*;
use crate::ufm::solver::Optimizer;

fn options(restarts: usize) -> ProbeOptions {
    ProbeOptions {
        restarts,
        seed: 3,
        init_scale: 0.1,
        solve: SolveOptions {
            optimizer: Optimizer::Lbfgs { memory: 10 },
            grad_tol: 1e-11,
            max_iter: 20_000,
            target: None,
        },
        lanczos_steps: 200,
    }
}

#[test]
fn sturm_bisection_finds_the_eigenvalues_of_the_second_difference_matrix() {
    let n = 12;
    let (diagonal, off) = (vec![2.0; n], vec![-1.0; n - 1]);
    for index in [0, 5, n - 1] {
        let expected =
            2.0 - 2.0 * (std::f64::consts::PI * (index + 1) as f64 / (n + 1) as f64).cos();
        assert!((tridiagonal_eigenvalue(&diagonal, &off, index) - expected).abs() < 1e-13);
    }
}

#[test]
fn curvature_at_the_origin_matches_its_closed_form() {
    // At W = H = 0 the Hessian couples W and H through the bilinear term with singular
    // value 1 / (K sqrt n); its smallest eigenvalue is
    // min(lb, (lW + lH)/2 - sqrt(((lW - lH)/2)^2 + 1 / (K^2 n))).
    for (lw, lh, lb) in [(1e-2, 3e-2, 0.5), (0.3, 0.2, 0.5), (0.3, 0.2, 0.01)] {
        let (k, n) = (3usize, 4usize);
        let ufm = Ufm::new(Loss::CrossEntropy, k, n, 3, lw, lh, lb).unwrap();
        let sigma2 = 1.0 / ((k * k * n) as f64);
        let coupled = 0.5 * (lw + lh) - (0.25 * (lw - lh) * (lw - lh) + sigma2).sqrt();
        let curvature = hessian_curvature(&ufm, &origin(&ufm), ufm.num_params(), 1);
        assert!(
            (curvature.smallest - coupled.min(lb)).abs() < 1e-10,
            "{curvature:?} vs {}",
            coupled.min(lb)
        );
    }
}

#[test]
fn merged_classes_projection_is_orthogonal_and_keeps_the_gradient_in_the_subspace() {
    let ufm = Ufm::new(
        Loss::LabelSmoothing { alpha: 0.1 },
        3,
        2,
        3,
        1e-2,
        1e-2,
        1e-2,
    )
    .unwrap();
    let merged = MergedClasses { ufm: &ufm };
    let mut x = random_start(&ufm, 1, 1.0).unwrap();
    merged.project(&mut x);
    let mut twice = x.clone();
    merged.project(&mut twice);
    assert_eq!(x, twice, "P is idempotent");
    let mut grad = vec![0.0; x.len()];
    ufm.value_grad(&x, &mut grad);
    let mut projected = grad.clone();
    merged.project(&mut projected);
    assert!(
        grad.iter()
            .zip(&projected)
            .all(|(a, b)| (a - b).abs() < 1e-15),
        "symmetric criticality"
    );
}

#[test]
fn small_regularisation_gives_a_benign_landscape_with_strict_saddles() {
    for loss in [Loss::CrossEntropy, Loss::LabelSmoothing { alpha: 0.05 }] {
        let ufm = Ufm::new(loss, 3, 3, 4, 5e-3, 5e-3, 5e-3).unwrap();
        let landscape = probe(&ufm, &options(4)).unwrap();
        assert!(
            landscape
                .restarts
                .iter()
                .all(|r| r.relative_gap.unwrap().abs() <= 1e-9),
            "{:?}",
            landscape.restarts
        );
        let [origin, merged, global] = &landscape.critical_points[..] else {
            panic!("three points")
        };
        assert_eq!(
            (origin.name, merged.name, global.name),
            ("origin", "merged_classes", "global")
        );
        assert!(
            origin.curvature.has_negative_curvature() && origin.grad_norm < 1e-14,
            "{origin:?}"
        );
        assert!(
            merged.grad_norm < 1e-8 && merged.relative_gap.unwrap() > 1e-3,
            "{merged:?}"
        );
        assert!(
            merged.curvature.has_negative_curvature(),
            "{loss}: {merged:?}"
        );
        assert!(merged.verdict.contains("strict saddle"));
        assert!(
            !global.curvature.has_negative_curvature()
                && global.relative_gap.unwrap().abs() < 1e-12,
            "{global:?}"
        );
        assert!(
            global.curvature.smallest.abs() < 1e-6,
            "rotations are zero modes: {global:?}"
        );
    }
}

#[test]
fn strong_regularisation_makes_the_origin_a_global_minimiser() {
    let ufm = Ufm::new(Loss::CrossEntropy, 3, 3, 4, 0.3, 0.3, 0.1).unwrap();
    let landscape = probe(&ufm, &options(2)).unwrap();
    let origin = &landscape.critical_points[0];
    assert!(
        !origin.curvature.has_negative_curvature() && origin.verdict.contains("global minimiser"),
        "{origin:?}"
    );
    assert!(origin.relative_gap.unwrap().abs() < 1e-15, "{origin:?}");
}

#[test]
fn focal_loss_origin_is_a_local_minimiser_that_is_not_global() {
    // gamma = 3, K = 100, c = sqrt(n lW lH) ~ 0.0114: (K-1) c > |L'(0)| but f* < f(0).
    let lambda = 0.0114 / 2f64.sqrt();
    let ufm = Ufm::new(Loss::Focal { gamma: 3.0 }, 100, 2, 99, lambda, lambda, 0.0).unwrap();
    let optimum = theory::optimum(&ufm).unwrap();
    assert!(optimum.origin_is_spurious_local_minimum());
    let curvature = hessian_curvature(&ufm, &origin(&ufm), 60, 0);
    assert!(!curvature.has_negative_curvature(), "{curvature:?}");
    // Halving the regularisation turns the origin into a strict saddle.
    let weaker = Ufm::new(
        Loss::Focal { gamma: 3.0 },
        100,
        2,
        99,
        lambda / 2.0,
        lambda / 2.0,
        0.0,
    )
    .unwrap();
    assert!(hessian_curvature(&weaker, &origin(&weaker), 60, 0).has_negative_curvature());
}

#[test]
fn mse_origin_bias_zeroes_the_gradient() {
    for lb in [0.0, 0.3] {
        let ufm = Ufm::new(Loss::Mse { rescale: 15.0 }, 4, 3, 5, 0.1, 0.1, lb).unwrap();
        let x = origin(&ufm);
        let mut grad = vec![0.0; x.len()];
        ufm.value_grad(&x, &mut grad);
        assert!(grad.iter().all(|g| g.abs() < 1e-14), "lb = {lb}");
    }
}

/// The zero tolerance is 1e-8 of the largest eigenvalue's size (at least 1e-8), and
/// negative curvature means strictly below minus it.
#[test]
fn curvature_tolerance_scales_with_the_largest_eigenvalue_and_is_strict() {
    let at = |smallest: f64, largest: f64| Curvature {
        smallest,
        largest,
        steps: 10,
    };
    assert_eq!(at(0.0, -5e3).zero_tolerance(), 5e-5);
    assert_eq!(at(0.0, 0.25).zero_tolerance(), 1e-8);
    assert!(!at(-5e-5, 5e3).has_negative_curvature());
    assert!(at(-5.000_001e-5, 5e3).has_negative_curvature());
    assert!(!at(-9e-9, 0.5).has_negative_curvature());
    assert!(at(-2e-8, 0.5).has_negative_curvature());
}

/// With as many Lanczos steps as parameters, the extreme Ritz values are the extreme
/// eigenvalues of the dense Hessian (columns from Hessian-vector products with unit
/// vectors), at a point that is not critical, for every loss.
#[test]
fn full_lanczos_gives_the_dense_hessian_extremes() {
    for loss in [
        Loss::CrossEntropy,
        Loss::LabelSmoothing { alpha: 0.1 },
        Loss::Focal { gamma: 2.0 },
        Loss::Mse { rescale: 1.0 },
    ] {
        let ufm = Ufm::new(loss, 3, 2, 4, 1e-2, 2e-2, 1e-3).unwrap();
        let dim = ufm.num_params();
        let x: Vec<f64> = (0..dim)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 7.0)
            .collect();
        let mut dense = faer::Mat::<f64>::zeros(dim, dim);
        let (mut unit, mut column) = (vec![0.0; dim], vec![0.0; dim]);
        for j in 0..dim {
            unit.iter_mut().for_each(|u| *u = 0.0);
            unit[j] = 1.0;
            ufm.hvp(&x, &unit, &mut column);
            for i in 0..dim {
                dense[(i, j)] = column[i];
            }
        }
        let symmetric = faer::Mat::from_fn(dim, dim, |i, j| 0.5 * (dense[(i, j)] + dense[(j, i)]));
        let eigenvalues = symmetric
            .self_adjoint_eigenvalues(faer::Side::Lower)
            .unwrap();
        let (lowest, highest) = eigenvalues
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &e| {
                (lo.min(e), hi.max(e))
            });
        let curvature = hessian_curvature(&ufm, &x, dim, 5);
        let scale = highest.abs().max(lowest.abs());
        assert!(
            (curvature.smallest - lowest).abs() < 1e-9 * scale
                && (curvature.largest - highest).abs() < 1e-9 * scale,
            "{loss:?}: {curvature:?} vs [{lowest}, {highest}]"
        );
        assert!(
            curvature.smallest < 0.0,
            "{loss:?}: a generic point has negative curvature"
        );
    }
}
