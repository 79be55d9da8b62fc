//! The neural-collapse metric specification (DESIGN.md) and its two-phase streaming
//! accumulator.
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
//! ||Q^T (h - m_k)||^2 = ||q||^2 + 2 q.(a_y - c_k) + ||a_y - c_k||^2 with q = Q^T (h - mu_y),
//! a_y = Q^T (mu_y - m_G), c_k = Q^T (m_k - m_G); the part of h - m_k outside span(Q) is the
//! same for every k up to the truncated singular values (below 1e-8 of the largest).
//! The classifier's decisions are those of the f64 logits W (h - mu_y) + (W mu_y + b),
//! taken from the projections where a proved bound allows (`ProjectedLogits`: every
//! sample near collapse), else from one logit product over the remaining samples: in f32
//! for f32 features, under a proved bound with f64 for the classes it cannot separate
//! (`F32Logits`), in f64 otherwise.
//! Both phases take batches in any order and merge across shards.

use crate::{Error, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Relative cutoff on the singular values of the centred class means (DESIGN.md).
pub const RANK_CUTOFF: f64 = 1e-8;

/// Rows per block of the phase-2 matrix product (and the unit of parallel work).
const BLOCK_ROWS: usize = 256;

/// The fewest blocks of a batch of `rows` that one parallel piece takes: about four pieces
/// per thread. Each piece starts fresh accumulators and scratch buffers (megabytes at large
/// K and d, every page of them faulted in anew), so rayon's default of splitting down to
/// single blocks spends more on fresh memory than the balance is worth.
fn blocks_per_piece(rows: usize) -> usize {
    let blocks = rows.div_ceil(BLOCK_ROWS);
    blocks.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// A feature element type: whatever the input precision, everything accumulates in f64.
pub trait Feature: Copy + Send + Sync + 'static {
    /// Whether every value is an f32 exactly ([`Feature::to_f32`] loses nothing): then the
    /// classifier's decisions may use f32 logits under a proved error bound (see the
    /// module documentation).
    const EXACT_F32: bool = false;

    fn to_f64(self) -> f64;

    fn to_f32(self) -> f32 {
        self.to_f64() as f32
    }
}

impl Feature for f32 {
    const EXACT_F32: bool = true;

    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }

    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Feature for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

/// An f32 stored as its 4 little-endian bytes, at any alignment: the elements of a float32
/// array read in place from a memory-mapped `.npy`/`.npz`/`.safetensors` file, whose data
/// need not start at a multiple of 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct LeF32(pub [u8; 4]);

/// An f64 stored as its 8 little-endian bytes, at any alignment (see [`LeF32`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct LeF64(pub [u8; 8]);

impl Feature for LeF32 {
    const EXACT_F32: bool = true;

    #[inline]
    fn to_f64(self) -> f64 {
        f32::from_le_bytes(self.0) as f64
    }

    #[inline]
    fn to_f32(self) -> f32 {
        f32::from_le_bytes(self.0)
    }
}

impl Feature for LeF64 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from_le_bytes(self.0)
    }
}

macro_rules! le_slice {
    ($name:ident, $bytes:literal) => {
        impl $name {
            /// The elements of `bytes`, in place; `None` unless the length is a multiple
            /// of the element size.
            pub fn slice_from_bytes(bytes: &[u8]) -> Option<&[$name]> {
                let (elements, rest) = bytes.as_chunks::<$bytes>();
                if !rest.is_empty() {
                    return None;
                }
                // SAFETY: the type is repr(transparent) over [u8; N], so a slice of [u8; N]
                // has the same layout (size N, alignment 1) as a slice of it.
                Some(unsafe {
                    std::slice::from_raw_parts(elements.as_ptr().cast::<$name>(), elements.len())
                })
            }
        }
    };
}
le_slice!(LeF32, 4);
le_slice!(LeF64, 8);

