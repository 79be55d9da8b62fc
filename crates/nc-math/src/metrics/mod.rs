//! The neural-collapse metric specification (`docs/metrics.md`) and its two-phase
//! streaming accumulator.
//!
//! Notation: N samples h_i (dimension d) with labels y_i in 0..K, class counts n_k, class
//! means mu_k, global mean mu_G (the sample mean of all features), M = [mu_k - mu_G]
//! (d x K), classifier W (K x d) with bias b, Wc = W minus its mean row, and
//! P = (I_K - 11^T/K) / sqrt(K-1).
//!
//! | name | formula |
//! |---|---|
//! | `nc1` | tr(Sigma_W Sigma_B^+) / K, Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T, Sigma_B = M M^T / K |
//! | `nc2` | \|\| Wc Wc^T / \|\|Wc Wc^T\|\|_F - P \|\|_F |
//! | `nc3` | \|\| Wc M / \|\|Wc M\|\|_F - P \|\|_F |
//! | `nc4` | fraction of samples where argmax_k (W h + b)_k differs from argmin_k \|\|h - m_k\|\| (m_k: reference means) |
//! | `bias_relation` | \|\| W mu_G + b \|\|_2 |
//! | `accuracy` | fraction with argmax_k (W h + b)_k = y |
//! | `ncc_accuracy` | fraction with argmin_k \|\|h - m_k\|\| = y |
//! | `equinorm_w`, `equinorm_h` | std / mean (ddof 0) of the row norms of Wc / the column norms of M |
//! | `equiangle_w`, `equiangle_h` | mean over pairs k < l of \|cos(v_k, v_l) + 1/(K-1)\| for the rows of Wc / columns of M |
//! | `nc2_means` | \|\| M^T M / \|\|M^T M\|\|_F - P \|\|_F |
//! | `cdnv` | mean over pairs k < l of (var_k + var_l) / (2 \|\|mu_k - mu_l\|\|^2), var_k = mean over class k of \|\|h - mu_k\|\|^2 |
//! | `nc1_trace_ratio` | tr(Sigma_W) / tr(Sigma_B) |
//! | `gnc2_log_h`, `gnc2_riesz_h` | mean over pairs k < l of log(1 / \|\|x_k - x_l\|\|) and of \|\|x_k - x_l\|\|^-1, x_k the normalised columns of M |
//! | `gnc2_log_w`, `gnc2_riesz_w` | the same for the normalised rows of Wc |
//! | `gnc3` | mean over classes of 1 - cos(wc_k, mu_k - mu_G) |
//! | `gnc2_margin_w` | min_k max_{\|\|h\|\|=1} min_{j != k} (x_k - x_j).h = min_k dist(x_k, conv{x_j : j != k}), x_k the normalised rows of Wc |
//!
//! Ties in argmax/argmin go to the lowest class index (numpy's convention).
//!
//! # How it is computed
//! Sigma_B has rank <= K-1. With the thin SVD M = U S V^T, truncated to the singular values
//! above 1e-8 times the largest (their number is `sigma_b_rank`),
//! nc1 = sum_j (1/N) sum_i (u_j^T (h_i - mu_{y_i}))^2 / s_j^2. So NC1 needs only the
//! projections U^T (h_i - mu_{y_i}): O(N d K) time, O(d K) memory, no d x d matrix.
//!
//! Phase 1 ([`MeanAccumulator`]) sums features per class. Phase 2 ([`MetricsPlan`] +
//! [`ScatterAccumulator`]) centres each sample on its own class mean first (so nothing
//! cancels when NC1 -> 0 or the features carry a large common offset), then applies one
//! matrix product with the functionals [U | Q], where Q is the truncated singular basis of
//! the reference means of the NCC rule (Q = U, and no extra rows, when those are the data's
//! own means). The NCC distances follow as
//! ||Q^T (h - m_k)||^2 = ||z||^2 - 2 z.c_k + ||c_k||^2 with z = q + a_y, q = Q^T (h - mu_y),
//! a_y = Q^T (mu_y - m_G), c_k = Q^T (m_k - m_G) (all relative to the reference global mean,
//! so no common offset cancels); the part of h - m_k outside span(Q) is the same for every k
//! up to the truncated singular values (below 1e-8 of the largest).
//! No K x K table is held whole: Gram-matrix quantities are summed over tiles
//! (`tiles.rs`), and above 1024 classes the logit offsets w_k.mu_y + b_k are computed per
//! block for the classes the block holds.
//! The classifier's decisions are those of the f64 logits W (h - mu_y) + (W mu_y + b),
//! taken from the projections where a proved bound allows (`ProjectedLogits`: every
//! sample near collapse), else from one logit product over the remaining samples: in f32
//! for f32 features, under a proved bound with f64 for the classes it cannot separate
//! (`F32Logits`), in f64 otherwise.
//! Both phases take batches in any order and merge across shards; their sums live in
//! serialisable states ([`MeanAccumulator`] itself, [`ScatterState`]) from which a pass
//! resumes exactly where it stopped.
//!
//! # Where it lives
//! | file | holds |
//! |---|---|
//! | `element.rs` | the feature element types ([`Feature`], [`LeF32`], [`LeF64`]) |
//! | `classifier.rs` | [`Classifier`] |
//! | `batch.rs` | the checks and parallel blocks of a batch, shared by both phases |
//! | `means.rs` | phase 1: [`MeanAccumulator`], [`ClassMeans`] |
//! | `geometry.rs` | class-level geometry: truncated SVD basis, simplex distances, equinorm, equiangle |
//! | `margin.rs` | the one-vs-rest margin of the classifier rows (Wolfe's minimum-norm point, pruned by Gram bounds) |
//! | `plan.rs` | [`MetricsPlan`] and the NCC geometry |
//! | `decisions.rs` | the classifier's certified decision routes and their rounding bounds |
//! | `scatter.rs` | phase 2: [`ScatterAccumulator`], [`ScatterState`] |
//! | `tiles.rs` | K x K products visited in square tiles |
//! | `exact_f64.rs` | the exact serialisation of the states' f64 sums |

