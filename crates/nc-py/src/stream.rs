//! The two phases of the engine for data fed in batches (`nclab.MeanAccumulator`,
//! `nclab.ScatterAccumulator`), mergeable across shards and picklable as the partial-state
//! bytes of crates/nc-data/src/partial_state.rs.

use crate::arrays::{self, FeatureSlice};
use crate::error::{value, BindError, Result};
use crate::guard;
use crate::metrics::{classifier, to_dict};
use crate::state::{decode_state, from_means_part, means_part, PlanId};
use nc_data::partial_state::PartialState;
use nc_math::metrics::{
    ClassMeans, Convention, MeanAccumulator, MetricsPlan, ScatterAccumulator, ScatterState,
};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

/// Checks that a batch has the accumulator's d.
fn check_dim(what: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(value(format!(
            "features have {got} columns, but this {what} was made for d = {expected}"
        )));
    }
    Ok(())
}

/// Phase 1: per-class counts and feature sums.
#[pyclass(name = "MeanAccumulator", module = "nclab._core")]
pub struct PyMeans {
    inner: MeanAccumulator,
}

impl PyMeans {
    fn part(&self) -> PartialState {
        PartialState::Means(means_part(&self.inner))
    }

    /// The class means (every class needs a sample).
    fn class_means(&self) -> Result<ClassMeans> {
        Ok(self.inner.clone().finish()?)
    }
}

/// Decodes `bytes` as a state of `phase`, naming the class to read the other phase with.
fn decode_phase(bytes: &[u8], phase: u32) -> Result<PartialState> {
    let state = decode_state(bytes)?;
    if state.phase() != phase {
        let reader = if state.phase() == 1 {
            "MeanAccumulator"
        } else {
            "ScatterAccumulator"
        };
        return Err(value(format!(
            "these bytes hold a phase-{} state: read them with {reader}.from_bytes",
            state.phase()
        )));
    }
    Ok(state)
}

/// The partial state of `other` (an accumulator of either phase, or its bytes), for merging.
fn other_state(other: &Bound<'_, PyAny>) -> Result<PartialState> {
    if let Ok(m) = other.cast::<PyMeans>() {
        return Ok(m.borrow().part());
    }
    if let Ok(s) = other.cast::<PyScatter>() {
        return Ok(s.borrow().part());
    }
    if let Ok(bytes) = other.extract::<&[u8]>() {
        return Ok(decode_state(bytes)?);
    }
    Err(BindError::Type(format!(
        "can merge a MeanAccumulator, a ScatterAccumulator or their bytes, not {}",
        other.get_type().name()?
    )))
}

#[pymethods]
impl PyMeans {
    #[new]
    fn new(num_classes: usize, dim: usize) -> Self {
        Self {
            inner: MeanAccumulator::new(num_classes, dim),
        }
    }

    /// Adds a batch (N x d features, N labels).
    fn add(
        &mut self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
    ) -> Result<()> {
        let features = arrays::features(features)?;
        let (n, d) = features.shape();
        check_dim("MeanAccumulator", d, self.inner.dim())?;
        let labels = arrays::labels(labels, n)?;
        let ys = labels
            .as_slice()
            .map_err(|_| value("labels are not contiguous"))?;
        let slice = features.slice()?;
        let inner = &mut self.inner;
        guard::compute(py, move || {
            match slice {
                FeatureSlice::F32(x) => inner.add_batch(x, ys)?,
                FeatureSlice::F64(x) => inner.add_batch(x, ys)?,
            }
            Ok(())
        })
    }

    /// Adds another shard's phase-1 sums (an accumulator or its bytes).
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> Result<()> {
        let theirs = other_state(other)?;
        let mine = slf.borrow().part();
        mine.check_mergeable(&theirs)?;
        let PartialState::Means(part) = theirs else {
            return Err(BindError::Panic(
                "check_mergeable compares phases, yet it did not".into(),
            ));
        };
        let theirs = from_means_part(part)?;
        Ok(slf.borrow_mut().inner.merge(&theirs)?)
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }

    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    #[getter]
    fn num_samples(&self) -> u64 {
        self.inner.rows_seen()
    }

