//! The minimum one-vs-rest margin of Jiang et al. 2023 (`gnc2_margin_w`, docs/metrics.md):
//! for unit vectors x_1..x_K,
//!
//!   margin = min_k max_{||h|| = 1} min_{j != k} (x_k - x_j).h = min_k dist(x_k, conv{x_j : j != k}),
//!
//! the two forms being equal by minimax duality (the second is >= 0 for unit vectors, and 0
//! only when x_k repeats another vector). Each class is a minimum-norm-point problem over
//! the polytope conv{x_k - x_j}, solved exactly by Wolfe's algorithm, with the certificate
//! that any unit h gives a lower bound min_j (x_k - x_j).h, and any point of the hull an
//! upper bound. Only the minimum over classes is wanted, so cheap per-class bounds read from
//! one pass over the tiles of the Gram matrix order the classes and prune those that cannot
//! hold it; no K x K table is held.

use super::tiles::fold_tiles;
use crate::linalg::product;
use crate::vector::{dot, squared_distance};
use faer::{Mat, MatRef, Par};
use rayon::prelude::*;

/// Relative gap between the certified lower and upper bounds at which a class is solved.
const RELATIVE_GAP: f64 = 1e-12;

/// Major iterations of Wolfe's algorithm per class before giving up (it terminates in
/// exact arithmetic; each iteration adds a point, each minor cycle removes one).
fn iteration_cap(k: usize, d: usize) -> usize {
    20 * (k + d) + 100
}

/// The minimum one-vs-rest margin of the columns of `rows` (d x K) after normalising each
/// to unit length; NaN when a column is zero or not finite, or when a class's solve did
/// not close its gap (never observed).
pub(super) fn one_vs_rest_margin(rows: MatRef<'_, f64>) -> f64 {
    let (d, k) = (rows.nrows(), rows.ncols());
    let mut unit = Mat::<f64>::zeros(d, k);
    for c in 0..k {
        let col = rows.col(c);
        let norm = (0..d).map(|i| col[i] * col[i]).sum::<f64>().sqrt();
        if !(norm > 0.0 && norm.is_finite()) {
            return f64::NAN;
        }
        for i in 0..d {
            unit[(i, c)] = col[i] / norm;
        }
    }
    let bounds = Bounds::new(unit.as_ref());
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| bounds.lower[a].total_cmp(&bounds.lower[b]));
    let mut best = bounds.upper.iter().copied().fold(f64::INFINITY, f64::min);
    // Classes are solved a fixed number at a time in parallel, each chunk pruned by the best
    // distance of the chunks before it: the result does not depend on the thread count.
    for chunk in order.chunks(SOLVE_CHUNK) {
        // Within the solve's own tolerance of the best found, a class cannot change it.
        let open: Vec<usize> = chunk
            .iter()
            .copied()
            .take_while(|&c| bounds.lower[c] < best * (1.0 - RELATIVE_GAP))
            .collect();
        let prune = best;
        let solved: Vec<Option<f64>> = open
            .par_iter()
            .map(|&c| Wolfe::new(unit.as_ref(), c).solve(prune))
            .collect();
        for upper in solved {
            match upper {
                Some(upper) => best = best.min(upper),
                None => return f64::NAN,
            }
        }
        if open.len() < chunk.len() {
            break;
        }
    }
    best
}

/// Classes solved in parallel between two updates of the pruning bound.
const SOLVE_CHUNK: usize = 16;

/// Candidates a class's solve starts from: the other vectors most aligned with its own
/// (the hull's nearest face to x_k is made of vectors that x_k's direction sees highest).
/// The solve checks every vector before it stops and adds any it missed, so this sets the
/// speed only: each step costs POOL x d instead of K x d.
const POOL: usize = 64;

/// Per-class bounds on dist(x_k, conv{x_j : j != k}) from the Gram matrix.
struct Bounds {
    /// The larger of two lower bounds (up to the Gram matrix's rounding, about d u): with
    /// h = x_k, min_j (x_k - x_j).x_k = 1 - max_j cos(x_k, x_j); with h the unit vector from
    /// the centroid c_k of the other vectors to x_k, min_j (x_k - x_j).(x_k - c_k) / ||x_k - c_k||.
    lower: Vec<f64>,
    /// min(||x_k - x_nearest||, ||x_k - c_k||): distances to points of the hull.
    upper: Vec<f64>,
}

