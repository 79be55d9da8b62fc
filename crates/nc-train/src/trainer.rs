//! The training loop: epochs of SGD over shuffled (and for CIFAR augmented) batches, a
//! validation pass every epoch, a full NC evaluation at epoch 0, every `eval_every` epochs and
//! at the last epoch, checkpoints after every epoch, and `--resume`.
//!
//! Reproducibility: every random choice (initialisation, split, shuffles, augmentation) comes
//! from the run's seed and the epoch number alone, and the checkpoint after epoch `e` holds the
//! model (with BatchNorm running statistics) and the optimiser's momentum buffers. A run killed
//! at any point and resumed therefore repeats the interrupted epoch exactly and writes the same
//! metrics.jsonl as an uninterrupted run (same machine, same build).
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nc_math::metrics::NcMetrics;

use crate::config::TrainConfig;
use crate::data::{
    epoch_order, first_per_class, make_batch, rng_for, stratified_split, Normalization,
};
use crate::device::{device_for, parse_device};
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, EvalRequest, SplitEval};
use crate::loss::{batch_loss, one_hot};
use crate::model::Net;
use crate::optim::{build_sgd, clip_global_norm};
use crate::run_dir::{
    csv_columns, final_tensors, read_json, read_metrics, write_json, write_metrics,
    write_safetensors, MetricsRow, RunDir, Summary,
};
use crate::source::Samples;

/// How to run (not part of the config: does not change any number).
#[derive(Default)]
pub struct RunOptions {
    /// Show a progress bar on stderr (it is hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Print one line per evaluation to stderr.
    pub log: bool,
    /// Called before every training step with (epoch, step); tests use it to kill a run.
    pub on_step: Option<Box<dyn FnMut(usize, usize)>>,
}

/// Resume state saved after every completed epoch (`checkpoints/state.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ResumeState {
    /// Last completed epoch (0 = only the initial evaluation).
    pub epoch: usize,
    pub best_epoch: Option<usize>,
    pub best_val_acc: Option<f64>,
    /// Seconds spent in training steps so far and their number.
    pub train_seconds: f64,
    pub train_steps: u64,
}

/// Everything prepared from a config: data, split, normalisation, devices.
struct Prepared {
    train: Samples,
    test: Samples,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    test_idx: Vec<usize>,
    norm: Normalization,
    device: Device,
    ad: Device,
    k: usize,
}

fn prepare(cfg: &TrainConfig) -> Result<Prepared> {
    cfg.validate()?;
    let choice = parse_device(&cfg.device)?;
    let device = device_for(choice)?;
    let (train, test) = cfg.data.load()?;
    if test.shape != train.shape {
        return Err(TrainError::Data(format!(
            "test samples have shape {:?}, training samples {:?}",
            test.shape, train.shape
        )));
    }
    let k = train.num_classes;
    let [c, h, w] = train.shape;
    cfg.model.validate(c, h, w)?;
    let pool = first_per_class(&train.labels, k, cfg.per_class);
    let (train_idx, val_idx) = if cfg.val_fraction > 0.0 {
        stratified_split(&train.labels, k, &pool, cfg.val_fraction, cfg.seed)
    } else {
        (pool, vec![])
    };
    let norm = if cfg.normalize {
        Normalization::fit(&train, &train_idx)
    } else {
        Normalization::identity(
            c,
            match train.pixels {
                crate::source::Pixels::U8(_) => 1.0 / 255.0,
                _ => 1.0,
            },
        )
    };
    let test_idx = (0..test.len()).collect();
    let ad = device.clone().autodiff();
    Ok(Prepared {
        train,
        test,
        train_idx,
        val_idx,
        test_idx,
        norm,
        device,
        ad,
        k,
    })
}

fn new_model(cfg: &TrainConfig, p: &Prepared) -> Net {
    Net::seeded(&cfg.model, p.train.shape, p.k, &p.ad, cfg.seed)
}

/// Starts a new run in `out` (which must not exist or be empty).
pub fn train(cfg: &TrainConfig, out: &Path, opts: RunOptions) -> Result<Summary> {
    let p = prepare(cfg)?;
    let dir = RunDir::create(out)?;
    write_json(&dir.config(), cfg)?;
    let model = new_model(cfg, &p);
    let optim = build_sgd(&model, &cfg.sgd);
    let state = ResumeState {
        epoch: 0,
        best_epoch: None,
        best_val_acc: None,
        train_seconds: 0.0,
        train_steps: 0,
    };
    run(cfg, &p, &dir, model, optim, state, vec![], true, opts)
}

