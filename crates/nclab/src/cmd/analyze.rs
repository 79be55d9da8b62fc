//! `nclab analyze FILE`: every metric of the specification on a feature file.

use anyhow::{bail, Context, Result};
use nc_data::features::{load_feature_file, FeatureKeys, FeatureSet, FloatData};
use nc_data::DType;
use nc_math::metrics::{
    ClassMeans, Classifier, LeF32, LeF64, MeanAccumulator, MetricsPlan, NcMetrics,
};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    after_help = "Metric definitions: see `docs/metrics.md` or the README. Exit status 2 on bad input."
)]
pub struct Args {
    /// Feature file: .npz, .safetensors, or a directory of <key>.npy files, holding
    /// `features` (N x d), `labels` (N) and optionally `weight` (K x d) and `bias` (K).
    pub file: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Name of the N x d feature array.
    #[arg(long, default_value = "features")]
    pub features_key: String,
    /// Name of the N-vector of integer labels 0..K-1.
    #[arg(long, default_value = "labels")]
    pub labels_key: String,
    /// Name of the K x d classifier weight [default: weight]. Under the default name it is
    /// optional (no classifier metrics without it); a name given here must exist.
    #[arg(long, value_name = "NAME")]
    pub weight_key: Option<String>,
    /// Name of the K classifier bias [default: bias]. Under the default name it is optional
    /// (b = 0 without it); a name given here must exist.
    #[arg(long, value_name = "NAME")]
    pub bias_key: Option<String>,
    /// Take the class means of the nearest-class-centre rule (`nc4`, `ncc_accuracy`) from
    /// this feature file (e.g. the training split's) instead of FILE itself: a decision rule
    /// for test data may not look at test labels. Read with the same keys.
    #[arg(long, value_name = "FILE")]
    pub means_from: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let defaults = FeatureKeys::default();
    let keys = FeatureKeys {
        features: args.features_key.clone(),
        labels: args.labels_key.clone(),
        weight: args.weight_key.clone().unwrap_or(defaults.weight),
        bias: args.bias_key.clone().unwrap_or(defaults.bias),
    };
    let set = load_feature_file(&args.file, &keys)?;
    // A name the user typed is a request: a typo must not quietly drop the classifier.
    let asked = [
        ("--weight-key", &args.weight_key, set.weight.is_some()),
        ("--bias-key", &args.bias_key, set.bias.is_some()),
    ];
    for (flag, key, found) in asked {
        if let (Some(key), false) = (key, found) {
            bail!(
                "{}: no array '{key}' (named by {flag}); leave {flag} out if the file has none",
                args.file.display()
            );
        }
    }
    let reference = match &args.means_from {
        Some(path) => Some(class_means_of(
            &load_feature_file(path, &keys)?,
            num_classes(&set)?,
        )?),
        None => None,
    };
    let metrics = analyze(&set, reference.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print!(
            "{}",
            table(&args.file, args.means_from.as_deref(), &metrics)
        );
    }
    Ok(())
}

/// K: the rows of `weight` when the file has one, else the largest label + 1.
fn num_classes(set: &FeatureSet) -> Result<usize> {
    match set.num_classes_weight {
        Some(k) => Ok(k),
        None => match set.labels.iter().max() {
            Some(&max) => Ok(max as usize + 1),
            None => bail!("{}: the file holds no samples", set.path.display()),
        },
    }
}

fn with_path<T>(path: &Path, result: nc_math::Result<T>) -> Result<T> {
    result.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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
                    let $features = LeF32::slice_from_bytes(mapped.bytes())
                        .context("internal: mapped float32 data of a partial element")?;
                    $body
                }
                _ => {
                    let $features = LeF64::slice_from_bytes(mapped.bytes())
                        .context("internal: mapped float64 data of a partial element")?;
                    $body
                }
            },
        }
    };
}

/// Phase 1 over a file's features: its class means, checked against K.
fn class_means_of(set: &FeatureSet, num_classes: usize) -> Result<ClassMeans> {
    let mut acc = MeanAccumulator::new(num_classes, set.dim);
    let added = with_stored_features!(set, |features| acc.add_batch(features, &set.labels));
    with_path(&set.path, added)?;
    with_path(&set.path, acc.finish())
}

/// Both phases over the features of one file, in their stored precision.
pub fn analyze(set: &FeatureSet, reference: Option<&ClassMeans>) -> Result<NcMetrics> {
    let k = num_classes(set)?;
    let path = &set.path;
    let classifier = match &set.weight {
        Some(weight) => Some(with_path(
            path,
            Classifier::new(k, set.dim, weight.clone(), set.bias.clone()),
        )?),
        None => None,
    };
    if let Some(reference) = reference {
        if reference.dim() != set.dim || reference.num_classes() != k {
            bail!(
                "{}: the reference means are {} classes x {} dims, expected {k} x {} like the features",
                path.display(),
                reference.num_classes(),
                reference.dim(),
                set.dim
            );
        }
    }
    let means = class_means_of(set, k)?;
    let plan = with_path(
        path,
        MetricsPlan::new(&means, classifier.as_ref(), reference),
    )
    .with_context(|| format!("cannot measure {}", path.display()))?;
    let mut scatter = plan.accumulator();
    let added = with_stored_features!(set, |features| scatter.add_batch(features, &set.labels));
    with_path(path, added)?;
    with_path(path, scatter.finish())
}

/// A readable table: value and what the number means.
fn table(file: &Path, means_from: Option<&Path>, m: &NcMetrics) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), format_value);
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "nc1",
            format_value(m.nc1),
            "tr(Sigma_W Sigma_B^+)/K: within-class variability",
        ),
        (
            "nc2",
            opt(m.nc2),
            "distance of centred W W^T from a simplex ETF",
        ),
        (
            "nc3",
            opt(m.nc3),
            "distance of Wc M from a simplex ETF (self-duality)",
        ),
        (
            "nc4",
            opt(m.nc4),
            "fraction where argmax(Wh+b) != nearest class mean",
        ),
        ("bias_relation", opt(m.bias_relation), "||W mu_G + b||"),
        ("accuracy", opt(m.accuracy), "argmax(Wh+b) == label"),
        (
            "ncc_accuracy",
            format_value(m.ncc_accuracy),
            "nearest class mean == label",
        ),
        (
            "equinorm_w",
            opt(m.equinorm_w),
            "std/mean of the row norms of centred W",
        ),
        (
            "equinorm_h",
            format_value(m.equinorm_h),
            "std/mean of the norms of centred class means",
        ),
        (
            "equiangle_w",
            opt(m.equiangle_w),
            "mean |cos + 1/(K-1)| over pairs of centred W rows",
        ),
        (
            "equiangle_h",
            format_value(m.equiangle_h),
            "mean |cos + 1/(K-1)| over pairs of centred means",
        ),
        (
            "nc2_means",
            format_value(m.nc2_means),
            "distance of M^T M from a simplex ETF",
        ),
        (
            "cdnv",
            format_value(m.cdnv),
            "class-distance normalised variance",
        ),
    ];
    let mut out = format!(
        "{}: N = {}, K = {}, d = {}, rank(Sigma_B) = {}{}\n",
        file.display(),
        m.num_samples,
        m.num_classes,
        m.dim,
        m.sigma_b_rank,
        means_from.map_or(String::new(), |p| format!(
            ", NCC means from {}",
            p.display()
        ))
    );
    for (name, value, meaning) in rows {
        out.push_str(&format!("  {name:<14} {value:>14}   {meaning}\n"));
    }
    out
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "undefined".to_string()
    } else if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        format!("{v:.6}")
    } else {
        format!("{v:.4e}")
    }
}
