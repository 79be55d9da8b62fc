//! The run directory and its files. Every file is written atomically (temporary file in the
//! same directory, fsync, rename), so an interrupted run never leaves a half-written file.
//!
//! ```text
//! DIR/config.json          every setting (TrainConfig), the nclab version, the seed
//! DIR/metrics.jsonl        one JSON object per evaluation (epoch 0 = initialisation)
//! DIR/metrics.csv          the same rows as CSV, columns in METRIC_COLUMNS order, then the
//!                          depth columns of the watched layers (`--nc-layers`)
//! DIR/summary.json         best epoch, its validation accuracy, the test accuracy of the
//!                          best-validation checkpoint, final train/test accuracy
//! DIR/checkpoints/state.json   resume state (last completed epoch, best so far)
//! DIR/checkpoints/last/    model-eN.bpk, optim-eN.bpk of the last completed epoch N
//! DIR/checkpoints/best/    model.bpk of the best validation accuracy
//! DIR/final.safetensors    weight (K x d), bias (K), train_class_means, test_class_means (K x d),
//!                          initial_train_class_means (the untrained network's, K x d),
//!                          layer{i}_train_class_means (K x d_i) of every watched layer i
//! DIR/features_{train,test}.npz   with --save-features
//! ```
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The metric convention a run's config.json records (text form), `nclab` for runs written
/// before conventions had names, which all computed `nclab`'s numbers.
pub fn recorded_convention(config: &serde_json::Value) -> serde_json::Value {
    config
        .get("convention")
        .cloned()
        .unwrap_or_else(|| nc_math::metrics::Convention::NCLAB.label().into())
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // nc-data's procedure (temp file, fsync, rename, fsync of the directory); its message
    // already names the file.
    Ok(nc_data::io::write_atomic_bytes(path, bytes)?)
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.into(),
        source,
    })?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// Reads a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&s).map_err(|source| Error::Json {
        path: path.into(),
        source,
    })
}

