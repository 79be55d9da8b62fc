//! SGD as in the paper (PyTorch semantics) and global-norm gradient clipping.
//!
//! Per parameter `w` with gradient `g` (after clipping), PyTorch's SGD with momentum `mu`,
//! dampening 0, no Nesterov and weight decay `lambda` does
//!
//! `g' = g + lambda w`,  `v <- g'` at the first step and `v <- mu v + g'` afterwards,  `w <- w - lr v`.
//!
//! burn's `MomentumConfig` defaults to dampening 0.1; we set it to 0 explicitly (tested below).
//!
//! Clipping follows `torch.nn.utils.clip_grad_norm_`: with the global norm over **all**
//! parameter gradients `n = sqrt(sum_p ||g_p||^2)`, every gradient is multiplied by
//! `min(1, c / (n + 1e-6))`. burn's own `GradientClipping::Norm` clips each tensor on its own,
//! which is a different operation. The factor stays on the device (no host sync per step).
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;

/// Optimiser settings (paper defaults: lr 0.1, momentum 0.9, weight decay 5e-4, clip 2).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdSettings {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Parameter kinds exempt from weight decay: any of `bias`, `bn`.
    pub no_decay_on: Vec<String>,
}

fn sgd_config(momentum: f64, weight_decay: f64) -> SgdConfig {
    let mut c = SgdConfig::new();
    if momentum > 0.0 {
        c = c.with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(momentum)
                .with_dampening(0.0)
                .with_nesterov(false),
        ));
    }
    if weight_decay > 0.0 {
        c = c.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
    }
    c
}

/// Builds the SGD optimiser for `model`; parameters named in `no_decay_on` get no weight decay.
pub fn build_sgd<M: Module>(model: &M, s: &SgdSettings) -> ModuleOptimizer {
    let optim = sgd_config(s.momentum, s.weight_decay).init();
    if s.no_decay_on.is_empty() || s.weight_decay == 0.0 {
        return optim;
    }
    let ids = exempt_params(model, &s.no_decay_on);
    if ids.is_empty() {
        return optim;
    }
    optim.with_group(
        ParamGroup::from_ids(ids),
        sgd_config(s.momentum, 0.0).build(),
        None,
    )
}

/// Ids of the parameters that are biases (`bias`) or belong to a BatchNorm layer (`bn`).
pub fn exempt_params<M: Module>(model: &M, kinds: &[String]) -> Vec<ParamId> {
    struct V<'a> {
        path: Vec<(String, String)>,
        kinds: &'a [String],
        out: Vec<ParamId>,
    }
    impl ModuleVisitor for V<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path
                .push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let in_bn = self.path.iter().any(|(_, t)| t.ends_with("BatchNorm"));
            let is_bias = self.path.last().is_some_and(|(n, _)| n == "bias");
            let want = self
                .kinds
                .iter()
                .any(|k| (k == "bn" && in_bn) || (k == "bias" && is_bias));
            if want {
                self.out.push(param.id);
            }
        }
    }
    let mut v = V {
        path: vec![],
        kinds,
        out: vec![],
    };
    model.visit(&mut v);
    v.out
}

/// Global L2 norm of all gradients of `model`'s parameters, as a 1-element tensor (no sync).
pub fn global_grad_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    struct V<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let sq = (g.clone() * g).sum();
                self.sum = Some(match self.sum.take() {
                    Some(s) => s + sq,
                    None => sq,
                });
            }
        }
    }
    let mut v = V { grads, sum: None };
    model.visit(&mut v);
    v.sum.map(|s| s.sqrt())
}

