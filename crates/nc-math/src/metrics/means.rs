//! Phase 1: per-class counts and feature sums, and the class means they give.

use super::batch::{blocks_per_piece, check_batch, BLOCK_ROWS};
use super::element::{check_finite, Feature};
use crate::linalg::add_into;
use crate::{Error, Result};
use faer::Mat;
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Phase 1: per-class counts and feature sums. Serialisable (the sums as their exact bit
/// patterns) so that a pass can stop and resume, or a shard travel to where it is merged;
/// a state whose shapes do not fit together is refused when read.
// `remote = "Self"` makes the derives inherent functions, called by the trait impls below:
// reading checks the shapes before anything can index with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct MeanAccumulator {
    num_classes: usize,
    dim: usize,
    counts: Vec<u64>,
    #[serde(with = "super::exact_f64")]
    sums: Vec<f64>,
    rows_seen: u64,
}

impl Serialize for MeanAccumulator {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        MeanAccumulator::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for MeanAccumulator {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let state = MeanAccumulator::deserialize(deserializer)?;
        state.check_shapes().map_err(serde::de::Error::custom)?;
        Ok(state)
    }
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

    /// An accumulator from its sums, as read from a format outside serde (the partial-state
    /// bytes of `nc_data::partial_state`): `counts` (K) samples per class and `sums` (K x d,
    /// row-major) their feature sums. Refused unless the shapes fit and every sum is finite.
    pub fn from_parts(
        num_classes: usize,
        dim: usize,
        counts: Vec<u64>,
        sums: Vec<f64>,
    ) -> Result<Self> {
        let rows_seen = counts
            .iter()
            .try_fold(0u64, |n, &c| n.checked_add(c))
            .ok_or_else(|| Error::Mismatch("the class counts overflow u64".into()))?;
        let state = Self {
            num_classes,
            dim,
            counts,
            sums,
            rows_seen,
        };
        state.check_shapes()?;
        check_finite("class sums", &state.sums, dim)?;
        Ok(state)
    }

    /// K.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Samples per class so far.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Per-class feature sums so far, K x d row-major.
    pub fn sums(&self) -> &[f64] {
        &self.sums
    }

    /// The rows added so far, over all batches and merged shards.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// K counts adding up to the rows seen, and K x d sums.
    fn check_shapes(&self) -> Result<()> {
        let (k, d) = (self.num_classes, self.dim);
        let consistent = self.counts.len() == k
            && k.checked_mul(d) == Some(self.sums.len())
            && self.counts.iter().try_fold(0u64, |n, &c| n.checked_add(c)) == Some(self.rows_seen);
        if !consistent {
            return Err(Error::Mismatch(format!(
                "a K={k}, d={d} mean accumulator needs {k} counts adding up to its {} rows and \
                 K x d sums; this one has {} counts and {} sums",
                self.rows_seen,
                self.counts.len(),
                self.sums.len()
            )));
        }
        Ok(())
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
            .with_min_len(blocks_per_piece(
                labels.len(),
                8 * self.num_classes * (dim + 1),
            ))
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
            .reduce_with(|(mut c1, mut s1), (c2, s2)| {
                add_into(&mut c1, &c2);
                add_into(&mut s1, &s2);
                (c1, s1)
            })
            .unwrap_or_else(blank);
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
        let global_mean = unweighted_mean(&means, num_classes, dim);
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

    /// The plain mean of the K class means (the global mean when the counts are unknown,
    /// or the classes equal in size).
    pub(super) fn mean_of_class_means(&self) -> Vec<f64> {
        unweighted_mean(&self.means, self.num_classes, self.dim)
    }

    /// The centred means [mu_k - mu_G] as a d x K matrix.
    pub(super) fn centred(&self) -> Mat<f64> {
        Mat::from_fn(self.dim, self.num_classes, |i, k| {
            self.mean(k)[i] - self.global_mean[i]
        })
    }
}

/// (1/K) sum_k mu_k of K x d row-major means.
fn unweighted_mean(means: &[f64], num_classes: usize, dim: usize) -> Vec<f64> {
    let mut mean = vec![0.0; dim];
    for class_mean in means.chunks_exact(dim.max(1)) {
        add_into(&mut mean, class_mean);
    }
    mean.iter_mut().for_each(|g| *g /= num_classes as f64);
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_bad_parts_are_refused() {
        let mut acc = MeanAccumulator::new(3, 2);
        let features = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        acc.add_batch(&features, &[0, 2, 2, 1]).unwrap();
        assert_eq!((acc.num_classes(), acc.dim(), acc.rows_seen()), (3, 2, 4));
        assert_eq!(acc.counts(), &[1, 1, 2]);
        assert_eq!(acc.sums(), &[1.0, 2.0, 7.0, 8.0, 8.0, 10.0]);
        let back =
            MeanAccumulator::from_parts(3, 2, acc.counts().to_vec(), acc.sums().to_vec()).unwrap();
        assert_eq!(back, acc);
        // Wrong number of counts, wrong number of sums, a non-finite sum, overflowing counts.
        assert!(MeanAccumulator::from_parts(3, 2, vec![1, 1], vec![0.0; 6]).is_err());
        assert!(MeanAccumulator::from_parts(3, 2, vec![1, 1, 2], vec![0.0; 5]).is_err());
        let mut sums = vec![0.0; 6];
        sums[3] = f64::NAN;
        let err = MeanAccumulator::from_parts(3, 2, vec![1, 1, 2], sums).unwrap_err();
        assert!(err.to_string().contains("row 1, column 1"), "{err}");
        assert!(MeanAccumulator::from_parts(2, 1, vec![u64::MAX, 1], vec![0.0; 2]).is_err());
    }
}
