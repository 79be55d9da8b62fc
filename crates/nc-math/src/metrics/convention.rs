//! Named metric conventions: the choices on which published neural-collapse codebases
//! differ (docs/metrics.md, "Conventions"), each a switch with named values, and presets
//! that set every switch the way one codebase does.
//!
//! A convention changes formulas, never the data path: both phases stream the same way,
//! and the default ([`Convention::NCLAB`]) gives exactly the numbers of the specification.
//! Its text form is a preset name, optionally followed by switches that differ from it:
//! `zhou2022`, `nclab+global-mean=class-means,nc3=duality`. That text is what outputs
//! (`--json`, `metrics.jsonl`, partial states) record, and what `--convention` reads.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Defines a switch: an enum whose values have kebab-case names and a one-line meaning.
macro_rules! switch {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal: $meaning:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order `--help` lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value's name on the command line and in outputs.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// What the value means, for help texts.
            pub fn meaning(self) -> &'static str {
                match self {
                    $($name::$variant => $meaning,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.name() == text)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "unknown value '{text}' (expected one of {})",
                            Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
                        ))
                    })
            }
        }
    };
}

switch! {
    /// Whether `nc1` is divided by K.
    Nc1Scale {
        PerClass = "per-class": "tr(Sigma_W Sigma_B^+) / K",
        Total = "total": "tr(Sigma_W Sigma_B^+), not divided by K",
    }
}

switch! {
    /// The global mean mu_G that centres the class means (Sigma_B, `nc2_means`, `nc3`,
    /// equinorm and equiangle of the means, `bias_relation`). The nearest-class-centre
    /// rule and `cdnv` use differences of means and do not depend on it.
    GlobalMean {
        Samples = "samples": "the mean of all samples (count-weighted mean of the class means)",
        ClassMeans = "class-means": "the unweighted mean of the K class means",
    }
}

switch! {
    /// The classifier rows of `nc2`, `nc3`, `equinorm_w`, `equiangle_w`, `gnc2_log_w`,
    /// `gnc2_riesz_w`, `gnc3` and `gnc2_margin_w`.
    WeightCentring {
        Centred = "centred": "W minus its mean row",
        Raw = "raw": "W as given",
    }
}

switch! {
    /// Which eigenvalues lambda_j = s_j^2 / K of Sigma_B its pseudo-inverse keeps (s_j: the
    /// singular values of the centred means, computed in f64).
    PinvCutoff {
        /// The specification's rule.
        Nclab = "nclab": "s_j > 1e-8 s_1 (lambda_j > 1e-16 lambda_1)",
        /// `scipy.linalg.pinv` and `torch.linalg.pinv` defaults on a d x d float32 matrix.
        DimEpsF32 = "dim-eps-f32": "lambda_j > d eps_f32 lambda_1 (scipy/torch pinv defaults of a float32 d x d matrix)",
        /// `scipy.linalg.pinv` and `torch.linalg.pinv` defaults on a d x d float64 matrix.
        DimEpsF64 = "dim-eps-f64": "lambda_j > d eps_f64 lambda_1 (scipy/torch pinv defaults of a float64 d x d matrix)",
        /// `numpy.linalg.pinv` default (`rcond=1e-15`).
        Rcond15 = "rcond-1e-15": "lambda_j > 1e-15 lambda_1 (numpy.linalg.pinv default)",
        /// `scipy.sparse.linalg.svds(k=K-1)` or a full SVD truncated to K-1 values.
        TopKMinus1 = "top-k-minus-1": "the K-1 largest lambda_j, however small (svds(k=K-1))",
    }
}

switch! {
    /// The form of `nc3` (self-duality of W and the centred means M).
    Nc3Form {
        Gram = "gram": "|| W M / ||W M||_F - P ||_F",
        Duality = "duality": "|| W^T / ||W||_F - M / ||M||_F ||_F",
        DualitySquared = "duality-squared": "|| W^T / ||W||_F - M / ||M||_F ||_F^2",
    }
}

switch! {
    /// The form of `equinorm_w` and `equinorm_h`, over the norms n_k of the classifier
    /// rows / centred means.
    Equinorm {
        Cv = "cv": "std / mean of the norms, std with 1/K (population)",
        CvSample = "cv-sample": "std / mean of the norms, std with 1/(K-1) (torch.std)",
        LogRatio = "log-ratio": "mean over pairs k < l of log n_k - log n_l (nc-toolbox)",
    }
}

switch! {
    /// The form of `equiangle_w` and `equiangle_h`.
    Equiangle {
        Absolute = "absolute": "mean over pairs k < l of |cos + 1/(K-1)|",
        Signed = "signed": "mean over pairs k < l of cos + 1/(K-1)",
    }
}

switch! {
    /// Whether `nc4` counts disagreements or agreements of the classifier with the
    /// nearest-class-centre rule.
    Nc4Form {
        Mismatch = "mismatch": "fraction where the two rules differ (0 at collapse)",
        Agreement = "agreement": "fraction where the two rules agree (1 at collapse)",
    }
}