mod batch;
mod classifier;
pub mod convention;
mod decisions;
mod element;
mod exact_f64;
mod geometry;
mod margin;
mod means;
mod plan;
mod scatter;
mod tiles;

pub use classifier::Classifier;
pub use convention::{Convention, Preset};
pub use element::{Feature, LeF32, LeF64};
pub use means::{ClassMeans, MeanAccumulator};
pub use plan::MetricsPlan;
pub use scatter::{ScatterAccumulator, ScatterState};

use crate::Result;
use serde::{Deserialize, Serialize};

/// Relative cutoff on the singular values of the centred class means (`docs/metrics.md`,
/// "Rank cutoff").
pub const RANK_CUTOFF: f64 = 1e-8;

/// Every metric of the specification. `None` (JSON null) where the classifier is needed
/// and none was given; NaN (also written as null) where a classifier quantity is 0/0, e.g.
/// all rows of W equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NcMetrics {
    pub nc1: f64,
    pub nc2: Option<f64>,
    pub nc3: Option<f64>,
    pub nc4: Option<f64>,
    pub bias_relation: Option<f64>,
    pub accuracy: Option<f64>,
    pub ncc_accuracy: f64,
    pub equinorm_w: Option<f64>,
    pub equinorm_h: f64,
    pub equiangle_w: Option<f64>,
    pub equiangle_h: f64,
    pub nc2_means: f64,
    pub cdnv: f64,
    pub num_samples: u64,
    pub num_classes: usize,
    pub dim: usize,
    pub sigma_b_rank: usize,
    /// The formulas these numbers follow (text form, e.g. `nclab`, `zhou2022`); absent in
    /// files written before conventions had names, which were all `nclab`.
    #[serde(default)]
    pub convention: Convention,
    /// tr(Sigma_W) / tr(Sigma_B) (docs/metrics.md, "Generalised neural collapse"); the
    /// keys below are null in files written before they existed.
    #[serde(default)]
    pub nc1_trace_ratio: Option<f64>,
    /// Hyperspherical energies of the normalised centred class means: mean over pairs of
    /// log(1 / ||x_k - x_l||) and of ||x_k - x_l||^-1.
    #[serde(default)]
    pub gnc2_log_h: Option<f64>,
    #[serde(default)]
    pub gnc2_riesz_h: Option<f64>,
    /// The same energies of the normalised classifier rows (Wc, or W by the convention).
    #[serde(default)]
    pub gnc2_log_w: Option<f64>,
    #[serde(default)]
    pub gnc2_riesz_w: Option<f64>,
    /// Mean over classes of 1 - cos(w_k, mu_k - mu_G).
    #[serde(default)]
    pub gnc3: Option<f64>,
    /// Minimum over classes of the one-vs-rest margin of the normalised classifier rows,
    /// min_k dist(x_k, conv{x_j : j != k}) (Jiang et al. 2023's GNC2).
    #[serde(default)]
    pub gnc2_margin_w: Option<f64>,
}

