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
