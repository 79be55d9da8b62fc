//! Seeded Gaussian-mixture classes, a data set with known structure for tests and demos.
//!
//! Model: K class centres `c_k ~ N(0, I_d)`; sample `i` of a split has label `y_i = i mod K`
//! (so every prefix of K samples holds each class once) and features
//! `h_i = c_{y_i} + noise * z_i`, `z_i ~ N(0, I_d)`, stored as f32, row-major N x d with
//! N = K x per_class. Train and test share the centres and use independent noise.
//!
//! Randomness: ChaCha8 seeded with `seed`; stream 0 draws the centres, stream 1 the training
//! noise, stream 2 the test noise. The same spec gives the same data on every run.
//!
//! The command-line form is `K=10,d=32,n=500` (classes, dimension, samples per class per
//! split), optionally followed by `noise=0.5` (default 0.5) and `seed=0` (default 0).

use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::error::{DataError, Result};
use crate::features::{FeatureExport, FloatSlice};

/// Default within-class noise standard deviation.
pub const DEFAULT_NOISE: f64 = 0.5;

/// Parameters of a synthetic Gaussian mixture.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSpec {
    /// K, number of classes (at least 2).
    pub num_classes: usize,
    /// d, feature dimension (at least 1).
    pub dim: usize,
    /// Samples per class in each split (at least 1).
    pub per_class: usize,
    /// Standard deviation of the within-class noise (finite, >= 0).
    pub noise: f64,
    pub seed: u64,
}

/// One split: N x d features (f32, row-major) and N labels.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSplit {
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    pub num_samples: usize,
    pub dim: usize,
    pub num_classes: usize,
}

impl SyntheticSplit {
    /// A borrowed view for [`crate::features::save_feature_npz`] (no classifier).
    pub fn as_export(&self) -> FeatureExport<'_> {
        FeatureExport {
            features: FloatSlice::F32(&self.features),
            num_samples: self.num_samples,
            dim: self.dim,
            labels: &self.labels,
            weight: None,
            bias: None,
            indices: None,
        }
    }
}

/// Generated data: the class centres and both splits.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticData {
    /// K x d class centres, row-major.
    pub centres: Vec<f64>,
    pub train: SyntheticSplit,
    pub test: SyntheticSplit,
}

impl SyntheticSpec {
    /// Parses the command-line form, e.g. `K=10,d=32,n=500,noise=0.5,seed=3`.
    pub fn parse(spec: &str) -> Result<Self> {
        let fail = |reason: String| DataError::InvalidSyntheticSpec {
            spec: spec.to_string(),
            reason,
        };
        let mut num_classes = None;
        let mut dim = None;
        let mut per_class = None;
        let mut noise = None;
        let mut seed = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("'{part}' is not of the form key=value")))?;
            let (key, value) = (key.trim(), value.trim());
            let count = |v: &str| {
                v.parse::<usize>()
                    .map_err(|_| fail(format!("{key}={v}: expected a non-negative integer")))
            };
            let slot_taken = match key {
                "K" | "k" => num_classes.replace(count(value)?).is_some(),
                "d" => dim.replace(count(value)?).is_some(),
                "n" => per_class.replace(count(value)?).is_some(),
                "noise" => noise
                    .replace(
                        value
                            .parse::<f64>()
                            .map_err(|_| fail(format!("noise={value}: expected a number")))?,
                    )
                    .is_some(),
                "seed" => seed
                    .replace(value.parse::<u64>().map_err(|_| {
                        fail(format!("seed={value}: expected a non-negative integer"))
                    })?)
                    .is_some(),
                _ => {
                    return Err(fail(format!(
                        "unknown key '{key}' (known keys: K, d, n, noise, seed)"
                    )))
                }
            };
            if slot_taken {
                return Err(fail(format!("key '{key}' is given twice")));
            }
        }
        let missing = |k: &str, meaning: &str| fail(format!("missing '{k}' ({meaning})"));
        let spec_value = SyntheticSpec {
            num_classes: num_classes.ok_or_else(|| missing("K", "number of classes"))?,
            dim: dim.ok_or_else(|| missing("d", "feature dimension"))?,
            per_class: per_class.ok_or_else(|| missing("n", "samples per class"))?,
            noise: noise.unwrap_or(DEFAULT_NOISE),
            seed: seed.unwrap_or(0),
        };
        spec_value.validate().map_err(fail)?;
        Ok(spec_value)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.num_classes < 2 {
            return Err(format!(
                "K={} but at least 2 classes are needed",
                self.num_classes
            ));
        }
        if self.num_classes > u32::MAX as usize {
            return Err(format!("K={} is too large", self.num_classes));
        }
        if self.dim == 0 {
            return Err("d=0 but the dimension must be at least 1".to_string());
        }
        if self.per_class == 0 {
            return Err("n=0 but each class needs at least 1 sample".to_string());
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(format!("noise={} must be a finite number >= 0", self.noise));
        }
        let too_big = self
            .num_classes
            .checked_mul(self.per_class)
            .and_then(|n| n.checked_mul(self.dim))
            .is_none_or(|len| len > (1 << 34));
        if too_big {
            return Err("K x n x d is too large (more than 2^34 values per split)".to_string());
        }
        Ok(())
    }

    /// Generates the centres and both splits (see the module documentation).
    pub fn generate(&self) -> Result<SyntheticData> {
        self.validate()
            .map_err(|reason| DataError::InvalidSyntheticSpec {
                spec: self.to_string(),
                reason,
            })?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(0);
        let centres: Vec<f64> = (0..self.num_classes * self.dim)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        Ok(SyntheticData {
            train: self.sample_split(&centres, 1),
            test: self.sample_split(&centres, 2),
            centres,
        })
    }

    fn sample_split(&self, centres: &[f64], stream: u64) -> SyntheticSplit {
        let (k, d) = (self.num_classes, self.dim);
        let n = k * self.per_class;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        let mut features = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % k;
            labels.push(class as u32);
            let centre = &centres[class * d..(class + 1) * d];
            features.extend(centre.iter().map(|&c| {
                let z: f64 = rng.sample(StandardNormal);
                (c + self.noise * z) as f32
            }));
        }
        SyntheticSplit {
            features,
            labels,
            num_samples: n,
            dim: d,
            num_classes: k,
        }
    }
}

impl FromStr for SyntheticSpec {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        SyntheticSpec::parse(s)
    }
}

impl std::fmt::Display for SyntheticSpec {
    /// The command-line form, e.g. `K=10,d=32,n=500,noise=0.5,seed=0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "K={},d={},n={},noise={},seed={}",
            self.num_classes, self.dim, self.per_class, self.noise, self.seed
        )
    }
}
