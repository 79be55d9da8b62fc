//! The classification losses of docs/ufm.md in f64, per sample: value, gradient with respect
//! to the logits, and Hessian-vector product with respect to the logits.
//!
//! With logits `z` (length K), `p = softmax(z)` and true class `k`:
//! - `ce`: `-log p_k`
//! - `ls(alpha)`: `-(1-alpha) log p_k - (alpha/K) sum_j log p_j`
//! - `fl(gamma)`: `-(1-p_k)^gamma log p_k`
//! - `mse(rescale s)`: `(1/K) sum_j (z_j - s [j = k])^2`
//!
//! Softmax quantities go through log-sum-exp, so logits of any magnitude are safe. These
//! are the reference definitions that tensor versions elsewhere are tested against.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Official default smoothing of `ls`.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Official default focusing parameter of `fl`.
pub const DEFAULT_GAMMA: f64 = 3.0;
/// Official default target scale of `mse`.
pub const DEFAULT_RESCALE: f64 = 15.0;

/// The four members of the loss family, by name: the one list every front end offers, in
/// the order reports show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    Ce,
    Ls,
    Fl,
    Mse,
}

impl LossKind {
    /// Every kind, in report order.
    pub const ALL: [LossKind; 4] = [LossKind::Ce, LossKind::Ls, LossKind::Fl, LossKind::Mse];

    /// The short name: `ce`, `ls`, `fl` or `mse`.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Ce => "ce",
            LossKind::Ls => "ls",
            LossKind::Fl => "fl",
            LossKind::Mse => "mse",
        }
    }

    /// What the name stands for, for help texts.
    pub fn description(self) -> &'static str {
        match self {
            LossKind::Ce => "cross-entropy",
            LossKind::Ls => "label smoothing (alpha)",
            LossKind::Fl => "focal loss (gamma)",
            LossKind::Mse => "mean squared error against rescaled one-hot targets (rescale)",
        }
    }

    /// This kind with its parameter taken from `params`.
    pub fn with_params(self, params: LossParams) -> Loss {
        match self {
            LossKind::Ce => Loss::CrossEntropy,
            LossKind::Ls => Loss::LabelSmoothing {
                alpha: params.alpha,
            },
            LossKind::Fl => Loss::Focal {
                gamma: params.gamma,
            },
            LossKind::Mse => Loss::Mse {
                rescale: params.rescale,
            },
        }
    }
}

impl fmt::Display for LossKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        LossKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown loss '{name}' (expected one of {})",
                    LossKind::ALL.map(LossKind::name).join(", ")
                ))
            })
    }
}

/// The parameters of the family, one per loss that has one; each defaults to the official
/// value (`DEFAULT_ALPHA`, `DEFAULT_GAMMA`, `DEFAULT_RESCALE`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossParams {
    pub alpha: f64,
    pub gamma: f64,
    pub rescale: f64,
}

impl Default for LossParams {
    fn default() -> Self {
        LossParams {
            alpha: DEFAULT_ALPHA,
            gamma: DEFAULT_GAMMA,
            rescale: DEFAULT_RESCALE,
        }
    }
}

/// One member of the loss family. Serialised as `{"kind": "ls", "alpha": 0.05}` etc. (the
/// `loss` field of a training run's `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Loss {
    #[serde(rename = "ce")]
    CrossEntropy,
    #[serde(rename = "ls")]
    LabelSmoothing { alpha: f64 },
    #[serde(rename = "fl")]
    Focal { gamma: f64 },
    #[serde(rename = "mse")]
    Mse { rescale: f64 },
}

