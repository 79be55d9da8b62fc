//! Everything phase 2 needs, derived once from the phase-1 means: the functionals applied
//! to each centred sample, the nearest-class-centre geometry, the classifier's decision
//! routes and the class-level metrics.

use super::convention::{Convention, GlobalMean, Nc4Bias, PinvCutoff, WeightCentring};
use super::decisions::{ExactLogitError, F32Logits, OffsetRows, ProjectedLogits};
use super::geometry::{truncated_basis, ClassLevel, Spectrum};
use super::scatter::ScatterAccumulator;
use super::tiles::tile;
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
    /// The classifier's decisions (`accuracy`, and `nc4` unless the next one exists).
    pub(super) decider: Option<Decider>,
    /// The decisions of W without its bias, when the convention's `nc4` compares those
    /// and the bias is not zero.
    pub(super) nc4_decider: Option<Decider>,
    /// The metric convention of the numbers this plan gives.
    pub(super) convention: Convention,
    /// Functionals applied to each centred sample c = h - mu_y, as rows (m x d): U^T
    /// (r rows), Q^T (r_q rows) only when the NCC reference means differ from the
    /// file's own (otherwise Q = U), and the convention's NC1 directions only when they
    /// are not the first rows of U^T.
    pub(super) functionals: Mat<f64>,
    /// r, the number of rows of U^T (the directions of M kept by the specification's
    /// cutoff), which the projected decisions read.
    pub(super) basis_rank: usize,
    /// The rows of the NC1 projections among the functional outputs.
    pub(super) nc1_rows: std::ops::Range<usize>,
    /// 1 / s_j^2 for the singular values of M whose directions NC1 keeps (by the
    /// convention's centring and pseudo-inverse rule).
    pub(super) inv_sq_singular: Vec<f64>,
    /// The rows of the Q-projections q = Q^T c among the functional outputs.
    pub(super) ncc_rows: std::ops::Range<usize>,
    /// c_k = Q^T (m_k - m_G): reference means in Q-coordinates, K x r_q (row k = class k).
    pub(super) ncc_coords: Mat<f64>,
    /// a_y = Q^T (mu_y - m_G), K x r_q, when it is not c_y (reference means other than
    /// the data's own); read through [`PlanData::ncc_anchor`].
    pub(super) ncc_other_anchor: Option<Mat<f64>>,
    /// ||c_k||^2 per class.
    pub(super) ncc_coords_sq: Vec<f64>,
    pub(super) class_level: ClassLevel,
}

impl PlanData {
    /// a_y = Q^T (mu_y - m_G) as rows, K x r_q.
    pub(super) fn ncc_anchor(&self) -> faer::MatRef<'_, f64> {
        self.ncc_other_anchor
            .as_ref()
            .unwrap_or(&self.ncc_coords)
            .as_ref()
    }

    /// The rank of Sigma_B kept by the convention's cutoff (the number of NC1 projections).
    pub(super) fn sigma_b_rank(&self) -> usize {
        self.inv_sq_singular.len()
    }
}

/// One classifier's decision routes: argmax_k (W h + b)_k, exactly as the f64 logits
/// W (h - mu_y) + (W mu_y + b) give it.
pub(super) struct Decider {
    pub(super) classifier: Classifier,
    /// (W mu_y + b)_k for every class y when K <= [`super::tiles::TILE`]; above that each block computes
    /// the rows it needs.
    pub(super) logit_offsets: Option<OffsetRows>,
    /// The exact path's error bound, the route from the projections (only where r < d:
    /// elsewhere it cannot cost less than a logit product), and the route from f32 logits
    /// (used for f32 features).
    pub(super) logit_error: Option<ExactLogitError>,
    pub(super) projected_logits: Option<ProjectedLogits>,
    pub(super) f32_logits: Option<F32Logits>,
    /// Wc (K x d row-major), kept only where the projected route computes its offset rows
    /// block by block (K above [`super::tiles::TILE`]).
    pub(super) centred_weight: Option<Vec<f64>>,
}

