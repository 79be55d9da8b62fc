//! `nclab analyze FILE...`: every metric of the specification on a feature file, or on a
//! feature set split across several files (computed by `nc_experiments::sharded`), as a table
//! or JSON; and the per-shard phases that a batch scheduler runs on separate machines.

use crate::args::{expand_globs, user_error, ConventionArgs};
use anyhow::{bail, Result};
use nc_data::classifier::load_classifier;
use nc_data::features::FeatureKeys;
use nc_data::partial_state::PartialState;
use nc_experiments::partial::write_state_file;
use nc_experiments::sharded::{
    analyze_shards, means_of_state_file, means_state, ShardRequest, Shards,
};
use nc_math::metrics::{Convention, NcMetrics};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    after_help = "Several files (or a quoted glob such as 'feats/shard-*.npz') are one \
feature set split into shards: the metrics are those of all their rows together, both phases \
streaming over the shards in parallel. Across machines, run the phases as separate commands:

  nclab analyze --phase means   SHARD --out SHARD.means      (one job per shard)
  nclab merge   *.means --out all.means
  nclab analyze --phase scatter SHARD --means all.means --out SHARD.scatter
  nclab merge   *.scatter --means all.means [--classifier-from SHARD]

Metric definitions: see `docs/metrics.md` or the README. Exit status 2 on bad input."
)]
pub struct Args {
    /// Feature file(s): .npz, .safetensors, a PyTorch .pt/.pth file (torch.save of a dict of
    /// tensors; read without running pickled code), or a directory of <key>.npy files,
    /// holding `features` (N x d), `labels` (N) and optionally `weight` (K x d) and `bias` (K).
    /// In .pt files, names are dotted paths (`fc.weight`; nested `state_dict` resolved).
    /// Several files (or globs) are shards of one feature set.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
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
    /// for test data may not look at test labels. Read with the same keys. May also be a
    /// phase-1 state (`--phase means`, merged), e.g. of a sharded training split.
    #[arg(long, value_name = "FILE")]
    pub means_from: Option<PathBuf>,
    /// Take the classifier from this checkpoint instead of FILE (a .pt/.pth or .safetensors
    /// state dict, or .npz): `--weight-key` (default `weight`) names its K x d weight, which
    /// must exist, and `--bias-key` its bias (default: `X.bias` for a weight `X.weight`, else
    /// `bias`; optional unless named). Nested `state_dict` containers are resolved. FILE's own
    /// classifier (under `weight`/`bias`), if any, is replaced.
    #[arg(long, value_name = "CKPT")]
    pub classifier_from: Option<PathBuf>,
    /// The number of classes K, for shards whose labels do not reach the last class
    /// [default: the classifier's rows, else the largest label + 1 over all files].
    #[arg(long, value_name = "K")]
    pub num_classes: Option<usize>,
    /// `all`: the metrics. `means`: only phase 1 (class counts and sums), written to --out
    /// as a partial state for `nclab merge`. `scatter`: only phase 2, with the merged means
    /// of --means, written to --out.
    #[arg(long, value_enum, default_value = "all")]
    pub phase: Phase,
    /// The merged phase-1 state (`nclab merge` of the `--phase means` states) that
    /// `--phase scatter` centres on.
    #[arg(long, value_name = "STATE")]
    pub means: Option<PathBuf>,
    /// Where `--phase means|scatter` writes its partial state (atomically).
    #[arg(long, value_name = "STATE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub convention: ConventionArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    All,
    Means,
    Scatter,
}

/// The classifier flags shared with `nclab merge`: the checkpoint read with the weight and
/// bias names (the bias defaulting to `X.bias` for a weight `X.weight`).
pub fn classifier_from(
    ckpt: &Path,
    weight_key: Option<&str>,
    bias_key: Option<&str>,
) -> Result<nc_data::classifier::LoadedClassifier> {
    let defaults = FeatureKeys::default();
    let weight = weight_key.unwrap_or(&defaults.weight);
    let bias = match bias_key {
        Some(b) => b.to_string(),
        None => match weight.strip_suffix(".weight") {
            Some(layer) => format!("{layer}.bias"),
            None => defaults.bias,
        },
    };
    Ok(load_classifier(
        ckpt,
        weight,
        &bias,
        bias_key.is_some(),
        None,
    )?)
}

