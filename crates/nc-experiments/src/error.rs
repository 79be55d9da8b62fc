//! The error type of nc-experiments. Each variant names the file (or the setting) it is
//! about; errors of the crates below are kept whole as sources.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a data or feature file failed (the message names the file).
    #[error(transparent)]
    Data(#[from] nc_data::DataError),
    /// The metrics engine or a comparison rejected its input.
    #[error(transparent)]
    Math(#[from] nc_math::Error),
    /// A file of a run directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON or lacks a field.
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Comparing two runs failed in the mathematics (degenerate means, mismatched samples).
    #[error("comparing {} with {}: {source}", a.display(), b.display())]
    Comparing {
        a: PathBuf,
        b: PathBuf,
        #[source]
        source: nc_math::Error,
    },
    /// The metrics engine rejected the features of a file.
    #[error("{}: {source}", path.display())]
    Metrics {
        path: PathBuf,
        #[source]
        source: nc_math::Error,
    },
    /// An array the user named explicitly (setting `field`) is not in the file.
    #[error("{}: no array '{key}' (named by {field}); leave {field} out if the file has none", path.display())]
    MissingRequestedArray {
        path: PathBuf,
        key: String,
        field: &'static str,
    },
    /// Runs that a report would put side by side differ in more than the swept settings.
    #[error("runs with mismatched settings: {} and {} differ in {keys} (a report compares runs that differ only in loss, width, epochs and seed)", first.display(), other.display())]
    MismatchedRuns {
        first: PathBuf,
        other: PathBuf,
        keys: String,
    },
    /// A file is readable but its contents are not what the format says.
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    /// One line of a line-oriented file (`metrics.jsonl`) is not what the format says.
    #[error("{} line {line}: {msg}", path.display())]
    InvalidLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// The run directory is not usable (exists and is not empty, has no config, ...).
    #[error("run directory {}: {msg}", path.display())]
    RunDir { path: PathBuf, msg: String },
    /// A new run was to be written into a directory that already holds files.
    #[error("run directory {}: exists and is not empty (resume the run in it, or write to another directory)", path.display())]
    RunDirNotEmpty { path: PathBuf },
    /// A setting is out of range. `field` is the library's name for it (a front end maps it
    /// to its own spelling, e.g. a command-line flag).
    #[error("{field}: {msg}")]
    Setting { field: &'static str, msg: String },
}

/// Result alias of nc-experiments.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn setting(field: &'static str, msg: impl Into<String>) -> Self {
        Error::Setting {
            field,
            msg: msg.into(),
        }
    }
}
