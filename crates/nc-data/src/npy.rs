//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Layout: the magic bytes `\x93NUMPY`, a major and a minor version byte, the header length
//! (`u16` little-endian in version 1, `u32` in versions 2 and 3), then the header: a Python
//! dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (50000, 2048), }`
//! padded with spaces and ending in `\n` (latin-1 in versions 1/2, UTF-8 in version 3). The
//! raw element data follow. `fortran_order: True` data are reordered to C order on reading.
//!
//! Supported `descr` values: `<f4 <f8 <i4 <i8 |u1 <u2 |i1 <i2 <u4 <u8 |b1` (`=` is accepted
//! for native little-endian; big-endian, half precision, complex, strings and structured
//! dtypes are rejected with a clear message).
//!
//! Files are written in version 1.0 (2.0 when the header exceeds 65,535 bytes), C order,
//! with the header padded so the data start at a multiple of 64 bytes, as NumPy does.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::array::{
    element_count, fortran_to_c_order, read_elements, shape_string, write_elements,
};
use crate::array::{ArrayView, DType, NpyArray};
use crate::error::{DataError, Result};
use crate::mapped::{map_file, MappedFloats};

/// The six magic bytes every `.npy` file starts with.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The supported dtypes as `.npy` descr strings, for messages.
pub const SUPPORTED_NPY_DTYPES: &str = "<f4 <f8 <i4 <i8 |u1 <u2 |i1 <i2 <u4 <u8 |b1";

/// Largest header we accept; real headers are a few hundred bytes.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version `(major, minor)`.
    pub version: (u8, u8),
    pub dtype: DType,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Bytes from the start of the file to the first data byte.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of elements the header promises.
    pub fn element_count(&self) -> Option<usize> {
        element_count(&self.shape)
    }

    /// Number of data bytes the header promises.
    pub fn data_bytes(&self) -> Option<usize> {
        self.element_count()?.checked_mul(self.dtype.size())
    }
}

/// Why an `.npy` stream could not be read; turned into a [`DataError`] by the caller, which
/// knows the file (and archive member) names.
#[derive(Debug)]
pub(crate) enum NpyProblem {
    /// Not valid `.npy` content (bad magic, header, truncated data, ...).
    Invalid(String),
    /// A valid header with a dtype we do not read.
    Dtype(String),
    /// Data of `bytes` would exceed the memory ceiling `limit` ([`crate::limits`]).
    TooLarge { bytes: u64, limit: u64 },
    /// An operating-system (or decompression) error.
    Io(io::Error),
}

impl NpyProblem {
    /// Converts into a [`DataError`] about `path`; `member` names the `.npz` member, if any.
    pub(crate) fn into_error(
        self,
        path: &Path,
        format: &'static str,
        member: Option<&str>,
    ) -> DataError {
        let prefix = member
            .map(|m| format!("member '{m}': "))
            .unwrap_or_default();
        let what = || match member {
            Some(m) => format!("member '{m}'"),
            None => "the array".to_string(),
        };
        match self {
            NpyProblem::Invalid(reason) => {
                DataError::format(path, format, format!("{prefix}{reason}"))
            }
            NpyProblem::TooLarge { bytes, limit } => DataError::TooLarge {
                path: path.to_path_buf(),
                what: what(),
                bytes,
                limit,
            },
            NpyProblem::Dtype(dtype) => DataError::UnsupportedDtype {
                path: path.to_path_buf(),
                what: what(),
                dtype,
                supported: SUPPORTED_NPY_DTYPES,
            },
            NpyProblem::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
                DataError::format(path, format, format!("{prefix}{e}"))
            }
            NpyProblem::Io(e) => DataError::io(path, "reading", e),
        }
    }
}

/// The float array of the `.npy` bytes `map[start..start + len]`, in place, when it is a
/// little-endian float32/float64 array in C order whose data fill the rest of those bytes;
/// `None` for anything else (the copying reader then reads it or reports the problem).
pub(crate) fn map_float_array(
    map: Arc<Mmap>,
    start: usize,
    len: usize,
) -> Option<(Vec<usize>, MappedFloats)> {
    let bytes = map.get(start..start.checked_add(len)?)?;
    let header = read_header(&mut &bytes[..]).ok()?;
    let count = header.element_count()?;
    if header.fortran_order || header.data_offset.checked_add(header.data_bytes()?)? != len {
        return None;
    }
    let floats = MappedFloats::new(map, start + header.data_offset, count, header.dtype)?;
    Some((header.shape, floats))
}

