//! Evaluation: loss and accuracy of a split, and its features through the metrics engine.
//!
//! The features of the **un-augmented** samples are computed without autodiff (the model's
//! `valid()` copy, BatchNorm on running statistics). They go through `nc_math::metrics`'s
//! two-phase accumulator: class means first (`MeanAccumulator`), then the scatter pass
//! (`MetricsPlan::accumulator`). When N x d floats fit in `memory_limit` bytes the features are
//! kept in memory and both phases read them; otherwise the model runs twice over the data.
//! No d x d matrix is formed anywhere.
//!
//! With watched layers (`nc_layers`), the same forward pass returns every watched layer's
//! activations, and each feeds its own pair of accumulators (without a classifier; the test
//! split's NCC rule uses that layer's training class means); the last layer is the
//! penultimate features, whose metrics are the split's own.
use burn::prelude::*;
use nc_math::metrics::{
    ClassMeans, Classifier, Convention, MeanAccumulator, MetricsPlan, NcMetrics,
};

use crate::data::{make_batch, Normalization};
use crate::error::{Result, TrainError};
use crate::layers::LayerInfo;
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
    /// The watched layers' results, in the order of the request's layers (empty when the
    /// split's metrics were not computed).
    pub layers: Vec<LayerEval>,
}

/// The NC metrics of one watched layer on one split.
#[derive(Clone, Debug)]
pub struct LayerEval {
    pub layer: LayerInfo,
    /// The metrics engine's result on the layer's features without a classifier (its
    /// classifier keys are None); for the last layer, the split's own metrics (the keys
    /// that need no classifier are the same either way).
    pub metrics: Option<NcMetrics>,
    /// The layer's class means.
    pub means: Option<ClassMeans>,
    /// N x d_i features, kept when asked; None for the last layer, whose features are the
    /// split's [`SplitEval::features`].
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
    /// The watched layers (none: the penultimate features only); measured with the metrics.
    pub layers: &'a [LayerInfo],
    /// The index of the last layer (the penultimate features).
    pub last_layer: usize,
    /// The training split's layer results, whose class means the test split's NCC rule
    /// uses at each layer (empty for the training split).
    pub reference_layers: &'a [LayerEval],
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
            layers: vec![],
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
    let layers: &[LayerInfo] = if req.metrics { req.layers } else { &[] };
    let inner: Vec<&LayerInfo> = layers
        .iter()
        .filter(|l| l.index != req.last_layer)
        .collect();
    let inner_idx: Vec<usize> = inner.iter().map(|l| l.index).collect();
    let row_floats = d + inner.iter().map(|l| l.dim).sum::<usize>();
    let in_memory =
        req.keep_features || n.saturating_mul(row_floats).saturating_mul(4) <= req.memory_limit;
    let [c, h, w] = req.samples.shape;

    let mut loss_sum = 0f64;
    let mut correct = 0usize;
    let mut kept: Vec<f32> = if in_memory {
        Vec::with_capacity(n * d)
    } else {
        Vec::new()
    };
    let mut mean_acc = MeanAccumulator::new(k, d);
    let mut layer_acc: Vec<MeanAccumulator> = inner
        .iter()
        .map(|l| MeanAccumulator::new(k, l.dim))
        .collect();
    let mut layer_kept: Vec<Vec<f32>> = inner
        .iter()
        .map(|l| {
            if in_memory {
                Vec::with_capacity(n * l.dim)
            } else {
                Vec::new()
            }
        })
        .collect();
    let (mut xb, mut yb) = (Vec::new(), Vec::new());

