//! Everything phase 2 needs, derived once from the phase-1 means: the functionals applied
//! to each centred sample, the nearest-class-centre geometry, the classifier's decision
//! routes and the class-level metrics.

use super::decisions::{logit_offsets, ExactLogitError, F32Logits, ProjectedLogits};
use super::geometry::{truncated_basis, ClassLevel};
use super::scatter::ScatterAccumulator;
use super::{ClassMeans, Classifier};
use crate::linalg::product;
use crate::{Error, Result};
use faer::{Mat, Par};
use std::sync::Arc;

/// Everything phase 2 needs, derived once from the phase-1 means (and optionally a
/// classifier and the reference means of the NCC rule). Cloning is cheap (the data is
/// shared, behind an [`Arc`]), and every phase-2 accumulator holds a clone: accumulators
/// own what they need, and can move to other threads.
#[derive(Clone)]
pub struct MetricsPlan {
    data: Arc<PlanData>,
}

/// The plan's data, shared by the plan and its accumulators.
pub(super) struct PlanData {
    pub(super) num_classes: usize,
    pub(super) dim: usize,
    pub(super) own_means: Vec<f64>,
    pub(super) own_counts: Option<Vec<u64>>,
    pub(super) classifier: Option<Classifier>,
    /// Functionals applied to each centred sample c = h - mu_y, as rows (m x d): U^T
    /// (r rows), and Q^T (r_q rows) only when the NCC reference means differ from the
    /// file's own (otherwise Q = U).
    pub(super) functionals: Mat<f64>,
    /// 1 / s_j^2 for the r kept singular values of M.
    pub(super) inv_sq_singular: Vec<f64>,
    /// (W mu_y + b)_k, K x K row-major (y, k).
    pub(super) logit_offset: Vec<f64>,
    /// The classifier's decisions: the exact path's error bound, the route from the
    /// projections (only where r < d: elsewhere it cannot cost less than a logit
    /// product), and the route from f32 logits (used for f32 features); all exist only
    /// with a classifier.
    pub(super) logit_error: Option<ExactLogitError>,
    pub(super) projected_logits: Option<ProjectedLogits>,
    pub(super) f32_logits: Option<F32Logits>,
    /// The rows of the Q-projections q = Q^T c among the functional outputs.
    pub(super) ncc_rows: std::ops::Range<usize>,
    /// c_k = Q^T (m_k - m_G): reference means in Q-coordinates, K x r_q (row k = class k).
    pub(super) ncc_coords: Mat<f64>,
    /// a_y = Q^T (mu_y - m_G), K x r_q row-major.
    pub(super) ncc_anchor: Vec<f64>,
    /// ||a_y - c_k||^2, K x K row-major (y, k).
    pub(super) ncc_offset: Vec<f64>,
    pub(super) class_level: ClassLevel,
}

impl PlanData {
    /// r, the rank of Sigma_B kept by the cutoff (the number of NC1 projections).
    pub(super) fn sigma_b_rank(&self) -> usize {
        self.inv_sq_singular.len()
    }
}

/// The nearest-class-centre rule in the truncated singular basis Q of its reference means
/// m_k (Q = U when those are the data's own means).
struct NccGeometry {
    /// Q when the reference means are not the data's own.
    reference_basis: Option<Mat<f64>>,
    /// c_k = Q^T (m_k - m_G), K x r_q (row k = class k).
    coords: Mat<f64>,
    /// a_y = Q^T (mu_y - m_G), K x r_q row-major.
    anchor: Vec<f64>,
    /// ||a_y - c_k||^2, K x K row-major (y, k).
    offset: Vec<f64>,
}

impl NccGeometry {
    /// `reference`: `None` for the data's own means, whose basis `own_basis` is.
    fn new(own: &ClassMeans, reference: Option<&ClassMeans>, own_basis: &Mat<f64>) -> Result<Self> {
        let k = own.num_classes();
        let reference_basis = match reference {
            Some(r) => Some(truncated_basis(&r.centred())?.basis),
            None => None,
        };
        let reference = reference.unwrap_or(own);
        let q = reference_basis.as_ref().unwrap_or(own_basis).as_ref();
        let coords = product(reference.centred().transpose(), q, Par::Seq);
        let reference_mean = reference.global_mean();
        let own_vs_ref = Mat::from_fn(own.dim(), k, |i, y| own.mean(y)[i] - reference_mean[i]);
        let anchor = product(own_vs_ref.transpose(), q, Par::Seq);
        let rq = q.ncols();
        let mut offset = vec![0.0; k * k];
        for y in 0..k {
            for c in 0..k {
                offset[y * k + c] = (0..rq)
                    .map(|j| (anchor[(y, j)] - coords[(c, j)]).powi(2))
                    .sum();
            }
        }
        let anchor = (0..k)
            .flat_map(|y| (0..rq).map(move |j| (y, j)))
            .map(|(y, j)| anchor[(y, j)])
            .collect();
        Ok(Self {
            reference_basis,
            coords,
            anchor,
            offset,
        })
    }
}

