//! Every setting of a run, saved as `config.json` beside it (enough to rerun it), and its
//! validation into a [`CheckedConfig`], the only kind of configuration the trainer takes.
use std::ops::Deref;

use crate::data::Augment;
use crate::error::{Result, TrainError};
use crate::layers::{LayerInfo, LayerSelection};
use crate::loss::Loss;
use crate::model::ModelSpec;
use crate::optim::SgdSettings;
use crate::paper;
use crate::schedule::MultiStep;
use crate::source::DataSpec;

/// The configuration of one training run (paper defaults where the paper has one).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// nclab version that wrote this file.
    pub nclab_version: String,
    pub data: DataSpec,
    /// Keep the first N training samples of each class.
    pub per_class: Option<usize>,
    /// Fraction of each class held out for validation (stratified, seeded); 0 disables.
    pub val_fraction: f64,
    /// Per-channel normalisation with the training split's statistics.
    pub normalize: bool,
    /// Random crop + flip on the training split (None = off).
    pub augment: Option<Augment>,
    pub model: ModelSpec,
    pub loss: Loss,
    pub lr: f64,
    pub sgd: SgdSettings,
    /// Epochs after which the learning rate is multiplied by 0.1 (see [`crate::schedule`]).
    pub milestones: Vec<usize>,
    /// Global gradient-norm clipping threshold; 0 disables.
    pub clip_grad_norm: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// NC evaluation every this many epochs (plus epoch 0 and the last epoch).
    pub eval_every: usize,
    /// Also write features_train.npz / features_test.npz at the end.
    pub save_features: bool,
    /// `cpu` (flex, or libtorch CPU with the `tch` feature) or `cuda:N`.
    pub device: String,
    /// Batch size for evaluation passes (does not change any number).
    pub eval_batch_size: usize,
    /// The formulas of the recorded metrics (docs/metrics.md, "Conventions"); absent in
    /// runs written before conventions had names, which are all `nclab`.
    #[serde(default)]
    pub convention: nc_math::metrics::Convention,
    /// The layers measured at every evaluation besides the penultimate features
    /// (`--nc-layers`, [`crate::layers`]); left out of config.json when `last`, and `last`
    /// for runs written before layers could be watched.
    #[serde(default, skip_serializing_if = "LayerSelection::is_last")]
    pub nc_layers: LayerSelection,
    /// The layers `nc_layers` selects, with their names and dimensions (filled in by
    /// [`TrainConfig::validate`]; empty for `last`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched_layers: Vec<LayerInfo>,
    /// How BatchNorm layers update their running variance while training (what eval-mode
    /// features are normalised by); runs written before it was recorded used the same rule.
    #[serde(default)]
    pub batch_norm_running_var: RunningVariance,
}

/// The running-variance update of BatchNorm in training mode, with momentum m = 0.1 and a
/// batch of N values per channel (docs/train.md, "BatchNorm running statistics").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunningVariance {
    /// burn's BatchNorm: `running_var <- (1 - m) running_var + m var_N`, with the biased
    /// batch variance var_N (divided by N). PyTorch's `nn.BatchNorm*d` uses the unbiased one,
    /// var_N * N / (N - 1), instead: a named difference, not a choice we offer, because
    /// burn's module has no such option. At batch 128 the running variance is 0.8% smaller
    /// than PyTorch's; measured effect on the default job's final train NC1: 0.06965
    /// (biased) against 0.06968 (unbiased).
    #[default]
    Biased,
}

