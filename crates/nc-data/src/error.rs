//! The crate's error type. Every variant names the file (or, for the synthetic spec, the
//! spec string) and says what was expected, so a message can be shown to a user unchanged.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading or writing data files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error while opening, reading or writing `path`.
    #[error("{}: {action} failed: {source}", path.display())]
    Io {
        path: PathBuf,
        /// What was being done, e.g. "reading", "renaming the temporary file".
        action: &'static str,
        source: std::io::Error,
    },

    /// An input path exists but is not a regular file (a FIFO, device, socket or directory),
    /// refused before opening it could block.
    #[error("{}: is {kind}, not a regular file (expected {expected})", path.display())]
    NotRegularFile {
        path: PathBuf,
        kind: &'static str,
        expected: String,
    },

    /// An array (or other allocation) sized by the input would exceed the memory ceiling
    /// ([`crate::limits`]).
    #[error("{}: {what} would take {} ({bytes} bytes), above the memory limit of {} (raise it with --max-memory or NCLAB_MAX_MEMORY)", path.display(), crate::limits::human(*bytes), crate::limits::human(*limit))]
    TooLarge {
        path: PathBuf,
        what: String,
        bytes: u64,
        limit: u64,
    },

    /// A file or directory that should exist does not.
    #[error("{}: not found (expected {expected})", path.display())]
    NotFound { path: PathBuf, expected: String },

    /// The bytes of `path` are not a valid file of the named format (bad magic number,
    /// unreadable header, truncated or corrupt data).
    #[error("{}: not a valid {format} file: {reason}", path.display())]
    InvalidFormat {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },

    /// The file is valid but stores an element type this crate does not read.
    #[error("{}: {what} has unsupported dtype '{dtype}' (supported: {supported})", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        /// Which array, e.g. "array 'features'".
        what: String,
        dtype: String,
        supported: &'static str,
    },

    /// A required array is absent from a feature file.
    #[error("{}: missing array '{key}' (the file holds: {available})", path.display())]
    MissingArray {
        path: PathBuf,
        key: String,
        /// Comma-separated names of the arrays the file does hold.
        available: String,
    },

    /// An array exists but has the wrong shape, dtype or values for its role.
    #[error("{}: array '{key}' {problem}", path.display())]
    InvalidArray {
        path: PathBuf,
        key: String,
        /// What is wrong and what was expected, e.g. "has 999 entries, expected 1000 (...)".
        problem: String,
    },

    /// A file path whose kind cannot be told from its name or content.
    #[error("{}: unsupported file kind (expected {expected})", path.display())]
    UnsupportedFileKind {
        path: PathBuf,
        expected: &'static str,
    },

    /// Bytes that are not a partial state of the metrics engine ([`crate::partial_state`]),
    /// or two states that cannot be merged.
    #[error("not a valid nclab partial state: {reason}")]
    InvalidPartialState { reason: String },

    /// A synthetic data-set description such as `K=10,d=32,n=500` that cannot be parsed.
    #[error("invalid synthetic data spec '{spec}': {reason} (expected e.g. 'K=10,d=32,n=500' with optional 'noise=0.5' and 'seed=0')")]
    InvalidSyntheticSpec { spec: String, reason: String },
}

/// Result type of every fallible function in this crate.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// An [`DataError::Io`] for `path`, except that a missing file becomes
    /// [`DataError::NotFound`] with the given expectation.
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn open(path: &Path, expected: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound {
                path: path.to_path_buf(),
                expected: expected.to_string(),
            }
        } else {
            DataError::io(path, "opening", source)
        }
    }

    pub(crate) fn format(path: &Path, format: &'static str, reason: impl Into<String>) -> Self {
        DataError::InvalidFormat {
            path: path.to_path_buf(),
            format,
            reason: reason.into(),
        }
    }

    pub(crate) fn array(path: &Path, key: &str, problem: impl Into<String>) -> Self {
        DataError::InvalidArray {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}