/// The last layer: logits z = W h + b with W (K x d, row-major) and b (K).
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    num_classes: usize,
    dim: usize,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl Classifier {
    /// `weight` is K x d row-major; no `bias` means b = 0.
    pub fn new(
        num_classes: usize,
        dim: usize,
        weight: Vec<f64>,
        bias: Option<Vec<f64>>,
    ) -> Result<Self> {
        if weight.len() != num_classes * dim {
            return Err(Error::Shape {
                what: "weight",
                expected: format!("{num_classes} x {dim} = {} values", num_classes * dim),
                got: format!("{} values", weight.len()),
            });
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; num_classes]);
        if bias.len() != num_classes {
            return Err(Error::Shape {
                what: "bias",
                expected: format!("{num_classes} values (one per class)"),
                got: format!("{} values", bias.len()),
            });
        }
        check_finite("weight", &weight, dim)?;
        check_finite("bias", &bias, 1)?;
        Ok(Self {
            num_classes,
            dim,
            weight,
            bias,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// W, K x d row-major.
    pub fn weight(&self) -> &[f64] {
        &self.weight
    }

    pub fn bias(&self) -> &[f64] {
        &self.bias
    }

    fn row(&self, k: usize) -> &[f64] {
        &self.weight[k * self.dim..(k + 1) * self.dim]
    }
}

fn check_finite<T: Feature>(what: &'static str, values: &[T], row_len: usize) -> Result<()> {
    match values.iter().position(|v| !v.to_f64().is_finite()) {
        None => Ok(()),
        Some(at) => Err(Error::NonFinite {
            what,
            row: at / row_len.max(1),
            col: at % row_len.max(1),
        }),
    }
}

fn check_batch<T>(
    features: &[T],
    labels: &[u32],
    dim: usize,
    num_classes: usize,
    first_row: u64,
) -> Result<()> {
    if features.len() != labels.len() * dim {
        return Err(Error::Shape {
            what: "feature batch",
            expected: format!(
                "{} labels x {dim} = {} values",
                labels.len(),
                labels.len() * dim
            ),
            got: format!("{} values", features.len()),
        });
    }
    if let Some(row) = labels.iter().position(|&y| y as usize >= num_classes) {
        return Err(Error::LabelOutOfRange {
            label: labels[row] as u64,
            row: first_row as usize + row,
            num_classes,
        });
    }
    Ok(())
}

/// Phase 1: per-class counts and feature sums.
#[derive(Debug, Clone)]
pub struct MeanAccumulator {
    num_classes: usize,
    dim: usize,
    counts: Vec<u64>,
    sums: Vec<f64>,
    rows_seen: u64,
}

impl MeanAccumulator {
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self {
            num_classes,
            dim,
            counts: vec![0; num_classes],
            sums: vec![0.0; num_classes * dim],
            rows_seen: 0,
        }
    }

    /// Adds a batch: `features` is (labels.len() x d) row-major. Rejects NaN/Inf and labels
    /// outside 0..K, naming the row counted over all batches added so far.
    pub fn add_batch<T: Feature>(&mut self, features: &[T], labels: &[u32]) -> Result<()> {
        let dim = self.dim;
        check_batch(features, labels, dim, self.num_classes, self.rows_seen)?;
        let blank = || {
            (
                vec![0u64; self.num_classes],
                vec![0.0f64; self.num_classes * dim],
            )
        };
        let (counts, sums) = features
            .par_chunks(BLOCK_ROWS * dim.max(1))
            .zip(labels.par_chunks(BLOCK_ROWS))
            .with_min_len(blocks_per_piece(labels.len()))
            .fold(blank, |(mut counts, mut sums), (block, block_labels)| {
                for (row, &y) in block.chunks_exact(dim).zip(block_labels) {
                    let y = y as usize;
                    counts[y] += 1;
                    for (s, &v) in sums[y * dim..(y + 1) * dim].iter_mut().zip(row) {
                        *s += v.to_f64();
                    }
                }
                (counts, sums)
            })
            .reduce(blank, |(mut c1, mut s1), (c2, s2)| {
                add_into(&mut c1, &c2);
                add_into(&mut s1, &s2);
                (c1, s1)
            });
        // NaN and Inf are sticky in a sum, so a batch with one leaves a non-finite class
        // sum: only then is the batch scanned for the element to name (one pass otherwise).
        if sums.iter().any(|s| !s.is_finite()) {
            return Err(match check_finite("features", features, dim) {
                Err(Error::NonFinite { what, row, col }) => Error::NonFinite {
                    what,
                    row: row + self.rows_seen as usize,
                    col,
                },
                _ => Error::InvalidArgument(
                    "the feature sums of a class overflow f64: features are too large".into(),
                ),
            });
        }
        add_into(&mut self.counts, &counts);
        add_into(&mut self.sums, &sums);
        self.rows_seen += labels.len() as u64;
        Ok(())
    }

    /// Combines a shard's accumulator with this one (same K and d).
    pub fn merge(&mut self, other: &MeanAccumulator) -> Result<()> {
        if (self.num_classes, self.dim) != (other.num_classes, other.dim) {
            return Err(Error::Mismatch(format!(
                "cannot merge a K={}, d={} mean accumulator into K={}, d={}",
                other.num_classes, other.dim, self.num_classes, self.dim
            )));
        }
        add_into(&mut self.counts, &other.counts);
        add_into(&mut self.sums, &other.sums);
        self.rows_seen += other.rows_seen;
        Ok(())
    }

    /// The class means; every class needs at least one sample, and K >= 2.
    pub fn finish(self) -> Result<ClassMeans> {
        if self.num_classes < 2 {
            return Err(Error::TooFewClasses(self.num_classes));
        }
        if let Some(class) = self.counts.iter().position(|&n| n == 0) {
            return Err(Error::EmptyClass {
                class,
                num_classes: self.num_classes,
            });
        }
        let dim = self.dim;
        let total: u64 = self.counts.iter().sum();
        let mut global_mean = vec![0.0; dim];
        for class_sum in self.sums.chunks_exact(dim.max(1)) {
            add_into(&mut global_mean, class_sum);
        }
        global_mean.iter_mut().for_each(|g| *g /= total as f64);
        let mut means = self.sums;
        for (mean, &n) in means.chunks_exact_mut(dim.max(1)).zip(&self.counts) {
            mean.iter_mut().for_each(|m| *m /= n as f64);
        }
        Ok(ClassMeans {
            num_classes: self.num_classes,
            dim,
            counts: Some(self.counts),
            means,
            global_mean,
        })
    }
}

fn add_into<T: Copy + std::ops::AddAssign>(acc: &mut [T], other: &[T]) {
    for (a, &b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}

/// Class means mu_k (K x d, row-major) and the global mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMeans {
    num_classes: usize,
    dim: usize,
    /// Samples per class; `None` for means read from a file without counts.
    counts: Option<Vec<u64>>,
    means: Vec<f64>,
    /// The sample mean of all features (count-weighted mean of the class means), or the
    /// plain mean of the class means when the counts are unknown.
    global_mean: Vec<f64>,
}

impl ClassMeans {
    /// Means given directly (e.g. a training run's saved `train_class_means`), K x d
    /// row-major, without counts: they can serve as the reference of the NCC rule.
    pub fn from_means(num_classes: usize, dim: usize, means: Vec<f64>) -> Result<Self> {
        if num_classes < 2 {
            return Err(Error::TooFewClasses(num_classes));
        }
        if means.len() != num_classes * dim {
            return Err(Error::Shape {
                what: "class means",
                expected: format!("{num_classes} x {dim} = {} values", num_classes * dim),
                got: format!("{} values", means.len()),
            });
        }
        check_finite("class means", &means, dim)?;
        let mut global_mean = vec![0.0; dim];
        for mean in means.chunks_exact(dim.max(1)) {
            add_into(&mut global_mean, mean);
        }
        global_mean
            .iter_mut()
            .for_each(|g| *g /= num_classes as f64);
        Ok(Self {
            num_classes,
            dim,
            counts: None,
            means,
            global_mean,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn counts(&self) -> Option<&[u64]> {
        self.counts.as_deref()
    }

    /// mu_k, K x d row-major.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    pub fn mean(&self, class: usize) -> &[f64] {
        &self.means[class * self.dim..(class + 1) * self.dim]
    }

    pub fn global_mean(&self) -> &[f64] {
        &self.global_mean
    }

    /// The centred means [mu_k - mu_G] as a d x K matrix.
    fn centred(&self) -> Mat<f64> {
        Mat::from_fn(self.dim, self.num_classes, |i, k| {
            self.mean(k)[i] - self.global_mean[i]
        })
    }
}

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
}

/// The truncated thin SVD basis of a centred-means matrix: columns of `basis` (d x r) and
/// the singular values above the cutoff.
struct Subspace {
    basis: Mat<f64>,
    singular_values: Vec<f64>,
}

fn truncated_basis(centred: &Mat<f64>) -> Result<Subspace> {
    let svd = centred
        .thin_svd()
        .map_err(|e| Error::Linalg(format!("{e:?}")))?;
    let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
    let largest = s.iter().copied().fold(0.0f64, f64::max);
    if largest <= 0.0 || !largest.is_finite() {
        return Err(Error::DegenerateMeans);
    }
    let kept: Vec<usize> = (0..s.len())
        .filter(|&j| s[j] > RANK_CUTOFF * largest)
        .collect();
    let u = svd.U();
    let basis = Mat::from_fn(centred.nrows(), kept.len(), |i, j| u[(i, kept[j])]);
    Ok(Subspace {
        basis,
        singular_values: kept.iter().map(|&j| s[j]).collect(),
    })
}

/// || G / ||G||_F - P ||_F for a K x K matrix G, with P = (I - 11^T/K) / sqrt(K-1).
fn distance_to_simplex(gram: &Mat<f64>) -> f64 {
    let k = gram.nrows();
    let norm = gram.norm_l2();
    let p_diag = (1.0 - 1.0 / k as f64) / ((k - 1) as f64).sqrt();
    let p_off = -1.0 / k as f64 / ((k - 1) as f64).sqrt();
    let mut sq = 0.0;
    for i in 0..k {
        for j in 0..k {
            let p = if i == j { p_diag } else { p_off };
            sq += (gram[(i, j)] / norm - p).powi(2);
        }
    }
    sq.sqrt()
}

/// (equinorm, equiangle) of vectors given by their K x K Gram matrix.
fn equinorm_equiangle(gram: &Mat<f64>) -> (f64, f64) {
    let k = gram.nrows();
    let norms: Vec<f64> = (0..k).map(|i| gram[(i, i)].max(0.0).sqrt()).collect();
    let mean = norms.iter().sum::<f64>() / k as f64;
    let var = norms.iter().map(|n| (n - mean).powi(2)).sum::<f64>() / k as f64;
    let mut angle_sum = 0.0;
    for i in 0..k {
        for j in i + 1..k {
            let cos = gram[(i, j)] / (norms[i] * norms[j]);
            angle_sum += (cos + 1.0 / (k - 1) as f64).abs();
        }
    }
    (var.sqrt() / mean, angle_sum / (k * (k - 1) / 2) as f64)
}

fn mat_mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.ncols());
    matmul(out.as_mut(), Accum::Replace, a, b, 1.0, Par::Seq);
    out
}

