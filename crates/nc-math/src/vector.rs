//! Streaming kernels over long f64 vectors (the optimiser's state: 1.3 million entries for
//! the UFM with K = 100, n = 50, d = 256).
//!
//! Each kernel is split into chunks across threads and, on x86-64 CPUs with AVX2 (detected
//! at run time), compiled a second time for 256-bit vectors: the default x86-64 target only
//! allows SSE2, and these loops are bound by how many bytes per cycle they move. The sums
//! keep several independent partial sums so that they vectorise (one running sum is one
//! long chain of dependent additions); the result can differ from a left-to-right sum in
//! the last bits.

use rayon::prelude::*;

/// Vectors at least this long are split across threads.
pub const PARALLEL_LENGTH: usize = 1 << 16;
/// Entries handed to one thread at a time.
pub const CHUNK: usize = 1 << 14;
/// Entries of the output kept in L1 cache while the inputs of a linear combination stream past.
const TILE: usize = 1 << 12;
/// Independent partial sums per inner product: two AVX2 registers.
const LANES: usize = 8;

/// Defines `$name` calling `$kernel`, through an AVX2-compiled copy when the CPU has AVX2.
macro_rules! with_avx2 {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $kernel:ident;)*) => {$(
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { wide($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    )*};
}

with_avx2! {
    fn dot_chunk(a: &[f64], b: &[f64]) -> f64 = dot_kernel;
    fn squared_distance_chunk(a: &[f64], b: &[f64]) -> f64 = squared_distance_kernel;
    fn dots_chunk(v: &[f64], a: &[f64], b: &[f64], c: &[f64]) -> [f64; 3] = dots_kernel;
    fn combine_chunk(out: &mut [f64], offset: usize, vectors: &[&[f64]], coef: &[f64]) = combine_kernel;
    fn add_scaled_chunk(out: &mut [f64], a: &[f64], alpha: f64, b: &[f64]) = add_scaled_kernel;
}

/// sum_i term(a_i, b_i), over LANES independent partial sums so that it vectorises.
#[inline(always)]
fn lane_sum(a: &[f64], b: &[f64], term: impl Fn(f64, f64) -> f64) -> f64 {
    let mut partial = [0.0; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| term(x, y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            partial[lane] += term(x[lane], y[lane]);
        }
    }
    partial.iter().sum::<f64>() + tail
}

#[inline(always)]
fn dot_kernel(a: &[f64], b: &[f64]) -> f64 {
    lane_sum(a, b, |x, y| x * y)
}

#[inline(always)]
fn squared_distance_kernel(a: &[f64], b: &[f64]) -> f64 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

#[inline(always)]
fn dots_kernel(v: &[f64], a: &[f64], b: &[f64], c: &[f64]) -> [f64; 3] {
    let mut partial = [[0.0; LANES]; 3];
    let full = v.len() / LANES * LANES;
    let chunks = v[..full]
        .chunks_exact(LANES)
        .zip(a[..full].chunks_exact(LANES))
        .zip(
            b[..full]
                .chunks_exact(LANES)
                .zip(c[..full].chunks_exact(LANES)),
        );
    for ((v, a), (b, c)) in chunks {
        for lane in 0..LANES {
            partial[0][lane] += v[lane] * a[lane];
            partial[1][lane] += v[lane] * b[lane];
            partial[2][lane] += v[lane] * c[lane];
        }
    }
    let mut out = partial.map(|p| p.iter().sum::<f64>());
    for i in full..v.len() {
        out[0] += v[i] * a[i];
        out[1] += v[i] * b[i];
        out[2] += v[i] * c[i];
    }
    out
}

#[inline(always)]
fn combine_kernel(out: &mut [f64], offset: usize, vectors: &[&[f64]], coef: &[f64]) {
    for (tile_index, tile) in out.chunks_mut(TILE).enumerate() {
        let start = offset + tile_index * TILE;
        let end = start + tile.len();
        tile.fill(0.0);
        for (v, &c) in vectors.iter().zip(coef) {
            tile.iter_mut()
                .zip(&v[start..end])
                .for_each(|(o, x)| *o += c * x);
        }
    }
}

#[inline(always)]
fn add_scaled_kernel(out: &mut [f64], a: &[f64], alpha: f64, b: &[f64]) {
    out.iter_mut()
        .zip(a.iter().zip(b))
        .for_each(|(o, (x, y))| *o = x + alpha * y);
}

/// `a . b`
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    if a.len() < PARALLEL_LENGTH {
        return dot_chunk(a, b);
    }
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(a, b)| dot_chunk(a, b))
        .sum()
}

