//! From a feature file to every NC metric of docs/metrics.md: read the file (features in
//! place where they are stored plainly), find K, take the classifier and the NCC reference
//! means, run both phases of the metrics engine on the features in their stored precision.

use crate::error::{Error, Result};
use nc_data::features::{load_feature_file, FeatureKeys, FeatureSet, FloatData};
use nc_data::DType;
use nc_math::metrics::{
    compute_metrics_with, ClassMeans, Classifier, Convention, LeF32, LeF64, MeanAccumulator,
    NcMetrics,
};
use std::path::{Path, PathBuf};

/// What to analyse and how to read it.
#[derive(Debug, Clone)]
pub struct AnalysisRequest {
    pub file: PathBuf,
    /// Array names; `weight` and `bias` are optional under their default names.
    pub keys: FeatureKeys,
    /// The weight / bias name was chosen by the user: the array must then exist (a typo must
    /// not quietly drop the classifier).
    pub weight_required: bool,
    pub bias_required: bool,
    /// A feature file (read with the same keys) whose class means the nearest-class-centre
    /// rule uses instead of the file's own, e.g. the training split's.
    pub means_from: Option<PathBuf>,
    /// The formulas (docs/metrics.md, "Conventions").
    pub convention: Convention,
}

impl AnalysisRequest {
    /// Reads the file(s) and computes every metric.
    pub fn run(&self) -> Result<NcMetrics> {
        let set = load_feature_file(&self.file, &self.keys)?;
        let asked = [
            (
                "weight_key",
                &self.keys.weight,
                self.weight_required,
                set.weight.is_some(),
            ),
            (
                "bias_key",
                &self.keys.bias,
                self.bias_required,
                set.bias.is_some(),
            ),
        ];
        for (field, key, required, found) in asked {
            if required && !found {
                return Err(Error::MissingRequestedArray {
                    path: self.file.clone(),
                    key: key.clone(),
                    field,
                });
            }
        }
        let reference = match &self.means_from {
            Some(path) => Some(class_means_of(
                &load_feature_file(path, &self.keys)?,
                num_classes(&set)?,
            )?),
            None => None,
        };
        analyze(&set, reference.as_ref(), &self.convention)
    }
}

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

fn in_file(path: &Path) -> impl FnOnce(nc_math::Error) -> Error + '_ {
    move |source| Error::Metrics {
        path: path.to_path_buf(),
        source,
    }
}

/// Evaluates `$body` with `$features` bound to the file's features as a slice of their
/// stored element type (f32, f64, or little-endian elements read in place from the file),
/// so the metrics run on the data as stored, without a converted copy.
macro_rules! with_stored_features {
    ($set:expr, |$features:ident| $body:expr) => {
        match &$set.features {
            FloatData::F32($features) => $body,
            FloatData::F64($features) => $body,
            FloatData::Mapped(mapped) => match mapped.dtype() {
                DType::F32 => {
                    let $features = LeF32::slice_from_bytes(mapped.bytes()).ok_or_else(|| {
                        Error::invalid(&$set.path, "mapped float32 data of a partial element")
                    })?;
                    $body
                }
                _ => {
                    let $features = LeF64::slice_from_bytes(mapped.bytes()).ok_or_else(|| {
                        Error::invalid(&$set.path, "mapped float64 data of a partial element")
                    })?;
                    $body
                }
            },
        }
    };
}

/// Phase 1 over a file's features: its class means, checked against K.
pub fn class_means_of(set: &FeatureSet, num_classes: usize) -> Result<ClassMeans> {
    let mut acc = MeanAccumulator::new(num_classes, set.dim);
    with_stored_features!(set, |features| acc.add_batch(features, &set.labels))
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
    with_stored_features!(set, |features| compute_metrics_with(
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

#[cfg(test)]
mod tests {
    use super::*;
    use nc_data::features::{save_feature_npz, FeatureExport, FloatSlice};

    fn write(path: &Path, labels: &[u32], weight: Option<(&[f64], usize)>) {
        let features: Vec<f32> = (0..labels.len() * 2).map(|i| i as f32).collect();
        let export = FeatureExport {
            features: FloatSlice::F32(&features),
            num_samples: labels.len(),
            dim: 2,
            labels,
            weight,
            bias: None,
            indices: None,
        };
        save_feature_npz(path, &export).unwrap();
    }

    #[test]
    fn more_classes_than_samples_are_refused_before_any_class_is_allocated() {
        let dir = std::env::temp_dir().join(format!("nc-exp-analysis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("huge_label.npz");
        // Two samples, one label 2^31 - 1: K x d class sums would be 32 GiB.
        write(&path, &[0, (1 << 31) - 1], None);
        let request = AnalysisRequest {
            file: path.clone(),
            keys: FeatureKeys::default(),
            weight_required: false,
            bias_required: false,
            means_from: None,
            convention: Convention::NCLAB,
        };
        let err = request.run().unwrap_err().to_string();
        assert!(
            err.contains("2147483647")
                && err.contains("2147483648 classes")
                && err.contains("only 2 samples"),
            "{err}"
        );
        let weight = vec![0.5; 3 * 2];
        write(&path, &[0, 1], Some((&weight, 3)));
        let err = request.run().unwrap_err().to_string();
        assert!(err.contains("the classifier has 3 classes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
