//! From a feature set in memory to every NC metric of docs/metrics.md: find K, take the
//! classifier and the NCC reference means, run both phases of the metrics engine on the
//! features in their stored precision (in place where they are mapped). Feature files, one
//! or several, go through [`crate::sharded`].

use crate::error::{Error, Result};
use nc_data::features::FeatureSet;
use nc_math::metrics::{
    compute_metrics_with, ClassMeans, Classifier, Convention, MeanAccumulator, NcMetrics,
};
use std::path::Path;

/// K: the rows of `weight` when the file has one, else the largest label + 1. Refused when
/// K exceeds the number of samples (every class needs one), before anything K-sized exists:
/// a stray huge label must not ask for gigabytes of class sums.
pub fn num_classes(set: &FeatureSet) -> Result<usize> {
    let k = match set.num_classes_weight {
        Some(k) => k,
        None => match set.labels.iter().max() {
            Some(&max) => max as usize + 1,
            None => return Err(Error::invalid(&set.path, "the file holds no samples")),
        },
    };
    if k > set.num_samples {
        let source = match set.num_classes_weight {
            Some(_) => "the classifier has".to_string(),
            None => format!("the largest label, {}, asks for", k - 1),
        };
        return Err(Error::invalid(
            &set.path,
            format!(
                "{source} {k} classes, but the file holds only {} samples (every class needs at least one)",
                set.num_samples
            ),
        ));
    }
    Ok(k)
}

pub(crate) fn in_file(path: &Path) -> impl FnOnce(nc_math::Error) -> Error + '_ {
    move |source| Error::Metrics {
        path: path.to_path_buf(),
        source,
    }
}

/// Evaluates `$body` with `$features` bound to the file's features as a slice of their
/// stored element type (f32, f64, or little-endian elements read in place from the file),
/// so the metrics run on the data as stored, without a converted copy.
macro_rules! with_stored_features {
    ($path:expr, $data:expr, |$features:ident| $body:expr) => {
        match $data {
            nc_data::features::FloatData::F32($features) => $body,
            nc_data::features::FloatData::F64($features) => $body,
            nc_data::features::FloatData::Mapped(mapped) => match mapped.dtype() {
                nc_data::DType::F32 => {
                    let $features = nc_math::metrics::LeF32::slice_from_bytes(mapped.bytes())
                        .ok_or_else(|| {
                            $crate::error::Error::invalid(
                                &$path,
                                "mapped float32 data of a partial element",
                            )
                        })?;
                    $body
                }
                _ => {
                    let $features = nc_math::metrics::LeF64::slice_from_bytes(mapped.bytes())
                        .ok_or_else(|| {
                            $crate::error::Error::invalid(
                                &$path,
                                "mapped float64 data of a partial element",
                            )
                        })?;
                    $body
                }
            },
        }
    };
}
pub(crate) use with_stored_features;

/// Phase 1 over a file's features: its class means, checked against K.
pub fn class_means_of(set: &FeatureSet, num_classes: usize) -> Result<ClassMeans> {
    let mut acc = MeanAccumulator::new(num_classes, set.dim);
    with_stored_features!(set.path, &set.features, |features| acc
        .add_batch(features, &set.labels))
    .map_err(in_file(&set.path))?;
    acc.finish().map_err(in_file(&set.path))
}

/// Both phases over the features of one file, in their stored precision; `reference`: the
/// class means of the NCC rule (K x d like the features).
pub fn analyze(
    set: &FeatureSet,
    reference: Option<&ClassMeans>,
    convention: &Convention,
) -> Result<NcMetrics> {
    let k = num_classes(set)?;
    let path = &set.path;
    let classifier = match &set.weight {
        Some(weight) => Some(
            Classifier::new(k, set.dim, weight.clone(), set.bias.clone()).map_err(in_file(path))?,
        ),
        None => None,
    };
    if let Some(reference) = reference {
        if reference.dim() != set.dim || reference.num_classes() != k {
            return Err(Error::invalid(
                path,
                format!(
                    "the reference means are {} classes x {} dims, expected {k} x {} like the features",
                    reference.num_classes(),
                    reference.dim(),
                    set.dim
                ),
            ));
        }
    }
    with_stored_features!(set.path, &set.features, |features| compute_metrics_with(
        features,
        &set.labels,
        set.dim,
        k,
        classifier.as_ref(),
        reference,
        convention
    ))
    .map_err(in_file(path))
}
