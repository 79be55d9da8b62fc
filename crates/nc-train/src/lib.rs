//! nc-train: training classifiers under the paper's losses with burn, tracking neural collapse.
//!
//! Pipeline: [`data`] (splits, normalisation, augmentation, batches) -> [`model`] (MLP,
//! ResNet-18, WRN-50-style) -> [`loss`] (CE, LS, FL, MSE) -> [`optim`] (SGD + global-norm
//! clipping) with [`schedule`] -> [`eval`] (features through `nc_math::metrics`) -> [`run_dir`]
//! (config, metrics, checkpoints) driven by [`trainer::Trainer`]. The paper's settings are
//! defined once in [`paper`]; a [`TrainConfig`] is checked once into a [`CheckedConfig`].
//! The library prints nothing: progress goes to a callback ([`RunOptions::on_progress`]).
pub mod error;
pub mod loss;
pub mod model;
pub mod optim;
pub mod paper;
pub mod schedule;

pub use error::{Result, TrainError};
/// The error inside [`TrainError::Experiment`] (run-directory files).
pub use nc_experiments::Error as ExperimentError;
pub mod config;
pub mod data;
pub mod device;
pub mod eval;
pub mod features;
pub mod layers;
/// The run directory's layout lives with the experiments code, which reads it without burn.
pub use nc_experiments::run_dir;
pub mod source;
pub mod trainer;

pub use config::{CheckedConfig, TrainConfig};
pub use eval::{Evaluation, LayerEval, SplitEval};
pub use layers::{LayerInfo, LayerSelection};
pub use run_dir::Summary;
pub use trainer::{
    resume, train, EpochReport, Progress, ProgressFn, RunOptions, TrainMeans, Trainer,
};

/// Copies a float tensor to the host as f32 values (row-major).
pub(crate) fn host_f32<const D: usize>(t: burn::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}
