//! The unconstrained feature model objective, its gradient and its exact Hessian-vector
//! product.
//!
//! `f(W, H, b) = (1/N) sum_i L(W h_i + b, y_i) + lW/2 ||W||_F^2 + lH/2 ||H||_F^2 + lb/2 ||b||^2`
//! with K classes of n samples each (N = nK), W: K x d, H: d x N, b: K. Sample `i` belongs
//! to class `i / n`.
//!
//! The parameters live in one flat vector `x = [W | H | b]`, W and H column-major (so a
//! feature `h_i` is contiguous, and `H` read as row-major is the N x d feature matrix).

use crate::error::{Error, Result};
use crate::linalg::multiply;
use crate::loss::Loss;
use crate::vector::dot;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Target size (max(K, d) x columns) of one block of logits or features in the
/// sample-parallel passes: large enough for efficient products, small enough to stay in
/// cache and to give every thread several blocks.
const BLOCK_ENTRIES: usize = 1 << 15;

/// One UFM instance: the loss, the sizes and the regularisation strengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ufm {
    pub loss: Loss,
    pub classes: usize,
    pub per_class: usize,
    pub dim: usize,
    pub lambda_w: f64,
    pub lambda_h: f64,
    pub lambda_b: f64,
}

/// Something to minimise: a smooth function of a flat parameter vector.
pub trait Objective: Sync {
    /// Number of parameters.
    fn num_params(&self) -> usize;
    /// `f(x)`, writing `grad f(x)` to `grad`.
    fn value_grad(&self, x: &[f64], grad: &mut [f64]) -> f64;
}

/// Read-only views of the blocks of a parameter vector.
pub struct Blocks<'a> {
    pub w: MatRef<'a, f64>,
    pub h: MatRef<'a, f64>,
    pub b: &'a [f64],
}

/// Mutable views of the blocks of a parameter vector.
pub struct BlocksMut<'a> {
    pub w: MatMut<'a, f64>,
    pub h: MatMut<'a, f64>,
    pub b: &'a mut [f64],
}

