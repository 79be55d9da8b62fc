//! Reading training run directories (as `nclab train` writes them) for reports, comparisons
//! and sweeps: `config.json`, `metrics.jsonl` and `summary.json`.
//!
//! Files are read as JSON documents rather than through the trainer's Rust types, so a
//! report reads any run whose files follow the documented format.

use anyhow::{anyhow, bail, Context, Result};
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

/// One finished (or unfinished) run.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    /// `ce`, `ls`, `fl` or `mse`.
    pub loss: String,
    pub width: f64,
    pub epochs: usize,
    pub seed: u64,
    /// The config with the swept settings removed: equal for runs that belong together.
    pub fixed_settings: Value,
    /// One map per evaluation, keyed by column name (`epoch`, `train_nc1`, ...).
    pub rows: Vec<BTreeMap<String, f64>>,
    pub summary: Option<RunSummary>,
}

/// The numbers of `summary.json` a report needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub best_epoch: usize,
    pub best_val_acc: Option<f64>,
    /// Test accuracy of the best-validation checkpoint (the paper's number).
    pub best_val_test_acc: f64,
    pub final_train_acc: f64,
    pub final_test_acc: f64,
}

impl Run {
    /// The last evaluation row, if any.
    pub fn last_row(&self) -> Option<&BTreeMap<String, f64>> {
        self.rows.last()
    }

    pub fn first_row(&self) -> Option<&BTreeMap<String, f64>> {
        self.rows.first()
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn field<'a>(value: &'a Value, path: &[&str], file: &Path) -> Result<&'a Value> {
    let mut v = value;
    for key in path {
        v = v
            .get(key)
            .ok_or_else(|| anyhow!("{}: missing field '{}'", file.display(), path.join(".")))?;
    }
    Ok(v)
}

fn number(value: &Value, path: &[&str], file: &Path) -> Result<f64> {
    field(value, path, file)?.as_f64().ok_or_else(|| {
        anyhow!(
            "{}: field '{}' should be a number",
            file.display(),
            path.join(".")
        )
    })
}

/// Reads one run directory. A run without `summary.json` is unfinished (`summary` = None).
pub fn read_run(dir: &Path) -> Result<Run> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let loss = field(&config, &["loss", "kind"], &config_path)?
        .as_str()
        .ok_or_else(|| {
            anyhow!(
                "{}: field 'loss.kind' should be a string",
                config_path.display()
            )
        })?
        .to_string();
    let width = number(&config, &["model", "width"], &config_path)?;
    let epochs = number(&config, &["epochs"], &config_path)? as usize;
    let seed = number(&config, &["seed"], &config_path)? as u64;
    let mut fixed = config.clone();
    if let Some(map) = fixed.as_object_mut() {
        for key in SWEPT_SETTINGS {
            map.remove(*key);
        }
        if let Some(model) = map.get_mut("model").and_then(Value::as_object_mut) {
            model.remove("width");
        }
    }

    let metrics_path = dir.join("metrics.jsonl");
    let rows = match std::fs::read_to_string(&metrics_path) {
        Ok(text) => parse_metrics(&text, &metrics_path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", metrics_path.display())),
    };

    let summary_path = dir.join("summary.json");
    let summary = if summary_path.exists() {
        let s = read_json(&summary_path)?;
        Some(RunSummary {
            best_epoch: number(&s, &["best_epoch"], &summary_path)? as usize,
            best_val_acc: s.get("best_val_acc").and_then(Value::as_f64),
            best_val_test_acc: number(&s, &["best_val_test_acc"], &summary_path)?,
            final_train_acc: number(&s, &["final_train_acc"], &summary_path)?,
            final_test_acc: number(&s, &["final_test_acc"], &summary_path)?,
        })
    } else {
        None
    };
    Ok(Run {
        dir: dir.to_path_buf(),
        loss,
        width,
        epochs,
        seed,
        fixed_settings: fixed,
        rows,
        summary,
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
        let object: Map<String, Value> = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a JSON object", path.display(), i + 1))?;
        let row: BTreeMap<String, f64> = object
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
            .collect();
        if !row.contains_key("epoch") {
            bail!("{} line {}: no 'epoch' field", path.display(), i + 1);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// What a directory scan found.
pub struct Scan {
    /// Finished runs (with summary.json), sorted by directory.
    pub finished: Vec<Run>,
    /// Run directories without summary.json (interrupted or still running).
    pub unfinished: Vec<PathBuf>,
}

/// Finds every run directory (one holding `config.json`) at or below `root`, and checks that
/// the finished ones differ only in the swept settings (loss, width, epochs, seed).
pub fn scan(root: &Path) -> Result<Scan> {
    if !root.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let mut dirs = Vec::new();
    collect_run_dirs(root, &mut dirs, 0)?;
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{}: no run directories (folders holding config.json from `nclab train`) found",
            root.display()
        );
    }
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    for dir in dirs {
        let run = read_run(&dir)?;
        if run.summary.is_some() {
            finished.push(run);
        } else {
            unfinished.push(dir);
        }
    }
    if let Some(first) = finished.first() {
        for run in &finished[1..] {
            if run.fixed_settings != first.fixed_settings {
                bail!(
                    "runs with mismatched settings: {} and {} differ in {} (a report compares runs that differ only in loss, width, epochs and seed)",
                    first.dir.display(),
                    run.dir.display(),
                    differing_keys(&first.fixed_settings, &run.fixed_settings).join(", ")
                );
            }
        }
    }
    Ok(Scan {
        finished,
        unfinished,
    })
}

fn collect_run_dirs(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if dir.join("config.json").is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    if depth >= 4 {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
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
