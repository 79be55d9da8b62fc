//! `nclab._core`, the compiled part of the Python package `nclab` (docs/python.md): the
//! metrics engine of nc-math over numpy arrays read in place, its two streaming phases as
//! picklable accumulators, and the UFM. The plain-Python part (python/nclab) turns inputs into
//! the arrays read here and holds `nclab.torch`.
//!
//! | file | holds |
//! |---|---|
//! | `error.rs` | the error type and its Python exception kinds |
//! | `guard.rs` | running work without the GIL and with panics caught |
//! | `arrays.rs` | inputs: features borrowed in place, labels, classifier, means |
//! | `metrics.rs` | `metrics()` and the metrics dict |
//! | `state.rs` | accumulators to and from the partial-state parts |
//! | `stream.rs` | `MeanAccumulator`, `ScatterAccumulator`, `state_info()` |
//! | `ufm.rs` | `ufm_optimum()`, `ufm_solve()`, `ufm_not_covered_reason()` |

mod arrays;
mod error;
mod guard;
mod metrics;
mod state;
mod stream;
mod ufm;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(metrics::metrics, m)?)?;
    m.add_function(wrap_pyfunction!(stream::state_info, m)?)?;
    m.add_function(wrap_pyfunction!(ufm::ufm_optimum, m)?)?;
    m.add_function(wrap_pyfunction!(ufm::ufm_solve, m)?)?;
    m.add_function(wrap_pyfunction!(ufm::ufm_not_covered_reason, m)?)?;
    m.add_class::<stream::PyMeans>()?;
    m.add_class::<stream::PyScatter>()?;
    m.add("PARTIAL_STATE_VERSION", nc_data::partial_state::VERSION)?;
    m.add("RANK_CUTOFF", nc_math::metrics::RANK_CUTOFF)?;
    Ok(())
}
