//! Every NC metric over a feature set split across several files (shards), as if they were
//! one file: both phases of the metrics engine stream over the shards, in parallel, and
//! their sums merge (docs/metrics.md, "Sharded feature sets"). The same steps run one shard
//! at a time in separate processes or machines through partial-state files
//! ([`crate::partial`]): phase 1 per shard, a merge of the means, phase 2 per shard with the
//! merged means, a final merge that gives the metrics.
//!
//! Memory: features stored plainly are read in place from the mapped files (file pages,
//! which the kernel can drop, not the process's own memory); compressed `.npz` members are
//! inflated in batches of about [`BATCH_BYTES`]; the engine adds O(K d) per shard in flight.
//! Only features that can be neither mapped nor streamed (Fortran order, PyTorch files with
//! compressed records) are read whole.

use crate::analysis::{class_means_of, in_file, with_stored_features};
use crate::error::{Error, Result};
use crate::partial::{from_means_part, is_state_file, means_part, read_state_file, PlanId};
use nc_data::classifier::LoadedClassifier;
use nc_data::features::{load_feature_file, open_feature_shard, FeatureKeys, FeatureShard};
use nc_data::partial_state::{MeansPart, PartialState, ScatterPart};
use nc_data::{DType, ShardFeatures};
use nc_math::metrics::{
    ClassMeans, Classifier, Convention, Feature, LeF32, LeF64, MeanAccumulator, MetricsPlan,
    NcMetrics, ScatterAccumulator, ScatterState,
};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The bytes of features one batch of a compressed member holds.
pub const BATCH_BYTES: usize = 64 << 20;

/// What to analyse: the shards and how to read them.
#[derive(Debug, Clone)]
pub struct ShardRequest {
    /// The shards, in order (the order changes only the rounding of the sums).
    pub files: Vec<PathBuf>,
    /// Array names; `weight` and `bias` are optional under their default names.
    pub keys: FeatureKeys,
    /// The weight / bias name was chosen by the user: some shard must hold it.
    pub weight_required: bool,
    pub bias_required: bool,
    /// K, for shards whose labels do not reach the last class; else the classifier's rows,
    /// else the largest label + 1 over all shards.
    pub num_classes: Option<usize>,
    /// A classifier read elsewhere (`--classifier-from`), replacing the shards' own.
    pub classifier: Option<LoadedClassifier>,
    /// The class means of the NCC rule: a feature file, or a phase-1 partial state (the
    /// merged means of another sharded split).
    pub means_from: Option<PathBuf>,
    pub convention: Convention,
}

/// A feature set's shards, opened: labels and classifier read and checked, features mapped
/// or left compressed.
pub struct Shards {
    shards: Vec<FeatureShard>,
    num_classes: usize,
    dim: usize,
    classifier: Option<Classifier>,
    /// Where the classifier came from, for messages.
    classifier_source: Option<PathBuf>,
    /// The bytes of features per batch of a compressed member.
    batch_bytes: usize,
}

