//! Feature files: the last-layer features of a model, their labels and (optionally) the
//! classifier, as exported by nclab's training code or by any PyTorch/NumPy script.
//!
//! A feature file is a `.npz` archive, a `.safetensors` file, a PyTorch `.pt`/`.pth` file
//! ([`crate::torch`]) or a directory of `<key>.npy` files, holding (array names configurable
//! through [`FeatureKeys`]):
//!
//! | key        | shape   | dtype                                   | required |
//! |------------|---------|-----------------------------------------|----------|
//! | `features` | (N, d)  | float32 or float64 (kept as stored)     | yes      |
//! | `labels`   | (N,)    | any integer type, values >= 0           | yes      |
//! | `weight`   | (K, d)  | float32 or float64                      | no       |
//! | `bias`     | (K,)    | float32 or float64; needs `weight`      | no       |
//! | `indices`  | (N,)    | any integer type, values >= 0           | no       |
//!
//! `indices` (always under that name) are the samples' positions in the original data set.
//!
//! Features stored plainly (a `.npy` file, an uncompressed `.npz` member as `np.savez` writes
//! it, any float `.safetensors` tensor) are read in place from the memory-mapped file
//! ([`FloatData::Mapped`], see [`crate::mapped`]); compressed or Fortran-order ones are copied.
//! [`open_feature_shard`] leaves compressed `.npz` features in the archive instead, to be
//! inflated in row batches as they are visited ([`ShardFeatures::Deflated`]).
//! The loader checks shapes and types only; label range against K, NaN/Inf and empty classes
//! are the metrics crate's checks.

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

use crate::array::{shape_string, ArrayData, ArraySlice, ArrayView, NpyArray};
use crate::error::{DataError, Result};
use crate::mapped::MappedFloats;
use crate::npz::{list_or_none, DeflatedFloats, NpzReader};
use crate::safetensors::SafetensorsReader;
use crate::torch::TorchReader;

/// Name of the optional array of original sample indices.
pub const INDICES_KEY: &str = "indices";

/// What a feature file may be, for messages.
const FEATURE_FILE_KINDS: &str =
    "a .npz file, a .safetensors file, a PyTorch .pt/.pth file, or a directory of <key>.npy files";

/// Names of the arrays in a feature file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureKeys {
    pub features: String,
    pub labels: String,
    pub weight: String,
    pub bias: String,
}

impl Default for FeatureKeys {
    fn default() -> Self {
        FeatureKeys {
            features: "features".to_string(),
            labels: "labels".to_string(),
            weight: "weight".to_string(),
            bias: "bias".to_string(),
        }
    }
}

/// Floating-point data kept in the precision it was stored in.
#[derive(Clone, Debug)]
pub enum FloatData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// float32 or float64 elements read in place from a memory-mapped file.
    Mapped(MappedFloats),
}

/// Equal when the precision and every element are equal, however the data are held.
impl PartialEq for FloatData {
    fn eq(&self, other: &Self) -> bool {
        self.dtype_name() == other.dtype_name()
            && self.len() == other.len()
            && (0..self.len()).all(|i| self.get(i) == other.get(i))
    }
}

/// Borrowed floating-point data.
#[derive(Clone, Copy, Debug)]
pub enum FloatSlice<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    Mapped(&'a MappedFloats),
}

impl FloatData {
    pub fn len(&self) -> usize {
        match self {
            FloatData::F32(v) => v.len(),
            FloatData::F64(v) => v.len(),
            FloatData::Mapped(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `float32` or `float64`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            FloatData::F32(_) => "float32",
            FloatData::F64(_) => "float64",
            FloatData::Mapped(m) => m.dtype().name(),
        }
    }

    /// Element `i` as f64.
    pub fn get(&self, i: usize) -> Option<f64> {
        match self {
            FloatData::F32(v) => v.get(i).map(|&x| f64::from(x)),
            FloatData::F64(v) => v.get(i).copied(),
            FloatData::Mapped(m) => m.get(i),
        }
    }

    pub fn as_slice(&self) -> FloatSlice<'_> {
        match self {
            FloatData::F32(v) => FloatSlice::F32(v),
            FloatData::F64(v) => FloatSlice::F64(v),
            FloatData::Mapped(m) => FloatSlice::Mapped(m),
        }
    }

