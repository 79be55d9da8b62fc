//! The in-memory n-dimensional array shared by the `.npy`, `.npz` and `.safetensors` readers
//! and writers: a shape plus a typed, row-major (C order) element vector.
//!
//! Element data are decoded from little-endian bytes in fixed-size chunks straight into the
//! typed vector, so reading an array of `n` elements needs `n * size_of::<T>()` bytes of memory
//! plus one small buffer, never a second copy of the whole array.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{DataError, Result};

/// Element types understood by the readers and writers. All are stored little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DType {
    /// Every supported dtype.
    pub const ALL: [DType; 11] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::U64,
        DType::I64,
        DType::F32,
        DType::F64,
    ];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }

    /// NumPy's name, used in messages: `float32`, `int64`, `bool`, ...
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::U32 => "uint32",
            DType::I32 => "int32",
            DType::U64 => "uint64",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// The `.npy` header `descr` string: `<f4`, `|u1`, ...
    pub fn npy_descr(self) -> &'static str {
        match self {
            DType::Bool => "|b1",
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::U16 => "<u2",
            DType::I16 => "<i2",
            DType::U32 => "<u4",
            DType::I32 => "<i4",
            DType::U64 => "<u8",
            DType::I64 => "<i8",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }

    /// The safetensors header dtype string: `F32`, `I64`, `BOOL`, ...
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::U16 => "U16",
            DType::I16 => "I16",
            DType::U32 => "U32",
            DType::I32 => "I32",
            DType::U64 => "U64",
            DType::I64 => "I64",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }

    pub fn is_integer(self) -> bool {
        !matches!(self, DType::Bool | DType::F32 | DType::F64)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Owned element data of an array, one variant per [`DType`].
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Borrowed element data, used by the writers so that large arrays are written without a copy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArraySlice<'a> {
    Bool(&'a [bool]),
    U8(&'a [u8]),
    I8(&'a [i8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    U32(&'a [u32]),
    I32(&'a [i32]),
    U64(&'a [u64]),
    I64(&'a [i64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Applies `$body` to the inner vector/slice of any variant of `ArrayData`/`ArraySlice`.
macro_rules! each_variant {
    ($enum:ident, $value:expr, $inner:ident => $body:expr) => {
        match $value {
            $enum::Bool($inner) => $body,
            $enum::U8($inner) => $body,
            $enum::I8($inner) => $body,
            $enum::U16($inner) => $body,
            $enum::I16($inner) => $body,
            $enum::U32($inner) => $body,
            $enum::I32($inner) => $body,
            $enum::U64($inner) => $body,
            $enum::I64($inner) => $body,
            $enum::F32($inner) => $body,
            $enum::F64($inner) => $body,
        }
    };
}

impl ArrayData {
    pub fn dtype(&self) -> DType {
        self.as_slice().dtype()
    }

    /// NumPy name of the element type (`float32`, `int64`, ...), for messages.
    pub fn dtype_name(&self) -> &'static str {
        self.dtype().name()
    }

    pub fn len(&self) -> usize {
        each_variant!(ArrayData, self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_slice(&self) -> ArraySlice<'_> {
        match self {
            ArrayData::Bool(v) => ArraySlice::Bool(v),
            ArrayData::U8(v) => ArraySlice::U8(v),
            ArrayData::I8(v) => ArraySlice::I8(v),
            ArrayData::U16(v) => ArraySlice::U16(v),
            ArrayData::I16(v) => ArraySlice::I16(v),
            ArrayData::U32(v) => ArraySlice::U32(v),
            ArrayData::I32(v) => ArraySlice::I32(v),
            ArrayData::U64(v) => ArraySlice::U64(v),
            ArrayData::I64(v) => ArraySlice::I64(v),
            ArrayData::F32(v) => ArraySlice::F32(v),
            ArrayData::F64(v) => ArraySlice::F64(v),
        }
    }

    /// All elements converted to `f64` (booleans as 0/1; 64-bit integers above 2^53 round).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            ArrayData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::F64(v) => v.clone(),
        }
    }

    /// Integer elements as `i128` (exact for every integer dtype), or `None` for float and
    /// bool data.
    fn integers(&self) -> Option<Vec<i128>> {
        Some(match self {
            ArrayData::U8(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::I8(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::U16(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::I16(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::U32(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::U64(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| i128::from(x)).collect(),
            ArrayData::Bool(_) | ArrayData::F32(_) | ArrayData::F64(_) => return None,
        })
    }

    /// Integer elements converted to an unsigned type with range `0..=max`; the error text
    /// names the first offending element. Floats and bools are rejected.
    fn to_unsigned(&self, max: u64, role: &str) -> std::result::Result<Vec<u64>, String> {
        let values = self.integers().ok_or_else(|| {
            format!(
                "has dtype {}, expected an integer dtype for {role} (int32, int64, uint8, uint16, ...)",
                self.dtype_name()
            )
        })?;
        values
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                if x < 0 {
                    Err(format!(
                        "has a negative value {x} at index {i}; {role} must be >= 0"
                    ))
                } else if x > i128::from(max) {
                    Err(format!(
                        "has value {x} at index {i}, larger than the largest supported {role} {max}"
                    ))
                } else {
                    Ok(x as u64)
                }
            })
            .collect()
    }
}

impl ArraySlice<'_> {
    pub fn dtype(&self) -> DType {
        match self {
            ArraySlice::Bool(_) => DType::Bool,
            ArraySlice::U8(_) => DType::U8,
            ArraySlice::I8(_) => DType::I8,
            ArraySlice::U16(_) => DType::U16,
            ArraySlice::I16(_) => DType::I16,
            ArraySlice::U32(_) => DType::U32,
            ArraySlice::I32(_) => DType::I32,
            ArraySlice::U64(_) => DType::U64,
            ArraySlice::I64(_) => DType::I64,
            ArraySlice::F32(_) => DType::F32,
            ArraySlice::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(ArraySlice, self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the data in bytes.
    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size()
    }
}

/// An n-dimensional array in C (row-major) order, as read from a `.npy` file, an `.npz`
/// member or a safetensors tensor. A 0-dimensional array has an empty shape and one element.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

/// A borrowed array to be written: shape plus row-major data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrayView<'a> {
    pub shape: &'a [usize],
    pub data: ArraySlice<'a>,
}

impl NpyArray {
    /// Makes an array, checking that the shape's element count matches the data length.
    pub fn new(shape: Vec<usize>, data: ArrayData) -> std::result::Result<Self, String> {
        let expected = element_count(&shape).ok_or("shape overflows usize")?;
        if expected != data.len() {
            return Err(format!(
                "shape {shape:?} needs {expected} elements but {} were given",
                data.len()
            ));
        }
        Ok(NpyArray { shape, data })
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// NumPy name of the element type (`float32`, ...), for messages.
    pub fn dtype_name(&self) -> &'static str {
        self.data.dtype_name()
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn view(&self) -> ArrayView<'_> {
        ArrayView {
            shape: &self.shape,
            data: self.data.as_slice(),
        }
    }

    /// All elements as `f64` (see [`ArrayData::to_f64_vec`]).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.data.to_f64_vec()
    }

    /// The elements as class labels: an integer dtype is required (floats and bools are
    /// rejected), every value must lie in `0..=u32::MAX`. `path` and `key` name the array in
    /// the error message.
    pub fn to_labels(&self, path: &Path, key: &str) -> Result<Vec<u32>> {
        let values = self
            .data
            .to_unsigned(u64::from(u32::MAX), "class labels")
            .map_err(|problem| DataError::array(path, key, problem))?;
        Ok(values.into_iter().map(|x| x as u32).collect())
    }

    /// The elements as non-negative 64-bit indices (integer dtype required).
    pub fn to_indices(&self, path: &Path, key: &str) -> Result<Vec<u64>> {
        self.data
            .to_unsigned(u64::MAX, "sample indices")
            .map_err(|problem| DataError::array(path, key, problem))
    }
}

/// Product of the dimensions, `None` on overflow. The empty shape has one element.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Formats a shape like NumPy does: `(3,)`, `(2, 4)`, `()`.
pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

const CHUNK_BYTES: usize = 1 << 16;

/// Reads `count` little-endian elements of `dtype` from `reader` into a freshly allocated
/// typed vector. A short read gives an `UnexpectedEof` error; a `|b1` byte other than 0 or 1
/// gives `InvalidData`.
pub(crate) fn read_elements(
    reader: &mut dyn Read,
    dtype: DType,
    count: usize,
) -> io::Result<ArrayData> {
    fn fill<T: Copy, const N: usize>(
        reader: &mut dyn Read,
        count: usize,
        decode: impl Fn([u8; N]) -> T,
    ) -> io::Result<Vec<T>> {
        // Reserve only as we go: a corrupt header that claims a huge count then fails on
        // the first missing chunk instead of allocating the claimed size up front.
        let mut out: Vec<T> = Vec::with_capacity(count.min(CHUNK_BYTES * 16));
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let per_chunk = CHUNK_BYTES / N;
        let mut remaining = count;
        while remaining > 0 {
            let n = remaining.min(per_chunk);
            let bytes = &mut buffer[..n * N];
            reader.read_exact(bytes)?;
            if out.capacity() - out.len() < n {
                out.reserve_exact(count - out.len());
            }
            out.extend(bytes.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                decode(a)
            }));
            remaining -= n;
        }
        Ok(out)
    }
    Ok(match dtype {
        DType::Bool => {
            let bytes = fill::<u8, 1>(reader, count, |b| b[0])?;
            if let Some(pos) = bytes.iter().position(|&b| b > 1) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "bool element {pos} has byte value {}, expected 0 or 1",
                        bytes[pos]
                    ),
                ));
            }
            ArrayData::Bool(bytes.into_iter().map(|b| b == 1).collect())
        }
        DType::U8 => ArrayData::U8(fill(reader, count, u8::from_le_bytes)?),
        DType::I8 => ArrayData::I8(fill(reader, count, i8::from_le_bytes)?),
        DType::U16 => ArrayData::U16(fill(reader, count, u16::from_le_bytes)?),
        DType::I16 => ArrayData::I16(fill(reader, count, i16::from_le_bytes)?),
        DType::U32 => ArrayData::U32(fill(reader, count, u32::from_le_bytes)?),
        DType::I32 => ArrayData::I32(fill(reader, count, i32::from_le_bytes)?),
        DType::U64 => ArrayData::U64(fill(reader, count, u64::from_le_bytes)?),
        DType::I64 => ArrayData::I64(fill(reader, count, i64::from_le_bytes)?),
        DType::F32 => ArrayData::F32(fill(reader, count, f32::from_le_bytes)?),
        DType::F64 => ArrayData::F64(fill(reader, count, f64::from_le_bytes)?),
    })
}

