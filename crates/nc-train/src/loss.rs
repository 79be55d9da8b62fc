//! The paper's loss family as batch-averaged burn tensors.
//!
//! With logits `z = W h + b` (batch x K), `p = softmax(z)` and true class `k`:
//! - `ce`:  `-log p_k`
//! - `ls`:  `-(1 - alpha) log p_k - (alpha / K) sum_j log p_j`
//! - `fl`:  `-(1 - p_k)^gamma log p_k`
//! - `mse`: `(1/K) sum_j (z_j - s [j = k])^2`
//!
//! each averaged over the batch. `log p` comes from one fused `log_softmax`, so large logits do
//! not overflow. The f64 reference versions live in `nc_math`; a test pins them together.
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Which loss to train with, with its parameter: the f64 reference definitions' own type, so a
/// training run and `nclab ufm` name and parameterise the losses identically.
pub use nc_math::loss::Loss;

/// One-hot matrix (batch x K, row-major) of the labels, built on the host.
pub fn one_hot(labels: &[u32], k: usize) -> Vec<f32> {
    let mut v = vec![0f32; labels.len() * k];
    for (i, &y) in labels.iter().enumerate() {
        v[i * k + y as usize] = 1.0;
    }
    v
}

/// Batch-averaged loss (shape `[1]`) of `logits` (batch x K) against `onehot` (batch x K).
pub fn batch_loss(kind: Loss, logits: Tensor<2>, onehot: Tensor<2>) -> Tensor<1> {
    let [_, k] = logits.dims();
    match kind {
        Loss::CrossEntropy => {
            let logp = log_softmax(logits, 1);
            (logp * onehot).sum_dim(1).mean().neg()
        }
        Loss::LabelSmoothing { alpha } => {
            let logp = log_softmax(logits, 1);
            let true_term = (logp.clone() * onehot).sum_dim(1).mul_scalar(1.0 - alpha);
            let uniform_term = logp.sum_dim(1).mul_scalar(alpha / k as f64);
            (true_term + uniform_term).mean().neg()
        }
        Loss::Focal { gamma } => {
            let logp_true = (log_softmax(logits, 1) * onehot).sum_dim(1);
            let one_minus_p = logp_true.clone().exp().neg().add_scalar(1.0).clamp_min(0.0);
            (one_minus_p.powf_scalar(gamma) * logp_true).mean().neg()
        }
        Loss::Mse { rescale } => {
            let diff = logits - onehot.mul_scalar(rescale);
            // mean over batch and classes = (1/B) sum_i (1/K) sum_j
            (diff.clone() * diff).mean()
        }
    }
    .reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Independent f64 formulas (written from docs/ufm.md, not from the code above).
    fn reference(kind: Loss, z: &[f64], y: &[u32], k: usize) -> f64 {
        let b = y.len();
        let mut total = 0.0;
        for i in 0..b {
            let row = &z[i * k..(i + 1) * k];
            let t = y[i] as usize;
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let logp = |j: usize| row[j] - lse;
            total += match kind {
                Loss::CrossEntropy => -logp(t),
                Loss::LabelSmoothing { alpha } => {
                    -(1.0 - alpha) * logp(t) - alpha / k as f64 * (0..k).map(logp).sum::<f64>()
                }
                Loss::Focal { gamma } => -(1.0 - logp(t).exp()).powf(gamma) * logp(t),
                Loss::Mse { rescale } => {
                    (0..k)
                        .map(|j| (row[j] - if j == t { rescale } else { 0.0 }).powi(2))
                        .sum::<f64>()
                        / k as f64
                }
            };
        }
        total / b as f64
    }

    fn check(kind: Loss) {
        let (b, k) = (7, 5);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let z: Vec<f64> = (0..b * k).map(|_| rng.random_range(-4.0..4.0)).collect();
        let y: Vec<u32> = (0..b).map(|i| (i % k) as u32).collect();
        let dev = Device::flex().autodiff();
        let zt = Tensor::<2>::from_data(
            TensorData::new(z.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b, k]),
            &dev,
        )
        .require_grad();
        let oh = Tensor::<2>::from_data(TensorData::new(one_hot(&y, k), [b, k]), &dev);
        let loss = batch_loss(kind, zt.clone(), oh);
        let value: f32 = loss.clone().into_scalar();
        let grads = loss.backward();
        let g: Vec<f32> = zt
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        // The tensor loss sees the f32-rounded logits.
        let z32: Vec<f64> = z.iter().map(|&v| v as f32 as f64).collect();
        let r = reference(kind, &z32, &y, k);
        assert!(
            (value as f64 - r).abs() < 1e-5 * r.abs().max(1.0),
            "{kind:?}: {value} vs {r}"
        );
        let h = 1e-6;
        for i in 0..b * k {
            let mut zp = z32.clone();
            zp[i] += h;
            let mut zm = z32.clone();
            zm[i] -= h;
            let fd = (reference(kind, &zp, &y, k) - reference(kind, &zm, &y, k)) / (2.0 * h);
            assert!(
                (g[i] as f64 - fd).abs() < 1e-5,
                "{kind:?} grad[{i}]: {} vs {fd}",
                g[i]
            );
        }
    }

    /// The tensor losses equal nc_math's f64 reference (value and gradient) to 1e-5.
    #[test]
    fn tensor_losses_match_nc_math_loss() {
        let (b, k) = (9, 6);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let z: Vec<f64> = (0..b * k)
            .map(|_| rng.random_range(-5.0..5.0) as f32 as f64)
            .collect();
        let y: Vec<u32> = (0..b).map(|i| ((i * 5) % k) as u32).collect();
        let targets: Vec<usize> = y.iter().map(|&t| t as usize).collect();
        let losses = [
            Loss::CrossEntropy,
            Loss::LabelSmoothing { alpha: 0.05 },
            Loss::Focal { gamma: 3.0 },
            Loss::Mse { rescale: 15.0 },
        ];
        let dev = Device::flex().autodiff();
        for loss_kind in losses {
            let zt = Tensor::<2>::from_data(
                TensorData::new(z.iter().map(|&v| v as f32).collect::<Vec<_>>(), [b, k]),
                &dev,
            )
            .require_grad();
            let oh = Tensor::<2>::from_data(TensorData::new(one_hot(&y, k), [b, k]), &dev);
            let loss = batch_loss(loss_kind, zt.clone(), oh);
            let value: f32 = loss.clone().into_scalar();
            let g = crate::host_f32(zt.grad(&loss.backward()).unwrap());
            let mut rg = vec![0.0; b * k];
            let rv = loss_kind.mean_value_grad(&z, &targets, &mut rg).unwrap();
            assert!(
                (value as f64 - rv).abs() < 1e-5 * rv.abs().max(1.0),
                "{loss_kind:?}: {value} vs {rv}"
            );
            for i in 0..b * k {
                assert!(
                    (g[i] as f64 - rg[i]).abs() < 1e-5,
                    "{loss_kind:?} grad[{i}]: {} vs {}",
                    g[i],
                    rg[i]
                );
            }
        }
    }

    #[test]
    fn ce_matches_reference() {
        check(Loss::CrossEntropy);
    }
    #[test]
    fn ls_matches_reference() {
        check(Loss::LabelSmoothing { alpha: 0.05 });
        check(Loss::LabelSmoothing { alpha: 0.3 });
    }
    #[test]
    fn fl_matches_reference() {
        check(Loss::Focal { gamma: 3.0 });
        check(Loss::Focal { gamma: 0.0 });
    }
    #[test]
    fn mse_matches_reference() {
        check(Loss::Mse { rescale: 15.0 });
        check(Loss::Mse { rescale: 1.0 });
    }

    #[test]
    fn large_logits_stay_finite() {
        let dev = Device::flex();
        let z = Tensor::<2>::from_data(
            TensorData::new(vec![1000f32, -1000.0, 0.0, 0.0, 800.0, -5.0], [2, 3]),
            &dev,
        );
        for kind in [
            Loss::CrossEntropy,
            Loss::LabelSmoothing { alpha: 0.05 },
            Loss::Focal { gamma: 3.0 },
        ] {
            let oh = Tensor::<2>::from_data(TensorData::new(one_hot(&[1, 0], 3), [2, 3]), &dev);
            let v: f32 = batch_loss(kind, z.clone(), oh).into_scalar();
            assert!(v.is_finite(), "{kind:?}");
        }
    }
}