impl Bounds {
    fn new(unit: MatRef<'_, f64>) -> Self {
        let (d, k) = (unit.nrows(), unit.ncols());
        let others = (k - 1) as f64;
        let sum: Vec<f64> = (0..d).map(|i| (0..k).map(|c| unit[(i, c)]).sum()).collect();
        let sum_mat = MatRef::from_column_major_slice(&sum, d, 1);
        let sum_dots = product(unit.transpose(), sum_mat, Par::Seq);
        let s: Vec<f64> = (0..k).map(|c| sum_dots[(c, 0)]).collect();
        // (x_a - x_b).(x_a - c_a) with c_a = (S - x_a) / (K - 1), from g = x_a.x_b.
        let centroid_term =
            |a: usize, b: usize, g: f64| 1.0 - g - (s[a] - 1.0) / others + (s[b] - g) / others;
        // Per class: (max cos, its index, min of centroid_term).
        let init = || {
            (
                vec![f64::NEG_INFINITY; k],
                vec![0usize; k],
                vec![f64::INFINITY; k],
            )
        };
        let (max_cos, nearest, min_centroid) = fold_tiles(
            unit,
            unit,
            true,
            init,
            |(max_cos, nearest, min_centroid), tile| {
                for (a, b, g) in tile.entries() {
                    if b <= a {
                        continue;
                    }
                    for (own, other) in [(a, b), (b, a)] {
                        if g > max_cos[own] {
                            max_cos[own] = g;
                            nearest[own] = other;
                        }
                        min_centroid[own] = min_centroid[own].min(centroid_term(own, other, g));
                    }
                }
            },
            |(mut m, mut n, mut c), (m2, n2, c2)| {
                for i in 0..k {
                    // Stripes combine in row order, so ties keep the lowest index.
                    if m2[i] > m[i] {
                        m[i] = m2[i];
                        n[i] = n2[i];
                    }
                    c[i] = c[i].min(c2[i]);
                }
                (m, n, c)
            },
        );
        let mut lower = Vec::with_capacity(k);
        let mut upper = Vec::with_capacity(k);
        let mut centroid = vec![0.0; d];
        for c in 0..k {
            let x = unit.col(c);
            for i in 0..d {
                centroid[i] = (sum[i] - x[i]) / others;
            }
            let own: Vec<f64> = (0..d).map(|i| x[i]).collect();
            let to_centroid = squared_distance(&own, &centroid).sqrt();
            let to_nearest = squared_distance(&own, &column(unit, nearest[c])).sqrt();
            let by_own = 1.0 - max_cos[c];
            let by_centroid = if to_centroid > 0.0 {
                min_centroid[c] / to_centroid
            } else {
                f64::NEG_INFINITY
            };
            lower.push(by_own.max(by_centroid));
            upper.push(to_nearest.min(to_centroid));
        }
        Self { lower, upper }
    }
}

fn column(m: MatRef<'_, f64>, c: usize) -> Vec<f64> {
    (0..m.nrows()).map(|i| m[(i, c)]).collect()
}

/// Wolfe's minimum-norm-point algorithm for conv{p_j = x_k - x_j : j != k}: a corral of
/// points whose affine minimiser lies inside their hull, grown by the point the current
/// iterate x sees lowest (min_j x.p_j) and shrunk when the affine minimiser leaves the hull.
/// The weights solve (11^T + P^T P) a = 1 (then scaled to sum 1), kept as a Cholesky factor.
/// The lowest point is sought among a pool of candidates; once the pool's problem is
/// solved, every vector is checked, and those the iterate sees below its own norm join the
/// pool (column generation), so the result is that of the whole hull.
struct Wolfe<'a> {
    unit: MatRef<'a, f64>,
    class: usize,
    own: Vec<f64>,
    /// Candidate indices j and their vectors (d x pool).
    pool: Vec<usize>,
    pool_cols: Mat<f64>,
    /// The corral: indices j, their points p_j, and their weights (summing to 1).
    members: Vec<usize>,
    points: Vec<Vec<f64>>,
    weights: Vec<f64>,
    /// 11^T + P^T P of the corral, and its lower Cholesky factor (row-major, square).
    gram: Vec<Vec<f64>>,
    factor: Vec<Vec<f64>>,
}

