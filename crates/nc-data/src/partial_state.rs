//! The partial-state format: the sums of one phase of the metrics engine (docs/metrics.md,
//! "How nclab computes them") as versioned bytes, so that shards accumulated in other
//! threads, processes or machines can travel to where they are merged. Python's pickling of
//! `nclab.MeanAccumulator` / `nclab.ScatterAccumulator` emits exactly these bytes
//! (docs/python.md).
//!
//! The bytes are a `.safetensors` file (see [`crate::safetensors`]): an 8-byte
//! little-endian header length, a JSON header padded with spaces to a multiple of 8 bytes,
//! then the tensors' little-endian data. The header's `__metadata__` holds, as strings:
//!
//! | key | value |
//! |---|---|
//! | `format` | `nclab-partial-state` |
//! | `version` | `1` ([`VERSION`]) |
//! | `phase` | `1` (class counts and feature sums) or `2` (the scatter sums) |
//! | `convention` | phase 1: always `nclab` ([`CONVENTION`]; its sums serve every convention); phase 2: the metric convention the sums belong to, in its canonical text form (`zhu2021`, `nclab+nc1-scale=total`) |
//! | `num_classes`, `dim` | K and d |
//! | `rank` (phase 2) | r, the number of kept singular directions of the class means |
//! | `means_sha256` (phase 2) | [`sha256_f64`] of the phase-1 class means (K x d, row-major) the state was accumulated with |
//! | `classifier_sha256` (phase 2) | [`sha256_f64`] of W (K x d) followed by b (K), or `none` |
//! | `reference_sha256` (phase 2) | [`sha256_f64`] of the NCC reference means (K x d), or `none` for the data's own |
//!
//! Tensors, in this order (alphabetical, data laid out in the same order):
//! phase 1: `counts` (U64, [K]), `sums` (F64, [K, d]); phase 2: `class_counts` (U64, [K]),
//! `counters` (U64, [4]: classifier correct, NCC correct, classifier != NCC, decided from the
//! projections), `deviation_sq` (F64, [K]), `projected_sq` (F64, [r]).
//!
//! The encoding is canonical (keys sorted, no whitespace, f64 sums as their exact bits), so
//! one state has one byte string; [`decode`] refuses anything else, including trailing bytes.
//! Two states merge only when [`PartialState::check_mergeable`] says so: same phase, version,
//! K and d, and for phase 2 the same convention, rank and hashes.
//!
//! Conventions: phase-1 sums (counts and feature sums) are the same under every metric
//! convention, so a phase-1 state always records `nclab` and [`decode`] refuses any other
//! value there; these bytes are exactly those of the first version of this module. A phase-2
//! state depends on its convention (the kept directions of Sigma_B, the centring, the
//! decisions `nc4` compares) and records it. This crate keeps that text a string and checks
//! only its form ([`check_convention_text`]: non-empty, at most [`MAX_CONVENTION_BYTES`]
//! printable ASCII bytes); whoever builds a plan from it parses it (the Python bindings
//! refuse text that does not parse, or that is not the canonical form of what it parses
//! to). A phase-2 state of the `nclab` convention has the bytes the first version wrote, and
//! a reader of that version refuses any other convention by name, so the format stays
//! version 1.

use crate::error::{DataError, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The `format` value.
pub const FORMAT: &str = "nclab-partial-state";
/// The version this library writes and reads.
pub const VERSION: u32 = 1;
/// The default metric convention (docs/metrics.md), and the one every phase-1 state records.
pub const CONVENTION: &str = "nclab";
/// The longest `convention` value read (the longest canonical text is under 200 bytes).
pub const MAX_CONVENTION_BYTES: usize = 256;
/// Headers larger than this are refused as corrupt (a phase-2 header is a few hundred bytes).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Phase 1: per-class sample counts and feature sums.
#[derive(Debug, Clone, PartialEq)]
pub struct MeansPart {
    pub num_classes: usize,
    pub dim: usize,
    /// K counts.
    pub counts: Vec<u64>,
    /// K x d sums, row-major.
    pub sums: Vec<f64>,
}

/// Phase 2: the scatter sums and decision counters, and what they were accumulated with.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPart {
    pub num_classes: usize,
    pub dim: usize,
    /// The metric convention the sums were accumulated under, as its canonical text
    /// (`nclab`, `zhu2021`, `nclab+nc1-scale=total`); see the module documentation.
    pub convention: String,
    /// [`sha256_f64`] of the phase-1 class means.
    pub means_sha256: String,
    /// [`sha256_f64`] of W then b, `None` without a classifier.
    pub classifier_sha256: Option<String>,
    /// [`sha256_f64`] of the NCC reference means, `None` for the data's own means.
    pub reference_sha256: Option<String>,
    /// K counts.
    pub class_counts: Vec<u64>,
    /// r sums of squared projections.
    pub projected_sq: Vec<f64>,
    /// K sums of squared deviations from the class mean.
    pub deviation_sq: Vec<f64>,
    /// [classifier correct, NCC correct, classifier != NCC, decided from the projections].
    pub counters: [u64; 4],
}

