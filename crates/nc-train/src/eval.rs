//! Evaluation: loss and accuracy of a split, and its features through the metrics engine.
//!
//! The features of the **un-augmented** samples are computed without autodiff (the model's
//! `valid()` copy, BatchNorm on running statistics). They go through `nc_math::metrics`'s
//! two-phase accumulator: class means first (`MeanAccumulator`), then the scatter pass
//! (`MetricsPlan::accumulator`). When N x d floats fit in `memory_limit` bytes the features are
//! kept in memory and both phases read them; otherwise the model runs twice over the data.
//! No d x d matrix is formed anywhere.
use burn::prelude::*;
use nc_math::metrics::{
    ClassMeans, Classifier, Convention, MeanAccumulator, MetricsPlan, NcMetrics,
};

use crate::data::{make_batch, Normalization};
use crate::error::Result;
use crate::loss::{batch_loss, one_hot, Loss};
use crate::model::Net;
use crate::source::Samples;

/// Loss, accuracy and (optionally) NC metrics of one split.
#[derive(Clone, Debug)]
pub struct SplitEval {
    pub loss: f64,
    pub accuracy: f64,
    pub metrics: Option<NcMetrics>,
    pub means: Option<ClassMeans>,
    /// N x d features, kept when asked (for `save_features`).
    pub features: Option<Vec<f32>>,
}

/// A full evaluation of the model at one epoch: NC metrics of the (un-augmented) training
/// split and the test set (whose NC4 and NCC rule use the training class means), and loss and
/// accuracy of the validation split where there is one.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub train: SplitEval,
    /// None without a validation split.
    pub validation: Option<SplitEval>,
    pub test: SplitEval,
}

/// What to compute.
pub struct EvalRequest<'a> {
    pub samples: &'a Samples,
    pub indices: &'a [usize],
    pub norm: &'a Normalization,
    pub loss: Loss,
    pub batch_size: usize,
    /// Compute the NC metrics (needs the classifier).
    pub metrics: bool,
    /// Training class means for NC4/NCC on a test split.
    pub reference_means: Option<&'a ClassMeans>,
    /// The formulas of the metrics.
    pub convention: Convention,
    pub keep_features: bool,
    /// Bytes of features to hold in memory before switching to two passes.
    pub memory_limit: usize,
}

/// Runs `model` (a validation copy: no autodiff) over the split.
pub fn evaluate(model: &Net, device: &Device, req: &EvalRequest<'_>) -> Result<SplitEval> {
    let k = req.samples.num_classes;
    let n = req.indices.len();
    if n == 0 {
        return Ok(SplitEval {
            loss: f64::NAN,
            accuracy: f64::NAN,
            metrics: None,
            means: None,
            features: None,
        });
    }
    let d = model.head.weight.val().dims()[0];
    // The metrics need every class present; a split missing a class reports them as null.
    let mut counts = vec![0usize; k];
    for &i in req.indices {
        counts[req.samples.labels[i] as usize] += 1;
    }
    let want_metrics = req.metrics && counts.iter().all(|&c| c > 0);
    let req = &EvalRequest {
        metrics: want_metrics,
        ..*req
    };
    let in_memory = req.keep_features || n.saturating_mul(d).saturating_mul(4) <= req.memory_limit;
    let [c, h, w] = req.samples.shape;

    let mut loss_sum = 0f64;
    let mut correct = 0usize;
    let mut kept: Vec<f32> = if in_memory {
        Vec::with_capacity(n * d)
    } else {
        Vec::new()
    };
    let mut mean_acc = MeanAccumulator::new(k, d);
    let (mut xb, mut yb) = (Vec::new(), Vec::new());

    // Pass 1: loss, accuracy, class means (and the features if they fit).
    for chunk in req.indices.chunks(req.batch_size) {
        make_batch(req.samples, chunk, req.norm, None, &mut xb, &mut yb);
        let b = chunk.len();
        let x = Tensor::<4>::from_data(TensorData::new(xb.clone(), [b, c, h, w]), device);
        let (feat, logits) = model.forward(x);
        let oh = Tensor::<2>::from_data(TensorData::new(one_hot(&yb, k), [b, k]), device);
        let l: f32 = batch_loss(req.loss, logits.clone(), oh).into_scalar::<f32>();
        loss_sum += l as f64 * b as f64;
        let z: Vec<f32> = crate::host_f32(logits);
        for (i, &y) in yb.iter().enumerate() {
            let row = &z[i * k..(i + 1) * k];
            let arg = row
                .iter()
                .enumerate()
                .fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            correct += (arg == y as usize) as usize;
        }
        if req.metrics || req.keep_features {
            let f: Vec<f32> = crate::host_f32(feat);
            if req.metrics {
                mean_acc.add_batch::<f32>(&f, &yb)?;
            }
            if in_memory {
                kept.extend_from_slice(&f);
            }
        }
    }
    let mut out = SplitEval {
        loss: loss_sum / n as f64,
        accuracy: correct as f64 / n as f64,
        metrics: None,
        means: None,
        features: None,
    };
    if req.metrics {
        let means = mean_acc.finish()?;
        let clf = Classifier::new(
            k,
            d,
            model.classifier_weight(),
            Some(model.classifier_bias()),
        )?;
        let plan =
            MetricsPlan::with_convention(&means, Some(&clf), req.reference_means, &req.convention)?;
        let mut sc = plan.accumulator();
        if in_memory {
            let labels: Vec<u32> = req.indices.iter().map(|&i| req.samples.labels[i]).collect();
            let rows = 4096;
            for (fchunk, lchunk) in kept.chunks(rows * d).zip(labels.chunks(rows)) {
                sc.add_batch::<f32>(fchunk, lchunk)?;
            }
        } else {
            // Pass 2: recompute the features batch by batch.
            for chunk in req.indices.chunks(req.batch_size) {
                make_batch(req.samples, chunk, req.norm, None, &mut xb, &mut yb);
                let x = Tensor::<4>::from_data(
                    TensorData::new(xb.clone(), [chunk.len(), c, h, w]),
                    device,
                );
                let f: Vec<f32> = crate::host_f32(model.features(x));
                sc.add_batch::<f32>(&f, &yb)?;
            }
        }
        out.metrics = Some(sc.finish()?);
        out.means = Some(means);
    }
    if req.keep_features {
        out.features = Some(kept);
    }
    Ok(out)
}
