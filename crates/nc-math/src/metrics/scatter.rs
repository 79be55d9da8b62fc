//! Phase 2: the projected within-class scatter, per-class variances and the decision
//! rules, accumulated over batches of the same data phase 1 saw.

use super::batch::{blocks_per_piece, check_batch, BLOCK_ROWS};
use super::convention::{CdnvVariance, Nc1Scale, Nc4Form};
use super::decisions::{argmin, deviation_norm_bound, OffsetRows};
use super::element::Feature;
use super::plan::{Decider, MetricsPlan, PlanData};
use super::NcMetrics;
use crate::linalg::{add_into, dot_in_order, product_into};
use crate::{Error, Result};
use faer::{Mat, MatRef};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The mergeable numeric state of phase 2: what a [`ScatterAccumulator`] has summed so far.
/// Serialisable (the f64 sums as their exact bit patterns), so that a pass can stop and
/// resume ([`ScatterAccumulator::state`], [`ScatterAccumulator::from_state`]) and shards
/// can be merged wherever they meet ([`ScatterAccumulator::merge_state`]). It belongs to
/// the plan it was accumulated with: resume and merge it only with that plan, or one
/// rebuilt from the same means (as [`super::MeanAccumulator::finish`] gives them from a
/// phase-1 state), classifier and reference means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScatterState {
    /// Samples per class (their sum is the rows seen).
    class_counts: Vec<u64>,
    /// sum_i (u_j^T (h_i - mu_{y_i}))^2 for each kept direction j.
    #[serde(with = "super::exact_f64")]
    projected_sq: Vec<f64>,
    /// sum over class k of ||h - mu_k||^2.
    #[serde(with = "super::exact_f64")]
    deviation_sq: Vec<f64>,
    correct: u64,
    ncc_correct: u64,
    ncc_mismatch: u64,
    /// Samples whose classifier decision came from the projections (no logit product).
    decided_by_projection: u64,
}

impl ScatterState {
    fn new(plan: &PlanData) -> Self {
        Self {
            class_counts: vec![0; plan.num_classes],
            projected_sq: vec![0.0; plan.sigma_b_rank()],
            deviation_sq: vec![0.0; plan.num_classes],
            correct: 0,
            ncc_correct: 0,
            ncc_mismatch: 0,
            decided_by_projection: 0,
        }
    }

    /// The rows added so far, over all batches.
    pub fn rows_seen(&self) -> u64 {
        self.class_counts.iter().sum()
    }

    /// A state from its numbers, as read from a format outside serde (the partial-state
    /// bytes of `nc_data::partial_state`); the order of `counters` is that of
    /// [`Self::counters`]. Refused when the per-class vectors differ in length, a sum is
    /// negative or not finite, or a counter exceeds the rows the class counts add up to.
    pub fn from_parts(
        class_counts: Vec<u64>,
        projected_sq: Vec<f64>,
        deviation_sq: Vec<f64>,
        counters: [u64; 4],
    ) -> Result<Self> {
        if class_counts.len() != deviation_sq.len() {
            return Err(Error::Mismatch(format!(
                "a phase-2 state needs one variance sum per class: {} class counts, {} sums",
                class_counts.len(),
                deviation_sq.len()
            )));
        }
        if let Some(bad) = projected_sq
            .iter()
            .chain(&deviation_sq)
            .find(|v| !(v.is_finite() && **v >= 0.0))
        {
            return Err(Error::InvalidArgument(format!(
                "a phase-2 state holds the sum of squares {bad}, expected finite and >= 0"
            )));
        }
        let rows = class_counts
            .iter()
            .try_fold(0u64, |n, &c| n.checked_add(c))
            .ok_or_else(|| Error::Mismatch("the class counts overflow u64".into()))?;
        if let Some(&bad) = counters.iter().find(|&&c| c > rows) {
            return Err(Error::Mismatch(format!(
                "a phase-2 state counts {bad} decisions over only {rows} samples"
            )));
        }
        let [correct, ncc_correct, ncc_mismatch, decided_by_projection] = counters;
        Ok(Self {
            class_counts,
            projected_sq,
            deviation_sq,
            correct,
            ncc_correct,
            ncc_mismatch,
            decided_by_projection,
        })
    }

    /// Samples per class (K).
    pub fn class_counts(&self) -> &[u64] {
        &self.class_counts
    }

    /// sum_i (u_j^T (h_i - mu_{y_i}))^2 for each kept direction j (r values).
    pub fn projected_sq(&self) -> &[f64] {
        &self.projected_sq
    }

    /// sum over class k of ||h - mu_k||^2 (K values).
    pub fn deviation_sq(&self) -> &[f64] {
        &self.deviation_sq
    }

