//! Argument groups and conversions shared by several subcommands, and the one mapping from
//! the libraries' setting names to this command line's flags.

use nc_math::loss::{Loss, LossKind, LossParams, DEFAULT_ALPHA, DEFAULT_GAMMA, DEFAULT_RESCALE};

/// Parses a loss name (`ce`, `ls`, `fl`, `mse`) into the library's kind; `--help` lists them.
pub fn loss_kind_parser() -> impl clap::builder::TypedValueParser<Value = LossKind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(
        LossKind::ALL.map(|k| clap::builder::PossibleValue::new(k.name()).help(k.description())),
    )
    .map(|name| name.parse::<LossKind>().expect("a listed loss name"))
}

/// The parameters of the losses that have one (`ls`, `fl`, `mse`), with the official
/// defaults. Shared by `train`, `ufm` and `landscape`.
#[derive(clap::Args, Debug, Clone)]
pub struct LossParamsArgs {
    /// Smoothing alpha of `ls`, in [0, 1).
    #[arg(long, default_value_t = DEFAULT_ALPHA, allow_hyphen_values = true)]
    pub alpha: f64,
    /// Focusing parameter gamma of `fl`, >= 0.
    #[arg(long, default_value_t = DEFAULT_GAMMA, allow_hyphen_values = true)]
    pub gamma: f64,
    /// Target scale of `mse`: the true class's target is this, the others 0.
    #[arg(long, default_value_t = DEFAULT_RESCALE, allow_hyphen_values = true)]
    pub rescale: f64,
}

impl LossParamsArgs {
    pub fn params(&self) -> LossParams {
        LossParams {
            alpha: self.alpha,
            gamma: self.gamma,
            rescale: self.rescale,
        }
    }

    /// `kind` with its parameter from these flags.
    pub fn loss(&self, kind: LossKind) -> Loss {
        kind.with_params(self.params())
    }
}

/// The flag that sets the library setting `field` (`data_dir` -> `--data-dir`).
pub fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

/// A library error in this command line's words: settings are named by their flags.
pub fn user_error(err: nc_experiments::Error) -> anyhow::Error {
    use nc_experiments::Error;
    match err {
        Error::Setting { field, msg } => anyhow::anyhow!("{}: {msg}", flag(field)),
        Error::MissingRequestedArray { path, key, field } => {
            let flag = flag(field);
            anyhow::anyhow!(
                "{}: no array '{key}' (named by {flag}); leave {flag} out if the file has none",
                path.display()
            )
        }
        Error::RunDirNotEmpty { path } => anyhow::anyhow!(
            "run directory {}: exists and is not empty (use --resume DIR to continue a run, or a new --out)",
            path.display()
        ),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_reported_under_their_flags() {
        let err = user_error(nc_experiments::Error::Setting {
            field: "data_dir",
            msg: "needed".into(),
        });
        assert_eq!(err.to_string(), "--data-dir: needed");
        let err = user_error(nc_experiments::Error::MissingRequestedArray {
            path: "f.npz".into(),
            key: "W".into(),
            field: "weight_key",
        });
        assert_eq!(
            err.to_string(),
            "f.npz: no array 'W' (named by --weight-key); leave --weight-key out if the file has none"
        );
    }
}

/// The values of one convention switch, each with its meaning, for `--help`.
fn switch_values<T: Copy + 'static>(
    all: &'static [T],
    name: fn(T) -> &'static str,
    meaning: fn(T) -> &'static str,
) -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        all.iter()
            .map(|&v| clap::builder::PossibleValue::new(name(v)).help(meaning(v))),
    )
}

macro_rules! convention_args {
    ($($(#[$doc:meta])* $field:ident: $switch:literal = $ty:ident,)+) => {
        /// The metric convention (docs/metrics.md, "Conventions"): a preset, and switches
        /// that override it one by one. Shared by every subcommand that computes metrics.
        #[derive(clap::Args, Debug, Clone)]
        #[command(next_help_heading = "Metric convention")]
        pub struct ConventionArgs {
            /// The formulas: a preset (nclab: docs/metrics.md; zhou2022: jinxinzhou/nc_loss;
            /// zhu2021: tding1/Neural-Collapse; papyan2020: the neuralcollapse notebook;
            /// rhubarbwu: rhubarbwu/neural-collapse defaults; nctoolbox: felixsh/nc-toolbox),
            /// optionally followed by switches, e.g. `zhou2022+nc4=agreement`. The flags
            /// below override single switches.
            #[arg(long, default_value = "nclab", value_name = "PRESET[+SWITCH=VALUE,...]",
                value_parser = |text: &str| text.parse::<nc_math::metrics::Convention>().map_err(|e| e.to_string()))]
            pub convention: nc_math::metrics::Convention,
            $(
                $(#[$doc])*
                #[arg(long, value_name = "VALUE", value_parser = switch_values(
                    nc_math::metrics::convention::$ty::ALL,
                    nc_math::metrics::convention::$ty::name,
                    nc_math::metrics::convention::$ty::meaning,
                ))]
                pub $field: Option<String>,
            )+
        }

        impl ConventionArgs {
            /// The preset with the switches given on the command line applied.
            pub fn convention(&self) -> nc_math::metrics::Convention {
                let mut convention = self.convention;
                $(
                    if let Some(value) = &self.$field {
                        convention
                            .set($switch, value)
                            .expect("clap checked the value against the switch's list");
                    }
                )+
                convention
            }
        }
    };
}

convention_args! {
    /// Whether nc1 is divided by K.
    nc1_scale: "nc1-scale" = Nc1Scale,
    /// The global mean that centres the class means.
    global_mean: "global-mean" = GlobalMean,
    /// The classifier rows of nc2, nc3, equinorm_w and equiangle_w.
    weight: "weight" = WeightCentring,
    /// Which eigenvalues of Sigma_B its pseudo-inverse keeps.
    pinv: "pinv" = PinvCutoff,
    /// The form of nc3.
    nc3: "nc3" = Nc3Form,
    /// The form of equinorm_w and equinorm_h.
    equinorm: "equinorm" = Equinorm,
    /// The form of equiangle_w and equiangle_h.
    equiangle: "equiangle" = Equiangle,
    /// Whether nc4 counts disagreements or agreements.
    nc4: "nc4" = Nc4Form,
    /// The classifier decision nc4 compares with the nearest class mean.
    nc4_bias: "nc4-bias" = Nc4Bias,
    /// The per-class variance of cdnv.
    cdnv_variance: "cdnv-variance" = CdnvVariance,
}

/// The paths of `args`, with each argument that holds a glob pattern (`*`, `?`, `[`) and
/// names no existing file replaced by its matches in sorted order: a quoted glob works where
/// no shell expands it (a batch script, a long list of shards). A pattern that matches
/// nothing is an error.
pub fn expand_globs(args: &[std::path::PathBuf]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        if arg.exists() || !text.contains(['*', '?', '[']) {
            files.push(arg.clone());
            continue;
        }
        let pattern = glob::glob(&text)
            .map_err(|e| anyhow::anyhow!("{text}: not a valid glob pattern: {e}"))?;
        let mut matched = pattern
            .map(|entry| entry.map_err(|e| anyhow::anyhow!("{text}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if matched.is_empty() {
            anyhow::bail!("{text}: no file matches this pattern");
        }
        matched.sort();
        files.extend(matched);
    }
    Ok(files)
}
