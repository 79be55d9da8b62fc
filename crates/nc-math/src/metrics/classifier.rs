//! The last layer whose decisions and geometry the metrics measure.

use super::decisions::argmin;
use super::element::check_finite;
use crate::linalg::{add_into, dot_in_order};
use crate::{Error, Result};

/// The last layer: logits z = W h + b with W (K x d, row-major) and b (K).
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    num_classes: usize,
    dim: usize,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl Classifier {
    /// `weight` is K x d row-major; no `bias` means b = 0.
    pub fn new(
        num_classes: usize,
        dim: usize,
        weight: Vec<f64>,
        bias: Option<Vec<f64>>,
    ) -> Result<Self> {
        if weight.len() != num_classes * dim {
            return Err(Error::Shape {
                what: "weight",
                expected: format!("{num_classes} x {dim} = {} values", num_classes * dim),
                got: format!("{} values", weight.len()),
            });
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; num_classes]);
        if bias.len() != num_classes {
            return Err(Error::Shape {
                what: "bias",
                expected: format!("{num_classes} values (one per class)"),
                got: format!("{} values", bias.len()),
            });
        }
        check_finite("weight", &weight, dim)?;
        check_finite("bias", &bias, 1)?;
        Ok(Self {
            num_classes,
            dim,
            weight,
            bias,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// W, K x d row-major.
    pub fn weight(&self) -> &[f64] {
        &self.weight
    }

    pub fn bias(&self) -> &[f64] {
        &self.bias
    }

    /// The decision argmax_k (w_k . h + b_k) for one sample, each logit summed in order
    /// (ties and NaN logits as everywhere in the metrics: the lowest index wins, NaN never).
    pub fn predict(&self, h: &[f64]) -> usize {
        argmin((0..self.num_classes).map(|k| (k, -(dot_in_order(self.row(k), h) + self.bias[k]))))
    }

    /// w_k, the row of class k.
    pub(super) fn row(&self, k: usize) -> &[f64] {
        &self.weight[k * self.dim..(k + 1) * self.dim]
    }

    /// Wc = W minus its mean row s = (1/K) sum_k w_k, K x d row-major: the rows
    /// v_k = w_k - s of the classifier geometry (`nc2`, `nc3`, equinorm and equiangle of W)
    /// and of the projected decisions.
    pub(super) fn centred_weight(&self) -> Vec<f64> {
        let (k, d) = (self.num_classes, self.dim);
        let mut mean_row = vec![0.0; d];
        for c in 0..k {
            add_into(&mut mean_row, self.row(c));
        }
        mean_row.iter_mut().for_each(|s| *s /= k as f64);
        (0..k * d)
            .map(|at| self.weight[at] - mean_row[at % d])
            .collect()
    }
}
