//! The training loop as a type: a [`Trainer`] holds a run's state (prepared data, model,
//! optimiser, schedule, resume state with the best validation accuracy so far, metrics rows)
//! and trains one epoch per [`Trainer::step_epoch`]: SGD over shuffled (and for CIFAR
//! augmented) batches, a validation pass, a full NC evaluation at epoch 0, every `eval_every`
//! epochs and at the last epoch, and a checkpoint after every epoch. [`Trainer::finish`]
//! writes the final files. [`train`] and [`resume`] run a whole run.
//!
//! Progress goes to [`RunOptions::on_progress`] as [`Progress`] events; the library prints
//! nothing.
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

use crate::config::{CheckedConfig, TrainConfig};
use crate::data::{
    epoch_order, first_per_class, make_batch, rng_for, stratified_split, Normalization,
};
use crate::device::{device_for, parse_device};
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, EvalRequest, Evaluation, SplitEval};
use crate::loss::{batch_loss, one_hot};
use crate::model::Net;
use crate::optim::{build_sgd, clip_global_norm};
use crate::run_dir::{
    csv_columns, final_tensors, layer_column, read_json, read_metrics, write_json, write_metrics,
    write_safetensors, MetricsRow, RunDir, Summary, LAYER_METRIC_COLUMNS,
};
use crate::schedule::MultiStep;
use crate::source::Samples;

/// The progress callback: called with every [`Progress`] event.
pub type ProgressFn = Box<dyn FnMut(&Progress<'_>)>;

/// How to run (not part of the config: does not change any number).
#[derive(Default)]
pub struct RunOptions {
    /// Called at every [`Progress`] event (epoch started, step started and done, epoch trained
    /// or failed, evaluation done). The CLI draws its progress bar and log lines from them;
    /// tests use [`Progress::StepStarted`] to kill a run mid-epoch.
    pub on_progress: Option<ProgressFn>,
}

/// Loss and accuracy averaged over the training batches of an epoch so far (the model
/// changes from batch to batch: these are the per-batch values as the batches were trained).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainMeans {
    pub loss: f64,
    pub accuracy: f64,
}

/// What the trainer is doing, for progress displays and logs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// The training steps of `epoch` (1-based, of `epochs`) start: `steps` batches.
    EpochStarted {
        epoch: usize,
        epochs: usize,
        steps: usize,
    },
    /// Training step `step` (0-based) of `epoch` is about to run.
    StepStarted { epoch: usize, step: usize },
    /// Training step `step` of `epoch` is done. `means` are read from the device every 16
    /// steps and at the last step of the epoch, and are `None` on the other steps.
    StepDone {
        epoch: usize,
        step: usize,
        steps: usize,
        means: Option<TrainMeans>,
    },
    /// The training steps of `epoch` are done (validation and evaluation follow); `seconds`
    /// spent in them.
    EpochTrained {
        epoch: usize,
        means: Option<TrainMeans>,
        seconds: f64,
    },
    /// The epoch stopped at `step`: the loss became NaN or infinite. The error
    /// ([`TrainError::NonFinite`]) follows.
    EpochFailed { epoch: usize, step: usize },
    /// A full evaluation at `epoch` (0 = initialisation) is done; `row` is its metrics row,
    /// written to the run directory next.
    Evaluated {
        epoch: usize,
        evaluation: &'a Evaluation,
        row: &'a MetricsRow,
    },
}

/// What one [`Trainer::step_epoch`] did.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    /// The learning rate used throughout the epoch.
    pub lr: f64,
    /// Loss and accuracy over the epoch's training batches (None for an epoch without any).
    pub train: Option<TrainMeans>,
    /// Loss and accuracy of the validation split after the epoch (None without one).
    pub validation: Option<SplitEval>,
    /// Whether the validation accuracy is the best so far (the best checkpoint was saved).
    pub new_best: bool,
    /// The metrics row written at this epoch, if it is an evaluation epoch.
    pub row: Option<MetricsRow>,
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