impl Decider {
    /// `centred_weight`: Wc of `classifier`; `basis`: U (d x r) of the own means.
    fn new(
        classifier: &Classifier,
        centred_weight: &[f64],
        own: &ClassMeans,
        basis: faer::MatRef<'_, f64>,
    ) -> Self {
        let logit_error = ExactLogitError::new(classifier, own);
        let projected_logits = logit_error
            .as_ref()
            .filter(|_| basis.ncols() < own.dim())
            .and_then(|errors| {
                ProjectedLogits::new(classifier, centred_weight, own, basis, errors)
            });
        let centred_weight = projected_logits
            .as_ref()
            .filter(|projected| projected.offsets.is_none())
            .map(|_| centred_weight.to_vec());
        Self {
            centred_weight,
            logit_offsets: (own.num_classes() <= tile())
                .then(|| OffsetRows::all(own.means(), classifier.weight(), classifier.bias())),
            f32_logits: F32Logits::new(classifier),
            logit_error,
            projected_logits,
            classifier: classifier.clone(),
        }
    }
}

/// The nearest-class-centre rule in the truncated singular basis Q of its reference means
/// m_k (Q = U when those are the data's own means).
struct NccGeometry {
    /// Q when the reference means are not the data's own.
    reference_basis: Option<Mat<f64>>,
    /// c_k = Q^T (m_k - m_G), K x r_q (row k = class k).
    coords: Mat<f64>,
    /// a_y = Q^T (mu_y - m_G), K x r_q, when the reference means are not the data's own
    /// (else a_y = c_y).
    anchor: Option<Mat<f64>>,
    /// ||c_k||^2 per class.
    coords_sq: Vec<f64>,
}

impl NccGeometry {
    /// `reference`: `None` for the data's own means, whose basis `own_basis` is and whose
    /// centred form `own_centred` is.
    fn new(
        own: &ClassMeans,
        own_centred: &Mat<f64>,
        reference: Option<&ClassMeans>,
        own_basis: &Mat<f64>,
    ) -> Result<Self> {
        let k = own.num_classes();
        let (reference_basis, coords, anchor) = match reference {
            None => (
                None,
                product(own_centred.transpose(), own_basis.as_ref(), Par::Seq),
                None,
            ),
            Some(reference) => {
                let centred = reference.centred();
                let basis = truncated_basis(&centred)?.basis;
                let coords = product(centred.transpose(), basis.as_ref(), Par::Seq);
                drop(centred);
                let reference_mean = reference.global_mean();
                let own_vs_ref =
                    Mat::from_fn(own.dim(), k, |i, y| own.mean(y)[i] - reference_mean[i]);
                let anchor = product(own_vs_ref.transpose(), basis.as_ref(), Par::Seq);
                (Some(basis), coords, Some(anchor))
            }
        };
        let coords_sq = (0..k)
            .map(|c| (0..coords.ncols()).map(|j| coords[(c, j)].powi(2)).sum())
            .collect();
        Ok(Self {
            reference_basis,
            coords,
            anchor,
            coords_sq,
        })
    }
}

impl MetricsPlan {
    /// `own`: the phase-1 means of the data being measured. `reference`: the class means the
    /// NCC rule (`nc4`, `ncc_accuracy`) compares with, e.g. the training split's for a test
    /// split; `None` uses `own`. The numbers are the specification's ([`Convention::NCLAB`]).
    pub fn new(
        own: &ClassMeans,
        classifier: Option<&Classifier>,
        reference: Option<&ClassMeans>,
    ) -> Result<Self> {
        Self::with_convention(own, classifier, reference, &Convention::NCLAB)
    }

