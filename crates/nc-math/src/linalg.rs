//! Small dense kernels shared across the crate, each with one home so that every caller
//! rounds the same way: the faer matrix products, the in-order inner product and the
//! element-wise accumulation.

use faer::linalg::matmul::matmul;
use faer::traits::ComplexField;
use faer::{Accum, Mat, MatRef, Par};

/// a b, a fresh matrix.
pub(crate) fn product(a: MatRef<'_, f64>, b: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    let mut out = Mat::zeros(a.nrows(), b.ncols());
    matmul(out.as_mut(), Accum::Replace, a, b, 1.0, par);
    out
}

/// `out` = a b on this thread, reusing `out`'s memory when it already has the right shape
/// (the buffers of a streaming pass, one product per block of samples).
pub(crate) fn product_into<T: ComplexField>(out: &mut Mat<T>, a: MatRef<'_, T>, b: MatRef<'_, T>) {
    if (out.nrows(), out.ncols()) != (a.nrows(), b.ncols()) {
        *out = Mat::zeros(a.nrows(), b.ncols());
    }
    matmul(out.as_mut(), Accum::Replace, a, b, T::one_impl(), Par::Seq);
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
