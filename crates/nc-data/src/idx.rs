//! MNIST IDX files, raw or gzipped, and the [`ImageSet`] type shared with the CIFAR reader.
//!
//! IDX layout (big-endian): a 4-byte magic number `0x00 0x00 <type> <ndim>` where type `0x08`
//! is unsigned byte, then `ndim` 32-bit dimension sizes, then the data in row-major order.
//! MNIST images are `0x00000803` (N x rows x cols bytes), labels `0x00000801` (N bytes).
//! Gzip compression is recognised by its magic bytes `1f 8b`, whatever the file name.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{DataError, Result};

const FORMAT: &str = "IDX";
/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Number of MNIST classes.
pub const MNIST_CLASSES: usize = 10;

/// A labelled set of 8-bit images, stored N x C x H x W row-major (channel-first, like the
/// CIFAR binaries and PyTorch tensors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSet {
    /// N x C x H x W grey levels / colour intensities, 0-255.
    pub images: Vec<u8>,
    /// N labels in `0..num_classes`.
    pub labels: Vec<u32>,
    pub num_samples: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
}

impl ImageSet {
    /// Bytes per image, C x H x W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i` (C x H x W), or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let len = self.image_len();
        self.images.get(i * len..(i + 1) * len)
    }

    /// Number of samples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(label as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Decompresses `bytes` if they are gzipped, otherwise returns them unchanged.
fn maybe_gunzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, "gzip", format!("cannot decompress: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Parses the magic number and dimensions; returns the dimensions and the data bytes.
fn parse_idx<'a>(
    path: &Path,
    bytes: &'a [u8],
    expected_magic: u32,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8])> {
    let invalid = |reason: String| DataError::format(path, FORMAT, reason);
    let magic_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            invalid(format!(
                "the file has {} bytes, too short for the magic number",
                bytes.len()
            ))
        })?;
    let magic = u32::from_be_bytes(magic_bytes);
    if magic != expected_magic {
        return Err(invalid(format!(
            "magic number 0x{magic:08x}, expected 0x{expected_magic:08x} ({what})"
        )));
    }
    let ndim = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndim;
    let header = bytes.get(4..header_len).ok_or_else(|| {
        invalid(format!(
            "the file has {} bytes, too short for the {ndim} dimension sizes",
            bytes.len()
        ))
    })?;
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(format!("dimensions {dims:?} overflow")))?;
    let data = &bytes[header_len..];
    if data.len() < expected {
        return Err(invalid(format!(
            "truncated: dimensions {dims:?} need {expected} data bytes, but the file has {}",
            data.len()
        )));
    }
    if data.len() > expected {
        return Err(invalid(format!(
            "dimensions {dims:?} need {expected} data bytes, but the file has {} ({} extra)",
            data.len(),
            data.len() - expected
        )));
    }
    Ok((dims, data))
}

/// Parses IDX image bytes (raw or gzipped); `path` names the source in messages.
/// Returns (N x rows x cols pixels, N, rows, cols).
pub fn parse_idx_images(path: &Path, bytes: Vec<u8>) -> Result<(Vec<u8>, usize, usize, usize)> {
    let bytes = maybe_gunzip(path, bytes)?;
    let (dims, data) = parse_idx(
        path,
        &bytes,
        IDX_IMAGES_MAGIC,
        "unsigned-byte images, N x rows x cols",
    )?;
    Ok((data.to_vec(), dims[0], dims[1], dims[2]))
}

/// Parses IDX label bytes (raw or gzipped); every label must be below `num_classes`.
pub fn parse_idx_labels(path: &Path, bytes: Vec<u8>, num_classes: usize) -> Result<Vec<u32>> {
    let bytes = maybe_gunzip(path, bytes)?;
    let (_, data) = parse_idx(path, &bytes, IDX_LABELS_MAGIC, "unsigned-byte labels, N")?;
    if let Some(pos) = data.iter().position(|&l| usize::from(l) >= num_classes) {
        return Err(DataError::format(
            path,
            FORMAT,
            format!(
                "label {} at index {pos} is outside 0..{num_classes}",
                data[pos]
            ),
        ));
    }
    Ok(data.iter().map(|&l| u32::from(l)).collect())
}

fn read_file(path: &Path, expected: &str) -> Result<Vec<u8>> {
    crate::io::read_regular(path, expected)
}

