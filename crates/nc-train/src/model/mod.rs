//! The classifiers: a backbone producing features `h` (batch x d) and a linear head
//! `z = W h + b` with `W` (K x d) and `b` (K).
pub mod init;
pub mod mlp;
pub mod resnet;
pub mod wrn;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::error::{Result, TrainError};
use crate::layers::LayerInfo;
pub use mlp::Mlp;
pub use resnet::ResNet18;
pub use wrn::Wrn50;

/// Which architecture to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Mlp,
    Resnet18,
    Wrn50,
}

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 3] = [ModelKind::Mlp, ModelKind::Resnet18, ModelKind::Wrn50];

    /// The name of the kind: `mlp`, `resnet18` or `wrn50`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Resnet18 => "resnet18",
            ModelKind::Wrn50 => "wrn50",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Everything needed to build a model (part of the run's config).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub kind: ModelKind,
    /// MLP: number of hidden layers.
    pub depth: usize,
    /// MLP: hidden units before the width multiplier.
    pub hidden: usize,
    /// MLP: BatchNorm after each hidden linear layer.
    pub batch_norm: bool,
    /// Width multiplier (MLP hidden size, ResNet-18 channels, WRN-50 inner bottleneck channels).
    pub width: f64,
}

impl ModelSpec {
    /// The default architecture.
    pub const DEFAULT_KIND: ModelKind = ModelKind::Mlp;
    /// The default number of MLP hidden layers.
    pub const DEFAULT_DEPTH: usize = 2;
    /// The default MLP hidden units (times the width): MLP 784-512-512-10 on MNIST.
    pub const DEFAULT_HIDDEN: usize = 512;
    /// The default width multiplier.
    pub const DEFAULT_WIDTH: f64 = 1.0;