/// Writes the elements of `data` to `writer` as little-endian bytes, in chunks.
pub(crate) fn write_elements(writer: &mut dyn Write, data: ArraySlice<'_>) -> io::Result<()> {
    fn put<T: Copy, const N: usize>(
        writer: &mut dyn Write,
        values: &[T],
        encode: impl Fn(T) -> [u8; N],
    ) -> io::Result<()> {
        let mut buffer = Vec::with_capacity(CHUNK_BYTES);
        for chunk in values.chunks(CHUNK_BYTES / N) {
            buffer.clear();
            for &v in chunk {
                buffer.extend_from_slice(&encode(v));
            }
            writer.write_all(&buffer)?;
        }
        Ok(())
    }
    match data {
        ArraySlice::Bool(v) => put(writer, v, |b| [u8::from(b)]),
        ArraySlice::U8(v) => writer.write_all(v),
        ArraySlice::I8(v) => put(writer, v, i8::to_le_bytes),
        ArraySlice::U16(v) => put(writer, v, u16::to_le_bytes),
        ArraySlice::I16(v) => put(writer, v, i16::to_le_bytes),
        ArraySlice::U32(v) => put(writer, v, u32::to_le_bytes),
        ArraySlice::I32(v) => put(writer, v, i32::to_le_bytes),
        ArraySlice::U64(v) => put(writer, v, u64::to_le_bytes),
        ArraySlice::I64(v) => put(writer, v, i64::to_le_bytes),
        ArraySlice::F32(v) => put(writer, v, f32::to_le_bytes),
        ArraySlice::F64(v) => put(writer, v, f64::to_le_bytes),
    }
}