    /// A copy converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.range_f64(0..self.len())
    }

    /// Elements `range` as f64. Panics if the range is out of bounds.
    pub fn range_f64(&self, range: std::ops::Range<usize>) -> Vec<f64> {
        match self {
            FloatData::F32(v) => v[range].iter().map(|&x| f64::from(x)).collect(),
            FloatData::F64(v) => v[range].to_vec(),
            FloatData::Mapped(m) => m.to_f64_range(range),
        }
    }
}

impl FloatSlice<'_> {
    pub fn len(&self) -> usize {
        match self {
            FloatSlice::F32(v) => v.len(),
            FloatSlice::F64(v) => v.len(),
            FloatSlice::Mapped(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The features of a feature file opened as one shard of a larger set
/// ([`open_feature_shard`]): held (in memory or mapped in place) like [`FloatData`], or a
/// compressed `.npz` member to be inflated in row batches as it is visited.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardFeatures {
    Held(FloatData),
    Deflated(DeflatedFloats),
}

impl ShardFeatures {
    /// `float32` or `float64`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            ShardFeatures::Held(data) => data.dtype_name(),
            ShardFeatures::Deflated(d) => d.dtype().name(),
        }
    }
}

/// A feature file opened for streaming: everything but compressed features read.
pub type FeatureShard = FeatureSet<ShardFeatures>;

/// The contents of a feature file, validated. `F` holds the features: [`FloatData`] (read
/// or mapped whole, from [`load_feature_file`]) or [`ShardFeatures`] (compressed members
/// left to be streamed, from [`open_feature_shard`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureSet<F = FloatData> {
    /// The file or directory it was read from.
    pub path: PathBuf,
    /// N, the number of rows of `features`.
    pub num_samples: usize,
    /// d, the number of columns of `features`.
    pub dim: usize,
    /// N x d, row-major, in the file's precision.
    pub features: F,
    /// N labels.
    pub labels: Vec<u32>,
    /// K x d classifier, row-major, if the file has one.
    pub weight: Option<Vec<f64>>,
    /// K, the number of rows of `weight`.
    pub num_classes_weight: Option<usize>,
    /// K biases (only with `weight`).
    pub bias: Option<Vec<f64>>,
    /// N original sample indices, if the file has them.
    pub indices: Option<Vec<u64>>,
}

impl FeatureSet {
    /// Row `i` of the features as f64. Panics if `i >= num_samples`.
    pub fn row_f64(&self, i: usize) -> Vec<f64> {
        self.features.range_f64(i * self.dim..(i + 1) * self.dim)
    }

    /// A borrowed view for [`save_feature_npz`] / [`save_feature_safetensors`].
    pub fn as_export(&self) -> FeatureExport<'_> {
        FeatureExport {
            features: self.features.as_slice(),
            num_samples: self.num_samples,
            dim: self.dim,
            labels: &self.labels,
            weight: match (&self.weight, self.num_classes_weight) {
                (Some(w), Some(k)) => Some((w.as_slice(), k)),
                _ => None,
            },
            bias: self.bias.as_deref(),
            indices: self.indices.as_deref(),
        }
    }
}

/// A source of named arrays: an archive, a safetensors file or a directory of `.npy` files.
pub(crate) trait ArraySource {
    fn names(&self) -> Vec<String>;
    fn contains(&self, key: &str) -> bool;
    fn read(&mut self, key: &str) -> Result<NpyArray>;
    /// The float array `key` in place, when it is stored so that it can be (shape, view);
    /// `Ok(None)` otherwise, including when it is missing.
    fn map_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, MappedFloats)>>;
    /// The float array `key` left compressed, to be streamed; only `.npz` members can be.
    fn deflated_floats(&mut self, _key: &str) -> Result<Option<(Vec<usize>, DeflatedFloats)>> {
        Ok(None)
    }
}