    /// Checks the settings that need no data (errors name the field: `width`, `depth`,
    /// `hidden`).
    pub fn validate(&self) -> Result<()> {
        if !(self.width.is_finite() && self.width > 0.0) {
            return Err(TrainError::setting(
                "width",
                format!("must be > 0, got {}", self.width),
            ));
        }
        if self.kind == ModelKind::Mlp {
            if self.depth == 0 {
                return Err(TrainError::setting("depth", "must be >= 1"));
            }
            if self.hidden_units() == 0 {
                return Err(TrainError::setting(
                    "hidden",
                    format!(
                        "({}) times the width ({}) gives 0 units",
                        self.hidden, self.width
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the model against the input shape `(channels, height, width)` of the data.
    pub fn check_input(&self, shape: [usize; 3]) -> Result<()> {
        let [channels, height, width_px] = shape;
        if matches!(self.kind, ModelKind::Resnet18 | ModelKind::Wrn50) {
            if height < 8 || width_px < 8 {
                return Err(TrainError::setting(
                    "model",
                    format!(
                        "{} needs images of at least 8x8 pixels, got {}x{} (use mlp)",
                        self.kind.name(),
                        height,
                        width_px
                    ),
                ));
            }
            if channels == 0 {
                return Err(TrainError::InvalidData("the input has no channels".into()));
            }
        }
        Ok(())
    }

    /// About how many parameters the network has for inputs of `shape` and `classes`
    /// outputs (exact for the MLP's linear layers, scaled from the width-1 count for the
    /// convolutional nets, whose channels grow with the width); `None` past u64.
    pub fn parameter_estimate(&self, shape: [usize; 3], classes: usize) -> Option<u64> {
        let classes = classes as u64;
        match self.kind {
            ModelKind::Mlp => {
                let inputs = shape
                    .iter()
                    .try_fold(1u64, |a, &b| a.checked_mul(b as u64))?;
                let h = (self.hidden as f64 * self.width).round();
                if !(h.is_finite() && h < u64::MAX as f64) {
                    return None;
                }
                let h = h as u64;
                let hidden_layers = (self.depth as u64).saturating_sub(1);
                inputs
                    .checked_mul(h)?
                    .checked_add(hidden_layers.checked_mul(h.checked_mul(h)?)?)?
                    .checked_add(h.checked_mul(classes)?)?
                    .checked_add(h.checked_mul(4 * (self.depth as u64 + 1))?)
            }
            ModelKind::Resnet18 | ModelKind::Wrn50 => {
                // ResNet-18 has 11.2M parameters at width 1, the WRN-50 style net ~25.6M
                // (ResNet-50's): both grow with the square of the width.
                let base = if self.kind == ModelKind::Resnet18 {
                    11.2e6
                } else {
                    25.6e6
                };
                let scale = self.width.max(1.0);
                let count = base * scale * scale + (self.feature_dim() as f64) * classes as f64;
                (count.is_finite() && count < u64::MAX as f64).then_some(count as u64)
            }
        }
    }

    /// The watchable layers (1-based): the MLP's hidden layers after their activation
    /// (`hidden1` ..), the residual stages of ResNet-18 and WRN-50, global-average-pooled
    /// (`stage1` .. `stage4`). The last is the penultimate features (dimension
    /// [`Self::feature_dim`]).
    pub fn layers(&self) -> Vec<LayerInfo> {
        let info = |index: usize, prefix: &str, dim: usize| LayerInfo {
            index,
            name: format!("{prefix}{index}"),
            dim,
        };
        match self.kind {
            ModelKind::Mlp => (1..=self.depth)
                .map(|i| info(i, "hidden", self.hidden_units()))
                .collect(),
            ModelKind::Resnet18 => ResNet18::stage_dims(self.width)
                .into_iter()
                .enumerate()
                .map(|(i, d)| info(i + 1, "stage", d))
                .collect(),
            ModelKind::Wrn50 => Wrn50::STAGE_DIMS
                .into_iter()
                .enumerate()
                .map(|(i, d)| info(i + 1, "stage", d))
                .collect(),
        }
    }

    /// The architecture in words, for messages: `mlp with 3 hidden layers`, `resnet18`.
    pub fn describe(&self) -> String {
        match self.kind {
            ModelKind::Mlp => format!("mlp with {} hidden layers", self.depth),
            kind => format!("{} ({} stages)", kind.name(), self.layers().len()),
        }
    }

    fn hidden_units(&self) -> usize {
        (self.hidden as f64 * self.width).round() as usize
    }

    /// Feature dimension d.
    pub fn feature_dim(&self) -> usize {
        match self.kind {
            ModelKind::Mlp => self.hidden_units(),
            ModelKind::Resnet18 => ResNet18::feature_dim(self.width),
            ModelKind::Wrn50 => Wrn50::FEATURE_DIM,
        }
    }
}

/// Feature extractor.
#[derive(Module, Debug)]
pub enum Backbone {
    Mlp(Mlp),
    Resnet18(ResNet18),
    Wrn50(Wrn50),
}

/// Backbone + linear classifier.
#[derive(Module, Debug)]
pub struct Net {
    pub backbone: Backbone,
    pub head: Linear,
}

impl Net {
    /// Builds the network for inputs of shape (C, H, W) and `classes` outputs.
    pub fn new(spec: &ModelSpec, shape: [usize; 3], classes: usize, device: &Device) -> Self {
        let [c, h, w] = shape;
        let backbone = match spec.kind {
            ModelKind::Mlp => Backbone::Mlp(Mlp::new(
                c * h * w,
                spec.depth,
                spec.hidden_units(),
                spec.batch_norm,
                device,
            )),
            ModelKind::Resnet18 => Backbone::Resnet18(ResNet18::new(c, spec.width, device)),
            ModelKind::Wrn50 => Backbone::Wrn50(Wrn50::new(c, spec.width, device)),
        };
        let head = LinearConfig::new(spec.feature_dim(), classes).init(device);
        Net { backbone, head }
    }

    /// Builds the network with every weight drawn from `seed` (see [`init`]).
    pub fn seeded(
        spec: &ModelSpec,
        shape: [usize; 3],
        classes: usize,
        device: &Device,
        seed: u64,
    ) -> Self {
        init::seeded_init(Self::new(spec, shape, classes, device), seed)
    }

    /// Penultimate features h (batch x d).
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        match &self.backbone {
            Backbone::Mlp(m) => m.forward(x),
            Backbone::Resnet18(m) => m.forward(x),
            Backbone::Wrn50(m) => m.forward(x),
        }
    }

    /// The activations of the watched layers `watched` (1-based, increasing; see
    /// [`ModelSpec::layers`]), in that order, then the features and the logits, from one
    /// forward pass. The last layer's activation is the features themselves.
    pub fn forward_watched(
        &self,
        x: Tensor<4>,
        watched: &[usize],
    ) -> (Vec<Tensor<2>>, Tensor<2>, Tensor<2>) {
        let (acts, h) = match &self.backbone {
            Backbone::Mlp(m) => m.forward_watched(x, watched),
            Backbone::Resnet18(m) => m.forward_watched(x, watched),
            Backbone::Wrn50(m) => m.forward_watched(x, watched),
        };
        let z = self.head.forward(h.clone());
        (acts, h, z)
    }

    /// Features and logits `z = W h + b`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let h = self.features(x);
        let z = self.head.forward(h.clone());
        (h, z)
    }

    /// Classifier weight W as a row-major K x d matrix (f64).
    pub fn classifier_weight(&self) -> Vec<f64> {
        // burn stores Linear weights as [d_in, d_out] = [d, K]; transpose to K x d.
        let w = self.head.weight.val();
        let [d, k] = w.dims();
        let v: Vec<f32> = crate::host_f32(w);
        let mut out = vec![0f64; k * d];
        for i in 0..d {
            for j in 0..k {
                out[j * d + i] = v[i * k + j] as f64;
            }
        }
        out
    }

    /// Classifier bias b (K); zeros if the head has none.
    pub fn classifier_bias(&self) -> Vec<f64> {
        match &self.head.bias {
            Some(b) => crate::host_f32(b.val())
                .into_iter()
                .map(f64::from)
                .collect(),
            None => vec![0.0; self.head.weight.val().dims()[1]],
        }
    }
}
