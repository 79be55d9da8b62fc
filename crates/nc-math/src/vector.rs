//! Streaming kernels over long f64 vectors (the optimiser's state: 1.3 million entries for
//! the UFM with K = 100, n = 50, d = 256).
//!
//! Each kernel is split into chunks across threads and, on x86-64 CPUs with AVX2 or AVX-512
//! (detected at run time), compiled again for 256- or 512-bit vectors: the default x86-64
//! target only allows SSE2, and these loops are bound by how many bytes per cycle they move.
//! The inner products are written with AVX-512 instructions where the CPU has them (the
//! compiler shuffles rather than multiplies whole registers once a loop holds several sums);
//! every path adds the same terms in the same order, so all round identically. The sums
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
                #[target_feature(enable = "avx512f")]
                unsafe fn widest($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { widest($($arg),*) };
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

/// Lane partial sums of `(v_g . a, v_g . b, v_g . c)` for each of G vectors `v_g` over the
/// first `full` entries (a multiple of LANES): sum `l` holds the terms of the entries
/// `i = l (mod LANES)`, added in order of `i`.
type Partials<const G: usize> = [[[f64; LANES]; 3]; G];

/// [`Partials`] in plain Rust, for any target.
#[inline(always)]
fn dots_partials<const G: usize>(
    v: [&[f64]; G],
    a: &[f64],
    b: &[f64],
    c: &[f64],
    full: usize,
) -> Partials<G> {
    let mut partial = [[[0.0; LANES]; 3]; G];
    for start in (0..full).step_by(LANES) {
        let range = start..start + LANES;
        let (a, b, c) = (&a[range.clone()], &b[range.clone()], &c[range.clone()]);
        for (sums, v) in partial.iter_mut().zip(v) {
            let v = &v[range.clone()];
            for lane in 0..LANES {
                sums[0][lane] += v[lane] * a[lane];
                sums[1][lane] += v[lane] * b[lane];
                sums[2][lane] += v[lane] * c[lane];
            }
        }
    }
    partial
}

/// `(v_g . a, v_g . b, v_g . c)` for G vectors `v_g` in one pass: one core reads memory at
/// a higher rate from several streams than from one, and `a`, `b`, `c` are read once for
/// all. Every sum rounds the same way whichever kernel forms the partial sums.
fn dots_group<const G: usize>(v: [&[f64]; G], a: &[f64], b: &[f64], c: &[f64]) -> [[f64; 3]; G] {
    let n = a.len();
    debug_assert!(b.len() == n && c.len() == n && v.iter().all(|v| v.len() == n));
    let full = n / LANES * LANES;
    let partial = dots_partials_fastest(v, a, b, c, full);
    let mut out = partial.map(|sums| sums.map(|p| p.iter().sum::<f64>()));
    for i in full..n {
        for (sums, v) in out.iter_mut().zip(v) {
            sums[0] += v[i] * a[i];
            sums[1] += v[i] * b[i];
            sums[2] += v[i] * c[i];
        }
    }
    out
}

/// [`Partials`] from the widest kernel this CPU runs: the compiler turns the plain loop
/// into shuffles rather than whole-register products once it holds several sums, so
/// AVX-512 CPUs get one written with their instructions.
fn dots_partials_fastest<const G: usize>(
    v: [&[f64]; G],
    a: &[f64],
    b: &[f64],
    c: &[f64],
    full: usize,
) -> Partials<G> {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn wide<const G: usize>(
            v: [&[f64]; G],
            a: &[f64],
            b: &[f64],
            c: &[f64],
            full: usize,
        ) -> Partials<G> {
            dots_partials(v, a, b, c, full)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { avx512::dots_partials(v, a, b, c, full) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { wide(v, a, b, c, full) };
        }
    }
    dots_partials(v, a, b, c, full)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Partials, LANES};
    use std::arch::x86_64::{
        __m512d, _mm512_add_pd, _mm512_loadu_pd, _mm512_mul_pd, _mm512_setzero_pd, _mm512_storeu_pd,
    };

    /// [`super::dots_partials`] with one 8-lane register per partial sum.
    #[target_feature(enable = "avx512f")]
    pub(super) fn dots_partials<const G: usize>(
        v: [&[f64]; G],
        a: &[f64],
        b: &[f64],
        c: &[f64],
        full: usize,
    ) -> Partials<G> {
        const { assert!(LANES == 8, "one __m512d holds 8 lanes") };
        assert!(full.is_multiple_of(LANES) && [a, b, c].iter().chain(&v).all(|x| x.len() >= full));
        let mut sums = [[_mm512_setzero_pd(); 3]; G];
        for start in (0..full).step_by(LANES) {
            // SAFETY: start + LANES <= full <= the length of every slice, asserted above.
            let load = |x: &[f64]| unsafe { _mm512_loadu_pd(x.as_ptr().add(start)) };
            let (a, b, c) = (load(a), load(b), load(c));
            for (sums, v) in sums.iter_mut().zip(v) {
                let v = load(v);
                sums[0] = _mm512_add_pd(sums[0], _mm512_mul_pd(v, a));
                sums[1] = _mm512_add_pd(sums[1], _mm512_mul_pd(v, b));
                sums[2] = _mm512_add_pd(sums[2], _mm512_mul_pd(v, c));
            }
        }
        let lanes = |r: __m512d| {
            let mut out = [0.0; LANES];
            // SAFETY: `out` has room for the 8 lanes stored.
            unsafe { _mm512_storeu_pd(out.as_mut_ptr(), r) };
            out
        };
        sums.map(|three| three.map(lanes))
    }
}