/// Continues the run in `dir` from its last completed epoch.
pub fn resume(dir: &Path, opts: RunOptions) -> Result<Summary> {
    let dir = RunDir::open(dir)?;
    let cfg: TrainConfig = read_json(&dir.config())?;
    let p = prepare(&cfg)?;
    let model = new_model(&cfg, &p);
    let optim = build_sgd(&model, &cfg.sgd);
    if !dir.state().is_file() {
        // Killed before the first checkpoint: start over in place.
        return run(
            &cfg,
            &p,
            &dir,
            model,
            optim,
            ResumeState {
                epoch: 0,
                best_epoch: None,
                best_val_acc: None,
                train_seconds: 0.0,
                train_steps: 0,
            },
            vec![],
            true,
            opts,
        );
    }
    let state: ResumeState = read_json(&dir.state())?;
    let mp = dir.last_model(state.epoch);
    let model = model
        .try_load_file(&mp)
        .map_err(|e| TrainError::Checkpoint {
            path: mp.clone(),
            msg: e.to_string(),
        })?;
    let op = dir.last_optim(state.epoch);
    let optim = if op.is_file() {
        optim.load(&op).map_err(|e| TrainError::Checkpoint {
            path: op.clone(),
            msg: e.to_string(),
        })?
    } else {
        optim
    };
    let rows: Vec<MetricsRow> = read_metrics(&dir)?
        .into_iter()
        .filter(|r| r.epoch() <= state.epoch)
        .collect();
    run(&cfg, &p, &dir, model, optim, state, rows, false, opts)
}

fn split_req<'a>(
    cfg: &TrainConfig,
    s: &'a Samples,
    idx: &'a [usize],
    p: &'a Prepared,
    metrics: bool,
    refm: Option<&'a nc_math::metrics::ClassMeans>,
    keep: bool,
) -> EvalRequest<'a> {
    EvalRequest {
        samples: s,
        indices: idx,
        norm: &p.norm,
        loss: cfg.loss,
        batch_size: cfg.eval_batch_size,
        metrics,
        reference_means: refm,
        keep_features: keep,
        memory_limit: 1 << 30,
    }
}

/// Full evaluation of the current model: (train, val, test).
fn full_eval(
    cfg: &TrainConfig,
    p: &Prepared,
    model: &Net,
    keep: bool,
) -> Result<(SplitEval, Option<SplitEval>, SplitEval)> {
    let m = model.valid();
    let (tr, te) = train_test_eval(cfg, p, &m, keep)?;
    Ok((tr, val_eval(cfg, p, &m)?, te))
}

/// NC evaluation of the training and test splits; the test split's NCC rule uses the
/// training class means. `keep` keeps the features (for `--save-features`).
fn train_test_eval(
    cfg: &TrainConfig,
    p: &Prepared,
    m: &Net,
    keep: bool,
) -> Result<(SplitEval, SplitEval)> {
    let tr = evaluate(
        m,
        &p.device,
        &split_req(cfg, &p.train, &p.train_idx, p, true, None, keep),
    )?;
    let te = evaluate(
        m,
        &p.device,
        &split_req(
            cfg,
            &p.test,
            &p.test_idx,
            p,
            !p.test_idx.is_empty(),
            tr.means.as_ref(),
            keep,
        ),
    )?;
    Ok((tr, te))
}

/// Loss and accuracy on the validation split (no NC metrics); None without one.
fn val_eval(cfg: &TrainConfig, p: &Prepared, m: &Net) -> Result<Option<SplitEval>> {
    if p.val_idx.is_empty() {
        return Ok(None);
    }
    evaluate(
        m,
        &p.device,
        &split_req(cfg, &p.train, &p.val_idx, p, false, None, false),
    )
    .map(Some)
}

