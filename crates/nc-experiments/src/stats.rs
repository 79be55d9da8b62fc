//! Statistics over seeds: mean and sample standard deviation, and Welch's two-sided t-test
//! (unequal variances), the test a report uses to say whether a loss differs from CE by more
//! than the seed noise.
//!
//! For samples a (n_a values) and b (n_b values) with means m_a, m_b and sample variances
//! s_a^2, s_b^2 (ddof 1), with v_a = s_a^2 / n_a and v_b = s_b^2 / n_b:
//!
//! ```text
//! t  = (m_a - m_b) / sqrt(v_a + v_b)
//! df = (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))      (Welch-Satterthwaite)
//! p  = P(|T_df| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)
//! ```
//!
//! where I_x(a, b) is the regularised incomplete beta function, evaluated by its continued
//! fraction (modified Lentz). This is what `scipy.stats.ttest_ind(a, b, equal_var=False)`
//! returns.

/// Mean and sample standard deviation (ddof 1; None for a single value).
pub fn mean_std(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1).then(|| sample_variance(values, mean).sqrt());
    (mean, std)
}

fn sample_variance(values: &[f64], mean: f64) -> f64 {
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() as f64 - 1.0)
}

/// Welch's two-sided t-test of a against b.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// t statistic, positive when a's mean is larger.
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

impl Welch {
    /// The test of `a` against `b`; None unless both have at least two values. Two samples
    /// without any spread give t = 0 and p = 1 if their means are equal, and t = +-inf, p = 0
    /// otherwise (df is then undefined: NaN).
    pub fn test(a: &[f64], b: &[f64]) -> Option<Welch> {
        if a.len() < 2 || b.len() < 2 {
            return None;
        }
        let (mean_a, _) = mean_std(a);
        let (mean_b, _) = mean_std(b);
        let va = sample_variance(a, mean_a) / a.len() as f64;
        let vb = sample_variance(b, mean_b) / b.len() as f64;
        let spread = va + vb;
        let diff = mean_a - mean_b;
        if spread == 0.0 {
            let (t, p) = if diff == 0.0 {
                (0.0, 1.0)
            } else {
                (diff.signum() * f64::INFINITY, 0.0)
            };
            return Some(Welch { t, df: f64::NAN, p });
        }
        let t = diff / spread.sqrt();
        let df =
            spread * spread / (va * va / (a.len() as f64 - 1.0) + vb * vb / (b.len() as f64 - 1.0));
        Some(Welch {
            t,
            df,
            p: student_t_two_sided(t, df),
        })
    }
}

/// P(|T| >= |t|) for Student's t with `df` degrees of freedom (df > 0, not necessarily whole).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
}

/// I_x(a, b) = B(x; a, b) / B(a, b) for 0 <= x <= 1, a, b > 0.
pub fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    // x^a (1-x)^b / (a B(a, b)), in logs.
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2); beyond that use
    // the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction 1 / (1 + d_1 / (1 + d_2 / (1 + ...))) of the incomplete beta
/// function, with d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)) and
/// d_{2m} = m (b-m) x / ((a+2m-1)(a+2m)), by the modified Lentz method.
fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const MAX_TERMS: usize = 10_000;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut value = d;
    for m in 1..MAX_TERMS {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        value *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        value *= step;
        if (step - 1.0).abs() < 1e-16 {
            break;
        }
    }
    value
}

