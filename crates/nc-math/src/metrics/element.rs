//! The element types of feature matrices: whatever the input precision, everything
//! accumulates in f64.

use crate::{Error, Result};

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

/// `Ok` when every value is finite; else the first non-finite one, named by its row and
/// column in rows of `row_len` values.
pub(super) fn check_finite<T: Feature>(
    what: &'static str,
    values: &[T],
    row_len: usize,
) -> Result<()> {
    match values.iter().position(|v| !v.to_f64().is_finite()) {
        None => Ok(()),
        Some(at) => Err(Error::NonFinite {
            what,
            row: at / row_len.max(1),
            col: at % row_len.max(1),
        }),
    }
}