    /// Samples per class so far (K, uint64).
    fn counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, self.inner.counts())
    }

    /// The class means mu_k (K x d, float64); every class needs a sample.
    fn means<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyAny>> {
        let means = self.class_means()?;
        let (k, d) = (means.num_classes(), means.dim());
        Ok(PyArray1::from_slice(py, means.means())
            .reshape([k, d])?
            .into_any())
    }

    /// Phase 2 for these means: a ScatterAccumulator to feed the same batches again, whose
    /// result has the formulas of `convention` (the text `nclab.metrics` takes).
    #[pyo3(signature = (weight=None, bias=None, *, means_from=None, convention="nclab"))]
    fn scatter(
        &self,
        py: Python<'_>,
        weight: Option<&Bound<'_, PyAny>>,
        bias: Option<&Bound<'_, PyAny>>,
        means_from: Option<&Bound<'_, PyAny>>,
        convention: &str,
    ) -> Result<PyScatter> {
        let convention: Convention = convention.parse()?;
        let means = self.class_means()?;
        let (k, d) = (means.num_classes(), means.dim());
        let clf = classifier(weight, bias, d)?;
        let reference = match means_from {
            Some(m) => Some(ClassMeans::from_means(k, d, arrays::means(m, k, d)?)?),
            None => None,
        };
        let id = PlanId::new(&means, clf.as_ref(), reference.as_ref(), &convention);
        let plan = guard::compute(py, || {
            Ok(MetricsPlan::with_convention(
                &means,
                clf.as_ref(),
                reference.as_ref(),
                &convention,
            )?)
        })?;
        Ok(PyScatter {
            id,
            body: Body::Live(plan.accumulator()),
        })
    }

    /// The partial-state bytes (docs/python.md).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.part().encode())
    }

    /// An accumulator from the bytes `to_bytes` gave.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> Result<Self> {
        guard::caught(|| {
            let PartialState::Means(part) = decode_phase(data, 1)? else {
                return Err(BindError::Panic(
                    "decode_phase checked the phase, yet it did not".into(),
                ));
            };
            Ok(Self {
                inner: from_means_part(part)?,
            })
        })
    }

    /// Pickled as `MeanAccumulator.from_bytes(<the partial-state bytes>)`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let from_bytes = py.get_type::<Self>().getattr("from_bytes")?;
        let bytes = slf.borrow().to_bytes(py);
        PyTuple::new(py, [from_bytes, PyTuple::new(py, [bytes])?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "MeanAccumulator(num_classes={}, dim={}, num_samples={})",
            self.inner.num_classes(),
            self.inner.dim(),
            self.inner.rows_seen()
        )
    }
}

/// Phase 2, with its plan ("live", made by `MeanAccumulator.scatter`), or read from bytes
/// ("detached": it merges, but cannot add batches or give metrics without the plan).
enum Body {
    Live(ScatterAccumulator),
    Detached(ScatterState),
}

#[pyclass(name = "ScatterAccumulator", module = "nclab._core")]
pub struct PyScatter {
    id: PlanId,
    body: Body,
}

impl PyScatter {
    fn state(&self) -> &ScatterState {
        match &self.body {
            Body::Live(acc) => acc.state(),
            Body::Detached(state) => state,
        }
    }

    fn part(&self) -> PartialState {
        PartialState::Scatter(self.id.scatter_part(self.state()))
    }

    fn live(&self, action: &str) -> Result<&ScatterAccumulator> {
        match &self.body {
            Body::Live(acc) => Ok(acc),
            Body::Detached(_) => Err(value(format!(
                "this phase-2 state was read from bytes and has no plan, so it cannot {action}: \
                 merge it into the ScatterAccumulator that MeanAccumulator.scatter(...) gave"
            ))),
        }
    }
}

#[pymethods]
impl PyScatter {
    /// Adds a batch of the same data phase 1 saw.
    fn add(
        &mut self,
        py: Python<'_>,
        features: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
    ) -> Result<()> {
        self.live("add batches")?;
        let features = arrays::features(features)?;
        let (n, d) = features.shape();
        check_dim("ScatterAccumulator", d, self.id.dim)?;
        let labels = arrays::labels(labels, n)?;
        let ys = labels
            .as_slice()
            .map_err(|_| value("labels are not contiguous"))?;
        let slice = features.slice()?;
        let Body::Live(acc) = &mut self.body else {
            return Err(BindError::Panic("checked by live(), yet it did not".into()));
        };
        guard::compute(py, move || {
            match slice {
                FeatureSlice::F32(x) => acc.add_batch(x, ys)?,
                FeatureSlice::F64(x) => acc.add_batch(x, ys)?,
            }
            Ok(())
        })
    }

