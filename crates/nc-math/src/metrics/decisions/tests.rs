//! The proved bounds of the decision routes, pinned from both sides: each bound against the
//! formula its documentation states (computed here from scratch), and each route's verdict
//! on near ties placed just inside and just outside twice the bound, where a bound smaller
//! than the proved one decides what only the exact logits may, and a larger one sends to
//! the exact logits what the bound already proves.

use super::*;
use std::cell::Cell;

const U32: f64 = 1.0 / (1u64 << 24) as f64;
const U64: f64 = 1.0 / (1u64 << 53) as f64;

fn gamma_of(n: usize, u: f64) -> f64 {
    n as f64 * u / (1.0 - n as f64 * u)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// K = 3, d = 4: rows of W with norms 3, ~2.3 and 1, biases up to 2 in magnitude, class
/// means of different norms; every quantity scaled by `scale`, the bias by `scale^2` (the
/// size of a logit).
fn case(scale: f64) -> (Classifier, ClassMeans) {
    let weight = [3.0, 0.0, 0.0, 0.0, 1.0, -2.0, 0.5, 0.25, 0.0, 0.6, 0.0, 0.8];
    let weight = weight.iter().map(|w| w * scale).collect();
    let bias = vec![
        0.5 * scale * scale,
        -2.0 * scale * scale,
        1.0 * scale * scale,
    ];
    let classifier = Classifier::new(3, 4, weight, Some(bias)).unwrap();
    let means = [
        1.0, 2.0, 0.0, 0.0, -1.0, 0.0, 3.0, 0.0, 0.0, -1.0, -1.0, 4.0,
    ];
    let means = means.iter().map(|m| m * scale).collect();
    (classifier, ClassMeans::from_means(3, 4, means).unwrap())
}

fn max_row_norm(classifier: &Classifier) -> f64 {
    (0..classifier.num_classes())
        .map(|k| norm(classifier.row(k)))
        .fold(0.0, f64::max)
}

fn max_abs_bias(classifier: &Classifier) -> f64 {
    classifier.bias().iter().fold(0.0, |m, b| b.abs().max(m))
}

/// 1.01 (gamma64_{d+4} (A (||h|| + 3 ||mu_y||) + 2 max|b|) + (d + 4) 2^-1022).
fn exact_bound(classifier: &Classifier, means: &ClassMeans, sample_norm: f64, y: usize) -> f64 {
    let d = classifier.dim();
    let a = max_row_norm(classifier);
    1.01 * (gamma_of(d + 4, U64)
        * (a * (sample_norm + 3.0 * norm(means.mean(y))) + 2.0 * max_abs_bias(classifier))
        + (d + 4) as f64 * 2f64.powi(-1022))
}

/// 1.01 ((gamma32_d (1 + u32) + u32) A + 2 sqrt(d) ||h|| 2^-149 + 2 d 2^-126 + 2 u64 (A + |b|)),
/// A = max_k ||w_k|| ||h||.
fn f32_bound(classifier: &Classifier, sample_norm: f64) -> f64 {
    let d = classifier.dim();
    let a = max_row_norm(classifier) * sample_norm;
    1.01 * ((gamma_of(d, U32) * (1.0 + U32) + U32) * a
        + 2.0 * (d as f64).sqrt() * sample_norm * 2f64.powi(-149)
        + 2.0 * d as f64 * 2f64.powi(-126)
        + 2.0 * U64 * (a + max_abs_bias(classifier)))
}

fn assert_relative(got: f64, expected: f64, what: &str) {
    assert!(
        (got - expected).abs() <= 1e-12 * expected.abs(),
        "{what}: {got:e}, the formula gives {expected:e}"
    );
}

/// The scales 1 (normal numbers) and 1e-160 (products near the subnormal range, where the
/// underflow terms are the bound) pin every term of each formula.
#[test]
fn the_bounds_are_the_documented_formulas() {
    for scale in [1.0, 1e-160] {
        let (classifier, means) = case(scale);
        let exact = ExactLogitError::new(&classifier, &means).unwrap();
        let f32_logits = F32Logits::new(&classifier).unwrap();
        for y in 0..3 {
            for sample_norm in [0.0, 0.5 * scale, 7.0 * scale] {
                assert_relative(
                    exact.bound(sample_norm, y),
                    exact_bound(&classifier, &means, sample_norm, y),
                    &format!("exact-path bound, scale {scale:e}, class {y}, ||h|| {sample_norm:e}"),
                );
            }
            assert_eq!(
                exact.sample_norm(0.25 * scale, y),
                0.25 * scale + norm(means.mean(y))
            );
        }
        for sample_norm in [0.0, 0.5 * scale, 7.0 * scale, 1e3] {
            assert_relative(
                f32_logits.error_bound(&exact, sample_norm),
                f32_bound(&classifier, sample_norm),
                &format!("f32 bound, scale {scale:e}, ||h|| {sample_norm:e}"),
            );
        }
    }
}

#[test]
fn the_f32_bound_is_infinite_where_f32_products_may_overflow() {
    let (classifier, means) = case(1.0);
    let exact = ExactLogitError::new(&classifier, &means).unwrap();
    let f32_logits = F32Logits::new(&classifier).unwrap();
    // A = 3 ||h||: finite below 1e36, infinite above it and for NaN.
    assert!(f32_logits.error_bound(&exact, 0.99e36 / 3.0).is_finite());
    assert_eq!(f32_logits.error_bound(&exact, 1.01e36 / 3.0), f64::INFINITY);
    assert_eq!(f32_logits.error_bound(&exact, f64::NAN), f64::INFINITY);
}

#[test]
fn the_deviation_bound_covers_the_rounding_of_the_computed_norm() {
    for dim in [1, 10, 1000] {
        let relative = gamma_of(dim + 2, U64);
        for sq in [0.0f64, 1e-300, 2.0, 1e10] {
            let expected =
                sq.sqrt() * (1.0 + 2.0 * relative) + (dim as f64).sqrt() * 2f64.powi(-536);
            let got = deviation_norm_bound(sq, dim);
            assert!(
                (got - expected).abs() <= 1e-15 * expected,
                "d {dim}, s {sq}: {got} vs {expected}"
            );
        }
    }
    // gamma_n needs n u < 1/2.
    assert_eq!(gamma(1 << 51, U64), Some(1.0 / 3.0));
    assert_eq!(gamma(1 << 52, U64), None);
    assert_eq!(gamma(1 << 22, U32), Some(1.0 / 3.0));
    assert_eq!(gamma(1 << 23, U32), None);
    assert!(
        F32Logits::new(&Classifier::new(2, 1 << 23, vec![0.0; 2 << 23], None).unwrap()).is_none()
    );
}

/// f32 logits z32 = (0, 0, -5) with biases (0, gap, 0): class 1 leads by `gap`. The exact
/// logits (supplied by the closure, counted) say class 0. Within twice the bound the two are
/// candidates and the exact logits decide (class 0); past it class 1 is proved, and the
/// exact logits are not consulted.
#[test]
fn f32_logits_defer_to_the_exact_logits_exactly_within_twice_the_bound() {
    // The plain case, where the f32 part of B dominates, and one with biases of 1e10 and
    // class means of norm 1e8, where the exact path's part does.
    let (plain, plain_means) = case(1.0);
    let heavy_bias = plain.bias().iter().map(|b| b * 1e10).collect();
    let heavy = Classifier::new(3, 4, plain.weight().to_vec(), Some(heavy_bias)).unwrap();
    let far_means = plain_means.means().iter().map(|m| m * 1e8).collect();
    let far_means = ClassMeans::from_means(3, 4, far_means).unwrap();
    for (classifier, means, y, sample_norm) in [
        (&plain, &plain_means, 0, 1.5),
        (&plain, &plain_means, 2, 40.0),
        (&heavy, &far_means, 1, 1.5),
    ] {
        let exact = ExactLogitError::new(classifier, means).unwrap();
        let f32_logits = F32Logits::new(classifier).unwrap();
        let exact_part = exact_bound(classifier, means, sample_norm, y);
        let f32_part = f32_bound(classifier, sample_norm);
        assert!(
            (exact_part > f32_part) == std::ptr::eq(classifier, &heavy),
            "{exact_part:e} vs {f32_part:e}"
        );
        let bound = f32_part + exact_part;
        for (factor, expected, consulted) in [(1.995, 0, 2), (2.005, 1, 0)] {
            let gap = factor * bound;
            let calls = Cell::new(0);
            let exact_logits = |c: usize| {
                calls.set(calls.get() + 1);
                [1.0, 0.0, -9.0][c]
            };
            let z32 = [0.0f32, 0.0, -5.0];
            let bias = [0.0, gap, 0.0];
            let decided = f32_logits.decide(&z32, &bias, &exact, sample_norm, y, exact_logits);
            assert_eq!(decided, expected, "gap {factor} B, class {y}");
            assert_eq!(calls.get(), consulted, "gap {factor} B, class {y}");
        }
    }
}

/// Non-finite f32 logits (an overflowed product) make every class a candidate.
#[test]
fn non_finite_f32_logits_defer_every_class_to_the_exact_logits() {
    let (classifier, means) = case(1.0);
    let exact = ExactLogitError::new(&classifier, &means).unwrap();
    let f32_logits = F32Logits::new(&classifier).unwrap();
    let calls = Cell::new(0);
    let exact_logits = |c: usize| {
        calls.set(calls.get() + 1);
        [0.0, 0.0, 3.0][c]
    };
    let z32 = [f32::INFINITY, 0.0, -5.0];
    assert_eq!(
        f32_logits.decide(&z32, &[0.0; 3], &exact, 1.0, 0, exact_logits),
        2
    );
    assert_eq!(calls.get(), 3);
    // Exact ties among the candidates go to the first class.
    let tied = |c: usize| [2.0, 2.0, -1.0][c];
    assert_eq!(
        f32_logits.decide(&[0.0, 0.0, 0.0], &[0.0; 3], &exact, 1.0, 0, tied),
        0
    );
}

/// ProjectedLogits on the full basis of R^4 (so every residual ||e_k|| is rounding only):
/// R_y and E_k as documented, and the verdict on estimates that lead by just under or just
/// over the proved margin 2 (slack + spread).
#[test]
fn projected_logits_decide_exactly_past_the_proved_margin() {
    for basis_dim in [4, 2] {
        let (classifier, means) = case(1.0);
        let (k, d, r) = (3, 4, basis_dim);
        let exact = ExactLogitError::new(&classifier, &means).unwrap();
        let centred = classifier.centred_weight();
        let basis = Mat::from_fn(d, r, |i, j| (i == j) as u8 as f64);
        let projected =
            ProjectedLogits::new(&classifier, &centred, &means, basis.as_ref(), &exact).unwrap();

        let (gamma_r, gamma_d) = (gamma_of(r + 2, U64), gamma_of(d + 2, U64));
        let v = |c: usize| &centred[c * d..(c + 1) * d];
        let coefficient = |c: usize| &v(c)[..r];
        let residual = |c: usize| norm(&v(c)[r..]);
        let max_v = (0..k).map(|c| norm(v(c))).fold(0.0, f64::max);
        let max_a = (0..k).map(|c| norm(coefficient(c))).fold(0.0, f64::max);
        let basis_norm = (r as f64).sqrt();
        for c in 0..k {
            let expected = 1.01
                * (residual(c) + gamma_r * (2.0 * norm(v(c)) + basis_norm * norm(coefficient(c))));
            assert_relative(
                projected.residual_norms[c],
                expected,
                &format!("E_{c}, r {r}"),
            );
        }
        let slope = max_a * basis_norm * (gamma_d + 2.0 * gamma_r);
        assert_relative(projected.rounding_slope, slope, "slope of R_y");
        for y in 0..k {
            let offsets: Vec<f64> = (0..k)
                .map(|c| {
                    v(c).iter()
                        .zip(means.mean(y))
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
                        + classifier.bias()[c]
                })
                .collect();
            let table = projected
                .offsets
                .as_ref()
                .expect("K <= TILE keeps every row");
            for (got, expected) in table.row(y).iter().zip(&offsets) {
                assert_relative(*got, *expected, "o_yk");
            }
            let max_o = offsets.iter().fold(0.0f64, |m, o| o.abs().max(m));
            let constant = gamma_d
                * (2.0 * max_v * norm(means.mean(y)) + max_abs_bias(&classifier))
                + gamma_r * max_o
                + (2 * d + 2 * r + 8) as f64 * 2f64.powi(-1022);
            assert_relative(
                projected.rounding_constant[y],
                constant,
                &format!("R_{y}(0), r {r}"),
            );

            // Class 2 leads class 0 by `lead`, class 1 is far behind. The estimates are
            // offset + a.p, rounded to within about a sixth of the rounding part of the
            // margin: the margin is pinned to 0.3% where the deviation terms dominate it
            // (large deviations; r = 2, whose residuals are not rounding), to 50% elsewhere.
            for (deviation, tight) in [(0.0, false), (0.3, r == 2), (1e6, true)] {
                let exact_error = exact_bound(&classifier, &means, 1.0 + deviation, y);
                let slack = 1.01 * (constant + slope * deviation) + exact_error;
                let spread = |c: usize| projected.residual_norms[c] * deviation;
                let margin = 2.0 * slack + spread(0) + spread(2);
                let factors = if tight { [0.997, 1.003] } else { [0.5, 1.5] };
                for (factor, expected) in factors.into_iter().zip([None, Some(2)]) {
                    let lead = factor * margin;
                    let targets = [0.0, -50.0 - 1e3 * margin, lead];
                    let estimates: Vec<f64> = (0..k).map(|c| targets[c] - offsets[c]).collect();
                    assert_eq!(
                        projected.decide(&estimates, table.row(y), y, deviation, exact_error),
                        expected,
                        "r {r}, class {y}, deviation {deviation}, lead {factor} x margin"
                    );
                }
            }
        }
        // A non-finite estimate is never decided.
        assert_eq!(
            projected.decide(&[f64::NAN, 0.0, 100.0], &[0.0; 3], 0, 0.0, 0.0),
            None
        );
        assert_eq!(
            projected.decide(&[0.0, f64::INFINITY, 0.0], &[0.0; 3], 0, 0.0, 0.0),
            None
        );
    }
}

#[test]
fn logit_offsets_are_the_logits_of_each_class_mean() {
    let (classifier, means) = case(1.0);
    let table = OffsetRows::all(means.means(), classifier.weight(), classifier.bias());
    for y in 0..3 {
        for k in 0..3 {
            let z = classifier
                .row(k)
                .iter()
                .zip(means.mean(y))
                .map(|(a, b)| a * b)
                .sum::<f64>()
                + classifier.bias()[k];
            assert_relative(table.row(y)[k], z, &format!("W mu_{y} + b at class {k}"));
        }
    }
}

#[test]
fn argmin_takes_the_first_smallest_and_ignores_nan() {
    assert_eq!(argmin([(0, 2.0), (1, 1.0), (2, 1.0)].into_iter()), 1);
    assert_eq!(argmin([(0, f64::NAN), (1, 3.0), (2, 4.0)].into_iter()), 1);
    assert_eq!(argmin([(5, f64::INFINITY)].into_iter()), 0);
    assert_eq!(argmin([(3, -1.0), (4, -1.0)].into_iter()), 3);
}

/// The margin test is strict: estimates whose bounds meet exactly (lead = 2 slack, every
/// quantity exact) are not decided. Means in the first two coordinates and W in the last
/// two make every offset o_yk = v_k.mu_y + b_k exactly 0, so the estimates are a.p exactly.
#[test]
fn projected_bounds_that_meet_exactly_decide_nothing() {
    let weight = vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, -1.0];
    let classifier = Classifier::new(3, 4, weight, None).unwrap();
    let means = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0];
    let means = ClassMeans::from_means(3, 4, means.to_vec()).unwrap();
    let exact = ExactLogitError::new(&classifier, &means).unwrap();
    let centred = classifier.centred_weight();
    let basis = Mat::from_fn(4, 2, |i, j| (i == j) as u8 as f64);
    let projected =
        ProjectedLogits::new(&classifier, &centred, &means, basis.as_ref(), &exact).unwrap();
    let table = projected.offsets.as_ref().unwrap();
    assert!((0..3).all(|y| table.row(y).iter().all(|&o| o == 0.0)));
    let exact_error = 1e-15;
    let slack = 1.01 * projected.rounding_constant[0] + exact_error;
    assert!(slack > 0.0);
    assert_eq!(
        projected.decide(
            &[0.0, -50.0, 2.0 * slack],
            table.row(0),
            0,
            0.0,
            exact_error
        ),
        None
    );
    let just_over = 2.0 * slack * (1.0 + 1e-12);
    assert_eq!(
        projected.decide(&[0.0, -50.0, just_over], table.row(0), 0, 0.0, exact_error),
        Some(2)
    );
}
