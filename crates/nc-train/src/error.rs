//! The error type of nc-train. The CLI maps every variant to exit status 2.
//!
//! Settings are named by their field names in [`crate::TrainConfig`] (`epochs`, `batch_size`,
//! `lr`, `momentum`, `weight_decay`, ...), never by a front end's spelling of them; a front end
//! renders [`TrainError::message_with`] with its own names (the CLI: `--epochs`, ...). Errors
//! of the crates below are kept whole as sources.
use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of range or names something unknown (width <= 0, unknown device, ...).
    /// `field` is the setting's name (`epochs`, `batch_size`, `width`, `alpha`, `data`, ...);
    /// `msg` continues the sentence after it ("must be >= 1").
    #[error("{}", self.message_with(|field| field.to_string()))]
    Setting { field: &'static str, msg: String },
    /// A data set could not be read: missing, unreadable or corrupt files, or a bad synthetic
    /// specification (nc-data's error).
    #[error("data: {0}")]
    Data(#[from] nc_data::DataError),
    /// The data read do not fit together or the model: a label beyond the classes, a test set
    /// of another shape than the training set, an empty training set.
    #[error("data: {0}")]
    InvalidData(String),
    /// Saving or loading a checkpoint (or another binary file of the run) failed.
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("{}", self.message_with(|field| field.to_string()))]
    NonFinite {
        epoch: usize,
        step: usize,
        value: f32,
        lr: f64,
        last_good_epoch: usize,
    },
    /// The loss stayed finite but the network's features did not (the last steps of an
    /// epoch diverged); the last good checkpoint is kept.
    #[error("{}", self.message_with(|field| field.to_string()))]
    DivergedFeatures {
        epoch: usize,
        lr: f64,
        last_good_epoch: usize,
    },
    /// The metrics engine rejected the features.
    #[error("metrics: {0}")]
    Metrics(#[from] nc_math::Error),
    /// Writing or reading a file of the run directory's format.
    #[error(transparent)]
    Experiment(#[from] nc_experiments::Error),
}

impl TrainError {
    /// A [`TrainError::Setting`].
    pub fn setting(field: &'static str, msg: impl Into<String>) -> Self {
        TrainError::Setting {
            field,
            msg: msg.into(),
        }
    }

    /// A checkpoint error for `path` with its cause.
    pub(crate) fn checkpoint(
        path: impl Into<PathBuf>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            source: Box::new(source),
        }
    }

    /// The message, with every setting it names written as `name(field)`. `Display` names
    /// them by their field names; the CLI passes its flags (`lr` -> `--lr`).
    pub fn message_with(&self, name: impl Fn(&'static str) -> String) -> String {
        match self {
            TrainError::Setting { field, msg } => {
                format!("invalid setting: {} {msg}", name(field))
            }
            TrainError::NonFinite {
                epoch,
                step,
                value,
                lr,
                last_good_epoch,
            } => format!(
                "loss became {value} at epoch {epoch}, step {step} (lr {lr}); stopping. The last \
                 good checkpoint (epoch {last_good_epoch}) is kept in the run directory; try a \
                 smaller {} or {}",
                name("lr"),
                name("clip_grad_norm")
            ),
            TrainError::DivergedFeatures {
                epoch,
                lr,
                last_good_epoch,
            } => format!(
                "the network's features became non-finite after epoch {epoch} (lr {lr}): \
                 training diverged; stopping. The last good checkpoint (epoch \
                 {last_good_epoch}) is kept in the run directory; try a smaller {} or {}",
                name("lr"),
                name("clip_grad_norm")
            ),
            other => other.to_string(),
        }
    }
}

/// Result alias of nc-train.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_by_field_or_by_the_front_end() {
        let e = TrainError::setting("batch_size", "must be >= 1");
        assert_eq!(e.to_string(), "invalid setting: batch_size must be >= 1");
        let flag = |f: &str| format!("--{}", f.replace('_', "-"));
        assert_eq!(
            e.message_with(flag),
            "invalid setting: --batch-size must be >= 1"
        );
        let e = TrainError::NonFinite {
            epoch: 3,
            step: 1,
            value: f32::INFINITY,
            lr: 0.1,
            last_good_epoch: 2,
        };
        assert!(
            e.to_string()
                .ends_with("try a smaller lr or clip_grad_norm"),
            "{e}"
        );
        assert!(
            e.message_with(flag)
                .ends_with("try a smaller --lr or --clip-grad-norm"),
            "{e}"
        );
        assert!(e.to_string().starts_with(
            "loss became inf at epoch 3, step 1 (lr 0.1); stopping. The last good checkpoint \
             (epoch 2) is kept in the run directory;"
        ));
    }

    #[test]
    fn sources_are_kept() {
        use std::error::Error as _;
        let data = nc_data::DataError::NotFound {
            path: "x".into(),
            expected: "a directory".into(),
        };
        let e = TrainError::from(data);
        assert_eq!(e.to_string(), "data: x: not found (expected a directory)");
        assert!(e
            .source()
            .is_some_and(|s| s.downcast_ref::<nc_data::DataError>().is_some()));
        let e = TrainError::from(nc_math::Error::TooFewClasses(1));
        assert!(e
            .source()
            .is_some_and(|s| s.downcast_ref::<nc_math::Error>().is_some()));
        let io = std::io::Error::other("disk full");
        let e = TrainError::checkpoint("m.bpk", io);
        assert_eq!(e.to_string(), "checkpoint m.bpk: disk full");
        assert!(e.source().is_some());
    }
}