/// ln Gamma(x) for x > 0, by the Lanczos approximation (g = 7, nine coefficients; relative
/// error below 1e-15 over the range used here), with the reflection-free form valid for
/// x >= 0.5 and Gamma(x) = Gamma(x + 1) / x below it.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return ln_gamma(x + 1.0) - x.ln();
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    /// Values from scipy 1.17.1, `scipy.stats.ttest_ind(a, b, equal_var=False)`
    /// (statistic, df, pvalue), computed outside this program.
    #[test]
    fn welch_matches_scipy() {
        type Case<'a> = (&'a [f64], &'a [f64], f64, f64, f64);
        let cases: [Case; 4] = [
            (
                &[0.9285, 0.9310, 0.9300],
                &[0.9340, 0.9325, 0.9330],
                -3.922322702763537,
                3.2975609756097723,
                0.024782180338617975,
            ),
            (
                &[0.91, 0.92, 0.93],
                &[0.95, 0.96, 0.94, 0.955],
                -4.351941398892427,
                3.990093635500068,
                0.012205085248472509,
            ),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0],
                &[1.5, 2.5, 2.0],
                1.3093073414159542,
                5.157894736842106,
                0.2457210303077017,
            ),
            (
                &[-2.1, -2.3, -2.2],
                &[-1.2, -1.9, -3.0],
                -0.31622776601683855,
                2.048575830082926,
                0.7811519046585426,
            ),
        ];
        for (a, b, t, df, p) in cases {
            let w = Welch::test(a, b).unwrap();
            assert!(close(w.t, t, 1e-9), "t {} vs {t}", w.t);
            assert!(close(w.df, df, 1e-9), "df {} vs {df}", w.df);
            assert!(close(w.p, p, 1e-9), "p {} vs {p}", w.p);
            // Swapping the samples flips t and keeps df and p.
            let swapped = Welch::test(b, a).unwrap();
            assert!(close(swapped.t, -t, 1e-9) && close(swapped.p, p, 1e-9));
        }
    }

    /// 2 * scipy.stats.t.sf(|t|, df) from scipy 1.17.1, and closed forms: with one degree of
    /// freedom T is Cauchy, P(|T| >= t) = 1 - 2 atan(t) / pi; with two, 1 - t / sqrt(2 + t^2).
    #[test]
    fn student_t_tails_match_scipy_and_closed_forms() {
        for (t, df, p) in [
            (2.0, 3.0, 0.13932596855884305),
            (0.5, 1.0, 0.7048327646991335),
            (-1.3, 7.5, 0.23212677881560878),
            (10.0, 2.2, 0.007104463710258442),
            (3.0, 100.0, 0.0034079153433294465),
        ] {
            let ours = student_t_two_sided(t, df);
            assert!(close(ours, p, 1e-9), "t {t} df {df}: {ours} vs {p}");
        }
        for t in [0.1, 0.7, 1.0, 3.0, 40.0] {
            let cauchy = 1.0 - 2.0 * f64::atan(t) / std::f64::consts::PI;
            assert!(close(student_t_two_sided(t, 1.0), cauchy, 1e-10));
            let two = 1.0 - t / (2.0 + t * t).sqrt();
            assert!(close(student_t_two_sided(t, 2.0), two, 1e-10));
        }
        assert_eq!(student_t_two_sided(0.0, 4.0), 1.0);
    }

    /// Far tails, many degrees of freedom and arguments near 1, where the continued fraction
    /// converges only on the side of the symmetry the code picks. scipy 1.17.1:
    /// `2 * t.sf(|t|, df)` and `betainc(a, b, x)`.
    #[test]
    fn tails_far_out_and_many_degrees_of_freedom_match_scipy() {
        for (t, df, p) in [
            (2.0, 1000.0, 0.04577034649325166),
            (0.01, 0.5, 0.9946067436361047),
            (50.0, 300.0, 1.5203292219700215e-147),
            (1.5, 20000.0, 0.13363018733768495),
            (0.3, 4.0, 0.7791214282774598),
            (-0.05, 150.0, 0.9601889056291918),
        ] {
            let ours = student_t_two_sided(t, df);
            assert!(close(ours, p, 1e-8), "t {t} df {df}: {ours} vs {p}");
        }
        for (x, a, b, value) in [
            (0.3, 200.0, 0.5, 1.264383372125771e-106),
            (0.995, 200.0, 0.5, 0.15703865369788875),
            (0.9999, 10000.0, 0.5, 0.1572940177633515),
        ] {
            let ours = regularized_incomplete_beta(x, a, b);
            assert!(
                close(ours, value, 1e-8),
                "I_{x}({a}, {b}) = {ours}, not {value}"
            );
        }
    }

    #[test]
    fn ln_gamma_matches_factorials_and_the_half_integer() {
        let mut factorial = 1.0f64;
        for n in 1..30 {
            let error = (ln_gamma(n as f64) - factorial.ln()).abs();
            assert!(error <= 1e-13 * factorial.ln().max(1.0), "n = {n}");
            factorial *= n as f64;
        }
        let sqrt_pi = std::f64::consts::PI.sqrt();
        assert!(close(ln_gamma(0.5), sqrt_pi.ln(), 1e-13));
        assert!(close(ln_gamma(0.25), 3.625_609_908_221_908_f64.ln(), 1e-13));
    }

    #[test]
    fn incomplete_beta_matches_closed_forms() {
        // I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b.
        for x in [0.01, 0.3, 0.5, 0.8, 0.99] {
            for a in [0.5, 2.0, 7.5] {
                assert!(close(
                    regularized_incomplete_beta(x, a, 1.0),
                    x.powf(a),
                    1e-12
                ));
                let one_minus = 1.0 - (1.0 - x).powf(a);
                assert!(close(
                    regularized_incomplete_beta(x, 1.0, a),
                    one_minus,
                    1e-12
                ));
            }
        }
        assert_eq!(regularized_incomplete_beta(0.0, 2.0, 3.0), 0.0);
        assert_eq!(regularized_incomplete_beta(1.0, 2.0, 3.0), 1.0);
    }

    #[test]
    fn degenerate_samples() {
        assert_eq!(Welch::test(&[1.0], &[1.0, 2.0]), None);
        let same = Welch::test(&[0.5, 0.5], &[0.5, 0.5, 0.5]).unwrap();
        assert_eq!((same.t, same.p), (0.0, 1.0));
        let apart = Welch::test(&[0.4, 0.4], &[0.5, 0.5]).unwrap();
        assert_eq!((apart.t, apart.p), (f64::NEG_INFINITY, 0.0));
        assert_eq!(mean_std(&[2.0]), (2.0, None));
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        assert!(close(std.unwrap(), (5.0f64 / 3.0).sqrt(), 1e-15));
    }
}