/// The float array of the `.npy` file `path` in place (see [`map_float_array`]); `None` also
/// where the file cannot be opened or mapped, for [`read_npy`] to read or report.
pub(crate) fn map_npy_floats(path: &Path) -> Option<(Vec<usize>, MappedFloats)> {
    let map = map_file(&crate::io::open_regular(path, "a .npy file").ok()?)?;
    let len = map.len();
    map_float_array(map, 0, len)
}

/// Reads a whole `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let file = crate::io::open_regular(path, "a .npy file")?;
    let size = file
        .metadata()
        .map_err(|e| DataError::io(path, "reading the size of", e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    read_npy_stream(&mut reader, Some(size)).map_err(|p| p.into_error(path, ".npy", None))
}

/// Reads the header of a `.npy` file without its data.
pub fn read_npy_header(path: &Path) -> Result<NpyHeader> {
    let file = crate::io::open_regular(path, "a .npy file")?;
    read_header(&mut BufReader::new(file)).map_err(|p| p.into_error(path, ".npy", None))
}

/// Reads one `.npy` array from a stream. `total_bytes`, when known, is the length of the
/// whole stream; it lets a truncated file be reported before any data are read, and bytes
/// after the data be detected.
pub(crate) fn read_npy_stream(
    reader: &mut dyn Read,
    total_bytes: Option<u64>,
) -> std::result::Result<NpyArray, NpyProblem> {
    let header = read_header(reader)?;
    let count = header.element_count().ok_or_else(|| {
        NpyProblem::Invalid(format!("shape {} overflows", shape_string(&header.shape)))
    })?;
    let data_bytes = header.data_bytes().ok_or_else(|| {
        NpyProblem::Invalid(format!("shape {} overflows", shape_string(&header.shape)))
    })?;
    let truncated = |available: u64| {
        NpyProblem::Invalid(format!(
            "truncated: the header promises shape {} of {} = {data_bytes} bytes of data, but only {available} bytes follow the header",
            shape_string(&header.shape),
            header.dtype.name()
        ))
    };
    if let Some(total) = total_bytes {
        let available = total.saturating_sub(header.data_offset as u64);
        if available < data_bytes as u64 {
            return Err(truncated(available));
        }
        if available > data_bytes as u64 {
            return Err(NpyProblem::Invalid(format!(
                "{} unexpected bytes after the {data_bytes} bytes of data of shape {} {}",
                available - data_bytes as u64,
                shape_string(&header.shape),
                header.dtype.name()
            )));
        }
    }
    // A compressed member may inflate to whatever its header declares: check before reading.
    let limit = crate::limits::max_memory();
    if data_bytes as u64 > limit {
        return Err(NpyProblem::TooLarge {
            bytes: data_bytes as u64,
            limit,
        });
    }
    let data = match read_elements(reader, header.dtype, count) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(NpyProblem::Invalid(format!(
                "truncated: the header promises shape {} of {} = {data_bytes} bytes of data, but the data end early",
                shape_string(&header.shape),
                header.dtype.name()
            )))
        }
        Err(e) => return Err(NpyProblem::Io(e)),
    };
    // Probe for the end even when the length is known: a zip member reader verifies its
    // CRC-32 only when it is read to the end.
    {
        let mut probe = [0u8; 1];
        match reader.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(NpyProblem::Invalid(format!(
                    "unexpected bytes after the {data_bytes} bytes of data of shape {}",
                    shape_string(&header.shape)
                )))
            }
            Err(e) => return Err(NpyProblem::Io(e)),
        }
    }
    let data = if header.fortran_order {
        fortran_to_c_order(&header.shape, data)
    } else {
        data
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

fn read_exact_or(
    reader: &mut dyn Read,
    buf: &mut [u8],
    what: &str,
) -> std::result::Result<(), NpyProblem> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            NpyProblem::Invalid(format!("truncated: the file ends inside the {what}"))
        } else {
            NpyProblem::Io(e)
        }
    })
}