/// gamma_n = n u / (1 - n u), the relative error bound of an n-term sum of products
/// rounded with unit roundoff u (any order of summation, with or without FMA); `None` when
/// n u >= 1/2 (no useful bound).
fn gamma(n: usize, u: f64) -> Option<f64> {
    let nu = n as f64 * u;
    (nu < 0.5).then(|| nu / (1.0 - nu))
}

/// An upper bound on ||h - mu_y|| from the computed s = fl((h - mu_y).(h - mu_y)) of the
/// rounded difference: ||fl(h - mu_y) - (h - mu_y)|| <= u ||h - mu_y||, the sum of squares is
/// within gamma_d of its value, and squares below 2^-1074 may vanish (d 2^-1074 in all).
fn deviation_norm_bound(deviation_sq: f64, dim: usize) -> f64 {
    let relative = gamma(dim + 2, UNIT_F64).unwrap_or(f64::INFINITY);
    deviation_sq.sqrt() * (1.0 + 2.0 * relative) + (dim as f64).sqrt() * 2f64.powi(-536)
}

/// The error of the exact path's logits: for a sample h of class y, the f64 path computes
/// z64_k = fl(w_k.c) + fl(w_k.mu_y + b_k) with c = fl(h - mu_y) (one matrix product per
/// block, then the offset), and with A = max_k ||w_k||, gamma_n for u64 = 2^-53,
///
/// |z64_k - (w_k.h + b_k)| <= gamma_{d+4} (A (||h|| + 3 ||mu_y||) + 2 |b|) + (d + 4) 2^-1022,
///
/// the last term for products below the normal range. Any f64 evaluation of these logits
/// (any order of summation) is within this bound, so a decision that holds with twice this
/// margin is the decision of every one of them.
struct ExactLogitError {
    max_row_norm: f64,
    max_abs_bias: f64,
    /// ||mu_y|| per class.
    mean_norms: Vec<f64>,
    /// gamma64_{d+4}.
    relative: f64,
    dim: usize,
}

impl ExactLogitError {
    fn new(classifier: &Classifier, own: &ClassMeans) -> Option<Self> {
        let k = classifier.num_classes;
        Some(Self {
            max_row_norm: (0..k)
                .map(|c| crate::vector::dot(classifier.row(c), classifier.row(c)).sqrt())
                .fold(0.0, f64::max),
            max_abs_bias: classifier.bias.iter().fold(0.0, |m, b| b.abs().max(m)),
            mean_norms: (0..k)
                .map(|y| crate::vector::dot(own.mean(y), own.mean(y)).sqrt())
                .collect(),
            relative: gamma(classifier.dim + 4, UNIT_F64)?,
            dim: classifier.dim,
        })
    }

    /// ||h|| <= ||h - mu_y|| + ||mu_y|| for a sample of class y with ||h - mu_y|| <= `deviation`.
    fn sample_norm(&self, deviation: f64, y: usize) -> f64 {
        deviation + self.mean_norms[y]
    }

    /// The bound above (times 1.01, for the rounding of the norms it is made of) for a
    /// sample of class y with ||h|| <= `norm`.
    fn bound(&self, norm: f64, y: usize) -> f64 {
        let d = self.dim as f64;
        1.01 * (self.relative
            * (self.max_row_norm * (norm + 3.0 * self.mean_norms[y]) + 2.0 * self.max_abs_bias)
            + (d + 4.0) * 2f64.powi(-1022))
    }
}

/// The classifier's decisions (`accuracy`, `nc4`) from the NC1 projections, with no product
/// of W and the sample: where the class means' span captures W (as it does near collapse,
/// NC3) the logits are the projections' functionals plus a part bounded by Cauchy-Schwarz.
///
/// With s the mean row of W (a common shift: argmax_k z_k = argmax_k (z_k - s.h)),
/// v_k = w_k - s, a_k = U^T v_k (U: the d x r truncated basis of the centred means) and the
/// residual e_k = v_k - U a_k, a sample h = mu_y + c of class y has, exactly,
///
/// z_k - s.h = (v_k.mu_y + b_k) + a_k.(U^T c) + e_k.c,   |e_k.c| <= ||e_k|| ||c||.
///
/// The estimate zeta_k = o_yk + a_k.p, with o_yk = fl(v_k.mu_y + b_k) and the computed
/// projection p = fl(U^T fl(c)) of the NC1 product, is therefore within
/// T_k = E_k ||c|| + R_y(||c||) of z_k - s.h. With gamma_n for u64 = 2^-53,
/// g_d = gamma_{d+2} and g_r = gamma_{r+2} (each above the rounding bound of the sums they
/// stand for), F = ||U||_F and maxima over k: E_k >= ||e_k|| is the computed residual norm
/// plus its rounding, g_r (2 ||v_k|| + F ||a_k||), and R_y collects the rounding of v_k
/// (u ||v_k||), o (g_d), p (F (g_d + u) ||c||), the product a_k.p and the sum (g_r):
///
/// R_y(x) = g_d (2 max||v_k|| ||mu_y|| + max|b_k|) + g_r max_k |o_yk|
///          + max||a_k|| F (g_d + 2 g_r) x + (2d + 2r + 8) 2^-1022,
///
/// the last term for products below the normal range (times 1.01 in use, for the rounding of
/// the norms themselves).
///
/// With X the exact path's error ([`ExactLogitError`]), class j is the strict argmax of the
/// exact path's logits when zeta_j - T_j - X > zeta_k + T_k + X for every k != j: then the
/// decision is j, whatever the order of summation. Otherwise the sample goes to the logit
/// product (f32 under its own bound, or f64).
struct ProjectedLogits {
    /// a_k as rows: K x r.
    coefficients: Mat<f64>,
    /// o_yk = v_k.mu_y + b_k, K x K row-major (y, k).
    offsets: Vec<f64>,
    /// E_k (times 1.01).
    residual_norms: Vec<f64>,
    /// R_y(0) per class y, and the slope of R_y in ||c||.
    rounding_constant: Vec<f64>,
    rounding_slope: f64,
}

