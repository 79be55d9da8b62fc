//! `nclab.metrics`: both phases of the engine over features held in memory, as
//! `nclab analyze --json` computes them for a file (crates/nc-experiments/src/analysis.rs).

use crate::arrays::{self, FeatureSlice};
use crate::error::Result;
use crate::guard;
use nc_math::metrics::{compute_metrics_with, ClassMeans, Classifier, Convention, NcMetrics};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The metrics as a dict with exactly the keys and values of `nclab analyze --json`: the
/// JSON serialisation of [`NcMetrics`] (non-finite values, i.e. 0/0 classifier quantities,
/// and metrics without a classifier are `None`, as JSON writes them `null`).
pub fn to_dict<'py>(py: Python<'py>, metrics: &NcMetrics) -> Result<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let value = serde_json::to_value(metrics)
        .map_err(|e| crate::error::BindError::Panic(format!("serialising the metrics: {e}")))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(crate::error::value(
            "the metrics did not serialise to an object",
        ));
    };
    for (key, value) in fields {
        match value {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(int) => dict.set_item(key, int)?,
                None => dict.set_item(key, n.as_f64())?,
            },
            serde_json::Value::String(text) => dict.set_item(key, text)?,
            _ => dict.set_item(key, py.None())?,
        }
    }
    Ok(dict)
}

/// Runs both phases on one slice of features.
pub fn compute(
    features: FeatureSlice<'_>,
    labels: &[u32],
    dim: usize,
    k: usize,
    classifier: Option<&Classifier>,
    reference: Option<&ClassMeans>,
    convention: &Convention,
) -> Result<NcMetrics> {
    Ok(match features {
        FeatureSlice::F32(x) => {
            compute_metrics_with(x, labels, dim, k, classifier, reference, convention)?
        }
        FeatureSlice::F64(x) => {
            compute_metrics_with(x, labels, dim, k, classifier, reference, convention)?
        }
    })
}

/// The classifier of `weight`/`bias` (checked against d by nclab._arrays).
pub fn classifier(
    weight: Option<&Bound<'_, PyAny>>,
    bias: Option<&Bound<'_, PyAny>>,
    dim: usize,
) -> Result<Option<Classifier>> {
    match arrays::classifier(weight, bias, dim)? {
        None => Ok(None),
        Some((rows, w, b)) => Ok(Some(Classifier::new(rows, dim, w, b)?)),
    }
}

/// Every metric of docs/metrics.md for features in memory (see python/nclab/__init__.py
/// for the documentation users read).
#[pyfunction]
#[pyo3(signature = (features, labels, weight=None, bias=None, *, num_classes=None, means_from=None, convention="nclab"))]
// One parameter per keyword of the Python signature.
#[allow(clippy::too_many_arguments)]
pub fn metrics<'py>(
    py: Python<'py>,
    features: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    num_classes: Option<&Bound<'py, PyAny>>,
    means_from: Option<&Bound<'py, PyAny>>,
    convention: &str,
) -> Result<Bound<'py, PyDict>> {
    let convention: Convention = convention.parse()?;
    let features = arrays::features(features)?;
    let (n, d) = features.shape();
    let labels = arrays::labels(labels, n)?;
    let classifier = classifier(weight, bias, d)?;
    let k = arrays::num_classes(
        &labels,
        classifier.as_ref().map(Classifier::num_classes),
        num_classes,
    )?;
    let reference = match means_from {
        Some(m) => Some(ClassMeans::from_means(k, d, arrays::means(m, k, d)?)?),
        None => None,
    };
    let slice = features.slice()?;
    let ys = labels
        .as_slice()
        .map_err(|_| crate::error::value("labels are not contiguous"))?;
    let result = guard::compute(py, || {
        compute(slice, ys, d, k, classifier.as_ref(), reference.as_ref(), &convention)
    })?;
    to_dict(py, &result)
}