impl ResumeState {
    /// The state of a run before its first epoch.
    fn start() -> Self {
        ResumeState {
            epoch: 0,
            best_epoch: None,
            best_val_acc: None,
            train_seconds: 0.0,
            train_steps: 0,
        }
    }
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
    let choice = parse_device(&cfg.device)?;
    let device = device_for(choice)?;
    let (train, test) = cfg.data.load()?;
    if test.shape != train.shape {
        return Err(TrainError::InvalidData(format!(
            "test samples have shape {:?}, training samples {:?}",
            test.shape, train.shape
        )));
    }
    let k = train.num_classes;
    cfg.model.check_input(train.shape)?;
    check_model_memory(cfg, train.shape, train.num_classes)?;
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
            train.shape[0],
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

/// Starts a new run in `out` (which must not exist or be empty) and trains it to the end.
pub fn train(cfg: CheckedConfig, out: &Path, opts: RunOptions) -> Result<Summary> {
    Trainer::new(cfg, out, opts)?.finish()
}

/// Continues the run in `dir` from its last completed epoch to the end.
pub fn resume(dir: &Path, opts: RunOptions) -> Result<Summary> {
    Trainer::resume(dir, opts)?.finish()
}

/// Where a run stopped with a non-finite loss (the trainer then refuses to go on).
#[derive(Clone, Copy, Debug)]
struct NonFiniteAt {
    epoch: usize,
    step: usize,
    value: f32,
    lr: f64,
    last_good_epoch: usize,
}

impl NonFiniteAt {
    fn error(self) -> TrainError {
        TrainError::NonFinite {
            epoch: self.epoch,
            step: self.step,
            value: self.value,
            lr: self.lr,
            last_good_epoch: self.last_good_epoch,
        }
    }
}

/// One training run in progress: its configuration, data, model, optimiser, schedule,
/// resume state (last completed epoch, best validation accuracy so far), metrics rows and
/// run directory.
pub struct Trainer {
    cfg: CheckedConfig,
    p: Prepared,
    dir: RunDir,
    /// The model; taken out only while an epoch's steps run (the optimiser consumes it).
    model: Option<Net>,
    optim: ModuleOptimizer,
    schedule: MultiStep,
    state: ResumeState,
    rows: Vec<MetricsRow>,
    /// The last full evaluation of this process (reused by `finish` for the last epoch).
    last_eval: Option<Evaluation>,
    on_progress: Option<ProgressFn>,
    stopped: Option<NonFiniteAt>,
}

fn emit(on_progress: &mut Option<ProgressFn>, event: Progress<'_>) {
    if let Some(f) = on_progress.as_mut() {
        f(&event);
    }
}

impl Trainer {
    /// Starts a new run in `out` (which must not exist or be empty): reads the data, creates
    /// the run directory with `config.json`, builds the seeded model and evaluates it (epoch 0
    /// of `metrics.jsonl`, the first checkpoint). Bad data stop it before anything is written.
    /// A run that fails before its first epoch (the epoch-0 evaluation, the first files)
    /// removes what it created: `out` is left as it was found, absent or empty.
    pub fn new(cfg: CheckedConfig, out: &Path, opts: RunOptions) -> Result<Self> {
        let p = prepare(&cfg)?;
        let existed = out.is_dir();
        let dir = RunDir::create(out)?;
        let started = write_json(&dir.config(), &cfg)
            .map_err(TrainError::from)
            .and_then(|()| Self::start(cfg, p, dir, opts));
        if started.is_err() {
            // RunDir::create accepted only an absent or empty directory: nothing else is lost.
            let _ = std::fs::remove_dir_all(out);
            if existed {
                let _ = std::fs::create_dir(out);
            }
        }
        started
    }

    /// Reopens the run in `dir` (validating its `config.json`) at its last completed epoch:
    /// the model and optimiser of that checkpoint, the metrics rows up to it. A run killed
    /// before its first checkpoint starts over in place.
    pub fn resume(dir: &Path, opts: RunOptions) -> Result<Self> {
        let dir = RunDir::open(dir)?;
        let cfg: TrainConfig = read_json(&dir.config())?;
        let cfg = cfg.validate()?;
        let p = prepare(&cfg)?;
        if !dir.state().is_file() {
            // Killed before the first checkpoint: start over in place.
            return Self::start(cfg, p, dir, opts);
        }
        let model = new_model(&cfg, &p);
        let optim = build_sgd(&model, &cfg.sgd);
        let state: ResumeState = read_json(&dir.state())?;
        let mp = dir.last_model(state.epoch);
        let model = model
            .try_load_file(&mp)
            .map_err(|e| TrainError::checkpoint(&mp, e))?;
        let op = dir.last_optim(state.epoch);
        let optim = if op.is_file() {
            optim
                .load(&op)
                .map_err(|e| TrainError::checkpoint(&op, e))?
        } else {
            optim
        };
        let rows: Vec<MetricsRow> = read_metrics(&dir)?
            .into_iter()
            .filter(|r| r.epoch() <= state.epoch)
            .collect();
        Ok(Trainer {
            schedule: cfg.schedule(),
            cfg,
            p,
            dir,
            model: Some(model),
            optim,
            state,
            rows,
            last_eval: None,
            on_progress: opts.on_progress,
            stopped: None,
        })
    }

