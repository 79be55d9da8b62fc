//! Between the engine's accumulators (nc-math) and the partial-state bytes (nc-data's
//! `partial_state`, docs/python.md "Partial states"): the parts of each phase, the convention
//! and hashes that tie a phase-2 state to the plan it was accumulated with, and state files.
//! The Python bindings and `nclab analyze --phase` / `nclab merge` share this one path.

use crate::error::{Error, Result};
use nc_data::partial_state::{decode, sha256_f64, MeansPart, PartialState, ScatterPart};
use nc_data::DataError;
use nc_math::metrics::{ClassMeans, Classifier, Convention, MeanAccumulator, ScatterState};
use std::path::Path;

fn invalid(reason: String) -> DataError {
    DataError::InvalidPartialState { reason }
}

/// The convention a phase-2 state records: text that parses, in its canonical form (one
/// state, one byte string), else a partial-state error saying why.
pub fn parse_convention(text: &str) -> Result<Convention> {
    let convention: Convention = text.parse().map_err(|e: nc_math::Error| {
        let reason = match e {
            nc_math::Error::InvalidArgument(reason) => reason,
            other => other.to_string(),
        };
        invalid(format!("metric convention '{text}': {reason}"))
    })?;
    let canonical = convention.to_string();
    if canonical != text {
        return Err(invalid(format!(
            "metric convention '{text}' is not in canonical form (nclab writes it '{canonical}')"
        ))
        .into());
    }
    Ok(convention)
}

/// nc-data's `decode`, and for phase 2 the convention checked by [`parse_convention`].
pub fn decode_state(bytes: &[u8]) -> Result<PartialState> {
    let state = decode(bytes)?;
    if let PartialState::Scatter(part) = &state {
        parse_convention(&part.convention)?;
    }
    Ok(state)
}

/// Reads a partial-state file ([`decode_state`]); errors name the file.
pub fn read_state_file(path: &Path) -> Result<PartialState> {
    let bytes = nc_data::io::read_regular(path, "a partial-state file")?;
    decode_state(&bytes).map_err(|e| Error::invalid(path, e.to_string()))
}

/// Writes `state` to `path` atomically (temporary file, then rename).
pub fn write_state_file(path: &Path, state: &PartialState) -> Result<()> {
    Ok(nc_data::io::write_atomic_bytes(path, &state.encode())?)
}

/// Whether `path` holds a partial state rather than a feature file: a safetensors-style
/// header (both can be `.safetensors` files) whose metadata `format` is
/// [`nc_data::partial_state::FORMAT`]. Reads the header only.
pub fn is_state_file(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = nc_data::io::open_regular(path, "a file") else {
        return false;
    };
    let mut file = file.take(8 + (1 << 16));
    let mut length = [0u8; 8];
    if file.read_exact(&mut length).is_err() {
        return false;
    }
    let length = u64::from_le_bytes(length);
    if length > 1 << 16 {
        return false;
    }
    let mut header = vec![0u8; length as usize];
    if file.read_exact(&mut header).is_err() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&header)
        .ok()
        .and_then(|v| {
            v.get("__metadata__")?
                .get("format")?
                .as_str()
                .map(|f| f == nc_data::partial_state::FORMAT)
        })
        .unwrap_or(false)
}

/// What a phase-2 state was accumulated with: the convention, and the rest by hash (the
/// partial-state metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanId {
    pub num_classes: usize,
    pub dim: usize,
    pub convention: Convention,
    pub means_sha256: String,
    pub classifier_sha256: Option<String>,
    pub reference_sha256: Option<String>,
}

impl PlanId {
    pub fn new(
        means: &ClassMeans,
        classifier: Option<&Classifier>,
        reference: Option<&ClassMeans>,
        convention: &Convention,
    ) -> Self {
        Self {
            num_classes: means.num_classes(),
            dim: means.dim(),
            convention: *convention,
            means_sha256: sha256_f64(means.means()),
            classifier_sha256: classifier.map(|c| {
                let mut values = c.weight().to_vec();
                values.extend_from_slice(c.bias());
                sha256_f64(&values)
            }),
            reference_sha256: reference.map(|r| sha256_f64(r.means())),
        }
    }

    pub fn scatter_part(&self, state: &ScatterState) -> ScatterPart {
        ScatterPart {
            num_classes: self.num_classes,
            dim: self.dim,
            convention: self.convention.to_string(),
            means_sha256: self.means_sha256.clone(),
            classifier_sha256: self.classifier_sha256.clone(),
            reference_sha256: self.reference_sha256.clone(),
            class_counts: state.class_counts().to_vec(),
            projected_sq: state.projected_sq().to_vec(),
            deviation_sq: state.deviation_sq().to_vec(),
            counters: state.counters(),
        }
    }

    /// The id and state of a decoded phase-2 part.
    pub fn from_part(part: ScatterPart) -> Result<(Self, ScatterState)> {
        let convention = parse_convention(&part.convention)?;
        let state = ScatterState::from_parts(
            part.class_counts,
            part.projected_sq,
            part.deviation_sq,
            part.counters,
        )?;
        let id = Self {
            num_classes: part.num_classes,
            dim: part.dim,
            convention,
            means_sha256: part.means_sha256,
            classifier_sha256: part.classifier_sha256,
            reference_sha256: part.reference_sha256,
        };
        Ok((id, state))
    }

    /// `Ok` when a state of this id belongs to the plan of `expected`; else why not, in
    /// words a user can act on.
    pub fn check_matches(&self, expected: &PlanId) -> std::result::Result<(), String> {
        if (self.num_classes, self.dim) != (expected.num_classes, expected.dim) {
            return Err(format!(
                "it has K={}, d={}, but the means have K={}, d={}",
                self.num_classes, self.dim, expected.num_classes, expected.dim
            ));
        }
        if self.convention != expected.convention {
            return Err(format!(
                "it was accumulated under the convention '{}', not '{}'",
                self.convention, expected.convention
            ));
        }
        if self.means_sha256 != expected.means_sha256 {
            return Err(
                "it was accumulated with other phase-1 means (means_sha256 differs)".into(),
            );
        }
        let describe = |h: &Option<String>| h.clone().unwrap_or_else(|| "none".into());
        if self.classifier_sha256 != expected.classifier_sha256 {
            return Err(format!(
                "it was accumulated with classifier {} , but the classifier given is {}",
                describe(&self.classifier_sha256),
                describe(&expected.classifier_sha256)
            ));
        }
        if self.reference_sha256 != expected.reference_sha256 {
            return Err(format!(
                "its NCC reference means are {} , but those given are {}",
                describe(&self.reference_sha256),
                describe(&expected.reference_sha256)
            ));
        }
        Ok(())
    }
}

pub fn means_part(acc: &MeanAccumulator) -> MeansPart {
    MeansPart {
        num_classes: acc.num_classes(),
        dim: acc.dim(),
        counts: acc.counts().to_vec(),
        sums: acc.sums().to_vec(),
    }
}

pub fn from_means_part(part: MeansPart) -> nc_math::Result<MeanAccumulator> {
    MeanAccumulator::from_parts(part.num_classes, part.dim, part.counts, part.sums)
}
