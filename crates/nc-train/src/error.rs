//! The error type of nc-train. The CLI maps every variant to exit status 2.
use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of range or names something unknown (width <= 0, unknown loss, ...).
    #[error("invalid setting: {0}")]
    Config(String),
    /// A data file is missing, unreadable or corrupt, or labels do not fit the classes.
    #[error("data: {0}")]
    Data(String),
    /// Saving or loading a checkpoint failed.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("loss became {value} at epoch {epoch}, step {step} (lr {lr}); stopping. The last good checkpoint (epoch {last_good_epoch}) is kept in the run directory; try a smaller --lr or --clip-grad-norm")]
    NonFinite {
        epoch: usize,
        step: usize,
        value: f32,
        lr: f64,
        last_good_epoch: usize,
    },
    /// The metrics engine rejected the features.
    #[error("metrics: {0}")]
    Metrics(String),
    /// Writing or reading a file of the run directory's format.
    #[error(transparent)]
    Experiment(#[from] nc_experiments::Error),
}

/// Result alias of nc-train.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
