//! Reading training run directories (as `nclab train` writes them, laid out as
//! [`crate::run_dir`] says) for reports, comparisons and sweeps: `config.json`,
//! `metrics.jsonl` and `summary.json`.
//!
//! A run is read through typed views of its files ([`RunIdentity`], [`Summary`]) that take
//! only the fields a report needs, so a report reads any run whose files follow the
//! documented format, including hand-written ones.

use crate::error::{Error, Result};
use crate::run_dir::{recorded_convention, watched_layers, LayerInfo, RunDir, Summary};
use nc_math::loss::Loss;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Settings that may differ between the runs of one sweep; everything else must agree.
const SWEPT_SETTINGS: &[&str] = &[
    "loss",
    "epochs",
    "seed",
    "milestones",
    "eval_every",
    "device",
    "nclab_version",
    "eval_batch_size",
    "save_features",
];

/// What makes a run a cell of a sweep: the part of `config.json` a report groups by.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RunIdentity {
    pub loss: Loss,
    pub model: ModelWidth,
    pub epochs: usize,
    pub seed: u64,
}

/// The width multiplier of `config.json`'s `model`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct ModelWidth {
    pub width: f64,
}

/// One finished (or unfinished) run.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub loss: Loss,
    pub width: f64,
    pub epochs: usize,
    pub seed: u64,
    /// The config with the swept settings removed: equal for runs that belong together.
    pub fixed_settings: Value,
    /// One map per evaluation, keyed by column name (`epoch`, `train_nc1`, ...).
    pub rows: Vec<BTreeMap<String, f64>>,
    /// `summary.json`; `None` for an unfinished run.
    pub summary: Option<Summary>,
    /// The layers it measured at every evaluation (`--nc-layers`; none for `last`), whose
    /// columns are `<split>_layer<i>_<metric>`.
    pub layers: Vec<LayerInfo>,
}

impl Run {
    /// The last evaluation row, if any.
    pub fn last_row(&self) -> Option<&BTreeMap<String, f64>> {
        self.rows.last()
    }

    pub fn first_row(&self) -> Option<&BTreeMap<String, f64>> {
        self.rows.first()
    }

    /// Column `key` of the last evaluation row.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.last_row().and_then(|row| row.get(key).copied())
    }

    /// Column `key` of the first evaluation row (epoch 0: the untrained network).
    pub fn first(&self, key: &str) -> Option<f64> {
        self.first_row().and_then(|row| row.get(key).copied())
    }
}

fn read_value(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.into(),
        source,
    })
}

fn typed<T: serde::de::DeserializeOwned>(value: Value, path: &Path) -> Result<T> {
    serde_json::from_value(value).map_err(|source| Error::Json {
        path: path.into(),
        source,
    })
}

/// Reads one run directory. A run without `summary.json` is unfinished (`summary` = None).
pub fn read_run(dir: &Path) -> Result<Run> {
    let layout = RunDir::at(dir);
    let config_path = layout.config();
    let config = read_value(&config_path)?;
    let identity: RunIdentity = typed(config.clone(), &config_path)?;
    let layers = watched_layers(&config);
    let mut fixed = config;
    if let Some(map) = fixed.as_object_mut() {
        for key in SWEPT_SETTINGS {
            map.remove(*key);
        }
        if let Some(model) = map.get_mut("model").and_then(Value::as_object_mut) {
            model.remove("width");
        }
        // A watched layer's dimension follows the width; runs of one sweep must watch the
        // same layers (index and name), whatever their widths.
        if let Some(layers) = map.get_mut("watched_layers").and_then(Value::as_array_mut) {
            for layer in layers.iter_mut().filter_map(Value::as_object_mut) {
                layer.remove("dim");
            }
        }
    }
    // A run that names no convention belongs with those that say `nclab`, and one with
    // another convention does not.
    let convention = recorded_convention(&fixed);
    if let Some(map) = fixed.as_object_mut() {
        map.insert("convention".into(), convention);
        // Runs written before the BatchNorm rule was recorded used burn's, the only one.
        map.entry("batch_norm_running_var")
            .or_insert_with(|| Value::from("biased"));
    }

    let metrics_path = layout.metrics_jsonl();
    let rows = match std::fs::read_to_string(&metrics_path) {
        Ok(text) => parse_metrics(&text, &metrics_path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&metrics_path, e)),
    };

    let summary_path = layout.summary();
    let summary = if summary_path.exists() {
        Some(typed(read_value(&summary_path)?, &summary_path)?)
    } else {
        None
    };
    Ok(Run {
        dir: dir.to_path_buf(),
        loss: identity.loss,
        width: identity.model.width,
        epochs: identity.epochs,
        seed: identity.seed,
        fixed_settings: fixed,
        rows,
        summary,
        layers,
    })
}

