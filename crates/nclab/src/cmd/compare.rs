//! `nclab compare RUN...`: feature equivalence between runs, as matrices over all pairs.

use crate::plot::{self, Heatmap};
use anyhow::{bail, Context, Result};
use nc_data::features::{load_feature_file, FeatureKeys, FeatureSet};
use nc_data::safetensors::read_safetensors;
use nc_math::compare::{linear_cka, procrustes_distance};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    after_help = "Each RUN is a directory written by `nclab train` (final.safetensors; \
features_train.npz and features_test.npz from --save-features for CKA and prediction agreement)."
)]
pub struct Args {
    /// Run directories (two or more).
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Folder for compare.json, compare.csv and the heatmaps (default: ./compare).
    #[arg(long, default_value = "compare")]
    pub out: PathBuf,
}

/// What one run contributes to the comparison.
struct RunData {
    label: String,
    dir: PathBuf,
    num_classes: usize,
    /// K x d_means, row-major.
    train_means: (Vec<f64>, usize),
    /// The same at initialisation, if saved.
    initial_means: Option<(Vec<f64>, usize)>,
    /// K x d classifier and bias.
    weight: (Vec<f64>, usize),
    bias: Vec<f64>,
    train_features: Option<FeatureSet>,
    test_features: Option<FeatureSet>,
}

/// The comparison of every pair, as square matrices in `runs` order (null where a quantity
/// needs files a run lacks).
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub runs: Vec<String>,
    /// Orthogonal-Procrustes distance of the scale-normalised centred training class means.
    pub means_procrustes: Vec<Vec<Option<f64>>>,
    /// The same for the classifier rows.
    pub classifier_procrustes: Vec<Vec<Option<f64>>>,
    /// Linear CKA of the training features, matched sample by sample through `indices`.
    pub train_cka: Vec<Vec<Option<f64>>>,
    /// Fraction of test samples on which the two predict the same class.
    pub test_prediction_agreement: Vec<Vec<Option<f64>>>,
    /// Mean over classes of |per-class test accuracy difference|.
    pub per_class_accuracy_gap: Vec<Vec<Option<f64>>>,
    /// Baseline for `means_procrustes`: for each run, the distance between its trained class
    /// means and those of the same network at initialisation (epoch 0), when the run saved
    /// them (`initial_train_class_means`).
    pub untrained_means_procrustes: Option<Vec<Option<f64>>>,
}

pub fn run(args: Args) -> Result<()> {
    let comparison = compare_runs(&args.runs)?;
    write_outputs(&comparison, &args.out)?;
    print!(
        "{}",
        table(
            "means_procrustes",
            &comparison.runs,
            &comparison.means_procrustes
        )
    );
    if let Some(baseline) = &comparison.untrained_means_procrustes {
        let values: Vec<String> = baseline
            .iter()
            .map(|d| d.map_or("n/a".into(), |x| format!("{x:.4}")))
            .collect();
        println!(
            "untrained baseline (each run's epoch-0 means vs its trained means): {}",
            values.join(", ")
        );
    }
    println!("written: {}", args.out.join("compare.json").display());
    Ok(())
}

fn matrix(values: &[f64], shape: &[usize], path: &Path, key: &str) -> Result<(Vec<f64>, usize)> {
    match shape {
        [_, cols] => Ok((values.to_vec(), *cols)),
        _ => bail!(
            "{}: '{key}' has shape {shape:?}, expected 2-D",
            path.display()
        ),
    }
}

fn load_run(dir: &Path) -> Result<RunData> {
    let path = dir.join("final.safetensors");
    if !path.is_file() {
        bail!(
            "{}: no final.safetensors (is the run finished? `nclab train` writes it at the end)",
            dir.display()
        );
    }
    let tensors = read_safetensors(&path)?;
    let get = |key: &str| {
        tensors
            .get(key)
            .with_context(|| format!("{}: missing tensor '{key}'", path.display()))
    };
    let means = get("train_class_means")?;
    let train_means = matrix(
        &means.to_f64_vec(),
        &means.shape,
        &path,
        "train_class_means",
    )?;
    let initial_means = match tensors.get("initial_train_class_means") {
        Some(m) => Some(matrix(
            &m.to_f64_vec(),
            &m.shape,
            &path,
            "initial_train_class_means",
        )?),
        None => None,
    };
    let weight = get("weight")?;
    let weight_m = matrix(&weight.to_f64_vec(), &weight.shape, &path, "weight")?;
    let bias = get("bias")?.to_f64_vec();
    let num_classes = weight.shape[0];
    if means.shape[0] != num_classes || bias.len() != num_classes {
        bail!(
            "{}: weight, bias and train_class_means disagree on the number of classes",
            path.display()
        );
    }
    let features = |split: &str| -> Result<Option<FeatureSet>> {
        let p = dir.join(format!("features_{split}.npz"));
        if p.is_file() {
            Ok(Some(load_feature_file(&p, &FeatureKeys::default())?))
        } else {
            Ok(None)
        }
    };
    Ok(RunData {
        label: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        dir: dir.to_path_buf(),
        num_classes,
        train_means,
        initial_means,
        weight: weight_m,
        bias,
        train_features: features("train")?,
        test_features: features("test")?,
    })
}