impl ProjectedLogits {
    /// `basis`: U, d x r with orthonormal columns (up to rounding; the bound does not rely on
    /// it). `None` when d is so large that the sums carry no guarantee.
    fn new(
        classifier: &Classifier,
        own: &ClassMeans,
        basis: MatRef<'_, f64>,
        exact: &ExactLogitError,
    ) -> Option<Self> {
        let (k, d, r) = (classifier.num_classes, classifier.dim, basis.ncols());
        let (gamma_r, gamma_d) = (gamma(r + 2, UNIT_F64)?, gamma(d + 2, UNIT_F64)?);
        let mut shift = vec![0.0; d];
        for c in 0..k {
            add_into(&mut shift, classifier.row(c));
        }
        shift.iter_mut().for_each(|s| *s /= k as f64);
        let shifted: Vec<f64> = (0..k * d)
            .map(|at| classifier.weight[at] - shift[at % d])
            .collect();
        let shifted = MatRef::from_row_major_slice(&shifted, k, d);
        let coefficients = mat_mul(shifted, basis);
        let in_span = mat_mul(coefficients.as_ref(), basis.transpose());
        let row_norm = |m: MatRef<'_, f64>, c: usize| {
            (0..m.ncols())
                .map(|j| m[(c, j)] * m[(c, j)])
                .sum::<f64>()
                .sqrt()
        };
        let shifted_norms: Vec<f64> = (0..k).map(|c| row_norm(shifted, c)).collect();
        let coefficient_norms: Vec<f64> =
            (0..k).map(|c| row_norm(coefficients.as_ref(), c)).collect();
        let basis_norm = basis.norm_l2();
        let residual_norms = (0..k)
            .map(|c| {
                let residual = (0..d)
                    .map(|i| (shifted[(c, i)] - in_span[(c, i)]).powi(2))
                    .sum::<f64>()
                    .sqrt();
                1.01 * (residual
                    + gamma_r * (2.0 * shifted_norms[c] + basis_norm * coefficient_norms[c]))
            })
            .collect();
        let means = MatRef::from_row_major_slice(&own.means, k, d);
        let products = mat_mul(means, shifted.transpose());
        let offsets: Vec<f64> = (0..k * k)
            .map(|at| products[(at / k, at % k)] + classifier.bias[at % k])
            .collect();
        let max = |values: &[f64]| values.iter().fold(0.0f64, |m, v| v.abs().max(m));
        let (max_shifted, max_coefficient) = (max(&shifted_norms), max(&coefficient_norms));
        let rounding_constant = (0..k)
            .map(|y| {
                gamma_d * (2.0 * max_shifted * exact.mean_norms[y] + exact.max_abs_bias)
                    + gamma_r * max(&offsets[y * k..(y + 1) * k])
                    + (2 * d + 2 * r + 8) as f64 * 2f64.powi(-1022)
            })
            .collect();
        let rounding_slope = max_coefficient * basis_norm * (gamma_d + 2.0 * gamma_r);
        Some(Self {
            coefficients,
            offsets,
            residual_norms,
            rounding_constant,
            rounding_slope,
        })
    }

    /// The exact path's argmax for a sample of class y with ||h - mu_y|| <= `deviation`,
    /// given a_k.p for every k (`projected`) and the exact path's error bound for this
    /// sample, when the bound proves it; else `None`.
    fn decide(&self, projected: &[f64], y: usize, deviation: f64, exact: f64) -> Option<usize> {
        let k = projected.len();
        let offsets = &self.offsets[y * k..(y + 1) * k];
        let slack = 1.01 * (self.rounding_constant[y] + self.rounding_slope * deviation) + exact;
        // The class with the largest lower bound, and the largest upper bound of the others.
        let mut best = (0, f64::NEG_INFINITY);
        let mut uppers = [(usize::MAX, f64::NEG_INFINITY); 2];
        for c in 0..k {
            let estimate = offsets[c] + projected[c];
            let spread = self.residual_norms[c] * deviation;
            if !(estimate.is_finite() && spread.is_finite()) {
                return None;
            }
            if estimate - spread > best.1 {
                best = (c, estimate - spread);
            }
            let upper = estimate + spread;
            if upper > uppers[0].1 {
                uppers = [(c, upper), uppers[0]];
            } else if upper > uppers[1].1 {
                uppers[1] = (c, upper);
            }
        }
        let others = if uppers[0].0 == best.0 {
            uppers[1].1
        } else {
            uppers[0].1
        };
        (best.1 - slack > others + slack && slack.is_finite()).then_some(best.0)
    }
}

/// The classifier's decisions from f32 logits, for the samples [`ProjectedLogits`] cannot
/// decide when the features are f32 values: the f32 product W h runs at twice the f64
/// speed, and a proved bound on its error decides which classes can still be the f64 argmax.
///
/// For a sample h with logits z_k = w_k.h + b_k, let z32_k be the f32 product of the
/// f32-rounded w_k with h plus b_k in f64. With u32 = 2^-24, u64 = 2^-53,
/// A = max_k ||w_k|| ||h|| and gamma_n = n u / (1 - n u), for every k (Cauchy-Schwarz bounds
/// sum_j |w_kj h_j| by A; the bound holds for any order of summation, with or without FMA):
///
/// |z32_k - z_k| <= (gamma32_d (1 + u32) + u32) A + 2 sqrt(d) ||h|| 2^-149 + 2 d 2^-126
///                  + 2 u64 (A + |b|)   (rounding of W to f32, underflow, adding b)
///
/// With B above the sum of this (times 1.01) and the exact path's error
/// ([`ExactLogitError`]), a class whose z32 is more than 2B below the largest z32 has a
/// smaller z64 than the class of the largest z32, so the f64 argmax is among the classes
/// within 2B of the top: when that is one class it is the decision; else those classes'
/// z64 are computed and compared as on the exact path. Samples whose f32 product could
/// overflow, or gives a non-finite value, take every class as a candidate.
struct F32Logits {
    /// W rounded to f32, K x d.
    weight: Mat<f32>,
    /// gamma32_d (1 + u32) + u32.
    relative_f32: f64,
    dim: usize,
}

/// Above this |W||h|, an f32 product may overflow (f32::MAX is 3.4e38).
const F32_PRODUCT_LIMIT: f64 = 1e36;
/// Unit roundoffs u32 = 2^-24 and u64 = 2^-53.
const UNIT_F32: f64 = f32::EPSILON as f64 / 2.0;
const UNIT_F64: f64 = f64::EPSILON / 2.0;

impl F32Logits {
    /// `None` when d is so large that f32 sums carry no guarantee.
    fn new(classifier: &Classifier) -> Option<Self> {
        let (k, d) = (classifier.num_classes, classifier.dim);
        Some(Self {
            weight: Mat::from_fn(k, d, |c, j| classifier.row(c)[j] as f32),
            relative_f32: gamma(d, UNIT_F32)? * (1.0 + UNIT_F32) + UNIT_F32,
            dim: d,
        })
    }

    /// The f32 part of B for a sample with ||h|| <= `norm` (max_k ||w_k|| and max_k |b_k|
    /// from `exact`); infinite where f32 could overflow.
    fn error_bound(&self, exact: &ExactLogitError, norm: f64) -> f64 {
        let a = exact.max_row_norm * norm;
        if a.is_nan() || a >= F32_PRODUCT_LIMIT {
            return f64::INFINITY;
        }
        let d = self.dim as f64;
        1.01 * (self.relative_f32 * a
            + 2.0 * d.sqrt() * norm * 2f64.powi(-149)
            + 2.0 * d * 2f64.powi(-126)
            + 2.0 * UNIT_F64 * (a + exact.max_abs_bias))
    }
}