    /// Adds another shard's phase-2 sums (an accumulator or its bytes) accumulated with the
    /// same convention, means, classifier and reference means.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> Result<()> {
        let theirs = other_state(other)?;
        let mine = slf.borrow().part();
        mine.check_mergeable(&theirs)?;
        let PartialState::Scatter(part) = theirs else {
            return Err(BindError::Panic(
                "check_mergeable compares phases, yet it did not".into(),
            ));
        };
        let (_, theirs) = PlanId::from_part(part)?;
        let mut me = slf.borrow_mut();
        match &mut me.body {
            Body::Live(acc) => acc.merge_state(&theirs)?,
            Body::Detached(state) => state.merge(&theirs)?,
        }
        Ok(())
    }

    /// Every metric of docs/metrics.md over the samples added (and merged) so far.
    fn result<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyDict>> {
        let acc = self.live("give metrics")?;
        let (plan, state) = (acc.plan(), acc.state().clone());
        let metrics = guard::compute(py, || {
            Ok(ScatterAccumulator::from_state(plan, state)?.finish()?)
        })?;
        to_dict(py, &metrics)
    }

    #[getter]
    fn num_classes(&self) -> usize {
        self.id.num_classes
    }

    #[getter]
    fn dim(&self) -> usize {
        self.id.dim
    }

    #[getter]
    fn num_samples(&self) -> u64 {
        self.state().rows_seen()
    }

    /// The metric convention of the sums and of `result()`, in its canonical text form.
    #[getter]
    fn convention(&self) -> String {
        self.id.convention.to_string()
    }

    /// Whether this accumulator has its plan (made by MeanAccumulator.scatter) rather than
    /// having been read from bytes.
    #[getter]
    fn attached(&self) -> bool {
        matches!(self.body, Body::Live(_))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.part().encode())
    }

    /// A detached phase-2 state from the bytes `to_bytes` gave.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> Result<Self> {
        guard::caught(|| {
            let PartialState::Scatter(part) = decode_phase(data, 2)? else {
                return Err(BindError::Panic(
                    "decode_phase checked the phase, yet it did not".into(),
                ));
            };
            let (id, state) = PlanId::from_part(part)?;
            Ok(Self {
                id,
                body: Body::Detached(state),
            })
        })
    }

    /// Pickled as `ScatterAccumulator.from_bytes(<the partial-state bytes>)`: it unpickles
    /// detached (see `merge`).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let from_bytes = py.get_type::<Self>().getattr("from_bytes")?;
        let bytes = slf.borrow().to_bytes(py);
        PyTuple::new(py, [from_bytes, PyTuple::new(py, [bytes])?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "ScatterAccumulator(num_classes={}, dim={}, num_samples={}, attached={}, convention='{}')",
            self.id.num_classes,
            self.id.dim,
            self.state().rows_seen(),
            self.attached(),
            self.id.convention
        )
    }
}

/// The metadata of partial-state bytes, as a dict of strings (docs/python.md).
#[pyfunction]
pub fn state_info<'py>(py: Python<'py>, data: &[u8]) -> Result<Bound<'py, PyDict>> {
    let state = guard::caught(|| Ok(decode_state(data)?))?;
    let (k, d) = state.shape();
    let dict = PyDict::new(py);
    dict.set_item("format", nc_data::partial_state::FORMAT)?;
    dict.set_item("version", nc_data::partial_state::VERSION)?;
    dict.set_item("phase", state.phase())?;
    dict.set_item("convention", state.convention())?;
    dict.set_item("num_classes", k)?;
    dict.set_item("dim", d)?;
    if let PartialState::Scatter(s) = &state {
        dict.set_item("rank", s.projected_sq.len())?;
        dict.set_item("means_sha256", &s.means_sha256)?;
        dict.set_item("classifier_sha256", &s.classifier_sha256)?;
        dict.set_item("reference_sha256", &s.reference_sha256)?;
        dict.set_item("num_samples", s.class_counts.iter().sum::<u64>())?;
    } else if let PartialState::Means(m) = &state {
        dict.set_item("num_samples", m.counts.iter().sum::<u64>())?;
    }
    Ok(dict)
}
