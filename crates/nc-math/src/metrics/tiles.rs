//! K x K quantities in square tiles, so that no K x K table is ever held whole: a plan for
//! K = 10,000 classes would otherwise keep 800 MB per table. At most [`TILE`] x [`TILE`]
//! f64 (8 MiB) live at once per thread; below that size a product is one tile, computed by
//! the same call as a whole matrix.

use crate::linalg::product;
use faer::{MatRef, Par};
use rayon::prelude::*;
use std::ops::Range;

/// The side of a tile.
pub(super) const TILE: usize = 1024;

#[cfg(test)]
thread_local! {
    static TILE_FOR_TESTS: std::cell::Cell<usize> = const { std::cell::Cell::new(TILE) };
}

/// The side of a tile: [`TILE`], or in this crate's unit tests what [`with_tile`] set on
/// the calling thread (every caller reads it before any parallel work starts).
pub(super) fn tile() -> usize {
    #[cfg(test)]
    return TILE_FOR_TESTS.with(|t| t.get());
    #[cfg(not(test))]
    TILE
}

/// Runs `work` with tiles of side `side` on this thread, so that small cases take the
/// paths of many classes.
#[cfg(test)]
pub(super) fn with_tile<T>(side: usize, work: impl FnOnce() -> T) -> T {
    let before = TILE_FOR_TESTS.with(|t| t.replace(side));
    let out = work();
    TILE_FOR_TESTS.with(|t| t.set(before));
    out
}

/// One tile of a K x K product A^T B: entry (i, j) is a_{rows.start + i} . b_{cols.start + j}.
pub(super) struct Tile<'a> {
    pub(super) rows: Range<usize>,
    pub(super) cols: Range<usize>,
    pub(super) values: MatRef<'a, f64>,
}

impl Tile<'_> {
    /// Whether the tile straddles the diagonal (the same classes on both sides).
    pub(super) fn is_diagonal(&self) -> bool {
        self.rows.start == self.cols.start
    }

    /// How many times the tile's entries count in a sum over the whole (symmetric)
    /// matrix when only the tiles on and above the diagonal are visited.
    pub(super) fn multiplicity(&self, symmetric: bool) -> f64 {
        if symmetric && !self.is_diagonal() {
            2.0
        } else {
            1.0
        }
    }

    /// The entries (global row, global column, value), row by row.
    pub(super) fn entries(&self) -> impl Iterator<Item = (usize, usize, f64)> + '_ {
        self.rows.clone().enumerate().flat_map(move |(i, row)| {
            self.cols
                .clone()
                .enumerate()
                .map(move |(j, col)| (row, col, self.values[(i, j)]))
        })
    }
}

/// The ranges of at most [`tile()`] indices that cover 0..n.
fn stripes(n: usize) -> Vec<Range<usize>> {
    let side = tile();
    (0..n.div_ceil(side))
        .map(|t| t * side..((t + 1) * side).min(n))
        .collect()
}

/// Folds `visit` over the tiles of A^T B (A: d x K_a, B: d x K_b, columns are the vectors).
/// With `symmetric` (A = B), only the tiles on and above the diagonal are visited (see
/// [`Tile::multiplicity`]). Each stripe of rows runs in parallel from its own `init()`,
/// visiting its tiles left to right; the stripes' results are combined in row order by
/// `combine`, so the result does not depend on the number of threads.
pub(super) fn fold_tiles<S: Send>(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    symmetric: bool,
    init: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, &Tile<'_>) + Sync,
    combine: impl Fn(S, S) -> S,
) -> S {
    let (row_stripes, col_stripes) = (stripes(a.ncols()), stripes(b.ncols()));
    let per_stripe: Vec<S> = row_stripes
        .par_iter()
        .enumerate()
        .map(|(t, rows)| {
            let mut state = init();
            let first = if symmetric { t } else { 0 };
            for cols in &col_stripes[first..] {
                let left = a.subcols(rows.start, rows.len());
                let right = b.subcols(cols.start, cols.len());
                let values = product(left.transpose(), right, Par::Seq);
                let tile = Tile {
                    rows: rows.clone(),
                    cols: cols.clone(),
                    values: values.as_ref(),
                };
                visit(&mut state, &tile);
            }
            state
        })
        .collect();
    per_stripe.into_iter().reduce(combine).unwrap_or_else(init)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    /// Every entry of A^T B is visited exactly once (with its multiplicity for symmetric
    /// products), with the value of the whole product, across several stripes.
    #[test]
    fn tiles_cover_the_product_once() {
        let (d, ka, kb) = (3, TILE + 7, 2 * TILE + 1);
        let a = Mat::from_fn(d, ka, |i, j| ((i * 31 + j * 7) % 11) as f64 - 5.0);
        let b = Mat::from_fn(d, kb, |i, j| ((i * 13 + j * 3) % 5) as f64 - 2.0);
        let whole = product(a.transpose(), b.as_ref(), Par::Seq);
        let (count, max_error) = fold_tiles(
            a.as_ref(),
            b.as_ref(),
            false,
            || (0usize, 0.0f64),
            |(count, err), tile| {
                for (i, j, v) in tile.entries() {
                    *count += 1;
                    *err = err.max((v - whole[(i, j)]).abs());
                }
            },
            |x, y| (x.0 + y.0, x.1.max(y.1)),
        );
        assert_eq!((count, max_error), (ka * kb, 0.0));

        let gram = product(a.transpose(), a.as_ref(), Par::Seq);
        let total: f64 = (0..ka)
            .flat_map(|i| (0..ka).map(move |j| (i, j)))
            .map(|(i, j)| gram[(i, j)])
            .sum();
        let tiled = fold_tiles(
            a.as_ref(),
            a.as_ref(),
            true,
            || 0.0,
            |sum, tile| {
                let weight = tile.multiplicity(true);
                *sum += weight * tile.entries().map(|(.., v)| v).sum::<f64>();
            },
            |x, y| x + y,
        );
        // Integer entries: every sum is exact.
        assert_eq!(tiled, total);
    }
}
