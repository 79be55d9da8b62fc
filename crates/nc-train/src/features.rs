//! `save_features` (`--save-features`): `features_{train,test}.npz` with `features` (N x d
//! float32), `labels` (int64), `weight` (K x d float64), `bias` (K float64) and `indices`
//! (int64: each sample's index in its data set), written by `nc_data::save_feature_npz`
//! (atomically), so `nclab analyze` reads them with its default keys.
use nc_data::{FeatureExport, FloatSlice};

use crate::error::{Result, TrainError};
use crate::eval::SplitEval;
use crate::model::Net;
use crate::run_dir::RunDir;
use crate::source::Samples;

/// Writes `features_<split>.npz` for the evaluated split (needs `ev.features`).
pub fn save_features(
    dir: &RunDir,
    split: &str,
    s: &Samples,
    idx: &[usize],
    ev: &SplitEval,
    model: &Net,
) -> Result<()> {
    let Some(f) = &ev.features else { return Ok(()) };
    let n = idx.len();
    let d = f.len().checked_div(n).unwrap_or(0);
    let w = model.classifier_weight();
    let b = model.classifier_bias();
    let labels: Vec<u32> = idx.iter().map(|&i| s.labels[i]).collect();
    let indices: Vec<u64> = idx.iter().map(|&i| i as u64).collect();
    let export = FeatureExport {
        features: FloatSlice::F32(f),
        num_samples: n,
        dim: d,
        labels: &labels,
        weight: Some((&w, b.len())),
        bias: Some(&b),
        indices: Some(&indices),
    };
    let path = dir.features(split);
    nc_data::save_feature_npz(&path, &export).map_err(|e| TrainError::checkpoint(path, e))
}