    /// The decision counters: [classifier correct, NCC correct, classifier != NCC,
    /// decided from the projections].
    pub fn counters(&self) -> [u64; 4] {
        [
            self.correct,
            self.ncc_correct,
            self.ncc_mismatch,
            self.decided_by_projection,
        ]
    }

    /// Adds a shard's state to this one, without a plan (e.g. where states from several
    /// processes meet before any plan exists there); an error unless the shapes are equal.
    /// Whether both belong to the same plan is for the caller to know (see the type's
    /// documentation).
    pub fn merge(&mut self, other: &ScatterState) -> Result<()> {
        let shape = |s: &ScatterState| (s.class_counts.len(), s.projected_sq.len());
        if shape(self) != shape(other) {
            return Err(Error::Mismatch(format!(
                "cannot merge a phase-2 state of K={} and rank {} into one of K={} and rank {}",
                shape(other).0,
                shape(other).1,
                shape(self).0,
                shape(self).1
            )));
        }
        self.add(other);
        Ok(())
    }

    /// `Ok` when the state has the shapes of `plan`'s states.
    fn check_shape(&self, plan: &PlanData) -> Result<()> {
        let expected = (plan.num_classes, plan.sigma_b_rank(), plan.num_classes);
        let got = (
            self.class_counts.len(),
            self.projected_sq.len(),
            self.deviation_sq.len(),
        );
        if got != expected {
            return Err(Error::Mismatch(format!(
                "a phase-2 state with {} class counts, {} projections and {} variances does not \
                 fit a plan with K={} and rank {}",
                got.0, got.1, got.2, expected.0, expected.1
            )));
        }
        Ok(())
    }

    /// Adds `other`'s sums and counts to this state's (same shapes).
    fn add(&mut self, other: &ScatterState) {
        add_into(&mut self.class_counts, &other.class_counts);
        add_into(&mut self.projected_sq, &other.projected_sq);
        add_into(&mut self.deviation_sq, &other.deviation_sq);
        self.correct += other.correct;
        self.ncc_correct += other.ncc_correct;
        self.ncc_mismatch += other.ncc_mismatch;
        self.decided_by_projection += other.decided_by_projection;
    }

    /// Processes at most `BLOCK_ROWS` samples: one f64 matrix product for the projections
    /// (NC1, the NCC rule and most classifier decisions), and one logit product for the
    /// samples whose decision the projections cannot prove.
    fn add_block<T: Feature>(
        &mut self,
        plan: &PlanData,
        features: &[T],
        labels: &[u32],
        scratch: &mut Scratch,
    ) {
        let (k, d, rows) = (plan.num_classes, plan.dim, labels.len());
        scratch.centred.clear();
        scratch.deviations.clear();
        for (row, &y) in features.chunks_exact(d).zip(labels) {
            let y = y as usize;
            let mean = &plan.own_means[y * d..(y + 1) * d];
            let start = scratch.centred.len();
            let centred = &mut scratch.centred;
            centred.extend(row.iter().zip(mean).map(|(&h, &mu)| h.to_f64() - mu));
            let deviation_sq = crate::vector::dot(&centred[start..], &centred[start..]);
            self.deviation_sq[y] += deviation_sq;
            self.class_counts[y] += 1;
            scratch
                .deviations
                .push(deviation_norm_bound(deviation_sq, d));
        }
        let centred_t = MatRef::from_column_major_slice(&scratch.centred, d, rows);
        let outputs = &mut scratch.outputs;
        product_into(outputs, plan.functionals.as_ref(), centred_t);
        // z = q + a_y = Q^T (h - m_G) per sample, then z.c_k for every class: (K x r_q) (r_q x rows).
        let ncc_rows = plan.ncc_rows.clone();
        let rq = ncc_rows.len();
        let shifted = &mut scratch.ncc_shifted;
        if (shifted.nrows(), shifted.ncols()) != (rq, rows) {
            *shifted = Mat::zeros(rq, rows);
        }
        let anchor = plan.ncc_anchor();
        for (i, &y) in labels.iter().enumerate() {
            let q = &outputs.col_as_slice(i)[ncc_rows.clone()];
            for (j, (z, &q)) in shifted.col_as_slice_mut(i).iter_mut().zip(q).enumerate() {
                *z = q + anchor[(y as usize, j)];
            }
        }
        product_into(
            &mut scratch.ncc_dots,
            plan.ncc_coords.as_ref(),
            shifted.as_ref(),
        );

        let nc1_rows = plan.nc1_rows.clone();
        scratch.ncc_decisions.clear();
        for (i, &y) in labels.iter().enumerate() {
            let out = outputs.col_as_slice(i);
            for (acc, &p) in self.projected_sq.iter_mut().zip(&out[nc1_rows.clone()]) {
                *acc += p * p;
            }
            // Squared NCC distance up to a k-independent term:
            // ||z - c_k||^2 - ||z||^2 = ||c_k||^2 - 2 z.c_k.
            let dots = scratch.ncc_dots.col_as_slice(i);
            let distances = (0..k).map(|c| plan.ncc_coords_sq[c] - 2.0 * dots[c]);
            let ncc = argmin(distances.enumerate());
            if ncc == y as usize {
                self.ncc_correct += 1;
            }
            scratch.ncc_decisions.push(ncc);
        }
        if let Some(decider) = &plan.decider {
            let mut decisions = std::mem::take(&mut scratch.decisions);
            self.decided_by_projection +=
                classify(plan, decider, features, labels, scratch, &mut decisions);
            for (&predicted, &y) in decisions.iter().zip(labels) {
                if predicted == y as usize {
                    self.correct += 1;
                }
            }
            // nc4 compares the NCC rule with these decisions, or with those of W alone.
            let mut unbiased = std::mem::take(&mut scratch.nc4_decisions);
            if let Some(nc4_decider) = &plan.nc4_decider {
                classify(plan, nc4_decider, features, labels, scratch, &mut unbiased);
            }
            let compared = if plan.nc4_decider.is_some() {
                &unbiased
            } else {
                &decisions
            };
            for (&predicted, &ncc) in compared.iter().zip(&scratch.ncc_decisions) {
                if predicted != ncc {
                    self.ncc_mismatch += 1;
                }
            }
            scratch.decisions = decisions;
            scratch.nc4_decisions = unbiased;
        }
    }
}

