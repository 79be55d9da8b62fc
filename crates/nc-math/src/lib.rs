//! nc-math
pub mod metrics;