    /// A fresh model and optimiser in `dir`, evaluated at initialisation.
    fn start(cfg: CheckedConfig, p: Prepared, dir: RunDir, opts: RunOptions) -> Result<Self> {
        let model = new_model(&cfg, &p);
        let optim = build_sgd(&model, &cfg.sgd);
        let mut t = Trainer {
            schedule: cfg.schedule(),
            cfg,
            p,
            dir,
            model: Some(model),
            optim,
            state: ResumeState::start(),
            rows: vec![],
            last_eval: None,
            on_progress: opts.on_progress,
            stopped: None,
        };
        t.evaluate_initial()?;
        Ok(t)
    }

    /// The run's configuration.
    pub fn config(&self) -> &CheckedConfig {
        &self.cfg
    }

    /// The run directory.
    pub fn run_dir(&self) -> &RunDir {
        &self.dir
    }

    /// The last completed epoch, the best validation epoch and accuracy so far, and the
    /// training time (what `checkpoints/state.json` holds).
    pub fn state(&self) -> &ResumeState {
        &self.state
    }

    /// Whether every epoch is trained (only [`Trainer::finish`] is left).
    pub fn is_done(&self) -> bool {
        self.state.epoch >= self.cfg.epochs
    }

    /// The metrics rows so far (those of `metrics.jsonl`).
    pub fn rows(&self) -> &[MetricsRow] {
        &self.rows
    }

    /// The last full evaluation made by this trainer (None right after a resume).
    pub fn last_evaluation(&self) -> Option<&Evaluation> {
        self.last_eval.as_ref()
    }

    /// The model as it is now.
    pub fn model(&self) -> &Net {
        self.model
            .as_ref()
            .expect("the model is in place between epochs")
    }

    fn evaluate_initial(&mut self) -> Result<()> {
        let k = self.p.k;
        let ev = full_eval(&self.cfg, &self.p, self.model(), false)?;
        if let Some(means) = &ev.train.means {
            // The untrained network's class geometry: `nclab compare`'s baseline.
            let values = means.means().iter().map(|&x| x as f32).collect();
            let mut tensors = vec![(
                final_tensors::INITIAL_TRAIN_CLASS_MEANS.to_string(),
                vec![k, means.dim()],
                values,
            )];
            tensors.extend(layer_means_tensors(
                &ev.train,
                final_tensors::layer_initial_train_class_means,
            ));
            write_safetensors(&self.dir.initial_tensors(), &tensors)?;
        }
        let lr = self.schedule.lr(1);
        self.push_row(0, lr, ev)?;
        save_last(&self.dir, self.model(), &self.optim, &self.state)
    }

    /// Adds the metrics row of `ev` at `epoch`, reports it and rewrites the metrics files.
    fn push_row(&mut self, epoch: usize, lr: f64, ev: Evaluation) -> Result<()> {
        self.rows.push(make_row(
            &self.cfg,
            epoch,
            lr,
            &ev.train,
            ev.validation.as_ref(),
            &ev.test,
        ));
        emit(
            &mut self.on_progress,
            Progress::Evaluated {
                epoch,
                evaluation: &ev,
                row: self.rows.last().expect("just pushed"),
            },
        );
        write_metrics(&self.dir, &self.rows)?;
        self.last_eval = Some(ev);
        Ok(())
    }