/// Fills `decisions` with argmax_k (W h + b)_k of the block's samples under `decider`'s
/// classifier (the exact path's decisions): from the projections where
/// [`super::decisions::ProjectedLogits`] proves them, else from one logit product over
/// the remaining samples, in f32 under [`super::decisions::F32Logits`]' bound for f32
/// features, in f64 otherwise. Returns how many came from the projections.
fn classify<T: Feature>(
    plan: &PlanData,
    decider: &Decider,
    features: &[T],
    labels: &[u32],
    scratch: &mut Scratch,
    decisions: &mut Vec<usize>,
) -> u64 {
    {
        let (k, d, rows) = (plan.num_classes, plan.dim, labels.len());
        let classifier = &decider.classifier;
        let Scratch {
            centred,
            deviations,
            outputs,
            estimates,
            offsets,
            undecided,
            gathered,
            gathered_f32,
            logits,
            logits_f32,
            ..
        } = scratch;
        decisions.clear();
        undecided.clear();
        // Both routes need the exact path's error bound (absent only for absurd d).
        let errors = decider.logit_error.as_ref();
        let f32_logits = decider
            .f32_logits
            .as_ref()
            .zip(errors)
            .filter(|_| T::EXACT_F32);
        // The projections cost K r f64 multiply-adds per sample, the logit product K d in
        // f64 or K d in f32 at twice the speed: they are tried only where they cost less.
        let r = plan.basis_rank;
        let cheaper = f32_logits.is_none() || 2 * r < d;
        let mut from_projections = 0;
        match decider
            .projected_logits
            .as_ref()
            .zip(errors)
            .filter(|_| cheaper)
        {
            Some((projected, errors)) => {
                product_into(
                    estimates,
                    projected.coefficients.as_ref(),
                    outputs.as_ref().subrows(0, r),
                );
                let table = match &projected.offsets {
                    Some(table) => table,
                    None => {
                        let centred_weight = decider.centred_weight.as_deref().unwrap_or(&[]);
                        let classes = labels.iter().map(|&y| y as usize);
                        offsets.fill(&plan.own_means, centred_weight, classifier.bias(), classes);
                        &*offsets
                    }
                };
                for (i, &y) in labels.iter().enumerate() {
                    let y = y as usize;
                    let bound = errors.bound(errors.sample_norm(deviations[i], y), y);
                    let estimate = estimates.col_as_slice(i);
                    match projected.decide(estimate, table.row(y), y, deviations[i], bound) {
                        Some(class) => decisions.push(class),
                        None => {
                            decisions.push(usize::MAX);
                            undecided.push(i);
                        }
                    }
                }
                from_projections = (rows - undecided.len()) as u64;
            }
            None => {
                decisions.resize(rows, usize::MAX);
                undecided.extend(0..rows);
            }
        }
        if undecided.is_empty() {
            return from_projections;
        }
        let count = undecided.len();
        if let Some((f32_logits, errors)) = f32_logits {
            gathered_f32.clear();
            for &i in undecided.iter() {
                let row = &features[i * d..(i + 1) * d];
                gathered_f32.extend(row.iter().map(|&h| h.to_f32()));
            }
            product_into(
                logits_f32,
                f32_logits.weight.as_ref(),
                MatRef::from_column_major_slice(gathered_f32, d, count),
            );
            for (j, &i) in undecided.iter().enumerate() {
                let y = labels[i] as usize;
                let centred_row = &centred[i * d..(i + 1) * d];
                let mean = &plan.own_means[y * d..(y + 1) * d];
                // o_yk from the plan's table, else (large K; only for the classes the f32
                // bound cannot separate) from its own dot product.
                let offset = |c: usize| match &decider.logit_offsets {
                    Some(table) => table.row(y)[c],
                    None => dot_in_order(classifier.row(c), mean) + classifier.bias()[c],
                };
                let exact = |c: usize| dot_in_order(classifier.row(c), centred_row) + offset(c);
                decisions[i] = f32_logits.decide(
                    logits_f32.col_as_slice(j),
                    classifier.bias(),
                    errors,
                    errors.sample_norm(deviations[i], y),
                    y,
                    exact,
                );
            }
        } else {
            gathered.clear();
            for &i in undecided.iter() {
                gathered.extend_from_slice(&centred[i * d..(i + 1) * d]);
            }
            product_into(
                logits,
                MatRef::from_row_major_slice(classifier.weight(), k, d),
                MatRef::from_column_major_slice(gathered, d, count),
            );
            let table = match &decider.logit_offsets {
                Some(table) => table,
                None => {
                    let classes = undecided.iter().map(|&i| labels[i] as usize);
                    offsets.fill(
                        &plan.own_means,
                        classifier.weight(),
                        classifier.bias(),
                        classes,
                    );
                    &*offsets
                }
            };
            for (j, &i) in undecided.iter().enumerate() {
                let y = labels[i] as usize;
                let column = logits.col_as_slice(j);
                let negated = column.iter().zip(table.row(y)).map(|(z, o)| -(z + o));
                decisions[i] = argmin(negated.enumerate());
            }
        }
        from_projections
    }
}