fn metric_value(m: &NcMetrics, key: &str) -> Option<f64> {
    match key {
        "nc1" => Some(m.nc1),
        "nc2" => m.nc2,
        "nc3" => m.nc3,
        "nc4" => m.nc4,
        "bias_relation" => m.bias_relation,
        "ncc_accuracy" => Some(m.ncc_accuracy),
        "equinorm_w" => m.equinorm_w,
        "equinorm_h" => Some(m.equinorm_h),
        "equiangle_w" => m.equiangle_w,
        "equiangle_h" => Some(m.equiangle_h),
        "nc2_means" => Some(m.nc2_means),
        "cdnv" => Some(m.cdnv),
        "sigma_b_rank" => Some(m.sigma_b_rank as f64),
        "num_samples" => Some(m.num_samples as f64),
        _ => None,
    }
}

fn make_row(
    epoch: usize,
    lr: f64,
    tr: &SplitEval,
    va: Option<&SplitEval>,
    te: &SplitEval,
) -> MetricsRow {
    let values = csv_columns()
        .into_iter()
        .map(|c| {
            let v = match c.as_str() {
                "epoch" => Some(epoch as f64),
                "lr" => Some(lr),
                "train_loss" => Some(tr.loss),
                "val_loss" => va.map(|v| v.loss),
                "test_loss" => Some(te.loss),
                "train_acc" => Some(tr.accuracy),
                "val_acc" => va.map(|v| v.accuracy),
                "test_acc" => Some(te.accuracy),
                other => {
                    let (split, key) = other.split_once('_').unwrap();
                    let e = if split == "train" { tr } else { te };
                    e.metrics.as_ref().and_then(|m| metric_value(m, key))
                }
            };
            (c, v.filter(|x| x.is_finite()))
        })
        .collect();
    MetricsRow { values, raw: None }
}