/// What the files are called in messages and the table's first line.
pub fn describe_files(files: &[PathBuf]) -> String {
    match files {
        [one] => one.display().to_string(),
        [first, .., last] => format!(
            "{} files ({} ... {})",
            files.len(),
            first.display(),
            last.display()
        ),
        [] => String::new(),
    }
}

pub fn run(args: Args) -> Result<()> {
    let files = expand_globs(&args.files)?;
    let convention = args.convention.convention();
    let defaults = FeatureKeys::default();
    let classifier = match &args.classifier_from {
        Some(ckpt) => Some(classifier_from(
            ckpt,
            args.weight_key.as_deref(),
            args.bias_key.as_deref(),
        )?),
        None => None,
    };
    // With --classifier-from the weight and bias names are the checkpoint's; the files' own
    // classifier (under the default names) is replaced.
    let keys = FeatureKeys {
        features: args.features_key.clone(),
        labels: args.labels_key.clone(),
        weight: match (&classifier, &args.weight_key) {
            (None, Some(w)) => w.clone(),
            _ => defaults.weight,
        },
        bias: match (&classifier, &args.bias_key) {
            (None, Some(b)) => b.clone(),
            _ => defaults.bias,
        },
    };
    let request = ShardRequest {
        files: files.clone(),
        keys,
        weight_required: classifier.is_none() && args.weight_key.is_some(),
        bias_required: classifier.is_none() && args.bias_key.is_some(),
        num_classes: args.num_classes,
        classifier,
        means_from: args.means_from.clone(),
        convention,
    };
    match args.phase {
        Phase::All => {
            for (flag, given) in [
                ("--out", args.out.is_some()),
                ("--means", args.means.is_some()),
            ] {
                if given {
                    bail!("{flag} belongs to --phase means|scatter; the default phase prints the metrics");
                }
            }
            let metrics = analyze_shards(&request).map_err(user_error)?;
            print_metrics(
                &describe_files(&files),
                args.means_from.as_deref(),
                &metrics,
                args.json,
            )
        }
        Phase::Means => {
            let Some(out) = &args.out else {
                bail!("--phase means needs --out STATE, the file its partial state is written to");
            };
            if args.means.is_some() || args.means_from.is_some() {
                bail!("--means and --means-from belong to phase 2 (--phase scatter): phase 1 sums the features per class");
            }
            let part = means_state(&request).map_err(user_error)?;
            let rows: u64 = part.counts.iter().sum();
            let (k, d) = (part.num_classes, part.dim);
            write_state_file(out, &PartialState::Means(part)).map_err(user_error)?;
            eprintln!(
                "phase 1 of {}: {rows} rows, K = {k}, d = {d} -> {}",
                describe_files(&files),
                out.display()
            );
            Ok(())
        }
        Phase::Scatter => {
            let (Some(out), Some(means)) = (&args.out, &args.means) else {
                bail!("--phase scatter needs --means STATE (the merged phase-1 state) and --out STATE");
            };
            let means = means_of_state_file(means).map_err(user_error)?;
            let shards = Shards::open(&request).map_err(user_error)?;
            let reference = shards.reference(&request).map_err(user_error)?;
            let part = shards
                .scatter_part(&means, reference.as_ref(), &convention)
                .map_err(user_error)?;
            let rows: u64 = part.class_counts.iter().sum();
            write_state_file(out, &PartialState::Scatter(part)).map_err(user_error)?;
            eprintln!(
                "phase 2 of {}: {rows} rows -> {}",
                describe_files(&files),
                out.display()
            );
            Ok(())
        }
    }
}

/// Prints the metrics as JSON or as the table.
pub fn print_metrics(
    source: &str,
    means_from: Option<&Path>,
    metrics: &NcMetrics,
    json: bool,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(metrics)?);
    } else {
        print!("{}", table(source, means_from, metrics));
    }
    Ok(())
}

/// A readable table: value and what the number means.
pub fn table(source: &str, means_from: Option<&Path>, m: &NcMetrics) -> String {
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
        source,
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