    // Pass 1: loss, accuracy, class means (and the features if they fit).
    for chunk in req.indices.chunks(req.batch_size) {
        make_batch(req.samples, chunk, req.norm, None, &mut xb, &mut yb);
        let b = chunk.len();
        let x = Tensor::<4>::from_data(TensorData::new(xb.clone(), [b, c, h, w]), device);
        let (acts, feat, logits) = model.forward_watched(x, &inner_idx);
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
        for (j, act) in acts.into_iter().enumerate() {
            let f = layer_host(act, inner[j], b)?;
            layer_acc[j].add_batch::<f32>(&f, &yb)?;
            if in_memory {
                layer_kept[j].extend_from_slice(&f);
            }
        }
    }
    let mut out = SplitEval {
        loss: loss_sum / n as f64,
        accuracy: correct as f64 / n as f64,
        metrics: None,
        means: None,
        features: None,
        layers: vec![],
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
        // Each inner layer's plan: no classifier, the training means of that layer as the
        // NCC means of a test split.
        let mut layer_means = Vec::with_capacity(inner.len());
        let mut layer_sc = Vec::with_capacity(inner.len());
        for (acc, l) in layer_acc.into_iter().zip(&inner) {
            let m = acc.finish()?;
            let reference = req
                .reference_layers
                .iter()
                .find(|r| r.layer.index == l.index)
                .and_then(|r| r.means.as_ref());
            let plan = MetricsPlan::with_convention(&m, None, reference, &req.convention)?;
            layer_sc.push(plan.accumulator());
            layer_means.push(m);
        }
        if in_memory {
            let labels: Vec<u32> = req.indices.iter().map(|&i| req.samples.labels[i]).collect();
            let rows = 4096;
            for (fchunk, lchunk) in kept.chunks(rows * d).zip(labels.chunks(rows)) {
                sc.add_batch::<f32>(fchunk, lchunk)?;
            }
            for ((acc, f), l) in layer_sc.iter_mut().zip(&layer_kept).zip(&inner) {
                for (fchunk, lchunk) in f.chunks(rows * l.dim).zip(labels.chunks(rows)) {
                    acc.add_batch::<f32>(fchunk, lchunk)?;
                }
            }
        } else {
            // Pass 2: recompute the features batch by batch.
            for chunk in req.indices.chunks(req.batch_size) {
                make_batch(req.samples, chunk, req.norm, None, &mut xb, &mut yb);
                let x = Tensor::<4>::from_data(
                    TensorData::new(xb.clone(), [chunk.len(), c, h, w]),
                    device,
                );
                if inner.is_empty() {
                    let f: Vec<f32> = crate::host_f32(model.features(x));
                    sc.add_batch::<f32>(&f, &yb)?;
                } else {
                    let (acts, feat, _) = model.forward_watched(x, &inner_idx);
                    let f: Vec<f32> = crate::host_f32(feat);
                    sc.add_batch::<f32>(&f, &yb)?;
                    for (j, act) in acts.into_iter().enumerate() {
                        let f = layer_host(act, inner[j], chunk.len())?;
                        layer_sc[j].add_batch::<f32>(&f, &yb)?;
                    }
                }
            }
        }
        out.metrics = Some(sc.finish()?);
        out.means = Some(means);
        let mut inner_results = layer_sc
            .into_iter()
            .zip(layer_means)
            .zip(layer_kept)
            .map(|((acc, m), f)| -> Result<_> { Ok((acc.finish()?, m, f)) })
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        for l in layers {
            if l.index == req.last_layer {
                out.layers.push(LayerEval {
                    layer: l.clone(),
                    metrics: out.metrics.clone(),
                    means: out.means.clone(),
                    features: None,
                });
            } else {
                let (metrics, means, f) = inner_results.next().expect("one result per layer");
                out.layers.push(LayerEval {
                    layer: l.clone(),
                    metrics: Some(metrics),
                    means: Some(means),
                    features: req.keep_features.then_some(f),
                });
            }
        }
    }
    if req.keep_features {
        out.features = Some(kept);
    }
    Ok(out)
}

/// A watched layer's activations (b x d_i) on the host, checked against the layer's size.
fn layer_host(act: Tensor<2>, layer: &LayerInfo, b: usize) -> Result<Vec<f32>> {
    let dims = act.dims();
    if dims != [b, layer.dim] {
        return Err(TrainError::InvalidData(format!(
            "layer {} ({}) gave activations of shape {dims:?}, expected [{b}, {}]",
            layer.index, layer.name, layer.dim
        )));
    }
    Ok(crate::host_f32(act))
}