/// Reusable buffers of one parallel piece of phase 2.
struct Scratch {
    /// Class-centred samples h - mu_y, f64, one after the other, and upper bounds on their
    /// norms.
    centred: Vec<f64>,
    deviations: Vec<f64>,
    /// Functional outputs (m x rows), the NCC coordinates z = Q^T (h - m_G) (r_q x rows)
    /// and their products with the reference means (K x rows), projected logit estimates
    /// a_k.p (K x rows), and the offset rows o_yk of the block's classes (large K only).
    outputs: Mat<f64>,
    ncc_shifted: Mat<f64>,
    ncc_dots: Mat<f64>,
    estimates: Mat<f64>,
    offsets: OffsetRows,
    /// Per sample: the NCC class, the classifier's class, and that of W without its bias
    /// (when `nc4` compares that one).
    ncc_decisions: Vec<usize>,
    decisions: Vec<usize>,
    nc4_decisions: Vec<usize>,
    /// The samples the projections cannot decide, their centred rows (f64 route) or
    /// features (f32 route), and their logits.
    undecided: Vec<usize>,
    gathered: Vec<f64>,
    gathered_f32: Vec<f32>,
    logits: Mat<f64>,
    logits_f32: Mat<f32>,
}

impl Scratch {
    /// About what one piece's buffers hold once they have grown: the K x rows products
    /// and offset rows, and the block's centred rows.
    fn bytes(plan: &PlanData) -> usize {
        8 * BLOCK_ROWS * (4 * plan.num_classes + 2 * plan.dim + plan.functionals.nrows())
    }

    fn new(num_classes: usize) -> Self {
        Self {
            centred: Vec::new(),
            deviations: Vec::new(),
            outputs: Mat::zeros(0, 0),
            ncc_shifted: Mat::zeros(0, 0),
            ncc_dots: Mat::zeros(0, 0),
            estimates: Mat::zeros(0, 0),
            offsets: OffsetRows::empty(num_classes),
            ncc_decisions: Vec::new(),
            decisions: Vec::new(),
            nc4_decisions: Vec::new(),
            undecided: Vec::new(),
            gathered: Vec::new(),
            gathered_f32: Vec::new(),
            logits: Mat::zeros(0, 0),
            logits_f32: Mat::zeros(0, 0),
        }
    }
}

/// Phase 2: the projected within-class scatter, per-class variances and the decision
/// rules, accumulated over batches of the same data phase 1 saw. It holds its plan (a
/// cheap clone), so it has no lifetime and can be sent to another thread; its numbers are
/// a [`ScatterState`], which can be taken out, stored and resumed.
pub struct ScatterAccumulator {
    plan: MetricsPlan,
    state: ScatterState,
}

impl ScatterAccumulator {
    /// A fresh accumulator (see [`MetricsPlan::accumulator`]).
    pub(super) fn new(plan: MetricsPlan) -> Self {
        let state = ScatterState::new(plan.data());
        Self { plan, state }
    }

