//! The one error type of the bindings, and how each kind reaches Python: wrong types as
//! `TypeError`, bad values as `ValueError` with the message the CLI prints for the same input
//! (the libraries' messages, without a file name), an internal failure as `RuntimeError`.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The metrics engine or the UFM refused the input.
    #[error(transparent)]
    Math(#[from] nc_math::Error),
    /// A partial state could not be read or merged.
    #[error(transparent)]
    Data(#[from] nc_data::DataError),
    /// A partial state could not be decoded or its plan does not fit (shared with the CLI).
    #[error(transparent)]
    Experiments(#[from] nc_experiments::Error),
    /// An argument has a bad value (message names the argument).
    #[error("{0}")]
    Value(String),
    /// An argument has the wrong type or dtype.
    #[error("{0}")]
    Type(String),
    /// An exception raised by Python code the bindings called (nclab._arrays checks).
    #[error("{0}")]
    Python(#[from] pyo3::PyErr),
    /// A Rust panic, caught before it could unwind into Python (`guard::compute`).
    #[error("internal error in nclab (please report it): {0}")]
    Panic(String),
}

impl From<BindError> for PyErr {
    fn from(err: BindError) -> PyErr {
        let message = err.to_string();
        match err {
            BindError::Python(err) => err,
            BindError::Type(_) => PyTypeError::new_err(message),
            BindError::Panic(_) => PyRuntimeError::new_err(message),
            _ => PyValueError::new_err(message),
        }
    }
}

pub type Result<T, E = BindError> = std::result::Result<T, E>;

pub fn value(message: impl Into<String>) -> BindError {
    BindError::Value(message.into())
}