/// Class-level metrics (no sample needed) that need the classifier.
struct ClassifierMetrics {
    nc2: f64,
    nc3: f64,
    bias_relation: f64,
    equinorm_w: f64,
    equiangle_w: f64,
}

/// Everything phase 2 needs, derived once from the phase-1 means (and optionally a
/// classifier and the reference means of the NCC rule).
pub struct MetricsPlan {
    num_classes: usize,
    dim: usize,
    own_means: Vec<f64>,
    own_counts: Option<Vec<u64>>,
    classifier: Option<Classifier>,
    /// Functionals applied to each centred sample c = h - mu_y, as rows (m x d): U^T
    /// (r rows), and Q^T (r_q rows) only when the NCC reference means differ from the
    /// file's own (otherwise Q = U).
    functionals: Mat<f64>,
    /// 1 / s_j^2 for the r kept singular values of M.
    inv_sq_singular: Vec<f64>,
    /// (W mu_y + b)_k, K x K row-major (y, k).
    logit_offset: Vec<f64>,
    /// The classifier's decisions: the exact path's error bound, the route from the
    /// projections (only where r < d: elsewhere it cannot cost less than a logit
    /// product), and the route from f32 logits (used for f32 features); all exist only
    /// with a classifier.
    logit_error: Option<ExactLogitError>,
    projected_logits: Option<ProjectedLogits>,
    f32_logits: Option<F32Logits>,
    /// First row of the Q-projections q = Q^T c among the functional outputs.
    ncc_rows: std::ops::Range<usize>,
    /// c_k = Q^T (m_k - m_G): reference means in Q-coordinates, K x r_q (row k = class k).
    ncc_coords: Mat<f64>,
    /// a_y = Q^T (mu_y - m_G), K x r_q row-major.
    ncc_anchor: Vec<f64>,
    /// ||a_y - c_k||^2, K x K row-major (y, k).
    ncc_offset: Vec<f64>,
    class_level: ClassLevel,
}

struct ClassLevel {
    classifier: Option<ClassifierMetrics>,
    equinorm_h: f64,
    equiangle_h: f64,
    nc2_means: f64,
    /// ||mu_k - mu_l||^2, K x K row-major.
    mean_distance_sq: Vec<f64>,
}

/// The nearest-class-centre rule in the truncated singular basis Q of its reference means
/// m_k (Q = U when those are the data's own means).
struct NccGeometry {
    /// Q when the reference means are not the data's own.
    reference_basis: Option<Mat<f64>>,
    /// c_k = Q^T (m_k - m_G), K x r_q (row k = class k).
    coords: Mat<f64>,
    /// a_y = Q^T (mu_y - m_G), K x r_q row-major.
    anchor: Vec<f64>,
    /// ||a_y - c_k||^2, K x K row-major (y, k).
    offset: Vec<f64>,
}

impl NccGeometry {
    /// `reference`: `None` for the data's own means, whose basis `own_basis` is.
    fn new(own: &ClassMeans, reference: Option<&ClassMeans>, own_basis: &Mat<f64>) -> Result<Self> {
        let k = own.num_classes;
        let reference_basis = match reference {
            Some(r) => Some(truncated_basis(&r.centred())?.basis),
            None => None,
        };
        let reference = reference.unwrap_or(own);
        let q = reference_basis.as_ref().unwrap_or(own_basis).as_ref();
        let coords = mat_mul(reference.centred().transpose(), q);
        let own_vs_ref = Mat::from_fn(own.dim, k, |i, y| own.mean(y)[i] - reference.global_mean[i]);
        let anchor = mat_mul(own_vs_ref.transpose(), q);
        let rq = q.ncols();
        let mut offset = vec![0.0; k * k];
        for y in 0..k {
            for c in 0..k {
                offset[y * k + c] = (0..rq)
                    .map(|j| (anchor[(y, j)] - coords[(c, j)]).powi(2))
                    .sum();
            }
        }
        let anchor = (0..k)
            .flat_map(|y| (0..rq).map(move |j| (y, j)))
            .map(|(y, j)| anchor[(y, j)])
            .collect();
        Ok(Self {
            reference_basis,
            coords,
            anchor,
            offset,
        })
    }
}

impl MetricsPlan {
    /// `own`: the phase-1 means of the data being measured. `reference`: the class means the
    /// NCC rule (`nc4`, `ncc_accuracy`) compares with, e.g. the training split's for a test
    /// split; `None` uses `own`.
    pub fn new(
        own: &ClassMeans,
        classifier: Option<&Classifier>,
        reference: Option<&ClassMeans>,
    ) -> Result<Self> {
        let (k, d) = (own.num_classes, own.dim);
        if k < 2 {
            return Err(Error::TooFewClasses(k));
        }
        if let Some(clf) = classifier {
            if (clf.num_classes, clf.dim) != (k, d) {
                return Err(Error::Mismatch(format!(
                    "the classifier is {} x {}, but the features have {k} classes of dimension {d}",
                    clf.num_classes, clf.dim
                )));
            }
        }
        if let Some(r) = reference {
            if (r.num_classes, r.dim) != (k, d) {
                return Err(Error::Mismatch(format!(
                    "the reference means are {} x {}, but the features have {k} classes of dimension {d}",
                    r.num_classes, r.dim
                )));
            }
        }
        let centred = own.centred();
        let (own_basis, class_level) = rayon::join(
            || truncated_basis(&centred),
            || ClassLevel::new(own, &centred, classifier),
        );
        let own_basis = own_basis?;
        let r = own_basis.singular_values.len();

        let same_reference = reference.is_none_or(|r| std::ptr::eq(r, own));
        let logit_error = classifier.and_then(|clf| ExactLogitError::new(clf, own));
        let (ncc, projected_logits) = rayon::join(
            || NccGeometry::new(own, reference.filter(|_| !same_reference), &own_basis.basis),
            || {
                let clf = classifier.filter(|_| r < d)?;
                ProjectedLogits::new(clf, own, own_basis.basis.as_ref(), logit_error.as_ref()?)
            },
        );
        let NccGeometry {
            reference_basis: ref_basis,
            coords: ncc_coords,
            anchor: ncc_anchor,
            offset: ncc_offset,
        } = ncc?;
        let q = ref_basis.as_ref().unwrap_or(&own_basis.basis).as_ref();

        let extra_rows = ref_basis.as_ref().map_or(0, |b| b.ncols());
        let functionals = Mat::from_fn(r + extra_rows, d, |row, i| {
            if row < r {
                own_basis.basis[(i, row)]
            } else {
                q[(i, row - r)]
            }
        });
        let ncc_rows = if same_reference {
            0..r
        } else {
            r..r + extra_rows
        };
        let logit_offset = match classifier {
            None => Vec::new(),
            Some(clf) => {
                let means = MatRef::from_row_major_slice(&own.means, k, d);
                let weight = MatRef::from_row_major_slice(&clf.weight, k, d);
                let products = mat_mul(means, weight.transpose());
                (0..k * k)
                    .map(|at| products[(at / k, at % k)] + clf.bias[at % k])
                    .collect()
            }
        };
        Ok(Self {
            f32_logits: classifier.and_then(F32Logits::new),
            logit_error,
            projected_logits,
            num_classes: k,
            dim: d,
            own_means: own.means.clone(),
            own_counts: own.counts.clone(),
            classifier: classifier.cloned(),
            functionals,
            inv_sq_singular: own_basis
                .singular_values
                .iter()
                .map(|s| 1.0 / (s * s))
                .collect(),
            logit_offset,
            ncc_rows,
            ncc_coords,
            ncc_anchor,
            ncc_offset,
            class_level,
        })
    }

