//! `save_features` (`--save-features`): `features_{train,test}.npz` with `features` (N x d
//! float32), `labels` (int64), `weight` (K x d float64), `bias` (K float64) and `indices`
//! (int64: each sample's index in its data set), written by `nc_data::save_feature_npz`
//! (atomically), so `nclab analyze` reads them with its default keys. A run watching layers
//! (`nc_layers`) adds `layer{i}_features` (N x d_i float32) for every watched layer i after
//! those arrays (the last layer's equal `features`).
use nc_data::{ArraySlice, ArrayView, FeatureExport, FloatSlice};

use crate::error::{Result, TrainError};
use crate::eval::SplitEval;
use crate::model::Net;
use crate::run_dir::{final_tensors, RunDir};
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
    let path = dir.features(split);
    if ev.layers.is_empty() {
        let export = FeatureExport {
            features: FloatSlice::F32(f),
            num_samples: n,
            dim: d,
            labels: &labels,
            weight: Some((&w, b.len())),
            bias: Some(&b),
            indices: Some(&indices),
        };
        return nc_data::save_feature_npz(&path, &export)
            .map_err(|e| TrainError::checkpoint(path, e));
    }
    // The same arrays as nc_data's feature export, then one per watched layer.
    let k = b.len();
    let labels: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    let indices: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    let names: Vec<String> = ev
        .layers
        .iter()
        .map(|l| final_tensors::layer_features(l.layer.index))
        .collect();
    let shapes: Vec<[usize; 2]> = ev.layers.iter().map(|l| [n, l.layer.dim]).collect();
    let (fshape, wshape, nshape, kshape) = ([n, d], [k, d], [n], [k]);
    let mut arrays: Vec<(&str, ArrayView<'_>)> = vec![
        ("features", view(&fshape, ArraySlice::F32(f))),
        ("labels", view(&nshape, ArraySlice::I64(&labels))),
        ("weight", view(&wshape, ArraySlice::F64(&w))),
        ("bias", view(&kshape, ArraySlice::F64(&b))),
        (
            nc_data::features::INDICES_KEY,
            view(&nshape, ArraySlice::I64(&indices)),
        ),
    ];
    for ((l, name), shape) in ev.layers.iter().zip(&names).zip(&shapes) {
        // The last layer's features are the split's own.
        let data = l.features.as_deref().unwrap_or(f);
        arrays.push((name, view(shape, ArraySlice::F32(data))));
    }
    nc_data::npz::write_npz(&path, &arrays).map_err(|e| TrainError::checkpoint(path, e))
}

fn view<'a>(shape: &'a [usize], data: ArraySlice<'a>) -> ArrayView<'a> {
    ArrayView { shape, data }
}
