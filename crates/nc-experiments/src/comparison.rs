//! Feature equivalence between finished runs: Procrustes distances of class means and
//! classifiers, linear CKA of the training features, test-prediction agreement and per-class
//! accuracy gaps, as matrices over all pairs (docs/metrics.md, "Comparing runs"); for runs
//! that watched layers (`nclab train --nc-layers`), the class-mean Procrustes distance and the
//! CKA at every layer they all watched.

use crate::error::{Error, Result};
use crate::run_dir::{final_tensors, recorded_convention, watched_layers, LayerInfo, RunDir};
use nc_data::features::{load_feature_file, FeatureKeys, FeatureSet};
use nc_data::safetensors::read_safetensors;
use nc_data::NpyArray;
use nc_math::compare::{linear_cka, procrustes_distance};
use nc_math::metrics::Classifier;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What one run contributes to the comparison.
struct RunData {
    label: String,
    dir: PathBuf,
    num_classes: usize,
    /// K x d_means, row-major.
    train_means: (Vec<f64>, usize),
    /// The same at initialisation, if saved.
    initial_means: Option<(Vec<f64>, usize)>,
    /// The last layer W (K x d) and b.
    classifier: Classifier,
    train_features: Option<FeatureSet>,
    test_features: Option<FeatureSet>,
    /// The `data` setting of its config.json (None when the run has no readable config).
    data: Option<serde_json::Value>,
    /// The metric convention of its config.json (`nclab` when it names none).
    convention: serde_json::Value,
    /// The watched layers with their trained and untrained training class means.
    layers: Vec<RunLayer>,
}

struct RunLayer {
    info: LayerInfo,
    train_means: (Vec<f64>, usize),
    initial_means: Option<(Vec<f64>, usize)>,
}