/// Reads and parses the magic, version, header length and header dict.
pub(crate) fn read_header(reader: &mut dyn Read) -> std::result::Result<NpyHeader, NpyProblem> {
    let mut preamble = [0u8; 8];
    read_exact_or(reader, &mut preamble, "magic bytes")?;
    if &preamble[..6] != NPY_MAGIC {
        return Err(NpyProblem::Invalid(format!(
            "bad magic bytes {:02x?}, expected \\x93NUMPY",
            &preamble[..6]
        )));
    }
    let version = (preamble[6], preamble[7]);
    let (header_len, length_field) = match version.0 {
        1 => {
            let mut len = [0u8; 2];
            read_exact_or(reader, &mut len, "header length")?;
            (usize::from(u16::from_le_bytes(len)), 2)
        }
        2 | 3 => {
            let mut len = [0u8; 4];
            read_exact_or(reader, &mut len, "header length")?;
            (u32::from_le_bytes(len) as usize, 4)
        }
        major => {
            return Err(NpyProblem::Invalid(format!(
                "unsupported format version {major}.{}, expected 1.0, 2.0 or 3.0",
                version.1
            )))
        }
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(NpyProblem::Invalid(format!(
            "header length {header_len} is implausibly large (at most {MAX_HEADER_BYTES} accepted)"
        )));
    }
    let mut raw = vec![0u8; header_len];
    read_exact_or(reader, &mut raw, "header")?;
    let text: String = if version.0 == 3 {
        String::from_utf8(raw)
            .map_err(|_| NpyProblem::Invalid("header is not valid UTF-8".into()))?
    } else {
        // Latin-1: every byte is one code point.
        raw.iter().map(|&b| char::from(b)).collect()
    };
    let fields = parse_header_dict(&text).map_err(|reason| {
        NpyProblem::Invalid(format!(
            "cannot parse header {:?}: {reason}",
            text.trim_end()
        ))
    })?;
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("descr", HeaderValue::Str(s)) => descr = Some(s),
            ("descr", HeaderValue::Other) => {
                return Err(NpyProblem::Dtype("structured (record) dtype".to_string()))
            }
            ("fortran_order", HeaderValue::Bool(b)) => fortran_order = Some(b),
            ("shape", HeaderValue::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(NpyProblem::Invalid(format!(
                    "header key '{key}' has the wrong type"
                )))
            }
            // Unknown keys are allowed by the format and ignored.
            _ => {}
        }
    }
    let missing = |k: &str| NpyProblem::Invalid(format!("header has no '{k}' key"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let dtype = parse_descr(&descr).ok_or(NpyProblem::Dtype(descr))?;
    Ok(NpyHeader {
        version,
        dtype,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
        data_offset: 6 + 2 + length_field + header_len,
    })
}

/// Maps a NumPy descr string to a [`DType`]; `None` if unsupported.
fn parse_descr(descr: &str) -> Option<DType> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    let code = chars.as_str();
    let dtype = match code {
        "b1" | "?" => DType::Bool,
        "u1" | "B" => DType::U8,
        "i1" | "b" => DType::I8,
        "u2" => DType::U16,
        "i2" => DType::I16,
        "u4" => DType::U32,
        "i4" => DType::I32,
        "u8" => DType::U64,
        "i8" => DType::I64,
        "f4" => DType::F32,
        "f8" => DType::F64,
        _ => return None,
    };
    let little_endian = match order {
        '<' => true,
        '|' => dtype.size() == 1,
        '=' => cfg!(target_endian = "little"),
        '>' => dtype.size() == 1,
        _ => false,
    };
    little_endian.then_some(dtype)
}

#[derive(Debug, PartialEq)]
enum HeaderValue {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// Anything else (lists of fields for structured dtypes, numbers, None).
    Other,
}

