//! Multi-layer perceptron: `depth` hidden layers `Linear -> [BatchNorm] -> ReLU`.
//! The features `h` are the output of the last hidden layer (after its ReLU).
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// MLP backbone (without the classifier head).
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub norms: Vec<BatchNorm>,
}

impl Mlp {
    /// `input` features, `depth` hidden layers of `hidden` units, BatchNorm after each if asked.
    pub fn new(
        input: usize,
        depth: usize,
        hidden: usize,
        batch_norm: bool,
        device: &Device,
    ) -> Self {
        let mut layers = Vec::with_capacity(depth);
        let mut norms = Vec::new();
        let mut fan_in = input;
        for _ in 0..depth {
            layers.push(LinearConfig::new(fan_in, hidden).init(device));
            if batch_norm {
                norms.push(BatchNormConfig::new(hidden).init(device));
            }
            fan_in = hidden;
        }
        Mlp { layers, norms }
    }

    /// Images (batch x C x H x W) are flattened; returns features (batch x d).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_watched(x, &[]).1
    }

    /// The outputs of the hidden layers `watched` (1-based, after their ReLU) and the
    /// features.
    pub fn forward_watched(&self, x: Tensor<4>, watched: &[usize]) -> (Vec<Tensor<2>>, Tensor<2>) {
        let mut h: Tensor<2> = x.flatten(1, 3);
        let mut acts = Vec::with_capacity(watched.len());
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if let Some(bn) = self.norms.get(i) {
                h = bn.forward(h);
            }
            h = relu(h);
            if watched.contains(&(i + 1)) {
                acts.push(h.clone());
            }
        }
        (acts, h)
    }
}
