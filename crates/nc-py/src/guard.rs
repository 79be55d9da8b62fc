//! Running Rust work for Python: without the GIL (so other Python threads run meanwhile, and
//! the engine's rayon threads use every core), and with any panic caught and turned into a
//! `RuntimeError` instead of unwinding into the interpreter as PyO3's `PanicException`
//! (which `except Exception` does not catch).

use crate::error::{BindError, Result};
use pyo3::Python;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `work` with the GIL released and panics caught.
pub fn compute<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    py.detach(|| caught(work))
}

/// Runs `work` with panics caught (for work that needs the GIL, or is too small to release it).
pub fn caught<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    // AssertUnwindSafe: after a panic nothing `work` touched is used again; the error
    // reaches Python and the accumulator keeps the state it had before the call (every
    // mutation of it happens after the computation succeeds).
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(BindError::Panic(message))
        }
    }
}