impl Ufm {
    /// Checks the sizes (K >= 2, n >= 1, d >= 1), the loss parameters, and that every
    /// lambda is finite and non-negative.
    pub fn new(
        loss: Loss,
        classes: usize,
        per_class: usize,
        dim: usize,
        lambda_w: f64,
        lambda_h: f64,
        lambda_b: f64,
    ) -> Result<Self> {
        loss.validate()?;
        if classes < 2 {
            return Err(Error::TooFewClasses(classes));
        }
        if per_class < 1 || dim < 1 {
            return Err(Error::InvalidArgument(format!(
                "need at least 1 sample per class and dimension >= 1, got n = {per_class}, d = {dim}"
            )));
        }
        for (name, value) in [
            ("lambda_w", lambda_w),
            ("lambda_h", lambda_h),
            ("lambda_b", lambda_b),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "{name} must be finite and >= 0, got {value}"
                )));
            }
        }
        Ok(Ufm {
            loss,
            classes,
            per_class,
            dim,
            lambda_w,
            lambda_h,
            lambda_b,
        })
    }

    /// An estimate, in bytes, of what solving this instance holds at once: the variables
    /// W, H, b (P = Kd + dN + K numbers), the gradient and a few more P-vectors of the line
    /// search, `stored_pairs` curvature pairs of L-BFGS (2 P each), and three N x K logit
    /// matrices (logits, their gradient, a Hessian-vector product). `None` when it does not
    /// fit in a u64, which no machine could hold anyway.
    pub fn working_set_bytes(&self, stored_pairs: usize) -> Option<u64> {
        let (k, n, d) = (self.classes as u64, self.per_class as u64, self.dim as u64);
        let samples = k.checked_mul(n)?;
        let variables = k
            .checked_mul(d)?
            .checked_add(d.checked_mul(samples)?)?
            .checked_add(k)?;
        let vectors = (stored_pairs as u64).checked_mul(2)?.checked_add(6)?;
        let numbers = vectors
            .checked_mul(variables)?
            .checked_add(samples.checked_mul(k)?.checked_mul(3)?)?;
        numbers.checked_mul(8)
    }

    /// N = nK.
    pub fn samples(&self) -> usize {
        self.classes * self.per_class
    }

    /// Kd + dN + K.
    pub fn num_params(&self) -> usize {
        self.classes * self.dim + self.dim * self.samples() + self.classes
    }

    /// Class of sample `i`: `i / n`.
    pub fn label(&self, sample: usize) -> usize {
        sample / self.per_class
    }

    /// Labels of all N samples, as the metrics engine takes them.
    pub fn labels(&self) -> Vec<u32> {
        (0..self.samples()).map(|i| self.label(i) as u32).collect()
    }

    /// Splits `x` into W (K x d), H (d x N) and b (K).
    pub fn blocks<'a>(&self, x: &'a [f64]) -> Blocks<'a> {
        let (k, d, n) = (self.classes, self.dim, self.samples());
        assert_eq!(x.len(), self.num_params(), "parameter vector length");
        let (w, rest) = x.split_at(k * d);
        let (h, b) = rest.split_at(d * n);
        Blocks {
            w: MatRef::from_column_major_slice(w, k, d),
            h: MatRef::from_column_major_slice(h, d, n),
            b,
        }
    }

    /// Mutable version of [`Ufm::blocks`].
    pub fn blocks_mut<'a>(&self, x: &'a mut [f64]) -> BlocksMut<'a> {
        let (k, d, n) = (self.classes, self.dim, self.samples());
        assert_eq!(x.len(), self.num_params(), "parameter vector length");
        let (w, rest) = x.split_at_mut(k * d);
        let (h, b) = rest.split_at_mut(d * n);
        BlocksMut {
            w: MatMut::from_column_major_slice_mut(w, k, d),
            h: MatMut::from_column_major_slice_mut(h, d, n),
            b,
        }
    }

    /// W row-major (K x d), as the metrics engine's classifier takes it.
    pub fn weight_row_major(&self, x: &[f64]) -> Vec<f64> {
        let w = self.blocks(x).w;
        (0..self.classes)
            .flat_map(|k| (0..self.dim).map(move |j| w[(k, j)]))
            .collect()
    }

    /// Samples per block of the sample-parallel passes: every pass over the data splits
    /// the N samples into blocks of this many columns, each handled by one thread with
    /// sequential products, and sums the blocks' contributions to W and b.
    fn block_columns(&self) -> usize {
        (BLOCK_ENTRIES / self.classes.max(self.dim)).clamp(1, self.samples())
    }

    /// `lW/2 ||W||^2 + lH/2 ||H||^2 + lb/2 ||b||^2`
    fn regulariser(&self, x: &[f64]) -> f64 {
        let (w_len, h_len) = (self.classes * self.dim, self.dim * self.samples());
        let squares = |v: &[f64]| dot(v, v);
        self.penalty(
            squares(&x[..w_len]),
            squares(&x[w_len..w_len + h_len]),
            squares(&x[w_len + h_len..]),
        )
    }

    /// The regulariser from the squared norms `||W||^2`, `||H||^2`, `||b||^2`.
    fn penalty(&self, w_squares: f64, h_squares: f64, b_squares: f64) -> f64 {
        0.5 * (self.lambda_w * w_squares + self.lambda_h * h_squares + self.lambda_b * b_squares)
    }

    /// Adds `lambda * x` blockwise to `out` (the regulariser's gradient, or its Hessian
    /// applied to `x`).
    fn add_regulariser_gradient(&self, x: &[f64], out: &mut [f64]) {
        let (w_len, h_len) = (self.classes * self.dim, self.dim * self.samples());
        let (out_w, rest) = out.split_at_mut(w_len);
        let (out_h, out_b) = rest.split_at_mut(h_len);
        add_decay(out_w, &x[..w_len], self.lambda_w);
        add_decay(out_h, &x[w_len..w_len + h_len], self.lambda_h);
        add_decay(out_b, &x[w_len + h_len..], self.lambda_b);
    }

    /// The H block of a parameter vector (d x N column-major: sample after sample).
    fn features<'a>(&self, x: &'a [f64]) -> &'a [f64] {
        let w_len = self.classes * self.dim;
        &x[w_len..w_len + self.dim * self.samples()]
    }

    /// Logits `Z_B = W H_B + b 1^T` of a block of samples (K x |B|, column-major).
    fn block_logits(&self, at: &Blocks<'_>, h_block: MatRef<'_, f64>) -> Vec<f64> {
        let (k, cols) = (self.classes, h_block.ncols());
        let mut z = vec![0.0; k * cols];
        multiply(
            MatMut::from_column_major_slice_mut(&mut z, k, cols),
            Accum::Replace,
            at.w,
            h_block,
            Par::Seq,
        );
        z.chunks_exact_mut(k)
            .for_each(|column| column.iter_mut().zip(at.b).for_each(|(zj, bj)| *zj += bj));
        z
    }

    /// `f(x)`.
    pub fn value(&self, x: &[f64]) -> f64 {
        let (k, d, block) = (self.classes, self.dim, self.block_columns());
        let at = self.blocks(x);
        let loss: f64 = self
            .features(x)
            .par_chunks(d * block)
            .enumerate()
            .map(|(index, h_block)| {
                let h_block = MatRef::from_column_major_slice(h_block, d, h_block.len() / d);
                let z = self.block_logits(&at, h_block);
                z.chunks_exact(k)
                    .enumerate()
                    .map(|(i, column)| self.loss.value(column, self.label(index * block + i)))
                    .sum::<f64>()
            })
            .sum();
        loss / self.samples() as f64 + self.regulariser(x)
    }

    /// `grad f = (G H^T + lW W, W^T G + lH H, G 1 + lb b)` with `G = dL/dZ / N`; returns `f(x)`.
    /// The H part of the regulariser (almost all of the parameters) is added block by block
    /// while the block is in cache, not in separate passes over H and its gradient.
    pub fn value_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let (k, d, block) = (self.classes, self.dim, self.block_columns());
        let inv_n = 1.0 / self.samples() as f64;
        let at = self.blocks(x);
        let (grad_w, rest) = grad.split_at_mut(k * d);
        let (grad_h, grad_b) = rest.split_at_mut(d * self.samples());
        let sums = self
            .features(x)
            .par_chunks(d * block)
            .zip(grad_h.par_chunks_mut(d * block))
            .enumerate()
            .fold(
                || BlockSums::zeros(k, d),
                |mut sums, (index, (h_slice, grad_h_block))| {
                    let cols = h_slice.len() / d;
                    let h_block = MatRef::from_column_major_slice(h_slice, d, cols);
                    // G_B = dL/dZ_B / N, in place of the logits.
                    let mut g = self.block_logits(&at, h_block);
                    let mut column_grad = vec![0.0; k];
                    for (i, column) in g.chunks_exact_mut(k).enumerate() {
                        sums.loss += self.loss.value_grad(
                            column,
                            self.label(index * block + i),
                            &mut column_grad,
                        );
                        column
                            .iter_mut()
                            .zip(&column_grad)
                            .for_each(|(c, gj)| *c = gj * inv_n);
                    }
                    let g = MatRef::from_column_major_slice(&g, k, cols);
                    let sum_w = MatMut::from_column_major_slice_mut(&mut sums.w, k, d);
                    multiply(sum_w, Accum::Add, g, h_block.transpose(), Par::Seq);
                    add_row_sums(g, &mut sums.b);
                    // grad_H_B = W^T G_B + lH H_B
                    grad_h_block
                        .iter_mut()
                        .zip(h_slice)
                        .for_each(|(o, h)| *o = self.lambda_h * h);
                    sums.h_squares += dot(h_slice, h_slice);
                    let grad_h_block = MatMut::from_column_major_slice_mut(grad_h_block, d, cols);
                    multiply(grad_h_block, Accum::Add, at.w.transpose(), g, Par::Seq);
                    sums
                },
            )
            .reduce(|| BlockSums::zeros(k, d), BlockSums::merge);
        let (w, b) = (&x[..k * d], &x[k * d + d * self.samples()..]);
        grad_w.copy_from_slice(&sums.w);
        add_decay(grad_w, w, self.lambda_w);
        grad_b.copy_from_slice(&sums.b);
        add_decay(grad_b, b, self.lambda_b);
        sums.loss * inv_n + self.penalty(dot(w, w), sums.h_squares, dot(b, b))
    }

    /// Exact Hessian-vector product `out = (d^2 f / dx^2) v`. With `dZ = dW H + W dH + db 1^T`
    /// and `dG_i = (d^2 L / dz^2)(z_i) dZ_i / N`:
    /// `out = (dG H^T + G dH^T + lW dW, dW^T G + W^T dG + lH dH, dG 1 + lb db)`.
    pub fn hvp(&self, x: &[f64], v: &[f64], out: &mut [f64]) {
        let (k, d, block) = (self.classes, self.dim, self.block_columns());
        let inv_n = 1.0 / self.samples() as f64;
        let at = self.blocks(x);
        let dir = self.blocks(v);
        let (out_w, rest) = out.split_at_mut(k * d);
        let (out_h, out_b) = rest.split_at_mut(d * self.samples());
        let sums = self
            .features(x)
            .par_chunks(d * block)
            .zip(self.features(v).par_chunks(d * block))
            .zip(out_h.par_chunks_mut(d * block))
            .enumerate()
            .fold(
                || BlockSums::zeros(k, d),
                |mut sums, (index, ((h_block, dh_block), out_h_block))| {
                    let cols = h_block.len() / d;
                    let h_block = MatRef::from_column_major_slice(h_block, d, cols);
                    let dh_block = MatRef::from_column_major_slice(dh_block, d, cols);
                    let z = self.block_logits(&at, h_block);
                    // dZ_B = dW H_B + W dH_B (+ db below)
                    let mut dz = vec![0.0; k * cols];
                    let mut dz_mat = MatMut::from_column_major_slice_mut(&mut dz, k, cols);
                    multiply(dz_mat.as_mut(), Accum::Replace, dir.w, h_block, Par::Seq);
                    multiply(dz_mat.as_mut(), Accum::Add, at.w, dh_block, Par::Seq);
                    // G_B = grad L / N and dG_B = Hess L dZ_B / N, the latter in place of dZ_B.
                    let mut g = vec![0.0; k * cols];
                    let mut scratch = vec![0.0; k];
                    for (i, ((g_col, dz_col), z_col)) in g
                        .chunks_exact_mut(k)
                        .zip(dz.chunks_exact_mut(k))
                        .zip(z.chunks_exact(k))
                        .enumerate()
                    {
                        let label = self.label(index * block + i);
                        self.loss.value_grad(z_col, label, g_col);
                        g_col.iter_mut().for_each(|gj| *gj *= inv_n);
                        dz_col
                            .iter_mut()
                            .zip(dir.b)
                            .for_each(|(dzj, dbj)| *dzj += dbj);
                        self.loss.hvp(z_col, label, dz_col, &mut scratch);
                        dz_col
                            .iter_mut()
                            .zip(&scratch)
                            .for_each(|(dzj, hj)| *dzj = hj * inv_n);
                    }
                    let g = MatRef::from_column_major_slice(&g, k, cols);
                    let dg = MatRef::from_column_major_slice(&dz, k, cols);
                    let mut sum_w_mat = MatMut::from_column_major_slice_mut(&mut sums.w, k, d);
                    multiply(
                        sum_w_mat.as_mut(),
                        Accum::Add,
                        dg,
                        h_block.transpose(),
                        Par::Seq,
                    );
                    multiply(
                        sum_w_mat.as_mut(),
                        Accum::Add,
                        g,
                        dh_block.transpose(),
                        Par::Seq,
                    );
                    let mut out_h_mat = MatMut::from_column_major_slice_mut(out_h_block, d, cols);
                    multiply(
                        out_h_mat.as_mut(),
                        Accum::Replace,
                        dir.w.transpose(),
                        g,
                        Par::Seq,
                    );
                    multiply(
                        out_h_mat.as_mut(),
                        Accum::Add,
                        at.w.transpose(),
                        dg,
                        Par::Seq,
                    );
                    add_row_sums(dg, &mut sums.b);
                    sums
                },
            )
            .reduce(|| BlockSums::zeros(k, d), BlockSums::merge);
        out_w.copy_from_slice(&sums.w);
        out_b.copy_from_slice(&sums.b);
        self.add_regulariser_gradient(v, out);
    }
}