switch! {
    /// The classifier decision that `nc4` compares (`accuracy` always uses W h + b).
    Nc4Bias {
        With = "with": "argmax (W h + b)",
        Without = "without": "argmax W h (the bias left out)",
    }
}

switch! {
    /// The per-class variance var_k of `cdnv`.
    CdnvVariance {
        Population = "population": "mean over class k of ||h - mu_k||^2 (1/n_k)",
        Sample = "sample": "sum over class k of ||h - mu_k||^2 / (n_k - 1)",
    }
}

/// One choice per switch. [`Convention::NCLAB`] is the specification (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Convention {
    pub nc1_scale: Nc1Scale,
    pub global_mean: GlobalMean,
    pub weight: WeightCentring,
    pub pinv: PinvCutoff,
    pub nc3: Nc3Form,
    pub equinorm: Equinorm,
    pub equiangle: Equiangle,
    pub nc4: Nc4Form,
    pub nc4_bias: Nc4Bias,
    pub cdnv_variance: CdnvVariance,
}

impl Default for Convention {
    fn default() -> Self {
        Self::NCLAB
    }
}

/// The published codebases with a preset, each read at one commit (docs/metrics.md,
/// "Conventions", quotes the file and lines of every choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Nclab,
    Zhou2022,
    Zhu2021,
    Papyan2020,
    Rhubarbwu,
    Nctoolbox,
}

impl Preset {
    pub const ALL: [Preset; 6] = [
        Preset::Nclab,
        Preset::Zhou2022,
        Preset::Zhu2021,
        Preset::Papyan2020,
        Preset::Rhubarbwu,
        Preset::Nctoolbox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Nclab => "nclab",
            Preset::Zhou2022 => "zhou2022",
            Preset::Zhu2021 => "zhu2021",
            Preset::Papyan2020 => "papyan2020",
            Preset::Rhubarbwu => "rhubarbwu",
            Preset::Nctoolbox => "nctoolbox",
        }
    }

    /// The codebase and the commit its choices were read at.
    pub fn source(self) -> &'static str {
        match self {
            Preset::Nclab => "this tool's specification (docs/metrics.md)",
            Preset::Zhou2022 => "jinxinzhou/nc_loss evaluate.py at a294e2a",
            Preset::Zhu2021 => "tding1/Neural-Collapse validate_NC.py at 04ef586",
            Preset::Papyan2020 => "neuralcollapse/neuralcollapse notebook at 7f12011",
            Preset::Rhubarbwu => "rhubarbwu/neural-collapse defaults at c05a0b8",
            Preset::Nctoolbox => "felixsh/nc-toolbox metrics.py at a527f99",
        }
    }

    pub fn convention(self) -> Convention {
        let nclab = Convention::NCLAB;
        match self {
            Preset::Nclab => nclab,
            Preset::Zhou2022 => Convention {
                pinv: PinvCutoff::DimEpsF32,
                ..nclab
            },
            Preset::Zhu2021 => Convention {
                weight: WeightCentring::Raw,
                pinv: PinvCutoff::DimEpsF32,
                ..nclab
            },
            Preset::Papyan2020 => Convention {
                nc1_scale: Nc1Scale::Total,
                global_mean: GlobalMean::ClassMeans,
                weight: WeightCentring::Raw,
                pinv: PinvCutoff::TopKMinus1,
                nc3: Nc3Form::DualitySquared,
                equinorm: Equinorm::CvSample,
                ..nclab
            },
            Preset::Rhubarbwu => Convention {
                global_mean: GlobalMean::ClassMeans,
                weight: WeightCentring::Raw,
                pinv: PinvCutoff::DimEpsF32,
                nc4: Nc4Form::Agreement,
                nc4_bias: Nc4Bias::Without,
                ..nclab
            },
            Preset::Nctoolbox => Convention {
                weight: WeightCentring::Raw,
                pinv: PinvCutoff::Rcond15,
                nc3: Nc3Form::Duality,
                equinorm: Equinorm::LogRatio,
                equiangle: Equiangle::Signed,
                nc4: Nc4Form::Agreement,
                cdnv_variance: CdnvVariance::Sample,
                ..nclab
            },
        }
    }
}

impl FromStr for Preset {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown convention '{text}' (expected one of {})",
                    Preset::ALL.map(Preset::name).join(", ")
                ))
            })
    }
}

/// The switches by name, in the order of the text form: (name, its value in a
/// convention, the setter that parses a value name).
type SwitchEntry = (&'static str, fn(&Convention) -> &'static str, Setter);
type Setter = fn(&mut Convention, &str) -> Result<()>;

macro_rules! entries {
    ($($key:literal => $field:ident,)+) => {
        &[$(
            (
                $key,
                |c: &Convention| c.$field.name(),
                |c: &mut Convention, v: &str| {
                    c.$field = v.parse().map_err(|e: Error| {
                        let reason = match e {
                            Error::InvalidArgument(reason) => reason,
                            other => other.to_string(),
                        };
                        Error::InvalidArgument(format!("convention switch {}: {reason}", $key))
                    })?;
                    Ok(())
                },
            ),
        )+]
    };
}