impl<'a> Wolfe<'a> {
    /// Starts from the vector nearest x_k, with the [`POOL`] nearest as candidates.
    fn new(unit: MatRef<'a, f64>, class: usize) -> Self {
        let own = column(unit, class);
        let seen = Self::seen_by(unit, &own);
        let mut others: Vec<usize> = (0..unit.ncols()).filter(|&j| j != class).collect();
        let higher = |a: &usize, b: &usize| seen[*b].total_cmp(&seen[*a]).then(a.cmp(b));
        if others.len() > POOL {
            others.select_nth_unstable_by(POOL - 1, higher);
            others.truncate(POOL);
        }
        others.sort_by(higher);
        let start = others[0];
        let mut solver = Self {
            unit,
            class,
            own,
            pool: Vec::new(),
            pool_cols: Mat::zeros(unit.nrows(), 0),
            members: Vec::new(),
            points: Vec::new(),
            weights: Vec::new(),
            gram: Vec::new(),
            factor: Vec::new(),
        };
        solver.extend_pool(&others);
        solver.push(start);
        solver.weights = vec![1.0];
        solver
    }

    /// x_j . x for every column j.
    fn seen_by(unit: MatRef<'_, f64>, x: &[f64]) -> Vec<f64> {
        let x_mat = MatRef::from_column_major_slice(x, x.len(), 1);
        let seen = product(unit.transpose(), x_mat, Par::Seq);
        (0..unit.ncols()).map(|j| seen[(j, 0)]).collect()
    }

    fn extend_pool(&mut self, add: &[usize]) {
        self.pool.extend_from_slice(add);
        let (unit, pool) = (self.unit, &self.pool);
        self.pool_cols = Mat::from_fn(unit.nrows(), pool.len(), |i, c| unit[(i, pool[c])]);
    }

    /// The index among `candidates` (with x_j . x in `seen`) that x sees highest, i.e. whose
    /// point p_j = x_k - x_j it sees lowest; ties keep the first.
    fn highest(candidates: &[usize], seen: &[f64]) -> usize {
        let mut best = 0;
        for i in 1..candidates.len() {
            if seen[i] > seen[best] {
                best = i;
            }
        }
        candidates[best]
    }

    fn point(&self, j: usize) -> Vec<f64> {
        let x = self.unit.col(j);
        self.own.iter().enumerate().map(|(i, o)| o - x[i]).collect()
    }

    /// Adds j to the corral with weight 0; false when its point is affinely dependent on
    /// the corral's to within rounding.
    fn push(&mut self, j: usize) -> bool {
        let p = self.point(j);
        let mut row: Vec<f64> = self.points.iter().map(|q| 1.0 + dot(q, &p)).collect();
        let diagonal = 1.0 + dot(&p, &p);
        // Forward substitution: L l = row.
        let mut l = vec![0.0; row.len()];
        for i in 0..row.len() {
            let partial: f64 = (0..i).map(|t| self.factor[i][t] * l[t]).sum();
            l[i] = (row[i] - partial) / self.factor[i][i];
        }
        let pivot = diagonal - dot(&l, &l);
        // NaN counts as dependent too.
        if pivot.is_nan() || pivot <= 1e-13 * diagonal {
            return false;
        }
        l.push(pivot.sqrt());
        self.factor.push(l);
        for (g, r) in self.gram.iter_mut().zip(&row) {
            g.push(*r);
        }
        row.push(diagonal);
        self.gram.push(row);
        self.members.push(j);
        self.points.push(p);
        self.weights.push(0.0);
        true
    }

