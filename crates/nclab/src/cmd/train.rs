//! `nclab train`: train a classifier under one loss and track neural collapse every epoch.
//! See docs/train.md. The library (nc-train) names settings by their field names and reports
//! progress through a callback; this module maps the names to flags and draws the progress
//! bar and the per-evaluation lines.

use crate::args::{flag, loss_kind_parser, user_error, ConventionArgs, LossParamsArgs};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nc_math::loss::LossKind;
use nc_train::model::{ModelKind, ModelSpec};
use nc_train::paper;
use nc_train::source::DataSpec;
use nc_train::{
    CheckedConfig, Evaluation, LayerSelection, Progress, ProgressFn, RunOptions, SplitEval,
    TrainConfig, TrainError,
};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = after_help())]
pub struct Args {
    /// mnist (embedded MNIST-10k), mnist:DIR, cifar10:DIR, cifar100:DIR or synthetic:K=10,d=32,n=500
    #[arg(long, default_value = "mnist")]
    pub data: String,
    /// Run directory to create (must not exist or be empty).
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in DIR with its saved config (other options are ignored).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// mlp, resnet18 or wrn50
    #[arg(long, default_value = ModelSpec::DEFAULT_KIND.name())]
    pub model: String,
    /// MLP hidden layers.
    #[arg(long, default_value_t = ModelSpec::DEFAULT_DEPTH)]
    pub depth: usize,
    /// MLP hidden units (times --width).
    #[arg(long, default_value_t = ModelSpec::DEFAULT_HIDDEN)]
    pub hidden: usize,
    /// MLP: BatchNorm after every hidden linear layer.
    #[arg(long)]
    pub batch_norm: bool,
    /// Width multiplier: MLP hidden size, ResNet-18 channels, WRN-50 inner bottleneck channels.
    #[arg(long, default_value_t = ModelSpec::DEFAULT_WIDTH, allow_negative_numbers = true)]
    pub width: f64,
    /// The loss.
    #[arg(long, value_parser = loss_kind_parser(), default_value_t = LossKind::Ce)]
    pub loss: LossKind,
    #[command(flatten)]
    pub loss_params: LossParamsArgs,
    #[command(flatten)]
    pub convention: ConventionArgs,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    #[arg(long, default_value_t = paper::BATCH_SIZE)]
    pub batch_size: usize,
    #[arg(long, default_value_t = paper::LR)]
    pub lr: f64,
    #[arg(long, default_value_t = paper::MOMENTUM)]
    pub momentum: f64,
    /// Weight decay on every parameter (see --no-decay-on).
    #[arg(long, default_value_t = paper::WEIGHT_DECAY)]
    pub weight_decay: f64,
    /// Comma-separated parameter kinds without weight decay: bias, bn.
    #[arg(long, value_delimiter = ',')]
    pub no_decay_on: Vec<String>,
    #[arg(long, value_delimiter = ',', help = milestones_help())]
    pub milestones: Option<Vec<usize>>,
    /// Global gradient-norm clipping threshold (0 disables).
    #[arg(long, default_value_t = paper::CLIP_GRAD_NORM)]
    pub clip_grad_norm: f64,
    #[arg(long, default_value_t = paper::SEED)]
    pub seed: u64,
    #[arg(long, help = eval_every_help())]
    pub eval_every: Option<usize>,
    /// Fraction of each training class held out for validation (0 disables).
    #[arg(long, default_value_t = paper::VAL_FRACTION)]
    pub val_fraction: f64,
    /// Keep the first N training samples of each class.
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Turn the CIFAR augmentation (random crop, padding 4, horizontal flip) off.
    #[arg(long)]
    pub no_augment: bool,
    /// Skip the per-channel normalisation (inputs scaled to [0, 1] only).
    #[arg(long)]
    pub no_normalize: bool,
    /// Layers measured at every evaluation (NC1, NCC accuracy and the other metrics that need
    /// no classifier, on train and test): last (the penultimate features only), all, or
    /// comma-separated layer numbers from 1 (MLP hidden layers; ResNet/WRN stages).
    #[arg(long, default_value = "last", value_name = "last|all|LIST")]
    pub nc_layers: String,
    /// Also write features_train.npz and features_test.npz (readable by `nclab analyze`).
    #[arg(long)]
    pub save_features: bool,
    /// cpu, or cuda:N with a build that has the `tch` or `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar and no per-evaluation lines.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A number as written in the help: `0.1`, `2`, `5e-4` (the shorter of the two forms).
fn short(x: f64) -> String {
    let (plain, exp) = (format!("{x}"), format!("{x:e}"));
    if exp.len() < plain.len() {
        exp
    } else {
        plain
    }
}

fn after_help() -> String {
    format!(
        "Defaults follow the paper (Zhou et al. 2022): SGD lr {}, momentum {}, weight decay {}, \
         x{} at {}, global gradient-norm clipping {}, batch {}. See docs/train.md. Exit status 2 \
         on bad input.",
        short(paper::LR),
        short(paper::MOMENTUM),
        short(paper::WEIGHT_DECAY),
        short(paper::LR_DECAY),
        paper::milestones_text(" and "),
        short(paper::CLIP_GRAD_NORM),
        paper::BATCH_SIZE,
    )
}

fn milestones_help() -> String {
    format!(
        "Comma-separated epochs after which the learning rate is multiplied by {} (default {}); \
         the decay applies from the next epoch on",
        short(paper::LR_DECAY),
        paper::milestones_text(", "),
    )
}

fn eval_every_help() -> String {
    format!(
        "NC evaluation every this many epochs (default: ceil(epochs / {})); always at 0 and the \
         last epoch",
        paper::EVALUATIONS
    )
}

/// A training error in this command line's words: settings are named by their flags.
fn train_error(err: TrainError) -> anyhow::Error {
    match err {
        TrainError::Experiment(e) => user_error(e),
        e @ (TrainError::Setting { .. }
        | TrainError::NonFinite { .. }
        | TrainError::DivergedFeatures { .. }) => anyhow::Error::msg(e.message_with(flag)),
        other => other.into(),
    }
}

fn config_from(args: &Args) -> Result<CheckedConfig> {
    let data = DataSpec::parse(&args.data).map_err(|e| match e {
        // A malformed synthetic specification: nc-data's error, under the flag.
        TrainError::Data(source) => {
            anyhow::Error::new(source).context(format!("invalid setting: {}", flag("data")))
        }
        other => train_error(other),
    })?;
    let kind = ModelKind::from_name(&args.model)
        .with_context(|| format!("unknown model {:?}: use mlp, resnet18 or wrn50", args.model))?;
    let loss = args.loss_params.loss(args.loss);
    let spec = ModelSpec {
        kind,
        depth: args.depth,
        hidden: args.hidden,
        batch_norm: args.batch_norm,
        width: args.width,
    };
    // The data decide the augmentation (on for CIFAR); --no-augment turns it off.
    let mut cfg = TrainConfig::paper(data, spec, loss, args.epochs);
    if args.no_augment {
        cfg.augment = None;
    }
    cfg.normalize = !args.no_normalize;
    cfg.per_class = args.per_class;
    cfg.val_fraction = args.val_fraction;
    cfg.lr = args.lr;
    cfg.sgd.momentum = args.momentum;
    cfg.sgd.weight_decay = args.weight_decay;
    cfg.sgd.no_decay_on = args.no_decay_on.clone();
    if let Some(m) = &args.milestones {
        cfg.milestones = m.clone();
    }
    cfg.clip_grad_norm = args.clip_grad_norm;
    cfg.batch_size = args.batch_size;
    cfg.seed = args.seed;
    if let Some(e) = args.eval_every {
        cfg.eval_every = e;
    }
    cfg.save_features = args.save_features;
    cfg.device = args.device.clone();
    cfg.convention = args.convention.convention();
    cfg.nc_layers = LayerSelection::parse(&args.nc_layers).map_err(train_error)?;
    cfg.validate().map_err(train_error)
}

/// The progress display on stderr: a bar per epoch (loss, accuracy, ETA) when `bar` is set,
/// one line per evaluation when `log` is set.
fn progress_display(bar: bool, log: bool) -> ProgressFn {
    let mut current: Option<ProgressBar> = None;
    Box::new(move |event| match *event {
        Progress::EpochStarted {
            epoch,
            epochs,
            steps,
        } if bar => {
            let b = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(format!("{epoch}/{epochs}"));
            current = Some(b);
        }
        Progress::StepDone { means, .. } => {
            if let Some(b) = &current {
                if let Some(m) = means {
                    b.set_message(format!("loss {:.4} acc {:.4}", m.loss, m.accuracy));
                }
                b.inc(1);
            }
        }
        Progress::EpochFailed { .. } => {
            if let Some(b) = current.take() {
                b.abandon();
            }
        }
        Progress::EpochTrained { .. } => {
            if let Some(b) = current.take() {
                b.finish_and_clear();
            }
        }
        Progress::Evaluated {
            epoch, evaluation, ..
        } if log => eprintln!("{}", log_line(epoch, evaluation)),
        _ => {}
    })
}

fn log_line(epoch: usize, ev: &Evaluation) -> String {
    let nc1 = |e: &SplitEval| {
        e.metrics
            .as_ref()
            .map(|m| format!("{:.4}", m.nc1))
            .unwrap_or("-".into())
    };
    format!(
        "epoch {epoch:>4}: train loss {:.4} acc {:.4} nc1 {} | val acc {} | test acc {:.4} nc1 {}",
        ev.train.loss,
        ev.train.accuracy,
        nc1(&ev.train),
        ev.validation
            .as_ref()
            .map(|v| format!("{:.4}", v.accuracy))
            .unwrap_or("-".into()),
        ev.test.accuracy,
        nc1(&ev.test)
    )
}

pub fn run(args: Args) -> Result<()> {
    let opts = RunOptions {
        on_progress: (!args.quiet).then(|| progress_display(std::io::stderr().is_terminal(), true)),
    };
    let (summary, dir) = if let Some(dir) = &args.resume {
        (
            nc_train::resume(dir, opts).map_err(train_error)?,
            dir.clone(),
        )
    } else {
        let cfg = config_from(&args)?;
        let out = args.out.clone().expect("clap requires --out");
        (nc_train::train(cfg, &out, opts).map_err(train_error)?, out)
    };
    println!(
        "done: {} epochs; final train acc {:.4}, test acc {:.4}; best val epoch {} -> test acc {:.4}; train NC1 {} -> {}; {:.1} ms/step ({})",
        summary.epochs,
        summary.final_train_acc,
        summary.final_test_acc,
        summary.best_epoch,
        summary.best_val_test_acc,
        summary.initial_train_nc1.map(|x| format!("{x:.4}")).unwrap_or("-".into()),
        summary.final_train_nc1.map(|x| format!("{x:.4}")).unwrap_or("-".into()),
        summary.seconds_per_step * 1e3,
        summary.backend,
    );
    println!("run directory: {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_states_the_paper_defaults() {
        assert_eq!(
            after_help(),
            "Defaults follow the paper (Zhou et al. 2022): SGD lr 0.1, momentum 0.9, weight \
             decay 5e-4, x0.1 at int(3/7 E) and int(5/7 E), global gradient-norm clipping 2, \
             batch 128. See docs/train.md. Exit status 2 on bad input."
        );
        assert!(milestones_help().contains("multiplied by 0.1 (default int(3/7 E), int(5/7 E))"));
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(extra: &[&str]) -> Args {
        use clap::Parser as _;
        let argv = ["train", "--out", "unused"].iter().chain(extra);
        Cli::try_parse_from(argv).expect("valid flags").args
    }

    /// The library names each bad setting by its field; the message shows the flag.
    #[test]
    fn bad_settings_are_reported_under_their_flags() {
        let cases: &[(&[&str], &str)] = &[
            (&["--epochs", "0"], "--epochs must be >= 1"),
            (&["--batch-size", "0"], "--batch-size must be >= 1"),
            (&["--eval-every", "0"], "--eval-every must be >= 1"),
            (
                &["--val-fraction", "1"],
                "--val-fraction must be in [0, 1), got 1",
            ),
            (&["--lr=-1"], "--lr must be > 0, got -1"),
            (&["--momentum", "1"], "--momentum must be in [0, 1), got 1"),
            (&["--weight-decay=-1"], "--weight-decay must be >= 0"),
            (
                &["--no-decay-on", "bias,foo"],
                "--no-decay-on names an unknown parameter kind \"foo\" (kinds: bias, bn)",
            ),
            (
                &["--clip-grad-norm=-1"],
                "--clip-grad-norm must be >= 0 (0 disables)",
            ),
            (&["--per-class", "0"], "--per-class must be >= 1"),
            (
                &["--loss", "ls", "--alpha", "1"],
                "--alpha is out of range: ls needs alpha in [0, 1), got 1",
            ),
            (
                &["--loss", "fl", "--gamma", "-1"],
                "--gamma is out of range: fl needs a finite gamma >= 0, got -1",
            ),
            (
                &["--loss", "mse", "--rescale", "0"],
                "--rescale is out of range: mse needs a finite rescale > 0, got 0",
            ),
            (&["--milestones", "5,3"], "--milestones must be increasing"),
            (&["--width", "0"], "--width must be > 0, got 0"),
            (&["--width", "-1"], "--width must be > 0, got -1"),
            (&["--depth", "0"], "--depth must be >= 1"),
            (
                &["--hidden", "0"],
                "--hidden (0) times the width (1) gives 0 units",
            ),
            (
                &["--device", "gpu"],
                "--device names an unknown device \"gpu\": use cpu or cuda:N",
            ),
            (
                &["--data", "cifar10"],
                "--data cifar10 needs a directory: cifar10:DIR",
            ),
            (
                &["--depth", "3", "--nc-layers", "2,4"],
                "--nc-layers names layer 4, but mlp with 3 hidden layers has layers 1..3 \
                 (hidden1, hidden2, hidden3)",
            ),
            (
                &["--model", "resnet18", "--nc-layers", "5"],
                "--nc-layers names layer 5, but resnet18 (4 stages) has layers 1..4 \
                 (stage1, stage2, stage3, stage4)",
            ),
            (
                &["--nc-layers", "some"],
                "--nc-layers must be last, all or comma-separated layer numbers (1, 2, ...), \
                 got \"some\"",
            ),
            (
                &["--nc-layers", "0"],
                "--nc-layers numbers layers from 1, got 0",
            ),
        ];
        // anyhow's alternate form shows the context and its cause, as main prints them
        let err = config_from(&parse(&["--data", "synthetic:K=1"])).expect_err("rejected");
        assert!(
            format!("{err:#}").starts_with(
                "invalid setting: --data: invalid synthetic data spec 'K=1': missing 'd'"
            ),
            "{err:#}"
        );
        for (flags, message) in cases {
            let err = config_from(&parse(flags)).expect_err("rejected");
            assert_eq!(
                err.to_string(),
                format!("invalid setting: {message}"),
                "{flags:?}"
            );
        }
        assert!(config_from(&parse(&[])).is_ok());
    }

    #[test]
    fn library_errors_name_flags() {
        let e = train_error(TrainError::setting(
            "clip_grad_norm",
            "must be >= 0 (0 disables)",
        ));
        assert_eq!(
            e.to_string(),
            "invalid setting: --clip-grad-norm must be >= 0 (0 disables)"
        );
        let e = train_error(TrainError::NonFinite {
            epoch: 1,
            step: 1,
            value: f32::INFINITY,
            lr: 1e6,
            last_good_epoch: 0,
        });
        assert_eq!(
            e.to_string(),
            "loss became inf at epoch 1, step 1 (lr 1000000); stopping. The last good checkpoint \
             (epoch 0) is kept in the run directory; try a smaller --lr or --clip-grad-norm"
        );
    }
}