/// The same weight and bias, bit for bit.
fn same_classifier(a: &FeatureShard, b: &FeatureShard) -> bool {
    let bits = |v: &Option<Vec<f64>>| {
        v.as_ref()
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    bits(&a.weight) == bits(&b.weight) && bits(&a.bias) == bits(&b.bias)
}

impl Shards {
    /// Opens every shard of the request and checks that they fit together: the same d, one
    /// classifier (identical in every shard that holds one), labels below K.
    pub fn open(request: &ShardRequest) -> Result<Self> {
        if request.files.is_empty() {
            return Err(Error::setting("files", "no feature files given"));
        }
        let shards = request
            .files
            .par_iter()
            .map(|path| open_feature_shard(path, &request.keys).map_err(Error::from))
            .collect::<Result<Vec<_>>>()?;
        let first = &shards[0];
        let dim = first.dim;
        for shard in &shards[1..] {
            if shard.dim != dim {
                return Err(Error::invalid(
                    &shard.path,
                    format!(
                        "'{}' has {} columns, but {} has {dim}: every shard must have the same d",
                        request.keys.features,
                        shard.dim,
                        first.path.display()
                    ),
                ));
            }
        }

        // The classifier: from --classifier-from, else from the first shard holding one, and
        // identical wherever another shard holds one.
        let mut held: Option<&FeatureShard> = None;
        for shard in shards.iter().filter(|s| s.weight.is_some()) {
            match held {
                None => held = Some(shard),
                Some(owner) => {
                    if request.classifier.is_none() && !same_classifier(owner, shard) {
                        return Err(Error::invalid(
                            &shard.path,
                            format!(
                                "its classifier ('{}'/'{}') differs from that of {}: shards of one feature set must hold the same classifier (or pass --classifier-from)",
                                request.keys.weight,
                                request.keys.bias,
                                owner.path.display()
                            ),
                        ));
                    }
                }
            }
        }
        if request.classifier.is_none() {
            let checks = [
                (
                    "weight_key",
                    &request.keys.weight,
                    request.weight_required,
                    held.is_some(),
                ),
                (
                    "bias_key",
                    &request.keys.bias,
                    request.bias_required,
                    held.is_some_and(|owner| owner.bias.is_some()),
                ),
            ];
            for (field, key, required, found) in checks {
                if required && !found {
                    return Err(Error::MissingRequestedArray {
                        path: first.path.clone(),
                        key: key.clone(),
                        field,
                    });
                }
            }
        }
        if let Some(c) = &request.classifier {
            if c.dim != dim {
                return Err(Error::invalid(
                    &c.path,
                    format!(
                        "the classifier has {} columns, but the features of {} have d = {dim}",
                        c.dim,
                        first.path.display()
                    ),
                ));
            }
        }
        let (weight, bias, rows, source) = match (&request.classifier, held) {
            (Some(c), _) => (
                Some(c.weight.clone()),
                c.bias.clone(),
                Some(c.num_classes),
                Some(c.path.clone()),
            ),
            (None, Some(owner)) => (
                owner.weight.clone(),
                owner.bias.clone(),
                owner.num_classes_weight,
                Some(owner.path.clone()),
            ),
            (None, None) => (None, None, None, None),
        };

        let total: usize = shards.iter().map(|s| s.num_samples).sum();
        let largest_label = shards
            .iter()
            .filter_map(|s| s.labels.iter().max().map(|&l| (l, &s.path)))
            .max_by_key(|(l, _)| *l);
        let num_classes = match (request.num_classes, rows) {
            (Some(k), Some(rows)) if k != rows => {
                return Err(Error::setting(
                    "num_classes",
                    format!(
                        "{k} classes, but the classifier of {} has {rows} rows",
                        source.as_deref().unwrap_or(Path::new("?")).display()
                    ),
                ))
            }
            (Some(k), _) => k,
            (None, Some(rows)) => rows,
            (None, None) => match largest_label {
                Some((label, _)) => label as usize + 1,
                None => return Err(Error::invalid(&first.path, "the shards hold no samples")),
            },
        };
        for shard in &shards {
            if let Some(row) = shard.labels.iter().position(|&y| y as usize >= num_classes) {
                return Err(in_file(&shard.path)(nc_math::Error::LabelOutOfRange {
                    label: u64::from(shard.labels[row]),
                    row,
                    num_classes,
                }));
            }
        }
        // Every class needs a sample: refuse before anything K-sized exists, so a stray huge
        // label cannot ask for gigabytes of class sums. K set by the user or by a classifier
        // (already in memory) may exceed the samples of one shard of a larger set.
        if let (None, None, Some((label, path))) = (request.num_classes, rows, largest_label) {
            if num_classes > total {
                let held = if shards.len() == 1 {
                    "the file holds".to_string()
                } else {
                    format!("the {} files hold", shards.len())
                };
                return Err(Error::setting(
                    "num_classes",
                    format!(
                        "{}: the largest label, {label}, asks for {num_classes} classes, but {held} only {total} samples (every class needs at least one); for a shard of a larger set, give K",
                        path.display()
                    ),
                ));
            }
        }
        check_memory(&first.path, num_classes, dim, request.files.len())?;
        let classifier = match weight {
            Some(weight) => Some(
                Classifier::new(num_classes, dim, weight, bias)
                    .map_err(in_file(source.as_deref().unwrap_or(&first.path)))?,
            ),
            None => None,
        };
        Ok(Self {
            shards,
            num_classes,
            dim,
            classifier,
            classifier_source: source,
            batch_bytes: BATCH_BYTES,
        })
    }

    /// Batches of compressed members of about `bytes` bytes (at least one row) instead of
    /// [`BATCH_BYTES`]: less memory, more calls into the engine.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn num_samples(&self) -> usize {
        self.shards.iter().map(|s| s.num_samples).sum()
    }

    pub fn classifier(&self) -> Option<&Classifier> {
        self.classifier.as_ref()
    }

    pub fn classifier_source(&self) -> Option<&Path> {
        self.classifier_source.as_deref()
    }

    /// Phase 1 over every shard (in parallel), merged in shard order.
    pub fn means(&self) -> Result<MeanAccumulator> {
        let (k, d) = (self.num_classes, self.dim);
        let parts = self
            .shards
            .par_iter()
            .map(|shard| {
                let mut acc = MeanAccumulator::new(k, d);
                visit(shard, self.batch_bytes, &mut acc)?;
                Ok(acc)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut total = MeanAccumulator::new(k, d);
        for part in &parts {
            total.merge(part)?;
        }
        Ok(total)
    }

    /// Phase 2 over every shard (in parallel) with `plan`, merged in shard order.
    pub fn scatter(&self, plan: &MetricsPlan) -> Result<ScatterState> {
        let parts = self
            .shards
            .par_iter()
            .map(|shard| {
                let mut acc = plan.accumulator();
                visit(shard, self.batch_bytes, &mut acc)?;
                Ok(acc.into_state())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut total = plan.accumulator();
        for part in &parts {
            total.merge_state(part)?;
        }
        Ok(total.into_state())
    }

    /// The NCC reference means of the request, checked against these shards' K and d.
    pub fn reference(&self, request: &ShardRequest) -> Result<Option<ClassMeans>> {
        let Some(path) = &request.means_from else {
            return Ok(None);
        };
        let means = reference_means(path, &request.keys, self.num_classes)?;
        if (means.num_classes(), means.dim()) != (self.num_classes, self.dim) {
            return Err(Error::invalid(
                path,
                format!(
                    "the reference means are {} classes x {} dims, expected {} x {} like the features",
                    means.num_classes(),
                    means.dim(),
                    self.num_classes,
                    self.dim
                ),
            ));
        }
        Ok(Some(means))
    }

    /// Phase 2 with the given phase-1 means (e.g. merged from other processes), checked
    /// against these shards, as a partial state.
    pub fn scatter_part(
        &self,
        means: &ClassMeans,
        reference: Option<&ClassMeans>,
        convention: &Convention,
    ) -> Result<ScatterPart> {
        if (means.num_classes(), means.dim()) != (self.num_classes, self.dim) {
            return Err(Error::setting(
                "means",
                format!(
                    "the phase-1 means are K={}, d={}, but the shards have K={}, d={}",
                    means.num_classes(),
                    means.dim(),
                    self.num_classes,
                    self.dim
                ),
            ));
        }
        let plan = MetricsPlan::with_convention(means, self.classifier(), reference, convention)?;
        let state = self.scatter(&plan)?;
        let id = PlanId::new(means, self.classifier(), reference, convention);
        Ok(id.scatter_part(&state))
    }
}

/// Refuses a set whose engine state would exceed the memory ceiling
/// (`nc_data::limits`), before any of it is allocated: per shard in flight a K x d table of
/// sums and one batch, and the plan's K x d matrices (means, classifier, functionals, per-
/// thread partial sums), counted generously.
fn check_memory(path: &Path, num_classes: usize, dim: usize, num_shards: usize) -> Result<()> {
    let threads = rayon::current_num_threads().min(num_shards.max(1)) as u64;
    let table = (num_classes as u64)
        .saturating_mul(dim as u64)
        .saturating_mul(8);
    let batch = (BATCH_BYTES as u64).max((dim as u64).saturating_mul(8));
    let workers = 2 * rayon::current_num_threads() as u64;
    let bytes = table
        .saturating_mul(6 + workers + threads)
        .saturating_add(threads.saturating_mul(batch));
    let limit = nc_data::limits::max_memory();
    if bytes > limit {
        return Err(nc_data::DataError::TooLarge {
            path: path.to_path_buf(),
            what: format!(
                "the metrics of K = {num_classes} classes in d = {dim} dimensions (the engine's K x d tables and one batch per shard in flight)"
            ),
            bytes,
            limit,
        }
        .into());
    }
    Ok(())
}

/// What both phases' accumulators do with a batch.
trait Sink {
    fn add<T: Feature>(&mut self, features: &[T], labels: &[u32]) -> nc_math::Result<()>;
}

impl Sink for MeanAccumulator {
    fn add<T: Feature>(&mut self, features: &[T], labels: &[u32]) -> nc_math::Result<()> {
        self.add_batch(features, labels)
    }
}

impl Sink for ScatterAccumulator {
    fn add<T: Feature>(&mut self, features: &[T], labels: &[u32]) -> nc_math::Result<()> {
        self.add_batch(features, labels)
    }
}

/// Feeds every row of `shard` to `sink`: held features in one batch, compressed ones in
/// batches of about `batch_bytes`.
fn visit<S: Sink>(shard: &FeatureShard, batch_bytes: usize, sink: &mut S) -> Result<()> {
    match &shard.features {
        ShardFeatures::Held(data) => with_stored_features!(shard.path, data, |features| sink
            .add(features, &shard.labels))
        .map_err(in_file(&shard.path)),
        ShardFeatures::Deflated(deflated) => {
            let dtype = deflated.dtype();
            let row_bytes = (shard.dim * dtype.size()).max(1);
            let mut row = 0;
            deflated.for_each_batch(batch_bytes / row_bytes, |bytes, rows| {
                let labels = &shard.labels[row..row + rows];
                let added = match dtype {
                    DType::F32 => LeF32::slice_from_bytes(bytes).map(|f| sink.add(f, labels)),
                    _ => LeF64::slice_from_bytes(bytes).map(|f| sink.add(f, labels)),
                };
                row += rows;
                match added {
                    Some(result) => result.map_err(|e| nc_data::DataError::InvalidArray {
                        path: shard.path.clone(),
                        key: "features".into(),
                        problem: e.to_string(),
                    }),
                    None => Err(nc_data::DataError::InvalidArray {
                        path: shard.path.clone(),
                        key: "features".into(),
                        problem: "a batch of a partial element".into(),
                    }),
                }
            })?;
            Ok(())
        }
    }
}

/// The class means of `path` for the NCC rule: a phase-1 partial state (merged means of
/// another split), or a feature file read with `keys`.
pub fn reference_means(path: &Path, keys: &FeatureKeys, num_classes: usize) -> Result<ClassMeans> {
    if is_state_file(path) {
        return match read_state_file(path)? {
            PartialState::Means(part) => from_means_part(part)
                .and_then(MeanAccumulator::finish)
                .map_err(in_file(path)),
            PartialState::Scatter(_) => Err(Error::invalid(
                path,
                "is a phase-2 (scatter) state; the NCC reference means come from a phase-1 (means) state or a feature file",
            )),
        };
    }
    class_means_of(&load_feature_file(path, keys)?, num_classes)
}

/// Every metric over the request's shards, both phases streaming over them.
pub fn analyze_shards(request: &ShardRequest) -> Result<NcMetrics> {
    let shards = Shards::open(request)?;
    let reference = shards.reference(request)?;
    let first = &request.files[0];
    let means = shards.means()?.finish().map_err(in_file(first))?;
    let plan = MetricsPlan::with_convention(
        &means,
        shards.classifier(),
        reference.as_ref(),
        &request.convention,
    )
    .map_err(in_file(first))?;
    let state = shards.scatter(&plan)?;
    ScatterAccumulator::from_state(&plan, state)
        .and_then(ScatterAccumulator::finish)
        .map_err(in_file(first))
}

/// The phase-1 partial state of the request's shards.
pub fn means_state(request: &ShardRequest) -> Result<MeansPart> {
    let shards = Shards::open(request)?;
    Ok(means_part(&shards.means()?))
}

/// Several partial states merged: phase 1 gives the summed means state; phase 2 the summed
/// scatter state and the plan it belongs to.
pub enum Merged {
    Means(MeanAccumulator),
    Scatter { id: PlanId, state: ScatterState },
}

/// Merges partial-state files: they must all be of one phase, K, d, and (phase 2) one
/// convention and plan (means, classifier and reference hashes); the message says which file
/// differs and how.
pub fn merge_state_files(paths: &[PathBuf]) -> Result<Merged> {
    let Some((first_path, rest)) = paths.split_first() else {
        return Err(Error::setting("states", "no partial-state files given"));
    };
    let first = read_state_file(first_path)?;
    let mut merged = match first.clone() {
        PartialState::Means(part) => {
            Merged::Means(from_means_part(part).map_err(in_file(first_path))?)
        }
        PartialState::Scatter(part) => {
            let (id, state) =
                PlanId::from_part(part).map_err(|e| Error::invalid(first_path, e.to_string()))?;
            Merged::Scatter { id, state }
        }
    };
    for path in rest {
        let other = read_state_file(path)?;
        first.check_mergeable(&other).map_err(|e| {
            let reason = match e {
                nc_data::DataError::InvalidPartialState { reason } => reason,
                other => other.to_string(),
            };
            Error::invalid(
                path,
                format!("{reason} (the first state is {})", first_path.display()),
            )
        })?;
        match (&mut merged, other) {
            (Merged::Means(acc), PartialState::Means(part)) => {
                acc.merge(&from_means_part(part).map_err(in_file(path))?)
                    .map_err(in_file(path))?;
            }
            (Merged::Scatter { state, .. }, PartialState::Scatter(part)) => {
                let (_, other) =
                    PlanId::from_part(part).map_err(|e| Error::invalid(path, e.to_string()))?;
                state.merge(&other).map_err(in_file(path))?;
            }
            _ => {
                return Err(Error::invalid(
                    path,
                    format!("its phase differs from that of {}", first_path.display()),
                ))
            }
        }
    }
    Ok(merged)
}

/// The metrics of a merged phase-2 state, given the phase-1 means, classifier and NCC
/// reference means it was accumulated with (each checked against the state's hashes);
/// `source` names the states in messages.
pub fn finish_scatter(
    source: &Path,
    id: &PlanId,
    state: ScatterState,
    means: &ClassMeans,
    classifier: Option<&Classifier>,
    reference: Option<&ClassMeans>,
) -> Result<NcMetrics> {
    let expected = PlanId::new(means, classifier, reference, &id.convention);
    id.check_matches(&expected).map_err(|why| {
        Error::invalid(
            source,
            format!("the phase-2 states do not fit the means, classifier and reference means given: {why}"),
        )
    })?;
    let plan = MetricsPlan::with_convention(means, classifier, reference, &id.convention)?;
    Ok(ScatterAccumulator::from_state(&plan, state)?.finish()?)
}

/// The finished class means of a phase-1 state file.
pub fn means_of_state_file(path: &Path) -> Result<ClassMeans> {
    match read_state_file(path)? {
        PartialState::Means(part) => from_means_part(part)
            .and_then(MeanAccumulator::finish)
            .map_err(in_file(path)),
        PartialState::Scatter(_) => Err(Error::invalid(
            path,
            "is a phase-2 (scatter) state, expected the merged phase-1 (means) state",
        )),
    }
}
