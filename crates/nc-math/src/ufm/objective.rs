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
use crate::loss::Loss;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Below this many multiply-adds per product, threads cost more than they save.
const PARALLEL_FLOPS: usize = 1 << 20;

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

    fn parallelism(&self) -> Par {
        if self.classes * self.dim * self.samples() >= PARALLEL_FLOPS {
            Par::rayon(0)
        } else {
            Par::Seq
        }
    }

    /// Logits `Z = W H + b 1^T` (K x N, column-major: one sample's logits contiguous).
    fn logits(&self, x: &[f64]) -> Vec<f64> {
        let (k, n) = (self.classes, self.samples());
        let blocks = self.blocks(x);
        let mut z = vec![0.0; k * n];
        matmul(
            MatMut::from_column_major_slice_mut(&mut z, k, n),
            Accum::Replace,
            blocks.w,
            blocks.h,
            1.0,
            self.parallelism(),
        );
        z.par_chunks_exact_mut(k).for_each(|column| {
            column
                .iter_mut()
                .zip(blocks.b)
                .for_each(|(zj, bj)| *zj += bj)
        });
        z
    }

    /// `lW/2 ||W||^2 + lH/2 ||H||^2 + lb/2 ||b||^2`
    fn regulariser(&self, x: &[f64]) -> f64 {
        let (w_len, h_len) = (self.classes * self.dim, self.dim * self.samples());
        let squares = |s: &[f64]| s.par_iter().map(|v| v * v).sum::<f64>();
        0.5 * (self.lambda_w * squares(&x[..w_len])
            + self.lambda_h * squares(&x[w_len..w_len + h_len])
            + self.lambda_b * squares(&x[w_len + h_len..]))
    }

    /// Adds `lambda * x` blockwise to `out` (the regulariser's gradient, or its Hessian
    /// applied to `x`).
    fn add_regulariser_gradient(&self, x: &[f64], out: &mut [f64]) {
        let (w_len, h_len) = (self.classes * self.dim, self.dim * self.samples());
        out.par_iter_mut()
            .zip(x.par_iter())
            .enumerate()
            .for_each(|(i, (o, v))| {
                let lambda = if i < w_len {
                    self.lambda_w
                } else if i < w_len + h_len {
                    self.lambda_h
                } else {
                    self.lambda_b
                };
                *o += lambda * v;
            });
    }

    /// `f(x)`.
    pub fn value(&self, x: &[f64]) -> f64 {
        let k = self.classes;
        let z = self.logits(x);
        let loss: f64 = z
            .par_chunks_exact(k)
            .enumerate()
            .map(|(i, column)| self.loss.value(column, self.label(i)))
            .sum();
        loss / self.samples() as f64 + self.regulariser(x)
    }

    /// Writes `dL/dZ / N` (K x N) over `z` in place and returns the mean loss.
    fn loss_gradient_in_place(&self, z: &mut [f64]) -> f64 {
        let k = self.classes;
        let inv_n = 1.0 / self.samples() as f64;
        let total: f64 = z
            .par_chunks_exact_mut(k)
            .enumerate()
            .map_init(
                || vec![0.0; k],
                |grad, (i, column)| {
                    let value = self.loss.value_grad(column, self.label(i), grad);
                    for (c, g) in column.iter_mut().zip(grad.iter()) {
                        *c = g * inv_n;
                    }
                    value
                },
            )
            .sum();
        total * inv_n
    }

    /// `grad f = (G H^T + lW W, W^T G + lH H, G 1 + lb b)` with `G = dL/dZ / N`; returns `f(x)`.
    pub fn value_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let (k, n) = (self.classes, self.samples());
        let mut g = self.logits(x);
        let loss = self.loss_gradient_in_place(&mut g);
        let g = MatRef::from_column_major_slice(&g, k, n);
        self.backpropagate(x, g, grad);
        self.add_regulariser_gradient(x, grad);
        loss + self.regulariser(x)
    }

    /// Writes `(G H^T, W^T G, G 1)` to `out`: the loss part of the gradient for a given
    /// `G = dL/dZ` (K x N).
    fn backpropagate(&self, x: &[f64], g: MatRef<'_, f64>, out: &mut [f64]) {
        let par = self.parallelism();
        let blocks = self.blocks(x);
        let out = self.blocks_mut(out);
        matmul(out.w, Accum::Replace, g, blocks.h.transpose(), 1.0, par);
        matmul(out.h, Accum::Replace, blocks.w.transpose(), g, 1.0, par);
        row_sums(g, out.b);
    }

    /// Exact Hessian-vector product `out = (d^2 f / dx^2) v`. With `dZ = dW H + W dH + db 1^T`
    /// and `dG_i = (d^2 L / dz^2)(z_i) dZ_i / N`:
    /// `out = (dG H^T + G dH^T + lW dW, dW^T G + W^T dG + lH dH, dG 1 + lb db)`.
    pub fn hvp(&self, x: &[f64], v: &[f64], out: &mut [f64]) {
        let (k, n) = (self.classes, self.samples());
        let par = self.parallelism();
        let inv_n = 1.0 / n as f64;
        let at = self.blocks(x);
        let dir = self.blocks(v);

        let z = self.logits(x);
        // dZ = dW H + W dH + db 1^T
        let mut dz = vec![0.0; k * n];
        {
            let mut dz_mat = MatMut::from_column_major_slice_mut(&mut dz, k, n);
            matmul(dz_mat.as_mut(), Accum::Replace, dir.w, at.h, 1.0, par);
            matmul(dz_mat.as_mut(), Accum::Add, at.w, dir.h, 1.0, par);
        }
        // Per sample: G_i = grad L(z_i) / N and dG_i = Hess L(z_i) dZ_i / N (dZ_i + db in place).
        let mut g = vec![0.0; k * n];
        g.par_chunks_exact_mut(k)
            .zip(dz.par_chunks_exact_mut(k))
            .zip(z.par_chunks_exact(k))
            .enumerate()
            .for_each_init(
                || vec![0.0; k],
                |scratch, (i, ((g_col, dz_col), z_col))| {
                    let label = self.label(i);
                    self.loss.value_grad(z_col, label, g_col);
                    g_col.iter_mut().for_each(|gj| *gj *= inv_n);
                    dz_col
                        .iter_mut()
                        .zip(dir.b)
                        .for_each(|(dzj, dbj)| *dzj += dbj);
                    self.loss.hvp(z_col, label, dz_col, scratch);
                    dz_col
                        .iter_mut()
                        .zip(scratch.iter())
                        .for_each(|(dzj, hj)| *dzj = hj * inv_n);
                },
            );
        let g = MatRef::from_column_major_slice(&g, k, n);
        let dg = MatRef::from_column_major_slice(&dz, k, n);

        // The dG terms, as in the gradient.
        self.backpropagate(x, dg, out);
        // The G terms: G dH^T into the W block, dW^T G into the H block.
        let out_blocks = self.blocks_mut(out);
        matmul(out_blocks.w, Accum::Add, g, dir.h.transpose(), 1.0, par);
        matmul(out_blocks.h, Accum::Add, dir.w.transpose(), g, 1.0, par);
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

/// `out_k = sum_i m[k, i]`.
fn row_sums(m: MatRef<'_, f64>, out: &mut [f64]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for col in 0..m.ncols() {
        for (row, o) in out.iter_mut().enumerate() {
            *o += m[(row, col)];
        }
    }
}

#[cfg(test)]
mod tests;
