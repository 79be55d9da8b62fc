use super::*;

fn losses() -> Vec<Loss> {
    vec![
        Loss::CrossEntropy,
        Loss::LabelSmoothing { alpha: 0.05 },
        Loss::LabelSmoothing { alpha: 0.6 },
        Loss::Focal { gamma: 3.0 },
        Loss::Focal { gamma: 1.5 },
        Loss::Focal { gamma: 0.5 },
        Loss::Mse { rescale: 15.0 },
        Loss::Mse { rescale: 1.0 },
    ]
}

/// Deterministic pseudo-random logits in [-scale, scale].
fn logits(k: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..k)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

#[test]
fn gradient_matches_central_differences() {
    let step = 1e-5;
    for loss in losses() {
        for (k, seed) in [(2, 1), (5, 2), (10, 3), (100, 4)] {
            let z = logits(k, seed, 3.0);
            let target = seed as usize % k;
            let mut grad = vec![0.0; k];
            let value = loss.value_grad(&z, target, &mut grad);
            assert!(
                (value - loss.value(&z, target)).abs() <= 1e-14 * value.abs().max(1.0),
                "{loss}"
            );
            for j in 0..k {
                let (mut plus, mut minus) = (z.clone(), z.clone());
                plus[j] += step;
                minus[j] -= step;
                let fd = (loss.value(&plus, target) - loss.value(&minus, target)) / (2.0 * step);
                assert!(
                    (fd - grad[j]).abs() <= 1e-8,
                    "{loss} K={k} j={j}: fd {fd} vs {}",
                    grad[j]
                );
            }
        }
    }
}

#[test]
fn hessian_vector_product_matches_differences_of_the_gradient() {
    let step = 1e-6;
    for loss in losses() {
        for (k, seed) in [(2, 5), (5, 6), (10, 7), (100, 8)] {
            let z = logits(k, seed, 3.0);
            let v = logits(k, seed + 100, 1.0);
            let target = (seed as usize * 7) % k;
            let mut hv = vec![0.0; k];
            loss.hvp(&z, target, &v, &mut hv);
            let shifted = |sign: f64| {
                let moved: Vec<f64> = z
                    .iter()
                    .zip(&v)
                    .map(|(zi, vi)| zi + sign * step * vi)
                    .collect();
                let mut g = vec![0.0; k];
                loss.value_grad(&moved, target, &mut g);
                g
            };
            let (gp, gm) = (shifted(1.0), shifted(-1.0));
            for j in 0..k {
                let fd = (gp[j] - gm[j]) / (2.0 * step);
                assert!(
                    (fd - hv[j]).abs() <= 1e-7,
                    "{loss} K={k} j={j}: fd {fd} vs {}",
                    hv[j]
                );
            }
        }
    }
}

#[test]
fn zero_smoothing_and_zero_focusing_are_cross_entropy() {
    for seed in 0..5 {
        let z = logits(7, seed, 4.0);
        let target = seed as usize % 7;
        let mut g_ce = vec![0.0; 7];
        let ce = Loss::CrossEntropy.value_grad(&z, target, &mut g_ce);
        for loss in [
            Loss::LabelSmoothing { alpha: 0.0 },
            Loss::Focal { gamma: 0.0 },
        ] {
            let mut g = vec![0.0; 7];
            assert!((loss.value_grad(&z, target, &mut g) - ce).abs() <= 1e-15 * ce.abs().max(1.0));
            assert!(
                g.iter().zip(&g_ce).all(|(a, b)| (a - b).abs() <= 1e-15),
                "{loss}"
            );
            let (mut h, mut h_ce) = (vec![0.0; 7], vec![0.0; 7]);
            loss.hvp(&z, target, &z, &mut h);
            Loss::CrossEntropy.hvp(&z, target, &z, &mut h_ce);
            assert!(
                h.iter().zip(&h_ce).all(|(a, b)| (a - b).abs() <= 1e-14),
                "{loss}"
            );
        }
    }
}

#[test]
fn known_values() {
    let z = [0.0; 4];
    assert!((Loss::CrossEntropy.value(&z, 1) - 4f64.ln()).abs() < 1e-15);
    assert!((Loss::LabelSmoothing { alpha: 0.3 }.value(&z, 1) - 4f64.ln()).abs() < 1e-15);
    let fl = Loss::Focal { gamma: 2.0 }.value(&z, 1);
    assert!((fl - 0.75f64.powi(2) * 4f64.ln()).abs() < 1e-15);
    let mse = Loss::Mse { rescale: 2.0 }.value(&[1.0, 3.0, 0.0, -1.0], 1);
    assert!((mse - (1.0 + 1.0 + 0.0 + 1.0) / 4.0).abs() < 1e-15);
}

#[test]
fn extreme_logits_stay_finite() {
    let z = [1000.0, 0.0, -1000.0];
    for loss in losses() {
        for target in 0..3 {
            let mut g = [0.0; 3];
            let mut h = [0.0; 3];
            let value = loss.value_grad(&z, target, &mut g);
            loss.hvp(&z, target, &[1.0, -2.0, 0.5], &mut h);
            assert!(
                value.is_finite() && g.iter().chain(&h).all(|x| x.is_finite()),
                "{loss} target {target}"
            );
        }
    }
    // A confident correct prediction costs (almost) nothing, a confident wrong one ~1000.
    assert!(Loss::CrossEntropy.value(&z, 0) < 1e-300);
    assert!((Loss::CrossEntropy.value(&z, 1) - 1000.0).abs() < 1e-9);
}