    /// Resumes from a state taken from an accumulator of `plan` (or of a plan rebuilt from
    /// the same means, classifier and reference means; see [`ScatterState`]). An error when
    /// the state's shapes do not fit the plan.
    pub fn from_state(plan: &MetricsPlan, state: ScatterState) -> Result<Self> {
        state.check_shape(plan.data())?;
        Ok(Self {
            plan: plan.clone(),
            state,
        })
    }

    /// What has been accumulated so far: clone or serialise it to resume later.
    pub fn state(&self) -> &ScatterState {
        &self.state
    }

    /// The state, giving up the accumulator.
    pub fn into_state(self) -> ScatterState {
        self.state
    }

    pub fn plan(&self) -> &MetricsPlan {
        &self.plan
    }

    /// Adds a batch (labels.len() x d, row-major), processed in parallel blocks.
    pub fn add_batch<T: Feature>(&mut self, features: &[T], labels: &[u32]) -> Result<()> {
        let plan = self.plan.data();
        let rows_seen = self.state.rows_seen();
        check_batch(features, labels, plan.dim, plan.num_classes, rows_seen)?;
        let blank = || (ScatterState::new(plan), Scratch::new(plan.num_classes));
        let partial = features
            .par_chunks(BLOCK_ROWS * plan.dim.max(1))
            .zip(labels.par_chunks(BLOCK_ROWS))
            .with_min_len(blocks_per_piece(labels.len(), Scratch::bytes(plan)))
            .fold(blank, |(mut state, mut scratch), (block, block_labels)| {
                state.add_block(plan, block, block_labels, &mut scratch);
                (state, scratch)
            })
            .map(|(state, ..)| state)
            .reduce(
                || ScatterState::new(plan),
                |mut a, b| {
                    a.add(&b);
                    a
                },
            );
        self.state.add(&partial);
        Ok(())
    }

    /// Combines a shard's phase-2 accumulator (built from the same plan, or a clone of it)
    /// with this one.
    pub fn merge(&mut self, other: &ScatterAccumulator) -> Result<()> {
        if !self.plan.is(&other.plan) {
            return Err(Error::Mismatch(
                "phase-2 accumulators come from different plans".into(),
            ));
        }
        self.state.add(&other.state);
        Ok(())
    }

    /// Combines a shard's phase-2 state (accumulated with this plan, e.g. in another
    /// process, see [`ScatterState`]) with this accumulator's. An error when its shapes do
    /// not fit the plan.
    pub fn merge_state(&mut self, other: &ScatterState) -> Result<()> {
        other.check_shape(self.plan.data())?;
        self.state.add(other);
        Ok(())
    }

