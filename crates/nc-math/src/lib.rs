//! Neural-collapse mathematics in f64: the metric specification and its streaming
//! accumulator, losses in closed form, the unconstrained feature model. No deep-learning
//! framework: this crate builds and tests in seconds.

pub mod compare;
pub mod error;
mod linalg;
pub mod loss;
pub mod metrics;
pub mod ufm;
pub mod vector;

pub use error::{Error, Result};
