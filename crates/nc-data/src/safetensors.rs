//! `.safetensors` files (the Hugging Face format), parsed directly.
//!
//! Layout: an unsigned 64-bit little-endian header length `L`, then `L` bytes of UTF-8 JSON
//! mapping each tensor name to `{"dtype": "F32", "shape": [N, d], "data_offsets": [begin, end]}`
//! (plus an optional `"__metadata__"` object of string pairs), then the data buffer. Offsets
//! are relative to the start of the buffer; tensors are row-major and little-endian.
//!
//! Supported dtypes: `F32 F64 I32 I64 U8 U16` and also `I8 I16 U32 U64 BOOL`; others (`F16`,
//! `BF16`, `F8_*`, ...) are reported as unsupported when the tensor is read.
//!
//! Reading seeks to one tensor and decodes it straight into its typed vector, so only the
//! requested tensors are loaded. Writing lays the tensors out in the given order, pads the
//! header with spaces to a multiple of 8 bytes, and is atomic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::array::{
    element_count, read_elements, shape_string, write_elements, ArrayView, DType, NpyArray,
};
use crate::error::{DataError, Result};
use crate::mapped::{map_file, MappedFloats};

const FORMAT: &str = ".safetensors";

/// The dtypes this reader supports, for messages.
pub const SUPPORTED_SAFETENSORS_DTYPES: &str = "F32 F64 I32 I64 U8 U16 I8 I16 U32 U64 BOOL";

/// Headers larger than this are rejected as corrupt (the reference implementation uses the
/// same 100 MB limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

fn parse_dtype(name: &str) -> Option<DType> {
    DType::ALL
        .into_iter()
        .find(|d| d.safetensors_name() == name)
}

/// Where one tensor lives in the file.
#[derive(Clone, Debug)]
struct TensorEntry {
    /// The dtype string as written in the header.
    dtype_name: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// An open `.safetensors` file whose tensors can be read one at a time.
#[derive(Debug)]
pub struct SafetensorsReader {
    path: PathBuf,
    file: BufReader<File>,
    data_start: u64,
    /// Tensor names in data order.
    names: Vec<String>,
    tensors: BTreeMap<String, TensorEntry>,
    metadata: BTreeMap<String, String>,
}

impl SafetensorsReader {
    /// Opens the file and parses and validates its header (not the data).
    pub fn open(path: &Path) -> Result<Self> {
        let invalid = |reason: String| DataError::format(path, FORMAT, reason);
        let file = crate::io::open_regular(path, "a .safetensors file")?;
        let file_len = file
            .metadata()
            .map_err(|e| DataError::io(path, "reading the size of", e))?
            .len();
        let mut file = BufReader::with_capacity(1 << 16, file);
        if file_len < 8 {
            return Err(invalid(format!(
                "the file has {file_len} bytes, too short for the 8-byte header length"
            )));
        }
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes)
            .map_err(|e| DataError::io(path, "reading", e))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
            return Err(invalid(format!(
                "header length field says {header_len} bytes, but the file has {} bytes after it (and at most {MAX_HEADER_BYTES} are allowed)",
                file_len - 8
            )));
        }
        let mut header_bytes = vec![0u8; header_len as usize];
        file.read_exact(&mut header_bytes)
            .map_err(|e| DataError::io(path, "reading", e))?;
        let header: Value = serde_json::from_slice(&header_bytes)
            .map_err(|e| invalid(format!("the header is not valid JSON: {e}")))?;
        if !header.is_object() {
            return Err(invalid("the header is not a JSON object".to_string()));
        }
        // A JSON object read into a map keeps the last of two equal keys silently; read the
        // entries in order again instead, refusing a key given twice (which tensor is meant?).
        let HeaderEntries(entries) = serde_json::from_slice(&header_bytes)
            .map_err(|e| invalid(format!("the header {e}")))?;
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, value) in entries {
            if name == "__metadata__" {
                metadata = parse_metadata(&value).map_err(invalid)?;
                continue;
            }
            let entry = parse_entry(&value, data_len)
                .map_err(|reason| invalid(format!("tensor '{name}': {reason}")))?;
            tensors.insert(name, entry);
        }
        let mut names: Vec<String> = tensors.keys().cloned().collect();
        names.sort_by_key(|n| tensors[n].begin);
        Ok(SafetensorsReader {
            path: path.to_path_buf(),
            file,
            data_start,
            names,
            tensors,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in the order of their data.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The free-form `__metadata__` string pairs (empty if none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Reads tensor `name`.
    pub fn read(&mut self, name: &str) -> Result<NpyArray> {
        let path = &self.path;
        let entry = self
            .tensors
            .get(name)
            .ok_or_else(|| DataError::MissingArray {
                path: path.clone(),
                key: name.to_string(),
                available: crate::npz::list_or_none(&self.names),
            })?;
        let dtype = parse_dtype(&entry.dtype_name).ok_or_else(|| DataError::UnsupportedDtype {
            path: path.clone(),
            what: format!("tensor '{name}'"),
            dtype: entry.dtype_name.clone(),
            supported: SUPPORTED_SAFETENSORS_DTYPES,
        })?;
        let count = element_count(&entry.shape).unwrap_or(usize::MAX);
        self.file
            .seek(SeekFrom::Start(self.data_start + entry.begin))
            .map_err(|e| DataError::io(path, "seeking in", e))?;
        let mut limited = (&mut self.file).take(entry.end - entry.begin);
        let data = read_elements(&mut limited, dtype, count).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData {
                DataError::format(path, FORMAT, format!("tensor '{name}': {e}"))
            } else {
                DataError::io(path, "reading", e)
            }
        })?;
        Ok(NpyArray {
            shape: entry.shape.clone(),
            data,
        })
    }

    /// The float tensor `name` in place when it is float32/float64 (safetensors data are
    /// little-endian, C order); `Ok(None)` for a missing or other tensor, which
    /// [`SafetensorsReader::read`] then reads or reports.
    pub fn map_floats(&mut self, name: &str) -> Result<Option<(Vec<usize>, MappedFloats)>> {
        let Some(entry) = self.tensors.get(name) else {
            return Ok(None);
        };
        let Some(dtype @ (DType::F32 | DType::F64)) = parse_dtype(&entry.dtype_name) else {
            return Ok(None);
        };
        let (Some(count), Ok(start)) = (
            element_count(&entry.shape),
            usize::try_from(self.data_start + entry.begin),
        ) else {
            return Ok(None);
        };
        if count.checked_mul(dtype.size()).map(|n| n as u64) != Some(entry.end - entry.begin) {
            return Ok(None);
        }
        let Some(map) = map_file(self.file.get_ref()) else {
            return Ok(None);
        };
        Ok(MappedFloats::new(map, start, count, dtype).map(|m| (entry.shape.clone(), m)))
    }

    /// Reads every tensor.
    pub fn read_all(&mut self) -> Result<BTreeMap<String, NpyArray>> {
        let names = self.names.clone();
        names
            .into_iter()
            .map(|name| self.read(&name).map(|a| (name, a)))
            .collect()
    }
}