    /// Trains the next epoch: its training steps, the validation pass (and the best
    /// checkpoint), the full evaluation on evaluation epochs, the checkpoint. `None` when every
    /// epoch is already trained. After an error the run directory holds the last good
    /// checkpoint; a trainer stopped by a non-finite loss refuses further epochs.
    pub fn step_epoch(&mut self) -> Result<Option<EpochReport>> {
        if let Some(at) = self.stopped {
            return Err(at.error());
        }
        if self.is_done() {
            return Ok(None);
        }
        let epoch = self.state.epoch + 1;
        let lr = self.schedule.lr(epoch);
        let train = self.train_steps(epoch, lr)?;

        // Validation every epoch (best checkpoint); full NC evaluation on eval epochs.
        let val = val_eval(&self.cfg, &self.p, &self.model().valid())?;
        let mut new_best = false;
        if let Some(v) = &val {
            // Ties go to the latest epoch: with a small validation split equal accuracies
            // are frequent, and the later network is the more trained one.
            if self.state.best_val_acc.is_none_or(|b| v.accuracy >= b) {
                self.state.best_val_acc = Some(v.accuracy);
                self.state.best_epoch = Some(epoch);
                new_best = true;
                let bp = self.dir.best_model();
                self.model()
                    .valid()
                    .save_file(&bp)
                    .map_err(|e| TrainError::checkpoint(&bp, e))?;
            }
        }
        let mut row = None;
        let validation = val.clone();
        if self.cfg.is_eval_epoch(epoch) {
            let last_good_epoch = self.state.epoch;
            let ev = evaluate_splits(&self.cfg, &self.p, &self.model().valid(), false, val)
                .map_err(|e| match e {
                    TrainError::Metrics(nc_math::Error::NonFinite { .. }) => {
                        TrainError::DivergedFeatures {
                            epoch,
                            lr,
                            last_good_epoch,
                        }
                    }
                    other => other,
                })?;
            self.push_row(epoch, lr, ev)?;
            row = self.rows.last().cloned();
        }
        self.state.epoch = epoch;
        save_last(&self.dir, self.model(), &self.optim, &self.state)?;
        Ok(Some(EpochReport {
            epoch,
            lr,
            train,
            validation,
            new_best,
            row,
        }))
    }

    /// The training steps of `epoch` at learning rate `lr`.
    fn train_steps(&mut self, epoch: usize, lr: f64) -> Result<Option<TrainMeans>> {
        let cfg = &self.cfg;
        let p = &self.p;
        let k = p.k;
        let [c, h, w] = p.train.shape;
        let steps_per_epoch = p.train_idx.len().div_ceil(cfg.batch_size);
        let (mut xb, mut yb) = (Vec::new(), Vec::new());
        let order = epoch_order(&p.train_idx, cfg.seed, epoch);
        let mut aug_rng = rng_for(cfg.seed, epoch as u64, 3);
        emit(
            &mut self.on_progress,
            Progress::EpochStarted {
                epoch,
                epochs: cfg.epochs,
                steps: steps_per_epoch,
            },
        );
        let mut model = self
            .model
            .take()
            .expect("the model is in place between epochs");
        let mut loss_sum: Option<Tensor<1>> = None;
        let mut correct_sum: Option<Tensor<1, Int>> = None;
        let mut seen = 0usize;
        let mut means = None;
        let t0 = Instant::now();
        let sync_every = 16;
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            emit(&mut self.on_progress, Progress::StepStarted { epoch, step });
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
            model = self.optim.step(lr, model, grads);
            self.state.train_steps += 1;
            let last = step + 1 == steps_per_epoch;
            let mut step_means = None;
            if (step + 1) % sync_every == 0 || last {
                let ls: f32 = loss_sum.clone().unwrap().into_scalar();
                if !ls.is_finite() {
                    self.model = Some(model);
                    let at = NonFiniteAt {
                        epoch,
                        step,
                        value: ls,
                        lr,
                        last_good_epoch: self.state.epoch,
                    };
                    self.stopped = Some(at);
                    emit(&mut self.on_progress, Progress::EpochFailed { epoch, step });
                    return Err(at.error());
                }
                let cs: i64 = correct_sum.clone().unwrap().into_scalar();
                step_means = Some(TrainMeans {
                    loss: ls as f64 / seen as f64,
                    accuracy: cs as f64 / seen as f64,
                });
                means = step_means;
            }
            emit(
                &mut self.on_progress,
                Progress::StepDone {
                    epoch,
                    step,
                    steps: steps_per_epoch,
                    means: step_means,
                },
            );
        }
        let seconds = t0.elapsed().as_secs_f64();
        self.state.train_seconds += seconds;
        self.model = Some(model);
        emit(
            &mut self.on_progress,
            Progress::EpochTrained {
                epoch,
                means,
                seconds,
            },
        );
        Ok(means)
    }

