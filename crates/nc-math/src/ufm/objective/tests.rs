use super::*;
use crate::ufm::test_support::{all_losses, random_point};

fn instances() -> Vec<Ufm> {
    all_losses()
        .into_iter()
        .flat_map(|loss| {
            [(3, 2, 4, 0.1, 0.2, 0.05), (4, 3, 3, 0.01, 0.03, 0.0)]
                .map(|(k, n, d, lw, lh, lb)| Ufm::new(loss, k, n, d, lw, lh, lb).unwrap())
        })
        .collect()
}

#[test]
fn gradient_matches_central_differences() {
    let step = 1e-6;
    for (seed, ufm) in instances().into_iter().enumerate() {
        let x = random_point(&ufm, seed as u64, 0.7);
        let mut grad = vec![0.0; ufm.num_params()];
        let value = ufm.value_grad(&x, &mut grad);
        assert!((value - ufm.value(&x)).abs() <= 1e-13 * value.abs().max(1.0));
        for j in 0..x.len() {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[j] += step;
            minus[j] -= step;
            let fd = (ufm.value(&plus) - ufm.value(&minus)) / (2.0 * step);
            assert!(
                (fd - grad[j]).abs() <= 1e-7 * (1.0 + grad[j].abs()),
                "{ufm:?} param {j}: fd {fd} vs {}",
                grad[j]
            );
        }
    }
}

#[test]
fn hessian_vector_product_matches_differences_of_the_gradient() {
    let step = 1e-6;
    for (seed, ufm) in instances().into_iter().enumerate() {
        let x = random_point(&ufm, seed as u64, 0.7);
        let v = random_point(&ufm, seed as u64 + 1000, 1.0);
        let mut hv = vec![0.0; x.len()];
        ufm.hvp(&x, &v, &mut hv);
        let grad_at = |sign: f64| {
            let moved: Vec<f64> = x.iter().zip(&v).map(|(a, b)| a + sign * step * b).collect();
            let mut g = vec![0.0; x.len()];
            ufm.value_grad(&moved, &mut g);
            g
        };
        let (gp, gm) = (grad_at(1.0), grad_at(-1.0));
        for j in 0..x.len() {
            let fd = (gp[j] - gm[j]) / (2.0 * step);
            assert!(
                (fd - hv[j]).abs() <= 1e-6 * (1.0 + hv[j].abs()),
                "{ufm:?} param {j}: fd {fd} vs {}",
                hv[j]
            );
        }
    }
}

#[test]
fn many_sample_blocks_agree_with_a_sample_by_sample_sum() {
    // N = 2048 samples with d = 64 make four sample blocks; the same sum, sample by sample.
    let ufm = Ufm::new(
        crate::loss::Loss::CrossEntropy,
        8,
        256,
        64,
        1e-3,
        1e-3,
        1e-3,
    )
    .unwrap();
    let x = random_point(&ufm, 3, 0.3);
    let blocks = ufm.blocks(&x);
    let mut expected = 0.0;
    for i in 0..ufm.samples() {
        let z: Vec<f64> = (0..8)
            .map(|c| {
                (0..64)
                    .map(|j| blocks.w[(c, j)] * blocks.h[(j, i)])
                    .sum::<f64>()
                    + blocks.b[c]
            })
            .collect();
        expected += ufm.loss.value(&z, ufm.label(i)) / ufm.samples() as f64;
    }
    expected += ufm.regulariser(&x);
    assert!((ufm.value(&x) - expected).abs() <= 1e-12 * expected);
}

#[test]
fn rejects_bad_instances() {
    use crate::loss::Loss;
    assert!(matches!(
        Ufm::new(Loss::CrossEntropy, 1, 2, 2, 0.1, 0.1, 0.1),
        Err(Error::TooFewClasses(1))
    ));
    assert!(Ufm::new(Loss::CrossEntropy, 3, 0, 2, 0.1, 0.1, 0.1).is_err());
    assert!(Ufm::new(Loss::CrossEntropy, 3, 2, 0, 0.1, 0.1, 0.1).is_err());
    assert!(Ufm::new(Loss::CrossEntropy, 3, 2, 2, -0.1, 0.1, 0.1).is_err());
    assert!(Ufm::new(Loss::CrossEntropy, 3, 2, 2, 0.1, f64::NAN, 0.1).is_err());
    assert!(Ufm::new(Loss::LabelSmoothing { alpha: 1.0 }, 3, 2, 2, 0.1, 0.1, 0.1).is_err());
}

#[test]
fn gradient_and_hvp_do_not_depend_on_the_sample_blocks() {
    // With d = 64 a block holds 512 samples: N = 1200 gives two full blocks and one of 176.
    let ufm = Ufm::new(
        crate::loss::Loss::Focal { gamma: 2.0 },
        3,
        400,
        64,
        1e-3,
        2e-3,
        3e-3,
    )
    .unwrap();
    assert_eq!(ufm.block_columns(), 512);
    let x = random_point(&ufm, 5, 0.3);
    let v = random_point(&ufm, 6, 1.0);
    let (mut grad, mut hv) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let value = ufm.value_grad(&x, &mut grad);
    ufm.hvp(&x, &v, &mut hv);
    let step = 1e-6;
    let moved = |sign: f64| {
        x.iter()
            .zip(&v)
            .map(|(a, b)| a + sign * step * b)
            .collect::<Vec<f64>>()
    };
    let directional = (ufm.value(&moved(1.0)) - ufm.value(&moved(-1.0))) / (2.0 * step);
    let grad_dot_v: f64 = grad.iter().zip(&v).map(|(g, vi)| g * vi).sum();
    assert!(
        (directional - grad_dot_v).abs() <= 1e-7 * grad_dot_v.abs().max(1.0),
        "{directional} vs {grad_dot_v}"
    );
    let (mut gp, mut gm) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    ufm.value_grad(&moved(1.0), &mut gp);
    ufm.value_grad(&moved(-1.0), &mut gm);
    let worst = gp
        .iter()
        .zip(&gm)
        .zip(&hv)
        .map(|((p, m), h)| ((p - m) / (2.0 * step) - h).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-7, "HVP off by {worst}");
    assert!((value - ufm.value(&x)).abs() < 1e-13);
}

#[test]
fn the_working_set_counts_variables_pairs_and_logits() {
    let ufm = Ufm::new(Loss::CrossEntropy, 10, 5, 8, 1e-3, 1e-3, 1e-3).unwrap();
    // P = 10*8 + 8*50 + 10 = 490; (2*3 + 6) P + 3 * 50 * 10 numbers of 8 bytes.
    assert_eq!(ufm.working_set_bytes(3), Some(8 * (12 * 490 + 1500)));
    let huge = Ufm::new(Loss::CrossEntropy, 1 << 40, 1 << 20, 1 << 10, 0.0, 0.0, 0.0).unwrap();
    assert_eq!(huge.working_set_bytes(10), None);
}