/// `||a - b||^2`, on one thread (for vectors of a few thousand entries, called many times).
pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "squared_distance: lengths differ");
    squared_distance_chunk(a, b)
}

/// `(v . a, v . b, v . c)` in one pass over the four vectors.
pub fn dots(v: &[f64], a: &[f64], b: &[f64], c: &[f64]) -> [f64; 3] {
    let n = v.len();
    assert!(
        a.len() == n && b.len() == n && c.len() == n,
        "dots: lengths differ"
    );
    let add = |x: [f64; 3], y: [f64; 3]| [x[0] + y[0], x[1] + y[1], x[2] + y[2]];
    if n < PARALLEL_LENGTH {
        return dots_chunk(v, a, b, c);
    }
    (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|index| {
            let range = index * CHUNK..((index + 1) * CHUNK).min(n);
            dots_chunk(
                &v[range.clone()],
                &a[range.clone()],
                &b[range.clone()],
                &c[range],
            )
        })
        .reduce(|| [0.0; 3], add)
}

/// `out = sum_j coef_j vectors_j`, tile by tile so that each output tile stays in cache while the
/// inputs stream past once.
pub fn linear_combination_into(out: &mut [f64], vectors: &[&[f64]], coef: &[f64]) {
    assert_eq!(vectors.len(), coef.len(), "one coefficient per vector");
    assert!(
        vectors.iter().all(|v| v.len() == out.len()),
        "linear_combination: lengths differ"
    );
    if out.len() < PARALLEL_LENGTH {
        combine_chunk(out, 0, vectors, coef);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(index, out)| combine_chunk(out, index * CHUNK, vectors, coef));
    }
}

/// `out = a + alpha b`
pub fn add_scaled_into(out: &mut [f64], a: &[f64], alpha: f64, b: &[f64]) {
    assert!(
        a.len() == out.len() && b.len() == out.len(),
        "add_scaled: lengths differ"
    );
    if out.len() < PARALLEL_LENGTH {
        return add_scaled_chunk(out, a, alpha, b);
    }
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| add_scaled_chunk(out, a, alpha, b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, rng: &mut impl Rng) -> Vec<f64> {
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Every kernel against a plain loop, on lengths below, at and above the thread split
    /// and with tails that are not a multiple of the lane count.
    #[test]
    fn kernels_match_plain_loops() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for n in [0, 1, 7, 8, 1000, PARALLEL_LENGTH, 3 * PARALLEL_LENGTH + 13] {
            let [v, a, b, c] = [0; 4].map(|_| random(n, &mut rng));
            let plain = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + y.abs());
            assert!(close(dot(&a, &b), plain(&a, &b)), "dot, n = {n}");
            let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            let distance = squared_distance(&a, &b);
            assert!(close(distance, plain(&diff, &diff)), "distance, n = {n}");
            let got = dots(&v, &a, &b, &c);
            for (got, want) in got
                .iter()
                .zip([plain(&v, &a), plain(&v, &b), plain(&v, &c)])
            {
                assert!(close(*got, want), "dots, n = {n}");
            }
            let mut combination = vec![f64::NAN; n];
            linear_combination_into(&mut combination, &[&a, &b, &c], &[2.0, -0.5, 3.0]);
            let mut scaled = vec![f64::NAN; n];
            add_scaled_into(&mut scaled, &a, -0.25, &b);
            for i in 0..n {
                let want = 2.0 * a[i] - 0.5 * b[i] + 3.0 * c[i];
                assert!((combination[i] - want).abs() <= 1e-14 * (1.0 + want.abs()));
                assert_eq!(scaled[i], a[i] - 0.25 * b[i]);
            }
        }
    }
}