/// Vectors added to an output tile in one sweep over it: several input streams at once
/// keep more reads from memory in flight than one after the other.
const COMBINE_GROUP: usize = 4;

#[inline(always)]
fn combine_kernel(out: &mut [f64], offset: usize, vectors: &[&[f64]], coef: &[f64]) {
    for (tile_index, tile) in out.chunks_mut(TILE).enumerate() {
        let start = offset + tile_index * TILE;
        let end = start + tile.len();
        tile.fill(0.0);
        // The terms are added in the order of `vectors` for every entry, in groups or not.
        let mut groups = vectors
            .chunks_exact(COMBINE_GROUP)
            .zip(coef.chunks_exact(COMBINE_GROUP));
        for (group, c) in groups.by_ref() {
            let (v0, v1, v2, v3) = (
                &group[0][start..end],
                &group[1][start..end],
                &group[2][start..end],
                &group[3][start..end],
            );
            for i in 0..tile.len() {
                tile[i] = (((tile[i] + c[0] * v0[i]) + c[1] * v1[i]) + c[2] * v2[i]) + c[3] * v3[i];
            }
        }
        let rest = vectors.len() / COMBINE_GROUP * COMBINE_GROUP;
        for (v, &c) in vectors[rest..].iter().zip(&coef[rest..]) {
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
        return dots_group([v], a, b, c)[0];
    }
    (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|index| {
            let range = index * CHUNK..((index + 1) * CHUNK).min(n);
            dots_group(
                [&v[range.clone()]],
                &a[range.clone()],
                &b[range.clone()],
                &c[range],
            )[0]
        })
        .reduce(|| [0.0; 3], add)
}

/// `(v_j . a, v_j . b, v_j . c)` for every `v_j` of `vectors`, on this thread (for chunks of
/// long vectors, one chunk per thread): the values [`dots`] gives for each `v_j` alone,
/// with the vectors read two at a time.
pub fn dots_each(vectors: &[&[f64]], a: &[f64], b: &[f64], c: &[f64]) -> Vec<[f64; 3]> {
    let n = a.len();
    assert!(
        b.len() == n && c.len() == n && vectors.iter().all(|v| v.len() == n),
        "dots_each: lengths differ"
    );
    let mut out = Vec::with_capacity(vectors.len());
    let mut pairs = vectors.chunks_exact(2);
    for pair in pairs.by_ref() {
        out.extend(dots_group([pair[0], pair[1]], a, b, c));
    }
    if let [last] = pairs.remainder() {
        out.extend(dots_group([*last], a, b, c));
    }
    out
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

    /// Every kernel this CPU can run forms the inner products' partial sums bit for bit as
    /// the plain-Rust one does, for one vector and for two at once, and `dots_each` gives
    /// what `dots` gives for each vector alone.
    #[test]
    fn inner_product_kernels_round_identically() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for n in [0, 5, LANES, 3 * LANES + 7, CHUNK + 3] {
            let [v, w, a, b, c] = [0; 5].map(|_| random(n, &mut rng));
            let full = n / LANES * LANES;
            let plain = dots_partials([&v, &w], &a, &b, &c, full);
            assert_eq!(
                dots_partials_fastest([&v, &w], &a, &b, &c, full),
                plain,
                "n = {n}"
            );
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                let wide = unsafe { avx512::dots_partials([&v, &w], &a, &b, &c, full) };
                assert_eq!(wide, plain, "AVX-512, n = {n}");
            }
            let each = dots_each(&[&v, &w, &a], &a, &b, &c);
            assert_eq!(
                each,
                vec![
                    dots(&v, &a, &b, &c),
                    dots(&w, &a, &b, &c),
                    dots(&a, &a, &b, &c)
                ]
            );
            let by_hand = |x: &[f64], y: &[f64]| {
                let mut lanes = [0.0; LANES];
                for i in 0..full {
                    lanes[i % LANES] += x[i] * y[i];
                }
                (full..n).fold(lanes.iter().sum::<f64>(), |s, i| s + x[i] * y[i])
            };
            assert_eq!(
                each[1],
                [by_hand(&w, &a), by_hand(&w, &b), by_hand(&w, &c)],
                "n = {n}"
            );
        }
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