impl Loss {
    /// Checks the parameter ranges: `alpha` in [0, 1), `gamma >= 0`, `rescale` finite and > 0.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Loss::CrossEntropy => Ok(()),
            Loss::LabelSmoothing { alpha } if alpha.is_finite() && (0.0..1.0).contains(&alpha) => {
                Ok(())
            }
            Loss::LabelSmoothing { alpha } => Err(Error::InvalidArgument(format!(
                "ls needs alpha in [0, 1), got {alpha}"
            ))),
            Loss::Focal { gamma } if gamma.is_finite() && gamma >= 0.0 => Ok(()),
            Loss::Focal { gamma } => Err(Error::InvalidArgument(format!(
                "fl needs a finite gamma >= 0, got {gamma}"
            ))),
            // The one-hot targets must point the right way: the theory (docs/ufm.md) and the
            // trainer both take s > 0.
            Loss::Mse { rescale } if rescale.is_finite() && rescale > 0.0 => Ok(()),
            Loss::Mse { rescale } => Err(Error::InvalidArgument(format!(
                "mse needs a finite rescale > 0, got {rescale}"
            ))),
        }
    }

    /// Which member of the family this is.
    pub fn kind(&self) -> LossKind {
        match self {
            Loss::CrossEntropy => LossKind::Ce,
            Loss::LabelSmoothing { .. } => LossKind::Ls,
            Loss::Focal { .. } => LossKind::Fl,
            Loss::Mse { .. } => LossKind::Mse,
        }
    }

    /// The short name: `ce`, `ls`, `fl` or `mse`.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The loss called `name` (`ce`, `ls`, `fl`, `mse`), taking the one parameter it has
    /// from `alpha`, `gamma` or `rescale`; `None` for an unknown name.
    pub fn from_name(name: &str, alpha: f64, gamma: f64, rescale: f64) -> Option<Self> {
        let kind: LossKind = name.parse().ok()?;
        Some(kind.with_params(LossParams {
            alpha,
            gamma,
            rescale,
        }))
    }

    /// True for the losses that depend on the logits only through `softmax(z)`
    /// (`ce`, `ls`, `fl`): adding a constant to every logit changes nothing.
    pub fn is_shift_invariant(&self) -> bool {
        !matches!(self, Loss::Mse { .. })
    }

    /// Per-sample loss value at `logits` for class `target`.
    pub fn value(&self, logits: &[f64], target: usize) -> f64 {
        match *self {
            Loss::Mse { rescale } => mse_value(logits, target, rescale),
            _ => {
                let lse = log_sum_exp(logits);
                let log_pk = logits[target] - lse;
                match *self {
                    Loss::CrossEntropy => -log_pk,
                    Loss::LabelSmoothing { alpha } => {
                        let k = logits.len() as f64;
                        let sum_log_p: f64 = logits.iter().map(|z| z - lse).sum();
                        -(1.0 - alpha) * log_pk - alpha / k * sum_log_p
                    }
                    Loss::Focal { gamma } => {
                        let other_mass: f64 = logits
                            .iter()
                            .enumerate()
                            .filter(|&(j, _)| j != target)
                            .map(|(_, z)| (z - lse).exp())
                            .sum();
                        -other_mass.powf(gamma) * log_pk
                    }
                    Loss::Mse { .. } => unreachable!("handled above"),
                }
            }
        }
    }

    /// Per-sample loss value; writes its gradient with respect to the logits to `grad`:
    /// `ce`: `p - e_k`; `ls`: `p - (1-alpha) e_k - (alpha/K) 1`;
    /// `fl`: `F'(log p_k) (e_k - p)` with `F(l) = -(1 - e^l)^gamma l`;
    /// `mse`: `(2/K) (z - s e_k)`.
    pub fn value_grad(&self, logits: &[f64], target: usize, grad: &mut [f64]) -> f64 {
        let k = logits.len();
        debug_assert_eq!(grad.len(), k);
        if let Loss::Mse { rescale } = *self {
            for (j, (g, z)) in grad.iter_mut().zip(logits).enumerate() {
                *g = 2.0 / k as f64 * (z - target_value(j, target, rescale));
            }
            return mse_value(logits, target, rescale);
        }
        let lse = softmax_into(logits, grad);
        let log_pk = logits[target] - lse;
        match *self {
            Loss::CrossEntropy => {
                grad[target] -= 1.0;
                -log_pk
            }
            Loss::LabelSmoothing { alpha } => {
                let kf = k as f64;
                let sum_log_p: f64 = logits.iter().map(|z| z - lse).sum();
                for g in grad.iter_mut() {
                    *g -= alpha / kf;
                }
                grad[target] -= 1.0 - alpha;
                -(1.0 - alpha) * log_pk - alpha / kf * sum_log_p
            }
            Loss::Focal { gamma } => {
                let focal = FocalTerms::new(gamma, grad, target, log_pk);
                // grad = F'(l) (e_k - p); grad currently holds p.
                for g in grad.iter_mut() {
                    *g *= -focal.d1;
                }
                grad[target] += focal.d1;
                focal.value
            }
            Loss::Mse { .. } => unreachable!("handled above"),
        }
    }

    /// Hessian-vector product with respect to the logits, `out = (d^2 L / dz^2) v`:
    /// `ce`, `ls`: `S v` with `S = diag(p) - p p^T`;
    /// `fl`: `F''(l) (e_k - p)(e_k - p)^T v - F'(l) S v`; `mse`: `(2/K) v`.
    pub fn hvp(&self, logits: &[f64], target: usize, v: &[f64], out: &mut [f64]) {
        let k = logits.len();
        debug_assert_eq!(v.len(), k);
        debug_assert_eq!(out.len(), k);
        if let Loss::Mse { .. } = *self {
            for (o, vj) in out.iter_mut().zip(v) {
                *o = 2.0 / k as f64 * vj;
            }
            return;
        }
        let lse = softmax_into(logits, out);
        let p_dot_v: f64 = out.iter().zip(v).map(|(p, vj)| p * vj).sum();
        match *self {
            Loss::Focal { gamma } => {
                let focal = FocalTerms::new(gamma, out, target, logits[target] - lse);
                // (e_k - p)^T v
                let along = v[target] - p_dot_v;
                for (j, (o, vj)) in out.iter_mut().zip(v).enumerate() {
                    let p = *o;
                    let e_minus_p = if j == target { 1.0 - p } else { -p };
                    *o = -focal.d1 * p * (vj - p_dot_v) + focal.d2 * e_minus_p * along;
                }
            }
            _ => {
                for (o, vj) in out.iter_mut().zip(v) {
                    *o *= vj - p_dot_v;
                }
            }
        }
    }

    /// Mean loss over a batch of row-major logits (`targets.len()` rows of K); writes the
    /// gradient of that mean with respect to every logit to `grad` (same layout).
    pub fn mean_value_grad(
        &self,
        logits: &[f64],
        targets: &[usize],
        grad: &mut [f64],
    ) -> Result<f64> {
        let k = batch_width(logits, targets, grad.len())?;
        let n = targets.len() as f64;
        let mut total = 0.0;
        for ((z, g), &t) in logits
            .chunks_exact(k)
            .zip(grad.chunks_exact_mut(k))
            .zip(targets)
        {
            total += self.value_grad(z, t, g);
            for gj in g.iter_mut() {
                *gj /= n;
            }
        }
        Ok(total / n)
    }

    /// Mean loss over a batch of row-major logits (`targets.len()` rows of K).
    pub fn mean_value(&self, logits: &[f64], targets: &[usize]) -> Result<f64> {
        let k = batch_width(logits, targets, logits.len())?;
        let total: f64 = logits
            .chunks_exact(k)
            .zip(targets)
            .map(|(z, &t)| self.value(z, t))
            .sum();
        Ok(total / targets.len() as f64)
    }
}