/// Parses the Python dict literal of an `.npy` header into `(key, value)` pairs.
fn parse_header_dict(text: &str) -> std::result::Result<Vec<(String, HeaderValue)>, String> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    p.skip_ws();
    p.expect('{')?;
    let mut fields = Vec::new();
    loop {
        p.skip_ws();
        if p.eat('}') {
            break;
        }
        let key = p.string()?;
        p.skip_ws();
        p.expect(':')?;
        p.skip_ws();
        let value = p.value()?;
        fields.push((key, value));
        p.skip_ws();
        if p.eat(',') {
            continue;
        }
        p.expect('}')?;
        break;
    }
    p.skip_ws();
    if p.pos != p.chars.len() {
        return Err(format!(
            "unexpected text after the closing brace at character {}",
            p.pos
        ));
    }
    Ok(fields)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(match self.peek() {
                Some(found) => format!("expected '{c}' at character {}, found '{found}'", self.pos),
                None => format!("expected '{c}' at character {}, found the end", self.pos),
            })
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => {
                return Err(format!(
                    "expected a quoted string at character {}",
                    self.pos
                ))
            }
        };
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == quote {
                let s: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                return Ok(s);
            }
            self.pos += 1;
        }
        Err("unterminated string".to_string())
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn value(&mut self) -> std::result::Result<HeaderValue, String> {
        match self.peek() {
            Some('\'' | '"') => Ok(HeaderValue::Str(self.string()?)),
            Some('(') => {
                self.pos += 1;
                let mut dims = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat(')') {
                        break;
                    }
                    let word = self.word();
                    // Python 2 wrote long integers with an 'L' suffix.
                    let digits = word.strip_suffix('L').unwrap_or(&word);
                    let dim = digits.parse::<usize>().map_err(|_| {
                        format!("shape entry '{word}' is not a non-negative integer")
                    })?;
                    dims.push(dim);
                    self.skip_ws();
                    if self.eat(',') {
                        continue;
                    }
                    self.expect(')')?;
                    break;
                }
                Ok(HeaderValue::Tuple(dims))
            }
            Some('[') | Some('{') => {
                // Skip a nested list/dict (structured dtype descr) by bracket matching.
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    match c {
                        '[' | '{' | '(' => depth += 1,
                        ']' | '}' | ')' => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                return Ok(HeaderValue::Other);
                            }
                        }
                        '\'' | '"' => {
                            self.string()?;
                            continue;
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                Err("unterminated bracket".to_string())
            }
            Some(_) => match self.word().as_str() {
                "True" => Ok(HeaderValue::Bool(true)),
                "False" => Ok(HeaderValue::Bool(false)),
                "" => Err(format!("unexpected character at {}", self.pos)),
                _ => Ok(HeaderValue::Other),
            },
            None => Err("unexpected end of header".to_string()),
        }
    }
}

/// The complete header block (magic through trailing newline) for an array of `dtype` and
/// `shape` in C order, padded to a multiple of 64 bytes.
pub fn header_bytes(dtype: DType, shape: &[usize]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.npy_descr(),
        shape_string(shape)
    );
    // Version 1 has a 2-byte length field; fall back to version 2 for huge shapes.
    for (version, length_field) in [(1u8, 2usize), (2, 4)] {
        let unpadded = 6 + 2 + length_field + dict.len() + 1;
        let padding = (64 - unpadded % 64) % 64;
        let header_len = dict.len() + padding + 1;
        if version == 1 && header_len > usize::from(u16::MAX) {
            continue;
        }
        let mut out = Vec::with_capacity(unpadded + padding);
        out.extend_from_slice(NPY_MAGIC);
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header_len as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header_len as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend(std::iter::repeat_n(b' ', padding));
        out.push(b'\n');
        return out;
    }
    unreachable!("a version 2 header always fits")
}

/// Number of bytes [`write_npy_to`] writes for `array`.
pub fn encoded_len(array: &ArrayView<'_>) -> usize {
    header_bytes(array.data.dtype(), array.shape).len() + array.data.byte_len()
}

/// Checks that `array`'s shape matches its data length.
pub(crate) fn check_view(array: &ArrayView<'_>) -> std::result::Result<(), String> {
    match element_count(array.shape) {
        Some(n) if n == array.data.len() => Ok(()),
        Some(n) => Err(format!(
            "shape {} needs {n} elements but {} were given",
            shape_string(array.shape),
            array.data.len()
        )),
        None => Err(format!("shape {} overflows", shape_string(array.shape))),
    }
}

