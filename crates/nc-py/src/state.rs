//! Between the engine's accumulators (nc-math) and the partial-state bytes (nc-data's
//! `partial_state`, docs/python.md "Partial states"): the parts of each phase, and the
//! convention and hashes that tie a phase-2 state to the plan it was accumulated with.

use crate::error::Result;
use nc_data::partial_state::{decode, sha256_f64, MeansPart, PartialState, ScatterPart};
use nc_data::DataError;
use nc_math::metrics::{ClassMeans, Classifier, Convention, MeanAccumulator, ScatterState};

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