/// Rows of `a` and `b` paired by their `indices` (rows without a partner are dropped).
fn matched_rows(a: &FeatureSet, b: &FeatureSet) -> Result<Vec<(usize, usize)>> {
    let (Some(ia), Some(ib)) = (&a.indices, &b.indices) else {
        bail!(
            "{} or {} has no 'indices' to match samples by",
            a.path.display(),
            b.path.display()
        );
    };
    let position: HashMap<u64, usize> = ib.iter().enumerate().map(|(row, &i)| (i, row)).collect();
    Ok(ia
        .iter()
        .enumerate()
        .filter_map(|(row, i)| position.get(i).map(|&other| (row, other)))
        .collect())
}

fn gather(set: &FeatureSet, rows: impl Iterator<Item = usize>) -> Vec<f64> {
    rows.flat_map(|r| set.row_f64(r)).collect()
}

fn predictions(set: &FeatureSet, weight: &(Vec<f64>, usize), bias: &[f64]) -> Result<Vec<usize>> {
    let (w, d) = weight;
    if set.dim != *d {
        bail!(
            "{}: features have dimension {} but the classifier expects {d}",
            set.path.display(),
            set.dim
        );
    }
    Ok((0..set.num_samples)
        .map(|r| {
            let h = set.row_f64(r);
            let mut best = (0, f64::NEG_INFINITY);
            for (k, b) in bias.iter().enumerate() {
                let z: f64 = w[k * d..(k + 1) * d]
                    .iter()
                    .zip(&h)
                    .map(|(x, y)| x * y)
                    .sum::<f64>()
                    + b;
                if z > best.1 {
                    best = (k, z);
                }
            }
            best.0
        })
        .collect())
}