impl ArraySource for NpzReader {
    fn names(&self) -> Vec<String> {
        NpzReader::names(self).to_vec()
    }
    fn contains(&self, key: &str) -> bool {
        NpzReader::contains(self, key)
    }
    fn read(&mut self, key: &str) -> Result<NpyArray> {
        NpzReader::read(self, key)
    }
    fn map_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        NpzReader::map_floats(self, key)
    }
    fn deflated_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, DeflatedFloats)>> {
        NpzReader::deflated_floats(self, key)
    }
}

impl ArraySource for SafetensorsReader {
    fn names(&self) -> Vec<String> {
        SafetensorsReader::names(self).to_vec()
    }
    fn contains(&self, key: &str) -> bool {
        SafetensorsReader::contains(self, key)
    }
    fn read(&mut self, key: &str) -> Result<NpyArray> {
        SafetensorsReader::read(self, key)
    }
    fn map_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        SafetensorsReader::map_floats(self, key)
    }
}

impl ArraySource for TorchReader {
    fn names(&self) -> Vec<String> {
        TorchReader::names(self).to_vec()
    }
    fn contains(&self, key: &str) -> bool {
        TorchReader::contains(self, key)
    }
    fn read(&mut self, key: &str) -> Result<NpyArray> {
        TorchReader::read(self, key)
    }
    fn map_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        TorchReader::map_floats(self, key)
    }
}

/// A directory of `<key>.npy` files.
struct NpyDirectory {
    dir: PathBuf,
    names: Vec<String>,
}

impl NpyDirectory {
    fn open(dir: &Path) -> Result<Self> {
        let entries =
            fs::read_dir(dir).map_err(|e| DataError::io(dir, "listing the directory", e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DataError::io(dir, "listing the directory", e))?;
            let file_name = entry.file_name();
            if let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".npy")) {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(NpyDirectory {
            dir: dir.to_path_buf(),
            names,
        })
    }
}

impl ArraySource for NpyDirectory {
    fn names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn contains(&self, key: &str) -> bool {
        self.names.iter().any(|n| n == key)
    }
    fn read(&mut self, key: &str) -> Result<NpyArray> {
        if !self.contains(key) {
            return Err(DataError::MissingArray {
                path: self.dir.clone(),
                key: key.to_string(),
                available: list_or_none(&self.names),
            });
        }
        crate::npy::read_npy(&self.dir.join(format!("{key}.npy")))
    }
    fn map_floats(&mut self, key: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        if !self.contains(key) {
            return Ok(None);
        }
        Ok(crate::npy::map_npy_floats(
            &self.dir.join(format!("{key}.npy")),
        ))
    }
}

/// Loads and validates a feature file (see the module documentation for the layout).
pub fn load_feature_file(path: &Path, keys: &FeatureKeys) -> Result<FeatureSet> {
    open_with(path, keys, &mut |path, source, key| {
        held_features(path, source, key)
    })
}

/// Opens and validates a feature file as one shard of a larger set: as
/// [`load_feature_file`], except that compressed `.npz` features (`np.savez_compressed`) are
/// left in the archive, to be inflated in row batches as they are visited
/// ([`DeflatedFloats::for_each_batch`]), rather than read whole.
pub fn open_feature_shard(path: &Path, keys: &FeatureKeys) -> Result<FeatureShard> {
    open_with(path, keys, &mut |path, source, key| {
        if let Some((shape, deflated)) = source.deflated_floats(key)? {
            return Ok((shape, ShardFeatures::Deflated(deflated)));
        }
        let (shape, data) = held_features(path, source, key)?;
        Ok((shape, ShardFeatures::Held(data)))
    })
}

/// Reads the features `key` of `source`: their shape and data.
type FeatureReader<'a, F> =
    dyn FnMut(&Path, &mut dyn ArraySource, &str) -> Result<(Vec<usize>, F)> + 'a;

