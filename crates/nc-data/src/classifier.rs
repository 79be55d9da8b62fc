//! A linear classifier (weight, optional bias) read from a checkpoint kept apart from the
//! features, as PyTorch users keep them: a `.pt`/`.pth` state dict ([`crate::torch`], where
//! nested `state_dict` containers and dotted names resolve), a `.safetensors` file or an
//! `.npz` archive.

use std::path::{Path, PathBuf};

use crate::array::{shape_string, NpyArray};
use crate::error::{DataError, Result};
use crate::features::ArraySource;
use crate::npz::{list_or_none, NpzReader};
use crate::safetensors::SafetensorsReader;
use crate::torch::TorchReader;

const CHECKPOINT_KINDS: &str = "a PyTorch .pt/.pth file, a .safetensors file or a .npz file";

/// A classifier read from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedClassifier {
    /// The checkpoint it was read from.
    pub path: PathBuf,
    /// K x d, row-major.
    pub weight: Vec<f64>,
    /// K.
    pub num_classes: usize,
    /// d.
    pub dim: usize,
    /// K biases, when the checkpoint has one under the bias name.
    pub bias: Option<Vec<f64>>,
}

/// Reads the weight `weight_key` (K x d, float; required) and the bias `bias_key` (K, float;
/// required when `bias_required`, else read when present) of the checkpoint `path`. `dim`,
/// when given, is the d the weight must have (the features' columns).
pub fn load_classifier(
    path: &Path,
    weight_key: &str,
    bias_key: &str,
    bias_required: bool,
    dim: Option<usize>,
) -> Result<LoadedClassifier> {
    let kind = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut source: Box<dyn ArraySource> = match kind.as_deref() {
        Some("pt" | "pth") => Box::new(TorchReader::open(path)?),
        Some("safetensors") => Box::new(SafetensorsReader::open(path)?),
        Some("npz") => Box::new(NpzReader::open(path)?),
        _ => {
            return Err(DataError::UnsupportedFileKind {
                path: path.to_path_buf(),
                expected: CHECKPOINT_KINDS,
            })
        }
    };
    let missing = |source: &dyn ArraySource, key: &str| DataError::MissingArray {
        path: path.to_path_buf(),
        key: key.to_string(),
        available: list_or_none(&source.names()),
    };
    if !source.contains(weight_key) {
        return Err(missing(source.as_ref(), weight_key));
    }
    let weight = source.read(weight_key)?;
    let (num_classes, cols) = match weight.shape[..] {
        [k, d] if k > 0 && d > 0 && dim.is_none_or(|want| want == d) => (k, d),
        _ => {
            let want = dim.map_or("d".to_string(), |d| d.to_string());
            return Err(DataError::array(
                path,
                weight_key,
                format!(
                    "has shape {}, expected 2-D (K classes x {want}){}",
                    shape_string(&weight.shape),
                    dim.map_or(String::new(), |d| format!(
                        " with d = {d} columns to match the features"
                    ))
                ),
            ));
        }
    };
    let weight = floats(path, weight_key, &weight, "the classifier weight")?;
    let bias = if source.contains(bias_key) {
        let b = source.read(bias_key)?;
        if b.shape[..] != [num_classes] {
            return Err(DataError::array(
                path,
                bias_key,
                format!(
                    "has shape {}, expected 1-D with {num_classes} entries (one per row of '{weight_key}')",
                    shape_string(&b.shape)
                ),
            ));
        }
        Some(floats(path, bias_key, &b, "the classifier bias")?)
    } else if bias_required {
        return Err(missing(source.as_ref(), bias_key));
    } else {
        None
    };
    Ok(LoadedClassifier {
        path: path.to_path_buf(),
        weight,
        num_classes,
        dim: cols,
        bias,
    })
}

fn floats(path: &Path, key: &str, array: &NpyArray, role: &str) -> Result<Vec<f64>> {
    if !array.dtype().is_float() {
        return Err(DataError::array(
            path,
            key,
            format!(
                "has dtype {}, expected a float dtype ({role})",
                array.dtype_name()
            ),
        ));
    }
    Ok(array.to_f64_vec())
}