impl NcMetrics {
    /// The metrics a training run records per split (`metrics.csv` has `train_<name>` and
    /// `test_<name>` for each), in column order. `accuracy` is the run's `<split>_acc`
    /// column; K and d are in its config.
    pub const SPLIT_COLUMNS: [&'static str; 14] = [
        "nc1",
        "nc2",
        "nc3",
        "nc4",
        "bias_relation",
        "ncc_accuracy",
        "equinorm_w",
        "equinorm_h",
        "equiangle_w",
        "equiangle_h",
        "nc2_means",
        "cdnv",
        "sigma_b_rank",
        "num_samples",
    ];

    /// The values of [`Self::SPLIT_COLUMNS`], in the same order (each named as in JSON).
    pub fn split_column_values(&self) -> [Option<f64>; 14] {
        [
            Some(self.nc1),
            self.nc2,
            self.nc3,
            self.nc4,
            self.bias_relation,
            Some(self.ncc_accuracy),
            self.equinorm_w,
            Some(self.equinorm_h),
            self.equiangle_w,
            Some(self.equiangle_h),
            Some(self.nc2_means),
            Some(self.cdnv),
            Some(self.sigma_b_rank as f64),
            Some(self.num_samples as f64),
        ]
    }

    /// The value of split column `name`, if it is one.
    pub fn split_column(&self, name: &str) -> Option<f64> {
        let at = Self::SPLIT_COLUMNS.iter().position(|c| *c == name)?;
        self.split_column_values()[at]
    }
}

/// Both phases over features held in memory: `features` is N x d row-major.
/// `reference_means` are the class means of the NCC rule (training means for a test split).
pub fn compute_metrics<T: Feature>(
    features: &[T],
    labels: &[u32],
    dim: usize,
    num_classes: usize,
    classifier: Option<&Classifier>,
    reference_means: Option<&ClassMeans>,
) -> Result<NcMetrics> {
    compute_metrics_with(
        features,
        labels,
        dim,
        num_classes,
        classifier,
        reference_means,
        &Convention::NCLAB,
    )
}

/// As [`compute_metrics`], with the formulas of `convention`.
pub fn compute_metrics_with<T: Feature>(
    features: &[T],
    labels: &[u32],
    dim: usize,
    num_classes: usize,
    classifier: Option<&Classifier>,
    reference_means: Option<&ClassMeans>,
    convention: &Convention,
) -> Result<NcMetrics> {
    let mut means = MeanAccumulator::new(num_classes, dim);
    means.add_batch(features, labels)?;
    let means = means.finish()?;
    let plan = MetricsPlan::with_convention(&means, classifier, reference_means, convention)?;
    let mut scatter = plan.accumulator();
    scatter.add_batch(features, labels)?;
    scatter.finish()
}