fn open_with<F>(
    path: &Path,
    keys: &FeatureKeys,
    read_features: &mut FeatureReader<'_, F>,
) -> Result<FeatureSet<F>> {
    let metadata = fs::metadata(path).map_err(|e| DataError::open(path, FEATURE_FILE_KINDS, e))?;
    if metadata.is_dir() {
        return load_from(path, &mut NpyDirectory::open(path)?, keys, read_features);
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("npz") => load_from(path, &mut NpzReader::open(path)?, keys, read_features),
        Some("safetensors") => load_from(
            path,
            &mut SafetensorsReader::open(path)?,
            keys,
            read_features,
        ),
        Some("pt" | "pth") => load_from(path, &mut TorchReader::open(path)?, keys, read_features),
        Some("npy") => Err(DataError::UnsupportedFileKind {
            path: path.to_path_buf(),
            expected:
                "a feature set, but a .npy file holds a single array: pass the directory holding \
                       <features>.npy and <labels>.npy, or a .npz/.safetensors file",
        }),
        _ => Err(DataError::UnsupportedFileKind {
            path: path.to_path_buf(),
            expected: FEATURE_FILE_KINDS,
        }),
    }
}

fn read_required(path: &Path, source: &mut dyn ArraySource, key: &str) -> Result<NpyArray> {
    if !source.contains(key) {
        return Err(DataError::MissingArray {
            path: path.to_path_buf(),
            key: key.to_string(),
            available: list_or_none(&source.names()),
        });
    }
    source.read(key)
}

fn read_optional(source: &mut dyn ArraySource, key: &str) -> Result<Option<NpyArray>> {
    if source.contains(key) {
        source.read(key).map(Some)
    } else {
        Ok(None)
    }
}

/// A float array as f64; integer and bool arrays are rejected.
fn float_values(path: &Path, key: &str, array: &NpyArray, role: &str) -> Result<Vec<f64>> {
    if !array.dtype().is_float() {
        return Err(DataError::array(
            path,
            key,
            format!(
                "has dtype {}, expected float32 or float64 ({role})",
                array.dtype_name()
            ),
        ));
    }
    Ok(array.to_f64_vec())
}

/// Features: N x d floats, kept in their precision, in place where the file allows.
fn held_features(
    path: &Path,
    source: &mut dyn ArraySource,
    key: &str,
) -> Result<(Vec<usize>, FloatData)> {
    if let Some((shape, mapped)) = source.map_floats(key)? {
        return Ok((shape, FloatData::Mapped(mapped)));
    }
    let array = read_required(path, source, key)?;
    let data = match array.data {
        ArrayData::F32(v) => FloatData::F32(v),
        ArrayData::F64(v) => FloatData::F64(v),
        other => {
            return Err(DataError::array(
                path,
                key,
                format!(
                    "has dtype {}, expected float32 or float64",
                    other.dtype_name()
                ),
            ))
        }
    };
    Ok((array.shape, data))
}

