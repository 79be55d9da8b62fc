//! Serde for the f64 sums of the accumulators' states, as their IEEE-754 bit patterns
//! (u64): a state written mid-stream and read back continues exactly, in any format.
//! (Decimal text is not enough: serde_json's default parser may round a decimal to a
//! neighbouring f64.)

use serde::{Deserialize, Deserializer, Serializer};

pub(super) fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|v| v.to_bits()))
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<f64>, D::Error> {
    let bits = Vec::<u64>::deserialize(deserializer)?;
    Ok(bits.into_iter().map(f64::from_bits).collect())
}
