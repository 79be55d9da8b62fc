//! The paper's "WideResNet-50": a ResNet-50 bottleneck network with a CIFAR stem.
//!
//! Stem conv3x3 3->64, BN, ReLU (no max-pool); stages of [3, 4, 6, 3] bottleneck blocks with
//! planes 64, 128, 256, 512 and strides 1, 2, 2, 2 (the first block of a stage carries the
//! stride). Bottleneck: conv1x1 in->p, BN, ReLU; conv3x3 p->p (stride), BN, ReLU; conv1x1
//! p->4 planes, BN; plus shortcut (1x1 conv + BN when the shape changes); ReLU after the sum.
//! The width multiplier sets the inner channels `p = int(planes * width)`; block outputs stay
//! `4 planes`, so d = 2048 for every width. Features = global average pool.
use super::resnet::{conv, forward_stages, Shortcut};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Bottleneck block (expansion 4).
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Conv2d,
    pub bn3: BatchNorm,
    pub shortcut: Option<Shortcut>,
}

impl Bottleneck {
    pub fn new(cin: usize, inner: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let shortcut =
            (stride != 1 || cin != cout).then(|| Shortcut::new(cin, cout, stride, device));
        Bottleneck {
            conv1: conv(cin, inner, 1, 1, device),
            bn1: BatchNormConfig::new(inner).init(device),
            conv2: conv(inner, inner, 3, stride, device),
            bn2: BatchNormConfig::new(inner).init(device),
            conv3: conv(inner, cout, 1, 1, device),
            bn3: BatchNormConfig::new(cout).init(device),
            shortcut,
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        let out = self.bn3.forward(self.conv3.forward(out));
        let skip = match &self.shortcut {
            Some(s) => s.forward(x),
            None => x,
        };
        relu(out + skip)
    }
}

/// WideResNet-50-style backbone.
#[derive(Module, Debug)]
pub struct Wrn50 {
    pub stem: Conv2d,
    pub stem_bn: BatchNorm,
    pub blocks: Vec<Bottleneck>,
}

impl Wrn50 {
    /// Feature dimension (independent of the width).
    pub const FEATURE_DIM: usize = 2048;

    pub fn new(in_channels: usize, width: f64, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (i, (planes, n)) in [64usize, 128, 256, 512]
            .into_iter()
            .zip(Self::STAGE_BLOCKS)
            .enumerate()
        {
            // int(planes * width) as in the official code, at least one channel.
            let inner = ((planes as f64 * width) as usize).max(1);
            let cout = 4 * planes;
            for b in 0..n {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Bottleneck::new(cin, inner, cout, stride, device));
                cin = cout;
            }
        }
        Wrn50 {
            stem: conv(in_channels, 64, 3, 1, device),
            stem_bn: BatchNormConfig::new(64).init(device),
            blocks,
        }
    }

    /// The channels of the four stages' outputs (4 x planes, whatever the width).
    pub const STAGE_DIMS: [usize; 4] = [256, 512, 1024, 2048];

    /// Blocks per stage.
    pub const STAGE_BLOCKS: [usize; 4] = [3, 4, 6, 3];

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_watched(x, &[]).1
    }

    /// The global-average-pooled outputs of the stages `watched` (1-based) and the features.
    pub fn forward_watched(&self, x: Tensor<4>, watched: &[usize]) -> (Vec<Tensor<2>>, Tensor<2>) {
        let h = relu(self.stem_bn.forward(self.stem.forward(x)));
        forward_stages(
            h,
            &self.blocks,
            &Self::STAGE_BLOCKS,
            watched,
            Bottleneck::forward,
        )
    }
}