    /// Trains the epochs still left (none after the last [`Trainer::step_epoch`]), then
    /// writes `final.safetensors`, the feature files (`save_features`) and `summary.json`.
    pub fn finish(mut self) -> Result<Summary> {
        while self.step_epoch()?.is_some() {}
        let cfg = &self.cfg;
        let p = &self.p;
        let dir = &self.dir;
        let model = self
            .model
            .as_ref()
            .expect("the model is in place between epochs");
        let state = &self.state;
        // The last epoch is always evaluated: reuse that evaluation of this same model, unless
        // the features must be kept for `save_features` (or a resumed run ended before it).
        let ev = match self.last_eval.take() {
            Some(ev) if !cfg.save_features => ev,
            _ => full_eval(cfg, p, model, cfg.save_features)?,
        };
        let (tr, te) = (&ev.train, &ev.test);
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
            (
                final_tensors::WEIGHT.to_string(),
                vec![p.k, d],
                weight.clone(),
            ),
            (final_tensors::BIAS.to_string(), vec![p.k], bias.clone()),
            (
                final_tensors::TRAIN_CLASS_MEANS.to_string(),
                vec![p.k, d],
                means(tr),
            ),
        ];
        if te.means.is_some() {
            tensors.push((
                final_tensors::TEST_CLASS_MEANS.to_string(),
                vec![p.k, d],
                means(te),
            ));
        }
        if let Ok(initial) = nc_data::safetensors::read_safetensors(&dir.initial_tensors()) {
            let mut names = vec![final_tensors::INITIAL_TRAIN_CLASS_MEANS.to_string()];
            names.extend(
                cfg.watched_layers
                    .iter()
                    .map(|l| final_tensors::layer_initial_train_class_means(l.index)),
            );
            for name in names {
                if let Some(m) = initial.get(&name) {
                    let values = m.to_f64_vec().iter().map(|&x| x as f32).collect();
                    tensors.push((name, m.shape.clone(), values));
                }
            }
        }
        tensors.extend(layer_means_tensors(
            tr,
            final_tensors::layer_train_class_means,
        ));
        write_safetensors(&dir.final_tensors(), &tensors)?;
        if cfg.save_features {
            crate::features::save_features(dir, "train", &p.train, &p.train_idx, tr, &mvalid)?;
            crate::features::save_features(dir, "test", &p.test, &p.test_idx, te, &mvalid)?;
        }