/// Reorders data stored in Fortran (column-major) order into C (row-major) order for the
/// given logical `shape`. Element `(i_0, ..., i_{n-1})` sits at Fortran offset
/// `sum_k i_k * prod_{j<k} shape_j`.
pub(crate) fn fortran_to_c_order(shape: &[usize], data: ArrayData) -> ArrayData {
    fn permute<T: Copy>(shape: &[usize], src: Vec<T>) -> Vec<T> {
        if shape.len() < 2 || src.is_empty() {
            return src;
        }
        let ndim = shape.len();
        let mut fortran_strides = vec![1usize; ndim];
        for k in 1..ndim {
            fortran_strides[k] = fortran_strides[k - 1] * shape[k - 1];
        }
        let mut out = Vec::with_capacity(src.len());
        let mut index = vec![0usize; ndim];
        let mut offset = 0usize;
        // Walk the C-order index odometer (last axis fastest), tracking the Fortran offset.
        loop {
            out.push(src[offset]);
            let mut axis = ndim;
            loop {
                if axis == 0 {
                    return out;
                }
                axis -= 1;
                index[axis] += 1;
                offset += fortran_strides[axis];
                if index[axis] < shape[axis] {
                    break;
                }
                offset -= fortran_strides[axis] * shape[axis];
                index[axis] = 0;
            }
        }
    }
    match data {
        ArrayData::Bool(v) => ArrayData::Bool(permute(shape, v)),
        ArrayData::U8(v) => ArrayData::U8(permute(shape, v)),
        ArrayData::I8(v) => ArrayData::I8(permute(shape, v)),
        ArrayData::U16(v) => ArrayData::U16(permute(shape, v)),
        ArrayData::I16(v) => ArrayData::I16(permute(shape, v)),
        ArrayData::U32(v) => ArrayData::U32(permute(shape, v)),
        ArrayData::I32(v) => ArrayData::I32(permute(shape, v)),
        ArrayData::U64(v) => ArrayData::U64(permute(shape, v)),
        ArrayData::I64(v) => ArrayData::I64(permute(shape, v)),
        ArrayData::F32(v) => ArrayData::F32(permute(shape, v)),
        ArrayData::F64(v) => ArrayData::F64(permute(shape, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_2d_is_transposed() {
        // Logical 2x3 array [[0,1,2],[3,4,5]] stored column-major: 0,3,1,4,2,5.
        let data = ArrayData::I32(vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(
            fortran_to_c_order(&[2, 3], data),
            ArrayData::I32(vec![0, 1, 2, 3, 4, 5])
        );
    }

    #[test]
    fn fortran_order_3d() {
        // a[i][j][k] = 100i + 10j + k, shape (2, 3, 2); Fortran offset = i + 2j + 6k.
        let shape = [2usize, 3, 2];
        let mut fortran = vec![0i64; 12];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..2 {
                    fortran[i + 2 * j + 6 * k] = (100 * i + 10 * j + k) as i64;
                }
            }
        }
        let expected: Vec<i64> = (0..2)
            .flat_map(|i| {
                (0..3).flat_map(move |j| (0..2).map(move |k| (100 * i + 10 * j + k) as i64))
            })
            .collect();
        assert_eq!(
            fortran_to_c_order(&shape, ArrayData::I64(fortran)),
            ArrayData::I64(expected)
        );
    }

    #[test]
    fn elements_round_trip_through_bytes() {
        let data = ArrayData::F32((0..40_000).map(|i| i as f32 * 0.25 - 7.0).collect());
        let mut bytes = Vec::new();
        write_elements(&mut bytes, data.as_slice()).unwrap();
        assert_eq!(bytes.len(), 160_000);
        let back = read_elements(&mut bytes.as_slice(), DType::F32, 40_000).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn short_input_is_eof() {
        let bytes = [0u8; 7];
        let err = read_elements(&mut &bytes[..], DType::F64, 1).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_elements(&mut &bytes[..], DType::F64, 2).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn labels_reject_negative_and_float() {
        let p = Path::new("x.npz");
        let neg = NpyArray::new(vec![3], ArrayData::I64(vec![0, -2, 1])).unwrap();
        let msg = neg.to_labels(p, "labels").unwrap_err().to_string();
        assert!(
            msg.contains("x.npz") && msg.contains("negative value -2 at index 1"),
            "{msg}"
        );
        let float = NpyArray::new(vec![1], ArrayData::F32(vec![1.0])).unwrap();
        let msg = float.to_labels(p, "labels").unwrap_err().to_string();
        assert!(
            msg.contains("float32") && msg.contains("integer dtype"),
            "{msg}"
        );
        let ok = NpyArray::new(vec![2], ArrayData::U8(vec![3, 255])).unwrap();
        assert_eq!(ok.to_labels(p, "labels").unwrap(), vec![3, 255]);
    }
}