    pub fn finish(self) -> Result<NcMetrics> {
        let plan = self.plan.data();
        let state = self.state;
        let k = plan.num_classes;
        if let Some(expected) = &plan.own_counts {
            if *expected != state.class_counts {
                return Err(Error::Mismatch(format!(
                    "phase 2 saw class counts {:?}, phase 1 saw {:?}: both passes must cover the same samples",
                    state.class_counts, expected
                )));
            }
        }
        let n: u64 = state.class_counts.iter().sum();
        if n == 0 {
            return Err(Error::InvalidArgument("phase 2 saw no samples".into()));
        }
        let nf = n as f64;
        let convention = &plan.convention;
        // tr(Sigma_W Sigma_B^+) / K = sum_j u_j^T Sigma_W u_j / s_j^2.
        let nc1_per_class: f64 = state
            .projected_sq
            .iter()
            .zip(&plan.inv_sq_singular)
            .map(|(sq, inv)| sq / nf * inv)
            .sum();
        let nc1 = match convention.nc1_scale {
            Nc1Scale::PerClass => nc1_per_class,
            Nc1Scale::Total => nc1_per_class * k as f64,
        };
        let variance: Vec<f64> = state
            .deviation_sq
            .iter()
            .zip(&state.class_counts)
            .map(|(sq, &c)| match convention.cdnv_variance {
                _ if c == 0 => 0.0,
                CdnvVariance::Population => sq / c as f64,
                // One sample has no sample variance: 0/0, as the numpy formula gives.
                CdnvVariance::Sample => sq / (c - 1) as f64,
            })
            .collect();
        let nc4 = |mismatch: u64| match convention.nc4 {
            Nc4Form::Mismatch => mismatch as f64 / nf,
            Nc4Form::Agreement => (n - mismatch) as f64 / nf,
        };
        let level = &plan.class_level;
        let cdnv_sum = if level.coincident_means {
            // Some term is inf or 0/0: the pairs themselves give which.
            let mean = |c: usize| &plan.own_means[c * plan.dim..(c + 1) * plan.dim];
            let mut sum = 0.0;
            for a in 0..k {
                for b in a + 1..k {
                    let distance = crate::vector::squared_distance(mean(a), mean(b));
                    sum += (variance[a] + variance[b]) / (2.0 * distance);
                }
            }
            sum
        } else {
            variance
                .iter()
                .zip(&level.inverse_distance_sums)
                .map(|(v, c)| v * c)
                .sum()
        };
        let trace_sigma_w = state.deviation_sq.iter().sum::<f64>() / nf;
        let clf = level.classifier.as_ref();
        let fraction = |count: u64| count as f64 / nf;
        Ok(NcMetrics {
            nc1,
            nc2: clf.map(|c| c.nc2),
            nc3: clf.map(|c| c.nc3),
            nc4: clf.map(|_| nc4(state.ncc_mismatch)),
            bias_relation: clf.map(|c| c.bias_relation),
            accuracy: clf.map(|_| fraction(state.correct)),
            ncc_accuracy: fraction(state.ncc_correct),
            equinorm_w: clf.map(|c| c.equinorm_w),
            equinorm_h: level.equinorm_h,
            equiangle_w: clf.map(|c| c.equiangle_w),
            equiangle_h: level.equiangle_h,
            nc2_means: level.nc2_means,
            cdnv: cdnv_sum / (k * (k - 1) / 2) as f64,
            nc1_trace_ratio: Some(trace_sigma_w / level.trace_sigma_b),
            gnc2_log_h: Some(level.gnc2_log_h),
            gnc2_riesz_h: Some(level.gnc2_riesz_h),
            gnc2_log_w: clf.map(|c| c.gnc2_log_w),
            gnc2_riesz_w: clf.map(|c| c.gnc2_riesz_w),
            gnc3: clf.map(|c| c.gnc3),
            gnc2_margin_w: clf.map(|c| c.gnc2_margin_w),
            num_samples: n,
            num_classes: k,
            dim: plan.dim,
            sigma_b_rank: plan.sigma_b_rank(),
            convention: plan.convention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ClassMeans, Classifier, MeanAccumulator};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// The paths of many classes (K above the tile side: offset rows per block, Gram
    /// metrics over several tiles, per-row reductions in stripes) give the numbers of one
    /// tile: the same decisions exactly, every other metric to 1e-12. Shapes that take each
    /// decision route: f64 features with r < d (projections, then f64 logits), f32
    /// features with 2r < d (projections, then f32 logits), r = d (logits only); with and
    /// without the bias in nc4 and with other reference means.
    #[test]
    fn many_class_paths_give_the_numbers_of_one_tile() {
        use crate::metrics::tiles::with_tile;
        use crate::metrics::Convention;
        let mut rng = StdRng::seed_from_u64(21);
        for (k, d, spread) in [(5, 12, 3.0), (9, 6, 1.0), (7, 40, 0.2)] {
            let mut normal = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
            let centres: Vec<f64> = (0..k * d).map(|_| normal(2.0)).collect();
            let weight: Vec<f64> = centres.iter().map(|&c| c + normal(0.5)).collect();
            let bias: Vec<f64> = (0..k).map(|_| normal(0.3)).collect();
            let labels: Vec<u32> = (0..k * 30)
                .map(|i| (((i * 37 + 11) % 101) % k) as u32)
                .collect();
            let features: Vec<f64> = labels
                .iter()
                .flat_map(|&y| (0..d).map(move |i| (y as usize, i)))
                .map(|(y, i)| centres[y * d + i] + normal(spread))
                .collect();
            let as_f32: Vec<f32> = features.iter().map(|&x| x as f32).collect();
            let reference: Vec<f64> = centres.iter().map(|&c| c + normal(0.4)).collect();
            let reference = ClassMeans::from_means(k, d, reference).unwrap();
            let clf = Classifier::new(k, d, weight, Some(bias)).unwrap();
            let mut means = MeanAccumulator::new(k, d);
            means.add_batch(&features, &labels).unwrap();
            let means = means.finish().unwrap();
            let conventions: [Convention; 2] = [
                Convention::NCLAB,
                "zhu2021+nc4-bias=without,global-mean=class-means"
                    .parse()
                    .unwrap(),
            ];
            for convention in conventions {
                for reference in [None, Some(&reference)] {
                    let run = |side: usize, f32_features: bool| {
                        with_tile(side, || {
                            let plan = MetricsPlan::with_convention(
                                &means,
                                Some(&clf),
                                reference,
                                &convention,
                            )
                            .unwrap();
                            let mut scatter = plan.accumulator();
                            if f32_features {
                                scatter.add_batch(&as_f32, &labels).unwrap();
                            } else {
                                scatter.add_batch(&features, &labels).unwrap();
                            }
                            let counters = scatter.state().counters();
                            (scatter.finish().unwrap(), counters)
                        })
                    };
                    for f32_features in [false, true] {
                        let (whole, whole_counts) = run(1024, f32_features);
                        // Which routes ran: the projections decide some samples where r < d.
                        let projected = whole_counts[3] > 0;
                        assert_eq!(projected, k - 1 < d, "K {k}, d {d}, f32 {f32_features}");
                        for side in [1, 2, 3] {
                            let (tiled, counts) = run(side, f32_features);
                            let case = format!(
                                "K {k}, d {d}, side {side}, f32 {f32_features}, {convention}"
                            );
                            assert_eq!(counts, whole_counts, "{case}");
                            let (a, b) = (
                                serde_json::to_value(&tiled).unwrap(),
                                serde_json::to_value(&whole).unwrap(),
                            );
                            for (key, value) in a.as_object().unwrap() {
                                match (value.as_f64(), b[key].as_f64()) {
                                    (Some(x), Some(y)) => assert!(
                                        (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                                        "{key}: {x} vs {y}, {case}"
                                    ),
                                    _ => assert_eq!(value, &b[key], "{key}, {case}"),
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Near collapse (W close to the class means, small within-class spread) the
    /// projections decide every sample, so no logit product runs; away from it (a random
    /// W, spread-out classes) they decide few. The decisions themselves are tested against brute force in
    /// tests/metrics.rs.
    #[test]
    fn projections_decide_collapsed_samples() {
        let mut rng = StdRng::seed_from_u64(5);
        let (k, d, per_class) = (6, 40, 50);
        let mut normal = |scale: f64| scale * rng.sample::<f64, _>(StandardNormal);
        let centres: Vec<f64> = (0..k * d).map(|_| normal(3.0)).collect();
        let aligned: Vec<f64> = centres.iter().map(|&c| c + normal(0.01)).collect();
        let random: Vec<f64> = (0..k * d).map(|_| normal(1.0)).collect();
        let labels: Vec<u32> = (0..k * per_class).map(|i| (i % k) as u32).collect();
        let mut sample = |spread: f64| -> Vec<f32> {
            labels
                .iter()
                .flat_map(|&y| (0..d).map(move |i| (y as usize, i)))
                .map(|(y, i)| (centres[y * d + i] + normal(spread)) as f32)
                .collect()
        };
        let (collapsed, spread_out) = (sample(0.05), sample(3.0));
        let decided = |weight: Vec<f64>, features: &[f32]| {
            let clf = Classifier::new(k, d, weight, None).unwrap();
            let mut means = MeanAccumulator::new(k, d);
            means.add_batch(features, &labels).unwrap();
            let means = means.finish().unwrap();
            let plan = MetricsPlan::new(&means, Some(&clf), None).unwrap();
            let mut scatter = plan.accumulator();
            scatter.add_batch(features, &labels).unwrap();
            let by_projection = scatter.state.decided_by_projection;
            (by_projection, scatter.finish().unwrap().accuracy)
        };
        let n = labels.len() as u64;
        assert_eq!(decided(aligned, &collapsed), (n, Some(1.0)));
        let (by_projection, _) = decided(random, &spread_out);
        assert!(by_projection < n / 2, "{by_projection} of {n}");
    }

    /// The projections are tried first unless the f32 logit product costs less (f32
    /// features with 2r >= d). With r = 3 (K = 4): at d = 4 and at d = 6 (2r = d exactly)
    /// collapsed f32 features go straight to the f32 logits, at d = 7 the projections
    /// decide them; f64 features are always decided by projection here.
    #[test]
    fn projections_are_tried_only_where_they_cost_less() {
        let k = 4;
        for (d, f32_by_projection) in [(4, false), (6, false), (7, true)] {
            // Centres 3 e_y (class 3 at -3 (e_0 + e_1 + e_2)) plus 1 in the last coordinate.
            let centre = |y: usize, j: usize| match (y, j) {
                (_, j) if j == d - 1 => 1.0,
                (3, j) if j < 3 => -3.0,
                (y, j) if y == j => 3.0,
                _ => 0.0,
            };
            let centres: Vec<f64> = (0..k * d).map(|at| centre(at / d, at % d)).collect();
            let labels: Vec<u32> = (0..40).map(|i| (i % k) as u32).collect();
            let features: Vec<f64> = labels
                .iter()
                .enumerate()
                .flat_map(|(i, &y)| {
                    let centres = &centres;
                    (0..d)
                        .map(move |j| centres[y as usize * d + j] + 1e-3 * ((i * 7 + j) % 5) as f64)
                })
                .collect();
            let as_f32: Vec<f32> = features.iter().map(|&x| x as f32).collect();
            let clf = Classifier::new(k, d, centres.clone(), None).unwrap();
            let mut means = MeanAccumulator::new(k, d);
            means.add_batch(&features, &labels).unwrap();
            let plan = MetricsPlan::new(&means.finish().unwrap(), Some(&clf), None).unwrap();
            assert_eq!(plan.data().sigma_b_rank(), 3, "d = {d}");
            let mut wide = plan.accumulator();
            wide.add_batch(&features, &labels).unwrap();
            assert_eq!(wide.state.decided_by_projection, 40, "f64, d = {d}");
            let mut narrow = plan.accumulator();
            narrow.add_batch(&as_f32, &labels).unwrap();
            let expected = if f32_by_projection { 40 } else { 0 };
            assert_eq!(narrow.state.decided_by_projection, expected, "f32, d = {d}");
            assert_eq!(wide.finish().unwrap().accuracy, Some(1.0));
            assert_eq!(narrow.finish().unwrap().accuracy, Some(1.0));
        }
    }

    /// Phase 2 on means given directly (no counts to check against): a class without
    /// samples has variance 0 in `cdnv`, and a pass that saw nothing is an error.
    #[test]
    fn given_means_allow_absent_classes_but_not_an_empty_pass() {
        let means = ClassMeans::from_means(3, 1, vec![0.0, 1.0, 3.0]).unwrap();
        let plan = MetricsPlan::new(&means, None, None).unwrap();
        let mut scatter = plan.accumulator();
        scatter.add_batch(&[-0.5, 0.5, 1.0], &[0, 0, 1]).unwrap();
        let m = scatter.finish().unwrap();
        // Variances 0.25, 0, 0; squared distances 1, 9, 4 between the means.
        let expected = (0.25 / 2.0 + 0.25 / 18.0 + 0.0) / 3.0;
        assert!(
            (m.cdnv - expected).abs() < 1e-15,
            "{} vs {expected}",
            m.cdnv
        );
        assert_eq!(m.num_samples, 3);
        assert!(matches!(
            plan.accumulator().finish(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn parts_round_trip_merge_and_bad_parts_are_refused() {
        let (k, d) = (3, 2);
        let features = [
            0.0f64, 0.0, 1.0, 0.5, 4.0, 1.0, 5.0, 0.0, 0.0, 3.0, 0.5, 4.0,
        ];
        let labels = [0, 0, 1, 1, 2, 2];
        let clf = Classifier::new(k, d, vec![-1.0, -1.0, 1.0, 0.0, 0.0, 1.0], None).unwrap();
        let mut means = MeanAccumulator::new(k, d);
        means.add_batch(&features, &labels).unwrap();
        let plan = MetricsPlan::new(&means.finish().unwrap(), Some(&clf), None).unwrap();
        let mut scatter = plan.accumulator();
        scatter.add_batch(&features, &labels).unwrap();
        let state = scatter.state().clone();
        assert_eq!(state.rows_seen(), 6);
        assert_eq!(state.class_counts(), &[2, 2, 2]);
        assert_eq!(state.projected_sq().len(), plan.sigma_b_rank());
        assert_eq!(state.deviation_sq().len(), k);
        assert_eq!(state.counters()[0], state.correct);
        assert_eq!(state.counters()[3], state.decided_by_projection);
        let back = ScatterState::from_parts(
            state.class_counts().to_vec(),
            state.projected_sq().to_vec(),
            state.deviation_sq().to_vec(),
            state.counters(),
        )
        .unwrap();
        assert_eq!(back, state);
        // Merging without a plan doubles every number.
        let mut doubled = state.clone();
        doubled.merge(&state).unwrap();
        assert_eq!(doubled.rows_seen(), 12);
        assert_eq!(doubled.projected_sq()[0], 2.0 * state.projected_sq()[0]);
        assert_eq!(doubled.counters()[1], 2 * state.counters()[1]);
        let other_rank =
            ScatterState::from_parts(vec![1; 3], vec![], vec![0.0; 3], [0; 4]).unwrap();
        assert!(doubled.merge(&other_rank).is_err());
        // Lengths that disagree, a negative or NaN sum, a counter above the rows.
        assert!(ScatterState::from_parts(vec![1; 3], vec![0.0], vec![0.0; 2], [0; 4]).is_err());
        assert!(ScatterState::from_parts(vec![1; 3], vec![-1.0], vec![0.0; 3], [0; 4]).is_err());
        assert!(
            ScatterState::from_parts(vec![1; 3], vec![f64::NAN], vec![0.0; 3], [0; 4]).is_err()
        );
        assert!(
            ScatterState::from_parts(vec![1; 3], vec![0.0], vec![0.0; 3], [0, 4, 0, 0]).is_err()
        );
    }
}