fn load_from<F>(
    path: &Path,
    source: &mut dyn ArraySource,
    keys: &FeatureKeys,
    read_features: &mut FeatureReader<'_, F>,
) -> Result<FeatureSet<F>> {
    let (shape, features) = read_features(path, source, &keys.features)?;
    let (num_samples, dim) = match shape[..] {
        [_, 0] => {
            return Err(DataError::array(
                path,
                &keys.features,
                format!(
                    "has shape {}: no feature columns (d = 0); expected N samples x d features with d >= 1",
                    shape_string(&shape)
                ),
            ))
        }
        [n, d] => (n, d),
        _ => {
            return Err(DataError::array(
                path,
                &keys.features,
                format!(
                    "has shape {}, expected 2-D (N samples x d features)",
                    shape_string(&shape)
                ),
            ))
        }
    };

    // Labels: N non-negative integers.
    let labels = read_required(path, source, &keys.labels)?;
    check_per_sample(path, &keys.labels, &labels, num_samples, &keys.features)?;
    let labels = labels.to_labels(path, &keys.labels)?;

    // Classifier: K x d weight, K bias.
    let weight = read_optional(source, &keys.weight)?;
    let bias = read_optional(source, &keys.bias)?;
    let (weight, num_classes_weight) = match weight {
        None => (None, None),
        Some(w) => {
            let rows = match w.shape[..] {
                [k, cols] if cols == dim => k,
                _ => {
                    return Err(DataError::array(
                        path,
                        &keys.weight,
                        format!(
                            "has shape {}, expected 2-D (K classes x d) with d = {dim} columns to match '{}'",
                            shape_string(&w.shape),
                            keys.features
                        ),
                    ))
                }
            };
            (
                Some(float_values(path, &keys.weight, &w, "the classifier")?),
                Some(rows),
            )
        }
    };
    let bias = match (bias, num_classes_weight) {
        (None, _) => None,
        (Some(_), None) => {
            // Name the missing weight first: a typo in its key is the likely cause.
            return Err(DataError::array(
                path,
                &keys.weight,
                format!(
                    "(the classifier weight) is missing, but the file has a bias '{}', which needs its weight",
                    keys.bias
                ),
            ));
        }
        (Some(b), Some(k)) => {
            if b.shape[..] != [k] {
                return Err(DataError::array(
                    path,
                    &keys.bias,
                    format!(
                        "has shape {}, expected 1-D with {k} entries (one per row of '{}')",
                        shape_string(&b.shape),
                        keys.weight
                    ),
                ));
            }
            Some(float_values(path, &keys.bias, &b, "the classifier bias")?)
        }
    };

    let indices = match read_optional(source, INDICES_KEY)? {
        None => None,
        Some(ix) => {
            check_per_sample(path, INDICES_KEY, &ix, num_samples, &keys.features)?;
            Some(ix.to_indices(path, INDICES_KEY)?)
        }
    };

    Ok(FeatureSet {
        path: path.to_path_buf(),
        num_samples,
        dim,
        features,
        labels,
        weight,
        num_classes_weight,
        bias,
        indices,
    })
}

/// Checks that `array` is 1-D with one entry per row of the features.
fn check_per_sample(
    path: &Path,
    key: &str,
    array: &NpyArray,
    n: usize,
    features_key: &str,
) -> Result<()> {
    match array.shape[..] {
        [len] if len == n => Ok(()),
        [len] => Err(DataError::array(
            path,
            key,
            format!("has {len} entries, expected {n} (one per row of '{features_key}')"),
        )),
        _ => Err(DataError::array(
            path,
            key,
            format!(
                "has shape {}, expected 1-D with {n} entries (one per row of '{features_key}')",
                shape_string(&array.shape)
            ),
        )),
    }
}

/// Borrowed contents of a feature file to be written.
#[derive(Clone, Copy, Debug)]
pub struct FeatureExport<'a> {
    /// N x d, row-major; saved as float32 whatever the input precision.
    pub features: FloatSlice<'a>,
    pub num_samples: usize,
    pub dim: usize,
    /// N labels; saved as int64.
    pub labels: &'a [u32],
    /// K x d classifier (row-major) and K; saved as float64.
    pub weight: Option<(&'a [f64], usize)>,
    /// K biases; saved as float64. Requires `weight`.
    pub bias: Option<&'a [f64]>,
    /// N original sample indices; saved as int64 under [`INDICES_KEY`].
    pub indices: Option<&'a [u64]>,
}

/// The arrays of a validated export, owning the converted copies (f32 features when the input
/// is f64, int64 labels and indices).
struct ExportArrays<'a> {
    /// The features as f32: borrowed when they are an f32 slice, else a converted copy.
    features_f32: Cow<'a, [f32]>,
    labels: Vec<i64>,
    indices: Option<Vec<i64>>,
    export: &'a FeatureExport<'a>,
    shapes: [Vec<usize>; 5],
}