impl Objective for Ufm {
    fn num_params(&self) -> usize {
        Ufm::num_params(self)
    }

    fn value_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        Ufm::value_grad(self, x, grad)
    }
}

/// `out_k += sum_i m[k, i]`.
fn add_row_sums(m: MatRef<'_, f64>, out: &mut [f64]) {
    for col in 0..m.ncols() {
        for (row, o) in out.iter_mut().enumerate() {
            *o += m[(row, col)];
        }
    }
}

/// `out += lambda * x` (weight decay's gradient on one block).
fn add_decay(out: &mut [f64], x: &[f64], lambda: f64) {
    out.par_iter_mut()
        .zip(x.par_iter())
        .for_each(|(o, v)| *o += lambda * v)
}

/// One thread's sums over its blocks of samples: the loss, `||H_B||^2`, and the W- and
/// b-shaped gradient sums.
struct BlockSums {
    loss: f64,
    h_squares: f64,
    w: Vec<f64>,
    b: Vec<f64>,
}

impl BlockSums {
    fn zeros(classes: usize, dim: usize) -> Self {
        BlockSums {
            loss: 0.0,
            h_squares: 0.0,
            w: vec![0.0; classes * dim],
            b: vec![0.0; classes],
        }
    }

    fn merge(mut self, other: Self) -> Self {
        self.loss += other.loss;
        self.h_squares += other.h_squares;
        self.w.iter_mut().zip(&other.w).for_each(|(x, y)| *x += y);
        self.b.iter_mut().zip(&other.b).for_each(|(x, y)| *x += y);
        self
    }
}

#[cfg(test)]
mod tests;