/// Scales all gradients by `min(1, max_norm / (n + 1e-6))` where `n` is their global norm
/// (PyTorch `clip_grad_norm_`). Returns the norm before clipping (1-element tensor).
pub fn clip_global_norm<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, Option<Tensor<1>>) {
    let Some(norm) = global_grad_norm(model, &grads) else {
        return (grads, None);
    };
    // factor = min(1, c / (n + eps)) computed on the device.
    let factor = norm
        .clone()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    struct S<'a> {
        grads: &'a mut GradientsParams,
        factor: Tensor<1>,
    }
    impl ModuleVisitor for S<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let f = self.factor.clone().reshape([1usize; D]);
                self.grads.register::<D>(param.id, g * f);
            }
        }
    }
    let mut s = S {
        grads: &mut grads,
        factor,
    };
    model.visit(&mut s);
    (grads, Some(norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::Linear;

    /// Linear(3 -> 2) with known weights; loss = sum(y * c), so the gradients are constant:
    /// dW = x^T c (3 x 2), db = sum_rows c.
    fn setup(dev: &Device) -> (Linear, Tensor<2>, Tensor<2>) {
        let w = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5], [3, 2]),
            dev,
        );
        let b = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, -0.2], [2]), dev);
        let lin = Linear {
            weight: burn::module::Param::from_tensor(w),
            bias: Some(burn::module::Param::from_tensor(b)),
        };
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, -1.0, 0.5, 0.0, 3.0], [2, 3]),
            dev,
        );
        let c = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5, 4.0], [2, 2]), dev);
        (lin, x, c)
    }

    fn grads_of(lin: &Linear, x: &Tensor<2>, c: &Tensor<2>) -> GradientsParams {
        let loss = (lin.forward(x.clone()) * c.clone()).sum();
        GradientsParams::from_grads(loss.backward(), lin)
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        crate::host_f32(t).into_iter().map(f64::from).collect()
    }

    // Hand-computed constant gradient dW = x^T c (3 x 2, row-major [in, out]).
    fn dw() -> Vec<f64> {
        let x = [[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]];
        let c = [[1.0, -2.0], [0.5, 4.0]];
        let mut g = vec![0.0; 6];
        for i in 0..3 {
            for j in 0..2 {
                g[i * 2 + j] = x[0][i] * c[0][j] + x[1][i] * c[1][j];
            }
        }
        g
    }

    #[test]
    fn sgd_is_pytorch_sgd_with_dampening_zero() {
        let dev = Device::flex().autodiff();
        let (mut lin, x, c) = setup(&dev);
        let s = SgdSettings {
            momentum: 0.9,
            weight_decay: 0.01,
            no_decay_on: vec![],
        };
        let mut opt = build_sgd(&lin, &s);
        let (lr, mu, wd) = (0.1, 0.9, 0.01);
        let g = dw();
        let mut w: Vec<f64> = host(lin.weight.val());
        let mut v = [0.0; 6];
        for step in 0..3 {
            let grads = grads_of(&lin, &x, &c);
            lin = opt.step(lr, lin, grads);
            for i in 0..6 {
                let gi = g[i] + wd * w[i];
                v[i] = if step == 0 { gi } else { mu * v[i] + gi };
                w[i] -= lr * v[i];
            }
            let got = host(lin.weight.val());
            for i in 0..6 {
                assert!(
                    (got[i] - w[i]).abs() < 1e-5,
                    "step {step} w[{i}]: {} vs {}",
                    got[i],
                    w[i]
                );
            }
        }
        // With burn's default dampening (0.1) the third iterate would differ by far more.
        let mut w_damp: Vec<f64> = host(setup(&dev).0.weight.val());
        let mut vd = [0.0; 6];
        for step in 0..3 {
            for i in 0..6 {
                let gi = g[i] + wd * w_damp[i];
                vd[i] = if step == 0 { gi } else { mu * vd[i] + 0.9 * gi };
                w_damp[i] -= lr * vd[i];
            }
        }
        assert!((0..6).any(|i| (w_damp[i] - w[i]).abs() > 1e-3));
    }

    #[test]
    fn no_decay_on_bias_exempts_only_biases() {
        let dev = Device::flex().autodiff();
        let (lin, _, _) = setup(&dev);
        let ids = exempt_params(&lin, &["bias".to_string()]);
        assert_eq!(ids, vec![lin.bias.as_ref().unwrap().id]);
        assert!(exempt_params(&lin, &["bn".to_string()]).is_empty());
    }

    #[test]
    fn global_norm_clipping_matches_hand_computation() {
        let dev = Device::flex().autodiff();
        let (lin, x, c) = setup(&dev);
        let g = dw();
        let db = [1.0 + 0.5, -2.0 + 4.0];
        let norm =
            (g.iter().map(|v| v * v).sum::<f64>() + db.iter().map(|v| v * v).sum::<f64>()).sqrt();
        let max = 2.0;
        let (clipped, n) = clip_global_norm(&lin, grads_of(&lin, &x, &c), max);
        let n: f32 = n.unwrap().into_scalar();
        assert!((n as f64 - norm).abs() < 1e-4 * norm, "{n} vs {norm}");
        let f = (max / (norm + 1e-6)).min(1.0);
        let gw = host(clipped.get::<2>(lin.weight.id).unwrap());
        let gb = host(clipped.get::<1>(lin.bias.as_ref().unwrap().id).unwrap());
        for i in 0..6 {
            assert!(
                (gw[i] - g[i] * f).abs() < 1e-5,
                "w[{i}] {} vs {}",
                gw[i],
                g[i] * f
            );
        }
        for j in 0..2 {
            assert!((gb[j] - db[j] * f).abs() < 1e-5);
        }
        // The clipped global norm is the threshold, while each tensor alone is below it.
        let total: f64 = gw.iter().chain(&gb).map(|v| v * v).sum::<f64>().sqrt();
        assert!((total - max).abs() < 1e-4);
        // Below the threshold nothing changes.
        let (same, _) = clip_global_norm(&lin, grads_of(&lin, &x, &c), 1e6);
        let gw2 = host(same.get::<2>(lin.weight.id).unwrap());
        for i in 0..6 {
            assert!((gw2[i] - g[i]).abs() < 1e-5);
        }
    }
}
