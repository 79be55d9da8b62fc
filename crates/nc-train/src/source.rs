//! Reading the training and test sets named by the `data` setting (`--data` on the CLI).
//!
//! `mnist` (the embedded MNIST-10k), `mnist:DIR` (IDX files, raw or gzipped), `cifar10:DIR`
//! (`cifar-10-batches-bin`), `cifar100:DIR` (`cifar-100-binary`, fine labels) and
//! `synthetic:K=10,d=32,n=500[,noise=..,seed=..]` (`nc_data::SyntheticSpec`: seeded Gaussian
//! mixture). The readers are nc-data's; this module adapts them to [`Samples`].
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// Pixel storage: bytes for images (0-255), floats for synthetic features.
#[derive(Clone, Debug)]
pub enum Pixels {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

/// A labelled set of samples of shape (C, H, W), stored N x C x H x W row-major.
#[derive(Clone, Debug)]
pub struct Samples {
    pub pixels: Pixels,
    pub labels: Vec<u32>,
    /// (channels, height, width)
    pub shape: [usize; 3],
    pub num_classes: usize,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Values per sample C*H*W.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Checks sizes and that every label is below `num_classes`.
    pub fn validate(&self, what: &str) -> Result<()> {
        let n = self.labels.len();
        let len = match &self.pixels {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        };
        if len != n * self.sample_len() {
            return Err(TrainError::InvalidData(format!(
                "{what}: {len} values for {n} samples of shape {:?}",
                self.shape
            )));
        }
        if let Some((i, &y)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= self.num_classes)
        {
            return Err(TrainError::InvalidData(format!(
                "{what}: label {y} of sample {i} is beyond the model's {} classes",
                self.num_classes
            )));
        }
        Ok(())
    }
}

/// The data setting, parsed (`mnist`, `cifar10:DIR`, ...).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DataSpec {
    /// The MNIST-10k digits shipped with nclab.
    EmbeddedMnist,
    Mnist {
        dir: PathBuf,
    },
    Cifar10 {
        dir: PathBuf,
    },
    Cifar100 {
        dir: PathBuf,
    },
    Synthetic {
        k: usize,
        d: usize,
        n: usize,
        noise: f64,
        seed: u64,
    },
}

impl DataSpec {
    /// Parses `mnist`, `mnist:DIR`, `cifar10:DIR`, `cifar100:DIR`, `synthetic:K=..,d=..,n=..`.
    pub fn parse(s: &str) -> Result<Self> {
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let dir = |r: Option<&str>| -> Result<PathBuf> {
            match r {
                Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
                _ => Err(TrainError::setting(
                    "data",
                    format!("{kind} needs a directory: {kind}:DIR"),
                )),
            }
        };
        Ok(match kind {
            "mnist" if rest.is_none() => DataSpec::EmbeddedMnist,
            "mnist" => DataSpec::Mnist { dir: dir(rest)? },
            "cifar10" => DataSpec::Cifar10 { dir: dir(rest)? },
            "cifar100" => DataSpec::Cifar100 { dir: dir(rest)? },
            "synthetic" => {
                let spec = nc_data::SyntheticSpec::parse(rest.unwrap_or(""))?;
                DataSpec::Synthetic { k: spec.num_classes, d: spec.dim, n: spec.per_class, noise: spec.noise, seed: spec.seed }
            }
            other => {
                return Err(TrainError::setting(
                    "data",
                    format!("names an unknown data set {other:?}: use mnist, mnist:DIR, cifar10:DIR, cifar100:DIR or synthetic:K=10,d=32,n=500"),
                ))
            }
        })
    }

    /// Whether CIFAR-style augmentation is on by default for this data.
    pub fn augments_by_default(&self) -> bool {
        matches!(self, DataSpec::Cifar10 { .. } | DataSpec::Cifar100 { .. })
    }