    /// Drops the corral members at `drop` and refactors.
    fn remove(&mut self, drop: &[bool]) {
        let keep: Vec<usize> = (0..drop.len()).filter(|&i| !drop[i]).collect();
        self.members = keep.iter().map(|&i| self.members[i]).collect();
        self.points = keep.iter().map(|&i| self.points[i].clone()).collect();
        self.weights = keep.iter().map(|&i| self.weights[i]).collect();
        self.gram = keep
            .iter()
            .map(|&i| keep.iter().map(|&j| self.gram[i][j]).collect())
            .collect();
        let total: f64 = self.weights.iter().sum();
        self.weights.iter_mut().for_each(|w| *w /= total);
        let n = keep.len();
        let mut factor = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in 0..=i {
                let partial: f64 = (0..j).map(|t| factor[i][t] * factor[j][t]).sum();
                if i == j {
                    factor[i][i] = (self.gram[i][i] - partial).max(f64::MIN_POSITIVE).sqrt();
                } else {
                    factor[i][j] = (self.gram[i][j] - partial) / factor[j][j];
                }
            }
            factor[i].truncate(i + 1);
        }
        self.factor = factor;
    }

    /// The affine minimiser's weights: (11^T + P^T P) a = 1, scaled to sum 1.
    fn affine_weights(&self) -> Vec<f64> {
        let n = self.members.len();
        let mut y = vec![0.0; n];
        for i in 0..n {
            let partial: f64 = (0..i).map(|t| self.factor[i][t] * y[t]).sum();
            y[i] = (1.0 - partial) / self.factor[i][i];
        }
        let mut a = vec![0.0; n];
        for i in (0..n).rev() {
            let partial: f64 = (i + 1..n).map(|t| self.factor[t][i] * a[t]).sum();
            a[i] = (y[i] - partial) / self.factor[i][i];
        }
        let total: f64 = a.iter().sum();
        a.iter().map(|v| v / total).collect()
    }

    fn iterate(&self) -> Vec<f64> {
        let mut x = vec![0.0; self.own.len()];
        for (p, w) in self.points.iter().zip(&self.weights) {
            for (xi, pi) in x.iter_mut().zip(p) {
                *xi += w * pi;
            }
        }
        x
    }

    /// Solves to [`RELATIVE_GAP`], or stops once the certified lower bound reaches
    /// `prune` (the class cannot hold a smaller minimum). Returns the upper bound ||x||,
    /// or None when the gap did not close within [`iteration_cap`].
    fn solve(mut self, prune: f64) -> Option<f64> {
        let (d, k) = (self.unit.nrows(), self.unit.ncols());
        let mut previous = f64::INFINITY;
        for _ in 0..iteration_cap(k, d) {
            let x = self.iterate();
            let norm_sq = dot(&x, &x);
            let norm = norm_sq.sqrt();
            if norm == 0.0 {
                return Some(0.0);
            }
            let rounding = 4.0 * d as f64 * f64::EPSILON * norm;
            let pool_seen = Self::seen_by(self.pool_cols.as_ref(), &x);
            let mut lowest = Self::highest(&self.pool, &pool_seen);
            // x.p_j from the difference itself: no cancellation between x.x_k and x.x_j.
            let mut low = dot(&x, &self.point(lowest));
            // Converged on the pool, or (within rounding) no longer descending: Wolfe's
            // iterates decrease strictly in exact arithmetic.
            let stalled = |low: f64, lowest: usize, members: &[usize]| {
                norm_sq - low <= RELATIVE_GAP * norm_sq + rounding
                    || norm_sq >= previous
                    || members.contains(&lowest)
            };
            if stalled(low, lowest, &self.members) {
                // Every vector: the certificate min_j (x_k - x_j).x / ||x|| of the whole hull.
                let seen = Self::seen_by(self.unit, &x);
                let everyone: Vec<usize> = (0..k).filter(|&j| j != self.class).collect();
                let all_seen: Vec<f64> = everyone.iter().map(|&j| seen[j]).collect();
                lowest = Self::highest(&everyone, &all_seen);
                low = dot(&x, &self.point(lowest));
                if low / norm >= prune * (1.0 - RELATIVE_GAP) || stalled(low, lowest, &self.members)
                {
                    return Some(norm);
                }
                // Those seen below the iterate's norm (x.p_j < ||x||^2) join the pool.
                let threshold = dot(&x, &self.own) - norm_sq;
                let missed: Vec<usize> = everyone
                    .into_iter()
                    .filter(|&j| seen[j] > threshold && !self.pool.contains(&j))
                    .collect();
                self.extend_pool(&missed);
            }
            if !self.push(lowest) {
                return Some(norm);
            }
            previous = norm_sq;
            // Minor cycles: move towards the affine minimiser until it lies in the hull.
            loop {
                let alpha = self.affine_weights();
                if alpha.iter().all(|&a| a > 0.0) {
                    self.weights = alpha;
                    break;
                }
                let theta = self
                    .weights
                    .iter()
                    .zip(&alpha)
                    .filter(|(_, &a)| a <= 0.0)
                    .map(|(&w, &a)| w / (w - a))
                    .fold(1.0f64, f64::min);
                for (w, a) in self.weights.iter_mut().zip(&alpha) {
                    *w = (1.0 - theta) * *w + theta * a;
                }
                let smallest = (0..self.weights.len())
                    .min_by(|&i, &j| self.weights[i].total_cmp(&self.weights[j]))
                    .expect("the corral is never empty");
                let drop: Vec<bool> = (0..self.weights.len())
                    .map(|i| i == smallest || self.weights[i] <= 0.0)
                    .collect();
                self.remove(&drop);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tiles::with_tile;
    use super::*;

    fn random_columns(d: usize, k: usize, seed: u64) -> Mat<f64> {
        let mut state = seed;
        Mat::from_fn(d, k, |_, _| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
    }

    fn normalised(m: &Mat<f64>) -> Vec<Vec<f64>> {
        (0..m.ncols())
            .map(|c| {
                let col = column(m.as_ref(), c);
                let n = dot(&col, &col).sqrt();
                col.iter().map(|v| v / n).collect()
            })
            .collect()
    }

    fn solved_alone(unit: &[Vec<f64>]) -> Vec<f64> {
        let (d, k) = (unit[0].len(), unit.len());
        let u = Mat::from_fn(d, k, |i, c| unit[c][i]);
        let bounds = Bounds::new(u.as_ref());
        (0..k)
            .map(|c| {
                let v = Wolfe::new(u.as_ref(), c).solve(f64::INFINITY).unwrap();
                // The cheap bounds bracket every class's distance.
                let rounding = 1e-14 * v;
                assert!(bounds.lower[c] <= v + rounding && v <= bounds.upper[c] + rounding);
                v
            })
            .collect()
    }

    #[test]
    fn a_minimiser_beyond_the_first_chunk_is_found() {
        // x_m = e_0 above a triangle of rows at colatitude theta: its distance from their hull
        // is 1 - cos theta, and h = x_m bounds it exactly. Nine pairs of rows alpha apart, each
        // pair in its own plane orthogonal to everything else, have bounds near 1 - cos alpha
        // (below x_m's) but distances near alpha / 2 (above it): they fill the first chunks.
        let (theta, alpha) = (0.99f64.acos(), 0.1f64);
        let d = 3 + 2 * 9;
        let mut cols: Vec<Vec<f64>> = vec![];
        let mut col = |entries: &[(usize, f64)]| {
            let mut c = vec![0.0; d];
            for &(i, v) in entries {
                c[i] = v;
            }
            cols.push(c);
        };
        for p in 0..9 {
            for sign in [-1.0, 1.0] {
                let (a, b) = (3 + 2 * p, 4 + 2 * p);
                col(&[(a, (alpha / 2.0).cos()), (b, sign * (alpha / 2.0).sin())]);
            }
        }
        col(&[(0, 1.0)]);
        for r in 0..3 {
            let phi = 2.0 * std::f64::consts::PI * r as f64 / 3.0;
            col(&[
                (0, theta.cos()),
                (1, theta.sin() * phi.cos()),
                (2, theta.sin() * phi.sin()),
            ]);
        }
        let k = cols.len();
        let m = Mat::from_fn(d, k, |i, c| cols[c][i]);
        let per_class = solved_alone(&cols);
        let minimiser = 18;
        let expected = 1.0 - theta.cos();
        assert!(
            (per_class[minimiser] - expected).abs() <= 1e-12,
            "{per_class:?}"
        );
        assert!(per_class
            .iter()
            .enumerate()
            .all(|(c, &v)| c == minimiser || v > 2.0 * expected));
        let bounds = Bounds::new(m.as_ref());
        let ahead = (0..k)
            .filter(|&c| bounds.lower[c] < bounds.lower[minimiser])
            .count();
        assert!(
            ahead >= SOLVE_CHUNK,
            "only {ahead} classes sort before the minimiser"
        );
        let got = one_vs_rest_margin(m.as_ref());
        assert!((got - expected).abs() <= 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn pruning_keeps_the_minimum_of_the_classes_solved_alone() {
        // (The integration tests check the minimum against an enumeration of every face.)
        for (d, k, seed) in [
            (3, 5, 1),
            (3, 9, 2),
            (2, 7, 3),
            (4, 8, 4),
            (6, 6, 5),
            (5, 40, 6),
        ] {
            let m = random_columns(d, k, seed);
            let per_class = solved_alone(&normalised(&m));
            let expected = per_class.iter().copied().fold(f64::INFINITY, f64::min);
            for side in [1, 2, 7, 1024] {
                let got = with_tile(side, || one_vs_rest_margin(m.as_ref()));
                assert!(
                    (got - expected).abs() <= 1e-13 * expected,
                    "d={d} K={k} tile {side}: {got} vs {expected} ({per_class:?})"
                );
            }
        }
    }

    #[test]
    fn closed_forms() {
        // Simplex ETF in d = K - 1 (any scale per row): every class is K / (K - 1) from the
        // hull of the others (the centroid -x_k / (K - 1)).
        for k in [2usize, 3, 5, 10] {
            let m = Mat::from_fn(k, k, |i, j| {
                let e = if i == j { 1.0 } else { 0.0 };
                (e - 1.0 / k as f64) * (1.0 + j as f64)
            });
            let expected = k as f64 / (k - 1) as f64;
            let got = one_vs_rest_margin(m.as_ref());
            assert!((got - expected).abs() < 1e-14, "K={k}: {got} vs {expected}");
        }
        // A regular K-gon in the plane (K > d + 1): the nearest point is on the chord of
        // the two neighbours, 1 - cos(2 pi / K) away.
        let k = 12;
        let m = Mat::from_fn(2, k, |i, j| {
            let t = 2.0 * std::f64::consts::PI * j as f64 / k as f64;
            if i == 0 {
                t.cos()
            } else {
                t.sin()
            }
        });
        let expected = 1.0 - (2.0 * std::f64::consts::PI / k as f64).cos();
        assert!((one_vs_rest_margin(m.as_ref()) - expected).abs() < 1e-14);
        // A repeated direction gives 0; a zero row NaN.
        let mut m = random_columns(4, 6, 9);
        for i in 0..4 {
            m[(i, 5)] = 3.0 * m[(i, 2)];
        }
        assert!(one_vs_rest_margin(m.as_ref()).abs() < 1e-15);
        for i in 0..4 {
            m[(i, 5)] = 0.0;
        }
        assert!(one_vs_rest_margin(m.as_ref()).is_nan());
    }

    #[test]
    fn a_face_not_a_vertex_nor_the_centroid() {
        // x_0 above the middle of the edge between x_1 and x_2, x_3 off to the side: the
        // nearest point of the hull is the edge's midpoint, which neither cheap
        // upper bound's point is (the lower bound with h = x_0 is tight here).
        let t: f64 = 0.3;
        let m = Mat::from_fn(3, 4, |i, j| match (j, i) {
            (0, 2) => 1.0,
            (1, 0) => t.cos(),
            (1, 2) => t.sin(),
            (2, 0) => -t.cos(),
            (2, 2) => t.sin(),
            (3, 1) => 1.0,
            _ => 0.0,
        });
        let unit = normalised(&m);
        let expected = 1.0 - t.sin();
        let got = solved_alone(&unit)[0];
        assert!((got - expected).abs() < 1e-14, "{got} vs {expected}");
        let u = Mat::from_fn(3, 4, |i, c| unit[c][i]);
        let bounds = Bounds::new(u.as_ref());
        assert!(bounds.upper[0] > expected + 0.1);
    }
}
