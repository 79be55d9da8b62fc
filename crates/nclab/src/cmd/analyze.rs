//! `nclab analyze FILE`: every metric of the specification on a feature file (computed by
//! `nc_experiments::analysis`), as a table or JSON.

use crate::args::{user_error, ConventionArgs};
use anyhow::Result;
use nc_data::classifier::load_classifier;
use nc_data::features::{load_feature_file, FeatureKeys};
use nc_experiments::analysis::{analyze, class_means_of, num_classes, AnalysisRequest};
use nc_math::metrics::{Convention, NcMetrics};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    after_help = "Metric definitions: see `docs/metrics.md` or the README. Exit status 2 on bad input."
)]
pub struct Args {
    /// Feature file: .npz, .safetensors, a PyTorch .pt/.pth file (torch.save of a dict of
    /// tensors; read without running pickled code), or a directory of <key>.npy files,
    /// holding `features` (N x d), `labels` (N) and optionally `weight` (K x d) and `bias` (K).
    /// In .pt files, names are dotted paths (`fc.weight`; nested `state_dict` resolved).
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
    /// Take the classifier from this checkpoint instead of FILE (a .pt/.pth or .safetensors
    /// state dict, or .npz): `--weight-key` (default `weight`) names its K x d weight, which
    /// must exist, and `--bias-key` its bias (default: `X.bias` for a weight `X.weight`, else
    /// `bias`; optional unless named). Nested `state_dict` containers are resolved. FILE's own
    /// classifier (under `weight`/`bias`), if any, is replaced.
    #[arg(long, value_name = "CKPT")]
    pub classifier_from: Option<PathBuf>,
    #[command(flatten)]
    pub convention: ConventionArgs,
}

pub fn run(args: Args) -> Result<()> {
    let convention = args.convention.convention();
    let defaults = FeatureKeys::default();
    let request = AnalysisRequest {
        file: args.file.clone(),
        keys: FeatureKeys {
            features: args.features_key.clone(),
            labels: args.labels_key.clone(),
            weight: args.weight_key.clone().unwrap_or(defaults.weight),
            bias: args.bias_key.clone().unwrap_or(defaults.bias),
        },
        weight_required: args.weight_key.is_some(),
        bias_required: args.bias_key.is_some(),
        means_from: args.means_from.clone(),
        convention,
    };
    let metrics = match &args.classifier_from {
        None => request.run().map_err(user_error)?,
        Some(ckpt) => with_classifier_from(&request, ckpt, args.bias_key.is_some())?,
    };
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

/// The metrics of the request's features with the classifier of the checkpoint `ckpt`.
fn with_classifier_from(
    request: &AnalysisRequest,
    ckpt: &Path,
    bias_named: bool,
) -> Result<NcMetrics> {
    // FILE is read with its classifier under the default names, which the checkpoint's
    // replaces; the request's weight and bias names are the checkpoint's.
    let file_keys = FeatureKeys {
        features: request.keys.features.clone(),
        labels: request.keys.labels.clone(),
        ..FeatureKeys::default()
    };
    let mut set = load_feature_file(&request.file, &file_keys)?;
    let bias_key = if bias_named {
        request.keys.bias.clone()
    } else {
        match request.keys.weight.strip_suffix(".weight") {
            Some(layer) => format!("{layer}.bias"),
            None => request.keys.bias.clone(),
        }
    };
    let classifier = load_classifier(
        ckpt,
        &request.keys.weight,
        &bias_key,
        bias_named,
        Some(set.dim),
    )?;
    set.weight = Some(classifier.weight);
    set.num_classes_weight = Some(classifier.num_classes);
    set.bias = classifier.bias;
    let reference = match &request.means_from {
        Some(path) => Some(
            class_means_of(
                &load_feature_file(path, &file_keys)?,
                num_classes(&set).map_err(user_error)?,
            )
            .map_err(user_error)?,
        ),
        None => None,
    };
    analyze(&set, reference.as_ref(), &request.convention).map_err(user_error)
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
        (
            "nc1_trace_ratio",
            opt(m.nc1_trace_ratio),
            "tr(Sigma_W) / tr(Sigma_B)",
        ),
        (
            "gnc2_log_h",
            opt(m.gnc2_log_h),
            "mean log(1/||x_k - x_l||), normalised centred means",
        ),
        (
            "gnc2_riesz_h",
            opt(m.gnc2_riesz_h),
            "mean 1/||x_k - x_l||, normalised centred means",
        ),
        (
            "gnc2_log_w",
            opt(m.gnc2_log_w),
            "mean log(1/||x_k - x_l||), normalised W rows",
        ),
        (
            "gnc2_riesz_w",
            opt(m.gnc2_riesz_w),
            "mean 1/||x_k - x_l||, normalised W rows",
        ),
        ("gnc3", opt(m.gnc3), "mean 1 - cos(w_k, mu_k - mu_G)"),
        (
            "gnc2_margin_w",
            opt(m.gnc2_margin_w),
            "min_k distance of x_k to the hull of the other rows",
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
    if m.convention != Convention::NCLAB {
        // The meanings below are the specification's; say which formulas the numbers follow.
        out.push_str(&format!(
            "convention: {} (formulas in docs/metrics.md, \"Conventions\")\n",
            m.convention
        ));
    }
    for (name, value, meaning) in rows {
        out.push_str(&format!("  {name:<15} {value:>14}   {meaning}\n"));
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