/// Reads an IDX image file (raw or gzipped). Returns (pixels, N, rows, cols).
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize)> {
    parse_idx_images(path, read_file(path, "an IDX image file")?)
}

/// Reads an IDX label file (raw or gzipped) with labels below `num_classes`.
pub fn read_idx_labels(path: &Path, num_classes: usize) -> Result<Vec<u32>> {
    parse_idx_labels(path, read_file(path, "an IDX label file")?, num_classes)
}

/// Combines parsed images and labels into an [`ImageSet`] of MNIST digits, checking that the
/// counts agree.
pub fn mnist_image_set(
    images_path: &Path,
    images: (Vec<u8>, usize, usize, usize),
    labels_path: &Path,
    labels: Vec<u32>,
) -> Result<ImageSet> {
    let (pixels, n, height, width) = images;
    if labels.len() != n {
        return Err(DataError::format(
            labels_path,
            FORMAT,
            format!(
                "has {} labels, expected {n} (one per image of {})",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    Ok(ImageSet {
        images: pixels,
        labels,
        num_samples: n,
        channels: 1,
        height,
        width,
        num_classes: MNIST_CLASSES,
    })
}

/// Finds `<stem>` in `dir` under its usual spellings: `train-images-idx3-ubyte`,
/// `train-images.idx3-ubyte`, each optionally with `.gz`.
fn find_idx_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let candidates = [
        format!("{stem}.gz"),
        stem.to_string(),
        format!("{dotted}.gz"),
        dotted.clone(),
    ];
    candidates
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::NotFound {
            path: dir.join(stem),
            expected: format!("an MNIST file named {stem}[.gz] or {dotted}[.gz] in the directory"),
        })
}

fn load_mnist_split(dir: &Path, prefix: &str) -> Result<ImageSet> {
    let images_path = find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path, MNIST_CLASSES)?;
    mnist_image_set(&images_path, images, &labels_path, labels)
}

/// Loads an MNIST-style directory: `train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`.
/// Returns (train, test).
pub fn load_mnist_dir(dir: &Path) -> Result<(ImageSet, ImageSet)> {
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.to_path_buf(),
            expected: "a directory of MNIST IDX files".to_string(),
        });
    }
    Ok((
        load_mnist_split(dir, "train")?,
        load_mnist_split(dir, "t10k")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_tiny_images_and_labels() {
        let p = Path::new("tiny");
        let pixels: Vec<u8> = (0..12).collect();
        let (data, n, h, w) =
            parse_idx_images(p, idx_bytes(IDX_IMAGES_MAGIC, &[3, 2, 2], &pixels)).unwrap();
        assert_eq!((n, h, w), (3, 2, 2));
        assert_eq!(data, pixels);
        let labels =
            parse_idx_labels(p, idx_bytes(IDX_LABELS_MAGIC, &[3], &[9, 0, 4]), 10).unwrap();
        assert_eq!(labels, [9, 0, 4]);
    }

    #[test]
    fn rejects_bad_input() {
        let p = Path::new("bad-file");
        let msg = |r: Result<Vec<u32>>| r.unwrap_err().to_string();
        let m = msg(parse_idx_labels(
            p,
            idx_bytes(IDX_IMAGES_MAGIC, &[1, 1, 1], &[0]),
            10,
        ));
        assert!(
            m.contains("bad-file") && m.contains("magic number 0x00000803, expected 0x00000801"),
            "{m}"
        );
        let m = msg(parse_idx_labels(
            p,
            idx_bytes(IDX_LABELS_MAGIC, &[5], &[1, 2]),
            10,
        ));
        assert!(
            m.contains("truncated") && m.contains("need 5 data bytes"),
            "{m}"
        );
        let m = msg(parse_idx_labels(
            p,
            idx_bytes(IDX_LABELS_MAGIC, &[2], &[1, 10]),
            10,
        ));
        assert!(m.contains("label 10 at index 1"), "{m}");
        let m = msg(parse_idx_labels(p, vec![0, 0], 10));
        assert!(m.contains("too short"), "{m}");
        let m = msg(parse_idx_labels(p, vec![0x1f, 0x8b, 1, 2, 3], 10));
        assert!(m.contains("gzip") && m.contains("bad-file"), "{m}");
    }
}