pub fn compare_runs(dirs: &[PathBuf]) -> Result<Comparison> {
    if dirs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    let runs: Vec<RunData> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let k = runs[0].num_classes;
    if let Some(r) = runs.iter().find(|r| r.num_classes != k) {
        bail!(
            "{} has {} classes but {} has {k}",
            r.dir.display(),
            r.num_classes,
            runs[0].dir.display()
        );
    }
    let test_predictions: Vec<Option<Vec<usize>>> = runs
        .iter()
        .map(|r| {
            r.test_features
                .as_ref()
                .map(|t| predictions(t, &r.weight, &r.bias))
                .transpose()
        })
        .collect::<Result<_>>()?;
    let n = runs.len();
    let mut out = Comparison {
        runs: runs.iter().map(|r| r.label.clone()).collect(),
        means_procrustes: vec![vec![None; n]; n],
        classifier_procrustes: vec![vec![None; n]; n],
        train_cka: vec![vec![None; n]; n],
        test_prediction_agreement: vec![vec![None; n]; n],
        per_class_accuracy_gap: vec![vec![None; n]; n],
        untrained_means_procrustes: None,
    };
    if runs.iter().any(|r| r.initial_means.is_some()) {
        let baseline = runs
            .iter()
            .map(|r| {
                r.initial_means
                    .as_ref()
                    .map(|(m, d)| procrustes_distance(m, *d, &r.train_means.0, r.train_means.1))
                    .transpose()
            })
            .collect::<nc_math::Result<Vec<_>>>()?;
        out.untrained_means_procrustes = Some(baseline);
    }
    for i in 0..n {
        for j in i..n {
            let (a, b) = (&runs[i], &runs[j]);
            let context = || format!("comparing {} with {}", a.dir.display(), b.dir.display());
            let mp = procrustes_distance(
                &a.train_means.0,
                a.train_means.1,
                &b.train_means.0,
                b.train_means.1,
            )
            .with_context(context)?;
            let cp = procrustes_distance(&a.weight.0, a.weight.1, &b.weight.0, b.weight.1)
                .with_context(context)?;
            let cka = match (&a.train_features, &b.train_features) {
                (Some(fa), Some(fb)) => {
                    let pairs = matched_rows(fa, fb)?;
                    let xa = gather(fa, pairs.iter().map(|p| p.0));
                    let xb = gather(fb, pairs.iter().map(|p| p.1));
                    Some(linear_cka(&xa, fa.dim, &xb, fb.dim).with_context(context)?)
                }
                _ => None,
            };
            let (agreement, gap) = match (
                &a.test_features,
                &b.test_features,
                &test_predictions[i],
                &test_predictions[j],
            ) {
                (Some(ta), Some(tb), Some(pa), Some(pb)) => {
                    let pairs = matched_rows(ta, tb)?;
                    let same = pairs.iter().filter(|&&(x, y)| pa[x] == pb[y]).count();
                    let mut correct = vec![(0usize, 0usize, 0usize); k];
                    for &(x, y) in &pairs {
                        let label = ta.labels[x] as usize;
                        if label < k {
                            correct[label].0 += 1;
                            correct[label].1 += (pa[x] == label) as usize;
                            correct[label].2 += (pb[y] == label) as usize;
                        }
                    }
                    let present: Vec<_> = correct.iter().filter(|c| c.0 > 0).collect();
                    let gap = present
                        .iter()
                        .map(|c| (c.1 as f64 - c.2 as f64).abs() / c.0 as f64)
                        .sum::<f64>()
                        / present.len().max(1) as f64;
                    (Some(same as f64 / pairs.len().max(1) as f64), Some(gap))
                }
                _ => (None, None),
            };
            for (m, v) in [
                (&mut out.means_procrustes, Some(mp)),
                (&mut out.classifier_procrustes, Some(cp)),
                (&mut out.train_cka, cka),
                (&mut out.test_prediction_agreement, agreement),
                (&mut out.per_class_accuracy_gap, gap),
            ] {
                m[i][j] = v;
                m[j][i] = v;
            }
        }
    }
    Ok(out)
}

pub fn table(name: &str, labels: &[String], m: &[Vec<Option<f64>>]) -> String {
    let width = labels.iter().map(String::len).max().unwrap_or(4).max(8);
    let mut s = format!("{name}\n{:width$}", "");
    for l in labels {
        let _ = write!(s, " {l:>width$}");
    }
    s.push('\n');
    for (l, row) in labels.iter().zip(m) {
        let _ = write!(s, "{l:width$}");
        for v in row {
            let _ = write!(
                s,
                " {:>width$}",
                v.map_or("n/a".into(), |x| format!("{x:.4}"))
            );
        }
        s.push('\n');
    }
    s
}

pub fn write_outputs(c: &Comparison, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    nc_data::io::write_atomic_bytes(
        &out.join("compare.json"),
        serde_json::to_string_pretty(c)?.as_bytes(),
    )?;
    let metrics: [(&str, &Vec<Vec<Option<f64>>>); 5] = [
        ("means_procrustes", &c.means_procrustes),
        ("classifier_procrustes", &c.classifier_procrustes),
        ("train_cka", &c.train_cka),
        ("test_prediction_agreement", &c.test_prediction_agreement),
        ("per_class_accuracy_gap", &c.per_class_accuracy_gap),
    ];
    let mut csv = String::from("run_a,run_b");
    for (name, _) in &metrics {
        let _ = write!(csv, ",{name}");
    }
    csv.push('\n');
    for (i, a) in c.runs.iter().enumerate() {
        for (j, b) in c.runs.iter().enumerate() {
            let _ = write!(csv, "{a},{b}");
            for (_, m) in &metrics {
                let _ = write!(csv, ",{}", m[i][j].map_or(String::new(), |v| v.to_string()));
            }
            csv.push('\n');
        }
    }
    nc_data::io::write_atomic_bytes(&out.join("compare.csv"), csv.as_bytes())?;
    for (name, m) in metrics {
        plot::heatmap(
            &out.join(format!("compare_{name}")),
            &Heatmap {
                title: name.replace('_', " "),
                x_label: "run".into(),
                y_label: "run".into(),
                x_ticks: c.runs.clone(),
                y_ticks: c.runs.clone(),
                values: m.clone(),
                diverging: false,
            },
        )?;
    }
    Ok(())
}