#[test]
fn batch_mean_agrees_with_per_sample_calls() {
    let loss = Loss::Focal { gamma: 2.0 };
    let z = logits(12, 9, 2.0);
    let targets = [0, 2, 1, 2];
    let mut grad = vec![0.0; 12];
    let mean = loss.mean_value_grad(&z, &targets, &mut grad).unwrap();
    let mut expected = 0.0;
    for (i, &t) in targets.iter().enumerate() {
        let mut g = [0.0; 3];
        expected += loss.value_grad(&z[3 * i..3 * i + 3], t, &mut g) / 4.0;
        assert!(g
            .iter()
            .zip(&grad[3 * i..])
            .all(|(a, b)| (a / 4.0 - b).abs() < 1e-16));
    }
    assert!((mean - expected).abs() < 1e-15);
    assert!((loss.mean_value(&z, &targets).unwrap() - expected).abs() < 1e-15);
    assert!(matches!(
        loss.mean_value(&z, &[0, 1, 3, 0]),
        Err(Error::LabelOutOfRange {
            label: 3,
            row: 2,
            ..
        })
    ));
    assert!(matches!(
        loss.mean_value(&z, &[0; 5]),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn names_parse_print_and_serialise() {
    for loss in losses() {
        let printed = loss.to_string();
        assert_eq!(printed.parse::<Loss>().unwrap(), loss);
        let json = serde_json::to_string(&loss).unwrap();
        assert!(
            json.contains(&format!("\"kind\":\"{}\"", loss.name())),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Loss>(&json).unwrap(), loss);
    }
    assert_eq!(
        "ls".parse::<Loss>().unwrap(),
        Loss::LabelSmoothing {
            alpha: DEFAULT_ALPHA
        }
    );
    assert_eq!("fl(2)".parse::<Loss>().unwrap(), Loss::Focal { gamma: 2.0 });
    assert_eq!(
        "MSE".parse::<Loss>().unwrap(),
        Loss::Mse {
            rescale: DEFAULT_RESCALE
        }
    );
    assert_eq!(
        serde_json::from_str::<Loss>(r#"{"kind":"ce"}"#).unwrap(),
        Loss::CrossEntropy
    );
    let (alpha, gamma, rescale) = (0.1, 2.0, 4.0);
    for (name, loss) in [
        ("ce", Loss::CrossEntropy),
        ("ls", Loss::LabelSmoothing { alpha }),
        ("fl", Loss::Focal { gamma }),
        ("mse", Loss::Mse { rescale }),
    ] {
        assert_eq!(Loss::from_name(name, alpha, gamma, rescale), Some(loss));
        assert_eq!(loss.name(), name);
    }
    assert_eq!(Loss::from_name("hinge", alpha, gamma, rescale), None);
    for bad in [
        "hinge",
        "ls(1.0)",
        "fl(-1)",
        "ls(alpha=x)",
        "ce(1)",
        "mse(inf)",
        "mse(-5)",
        "mse(0)",
        "ls(0.1",
    ] {
        assert!(bad.parse::<Loss>().is_err(), "{bad} should not parse");
    }
}

#[test]
fn loss_kinds_name_parse_and_carry_their_parameter() {
    let names: Vec<&str> = LossKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names, ["ce", "ls", "fl", "mse"]);
    let params = LossParams {
        alpha: 0.2,
        gamma: 1.5,
        rescale: 7.0,
    };
    let expected = [
        Loss::CrossEntropy,
        Loss::LabelSmoothing { alpha: 0.2 },
        Loss::Focal { gamma: 1.5 },
        Loss::Mse { rescale: 7.0 },
    ];
    for (kind, loss) in LossKind::ALL.into_iter().zip(expected) {
        assert_eq!(kind.name().parse::<LossKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
        assert_eq!(kind.with_params(params), loss);
        assert_eq!(loss.kind(), kind);
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.name())
        );
    }
    // Report order is the declaration order.
    assert!(LossKind::Ce < LossKind::Ls && LossKind::Fl < LossKind::Mse);
    let err = "xent".parse::<LossKind>().unwrap_err().to_string();
    assert!(
        err.contains("xent") && err.contains("ce, ls, fl, mse"),
        "{err}"
    );
    let defaults = LossParams::default();
    assert_eq!(
        (defaults.alpha, defaults.gamma, defaults.rescale),
        (DEFAULT_ALPHA, DEFAULT_GAMMA, DEFAULT_RESCALE)
    );
}

#[test]
fn empty_batches_are_shape_errors() {
    let loss = Loss::CrossEntropy;
    // Logits missing for the targets given, targets missing for the logits, or both.
    for (logits, targets) in [
        (&[][..], &[0usize][..]),
        (&[0.5, 1.0][..], &[][..]),
        (&[][..], &[][..]),
    ] {
        assert!(
            matches!(loss.mean_value(logits, targets), Err(Error::Shape { .. })),
            "{} logits, {} targets",
            logits.len(),
            targets.len()
        );
    }
}

#[test]
fn help_texts_name_each_loss_and_its_parameter() {
    let mut seen = std::collections::HashSet::new();
    for (kind, word) in
        LossKind::ALL
            .into_iter()
            .zip(["cross-entropy", "alpha", "gamma", "rescale"])
    {
        let text = kind.description();
        assert!(text.contains(word), "{kind}: {text}");
        assert!(seen.insert(text), "{kind} shares its description");
    }
}