impl fmt::Display for Loss {
    /// `ce`, `ls(alpha=0.05)`, `fl(gamma=3)`, `mse(rescale=15)`; `FromStr` reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::CrossEntropy => write!(f, "{}", self.name()),
            Loss::LabelSmoothing { alpha } => write!(f, "{}(alpha={alpha})", self.name()),
            Loss::Focal { gamma } => write!(f, "{}(gamma={gamma})", self.name()),
            Loss::Mse { rescale } => write!(f, "{}(rescale={rescale})", self.name()),
        }
    }
}

impl FromStr for Loss {
    type Err = Error;

    /// Parses `ce`, `ls`, `fl`, `mse` (official default parameters) or the `Display`
    /// form with an explicit parameter: `ls(alpha=0.1)`, `fl(gamma=2)`, `mse(rescale=1)`,
    /// also `ls(0.1)`.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let (name, param) = match text.split_once('(') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| bad_loss(text))?;
                let value = inner.split_once('=').map_or(inner, |(_, v)| v).trim();
                let value: f64 = value.parse().map_err(|_| bad_loss(text))?;
                (name.trim(), Some(value))
            }
            None => (text, None),
        };
        let kind: LossKind = name
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| bad_loss(text))?;
        // One number is the parameter of whichever loss has one; `ce` has none.
        let loss = match (kind, param) {
            (LossKind::Ce, Some(_)) => return Err(bad_loss(text)),
            (_, None) => kind.with_params(LossParams::default()),
            (_, Some(value)) => kind.with_params(LossParams {
                alpha: value,
                gamma: value,
                rescale: value,
            }),
        };
        loss.validate()?;
        Ok(loss)
    }
}

