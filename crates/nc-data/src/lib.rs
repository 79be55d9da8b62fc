//! Readers and writers for every file nclab reads or writes.
//!
//! - [`npy`], [`npz`], [`safetensors`]: NumPy and safetensors arrays ([`NpyArray`]).
//! - [`torch`]: tensors of PyTorch `.pt` files, read without running pickled code.
//! - [`classifier`]: a classifier (weight, bias) from a checkpoint separate from the features.
//! - [`features`]: validated feature files (features, labels, classifier) for NC metrics.
//! - [`idx`], [`cifar`]: MNIST IDX and CIFAR-10/100 binary image sets ([`ImageSet`]).
//! - [`synthetic`]: seeded Gaussian-mixture classes.
//! - [`embedded`]: the 10,000-digit MNIST subset shipped inside the crate.
//! - [`io`]: opening inputs (regular files only) and atomic file writing for every output.
//! - [`limits`]: the memory ceiling input-sized allocations are checked against.
//! - [`partial_state`]: the versioned bytes of one phase of the metrics engine's sums.
//!
//! Every fallible function returns [`Result`], whose [`DataError`] names the file and what
//! was expected; no input makes these functions panic.

pub mod array;
pub mod cifar;
pub mod classifier;
pub mod embedded;
pub mod error;
pub mod features;
pub mod idx;
pub mod io;
pub mod limits;
pub mod mapped;
pub mod npy;
pub mod npz;
pub mod partial_state;
pub mod safetensors;
pub mod synthetic;
pub mod torch;

pub use array::{ArrayData, ArraySlice, ArrayView, DType, NpyArray};
pub use cifar::{load_cifar100_dir, load_cifar10_dir};
pub use embedded::embedded_mnist;
pub use error::{DataError, Result};
pub use features::{
    load_feature_file, open_feature_shard, save_feature_file, save_feature_npz,
    save_feature_safetensors, FeatureExport, FeatureKeys, FeatureSet, FeatureShard, FloatData,
    FloatSlice, ShardFeatures,
};
pub use idx::{load_mnist_dir, ImageSet};
pub use io::write_atomic;
pub use mapped::MappedFloats;
pub use npz::DeflatedFloats;
pub use synthetic::{SyntheticData, SyntheticSpec, SyntheticSplit};