/// The header's entries in file order, with a key given twice refused.
struct HeaderEntries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for HeaderEntries {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = HeaderEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<HeaderEntries, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "has the key '{key}' twice (which entry is meant is undefined)"
                        )));
                    }
                    entries.push((key, value));
                }
                Ok(HeaderEntries(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

fn parse_metadata(value: &Value) -> std::result::Result<BTreeMap<String, String>, String> {
    let Value::Object(map) = value else {
        return Err("'__metadata__' is not a JSON object".to_string());
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format!("'__metadata__' entry '{k}' is not a string")),
        })
        .collect()
}

fn parse_entry(value: &Value, data_len: u64) -> std::result::Result<TensorEntry, String> {
    let Value::Object(map) = value else {
        return Err("entry is not a JSON object".to_string());
    };
    let dtype_name = match map.get("dtype") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("missing or non-string 'dtype'".to_string()),
    };
    let shape = match map.get("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or("'shape' holds something other than non-negative integers")?,
        _ => return Err("missing or non-list 'shape'".to_string()),
    };
    let (begin, end) = match map.get("data_offsets") {
        Some(Value::Array(offsets)) if offsets.len() == 2 => {
            match (offsets[0].as_u64(), offsets[1].as_u64()) {
                (Some(b), Some(e)) => (b, e),
                _ => return Err("'data_offsets' are not non-negative integers".to_string()),
            }
        }
        _ => return Err("missing 'data_offsets' [begin, end]".to_string()),
    };
    if begin > end || end > data_len {
        return Err(format!(
            "data_offsets [{begin}, {end}] lie outside the {data_len}-byte data buffer (file truncated?)"
        ));
    }
    if let Some(dtype) = parse_dtype(&dtype_name) {
        let needed = element_count(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| format!("shape {} overflows", shape_string(&shape)))?;
        if needed as u64 != end - begin {
            return Err(format!(
                "shape {} of {} needs {needed} bytes but data_offsets [{begin}, {end}] span {}",
                shape_string(&shape),
                dtype_name,
                end - begin
            ));
        }
    }
    Ok(TensorEntry {
        dtype_name,
        shape,
        begin,
        end,
    })
}

/// Reads every tensor of the `.safetensors` file `path`, keyed by name.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    SafetensorsReader::open(path)?.read_all()
}

/// Writes `arrays` (name, array) to the `.safetensors` file `path`, atomically, with no
/// metadata.
pub fn write_safetensors(path: &Path, arrays: &[(&str, ArrayView<'_>)]) -> Result<()> {
    write_safetensors_with_metadata(path, arrays, &BTreeMap::new())
}

/// Writes `arrays` and the `__metadata__` string pairs to `path`, atomically.
pub fn write_safetensors_with_metadata(
    path: &Path,
    arrays: &[(&str, ArrayView<'_>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    for (i, (name, array)) in arrays.iter().enumerate() {
        if name.is_empty() || *name == "__metadata__" || arrays[..i].iter().any(|(n, _)| n == name)
        {
            return Err(DataError::array(
                path,
                name,
                "name is empty, reserved ('__metadata__') or given twice",
            ));
        }
        crate::npy::check_view(array).map_err(|problem| DataError::array(path, name, problem))?;
    }
    let header = header_bytes(arrays, metadata);
    crate::io::write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for (_, array) in arrays {
            write_elements(w, array.data)?;
        }
        Ok(())
    })
}

/// The JSON header, padded with spaces to a multiple of 8 bytes.
fn header_bytes(arrays: &[(&str, ArrayView<'_>)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        map.insert("__metadata__".to_string(), Value::Object(meta));
    }
    let mut offset = 0u64;
    for (name, array) in arrays {
        let end = offset + array.data.byte_len() as u64;
        map.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": array.data.dtype().safetensors_name(),
                "shape": array.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut bytes = Value::Object(map).to_string().into_bytes();
    while !bytes.len().is_multiple_of(8) {
        bytes.push(b' ');
    }
    bytes
}
