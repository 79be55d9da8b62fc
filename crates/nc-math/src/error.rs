//! The one error type of nc-math.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("{what} holds a non-finite value (NaN or Inf) at row {row}, column {col}")]
    NonFinite {
        what: &'static str,
        row: usize,
        col: usize,
    },
    #[error("label {label} at row {row} is outside the classes 0..{num_classes}")]
    LabelOutOfRange {
        label: u64,
        row: usize,
        num_classes: usize,
    },
    #[error("class {class} has no samples (every class 0..{num_classes} needs at least one)")]
    EmptyClass { class: usize, num_classes: usize },
    #[error("need at least 2 classes, got {0}")]
    TooFewClasses(usize),
    #[error("all class means coincide: the between-class covariance is zero, so NC1 is undefined")]
    DegenerateMeans,
    #[error("accumulators do not match: {0}")]
    Mismatch(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("linear algebra failed: {0}")]
    Linalg(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