    /// A fresh phase-2 accumulator for this plan.
    pub fn accumulator(&self) -> ScatterAccumulator<'_> {
        ScatterAccumulator {
            plan: self,
            state: ScatterState::new(self),
            rows_seen: 0,
        }
    }

    /// The rank of Sigma_B kept by the cutoff.
    pub fn sigma_b_rank(&self) -> usize {
        self.inv_sq_singular.len()
    }

    fn rank(&self) -> usize {
        self.inv_sq_singular.len()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl ClassLevel {
    fn new(own: &ClassMeans, centred: &Mat<f64>, classifier: Option<&Classifier>) -> Self {
        let (k, d) = (own.num_classes, own.dim);
        let gram_means = mat_mul(centred.transpose(), centred.as_ref());
        let (equinorm_h, equiangle_h) = equinorm_equiangle(&gram_means);
        let nc2_means = distance_to_simplex(&gram_means);
        let upper: Vec<Vec<f64>> = (0..k)
            .into_par_iter()
            .map(|a| {
                (a + 1..k)
                    .map(|b| crate::vector::squared_distance(own.mean(a), own.mean(b)))
                    .collect()
            })
            .collect();
        let mut mean_distance_sq = vec![0.0; k * k];
        for (a, row) in upper.iter().enumerate() {
            for (b, &distance) in (a + 1..k).zip(row) {
                mean_distance_sq[a * k + b] = distance;
                mean_distance_sq[b * k + a] = distance;
            }
        }
        let classifier = classifier.map(|clf| {
            let w = MatRef::from_row_major_slice(&clf.weight, k, d);
            let mut mean_row = vec![0.0; d];
            for c in 0..k {
                add_into(&mut mean_row, clf.row(c));
            }
            let centred_w = Mat::from_fn(k, d, |c, i| w[(c, i)] - mean_row[i] / k as f64);
            let gram_w = mat_mul(centred_w.as_ref(), centred_w.transpose());
            let (equinorm_w, equiangle_w) = equinorm_equiangle(&gram_w);
            let wm = mat_mul(centred_w.as_ref(), centred.as_ref());
            let bias_relation = (0..k)
                .map(|c| (dot(clf.row(c), &own.global_mean) + clf.bias[c]).powi(2))
                .sum::<f64>()
                .sqrt();
            ClassifierMetrics {
                nc2: distance_to_simplex(&gram_w),
                nc3: distance_to_simplex(&wm),
                bias_relation,
                equinorm_w,
                equiangle_w,
            }
        });
        Self {
            classifier,
            equinorm_h,
            equiangle_h,
            nc2_means,
            mean_distance_sq,
        }
    }
}

/// The mergeable numeric state of phase 2.
#[derive(Debug, Clone, PartialEq)]
struct ScatterState {
    class_counts: Vec<u64>,
    /// sum_i (u_j^T (h_i - mu_{y_i}))^2 for each kept direction j.
    projected_sq: Vec<f64>,
    /// sum over class k of ||h - mu_k||^2.
    deviation_sq: Vec<f64>,
    correct: u64,
    ncc_correct: u64,
    ncc_mismatch: u64,
    /// Samples whose classifier decision came from the projections (no logit product).
    decided_by_projection: u64,
}

impl ScatterState {
    fn new(plan: &MetricsPlan) -> Self {
        Self {
            class_counts: vec![0; plan.num_classes],
            projected_sq: vec![0.0; plan.rank()],
            deviation_sq: vec![0.0; plan.num_classes],
            correct: 0,
            ncc_correct: 0,
            ncc_mismatch: 0,
            decided_by_projection: 0,
        }
    }

    fn merge(&mut self, other: &ScatterState) {
        add_into(&mut self.class_counts, &other.class_counts);
        add_into(&mut self.projected_sq, &other.projected_sq);
        add_into(&mut self.deviation_sq, &other.deviation_sq);
        self.correct += other.correct;
        self.ncc_correct += other.ncc_correct;
        self.ncc_mismatch += other.ncc_mismatch;
        self.decided_by_projection += other.decided_by_projection;
    }

    /// Processes at most `BLOCK_ROWS` samples: one f64 matrix product for the projections
    /// (NC1, the NCC rule and most classifier decisions), and one logit product for the
    /// samples whose decision the projections cannot prove.
    fn add_block<T: Feature>(
        &mut self,
        plan: &MetricsPlan,
        features: &[T],
        labels: &[u32],
        scratch: &mut Scratch,
    ) {
        let (k, d, rows) = (plan.num_classes, plan.dim, labels.len());
        scratch.centred.clear();
        scratch.deviations.clear();
        for (row, &y) in features.chunks_exact(d).zip(labels) {
            let y = y as usize;
            let mean = &plan.own_means[y * d..(y + 1) * d];
            let start = scratch.centred.len();
            let centred = &mut scratch.centred;
            centred.extend(row.iter().zip(mean).map(|(&h, &mu)| h.to_f64() - mu));
            let deviation_sq = crate::vector::dot(&centred[start..], &centred[start..]);
            self.deviation_sq[y] += deviation_sq;
            self.class_counts[y] += 1;
            scratch
                .deviations
                .push(deviation_norm_bound(deviation_sq, d));
        }
        let centred_t = MatRef::from_column_major_slice(&scratch.centred, d, rows);
        let outputs = &mut scratch.outputs;
        resize(outputs, plan.functionals.nrows(), rows);
        matmul(
            outputs.as_mut(),
            Accum::Replace,
            plan.functionals.as_ref(),
            centred_t,
            1.0,
            Par::Seq,
        );
        // q.c_k for every sample and class: (K x r_q) (r_q x rows).
        let ncc_rows = plan.ncc_rows.clone();
        let q = outputs.as_ref().subrows(ncc_rows.start, ncc_rows.len());
        resize(&mut scratch.ncc_dots, k, rows);
        matmul(
            scratch.ncc_dots.as_mut(),
            Accum::Replace,
            plan.ncc_coords.as_ref(),
            q,
            1.0,
            Par::Seq,
        );

        let (r, rq) = (plan.rank(), ncc_rows.len());
        scratch.ncc_decisions.clear();
        for (i, &y) in labels.iter().enumerate() {
            let y = y as usize;
            let out = outputs.col_as_slice(i);
            for (acc, &p) in self.projected_sq.iter_mut().zip(&out[..r]) {
                *acc += p * p;
            }
            // Squared NCC distance up to a k-independent term:
            // ||q + a_y - c_k||^2 - ||q||^2 = 2 q.a_y - 2 q.c_k + ||a_y - c_k||^2.
            let qa = dot(
                &out[ncc_rows.clone()],
                &plan.ncc_anchor[y * rq..(y + 1) * rq],
            );
            let dots = scratch.ncc_dots.col_as_slice(i);
            let ncc = argmin((0..k).map(|c| 2.0 * (qa - dots[c]) + plan.ncc_offset[y * k + c]));
            if ncc == y {
                self.ncc_correct += 1;
            }
            scratch.ncc_decisions.push(ncc);
        }
        if let Some(classifier) = &plan.classifier {
            self.classify(plan, classifier, features, labels, scratch);
            for ((&predicted, &ncc), &y) in scratch
                .decisions
                .iter()
                .zip(&scratch.ncc_decisions)
                .zip(labels)
            {
                if predicted == y as usize {
                    self.correct += 1;
                }
                if predicted != ncc {
                    self.ncc_mismatch += 1;
                }
            }
        }
    }

    /// Fills `scratch.decisions` with argmax_k (W h + b)_k of the block's samples (the
    /// exact path's decisions): from the projections where [`ProjectedLogits`] proves them,
    /// else from one logit product over the remaining samples, in f32 under
    /// [`F32Logits`]' bound for f32 features, in f64 otherwise.
    fn classify<T: Feature>(
        &mut self,
        plan: &MetricsPlan,
        classifier: &Classifier,
        features: &[T],
        labels: &[u32],
        scratch: &mut Scratch,
    ) {
        let (k, d, rows) = (plan.num_classes, plan.dim, labels.len());
        let Scratch {
            centred,
            deviations,
            outputs,
            estimates,
            decisions,
            undecided,
            gathered,
            gathered_f32,
            logits,
            logits_f32,
            ..
        } = scratch;
        decisions.clear();
        undecided.clear();
        // Both routes need the exact path's error bound (absent only for absurd d).
        let errors = plan.logit_error.as_ref();
        let f32_logits = plan
            .f32_logits
            .as_ref()
            .zip(errors)
            .filter(|_| T::EXACT_F32);
        // The projections cost K r f64 multiply-adds per sample, the logit product K d in
        // f64 or K d in f32 at twice the speed: they are tried only where they cost less.
        let r = plan.rank();
        let cheaper = f32_logits.is_none() || 2 * r < d;
        match plan
            .projected_logits
            .as_ref()
            .zip(errors)
            .filter(|_| cheaper)
        {
            Some((projected, errors)) => {
                resize(estimates, k, rows);
                matmul(
                    estimates.as_mut(),
                    Accum::Replace,
                    projected.coefficients.as_ref(),
                    outputs.as_ref().subrows(0, r),
                    1.0,
                    Par::Seq,
                );
                for (i, &y) in labels.iter().enumerate() {
                    let y = y as usize;
                    let bound = errors.bound(errors.sample_norm(deviations[i], y), y);
                    let estimate = estimates.col_as_slice(i);
                    match projected.decide(estimate, y, deviations[i], bound) {
                        Some(class) => decisions.push(class),
                        None => {
                            decisions.push(usize::MAX);
                            undecided.push(i);
                        }
                    }
                }
                self.decided_by_projection += (rows - undecided.len()) as u64;
            }
            None => {
                decisions.resize(rows, usize::MAX);
                undecided.extend(0..rows);
            }
        }
        if undecided.is_empty() {
            return;
        }
        let count = undecided.len();
        if let Some((f32_logits, errors)) = f32_logits {
            gathered_f32.clear();
            for &i in undecided.iter() {
                let row = &features[i * d..(i + 1) * d];
                gathered_f32.extend(row.iter().map(|&h| h.to_f32()));
            }
            resize(logits_f32, k, count);
            matmul(
                logits_f32.as_mut(),
                Accum::Replace,
                f32_logits.weight.as_ref(),
                MatRef::from_column_major_slice(gathered_f32, d, count),
                1.0,
                Par::Seq,
            );
            for (j, &i) in undecided.iter().enumerate() {
                let y = labels[i] as usize;
                let centred_row = &centred[i * d..(i + 1) * d];
                let offsets = &plan.logit_offset[y * k..(y + 1) * k];
                let exact = |c: usize| dot(classifier.row(c), centred_row) + offsets[c];
                decisions[i] = f32_logits.decide(
                    logits_f32.col_as_slice(j),
                    classifier.bias(),
                    errors,
                    errors.sample_norm(deviations[i], y),
                    y,
                    exact,
                );
            }
        } else {
            gathered.clear();
            for &i in undecided.iter() {
                gathered.extend_from_slice(&centred[i * d..(i + 1) * d]);
            }
            resize(logits, k, count);
            matmul(
                logits.as_mut(),
                Accum::Replace,
                MatRef::from_row_major_slice(&classifier.weight, k, d),
                MatRef::from_column_major_slice(gathered, d, count),
                1.0,
                Par::Seq,
            );
            for (j, &i) in undecided.iter().enumerate() {
                let y = labels[i] as usize;
                let offsets = &plan.logit_offset[y * k..(y + 1) * k];
                let column = logits.col_as_slice(j);
                decisions[i] = argmin(column.iter().zip(offsets).map(|(z, o)| -(z + o)));
            }
        }
    }
}

/// Reusable buffers of one parallel piece of phase 2.
struct Scratch {
    /// Class-centred samples h - mu_y, f64, one after the other, and upper bounds on their
    /// norms.
    centred: Vec<f64>,
    deviations: Vec<f64>,
    /// Functional outputs (m x rows), NCC dot products (K x rows), projected logit
    /// estimates a_k.p (K x rows).
    outputs: Mat<f64>,
    ncc_dots: Mat<f64>,
    estimates: Mat<f64>,
    /// Per sample: the NCC class and the classifier's class.
    ncc_decisions: Vec<usize>,
    decisions: Vec<usize>,
    /// The samples the projections cannot decide, their centred rows (f64 route) or
    /// features (f32 route), and their logits.
    undecided: Vec<usize>,
    gathered: Vec<f64>,
    gathered_f32: Vec<f32>,
    logits: Mat<f64>,
    logits_f32: Mat<f32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            centred: Vec::new(),
            deviations: Vec::new(),
            outputs: Mat::zeros(0, 0),
            ncc_dots: Mat::zeros(0, 0),
            estimates: Mat::zeros(0, 0),
            ncc_decisions: Vec::new(),
            decisions: Vec::new(),
            undecided: Vec::new(),
            gathered: Vec::new(),
            gathered_f32: Vec::new(),
            logits: Mat::zeros(0, 0),
            logits_f32: Mat::zeros(0, 0),
        }
    }
}

