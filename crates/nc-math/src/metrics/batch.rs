//! What both phases do with a batch before they read it: check its shape and labels, and
//! cut it into blocks of rows for parallel work.

use crate::{Error, Result};

/// Rows per block of the phase-2 matrix product (and the unit of parallel work).
pub(super) const BLOCK_ROWS: usize = 256;

/// The fewest blocks of a batch of `rows` that one parallel piece takes: about four pieces
/// per thread, or one where each piece's fresh state is `piece_bytes` of 8 MiB or more.
/// Each piece starts fresh accumulators and scratch buffers (megabytes at large K and d,
/// every page of them faulted in anew, and every finished piece's sums held until they are
/// combined), so rayon's default of splitting down to single blocks spends more on fresh
/// memory than the balance is worth, and at K = 10,000 classes in d = 512 (41 MB of sums
/// per piece) four per thread would hold hundreds of megabytes.
pub(super) fn blocks_per_piece(rows: usize, piece_bytes: usize) -> usize {
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let per_thread = if piece_bytes >= 8 << 20 { 1 } else { 4 };
    blocks
        .div_ceil(per_thread * rayon::current_num_threads())
        .max(1)
}

/// `features` holds labels.len() rows of `dim` values and every label is below
/// `num_classes`; errors name the row counted from `first_row`.
pub(super) fn check_batch<T>(
    features: &[T],
    labels: &[u32],
    dim: usize,
    num_classes: usize,
    first_row: u64,
) -> Result<()> {
    if features.len() != labels.len() * dim {
        return Err(Error::Shape {
            what: "feature batch",
            expected: format!(
                "{} labels x {dim} = {} values",
                labels.len(),
                labels.len() * dim
            ),
            got: format!("{} values", features.len()),
        });
    }
    if let Some(row) = labels.iter().position(|&y| y as usize >= num_classes) {
        return Err(Error::LabelOutOfRange {
            label: labels[row] as u64,
            row: first_row as usize + row,
            num_classes,
        });
    }
    Ok(())
}