/// Whether `root` holds nothing but what [`RunDir::create`] makes before the first file:
/// `checkpoints/last` and `checkpoints/best`, both empty, and the `.write-test` probe.
fn holds_only_an_unstarted_skeleton(root: &Path) -> Result<bool> {
    let names = |dir: &Path| -> Result<Vec<std::ffi::OsString>> {
        std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .map(|entry| entry.map(|e| e.file_name()).map_err(|e| Error::io(dir, e)))
            .collect()
    };
    for name in names(root)? {
        match name.to_str() {
            Some(".write-test") => {}
            Some("checkpoints") if root.join("checkpoints").is_dir() => {
                for inner in names(&root.join("checkpoints"))? {
                    let folder = root.join("checkpoints").join(&inner);
                    let is_empty_folder = matches!(inner.to_str(), Some("last" | "best"))
                        && folder.is_dir()
                        && names(&folder)?.is_empty();
                    if !is_empty_folder {
                        return Ok(false);
                    }
                }
            }
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// The names of the tensors in `final.safetensors` (all f32, row-major).
pub mod final_tensors {
    /// The classifier W, K x d.
    pub const WEIGHT: &str = "weight";
    /// The classifier bias b, K.
    pub const BIAS: &str = "bias";
    /// Class means of the trained network's training features, K x d.
    pub const TRAIN_CLASS_MEANS: &str = "train_class_means";
    /// Class means of the trained network's test features, K x d.
    pub const TEST_CLASS_MEANS: &str = "test_class_means";
    /// Class means of the untrained network's training features (epoch 0), K x d.
    pub const INITIAL_TRAIN_CLASS_MEANS: &str = "initial_train_class_means";

    /// Class means of the trained network's training features at watched layer `i`
    /// (`--nc-layers`), K x d_i; the last layer's equal [`TRAIN_CLASS_MEANS`].
    pub fn layer_train_class_means(i: usize) -> String {
        format!("layer{i}_train_class_means")
    }

    /// Class means of the untrained network's training features at watched layer `i`.
    pub fn layer_initial_train_class_means(i: usize) -> String {
        format!("layer{i}_initial_train_class_means")
    }

    /// The features of watched layer `i` in `features_{train,test}.npz` (N x d_i, float32);
    /// the last layer's equal `features`.
    pub fn layer_features(i: usize) -> String {
        format!("layer{i}_features")
    }
}

/// A layer whose features are measured at every evaluation (`nclab train --nc-layers`):
/// its 1-based index in the backbone, its name (`hidden2`, `stage3`) and its dimension.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    pub index: usize,
    pub name: String,
    pub dim: usize,
}

/// The metrics recorded per watched layer and split: those that need no classifier, as
/// `<split>_layer<i>_<metric>` columns.
pub const LAYER_METRIC_COLUMNS: [&str; 7] = [
    "nc1",
    "nc2_means",
    "equinorm_h",
    "equiangle_h",
    "cdnv",
    "ncc_accuracy",
    "nc1_trace_ratio",
];

/// The column of `metric` at layer `layer` on `split`: `train_layer2_nc1`.
pub fn layer_column(split: &str, layer: usize, metric: &str) -> String {
    format!("{split}_layer{layer}_{metric}")
}

/// The watched layers a run's config.json records (none for runs that watch the last layer
/// only, and for runs written before layers could be watched).
pub fn watched_layers(config: &serde_json::Value) -> Vec<LayerInfo> {
    config
        .get("watched_layers")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// Paths inside a run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// The layout of the run directory at `root`, whether or not it exists yet.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// Creates a fresh run directory (it may exist but must be empty). Checks it is writable.
    pub fn create(root: &Path) -> Result<Self> {
        let err = |msg: String| Error::RunDir {
            path: root.into(),
            msg,
        };
        if root.exists() {
            if !root.is_dir() {
                return Err(err("exists and is not a directory".into()));
            }
            // What a creation killed before config.json leaves (the empty checkpoint folders,
            // a probe or temporary file of a dead process) counts as empty: the run never
            // started, and could neither be resumed nor started again otherwise.
            nc_data::io::remove_stale_temps(root)?;
            if !holds_only_an_unstarted_skeleton(root)? {
                return Err(Error::RunDirNotEmpty { path: root.into() });
            }
        }
        std::fs::create_dir_all(root.join("checkpoints/last"))
            .map_err(|e| err(format!("cannot create: {e}")))?;
        std::fs::create_dir_all(root.join("checkpoints/best"))
            .map_err(|e| err(format!("cannot create: {e}")))?;
        // Probe writability now rather than after the first epoch.
        write_atomic(&root.join(".write-test"), b"ok")
            .map_err(|e| err(format!("not writable: {e}")))?;
        let _ = std::fs::remove_file(root.join(".write-test"));
        Ok(RunDir { root: root.into() })
    }

    /// Opens an existing run directory to resume it.
    /// Temporary files that a killed writer left are removed (see
    /// `nc_data::io::remove_stale_temps`).
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("config.json").is_file() {
            return Err(Error::RunDir {
                path: root.into(),
                msg: "has no config.json: not a run directory".into(),
            });
        }
        let dir = RunDir { root: root.into() };
        for folder in ["", "checkpoints", "checkpoints/last", "checkpoints/best"] {
            nc_data::io::remove_stale_temps(&dir.root.join(folder))?;
        }
        Ok(dir)
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn metrics_jsonl(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn metrics_csv(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("checkpoints/state.json")
    }
    pub fn last_model(&self, epoch: usize) -> PathBuf {
        self.root
            .join(format!("checkpoints/last/model-e{epoch}.bpk"))
    }
    pub fn last_optim(&self, epoch: usize) -> PathBuf {
        self.root
            .join(format!("checkpoints/last/optim-e{epoch}.bpk"))
    }
    pub fn best_model(&self) -> PathBuf {
        self.root.join("checkpoints/best/model.bpk")
    }
    pub fn final_tensors(&self) -> PathBuf {
        self.root.join("final.safetensors")
    }
    /// Training class means at initialisation (`initial_train_class_means`), kept so that the
    /// final file can carry them after a resume.
    pub fn initial_tensors(&self) -> PathBuf {
        self.root.join("checkpoints/initial.safetensors")
    }
    pub fn features(&self, split: &str) -> PathBuf {
        self.root.join(format!("features_{split}.npz"))
    }

    /// Removes last-epoch checkpoint files other than those of `keep_epoch`.
    pub fn prune_last(&self, keep_epoch: usize) {
        let keep = [
            format!("model-e{keep_epoch}.bpk"),
            format!("optim-e{keep_epoch}.bpk"),
        ];
        if let Ok(rd) = std::fs::read_dir(self.root.join("checkpoints/last")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// `summary.json`: written by the trainer once the last epoch is done, so its presence marks
/// a finished run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub epochs: usize,
    /// Epoch with the best validation accuracy, ties going to the latest (the last epoch when
    /// there is no validation split).
    pub best_epoch: usize,
    /// Samples in the validation split (0 without one); None in files written before it was
    /// recorded. Reports use it to decide whether best-validation selection can lead.
    #[serde(default)]
    pub val_samples: Option<usize>,
    pub best_val_acc: Option<f64>,
    /// Test accuracy of the best-validation checkpoint (as the paper reports it).
    pub best_val_test_acc: f64,
    pub final_train_acc: f64,
    pub final_test_acc: f64,
    /// NaN when a hand-written file leaves it out (reports do not need it).
    #[serde(default = "unknown_number")]
    pub final_train_loss: f64,
    pub final_train_nc1: Option<f64>,
    pub initial_train_nc1: Option<f64>,
    /// Mean wall time of one training step (forward, backward, clipping, SGD), seconds; NaN
    /// when left out.
    #[serde(default = "unknown_number")]
    pub seconds_per_step: f64,
    /// The training backend (`flex`, `tch` ...); empty when left out.
    #[serde(default)]
    pub backend: String,
}

fn unknown_number() -> f64 {
    f64::NAN
}

/// The spec metrics reported per split, in CSV column order (`accuracy` is `*_acc`): the
/// metrics type's own list.
pub const METRIC_COLUMNS: [&str; 14] = nc_math::metrics::NcMetrics::SPLIT_COLUMNS;

/// The leading CSV columns.
pub const BASE_COLUMNS: [&str; 8] = [
    "epoch",
    "lr",
    "train_loss",
    "val_loss",
    "test_loss",
    "train_acc",
    "val_acc",
    "test_acc",
];

/// All CSV columns: base, then `train_<metric>`, then `test_<metric>`.
pub fn csv_columns() -> Vec<String> {
    let mut cols: Vec<String> = BASE_COLUMNS.iter().map(|s| s.to_string()).collect();
    for split in ["train", "test"] {
        cols.extend(METRIC_COLUMNS.iter().map(|m| format!("{split}_{m}")));
    }
    cols
}

/// One evaluation row: ordered (column, value) pairs; `None` and non-finite are null/empty.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsRow {
    pub values: Vec<(String, Option<f64>)>,
    /// The JSON and CSV lines as read back from disk (`--resume`): rewritten byte for byte,
    /// since parsing and printing a float need not round-trip exactly.
    pub raw: Option<(String, String)>,
}

impl MetricsRow {
    pub fn epoch(&self) -> usize {
        self.get("epoch").unwrap_or(0.0) as usize
    }
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| *v)
    }
    /// One JSON object on one line, keys in column order.
    pub fn to_json_line(&self) -> String {
        if let Some((j, _)) = &self.raw {
            return j.clone();
        }
        let mut s = String::from("{");
        for (i, (k, v)) in self.values.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&serde_json::to_string(k).unwrap());
            s.push_str(": ");
            s.push_str(&fmt_json(k, *v));
        }
        s.push('}');
        s
    }
    /// Parses a line written by [`to_json_line`](Self::to_json_line).
    pub fn from_json_line(line: &str) -> Option<Self> {
        Self::from_json_line_with(line, &csv_columns())
    }
    /// Parses a line of a run whose columns are `columns` (keys not among them are dropped,
    /// columns the line lacks are null).
    pub fn from_json_line_with(line: &str, columns: &[String]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let obj = v.as_object()?;
        let values = columns
            .iter()
            .cloned()
            .map(|c| {
                let x = obj.get(&c).and_then(|x| x.as_f64());
                (c, x)
            })
            .collect();
        Some(MetricsRow { values, raw: None })
    }
    pub fn to_csv_line(&self) -> String {
        if let Some((_, c)) = &self.raw {
            return c.clone();
        }
        self.values
            .iter()
            .map(|(k, v)| match v {
                Some(x) if x.is_finite() => fmt_num(k, *x),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn is_integer_column(k: &str) -> bool {
    k == "epoch" || k.ends_with("sigma_b_rank") || k.ends_with("num_samples")
}

fn fmt_num(k: &str, x: f64) -> String {
    if is_integer_column(k) {
        format!("{}", x as i64)
    } else {
        // Shortest representation that round-trips.
        format!("{x:?}")
    }
}

fn fmt_json(k: &str, v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => fmt_num(k, x),
        _ => "null".into(),
    }
}

/// Writes metrics.jsonl and metrics.csv (both atomically) from all rows so far. The CSV
/// header is the first row's columns ([`csv_columns`] when there is none).
pub fn write_metrics(dir: &RunDir, rows: &[MetricsRow]) -> Result<()> {
    let mut jl = String::new();
    let mut csv = match rows.first() {
        Some(r) => r
            .values
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(","),
        None => csv_columns().join(","),
    };
    csv.push('\n');
    for r in rows {
        jl.push_str(&r.to_json_line());
        jl.push('\n');
        csv.push_str(&r.to_csv_line());
        csv.push('\n');
    }
    write_atomic(&dir.metrics_jsonl(), jl.as_bytes())?;
    write_atomic(&dir.metrics_csv(), csv.as_bytes())
}

/// Reads metrics.jsonl and metrics.csv (missing files = no rows), keeping the raw lines.
pub fn read_metrics(dir: &RunDir) -> Result<Vec<MetricsRow>> {
    let p = dir.metrics_jsonl();
    if !p.exists() {
        return Ok(vec![]);
    }
    let s = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let cp = dir.metrics_csv();
    let csv = std::fs::read_to_string(&cp).map_err(|e| Error::io(&cp, e))?;
    // The columns are the CSV header's (a run watching layers has more than csv_columns()).
    let columns: Vec<String> = match csv.lines().next() {
        Some(header) if !header.trim().is_empty() => {
            header.split(',').map(str::to_string).collect()
        }
        _ => csv_columns(),
    };
    let csv_lines: Vec<&str> = csv.lines().skip(1).collect();
    let json_lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    // Both files are rewritten whole, metrics.jsonl first: a writer killed between the two
    // renames leaves one more row in metrics.jsonl. That row is after the last checkpoint
    // (state.json is written after both), so the rows both files hold are the ones to keep.
    let rows = csv_lines.len().min(json_lines.len());
    if json_lines.len() > rows + 1 || csv_lines.len() > rows {
        return Err(Error::RunDir {
            path: dir.root.clone(),
            msg: "metrics.jsonl and metrics.csv have different numbers of rows".into(),
        });
    }
    let (json_lines, csv_lines) = (&json_lines[..rows], &csv_lines[..rows]);
    json_lines
        .iter()
        .zip(csv_lines)
        .map(|(l, &c)| {
            let mut r = MetricsRow::from_json_line_with(l, &columns)
                .ok_or_else(|| Error::invalid(&p, format!("bad line {l:?}")))?;
            r.raw = Some((l.to_string(), c.to_string()));
            Ok(r)
        })
        .collect()
}

/// Writes a safetensors file of f32 tensors (name, shape, row-major data) atomically, through
/// nc-data's writer (the one `nclab analyze` reads back).
pub fn write_safetensors<S: AsRef<str>>(
    path: &Path,
    tensors: &[(S, Vec<usize>, Vec<f32>)],
) -> Result<()> {
    let arrays: Vec<(&str, nc_data::ArrayView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = nc_data::ArrayView {
                shape,
                data: nc_data::ArraySlice::F32(data),
            };
            (name.as_ref(), view)
        })
        .collect();
    Ok(nc_data::safetensors::write_safetensors(path, &arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_start_in_issue_order() {
        let c = csv_columns();
        assert_eq!(
            &c[..8],
            &[
                "epoch",
                "lr",
                "train_loss",
                "val_loss",
                "test_loss",
                "train_acc",
                "val_acc",
                "test_acc"
            ]
        );
        assert_eq!(c[8], "train_nc1");
        assert!(c.contains(&"test_nc4".to_string()));
    }

    #[test]
    fn rows_round_trip_through_json_lines() {
        let mut values: Vec<(String, Option<f64>)> =
            csv_columns().into_iter().map(|c| (c, None)).collect();
        values[0].1 = Some(3.0);
        values[1].1 = Some(0.1);
        values[8].1 = Some(1.0 / 3.0);
        let r = MetricsRow { values, raw: None };
        let line = r.to_json_line();
        assert!(line.starts_with("{\"epoch\": 3, \"lr\": 0.1"));
        assert_eq!(MetricsRow::from_json_line(&line).unwrap(), r);
        assert!(r.to_csv_line().starts_with("3,0.1,,"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = std::env::temp_dir().join(format!("nctrain-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