const SWITCHES: &[SwitchEntry] = entries! {
    "nc1-scale" => nc1_scale,
    "global-mean" => global_mean,
    "weight" => weight,
    "pinv" => pinv,
    "nc3" => nc3,
    "equinorm" => equinorm,
    "equiangle" => equiangle,
    "nc4" => nc4,
    "nc4-bias" => nc4_bias,
    "cdnv-variance" => cdnv_variance,
};

impl Convention {
    /// The specification's choices: docs/metrics.md's numbers.
    pub const NCLAB: Convention = Convention {
        nc1_scale: Nc1Scale::PerClass,
        global_mean: GlobalMean::Samples,
        weight: WeightCentring::Centred,
        pinv: PinvCutoff::Nclab,
        nc3: Nc3Form::Gram,
        equinorm: Equinorm::Cv,
        equiangle: Equiangle::Absolute,
        nc4: Nc4Form::Mismatch,
        nc4_bias: Nc4Bias::With,
        cdnv_variance: CdnvVariance::Population,
    };

    /// The switch names, in the order of the text form (`nc1-scale`, `global-mean`, ...).
    pub fn switch_names() -> impl Iterator<Item = &'static str> {
        SWITCHES.iter().map(|(name, _, _)| *name)
    }

    /// Sets switch `name` to the value called `value`; an error names both when either is
    /// unknown.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let (_, _, setter) = SWITCHES
            .iter()
            .find(|(key, _, _)| *key == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown convention switch '{name}' (expected one of {})",
                    Self::switch_names().collect::<Vec<_>>().join(", ")
                ))
            })?;
        setter(self, value)
    }

    /// The value of switch `name`, by its name.
    pub fn get(&self, name: &str) -> Option<&'static str> {
        SWITCHES
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, get, _)| get(self))
    }

    /// The preset this convention is, if it is one.
    pub fn preset(&self) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.convention() == *self)
    }

    /// The text form: a preset name when it is one; else the preset it differs from in the
    /// fewest switches (the first such in [`Preset::ALL`]), `+`, and those switches as
    /// `name=value` joined by commas.
    pub fn label(&self) -> String {
        if let Some(preset) = self.preset() {
            return preset.name().to_string();
        }
        let differences = |p: Preset| {
            let base = p.convention();
            SWITCHES
                .iter()
                .filter(|(_, get, _)| get(&base) != get(self))
                .map(|(name, get, _)| format!("{name}={}", get(self)))
                .collect::<Vec<_>>()
        };
        let (preset, changes) = Preset::ALL
            .into_iter()
            .map(|p| (p, differences(p)))
            .min_by_key(|(_, changes)| changes.len())
            .expect("there are presets");
        format!("{}+{}", preset.name(), changes.join(","))
    }
}

impl fmt::Display for Convention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl FromStr for Convention {
    type Err = Error;

    /// Reads the text form: `PRESET` or `PRESET+name=value,name=value`.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (preset, switches) = text.split_once('+').unwrap_or((text, ""));
        let mut convention = preset.trim().parse::<Preset>()?.convention();
        for setting in switches.split(',').filter(|s| !s.trim().is_empty()) {
            let (name, value) = setting.split_once('=').ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "convention '{text}': expected name=value after '+', got '{setting}'"
                ))
            })?;
            convention.set(name.trim(), value.trim())?;
        }
        Ok(convention)
    }
}

impl Serialize for Convention {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.label())
    }
}

impl<'de> Deserialize<'de> for Convention {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The indices of the singular values `s` (of the centred means, K of them or d when
/// d < K) whose eigenvalues lambda = s^2 / K the pseudo-inverse of Sigma_B keeps under
/// `rule`, in increasing index order; `dim` is d.
pub(super) fn kept_directions(
    s: &[f64],
    rule: PinvCutoff,
    dim: usize,
    num_classes: usize,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    let largest = order.first().map_or(0.0, |&j| s[j]);
    // Relative cutoffs on lambda = s^2 / K, compared as squares of s (K cancels).
    let above = |relative_lambda: f64| {
        let threshold = relative_lambda * largest * largest;
        order
            .iter()
            .copied()
            .filter(|&j| s[j] * s[j] > threshold)
            .collect::<Vec<_>>()
    };
    let mut kept = match rule {
        PinvCutoff::Nclab => order
            .iter()
            .copied()
            .filter(|&j| s[j] > super::RANK_CUTOFF * largest)
            .collect(),
        PinvCutoff::DimEpsF32 => above(dim as f64 * f32::EPSILON as f64),
        PinvCutoff::DimEpsF64 => above(dim as f64 * f64::EPSILON),
        PinvCutoff::Rcond15 => above(1e-15),
        PinvCutoff::TopKMinus1 => order.into_iter().take(num_classes - 1).collect(),
    };
    kept.sort_unstable();
    kept
}

#[cfg(test)]
mod tests;
