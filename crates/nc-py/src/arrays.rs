//! Inputs from Python: each one first goes through `nclab._arrays` (python/nclab/_arrays.py),
//! which turns any array-like into a C-contiguous array of the dtype read here (and raises the
//! CLI's message when it cannot), then is borrowed as a slice without a copy.

use crate::error::{BindError, Result};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// N x d features borrowed from a numpy array, in their stored precision.
pub enum Features<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// The slice of [`Features`], which can cross into code running without the GIL.
#[derive(Clone, Copy)]
pub enum FeatureSlice<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'py> Features<'py> {
    /// (N, d).
    pub fn shape(&self) -> (usize, usize) {
        let shape = match self {
            Features::F32(a) => a.shape(),
            Features::F64(a) => a.shape(),
        };
        (shape[0], shape[1])
    }

    pub fn slice(&self) -> Result<FeatureSlice<'_>> {
        let not_contiguous = |_| BindError::Value("features are not C-contiguous".into());
        Ok(match self {
            Features::F32(a) => FeatureSlice::F32(a.as_slice().map_err(not_contiguous)?),
            Features::F64(a) => FeatureSlice::F64(a.as_slice().map_err(not_contiguous)?),
        })
    }
}

/// Calls `nclab._arrays.<function>(*args)`.
fn normalise<'py>(
    py: Python<'py>,
    function: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> Result<Bound<'py, PyAny>> {
    Ok(py.import("nclab._arrays")?.getattr(function)?.call1(args)?)
}

/// The features of `obj` (float32/float64, N x d), in place where they are C-contiguous.
pub fn features<'py>(obj: &Bound<'py, PyAny>) -> Result<Features<'py>> {
    let array = normalise(obj.py(), "features", (obj,))?;
    if let Ok(a) = array.extract::<PyReadonlyArray2<'py, f32>>() {
        return Ok(Features::F32(a));
    }
    Ok(Features::F64(
        array
            .extract::<PyReadonlyArray2<'py, f64>>()
            .map_err(PyErr::from)?,
    ))
}

/// N labels of `obj` as uint32.
pub fn labels<'py>(obj: &Bound<'py, PyAny>, n: usize) -> Result<PyReadonlyArray1<'py, u32>> {
    let array = normalise(obj.py(), "labels", (obj, n))?;
    Ok(array
        .extract::<PyReadonlyArray1<'py, u32>>()
        .map_err(PyErr::from)?)
}

/// A classifier's rows K, W (K x d, row-major) and b (K, or `None` for b = 0).
pub type ClassifierParts = (usize, Vec<f64>, Option<Vec<f64>>);

/// The classifier (W K x d, b K) as f64 vectors, checked against d; `None` without weight.
pub fn classifier(
    weight: Option<&Bound<'_, PyAny>>,
    bias: Option<&Bound<'_, PyAny>>,
    dim: usize,
) -> Result<Option<ClassifierParts>> {
    let py = match weight.or(bias) {
        Some(obj) => obj.py(),
        None => return Ok(None),
    };
    let pair = normalise(py, "classifier", (weight, bias, dim))?;
    let (w, b): (
        Option<PyReadonlyArray2<'_, f64>>,
        Option<PyReadonlyArray1<'_, f64>>,
    ) = pair.extract()?;
    let Some(w) = w else { return Ok(None) };
    let rows = w.shape()[0];
    let weight = w.as_array().iter().copied().collect();
    let bias = b.map(|b| b.as_array().iter().copied().collect());
    Ok(Some((rows, weight, bias)))
}

/// Reference class means (K x d) as an f64 vector.
pub fn means(obj: &Bound<'_, PyAny>, k: usize, d: usize) -> Result<Vec<f64>> {
    let expected = format!("{k} x {d} (K classes x d, like the features)");
    let array = normalise(obj.py(), "floats", (obj, "means_from", (k, d), expected))?;
    let array = array
        .extract::<PyReadonlyArray2<'_, f64>>()
        .map_err(PyErr::from)?;
    Ok(array.as_array().iter().copied().collect())
}

/// K from the labels, the classifier or the caller (`nclab._arrays.num_classes`).
pub fn num_classes(
    labels: &PyReadonlyArray1<'_, u32>,
    weight_rows: Option<usize>,
    given: Option<&Bound<'_, PyAny>>,
) -> Result<usize> {
    let py = labels.py();
    let weight_shape = weight_rows.map(|k| numpy::PyArray2::<f64>::zeros(py, [k, 0], false));
    let k = normalise(py, "num_classes", (labels.as_any(), weight_shape, given))?;
    Ok(k.extract::<usize>()?)
}