fn save_last(
    dir: &RunDir,
    model: &Net,
    optim: &ModuleOptimizer,
    state: &ResumeState,
) -> Result<()> {
    let e = state.epoch;
    let mp = dir.last_model(e);
    model
        .clone()
        .save_file(&mp)
        .map_err(|err| TrainError::Checkpoint {
            path: mp.clone(),
            msg: err.to_string(),
        })?;
    let op = dir.last_optim(e);
    optim.save(&op).map_err(|err| TrainError::Checkpoint {
        path: op.clone(),
        msg: err.to_string(),
    })?;
    write_json(&dir.state(), state)?;
    dir.prune_last(e);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run(
    cfg: &TrainConfig,
    p: &Prepared,
    dir: &RunDir,
    mut model: Net,
    mut optim: ModuleOptimizer,
    mut state: ResumeState,
    mut rows: Vec<MetricsRow>,
    fresh: bool,
    mut opts: RunOptions,
) -> Result<Summary> {
    let sched = cfg.schedule();
    let k = p.k;
    let [c, h, w] = p.train.shape;
    let log = opts.log;
    let mut last_eval: Option<(SplitEval, Option<SplitEval>, SplitEval)> = None;

    if fresh {
        let ev = full_eval(cfg, p, &model, false)?;
        if let Some(means) = &ev.0.means {
            // The untrained network's class geometry: `nclab compare`'s baseline.
            let values = means.means().iter().map(|&x| x as f32).collect();
            write_safetensors(
                &dir.initial_tensors(),
                &[(
                    final_tensors::INITIAL_TRAIN_CLASS_MEANS,
                    vec![k, means.dim()],
                    values,
                )],
            )?;
        }
        rows.push(make_row(0, sched.lr(1), &ev.0, ev.1.as_ref(), &ev.2));
        if log {
            eprintln!("{}", log_line(0, &ev));
        }
        write_metrics(dir, &rows)?;
        save_last(dir, &model, &optim, &state)?;
        last_eval = Some(ev);
    }

    let steps_per_epoch = p.train_idx.len().div_ceil(cfg.batch_size);
    let (mut xb, mut yb) = (Vec::new(), Vec::new());
    for epoch in state.epoch + 1..=cfg.epochs {
        let lr = sched.lr(epoch);
        let order = epoch_order(&p.train_idx, cfg.seed, epoch);
        let mut aug_rng = rng_for(cfg.seed, epoch as u64, 3);
        let bar = if opts.progress {
            ProgressBar::with_draw_target(
                Some(steps_per_epoch as u64),
                ProgressDrawTarget::stderr(),
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", cfg.epochs));
        let mut loss_sum: Option<Tensor<1>> = None;
        let mut correct_sum: Option<Tensor<1, Int>> = None;
        let mut seen = 0usize;
        let t0 = Instant::now();
        let sync_every = 16;
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            if let Some(f) = opts.on_step.as_mut() {
                f(epoch, step);
            }
            make_batch(
                &p.train,
                chunk,
                &p.norm,
                cfg.augment.map(|a| (a, &mut aug_rng)),
                &mut xb,
                &mut yb,
            );
            let b = chunk.len();
            let x = Tensor::<4>::from_data(
                TensorData::new(std::mem::take(&mut xb), [b, c, h, w]),
                &p.ad,
            );
            let oh = Tensor::<2>::from_data(TensorData::new(one_hot(&yb, k), [b, k]), &p.ad);
            let y = Tensor::<1, Int>::from_data(
                TensorData::new(yb.iter().map(|&v| v as i64).collect::<Vec<_>>(), [b]),
                &p.device,
            );
            let (_, logits) = model.forward(x);
            let loss = batch_loss(cfg.loss, logits.clone(), oh);
            let detached = loss.clone().detach().inner().mul_scalar(b as f64);
            loss_sum = Some(match loss_sum.take() {
                Some(s) => s + detached,
                None => detached,
            });
            let corr = logits
                .detach()
                .inner()
                .argmax(1)
                .reshape([b])
                .equal(y)
                .int()
                .sum();
            correct_sum = Some(match correct_sum.take() {
                Some(s) => s + corr,
                None => corr,
            });
            seen += b;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let grads = if cfg.clip_grad_norm > 0.0 {
                clip_global_norm(&model, grads, cfg.clip_grad_norm).0
            } else {
                grads
            };
            model = optim.step(lr, model, grads);
            state.train_steps += 1;
            let last = step + 1 == steps_per_epoch;
            if (step + 1) % sync_every == 0 || last {
                let ls: f32 = loss_sum.clone().unwrap().into_scalar();
                if !ls.is_finite() {
                    bar.abandon();
                    return Err(TrainError::NonFinite {
                        epoch,
                        step,
                        value: ls,
                        lr,
                        last_good_epoch: state.epoch,
                    });
                }
                let cs: i64 = correct_sum.clone().unwrap().into_scalar();
                bar.set_message(format!(
                    "loss {:.4} acc {:.4}",
                    ls as f64 / seen as f64,
                    cs as f64 / seen as f64
                ));
            }
            bar.inc(1);
        }
        state.train_seconds += t0.elapsed().as_secs_f64();
        bar.finish_and_clear();

        // Validation every epoch (best checkpoint); full NC evaluation on eval epochs.
        let val = val_eval(cfg, p, &model.valid())?;
        if let Some(v) = &val {
            if state.best_val_acc.is_none_or(|b| v.accuracy > b) {
                state.best_val_acc = Some(v.accuracy);
                state.best_epoch = Some(epoch);
                let bp = dir.best_model();
                model
                    .valid()
                    .save_file(&bp)
                    .map_err(|e| TrainError::Checkpoint {
                        path: bp.clone(),
                        msg: e.to_string(),
                    })?;
            }
        }
        if cfg.is_eval_epoch(epoch) {
            let (tr, te) = train_test_eval(cfg, p, &model.valid(), false)?;
            let ev = (tr, val, te);
            rows.push(make_row(epoch, lr, &ev.0, ev.1.as_ref(), &ev.2));
            if log {
                eprintln!("{}", log_line(epoch, &ev));
            }
            write_metrics(dir, &rows)?;
            last_eval = Some(ev);
        }
        state.epoch = epoch;
        save_last(dir, &model, &optim, &state)?;
    }

    finish(cfg, p, dir, &model, &state, &rows, last_eval)
}

fn log_line(epoch: usize, ev: &(SplitEval, Option<SplitEval>, SplitEval)) -> String {
    let nc1 = |e: &SplitEval| {
        e.metrics
            .as_ref()
            .map(|m| format!("{:.4}", m.nc1))
            .unwrap_or("-".into())
    };
    format!(
        "epoch {epoch:>4}: train loss {:.4} acc {:.4} nc1 {} | val acc {} | test acc {:.4} nc1 {}",
        ev.0.loss,
        ev.0.accuracy,
        nc1(&ev.0),
        ev.1.as_ref()
            .map(|v| format!("{:.4}", v.accuracy))
            .unwrap_or("-".into()),
        ev.2.accuracy,
        nc1(&ev.2)
    )
}

fn finish(
    cfg: &TrainConfig,
    p: &Prepared,
    dir: &RunDir,
    model: &Net,
    state: &ResumeState,
    rows: &[MetricsRow],
    last_eval: Option<(SplitEval, Option<SplitEval>, SplitEval)>,
) -> Result<Summary> {
    // The last epoch is always evaluated: reuse that evaluation of this same model, unless
    // the features must be kept for --save-features (or a resumed run ended before it).
    let (tr, te) = match last_eval {
        Some((tr, _, te)) if !cfg.save_features => (tr, te),
        _ => {
            let (tr, _, te) = full_eval(cfg, p, model, cfg.save_features)?;
            (tr, te)
        }
    };
    let mvalid = model.valid();
    let weight: Vec<f32> = mvalid
        .classifier_weight()
        .iter()
        .map(|&x| x as f32)
        .collect();
    let bias: Vec<f32> = mvalid.classifier_bias().iter().map(|&x| x as f32).collect();
    let d = weight.len() / p.k;
    let means = |e: &SplitEval| {
        e.means
            .as_ref()
            .map(|m| m.means().iter().map(|&x| x as f32).collect::<Vec<f32>>())
            .unwrap_or_default()
    };
    let mut tensors = vec![
        (final_tensors::WEIGHT, vec![p.k, d], weight.clone()),
        (final_tensors::BIAS, vec![p.k], bias.clone()),
        (final_tensors::TRAIN_CLASS_MEANS, vec![p.k, d], means(&tr)),
    ];
    if te.means.is_some() {
        tensors.push((final_tensors::TEST_CLASS_MEANS, vec![p.k, d], means(&te)));
    }
    if let Ok(initial) = nc_data::safetensors::read_safetensors(&dir.initial_tensors()) {
        if let Some(m) = initial.get(final_tensors::INITIAL_TRAIN_CLASS_MEANS) {
            let values = m.to_f64_vec().iter().map(|&x| x as f32).collect();
            tensors.push((
                final_tensors::INITIAL_TRAIN_CLASS_MEANS,
                m.shape.clone(),
                values,
            ));
        }
    }
    write_safetensors(&dir.final_tensors(), &tensors)?;
    if cfg.save_features {
        crate::features::save_features(dir, "train", &p.train, &p.train_idx, &tr, &mvalid)?;
        crate::features::save_features(dir, "test", &p.test, &p.test_idx, &te, &mvalid)?;
    }

    // Test accuracy of the best-validation checkpoint.
    let (best_epoch, best_val_test_acc) = match state.best_epoch {
        // The best checkpoint is the final model: its test accuracy is already known.
        Some(be) if be == cfg.epochs => (be, te.accuracy),
        Some(be) if dir.best_model().is_file() => {
            let bp = dir.best_model();
            let best = Net::new(&cfg.model, p.train.shape, p.k, &p.device)
                .try_load_file(&bp)
                .map_err(|e| TrainError::Checkpoint {
                    path: bp.clone(),
                    msg: e.to_string(),
                })?
                .valid();
            let e = evaluate(
                &best,
                &p.device,
                &split_req(cfg, &p.test, &p.test_idx, p, false, None, false),
            )?;
            (be, e.accuracy)
        }
        _ => (cfg.epochs, te.accuracy),
    };
    let first = rows.iter().find(|r| r.epoch() == 0);
    let summary = Summary {
        epochs: cfg.epochs,
        best_epoch,
        best_val_acc: state.best_val_acc,
        best_val_test_acc,
        final_train_acc: tr.accuracy,
        final_test_acc: te.accuracy,
        final_train_loss: tr.loss,
        final_train_nc1: tr.metrics.as_ref().map(|m| m.nc1),
        initial_train_nc1: first.and_then(|r| r.get("train_nc1")),
        seconds_per_step: if state.train_steps > 0 {
            state.train_seconds / state.train_steps as f64
        } else {
            0.0
        },
        backend: crate::device::backend_name(parse_device(&cfg.device)?).to_string(),
    };
    write_json(&dir.summary(), &summary)?;
    Ok(summary)
}
