//! Running Rust work for Python: without the GIL (so other Python threads run meanwhile, and
//! the engine's rayon threads use every core), in a thread pool of this process, and with
//! any panic caught and turned into a `RuntimeError` instead of unwinding into the
//! interpreter as PyO3's `PanicException` (which `except Exception` does not catch).

use crate::error::{BindError, Result};
use pyo3::Python;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// The thread pool of the current process, with the id of the process that built it.
static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

/// This process's pool (RAYON_NUM_THREADS threads, default one per core). Why not rayon's
/// global pool: a process forked after using it (multiprocessing's default start method on
/// Linux, DataLoader workers) inherits a pool whose threads did not survive the fork, and
/// its first parallel call would wait for them forever. A child gets a pool of its own.
fn pool() -> Result<Arc<ThreadPool>> {
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Ok(pool.clone());
        }
    }
    let fresh = Arc::new(
        ThreadPoolBuilder::new()
            .build()
            .map_err(|e| BindError::Panic(format!("cannot start the thread pool: {e}")))?,
    );
    // The parent's pool is forgotten, not dropped: dropping would signal threads that do not
    // exist in this process.
    if let Some(stale) = slot.replace((pid, fresh.clone())) {
        std::mem::forget(stale);
    }
    Ok(fresh)
}

/// Runs `work` with the GIL released, in this process's pool, with panics caught.
pub fn compute<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    py.detach(|| {
        let pool = pool()?;
        caught(|| pool.install(work))
    })
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