impl TrainConfig {
    /// The paper's settings (see [`crate::paper`]) for `data`, `model`, `loss` and `epochs`.
    pub fn paper(data: DataSpec, model: ModelSpec, loss: Loss, epochs: usize) -> Self {
        let augment = data.augments_by_default().then_some(paper::AUGMENT);
        TrainConfig {
            nclab_version: env!("CARGO_PKG_VERSION").to_string(),
            data,
            per_class: None,
            val_fraction: paper::VAL_FRACTION,
            normalize: true,
            augment,
            model,
            loss,
            lr: paper::LR,
            sgd: SgdSettings {
                momentum: paper::MOMENTUM,
                weight_decay: paper::WEIGHT_DECAY,
                no_decay_on: vec![],
            },
            milestones: paper::milestones(epochs),
            clip_grad_norm: paper::CLIP_GRAD_NORM,
            batch_size: paper::BATCH_SIZE,
            epochs,
            seed: paper::SEED,
            eval_every: paper::eval_every(epochs),
            save_features: false,
            device: "cpu".into(),
            eval_batch_size: paper::EVAL_BATCH_SIZE,
            convention: nc_math::metrics::Convention::NCLAB,
            nc_layers: LayerSelection::Last,
            watched_layers: vec![],
            batch_norm_running_var: RunningVariance::Biased,
        }
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> MultiStep {
        MultiStep::new(self.lr, self.milestones.clone())
    }

    /// Whether epoch `e` (0 = initialisation) gets a full NC evaluation.
    pub fn is_eval_epoch(&self, e: usize) -> bool {
        e == 0 || e == self.epochs || e.is_multiple_of(self.eval_every)
    }

    /// Checks every setting that can be checked without the data (the input shape is checked
    /// against the model once the data are read) and returns the checked configuration.
    /// Errors are [`TrainError::Setting`] naming the field (`epochs`, `batch_size`, ...).
    /// Fills in `watched_layers` from `nc_layers` and the model.
    pub fn validate(mut self) -> Result<CheckedConfig> {
        self.check()?;
        self.watched_layers = self.nc_layers.resolve(&self.model)?;
        Ok(CheckedConfig(self))
    }

    /// The index of the last watchable layer (the penultimate features).
    pub fn last_layer(&self) -> usize {
        self.model.layers().len()
    }

    fn check(&self) -> Result<()> {
        let bad = |field: &'static str, msg: String| Err(TrainError::setting(field, msg));
        if self.epochs == 0 {
            return bad("epochs", "must be >= 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be >= 1".into());
        }
        if self.eval_batch_size == 0 {
            return bad("eval_batch_size", "must be >= 1".into());
        }
        if self.eval_every == 0 {
            return bad("eval_every", "must be >= 1".into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "val_fraction",
                format!("must be in [0, 1), got {}", self.val_fraction),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be > 0, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.sgd.momentum) {
            return bad(
                "momentum",
                format!("must be in [0, 1), got {}", self.sgd.momentum),
            );
        }
        if self.sgd.weight_decay.is_nan() || self.sgd.weight_decay < 0.0 {
            return bad("weight_decay", "must be >= 0".into());
        }
        for k in &self.sgd.no_decay_on {
            if k != "bias" && k != "bn" {
                return bad(
                    "no_decay_on",
                    format!("names an unknown parameter kind {k:?} (kinds: bias, bn)"),
                );
            }
        }
        if self.clip_grad_norm.is_nan() || self.clip_grad_norm < 0.0 {
            return bad("clip_grad_norm", "must be >= 0 (0 disables)".into());
        }
        if self.per_class == Some(0) {
            return bad("per_class", "must be >= 1".into());
        }
        // The loss's parameter in the range of its reference definition (nc-math's
        // Loss::validate: alpha in [0, 1), gamma >= 0, a finite rescale > 0).
        let param = match self.loss {
            Loss::CrossEntropy => "loss",
            Loss::LabelSmoothing { .. } => "alpha",
            Loss::Focal { .. } => "gamma",
            Loss::Mse { .. } => "rescale",
        };
        match self.loss.validate() {
            Err(nc_math::Error::InvalidArgument(message)) => {
                return bad(param, format!("is out of range: {message}"))
            }
            Err(other) => return bad(param, format!("is out of range: {other}")),
            Ok(()) => {}
        }
        if self.milestones.windows(2).any(|w| w[0] > w[1]) {
            return bad("milestones", "must be increasing".into());
        }
        self.model.validate()?;
        crate::device::parse_device(&self.device)?;
        Ok(())
    }
}

/// A [`TrainConfig`] that passed [`TrainConfig::validate`]; the trainer takes only this. It
/// reads as the configuration it wraps (`Deref`) and is written to `config.json` as that.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct CheckedConfig(TrainConfig);

impl CheckedConfig {
    /// The configuration itself.
    pub fn into_inner(self) -> TrainConfig {
        self.0
    }
}

impl Deref for CheckedConfig {
    type Target = TrainConfig;

    fn deref(&self) -> &TrainConfig {
        &self.0
    }
}

impl AsRef<TrainConfig> for CheckedConfig {
    fn as_ref(&self) -> &TrainConfig {
        &self.0
    }
}