/// Writes `array` in `.npy` format to any writer.
pub fn write_npy_to(writer: &mut dyn Write, array: &ArrayView<'_>) -> io::Result<()> {
    check_view(array).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
    writer.write_all(&header_bytes(array.data.dtype(), array.shape))?;
    write_elements(writer, array.data)
}

/// Writes `array` to the `.npy` file `path`, atomically.
pub fn write_npy(path: &Path, array: &ArrayView<'_>) -> Result<()> {
    check_view(array).map_err(|problem| DataError::array(path, "array", problem))?;
    crate::io::write_atomic(path, |w| write_npy_to(w, array))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::{ArrayData, ArraySlice};

    #[test]
    fn parses_numpy_headers() {
        let fields = parse_header_dict(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }      \n",
        )
        .unwrap();
        assert_eq!(
            fields,
            vec![
                ("descr".to_string(), HeaderValue::Str("<f4".into())),
                ("fortran_order".to_string(), HeaderValue::Bool(false)),
                ("shape".to_string(), HeaderValue::Tuple(vec![3, 4])),
            ]
        );
        let fields =
            parse_header_dict("{'shape': (7L,), \"descr\": '|u1', 'fortran_order': True}").unwrap();
        assert_eq!(fields[0].1, HeaderValue::Tuple(vec![7]));
        assert_eq!(fields[2].1, HeaderValue::Bool(true));
        assert_eq!(
            parse_header_dict("{'shape': ()}").unwrap()[0].1,
            HeaderValue::Tuple(vec![])
        );
        assert!(parse_header_dict("{'shape': (3, -1)}").is_err());
        assert!(parse_header_dict("{'descr': '<f4'").is_err());
        assert_eq!(
            parse_header_dict("{'descr': [('a', '<f4')], 'shape': (1,)}").unwrap()[0].1,
            HeaderValue::Other
        );
    }

    #[test]
    fn descr_strings() {
        assert_eq!(parse_descr("<f4"), Some(DType::F32));
        assert_eq!(parse_descr("|u1"), Some(DType::U8));
        assert_eq!(parse_descr("|b1"), Some(DType::Bool));
        assert_eq!(parse_descr(">f8"), None);
        assert_eq!(parse_descr("<f2"), None);
        assert_eq!(parse_descr("<c16"), None);
        assert_eq!(parse_descr("<U5"), None);
        for dtype in DType::ALL {
            assert_eq!(parse_descr(dtype.npy_descr()), Some(dtype));
        }
    }

    #[test]
    fn header_is_aligned_and_round_trips() {
        for shape in [vec![], vec![5], vec![50_000, 2048], vec![2, 3, 4, 5]] {
            let bytes = header_bytes(DType::F32, &shape);
            assert_eq!(bytes.len() % 64, 0);
            assert_eq!(*bytes.last().unwrap(), b'\n');
            let header = read_header(&mut bytes.as_slice()).unwrap();
            assert_eq!(header.shape, shape);
            assert_eq!(header.version, (1, 0));
            assert_eq!(header.data_offset, bytes.len());
        }
        // A shape whose header exceeds 65,535 bytes needs version 2.0.
        let shape = vec![1usize; 30_000];
        let bytes = header_bytes(DType::U8, &shape);
        assert_eq!(bytes[6], 2);
        assert_eq!(read_header(&mut bytes.as_slice()).unwrap().shape, shape);
    }

    #[test]
    fn stream_round_trip_and_trailing_bytes() {
        let data = [1.5f64, -2.0, 3.25];
        let view = ArrayView {
            shape: &[3],
            data: ArraySlice::F64(&data),
        };
        let mut bytes = Vec::new();
        write_npy_to(&mut bytes, &view).unwrap();
        assert_eq!(bytes.len(), encoded_len(&view));
        let back = read_npy_stream(&mut bytes.as_slice(), None).unwrap();
        assert_eq!(back.data, ArrayData::F64(data.to_vec()));
        bytes.push(0);
        match read_npy_stream(&mut bytes.as_slice(), None) {
            Err(NpyProblem::Invalid(m)) => assert!(m.contains("unexpected bytes"), "{m}"),
            other => panic!("expected trailing-bytes error, got {other:?}"),
        }
    }
}