/// One layer's comparison over all pairs, for a layer every run watched (same index, same
/// name).
#[derive(Debug, Serialize)]
pub struct LayerComparison {
    /// The layer's 1-based index (1 nearest the input) and name (`hidden2`, `stage3`).
    pub index: usize,
    pub name: String,
    /// As [`Comparison::means_procrustes`], with this layer's training class means.
    pub means_procrustes: Vec<Vec<Option<f64>>>,
    /// As [`Comparison::train_cka`], with this layer's features (`layer{i}_features` of
    /// features_train.npz; null where a run saved no features).
    pub train_cka: Vec<Vec<Option<f64>>>,
    /// Each run's trained class means at this layer against its untrained (epoch-0) ones.
    pub untrained_means_procrustes: Vec<Option<f64>>,
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
    /// Per watched layer, from the input to the last (empty unless every run watched layers
    /// and they share some).
    pub layers: Vec<LayerComparison>,
    /// Things a reader of the numbers should know (runs trained on different data, ...);
    /// not part of compare.json.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// A 2-D tensor of `final.safetensors` as (row-major f64 values, columns).
fn matrix(array: &NpyArray, path: &Path, key: &str) -> Result<(Vec<f64>, usize)> {
    match array.shape[..] {
        [_, cols] => Ok((array.to_f64_vec(), cols)),
        _ => Err(Error::invalid(
            path,
            format!("'{key}' has shape {:?}, expected 2-D", array.shape),
        )),
    }
}

fn load_run(dir: &Path) -> Result<RunData> {
    let layout = RunDir::at(dir);
    let path = layout.final_tensors();
    if !path.is_file() {
        return Err(Error::invalid(
            dir,
            "no final.safetensors (is the run finished? `nclab train` writes it at the end)",
        ));
    }
    let tensors = read_safetensors(&path)?;
    let get = |key: &str| {
        tensors
            .get(key)
            .ok_or_else(|| Error::invalid(&path, format!("missing tensor '{key}'")))
    };
    let means = get(final_tensors::TRAIN_CLASS_MEANS)?;
    let train_means = matrix(means, &path, final_tensors::TRAIN_CLASS_MEANS)?;
    let initial_means = tensors
        .get(final_tensors::INITIAL_TRAIN_CLASS_MEANS)
        .map(|m| matrix(m, &path, final_tensors::INITIAL_TRAIN_CLASS_MEANS))
        .transpose()?;
    let weight = get(final_tensors::WEIGHT)?;
    let weight_m = matrix(weight, &path, final_tensors::WEIGHT)?;
    let bias = get(final_tensors::BIAS)?.to_f64_vec();
    let num_classes = weight.shape[0];
    if means.shape[0] != num_classes || bias.len() != num_classes {
        return Err(Error::invalid(
            &path,
            "weight, bias and train_class_means disagree on the number of classes",
        ));
    }
    let features = |split: &str| -> Result<Option<FeatureSet>> {
        let p = layout.features(split);
        if p.is_file() {
            Ok(Some(load_feature_file(&p, &FeatureKeys::default())?))
        } else {
            Ok(None)
        }
    };
    let (weight, dim) = weight_m;
    let classifier =
        Classifier::new(num_classes, dim, weight, Some(bias)).map_err(|source| Error::Metrics {
            path: path.clone(),
            source,
        })?;
    let config = std::fs::read_to_string(layout.config())
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    let layers = config
        .as_ref()
        .map(watched_layers)
        .unwrap_or_default()
        .into_iter()
        .map(|info| -> Result<RunLayer> {
            let key = final_tensors::layer_train_class_means(info.index);
            let train_means = matrix(get(&key)?, &path, &key)?;
            let initial_key = final_tensors::layer_initial_train_class_means(info.index);
            let initial_means = tensors
                .get(&initial_key)
                .map(|m| matrix(m, &path, &initial_key))
                .transpose()?;
            Ok(RunLayer {
                info,
                train_means,
                initial_means,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunData {
        label: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        dir: dir.to_path_buf(),
        num_classes,
        train_means,
        initial_means,
        classifier,
        train_features: features("train")?,
        test_features: features("test")?,
        data: config.as_ref().and_then(|c| c.get("data").cloned()),
        convention: recorded_convention(config.as_ref().unwrap_or(&serde_json::Value::Null)),
        layers,
    })
}

/// The training features of `layer` of a run that saved features (`layer{i}_features`).
fn layer_features(run: &RunData, layer: &LayerInfo) -> Result<Option<FeatureSet>> {
    let path = RunDir::at(&run.dir).features("train");
    if !path.is_file() {
        return Ok(None);
    }
    let keys = FeatureKeys {
        features: final_tensors::layer_features(layer.index),
        ..FeatureKeys::default()
    };
    Ok(Some(load_feature_file(&path, &keys)?))
}

/// CKA of two feature sets matched sample by sample through their `indices`.
fn matched_cka(fa: &FeatureSet, fb: &FeatureSet) -> Result<nc_math::Result<f64>> {
    let pairs = matched_rows(fa, fb)?;
    let xa = gather(fa, pairs.iter().map(|p| p.0));
    let xb = gather(fb, pairs.iter().map(|p| p.1));
    Ok(linear_cka(&xa, fa.dim, &xb, fb.dim))
}

/// The layers every run watched (same index and name), in the first run's order.
fn shared_layers(runs: &[RunData]) -> Vec<LayerInfo> {
    runs[0]
        .layers
        .iter()
        .map(|l| &l.info)
        .filter(|info| {
            runs.iter().all(|r| {
                r.layers
                    .iter()
                    .any(|l| l.info.index == info.index && l.info.name == info.name)
            })
        })
        .cloned()
        .collect()
}

fn compare_layer(runs: &[RunData], info: &LayerInfo) -> Result<LayerComparison> {
    let n = runs.len();
    fn at(r: &RunData, index: usize) -> &RunLayer {
        r.layers
            .iter()
            .find(|l| l.info.index == index)
            .expect("a shared layer")
    }
    let features: Vec<Option<FeatureSet>> = runs
        .iter()
        .map(|r| layer_features(r, info))
        .collect::<Result<_>>()?;
    let untrained = runs
        .iter()
        .map(|r| {
            let l = at(r, info.index);
            l.initial_means
                .as_ref()
                .map(|(m, d)| procrustes_distance(m, *d, &l.train_means.0, l.train_means.1))
                .transpose()
        })
        .collect::<nc_math::Result<Vec<_>>>()?;
    let mut out = LayerComparison {
        index: info.index,
        name: info.name.clone(),
        means_procrustes: vec![vec![None; n]; n],
        train_cka: vec![vec![None; n]; n],
        untrained_means_procrustes: untrained,
    };
    for i in 0..n {
        for j in i..n {
            let context = |source| Error::Comparing {
                a: runs[i].dir.clone(),
                b: runs[j].dir.clone(),
                source,
            };
            let (ma, mb) = (
                &at(&runs[i], info.index).train_means,
                &at(&runs[j], info.index).train_means,
            );
            let mp = procrustes_distance(&ma.0, ma.1, &mb.0, mb.1).map_err(context)?;
            let cka = match (&features[i], &features[j]) {
                (Some(fa), Some(fb)) => Some(matched_cka(fa, fb)?.map_err(context)?),
                _ => None,
            };
            for (m, v) in [
                (&mut out.means_procrustes, Some(mp)),
                (&mut out.train_cka, cka),
            ] {
                m[i][j] = v;
                m[j][i] = v;
            }
        }
    }
    Ok(out)
}

/// Rows of `a` and `b` paired by their `indices` (rows without a partner are dropped).
fn matched_rows(a: &FeatureSet, b: &FeatureSet) -> Result<Vec<(usize, usize)>> {
    let (Some(ia), Some(ib)) = (&a.indices, &b.indices) else {
        return Err(Error::invalid(
            &a.path,
            format!(
                "{} or {} has no 'indices' to match samples by",
                a.path.display(),
                b.path.display()
            ),
        ));
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

fn predictions(set: &FeatureSet, classifier: &Classifier) -> Result<Vec<usize>> {
    let d = classifier.dim();
    if set.dim != d {
        return Err(Error::invalid(
            &set.path,
            format!(
                "features have dimension {} but the classifier expects {d}",
                set.dim
            ),
        ));
    }
    Ok((0..set.num_samples)
        .map(|r| classifier.predict(&set.row_f64(r)))
        .collect())
}

/// Compares every pair of the finished runs in `dirs` (two or more).
pub fn compare_runs(dirs: &[PathBuf]) -> Result<Comparison> {
    if dirs.len() < 2 {
        return Err(Error::setting(
            "runs",
            "compare needs at least two run directories",
        ));
    }
    let runs: Vec<RunData> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    let k = runs[0].num_classes;
    if let Some(r) = runs.iter().find(|r| r.num_classes != k) {
        return Err(Error::invalid(
            &r.dir,
            format!(
                "has {} classes but {} has {k}",
                r.num_classes,
                runs[0].dir.display()
            ),
        ));
    }
    if let Some(other) = runs.iter().find(|r| r.convention != runs[0].convention) {
        return Err(Error::invalid(
            &other.dir,
            format!(
                "computes its metrics under the convention {} but {} under {}: compare runs of one convention",
                other.convention,
                runs[0].dir.display(),
                runs[0].convention
            ),
        ));
    }
    let mut warnings = Vec::new();
    if let Some(other) = runs.iter().find(|r| r.data != runs[0].data) {
        let describe = |r: &RunData| {
            r.data
                .as_ref()
                .map_or("unknown data".to_string(), |d| d.to_string())
        };
        warnings.push(format!(
            "{} and {} were trained on different data ({} vs {}): their features need not be comparable",
            runs[0].dir.display(),
            other.dir.display(),
            describe(&runs[0]),
            describe(other)
        ));
    }
    let test_predictions: Vec<Option<Vec<usize>>> = runs
        .iter()
        .map(|r| {
            r.test_features
                .as_ref()
                .map(|t| predictions(t, &r.classifier))
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
        layers: vec![],
        warnings,
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
            let context = |source| Error::Comparing {
                a: a.dir.clone(),
                b: b.dir.clone(),
                source,
            };
            let mp = procrustes_distance(
                &a.train_means.0,
                a.train_means.1,
                &b.train_means.0,
                b.train_means.1,
            )
            .map_err(context)?;
            let (wa, wb) = (&a.classifier, &b.classifier);
            let cp = procrustes_distance(wa.weight(), wa.dim(), wb.weight(), wb.dim())
                .map_err(context)?;
            let cka = match (&a.train_features, &b.train_features) {
                (Some(fa), Some(fb)) => Some(matched_cka(fa, fb)?.map_err(context)?),
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
    out.layers = shared_layers(&runs)
        .iter()
        .map(|info| compare_layer(&runs, info))
        .collect::<Result<_>>()?;
    Ok(out)
}

/// The mean of a symmetric matrix's entries above the diagonal (the distinct pairs) that are
/// present; None when there are none.
pub fn mean_over_pairs(m: &[Vec<Option<f64>>]) -> Option<f64> {
    let values: Vec<f64> = m
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().skip(i + 1).flatten().copied())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A plain-text matrix of one quantity over all pairs, 4 decimals, `n/a` where missing.
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

impl Comparison {
    /// The pairwise matrices with their names, in the column order of `compare.csv`.
    pub fn matrices(&self) -> [(&'static str, &Vec<Vec<Option<f64>>>); 5] {
        [
            ("means_procrustes", &self.means_procrustes),
            ("classifier_procrustes", &self.classifier_procrustes),
            ("train_cka", &self.train_cka),
            ("test_prediction_agreement", &self.test_prediction_agreement),
            ("per_class_accuracy_gap", &self.per_class_accuracy_gap),
        ]
    }

    /// Writes `compare.json` and `compare.csv` (one row per ordered pair) into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let json_path = out.join("compare.json");
        let json = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: json_path.clone(),
            source,
        })?;
        nc_data::io::write_atomic_bytes(&json_path, json.as_bytes())?;
        let metrics = self.matrices();
        let mut csv = String::from("run_a,run_b");
        for (name, _) in &metrics {
            let _ = write!(csv, ",{name}");
        }
        csv.push('\n');
        for (i, a) in self.runs.iter().enumerate() {
            for (j, b) in self.runs.iter().enumerate() {
                let _ = write!(csv, "{a},{b}");
                for (_, m) in &metrics {
                    let _ = write!(csv, ",{}", m[i][j].map_or(String::new(), |v| v.to_string()));
                }
                csv.push('\n');
            }
        }
        nc_data::io::write_atomic_bytes(&out.join("compare.csv"), csv.as_bytes())?;
        if !self.layers.is_empty() {
            nc_data::io::write_atomic_bytes(
                &out.join("compare_layers.csv"),
                self.layers_csv().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// `compare_layers.csv`: one row per layer and ordered pair of runs.
    pub fn layers_csv(&self) -> String {
        let mut csv = String::from("layer,name,run_a,run_b,means_procrustes,train_cka\n");
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for l in &self.layers {
            for (i, a) in self.runs.iter().enumerate() {
                for (j, b) in self.runs.iter().enumerate() {
                    let _ = writeln!(
                        csv,
                        "{},{},{a},{b},{},{}",
                        l.index,
                        l.name,
                        cell(l.means_procrustes[i][j]),
                        cell(l.train_cka[i][j])
                    );
                }
            }
        }
        csv
    }

    /// A Markdown section on how far apart the runs are at each watched layer (means over
    /// the distinct pairs), with the layer where they differ most; empty without layers.
    pub fn depth_markdown(&self) -> String {
        if self.layers.is_empty() {
            return String::new();
        }
        let mut md = String::from(
            "## Through depth: how far apart the runs are at each layer\n\n\
             Means over the distinct pairs of runs (docs/metrics.md, \"Comparing runs\"): the \
             class-mean Procrustes distance (0 = the same geometry up to rotation and scale) and \
             the linear CKA of the training features (1 = the same up to rotation and scale; \
             needs --save-features), beside each run's distance from its own untrained network \
             at that layer (mean over runs).\n\n\
             | layer | class-mean Procrustes | CKA | untrained baseline |\n|---|---|---|---|\n",
        );
        let fmt = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.4}"));
        let mut by_layer = Vec::new();
        for l in &self.layers {
            let distance = mean_over_pairs(&l.means_procrustes);
            let present: Vec<f64> = l
                .untrained_means_procrustes
                .iter()
                .flatten()
                .copied()
                .collect();
            let baseline =
                (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64);
            let _ = writeln!(
                md,
                "| {} ({}) | {} | {} | {} |",
                l.index,
                l.name,
                fmt(distance),
                fmt(mean_over_pairs(&l.train_cka)),
                fmt(baseline)
            );
            if let Some(d) = distance {
                by_layer.push((l, d));
            }
        }
        let most = by_layer.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        let least = by_layer.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(most), Some(least), Some(last)) = (most, least, by_layer.last()) {
            let _ = writeln!(
                md,
                "\nThe runs' class means differ most at layer {} ({}, {:.4}) and least at layer {} ({}, {:.4}); at the last watched layer ({}) the distance is {:.4}.",
                most.0.index, most.0.name, most.1, least.0.index, least.0.name, least.1, last.0.name, last.1
            );
        }
        md
    }
}