fn resize<T: faer::traits::ComplexField>(m: &mut Mat<T>, rows: usize, cols: usize) {
    if (m.nrows(), m.ncols()) != (rows, cols) {
        *m = Mat::zeros(rows, cols);
    }
}

impl F32Logits {
    /// The argmax over classes of the exact path's logits `exact(c)` (first class on ties,
    /// as `argmin` of their negatives), decided from the f32 products `z32` = W h and the
    /// bias wherever the bound allows, for a sample of class y with ||h|| <= `norm`.
    fn decide(
        &self,
        z32: &[f32],
        bias: &[f64],
        errors: &ExactLogitError,
        norm: f64,
        y: usize,
        exact: impl Fn(usize) -> f64,
    ) -> usize {
        let bound = self.error_bound(errors, norm) + errors.bound(norm, y);
        let z = |c: usize| f64::from(z32[c]) + bias[c];
        let classes = 0..z32.len();
        let certified = bound.is_finite() && classes.clone().all(|c| z(c).is_finite());
        let top = classes.clone().map(z).fold(f64::NEG_INFINITY, f64::max);
        let floor = top - 2.0 * bound;
        let mut candidates = classes.filter(|&c| !certified || z(c) >= floor);
        match (candidates.next(), candidates.clone().next()) {
            (Some(only), None) => only,
            (first, _) => argmin_of(first.into_iter().chain(candidates).map(|c| (c, -exact(c)))),
        }
    }
}