/// One phase's state.
#[derive(Debug, Clone, PartialEq)]
pub enum PartialState {
    Means(MeansPart),
    Scatter(ScatterPart),
}

/// SHA-256 of `values` as consecutive little-endian IEEE-754 f64 bytes, in lowercase hex.
/// (numpy: `hashlib.sha256(np.asarray(v, "<f8").tobytes()).hexdigest()`.)
pub fn sha256_f64(values: &[f64]) -> String {
    let mut hasher = Sha256::new();
    for v in values {
        hasher.update(v.to_le_bytes());
    }
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

fn invalid(reason: impl Into<String>) -> DataError {
    DataError::InvalidPartialState {
        reason: reason.into(),
    }
}

/// `Ok` when `text` has the form of a `convention` value: non-empty, at most
/// [`MAX_CONVENTION_BYTES`] bytes, printable ASCII other than space, `"` and `\`. Whether it
/// names a convention is for the crate that knows them (nc-math) to say.
pub fn check_convention_text(text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(invalid("the metric convention is empty"));
    }
    if text.len() > MAX_CONVENTION_BYTES {
        return Err(invalid(format!(
            "the metric convention is {} bytes long, at most {MAX_CONVENTION_BYTES} allowed",
            text.len()
        )));
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !c.is_ascii_graphic() || c == '"' || c == '\\')
    {
        return Err(invalid(format!(
            "the metric convention {text:?} holds {c:?}, expected printable ASCII without spaces, quotes or backslashes"
        )));
    }
    Ok(())
}