    /// Loads (train, test).
    pub fn load(&self) -> Result<(Samples, Samples)> {
        let (train, test) = match self {
            DataSpec::EmbeddedMnist => embedded_mnist()?,
            DataSpec::Mnist { dir } => load_mnist_dir(dir)?,
            DataSpec::Cifar10 { dir } => load_cifar(dir, false)?,
            DataSpec::Cifar100 { dir } => load_cifar(dir, true)?,
            DataSpec::Synthetic {
                k,
                d,
                n,
                noise,
                seed,
            } => synthetic(*k, *d, *n, *noise, *seed)?,
        };
        train.validate("training set")?;
        test.validate("test set")?;
        if train.is_empty() {
            return Err(TrainError::InvalidData("the training set is empty".into()));
        }
        Ok((train, test))
    }
}

fn from_image_set(s: nc_data::ImageSet) -> Samples {
    Samples {
        pixels: Pixels::U8(s.images),
        labels: s.labels,
        shape: [s.channels, s.height, s.width],
        num_classes: s.num_classes,
    }
}

fn pair(r: nc_data::Result<(nc_data::ImageSet, nc_data::ImageSet)>) -> Result<(Samples, Samples)> {
    let (a, b) = r?;
    Ok((from_image_set(a), from_image_set(b)))
}

/// The embedded MNIST-10k (8,000 training digits, 800 per class; 2,000 test digits).
pub fn embedded_mnist() -> Result<(Samples, Samples)> {
    pair(nc_data::embedded_mnist())
}

/// IDX files in `dir` (see `nc_data::load_mnist_dir`).
pub fn load_mnist_dir(dir: &Path) -> Result<(Samples, Samples)> {
    pair(nc_data::load_mnist_dir(dir))
}

fn load_cifar(dir: &Path, hundred: bool) -> Result<(Samples, Samples)> {
    pair(if hundred {
        nc_data::load_cifar100_dir(dir)
    } else {
        nc_data::load_cifar10_dir(dir)
    })
}

/// The Gaussian mixture of `nc_data::SyntheticSpec` as 1 x 1 x d samples.
pub fn synthetic(
    k: usize,
    d: usize,
    n: usize,
    noise: f64,
    seed: u64,
) -> Result<(Samples, Samples)> {
    let spec = nc_data::SyntheticSpec {
        num_classes: k,
        dim: d,
        per_class: n,
        noise,
        seed,
    };
    let data = spec.generate()?;
    let conv = |s: nc_data::SyntheticSplit| Samples {
        pixels: Pixels::F32(s.features),
        labels: s.labels,
        shape: [1, 1, s.dim],
        num_classes: s.num_classes,
    };
    Ok((conv(data.train), conv(data.test)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_that_do_not_fit_are_invalid_data() {
        let mut s = Samples {
            pixels: Pixels::F32(vec![0.0; 6]),
            labels: vec![0, 1, 2],
            shape: [1, 1, 2],
            num_classes: 3,
        };
        assert!(s.validate("training set").is_ok());
        s.labels[2] = 3;
        let e = s.validate("training set").unwrap_err();
        assert!(matches!(e, TrainError::InvalidData(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "data: training set: label 3 of sample 2 is beyond the model's 3 classes"
        );
        s.labels.pop();
        let e = s.validate("test set").unwrap_err();
        assert!(matches!(e, TrainError::InvalidData(_)), "{e}");
    }

    #[test]
    fn data_settings_are_named_data() {
        for (spec, msg) in [
            (
                "cifar10",
                "invalid setting: data cifar10 needs a directory: cifar10:DIR",
            ),
            (
                "imagenet",
                "invalid setting: data names an unknown data set \"imagenet\"",
            ),
        ] {
            let e = DataSpec::parse(spec).unwrap_err();
            assert!(
                matches!(e, TrainError::Setting { field: "data", .. }),
                "{e}"
            );
            assert!(e.to_string().starts_with(msg), "{e}");
        }
        // a malformed synthetic spec is nc-data's error, kept whole
        let e = DataSpec::parse("synthetic:K=1").unwrap_err();
        assert!(matches!(
            e,
            TrainError::Data(nc_data::DataError::InvalidSyntheticSpec { .. })
        ));
    }
}
