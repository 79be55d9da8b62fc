//! `nclab reproduce`: the paper's experiment at a chosen scale — a sweep over the four losses,
//! then the report, the feature comparison and a short verdict.

use super::{compare, report, sweep};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Embedded MNIST-10k, 3-hidden-layer MLP with BatchNorm at widths 0.5 and 1, 400 epochs, 4 losses, one seed: ~6 min on 2 CPU cores.
    MnistMlp,
    /// The paper's CIFAR-10 grid: WideResNet-50-style, widths 0.25/0.5/1/2, 100/200/400/800 epochs, 3 seeds (GPU).
    PaperCifar10,
    /// The same grid on CIFAR-100.
    PaperCifar100,
}

#[derive(clap::Args)]
#[command(
    after_help = "Re-running the same command continues where it stopped: finished cells are \
skipped and interrupted ones resumed."
)]
pub struct Args {
    /// Which scale to run.
    #[arg(long, value_enum, default_value = "mnist-mlp")]
    pub preset: Preset,
    /// Output folder: one run directory per cell, plus report/ and compare/.
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Folder of the CIFAR binaries (cifar-10-batches-bin / cifar-100-binary) for the paper presets.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the plan (cells, estimated SGD steps) without training.
    #[arg(long)]
    pub dry_run: bool,
    /// Cells to train at once (default: one per CPU core for mnist-mlp, whose small cells
    /// use about one core each; 1 for the paper presets, which share one accelerator).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// `cpu` or `cuda:N` (passed to every `nclab train`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// A preset spelled out: the sweep grid, the options every cell shares, and the training
/// set size (for the work estimate).
pub struct Plan {
    pub losses: Vec<String>,
    pub widths: Vec<f64>,
    pub epochs: Vec<usize>,
    pub seeds: Vec<u64>,
    pub train_args: Vec<String>,
    pub train_samples: usize,
    pub batch_size: usize,
}

/// Settings of the default job, chosen so that every loss collapses visibly within the time
/// budget (see the README): BatchNorm MLP with three hidden layers, 142 digits per class, 400
/// epochs. 142 per class leaves 128 per class after the 10% validation split: 1,280
/// training digits, ten full batches of 128. (With 100 per class the last batch of every
/// epoch held 4 samples, whose BatchNorm statistics are so noisy that CE, LS and FL stopped
/// collapsing at NC1 ~ 0.2.) Measured here: two hidden layers, or width 2, or 200 epochs
/// left FL (and at width 2 also CE) short of a tenfold drop of train NC1; three layers at
/// widths 0.5 and 1 for 400 epochs take every loss well past it.
pub const MNIST_PER_CLASS: usize = 142;
pub const MNIST_EPOCHS: usize = 400;
pub const MNIST_DEPTH: usize = 3;

pub fn plan(args: &Args) -> Result<Plan> {
    let losses = ["ce", "ls", "fl", "mse"].map(String::from).to_vec();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Ok(match args.preset {
        Preset::MnistMlp => {
            let mut train_args = strings(&[
                "--data",
                "mnist",
                "--model",
                "mlp",
                "--hidden",
                "512",
                "--batch-norm",
            ]);
            train_args.extend([
                "--depth".into(),
                MNIST_DEPTH.to_string(),
                "--per-class".into(),
                MNIST_PER_CLASS.to_string(),
                "--save-features".into(),
            ]);
            train_args.extend(["--device".into(), args.device.clone()]);
            Plan {
                losses,
                widths: vec![0.5, 1.0],
                epochs: vec![MNIST_EPOCHS],
                seeds: vec![1],
                train_args,
                // round(10%) of each class is held out for validation.
                train_samples: 10
                    * (MNIST_PER_CLASS - (MNIST_PER_CLASS as f64 * 0.1).round() as usize),
                batch_size: 128,
            }
        }
        Preset::PaperCifar10 | Preset::PaperCifar100 => {
            let Some(dir) = &args.data_dir else {
                let name = clap::ValueEnum::to_possible_value(&args.preset)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                bail!("--preset {name} needs --data-dir DIR with the CIFAR binary files");
            };
            let kind = if args.preset == Preset::PaperCifar10 {
                "cifar10"
            } else {
                "cifar100"
            };
            let mut train_args = strings(&["--data"]);
            train_args.push(format!("{kind}:{}", dir.display()));
            train_args.extend(strings(&[
                "--model",
                "wrn50",
                "--save-features",
                "--device",
            ]));
            train_args.push(args.device.clone());
            Plan {
                losses,
                widths: vec![0.25, 0.5, 1.0, 2.0],
                epochs: vec![100, 200, 400, 800],
                seeds: vec![1, 2, 3],
                train_args,
                train_samples: 45_000,
                batch_size: 128,
            }
        }
    })
}

fn sweep_args(args: &Args, plan: &Plan) -> sweep::Args {
    sweep::Args {
        losses: plan.losses.clone(),
        widths: plan.widths.clone(),
        epochs: plan.epochs.clone(),
        seeds: plan.seeds.clone(),
        out: args.out.clone(),
        jobs: args.jobs.unwrap_or(match args.preset {
            Preset::MnistMlp => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Preset::PaperCifar10 | Preset::PaperCifar100 => 1,
        }),
        list: false,
        cell: None,
        retry_failed: true,
        train_args: plan.train_args.clone(),
    }
}

pub fn run(args: Args) -> Result<()> {
    let plan = plan(&args)?;
    let sweep = sweep_args(&args, &plan);
    let cells = sweep::cells(&sweep)?;
    let steps: usize = cells
        .iter()
        .map(|c| c.epochs * plan.train_samples.div_ceil(plan.batch_size))
        .sum();
    let done = cells
        .iter()
        .filter(|c| sweep::cell_state(&args.out, c) == sweep::CellState::Finished)
        .count();
    eprintln!(
        "plan: {} cells ({} losses x {} widths x {} epoch settings x {} seeds), {steps} SGD steps in all, {done} already finished; output in {}",
        cells.len(),
        plan.losses.len(),
        plan.widths.len(),
        plan.epochs.len(),
        plan.seeds.len(),
        args.out.display()
    );
    if args.dry_run {
        for (i, cell) in cells.iter().enumerate() {
            println!(
                "{i:>4}  {}  ({:?})",
                cell.name(),
                sweep::cell_state(&args.out, cell)
            );
        }
        return Ok(());
    }
    sweep::run(sweep)?;

    let report_dir = args.out.join("report");
    let report = report::write_report(&args.out, &report_dir)?;
    // Compare the four losses at the widest, longest setting (first seed).
    let widest = plan.widths.iter().copied().fold(f64::MIN, f64::max);
    let longest = *plan.epochs.iter().max().unwrap_or(&0);
    let runs: Vec<PathBuf> = cells
        .iter()
        .filter(|c| c.width == widest && c.epochs == longest && c.seed == plan.seeds[0])
        .map(|c| args.out.join(c.name()))
        .collect();
    let comparison = compare::compare_runs(&runs)?;
    let compare_dir = args.out.join("compare");
    compare::write_outputs(&comparison, &compare_dir)?;

    println!("\n{}", report.verdict_table());
    println!(
        "{}",
        compare::table(
            "class-mean Procrustes distance (0 = same geometry up to rotation and scale)",
            &comparison.runs,
            &comparison.means_procrustes
        )
    );
    if let Some(baseline) = &comparison.untrained_means_procrustes {
        println!(
            "same distances from each run's untrained (epoch-0) network: {}",
            baseline
                .iter()
                .map(|d| d.map_or("n/a".into(), |x| format!("{x:.4}")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "report: {}\ncompare: {}",
        report_dir.join("report.md").display(),
        compare_dir.join("compare.json").display()
    );
    Ok(())
}
