//! Seeded initialisation, independent of burn's global RNG (which other threads may draw from,
//! and which burn's lazily initialised parameters draw from at first use).
//!
//! PyTorch's defaults, which are also burn's: every Linear / Conv2d weight and bias ~
//! `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with `fan_in` = inputs of the layer (in x kh x kw for a
//! convolution); BatchNorm scale 1 and shift 0 (left as built). The n-th parameter (in module
//! order) draws from its own ChaCha8 stream of the run's seed.
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use rand::Rng;

use crate::data::rng_for;

struct SeededInit {
    seed: u64,
    counter: u64,
    path: Vec<String>,
    /// fan_in of the last weight seen (the bias of the same layer follows its weight).
    last_fan_in: usize,
}

impl ModuleMapper for SeededInit {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.path.push(container_type.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let in_layer = self
            .path
            .iter()
            .rev()
            .find(|t| t.starts_with("Struct:"))
            .cloned()
            .unwrap_or_default();
        let shape = param.lazy_shape();
        let dims: Vec<usize> = shape.to_vec();
        let fan_in = match (in_layer.as_str(), D) {
            ("Struct:Linear", 2) => dims[0], // weight [in, out]
            ("Struct:Conv2d", 4) => dims[1] * dims[2] * dims[3], // weight [out, in, kh, kw]
            ("Struct:Linear", 1) | ("Struct:Conv2d", 1) => self.last_fan_in, // bias
            _ => return param,               // BatchNorm and anything else: keep the constant init
        };
        if D > 1 {
            self.last_fan_in = fan_in;
        }
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let mut rng = rng_for(self.seed, self.counter, 7);
        self.counter += 1;
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        param.map(|t| {
            let device = t.device();
            let grad = t.is_require_grad();
            let fresh = Tensor::<D>::from_data(TensorData::new(values, shape.clone()), &device);
            if grad {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// Re-initialises every Linear and Conv2d parameter of `module` from `seed`.
pub fn seeded_init<M: Module>(module: M, seed: u64) -> M {
    module.map(&mut SeededInit {
        seed,
        counter: 0,
        path: vec![],
        last_fan_in: 1,
    })
}
