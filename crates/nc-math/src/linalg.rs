//! Small dense kernels shared across the crate, each with one home so that every caller
//! rounds the same way: the faer matrix products, the in-order inner product and the
//! element-wise accumulation.
//!
//! Every faer product goes through [`multiply`], which clears the upper halves of the
//! vector registers afterwards (see [`clear_upper_vector_state`]).

use faer::traits::ComplexField;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// `out = a b` (`Accum::Replace`) or `out += a b` (`Accum::Add`), then
/// [`clear_upper_vector_state`] on every thread that may have run the product.
pub(crate) fn multiply<T: ComplexField>(
    out: MatMut<'_, T>,
    accum: Accum,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    par: Par,
) {
    faer::linalg::matmul::matmul(out, accum, a, b, T::one_impl(), par);
    clear_upper_vector_state();
    if !matches!(par, Par::Seq) {
        rayon::broadcast(|_| clear_upper_vector_state());
    }
}

/// Executes `vzeroupper` on x86-64 CPUs with AVX; nothing elsewhere.
///
/// faer's AVX-512 kernels return with the upper halves of the vector registers in use.
/// Until they are cleared, every SSE instruction pays a state-transition penalty on some
/// CPUs, and SSE is what all code built for the default x86-64 target uses, libm's `exp`
/// included: on the 2-core AMD EPYC of bench/ufm/README.md one `exp` took 220 ns after a faer
/// product instead of 7 ns, which made the softmax of the UFM objective 55% of a solve.
#[inline]
pub(crate) fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX, checked just above. `vzeroupper` only zeroes bits
        // 128 and up of the vector registers, which no SSE code has live.
        unsafe { std::arch::x86_64::_mm256_zeroupper() }
    }
}

/// a b, a fresh matrix.
pub(crate) fn product(a: MatRef<'_, f64>, b: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.ncols());
    multiply(out.as_mut(), Accum::Replace, a, b, par);
    out
}

/// `out` = a b on this thread, reusing `out`'s memory when it already has the right shape
/// (the buffers of a streaming pass, one product per block of samples).
pub(crate) fn product_into<T: ComplexField>(out: &mut Mat<T>, a: MatRef<'_, T>, b: MatRef<'_, T>) {
    if (out.nrows(), out.ncols()) != (a.nrows(), b.ncols()) {
        *out = Mat::zeros(a.nrows(), b.ncols());
    }
    multiply(out.as_mut(), Accum::Replace, a, b, Par::Seq);
}

/// `a . b` as one running sum from the first term to the last: the rounding of a plain
/// loop, for short vectors and for results that must not change with the CPU. (The
/// lane-sum kernel [`crate::vector::dot`] rounds differently, in its last bits.)
pub(crate) fn dot_in_order(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len(), "dot_in_order: lengths differ");
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `acc += other`, element by element.
pub(crate) fn add_into<T: Copy + std::ops::AddAssign>(acc: &mut [T], other: &[T]) {
    for (a, &b) in acc.iter_mut().zip(other) {
        *a += b;
    }
}
