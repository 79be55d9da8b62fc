//! ResNet-18 with a CIFAR stem (3x3 conv, stride 1, no max-pool), basic blocks [2, 2, 2, 2]
//! with `round(64 w)`, `round(128 w)`, `round(256 w)`, `round(512 w)` channels for width `w`.
//! Features `h` = global average pool of the last stage (d = round(512 w)).
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// `k x k` convolution without bias, padding `k / 2`.
pub(crate) fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// Projection shortcut: 1x1 conv with stride, then BatchNorm.
#[derive(Module, Debug)]
pub struct Shortcut {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl Shortcut {
    pub fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Shortcut {
            conv: conv(cin, cout, 1, stride, device),
            bn: BatchNormConfig::new(cout).init(device),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// Basic block: conv3x3 (stride) - BN - ReLU - conv3x3 - BN, plus shortcut, then ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub shortcut: Option<Shortcut>,
}

impl BasicBlock {
    pub fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let shortcut =
            (stride != 1 || cin != cout).then(|| Shortcut::new(cin, cout, stride, device));
        BasicBlock {
            conv1: conv(cin, cout, 3, stride, device),
            bn1: BatchNormConfig::new(cout).init(device),
            conv2: conv(cout, cout, 3, 1, device),
            bn2: BatchNormConfig::new(cout).init(device),
            shortcut,
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        let skip = match &self.shortcut {
            Some(s) => s.forward(x),
            None => x,
        };
        relu(out + skip)
    }
}

/// Scales a channel count by the width multiplier (at least 1 channel).
pub(crate) fn scaled(c: usize, width: f64) -> usize {
    ((c as f64 * width).round() as usize).max(1)
}

/// ResNet-18 backbone with a CIFAR stem.
#[derive(Module, Debug)]
pub struct ResNet18 {
    pub stem: Conv2d,
    pub stem_bn: BatchNorm,
    pub blocks: Vec<BasicBlock>,
}

impl ResNet18 {
    pub fn new(in_channels: usize, width: f64, device: &Device) -> Self {
        let c0 = scaled(64, width);
        let mut blocks = Vec::new();
        let mut cin = c0;
        for (i, planes) in [64, 128, 256, 512].into_iter().enumerate() {
            let cout = scaled(planes, width);
            for b in 0..2 {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(cin, cout, stride, device));
                cin = cout;
            }
        }
        ResNet18 {
            stem: conv(in_channels, c0, 3, 1, device),
            stem_bn: BatchNormConfig::new(c0).init(device),
            blocks,
        }
    }

    /// Feature dimension d.
    pub fn feature_dim(width: f64) -> usize {
        scaled(512, width)
    }

    /// The channels of the four stages' outputs.
    pub fn stage_dims(width: f64) -> [usize; 4] {
        [64, 128, 256, 512].map(|c| scaled(c, width))
    }

    /// Blocks per stage.
    pub const STAGE_BLOCKS: [usize; 4] = [2, 2, 2, 2];

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
            BasicBlock::forward,
        )
    }
}

/// Runs `blocks` (grouped into stages of `stage_blocks`) from `h`, pooling the output of
/// every stage in `watched` (1-based); the last stage's pooled output is the features.
pub(crate) fn forward_stages<B>(
    mut h: Tensor<4>,
    blocks: &[B],
    stage_blocks: &[usize],
    watched: &[usize],
    forward: impl Fn(&B, Tensor<4>) -> Tensor<4>,
) -> (Vec<Tensor<2>>, Tensor<2>) {
    let mut acts = Vec::with_capacity(watched.len());
    let mut ends = stage_blocks.iter().scan(0, |end, &n| {
        *end += n;
        Some(*end)
    });
    let mut stage = 1;
    let mut stage_end = ends.next();
    let last_stage = stage_blocks.len();
    for (i, b) in blocks.iter().enumerate() {
        h = forward(b, h);
        if Some(i + 1) == stage_end {
            if stage < last_stage && watched.contains(&stage) {
                acts.push(global_avg_pool(h.clone()));
            }
            stage += 1;
            stage_end = ends.next();
        }
    }
    let features = global_avg_pool(h);
    if watched.contains(&last_stage) {
        acts.push(features.clone());
    }
    (acts, features)
}

/// Mean over the spatial positions: (B, C, H, W) -> (B, C).
pub(crate) fn global_avg_pool(h: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = h.dims();
    h.flatten::<3>(2, 3).mean_dim(2).reshape([b, c])
}
