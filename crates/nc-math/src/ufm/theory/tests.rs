use super::*;
use crate::ufm::test_support::all_losses;

fn ufm(loss: Loss, k: usize, n: usize, d: usize, lw: f64, lh: f64, lb: f64) -> Ufm {
    Ufm::new(loss, k, n, d, lw, lh, lb).unwrap()
}

/// Brute force: g on a fine uniform grid over [0, r_hi].
fn brute_force_minimum(u: &Ufm, r_hi: f64) -> f64 {
    let c = (u.per_class as f64 * u.lambda_w * u.lambda_h).sqrt();
    (0..=200_000)
        .map(|i| {
            let r = r_hi * i as f64 / 200_000.0;
            margin_loss(&u.loss, u.classes, r) + (u.classes - 1) as f64 * c * r
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn optimum_matches_a_brute_force_scan_of_the_margin() {
    for loss in [
        Loss::CrossEntropy,
        Loss::LabelSmoothing { alpha: 0.2 },
        Loss::Focal { gamma: 2.0 },
    ] {
        let u = ufm(loss, 5, 10, 8, 1e-3, 2e-3, 0.0);
        let opt = optimum(&u).unwrap();
        let brute = brute_force_minimum(&u, 4.0 * opt.margin);
        assert!(
            opt.value <= brute + 1e-15,
            "{loss}: {} vs brute force {brute}",
            opt.value
        );
        assert!(
            brute - opt.value < 1e-8,
            "{loss}: {} vs brute force {brute}",
            opt.value
        );
        assert!(opt.margin > 0.0 && !opt.origin_is_optimal);
    }
}

#[test]
fn strong_regularisation_makes_the_origin_optimal() {
    // For ce the origin is optimal exactly when K sqrt(n lW lH) >= 1.
    let k = 4;
    let optimal = optimum(&ufm(Loss::CrossEntropy, k, 5, 4, 0.12, 0.12, 0.1)).unwrap();
    assert!(optimal.origin_is_optimal && optimal.margin == 0.0);
    assert!((optimal.value - (k as f64).ln()).abs() < 1e-15);
    let not_yet = optimum(&ufm(Loss::CrossEntropy, k, 5, 4, 0.1, 0.1, 0.1)).unwrap();
    assert!(!not_yet.origin_is_optimal && not_yet.value < (k as f64).ln());
    // mse: t = max(0, s - c K^2 / 2) = 0 once c >= 2 s / K^2.
    let mse = optimum(&ufm(Loss::Mse { rescale: 1.0 }, 4, 5, 4, 0.2, 0.2, 0.0)).unwrap();
    assert!(mse.origin_is_optimal);
    assert!((mse.value - 3.0 / 16.0).abs() < 1e-15, "(K-1) s^2 / K^2");
}

#[test]
fn focal_loss_with_many_classes_has_a_spurious_local_minimum_at_the_origin() {
    // gamma = 3, K = 100: L(r) is concave near 0. With (K-1) c just above |L'(0)| ~ 1.095 the
    // origin is a strict local minimum of g, yet a large margin does better.
    let u = ufm(
        Loss::Focal { gamma: 3.0 },
        100,
        10,
        100,
        3.6e-3,
        3.6e-3,
        0.0,
    );
    let opt = optimum(&u).unwrap();
    assert_eq!(opt.margin_minima.len(), 2, "{:?}", opt.margin_minima);
    let (origin, far) = (opt.margin_minima[0], opt.margin_minima[1]);
    assert_eq!(origin.margin, 0.0);
    assert!(
        far.margin > 1.0 && far.value < origin.value,
        "{far:?} vs {origin:?}"
    );
    assert!(opt.origin_is_spurious_local_minimum() && !opt.origin_is_optimal);
    assert_eq!(opt.value, far.value);
    // Cross entropy with the same sizes has no such minimum.
    let ce = optimum(&ufm(Loss::CrossEntropy, 100, 10, 100, 3.6e-3, 3.6e-3, 0.0)).unwrap();
    assert_eq!(ce.margin_minima.len(), 1);
}

#[test]
fn the_simplex_etf_has_the_centred_gram_matrix() {
    for (k, d) in [(2, 1), (4, 3), (5, 9)] {
        let etf = simplex_etf(k, d);
        for a in 0..k {
            for b in 0..k {
                let gram: f64 = etf[a].iter().zip(&etf[b]).map(|(x, y)| x * y).sum();
                let expected = if a == b { 1.0 } else { 0.0 } - 1.0 / k as f64;
                assert!(
                    (gram - expected).abs() < 1e-15,
                    "K={k} d={d} ({a},{b}): {gram}"
                );
            }
        }
    }
}

#[test]
fn the_constructed_nc_solution_attains_the_optimum_with_zero_gradient() {
    for loss in all_losses() {
        for (k, n, d, lw, lh) in [
            (4, 3, 3, 5e-3, 1e-2),
            (3, 5, 7, 1e-3, 1e-3),
            (5, 2, 4, 0.3, 0.3),
        ] {
            let u = ufm(loss, k, n, d, lw, lh, 0.0);
            let opt = optimum(&u).unwrap();
            let x = nc_solution(&u, &opt);
            let mut grad = vec![0.0; x.len()];
            let value = u.value_grad(&x, &mut grad);
            assert!(
                (value - opt.value).abs() <= 1e-13 * opt.value.abs(),
                "{loss} K={k}: f = {value}, f* = {}",
                opt.value
            );
            let grad_norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            assert!(
                grad_norm < 1e-10,
                "{loss} K={k} d={d}: |grad| = {grad_norm}"
            );
        }
    }
}

#[test]
fn cases_outside_the_theory_are_named() {
    assert!(
        optimum(&ufm(Loss::CrossEntropy, 5, 2, 3, 0.1, 0.1, 0.0)).is_none(),
        "d < K-1"
    );
    assert!(
        optimum(&ufm(Loss::CrossEntropy, 5, 2, 4, 0.0, 0.1, 0.0)).is_none(),
        "lambda_w = 0"
    );
    assert!(
        optimum(&ufm(Loss::Mse { rescale: 1.0 }, 5, 2, 4, 0.1, 0.1, 0.1)).is_none(),
        "mse with bias decay"
    );
    assert!(
        not_covered_reason(&ufm(Loss::Mse { rescale: 1.0 }, 5, 2, 4, 0.1, 0.1, 0.1))
            .unwrap()
            .contains("lambda_b")
    );
    assert!(not_covered_reason(&ufm(Loss::CrossEntropy, 5, 2, 4, 0.1, 0.1, 0.1)).is_none());
}

/// c = sqrt(n lW lH) a hair below 1/K puts the cross-entropy optimum at a margin far below
/// the first grid point past 0 (1e-10 of the bracket): it must still be found, and must
/// beat the origin, as a brute-force scan of [0, 4 r*] and the stationarity of g confirm.
#[test]
fn an_optimum_inside_the_first_grid_cell_is_found() {
    let k = 4;
    // c = K^-1 (1 - 1e-11): lW = lH = c / sqrt(n).
    let c = (1.0 - 1e-11) / k as f64;
    let n = 5;
    let lambda = c / (n as f64).sqrt();
    let u = ufm(Loss::CrossEntropy, k, n, 4, lambda, lambda, 0.0);
    let opt = optimum(&u).unwrap();
    let r_max = (k as f64).ln() / ((k - 1) as f64 * c);
    assert!(
        opt.margin > 0.0 && opt.margin < 1e-10 * r_max,
        "{opt:?} (first grid point {})",
        1e-10 * r_max
    );
    assert!(!opt.origin_is_optimal && !opt.origin_is_spurious_local_minimum());
    // g(r*) is below g(0) by about 1e-22, under the rounding of g(0) = ln K.
    let origin_value = margin_loss(&u.loss, k, 0.0);
    assert!(
        opt.value <= origin_value,
        "{} vs g(0) = {origin_value}",
        opt.value
    );
    assert!(opt.value <= brute_force_minimum(&u, 4.0 * opt.margin) + 1e-15);
    let (_, slope) = margin_objective(&u, opt.margin);
    assert!(slope.abs() < 1e-12, "g'(r*) = {slope}");
    // For ce, L(r) = log(e^r + K - 1) - r, so g'(0) = (K-1)(c - 1/K), g''(0) = (K-1)/K^2,
    // and r* = -g'(0)/g''(0) up to a relative O(r*); g' cancels to about 1e-16 absolute,
    // which bounds the accuracy of r* (g'' r* is about 1e-11).
    let curvature = (k - 1) as f64 / (k * k) as f64;
    let predicted = (k - 1) as f64 * (1.0 / k as f64 - c) / curvature;
    assert!(
        (opt.margin - predicted).abs() < 1e-3 * predicted,
        "{} vs {predicted}",
        opt.margin
    );
}

/// The spurious-minimum verdict is false wherever it must be: an optimal origin (strong
/// regularisation), an origin that is not a local minimiser (weak regularisation), and the
/// losses whose g is convex.
#[test]
fn the_spurious_minimum_verdict_is_false_where_the_origin_is_not_one() {
    let optimal = optimum(&ufm(Loss::CrossEntropy, 4, 5, 4, 0.12, 0.12, 0.0)).unwrap();
    assert!(optimal.origin_is_optimal);
    assert!(!optimal.origin_is_spurious_local_minimum());
    for loss in all_losses() {
        let weak = optimum(&ufm(loss, 5, 10, 8, 1e-3, 2e-3, 0.0)).unwrap();
        assert!(!weak.origin_is_optimal, "{loss}");
        assert!(weak.margin_minima[0].margin > 0.0, "{loss}: {weak:?}");
        assert!(!weak.origin_is_spurious_local_minimum(), "{loss}");
    }
    // Focal loss, K = 100, (K-1) c below |L'(0)|: the origin is not a local minimiser.
    let fl = optimum(&ufm(
        Loss::Focal { gamma: 3.0 },
        100,
        10,
        100,
        3e-3,
        3e-3,
        0.0,
    ))
    .unwrap();
    assert!(fl.margin_minima.iter().all(|m| m.margin > 0.0), "{fl:?}");
    assert!(!fl.origin_is_spurious_local_minimum());
}

/// Two classes, cross-entropy: L(r) = log(1 + e^-r) and g'(r) = c - 1/(1 + e^r), so
/// r* = log((1 - c)/c) in closed form; at c = 0.2 that is log 4, 0.4 of the bracket's end
/// log 2 / c (the largest fraction ce reaches), so a bracket cut short misses it.
#[test]
fn two_class_cross_entropy_has_its_closed_form_margin() {
    for c in [0.05, 0.2, 0.3] {
        let n = 4;
        let lambda = c / (n as f64).sqrt();
        let u = ufm(Loss::CrossEntropy, 2, n, 1, lambda, lambda, 0.0);
        let opt = optimum(&u).unwrap();
        let margin = ((1.0 - c) / c).ln();
        let value = (1.0 + (-margin).exp()).ln() + c * margin;
        assert!(
            (opt.margin - margin).abs() < 1e-12 * margin,
            "c {c}: {} vs {margin}",
            opt.margin
        );
        assert!(
            (opt.value - value).abs() < 1e-15,
            "c {c}: {} vs {value}",
            opt.value
        );
        assert_eq!(opt.margin_minima.len(), 1);
    }
}