    /// As [`Self::new`], with the formulas of `convention`.
    pub fn with_convention(
        own: &ClassMeans,
        classifier: Option<&Classifier>,
        reference: Option<&ClassMeans>,
        convention: &Convention,
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
        // The convention's global mean, and the means centred on it where that differs.
        let global_mean = match convention.global_mean {
            GlobalMean::Samples => own.global_mean().to_vec(),
            GlobalMean::ClassMeans => own.mean_of_class_means(),
        };
        let recentred = (global_mean != own.global_mean())
            .then(|| Mat::from_fn(d, k, |i, c| own.mean(c)[i] - global_mean[i]));
        // Wc, read by the projected decisions and (centred convention) the classifier geometry.
        let centred_weight = classifier.map(Classifier::centred_weight);
        let with_centred_weight = classifier.zip(centred_weight.as_deref());
        let geometry_weight = match convention.weight {
            WeightCentring::Centred => with_centred_weight,
            WeightCentring::Raw => classifier.map(|clf| (clf, clf.weight())),
        };
        let (own_spectrum, class_level) = rayon::join(
            || Spectrum::new(&centred),
            || {
                let m = recentred.as_ref().unwrap_or(&centred);
                ClassLevel::new(own, m, &global_mean, geometry_weight, convention)
            },
        );
        let own_spectrum = own_spectrum?;
        let own_kept = own_spectrum.kept(PinvCutoff::Nclab, k);
        let own_basis = own_spectrum.subspace(&own_kept);
        let r = own_kept.len();
        // NC1's directions: the convention's rule on the spectrum of its centred means.
        let recentred_spectrum = recentred.as_ref().map(Spectrum::new).transpose()?;
        let nc1_spectrum = recentred_spectrum.as_ref().unwrap_or(&own_spectrum);
        let nc1_kept = nc1_spectrum.kept(convention.pinv, k);
        let nc1_shares_rows = recentred_spectrum.is_none() && own_kept.starts_with(&nc1_kept);
        let nc1 = nc1_spectrum.subspace(&nc1_kept);

        let same_reference = reference.is_none_or(|r| std::ptr::eq(r, own));
        let basis = own_basis.basis.as_ref();
        let (ncc, (decider, nc4_decider)) = rayon::join(
            || {
                NccGeometry::new(
                    own,
                    &centred,
                    reference.filter(|_| !same_reference),
                    &own_basis.basis,
                )
            },
            || {
                let decider = with_centred_weight
                    .map(|(clf, centred_weight)| Decider::new(clf, centred_weight, own, basis));
                // W without its bias; its centred rows are the same Wc.
                let nc4_decider = with_centred_weight
                    .filter(|(clf, _)| {
                        convention.nc4_bias == Nc4Bias::Without
                            && clf.bias().iter().any(|&b| b != 0.0)
                    })
                    .map(|(clf, centred_weight)| {
                        let unbiased = Classifier::new(k, d, clf.weight().to_vec(), None)
                            .expect("the shape of a valid classifier");
                        Decider::new(&unbiased, centred_weight, own, basis)
                    });
                (decider, nc4_decider)
            },
        );
        let NccGeometry {
            reference_basis: ref_basis,
            coords: ncc_coords,
            anchor: ncc_other_anchor,
            coords_sq: ncc_coords_sq,
        } = ncc?;
        let q = ref_basis.as_ref().unwrap_or(&own_basis.basis).as_ref();

        let ncc_extra = ref_basis.as_ref().map_or(0, |b| b.ncols());
        let nc1_extra = if nc1_shares_rows { 0 } else { nc1_kept.len() };
        let functionals = Mat::from_fn(r + ncc_extra + nc1_extra, d, |row, i| {
            if row < r {
                own_basis.basis[(i, row)]
            } else if row < r + ncc_extra {
                q[(i, row - r)]
            } else {
                nc1.basis[(i, row - r - ncc_extra)]
            }
        });
        let ncc_rows = if same_reference {
            0..r
        } else {
            r..r + ncc_extra
        };
        let nc1_rows = if nc1_shares_rows {
            0..nc1_kept.len()
        } else {
            r + ncc_extra..r + ncc_extra + nc1_extra
        };
        let data = PlanData {
            num_classes: k,
            dim: d,
            own_means: own.means().to_vec(),
            own_counts: own.counts().map(<[u64]>::to_vec),
            decider,
            nc4_decider,
            convention: *convention,
            functionals,
            basis_rank: r,
            nc1_rows,
            inv_sq_singular: nc1.singular_values.iter().map(|s| 1.0 / (s * s)).collect(),
            ncc_rows,
            ncc_coords,
            ncc_other_anchor,
            ncc_coords_sq,
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

    /// The rank of Sigma_B kept by the convention's cutoff.
    pub fn sigma_b_rank(&self) -> usize {
        self.data.sigma_b_rank()
    }

    /// The convention of this plan's numbers.
    pub fn convention(&self) -> &Convention {
        &self.data.convention
    }

    pub(super) fn data(&self) -> &PlanData {
        &self.data
    }

    /// Whether `other` is this plan or a clone of it.
    pub(super) fn is(&self, other: &MetricsPlan) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
}
