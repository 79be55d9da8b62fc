//! CIFAR-10 and CIFAR-100 binary versions.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` ... `data_batch_5.bin` (training,
//! 10,000 images each) and `test_batch.bin`; every record is 1 label byte (0-9) followed by
//! 3,072 pixel bytes: the 1,024 red, then green, then blue values of a 32 x 32 image, rows
//! top to bottom (channel-first, C x H x W).
//!
//! CIFAR-100 (`cifar-100-binary/`): `train.bin` (50,000 images) and `test.bin` (10,000);
//! every record is a coarse label byte (0-19), a fine label byte (0-99) and the same 3,072
//! pixel bytes. The fine label (100 classes) is used.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::idx::ImageSet;

const FORMAT: &str = "CIFAR binary";
const CHANNELS: usize = 3;
const SIDE: usize = 32;
/// Pixel bytes per image: 3 x 32 x 32.
pub const CIFAR_IMAGE_BYTES: usize = CHANNELS * SIDE * SIDE;

/// The layout of one CIFAR variant.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Label bytes before the pixels of each record.
    label_bytes: usize,
    /// Which of the label bytes is the class label.
    label_index: usize,
    num_classes: usize,
    name: &'static str,
}

const CIFAR10: Layout = Layout {
    label_bytes: 1,
    label_index: 0,
    num_classes: 10,
    name: "CIFAR-10",
};

const CIFAR100: Layout = Layout {
    label_bytes: 2,
    label_index: 1,
    num_classes: 100,
    name: "CIFAR-100",
};

impl Layout {
    fn record_len(self) -> usize {
        self.label_bytes + CIFAR_IMAGE_BYTES
    }
}

/// Appends the records of `bytes` (from `path`) to `set`.
fn parse_records(path: &Path, bytes: &[u8], layout: Layout, set: &mut ImageSet) -> Result<()> {
    let record_len = layout.record_len();
    if bytes.is_empty() || !bytes.len().is_multiple_of(record_len) {
        return Err(DataError::format(
            path,
            FORMAT,
            format!(
                "length {} bytes is not a positive multiple of the {} record length {record_len} ({} label byte(s) + {CIFAR_IMAGE_BYTES} pixel bytes)",
                bytes.len(),
                layout.name,
                layout.label_bytes
            ),
        ));
    }
    let records = bytes.len() / record_len;
    set.images.reserve(records * CIFAR_IMAGE_BYTES);
    set.labels.reserve(records);
    for (i, record) in bytes.chunks_exact(record_len).enumerate() {
        let label = record[layout.label_index];
        if usize::from(label) >= layout.num_classes {
            return Err(DataError::format(
                path,
                FORMAT,
                format!(
                    "record {i} has label {label}, expected 0..{} for {}",
                    layout.num_classes, layout.name
                ),
            ));
        }
        set.labels.push(u32::from(label));
        set.images.extend_from_slice(&record[layout.label_bytes..]);
    }
    set.num_samples += records;
    Ok(())
}

/// Parses in-memory CIFAR-10 batch bytes (any number of records); `path` names the source.
pub fn parse_cifar10_batch(path: &Path, bytes: &[u8]) -> Result<ImageSet> {
    let mut set = empty_set(CIFAR10);
    parse_records(path, bytes, CIFAR10, &mut set)?;
    Ok(set)
}

/// Parses in-memory CIFAR-100 file bytes (any number of records), keeping fine labels.
pub fn parse_cifar100_file(path: &Path, bytes: &[u8]) -> Result<ImageSet> {
    let mut set = empty_set(CIFAR100);
    parse_records(path, bytes, CIFAR100, &mut set)?;
    Ok(set)
}

fn empty_set(layout: Layout) -> ImageSet {
    ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        num_samples: 0,
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        num_classes: layout.num_classes,
    }
}

fn load_files(dir: &Path, names: &[&str], layout: Layout) -> Result<ImageSet> {
    let mut set = empty_set(layout);
    for name in names {
        let path = dir.join(name);
        let bytes = crate::io::read_regular(&path, &format!("the {} file {name}", layout.name))?;
        parse_records(&path, &bytes, layout, &mut set)?;
    }
    Ok(set)
}

/// `dir` itself if it holds `marker`, else its standard sub-folder if that does.
fn resolve_dir(dir: &Path, sub_folder: &str, marker: &str, layout: Layout) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
            expected: format!("a {} binary directory", layout.name),
        });
    }
    [dir.to_path_buf(), dir.join(sub_folder)]
        .into_iter()
        .find(|d| d.join(marker).is_file())
        .ok_or_else(|| DataError::NotFound {
            path: dir.join(marker),
            expected: format!(
                "the {} binary file {marker} in the directory or in its sub-folder {sub_folder}/",
                layout.name
            ),
        })
}

/// Loads CIFAR-10 from `dir` or `dir/cifar-10-batches-bin`: training from
/// `data_batch_1.bin` ... `data_batch_5.bin`, test from `test_batch.bin`. Returns (train, test).
pub fn load_cifar10_dir(dir: &Path) -> Result<(ImageSet, ImageSet)> {
    let dir = resolve_dir(dir, "cifar-10-batches-bin", "test_batch.bin", CIFAR10)?;
    let train = load_files(
        &dir,
        &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
        ],
        CIFAR10,
    )?;
    let test = load_files(&dir, &["test_batch.bin"], CIFAR10)?;
    Ok((train, test))
}

/// Loads CIFAR-100 (fine labels) from `dir` or `dir/cifar-100-binary`: `train.bin` and
/// `test.bin`. Returns (train, test).
pub fn load_cifar100_dir(dir: &Path) -> Result<(ImageSet, ImageSet)> {
    let dir = resolve_dir(dir, "cifar-100-binary", "train.bin", CIFAR100)?;
    let train = load_files(&dir, &["train.bin"], CIFAR100)?;
    let test = load_files(&dir, &["test.bin"], CIFAR100)?;
    Ok((train, test))
}