fn bad_loss(text: &str) -> Error {
    Error::InvalidArgument(format!(
        "unknown loss '{text}': expected {}, optionally with a parameter like ls(alpha=0.1)",
        LossKind::ALL.map(LossKind::name).join(", ")
    ))
}

/// Row width K of a row-major batch, after checking that every buffer agrees.
fn batch_width(logits: &[f64], targets: &[usize], out_len: usize) -> Result<usize> {
    if targets.is_empty()
        || logits.is_empty()
        || !logits.len().is_multiple_of(targets.len())
        || out_len != logits.len()
    {
        return Err(Error::Shape {
            what: "loss batch",
            expected: format!(
                "logits and gradient of equal length, a multiple of {} targets",
                targets.len()
            ),
            got: format!("{} logits, {} gradient entries", logits.len(), out_len),
        });
    }
    let k = logits.len() / targets.len();
    if let Some((row, &label)) = targets.iter().enumerate().find(|&(_, &t)| t >= k) {
        return Err(Error::LabelOutOfRange {
            label: label as u64,
            row,
            num_classes: k,
        });
    }
    Ok(k)
}

/// `log sum_j exp(z_j)`, shifted by the maximum.
pub fn log_sum_exp(logits: &[f64]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + logits.iter().map(|z| (z - max).exp()).sum::<f64>().ln()
}

/// Writes `softmax(z)` to `probs` and returns `log sum_j exp(z_j)`.
fn softmax_into(logits: &[f64], probs: &mut [f64]) -> f64 {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for (p, z) in probs.iter_mut().zip(logits) {
        *p = (z - max).exp();
        sum += *p;
    }
    for p in probs.iter_mut() {
        *p /= sum;
    }
    max + sum.ln()
}

fn target_value(j: usize, target: usize, rescale: f64) -> f64 {
    if j == target {
        rescale
    } else {
        0.0
    }
}

/// `(1/K) sum_j (z_j - s [j = k])^2`
fn mse_value(logits: &[f64], target: usize, rescale: f64) -> f64 {
    let k = logits.len() as f64;
    logits
        .iter()
        .enumerate()
        .map(|(j, z)| (z - target_value(j, target, rescale)).powi(2))
        .sum::<f64>()
        / k
}

/// The focal loss as a function of `l = log p_k`: `F(l) = -(1 - e^l)^gamma l` and its
/// first two derivatives, `F'(l) = gamma u^(gamma-1) q l - u^gamma` and
/// `F''(l) = gamma q [u^(gamma-1) (l + 2) - (gamma-1) q l u^(gamma-2)]`,
/// with `q = p_k` and `u = 1 - q` summed from the other probabilities (no cancellation).
struct FocalTerms {
    value: f64,
    d1: f64,
    d2: f64,
}

impl FocalTerms {
    fn new(gamma: f64, probs: &[f64], target: usize, log_pk: f64) -> Self {
        let q = probs[target];
        let u: f64 = probs
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != target)
            .map(|(_, p)| p)
            .sum();
        let value = -u.powf(gamma) * log_pk;
        if gamma == 0.0 {
            return FocalTerms {
                value,
                d1: -1.0,
                d2: 0.0,
            };
        }
        // At u = 0 (q = 1 in floating point) l = 0 too, and F', F'' vanish in the limit
        // (for gamma < 1, F'' is unbounded as u -> 0: the loss is not twice differentiable there).
        if u == 0.0 {
            return FocalTerms {
                value,
                d1: 0.0,
                d2: 0.0,
            };
        }
        let d1 = gamma * u.powf(gamma - 1.0) * q * log_pk - u.powf(gamma);
        let d2 = gamma
            * q
            * (u.powf(gamma - 1.0) * (log_pk + 2.0)
                - (gamma - 1.0) * q * log_pk * u.powf(gamma - 2.0));
        FocalTerms { value, d1, d2 }
    }
}

#[cfg(test)]
mod tests;
