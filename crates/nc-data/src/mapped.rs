//! Float arrays read in place from a memory-mapped file.
//!
//! A feature matrix of a few hundred megabytes is the one large array nclab reads. Copying it
//! into fresh memory costs more than everything the metrics do with it on a small machine
//! (every new page is faulted in and zeroed: ~0.4 s for 400 MB on the 2-core development
//! machine, against ~0.01 s to map the same file from the page cache). So when the features
//! are stored plainly in the file (a `.npy` file, an uncompressed `.npz` member, a
//! `.safetensors` tensor; float32 or float64, C order) the loader keeps a view of the file's
//! bytes instead of a vector. The elements stay little-endian and need not be aligned. A file
//! that cannot be mapped (a pipe, a file system without mmap) is read the ordinary way.
//!
//! A mapped file must not be truncated or rewritten in place while it is mapped (nclab's
//! own writers never do: they write a temporary file and rename it over the old one).

use std::fs::File;
use std::sync::Arc;

use memmap2::Mmap;

use crate::array::DType;

/// `len` little-endian float32 or float64 elements at byte `start` of a mapped file.
#[derive(Clone)]
pub struct MappedFloats {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
    dtype: DType,
}

impl std::fmt::Debug for MappedFloats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFloats")
            .field("dtype", &self.dtype)
            .field("len", &self.len)
            .field("start", &self.start)
            .finish()
    }
}

impl MappedFloats {
    /// `None` unless `dtype` is a float type and the elements lie inside the mapping.
    pub(crate) fn new(map: Arc<Mmap>, start: usize, len: usize, dtype: DType) -> Option<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return None;
        }
        let end = len.checked_mul(dtype.size())?.checked_add(start)?;
        (end <= map.len()).then_some(MappedFloats {
            map,
            start,
            len,
            dtype,
        })
    }

    /// [`DType::F32`] or [`DType::F64`].
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements' little-endian bytes (`len * dtype.size()` of them, any alignment).
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len * self.dtype.size()]
    }

    /// Element `i` as f64.
    pub fn get(&self, i: usize) -> Option<f64> {
        (i < self.len).then(|| self.to_f64_range(i..i + 1)[0])
    }

    /// Elements `range` as f64. Panics if the range is out of bounds.
    pub fn to_f64_range(&self, range: std::ops::Range<usize>) -> Vec<f64> {
        let size = self.dtype.size();
        let bytes = &self.bytes()[range.start * size..range.end * size];
        match self.dtype {
            DType::F32 => bytes
                .as_chunks::<4>()
                .0
                .iter()
                .map(|&b| f64::from(f32::from_le_bytes(b)))
                .collect(),
            _ => bytes
                .as_chunks::<8>()
                .0
                .iter()
                .map(|&b| f64::from_le_bytes(b))
                .collect(),
        }
    }

    /// All elements as f32 (rounded when stored as f64).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.to_f64_range(0..self.len)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    }
}

/// Maps `file` read-only; `None` where it cannot be mapped (an empty file, a pipe, a file
/// system without mmap), which the callers then read the ordinary way.
pub(crate) fn map_file(file: &File) -> Option<Arc<Mmap>> {
    // SAFETY: the mapping is read-only and private to this process; it stays valid as long as
    // no process truncates or rewrites the file in place while it is mapped (module docs).
    unsafe { Mmap::map(file) }.ok().map(Arc::new)
}

/// The CRC-32 (zip's polynomial) of `bytes`, computed on two threads for large inputs.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const SPLIT_ABOVE: usize = 1 << 24;
    if bytes.len() <= SPLIT_ABOVE {
        return crc32fast::hash(bytes);
    }
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| hasher_of(second));
        (hasher_of(first), other.join())
    });
    let mut total = a;
    match b {
        Ok(b) => total.combine(&b),
        // The hashing thread cannot panic; hash the half here should it ever fail to join.
        Err(_) => total.combine(&hasher_of(second)),
    }
    total.finalize()
}

fn hasher_of(bytes: &[u8]) -> crc32fast::Hasher {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_thread_crc_equals_the_one_pass_crc() {
        let bytes: Vec<u8> = (0..(1usize << 24) + 12_345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(crc32(&bytes), crc32fast::hash(&bytes));
        // The zip/PNG check value of "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