/// metrics.jsonl: one JSON object per line; null values are left out of the row.
pub fn parse_metrics(text: &str, path: &Path) -> Result<Vec<BTreeMap<String, f64>>> {
    let mut rows = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad_line = |msg: &str| Error::InvalidLine {
            path: path.into(),
            line: i + 1,
            msg: msg.into(),
        };
        let object: Map<String, Value> =
            serde_json::from_str(line).map_err(|_| bad_line("not a JSON object"))?;
        let row: BTreeMap<String, f64> = object
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
            .collect();
        if !row.contains_key("epoch") {
            return Err(bad_line("no 'epoch' field"));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What a directory scan found.
#[derive(Debug)]
pub struct Scan {
    /// Finished runs (with summary.json), sorted by directory.
    pub finished: Vec<Run>,
    /// Run directories without summary.json (interrupted or still running).
    pub unfinished: Vec<PathBuf>,
    /// Run directories whose files could not be read (a torn `metrics.jsonl`, a broken
    /// `config.json`, ...), with the reason: left out of everything else.
    pub unreadable: Vec<Unreadable>,
}

/// A run directory that could not be read, and why.
#[derive(Debug)]
pub struct Unreadable {
    pub dir: PathBuf,
    pub reason: Error,
}

/// Finds every run directory (one holding `config.json`) at or below `root`, reads each
/// (keeping those that cannot be read aside, with the reason), and checks that the finished
/// ones differ only in the swept settings (loss, width, epochs, seed).
pub fn scan(root: &Path) -> Result<Scan> {
    if !root.is_dir() {
        return Err(Error::invalid(root, "not a directory"));
    }
    let mut dirs = Vec::new();
    collect_run_dirs(root, &mut dirs, 0)?;
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::invalid(
            root,
            "no run directories (folders holding config.json from `nclab train`) found",
        ));
    }
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    let mut unreadable = Vec::new();
    for dir in dirs {
        match read_run(&dir) {
            Ok(run) if run.summary.is_some() => finished.push(run),
            Ok(_) => unfinished.push(dir),
            Err(reason) => unreadable.push(Unreadable { dir, reason }),
        }
    }
    if let Some(first) = finished.first() {
        for run in &finished[1..] {
            if run.fixed_settings != first.fixed_settings {
                return Err(Error::MismatchedRuns {
                    first: first.dir.clone(),
                    other: run.dir.clone(),
                    keys: differing_keys(&first.fixed_settings, &run.fixed_settings).join(", "),
                });
            }
        }
    }
    Ok(Scan {
        finished,
        unfinished,
        unreadable,
    })
}

fn collect_run_dirs(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    let layout = RunDir::at(dir);
    if layout.config().is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    if depth >= 4 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            collect_run_dirs(&path, out, depth + 1)?;
        }
    }
    Ok(())
}

/// Top-level (and nested, dotted) keys whose values differ.
fn differing_keys(a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p == q => vec![],
                    (Some(p @ Value::Object(_)), Some(q @ Value::Object(_))) => {
                        differing_keys(p, q)
                            .into_iter()
                            .map(|sub| format!("{k}.{sub}"))
                            .collect()
                    }
                    _ => vec![k.clone()],
                })
                .collect()
        }
        _ => vec!["(value)".into()],
    }
}