/// A tensor of the layout: name, safetensors dtype, shape, little-endian data.
struct Tensor {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn u64_tensor(name: &'static str, values: &[u64]) -> Tensor {
    Tensor {
        name,
        dtype: "U64",
        shape: vec![values.len()],
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn f64_tensor(name: &'static str, shape: Vec<usize>, values: &[f64]) -> Tensor {
    Tensor {
        name,
        dtype: "F64",
        shape,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

impl PartialState {
    /// 1 or 2.
    pub fn phase(&self) -> u32 {
        match self {
            PartialState::Means(_) => 1,
            PartialState::Scatter(_) => 2,
        }
    }

    /// The metric convention: [`CONVENTION`] for phase 1, the recorded one for phase 2.
    pub fn convention(&self) -> &str {
        match self {
            PartialState::Means(_) => CONVENTION,
            PartialState::Scatter(s) => &s.convention,
        }
    }

    /// (K, d).
    pub fn shape(&self) -> (usize, usize) {
        match self {
            PartialState::Means(m) => (m.num_classes, m.dim),
            PartialState::Scatter(s) => (s.num_classes, s.dim),
        }
    }

    /// The `__metadata__` pairs, sorted by key.
    fn metadata(&self) -> BTreeMap<&'static str, String> {
        let (k, d) = self.shape();
        let mut meta = BTreeMap::from([
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("phase", self.phase().to_string()),
            ("convention", self.convention().to_string()),
            ("num_classes", k.to_string()),
            ("dim", d.to_string()),
        ]);
        if let PartialState::Scatter(s) = self {
            let or_none = |h: &Option<String>| h.clone().unwrap_or_else(|| "none".into());
            meta.insert("rank", s.projected_sq.len().to_string());
            meta.insert("means_sha256", s.means_sha256.clone());
            meta.insert("classifier_sha256", or_none(&s.classifier_sha256));
            meta.insert("reference_sha256", or_none(&s.reference_sha256));
        }
        meta
    }

    /// The tensors in layout order.
    fn tensors(&self) -> Vec<Tensor> {
        match self {
            PartialState::Means(m) => vec![
                u64_tensor("counts", &m.counts),
                f64_tensor("sums", vec![m.num_classes, m.dim], &m.sums),
            ],
            PartialState::Scatter(s) => vec![
                u64_tensor("class_counts", &s.class_counts),
                u64_tensor("counters", &s.counters),
                f64_tensor("deviation_sq", vec![s.deviation_sq.len()], &s.deviation_sq),
                f64_tensor("projected_sq", vec![s.projected_sq.len()], &s.projected_sq),
            ],
        }
    }

    /// The canonical bytes of this state (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let tensors = self.tensors();
        // Written by hand rather than through a JSON map, so that the bytes do not depend
        // on serde_json's features (`preserve_order` would change the key order).
        let mut header = String::from("{\"__metadata__\":{");
        for (i, (key, value)) in self.metadata().iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            // Keys and values are digits, hex, fixed ASCII names and a convention text that
            // `decode` accepts only without characters to escape; a convention that would
            // need escaping is escaped (valid JSON, which `decode` then refuses by name).
            let value = serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into());
            let _ = write!(header, "{comma}\"{key}\":{value}");
        }
        header.push('}');
        let mut offset = 0usize;
        for t in &tensors {
            let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
            let end = offset + t.data.len();
            let _ = write!(
                header,
                ",\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
                t.name,
                t.dtype,
                shape.join(",")
            );
            offset = end;
        }
        header.push('}');
        while !header.len().is_multiple_of(8) {
            header.push(' ');
        }
        let mut bytes = Vec::with_capacity(8 + header.len() + offset);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for t in &tensors {
            bytes.extend_from_slice(&t.data);
        }
        bytes
    }

    /// `Ok` when `other` may be merged into this state: same phase, K and d (the version is
    /// checked by [`decode`]), and for phase 2 the same convention, rank, class means,
    /// classifier and reference means. The message says what differs.
    pub fn check_mergeable(&self, other: &PartialState) -> Result<()> {
        let refuse = |what: String| Err(invalid(format!("cannot merge: {what}")));
        if self.phase() != other.phase() {
            return refuse(format!(
                "a phase-{} state into a phase-{} state",
                other.phase(),
                self.phase()
            ));
        }
        let ((k, d), (ok, od)) = (self.shape(), other.shape());
        if (k, d) != (ok, od) {
            return refuse(format!(
                "a state of K={ok}, d={od} into one of K={k}, d={d}"
            ));
        }
        if let (PartialState::Scatter(a), PartialState::Scatter(b)) = (self, other) {
            if a.convention != b.convention {
                return refuse(format!(
                    "a phase-2 state of convention '{}' into one of convention '{}' (the sums differ by convention: accumulate both with the same one)",
                    b.convention, a.convention
                ));
            }
            if a.projected_sq.len() != b.projected_sq.len() {
                return refuse(format!(
                    "phase-2 states of rank {} and {} (different class means)",
                    b.projected_sq.len(),
                    a.projected_sq.len()
                ));
            }
            let short = |h: &Option<String>| {
                h.as_deref()
                    .map_or("none", |h| &h[..h.len().min(12)])
                    .to_string()
            };
            let pairs = [
                (
                    "class means (phase 1)",
                    Some(a.means_sha256.clone()),
                    Some(b.means_sha256.clone()),
                ),
                (
                    "classifier",
                    a.classifier_sha256.clone(),
                    b.classifier_sha256.clone(),
                ),
                (
                    "reference means (means_from)",
                    a.reference_sha256.clone(),
                    b.reference_sha256.clone(),
                ),
            ];
            for (what, mine, theirs) in pairs {
                if mine != theirs {
                    return refuse(format!(
                        "the phase-2 states were accumulated with different {what} (sha256 {} vs {})",
                        short(&theirs),
                        short(&mine)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Reads the bytes [`PartialState::encode`] writes; anything else is refused with the
/// reason (an unknown version, a phase-1 convention other than `nclab` or a phase-2 one
/// [`check_convention_text`] refuses, a missing or extra tensor, wrong shapes, bytes that are
/// not in canonical form). A phase-2 convention is returned as text, not parsed.
pub fn decode(bytes: &[u8]) -> Result<PartialState> {
    let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(invalid(format!(
            "{} bytes, too short for the 8-byte header length",
            bytes.len()
        )));
    };
    let header_len = u64::from_le_bytes(*len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len > rest.len() as u64 {
        return Err(invalid(format!(
            "the header length field says {header_len} bytes, but {} follow it (at most {MAX_HEADER_BYTES} allowed)",
            rest.len()
        )));
    }
    let (header, data) = rest.split_at(header_len as usize);
    let header: Value = serde_json::from_slice(header)
        .map_err(|e| invalid(format!("the header is not valid JSON: {e}")))?;
    let Value::Object(entries) = header else {
        return Err(invalid("the header is not a JSON object"));
    };
    let meta = match entries.get("__metadata__") {
        Some(Value::Object(meta)) => meta,
        _ => return Err(invalid("the header has no __metadata__ object")),
    };
    let field = |key: &str| -> Result<&str> {
        meta.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("the metadata has no string '{key}'")))
    };
    if field("format")? != FORMAT {
        return Err(invalid(format!(
            "format '{}', expected '{FORMAT}'",
            field("format")?
        )));
    }
    if field("version")? != VERSION.to_string() {
        return Err(invalid(format!(
            "format version {}, but this nclab reads version {VERSION}",
            field("version")?
        )));
    }
    let convention = field("convention")?;
    let count = |key: &str| -> Result<usize> {
        let text = field(key)?;
        text.parse::<usize>().map_err(|_| {
            invalid(format!(
                "'{key}' is '{text}', expected a non-negative integer"
            ))
        })
    };
    let (k, d) = (count("num_classes")?, count("dim")?);
    let mut reader = TensorReader {
        entries: &entries,
        data,
        offset: 0,
    };
    let state = match field("phase")? {
        "1" => {
            if convention != CONVENTION {
                return Err(invalid(format!(
                    "a phase-1 state with metric convention '{convention}': phase-1 states record '{CONVENTION}' (their sums serve every convention)"
                )));
            }
            // Checked before anything K x d is allocated.
            let kd = k
                .checked_mul(d)
                .filter(|n| n.checked_mul(8).is_some_and(|b| b <= data.len()))
                .ok_or_else(|| {
                    invalid(format!(
                        "K={k}, d={d} sums do not fit in {} data bytes",
                        data.len()
                    ))
                })?;
            PartialState::Means(MeansPart {
                num_classes: k,
                dim: d,
                counts: reader.u64s("counts", &[k])?,
                sums: reader.f64s("sums", &[k, d], kd)?,
            })
        }
        "2" => {
            check_convention_text(convention)?;
            let r = count("rank")?;
            let hash = |key: &str| -> Result<Option<String>> {
                let value = field(key)?;
                if value == "none" {
                    return Ok(None);
                }
                let hex = value.len() == 64
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if !hex {
                    return Err(invalid(format!(
                        "'{key}' is '{value}', expected 64 lowercase hex digits or 'none'"
                    )));
                }
                Ok(Some(value.to_string()))
            };
            let means_sha256 =
                hash("means_sha256")?.ok_or_else(|| invalid("'means_sha256' is 'none'"))?;
            let class_counts = reader.u64s("class_counts", &[k])?;
            let counters = reader.u64s("counters", &[4])?;
            PartialState::Scatter(ScatterPart {
                num_classes: k,
                dim: d,
                convention: convention.to_string(),
                means_sha256,
                classifier_sha256: hash("classifier_sha256")?,
                reference_sha256: hash("reference_sha256")?,
                class_counts,
                counters: [counters[0], counters[1], counters[2], counters[3]],
                deviation_sq: reader.f64s("deviation_sq", &[k], k)?,
                projected_sq: reader.f64s("projected_sq", &[r], r)?,
            })
        }
        other => return Err(invalid(format!("phase '{other}', expected 1 or 2"))),
    };
    // Every field was read from where the layout puts it; the canonical re-encoding also
    // catches extra tensors or metadata, other key orders, padding and trailing bytes.
    if state.encode() != bytes {
        return Err(invalid(
            "the bytes are not in the canonical layout nclab writes (extra entries, key order, padding or trailing bytes differ)",
        ));
    }
    Ok(state)
}

/// Reads the tensors of the layout in order, checking each entry.
struct TensorReader<'a> {
    entries: &'a serde_json::Map<String, Value>,
    data: &'a [u8],
    offset: usize,
}

impl TensorReader<'_> {
    /// The bytes of tensor `name`, which must have `dtype` and `shape` and start where the
    /// previous one ended.
    fn bytes(&mut self, name: &str, dtype: &str, shape: &[usize], count: usize) -> Result<&[u8]> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| invalid(format!("no tensor '{name}'")))?;
        let got_dtype = entry.get("dtype").and_then(Value::as_str);
        let got_shape: Option<Vec<usize>> = entry.get("shape").and_then(|s| {
            s.as_array()?
                .iter()
                .map(|v| v.as_u64().map(|v| v as usize))
                .collect()
        });
        if got_dtype != Some(dtype) || got_shape.as_deref() != Some(shape) {
            return Err(invalid(format!(
                "tensor '{name}' is {} {:?}, expected {dtype} {shape:?}",
                got_dtype.unwrap_or("?"),
                got_shape.unwrap_or_default()
            )));
        }
        let len = count * 8;
        let end = self.offset + len;
        if end > self.data.len() {
            return Err(invalid(format!(
                "tensor '{name}' needs {len} bytes at offset {}, but the data has {}",
                self.offset,
                self.data.len()
            )));
        }
        let bytes = &self.data[self.offset..end];
        self.offset = end;
        Ok(bytes)
    }

    fn u64s(&mut self, name: &str, shape: &[usize]) -> Result<Vec<u64>> {
        let count = shape.iter().product();
        let bytes = self.bytes(name, "U64", shape, count)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }

    fn f64s(&mut self, name: &str, shape: &[usize], count: usize) -> Result<Vec<f64>> {
        let bytes = self.bytes(name, "F64", shape, count)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }
}