impl<'a> ExportArrays<'a> {
    fn new(path: &Path, export: &'a FeatureExport<'a>) -> Result<Self> {
        let keys = FeatureKeys::default();
        let (n, d) = (export.num_samples, export.dim);
        let check = |key: &str, len: usize, expected: Option<usize>, what: &str| -> Result<()> {
            match expected {
                Some(e) if e == len => Ok(()),
                Some(e) => Err(DataError::array(
                    path,
                    key,
                    format!("has {len} values, expected {e} ({what})"),
                )),
                None => Err(DataError::array(
                    path,
                    key,
                    format!("size overflows ({what})"),
                )),
            }
        };
        check(
            &keys.features,
            export.features.len(),
            n.checked_mul(d),
            "N x d",
        )?;
        check(&keys.labels, export.labels.len(), Some(n), "one per sample")?;
        let k = export.weight.map(|(_, k)| k);
        if let Some((w, k)) = export.weight {
            check(&keys.weight, w.len(), k.checked_mul(d), "K x d")?;
        }
        match (export.bias, k) {
            (Some(_), None) => {
                return Err(DataError::array(
                    path,
                    &keys.bias,
                    "is given without a classifier weight",
                ))
            }
            (Some(b), Some(k)) => check(&keys.bias, b.len(), Some(k), "one per class")?,
            _ => {}
        }
        let indices = match export.indices {
            None => None,
            Some(ix) => {
                check(INDICES_KEY, ix.len(), Some(n), "one per sample")?;
                let converted: Option<Vec<i64>> =
                    ix.iter().map(|&i| i64::try_from(i).ok()).collect();
                Some(converted.ok_or_else(|| {
                    DataError::array(path, INDICES_KEY, "has a value above the int64 range")
                })?)
            }
        };
        Ok(ExportArrays {
            features_f32: match export.features {
                FloatSlice::F32(v) => Cow::Borrowed(v),
                FloatSlice::F64(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
                FloatSlice::Mapped(m) => Cow::Owned(m.to_f32_vec()),
            },
            labels: export.labels.iter().map(|&l| i64::from(l)).collect(),
            indices,
            export,
            shapes: [
                vec![n, d],
                vec![n],
                vec![k.unwrap_or(0), d],
                vec![k.unwrap_or(0)],
                vec![n],
            ],
        })
    }

    fn views(&self) -> Vec<(&'static str, ArrayView<'_>)> {
        let features = ArraySlice::F32(&self.features_f32);
        let mut views = vec![
            (
                "features",
                ArrayView {
                    shape: &self.shapes[0],
                    data: features,
                },
            ),
            (
                "labels",
                ArrayView {
                    shape: &self.shapes[1],
                    data: ArraySlice::I64(&self.labels),
                },
            ),
        ];
        if let Some((w, _)) = self.export.weight {
            views.push((
                "weight",
                ArrayView {
                    shape: &self.shapes[2],
                    data: ArraySlice::F64(w),
                },
            ));
        }
        if let Some(b) = self.export.bias {
            views.push((
                "bias",
                ArrayView {
                    shape: &self.shapes[3],
                    data: ArraySlice::F64(b),
                },
            ));
        }
        if let Some(ix) = &self.indices {
            views.push((
                INDICES_KEY,
                ArrayView {
                    shape: &self.shapes[4],
                    data: ArraySlice::I64(ix),
                },
            ));
        }
        views
    }
}

/// Saves a feature file as `.npz` (stored members, atomic), with the default key names:
/// `features` float32 (N, d), `labels` int64 (N,), and when given `weight` float64 (K, d),
/// `bias` float64 (K,), `indices` int64 (N,).
pub fn save_feature_npz(path: &Path, export: &FeatureExport<'_>) -> Result<()> {
    let arrays = ExportArrays::new(path, export)?;
    crate::npz::write_npz(path, &arrays.views())
}

/// Saves the same arrays as [`save_feature_npz`] in `.safetensors` format.
pub fn save_feature_safetensors(path: &Path, export: &FeatureExport<'_>) -> Result<()> {
    let arrays = ExportArrays::new(path, export)?;
    crate::safetensors::write_safetensors(path, &arrays.views())
}

/// Saves as `.npz` or `.safetensors` according to the path's extension.
pub fn save_feature_file(path: &Path, export: &FeatureExport<'_>) -> Result<()> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("npz") => save_feature_npz(path, export),
        Some("safetensors") => save_feature_safetensors(path, export),
        _ => Err(DataError::UnsupportedFileKind {
            path: path.to_path_buf(),
            expected: "a path ending in .npz or .safetensors",
        }),
    }
}