impl MetricsPlan {
    /// `own`: the phase-1 means of the data being measured. `reference`: the class means the
    /// NCC rule (`nc4`, `ncc_accuracy`) compares with, e.g. the training split's for a test
    /// split; `None` uses `own`.
    pub fn new(
        own: &ClassMeans,
        classifier: Option<&Classifier>,
        reference: Option<&ClassMeans>,
    ) -> Result<Self> {
        let (k, d) = (own.num_classes(), own.dim());
        if k < 2 {
            return Err(Error::TooFewClasses(k));
        }
        // `what` names the input and agrees with its verb ("the classifier is").
        let fits = |what: &str, shape: (usize, usize)| {
            if shape == (k, d) {
                return Ok(());
            }
            Err(Error::Mismatch(format!(
                "the {what} {} x {}, but the features have {k} classes of dimension {d}",
                shape.0, shape.1
            )))
        };
        if let Some(clf) = classifier {
            fits("classifier is", (clf.num_classes(), clf.dim()))?;
        }
        if let Some(r) = reference {
            fits("reference means are", (r.num_classes(), r.dim()))?;
        }
        let centred = own.centred();
        // Wc, read by the classifier geometry and by the projected decisions.
        let centred_weight = classifier.map(Classifier::centred_weight);
        let with_centred_weight = classifier.zip(centred_weight.as_deref());
        let (own_basis, class_level) = rayon::join(
            || truncated_basis(&centred),
            || ClassLevel::new(own, &centred, with_centred_weight),
        );
        let own_basis = own_basis?;
        let r = own_basis.singular_values.len();

        let same_reference = reference.is_none_or(|r| std::ptr::eq(r, own));
        let logit_error = classifier.and_then(|clf| ExactLogitError::new(clf, own));
        let (ncc, projected_logits) = rayon::join(
            || NccGeometry::new(own, reference.filter(|_| !same_reference), &own_basis.basis),
            || {
                let (clf, centred_weight) = with_centred_weight.filter(|_| r < d)?;
                ProjectedLogits::new(
                    clf,
                    centred_weight,
                    own,
                    own_basis.basis.as_ref(),
                    logit_error.as_ref()?,
                )
            },
        );
        let NccGeometry {
            reference_basis: ref_basis,
            coords: ncc_coords,
            anchor: ncc_anchor,
            offset: ncc_offset,
        } = ncc?;
        let q = ref_basis.as_ref().unwrap_or(&own_basis.basis).as_ref();

        let extra_rows = ref_basis.as_ref().map_or(0, |b| b.ncols());
        let functionals = Mat::from_fn(r + extra_rows, d, |row, i| {
            if row < r {
                own_basis.basis[(i, row)]
            } else {
                q[(i, row - r)]
            }
        });
        let ncc_rows = if same_reference {
            0..r
        } else {
            r..r + extra_rows
        };
        let logit_offset = match classifier {
            None => Vec::new(),
            Some(clf) => logit_offsets(own, clf.weight(), clf.bias()),
        };
        let data = PlanData {
            f32_logits: classifier.and_then(F32Logits::new),
            logit_error,
            projected_logits,
            num_classes: k,
            dim: d,
            own_means: own.means().to_vec(),
            own_counts: own.counts().map(<[u64]>::to_vec),
            classifier: classifier.cloned(),
            functionals,
            inv_sq_singular: own_basis
                .singular_values
                .iter()
                .map(|s| 1.0 / (s * s))
                .collect(),
            logit_offset,
            ncc_rows,
            ncc_coords,
            ncc_anchor,
            ncc_offset,
            class_level,
        };
        Ok(Self {
            data: Arc::new(data),
        })
    }

    /// A fresh phase-2 accumulator for this plan (it holds a clone of the plan).
    pub fn accumulator(&self) -> ScatterAccumulator {
        ScatterAccumulator::new(self.clone())
    }

    /// The rank of Sigma_B kept by the cutoff.
    pub fn sigma_b_rank(&self) -> usize {
        self.data.sigma_b_rank()
    }

    pub(super) fn data(&self) -> &PlanData {
        &self.data
    }

    /// Whether `other` is this plan or a clone of it.
    pub(super) fn is(&self, other: &MetricsPlan) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}