/// Index of the smallest value, the first one on ties.
fn argmin(values: impl Iterator<Item = f64>) -> usize {
    argmin_of(values.enumerate())
}

/// The index paired with the smallest value, the first one on ties (0 when there is none
/// smaller than +Inf).
fn argmin_of(indexed: impl Iterator<Item = (usize, f64)>) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, v) in indexed {
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Phase 2: the projected within-class scatter, per-class variances and the decision
/// rules, accumulated over batches of the same data phase 1 saw.
pub struct ScatterAccumulator<'p> {
    plan: &'p MetricsPlan,
    state: ScatterState,
    rows_seen: u64,
}

impl<'p> ScatterAccumulator<'p> {
    /// Adds a batch (labels.len() x d, row-major), processed in parallel blocks.
    pub fn add_batch<T: Feature>(&mut self, features: &[T], labels: &[u32]) -> Result<()> {
        let plan = self.plan;
        check_batch(features, labels, plan.dim, plan.num_classes, self.rows_seen)?;
        let blank = || (ScatterState::new(plan), Scratch::default());
        let partial = features
            .par_chunks(BLOCK_ROWS * plan.dim.max(1))
            .zip(labels.par_chunks(BLOCK_ROWS))
            .with_min_len(blocks_per_piece(labels.len()))
            .fold(blank, |(mut state, mut scratch), (block, block_labels)| {
                state.add_block(plan, block, block_labels, &mut scratch);
                (state, scratch)
            })
            .map(|(state, ..)| state)
            .reduce(
                || ScatterState::new(plan),
                |mut a, b| {
                    a.merge(&b);
                    a
                },
            );
        self.state.merge(&partial);
        self.rows_seen += labels.len() as u64;
        Ok(())
    }

    /// Combines a shard's phase-2 accumulator (built from the same plan) with this one.
    pub fn merge(&mut self, other: &ScatterAccumulator<'_>) -> Result<()> {
        if !std::ptr::eq(self.plan, other.plan) {
            return Err(Error::Mismatch(
                "phase-2 accumulators come from different plans".into(),
            ));
        }
        self.state.merge(&other.state);
        self.rows_seen += other.rows_seen;
        Ok(())
    }

    pub fn finish(self) -> Result<NcMetrics> {
        let plan = self.plan;
        let state = self.state;
        let k = plan.num_classes;
        if let Some(expected) = &plan.own_counts {
            if *expected != state.class_counts {
                return Err(Error::Mismatch(format!(
                    "phase 2 saw class counts {:?}, phase 1 saw {:?}: both passes must cover the same samples",
                    state.class_counts, expected
                )));
            }
        }
        let n: u64 = state.class_counts.iter().sum();
        if n == 0 {
            return Err(Error::InvalidArgument("phase 2 saw no samples".into()));
        }
        let nf = n as f64;
        let nc1 = state
            .projected_sq
            .iter()
            .zip(&plan.inv_sq_singular)
            .map(|(sq, inv)| sq / nf * inv)
            .sum();
        let variance: Vec<f64> = state
            .deviation_sq
            .iter()
            .zip(&state.class_counts)
            .map(|(sq, &c)| if c > 0 { sq / c as f64 } else { 0.0 })
            .collect();
        let mut cdnv_sum = 0.0;
        for a in 0..k {
            for b in a + 1..k {
                cdnv_sum += (variance[a] + variance[b])
                    / (2.0 * plan.class_level.mean_distance_sq[a * k + b]);
            }
        }
        let level = &plan.class_level;
        let clf = level.classifier.as_ref();
        let fraction = |count: u64| count as f64 / nf;
        Ok(NcMetrics {
            nc1,
            nc2: clf.map(|c| c.nc2),
            nc3: clf.map(|c| c.nc3),
            nc4: clf.map(|_| fraction(state.ncc_mismatch)),
            bias_relation: clf.map(|c| c.bias_relation),
            accuracy: clf.map(|_| fraction(state.correct)),
            ncc_accuracy: fraction(state.ncc_correct),
            equinorm_w: clf.map(|c| c.equinorm_w),
            equinorm_h: level.equinorm_h,
            equiangle_w: clf.map(|c| c.equiangle_w),
            equiangle_h: level.equiangle_h,
            nc2_means: level.nc2_means,
            cdnv: cdnv_sum / (k * (k - 1) / 2) as f64,
            num_samples: n,
            num_classes: k,
            dim: plan.dim,
            sigma_b_rank: plan.sigma_b_rank(),
        })
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
    let mut means = MeanAccumulator::new(num_classes, dim);
    means.add_batch(features, labels)?;
    let means = means.finish()?;
    let plan = MetricsPlan::new(&means, classifier, reference_means)?;
    let mut scatter = plan.accumulator();
    scatter.add_batch(features, labels)?;
    scatter.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// Near collapse (W close to the class means, small within-class spread) the
    /// projections decide every sample, so no logit product runs; away from it (a random
    /// W, spread-out classes) they decide few. The decisions themselves are tested against brute force in
    /// tests/metrics.rs.
    #[test]
    fn projections_decide_collapsed_samples() {
        let mut rng = StdRng::seed_from_u64(5);
        let (k, d, per_class) = (6, 40, 50);
        let mut normal = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
        let centres: Vec<f64> = (0..k * d).map(|_| normal(3.0)).collect();
        let aligned: Vec<f64> = centres.iter().map(|&c| c + normal(0.01)).collect();
        let random: Vec<f64> = (0..k * d).map(|_| normal(1.0)).collect();
        let labels: Vec<u32> = (0..k * per_class).map(|i| (i % k) as u32).collect();
        let mut sample = |spread: f64| -> Vec<f32> {
            labels
                .iter()
                .flat_map(|&y| (0..d).map(move |i| (y as usize, i)))
                .map(|(y, i)| (centres[y * d + i] + normal(spread)) as f32)
                .collect()
        };
        let (collapsed, spread_out) = (sample(0.05), sample(3.0));
        let decided = |weight: Vec<f64>, features: &[f32]| {
            let clf = Classifier::new(k, d, weight, None).unwrap();
            let mut means = MeanAccumulator::new(k, d);
            means.add_batch(features, &labels).unwrap();
            let means = means.finish().unwrap();
            let plan = MetricsPlan::new(&means, Some(&clf), None).unwrap();
            let mut scatter = plan.accumulator();
            scatter.add_batch(features, &labels).unwrap();
            let by_projection = scatter.state.decided_by_projection;
            (by_projection, scatter.finish().unwrap().accuracy)
        };
        let n = labels.len() as u64;
        assert_eq!(decided(aligned, &collapsed), (n, Some(1.0)));
        let (by_projection, _) = decided(random, &spread_out);
        assert!(by_projection < n / 2, "{by_projection} of {n}");
    }
}