        // Test accuracy of the best-validation checkpoint.
        let (best_epoch, best_val_test_acc) = match state.best_epoch {
            // The best checkpoint is the final model: its test accuracy is already known.
            Some(be) if be == cfg.epochs => (be, te.accuracy),
            Some(be) if dir.best_model().is_file() => {
                let bp = dir.best_model();
                let best = Net::new(&cfg.model, p.train.shape, p.k, &p.device)
                    .try_load_file(&bp)
                    .map_err(|e| TrainError::checkpoint(&bp, e))?
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
        let first = self.rows.iter().find(|r| r.epoch() == 0);
        let summary = Summary {
            epochs: cfg.epochs,
            best_epoch,
            val_samples: Some(p.val_idx.len()),
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
}

fn split_req<'a>(
    cfg: &'a TrainConfig,
    s: &'a Samples,
    idx: &'a [usize],
    p: &'a Prepared,
    metrics: bool,
    reference: Option<&'a SplitEval>,
    keep: bool,
) -> EvalRequest<'a> {
    EvalRequest {
        samples: s,
        indices: idx,
        norm: &p.norm,
        loss: cfg.loss,
        batch_size: cfg.eval_batch_size,
        metrics,
        reference_means: reference.and_then(|r| r.means.as_ref()),
        convention: cfg.convention,
        keep_features: keep,
        memory_limit: 1 << 30,
        layers: &cfg.watched_layers,
        last_layer: cfg.last_layer(),
        reference_layers: reference.map_or(&[][..], |r| &r.layers[..]),
    }
}

/// Full evaluation of the current model: train and test, then validation.
fn full_eval(cfg: &TrainConfig, p: &Prepared, model: &Net, keep: bool) -> Result<Evaluation> {
    let m = model.valid();
    let mut ev = evaluate_splits(cfg, p, &m, keep, None)?;
    ev.validation = val_eval(cfg, p, &m)?;
    Ok(ev)
}

/// NC evaluation of the training and test splits, with the `validation` result made before;
/// the test split's NCC rule uses the training class means. `keep` keeps the features (for
/// `save_features`).
fn evaluate_splits(
    cfg: &TrainConfig,
    p: &Prepared,
    m: &Net,
    keep: bool,
    validation: Option<SplitEval>,
) -> Result<Evaluation> {
    let train = evaluate(
        m,
        &p.device,
        &split_req(cfg, &p.train, &p.train_idx, p, true, None, keep),
    )?;
    let test = evaluate(
        m,
        &p.device,
        &split_req(
            cfg,
            &p.test,
            &p.test_idx,
            p,
            !p.test_idx.is_empty(),
            Some(&train),
            keep,
        ),
    )?;
    Ok(Evaluation {
        train,
        validation,
        test,
    })
}

/// Refuses a network whose parameters, gradients and optimiser state (about 16 bytes per
/// parameter) would not fit under the memory limit (`nc_data::limits`), before building it.
fn check_model_memory(cfg: &TrainConfig, shape: [usize; 3], classes: usize) -> Result<()> {
    let limit = nc_data::limits::max_memory();
    let params = cfg.model.parameter_estimate(shape, classes);
    match params.and_then(|p| p.checked_mul(16)) {
        Some(bytes) if bytes <= limit => Ok(()),
        bytes => Err(TrainError::setting(
            "width",
            format!(
                "{} at width {} would have about {} parameters, needing about {} with their gradients and optimiser state, above the memory limit of {}",
                cfg.model.kind.name(),
                cfg.model.width,
                params.map_or("more than 2^64".to_string(), |p| p.to_string()),
                bytes.map_or("more than 16 EiB".to_string(), nc_data::limits::human),
                nc_data::limits::human(limit)
            ),
        )),
    }
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

fn make_row(
    cfg: &TrainConfig,
    epoch: usize,
    lr: f64,
    tr: &SplitEval,
    va: Option<&SplitEval>,
    te: &SplitEval,
) -> MetricsRow {
    let mut values: Vec<(String, Option<f64>)> = csv_columns()
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
                    e.metrics.as_ref().and_then(|m| m.split_column(key))
                }
            };
            (c, v)
        })
        .collect();
    // Then the depth columns: training split before test, layers in order, each layer's
    // LAYER_METRIC_COLUMNS (the CSV header is the first row's columns).
    for (split, e) in [("train", tr), ("test", te)] {
        for l in &cfg.watched_layers {
            let m = e
                .layers
                .iter()
                .find(|x| x.layer.index == l.index)
                .and_then(|x| x.metrics.as_ref());
            for key in LAYER_METRIC_COLUMNS {
                values.push((
                    layer_column(split, l.index, key),
                    m.and_then(|m| layer_metric(m, key)),
                ));
            }
        }
    }
    for (_, v) in values.iter_mut() {
        *v = v.filter(|x| x.is_finite());
    }
    MetricsRow { values, raw: None }
}

/// The value of a per-layer metric (`LAYER_METRIC_COLUMNS`).
fn layer_metric(m: &nc_math::metrics::NcMetrics, key: &str) -> Option<f64> {
    match key {
        "nc1_trace_ratio" => m.nc1_trace_ratio,
        other => m.split_column(other),
    }
}

/// `(name(i), K x d_i, class means)` of every watched layer of `e` that has means.
fn layer_means_tensors(
    e: &SplitEval,
    name: fn(usize) -> String,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    e.layers
        .iter()
        .filter_map(|l| {
            let m = l.means.as_ref()?;
            let values = m.means().iter().map(|&x| x as f32).collect();
            Some((name(l.layer.index), vec![m.num_classes(), m.dim()], values))
        })
        .collect()
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
        .map_err(|err| TrainError::checkpoint(&mp, err))?;
    let op = dir.last_optim(e);
    optim
        .save(&op)
        .map_err(|err| TrainError::checkpoint(&op, err))?;
    write_json(&dir.state(), state)?;
    dir.prune_last(e);
    Ok(())
}
