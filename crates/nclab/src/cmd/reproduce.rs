//! `nclab reproduce`: the paper's experiment at a chosen scale — a sweep over the four losses,
//! then the report, the feature comparison and a short verdict. The presets are
//! `nc_experiments::presets`'.

use super::{compare, report, sweep};
use crate::args::user_error;
use anyhow::{Context, Result};
use nc_experiments::comparison::{compare_runs, table};
use nc_experiments::presets::{Plan, Preset};
use nc_experiments::sweep::CellState;
use std::path::PathBuf;

fn preset_parser() -> impl clap::builder::TypedValueParser<Value = Preset> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(
        Preset::ALL.map(|p| clap::builder::PossibleValue::new(p.name()).help(p.description())),
    )
    .map(|name| {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .expect("a listed preset")
    })
}

#[derive(clap::Args)]
#[command(
    after_help = "Re-running the same command continues where it stopped: finished cells are \
skipped and interrupted ones resumed."
)]
pub struct Args {
    /// Which scale to run.
    #[arg(long, value_parser = preset_parser(), default_value = Preset::ALL[0].name())]
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
    /// Seeds per cell, 1..=N (default: the preset's, 3). With one seed the report cannot test
    /// differences between losses against the seed noise.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: Option<u64>,
}

pub fn run(args: Args) -> Result<()> {
    let mut plan =
        Plan::new(args.preset, args.data_dir.as_deref(), &args.device).map_err(user_error)?;
    if let Some(seeds) = args.seeds {
        plan.grid.seeds = (1..=seeds).collect();
    }
    let mut job = sweep::Job::new(&plan.grid, &args.out, plan.train_args.clone())?;
    job.jobs = args.jobs.unwrap_or(if args.preset.cells_fit_one_core() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    });
    job.retry_failed = true;
    let cells = &job.cells;
    let done = cells
        .iter()
        .filter(|c| job.sweep.state(c) == CellState::Finished)
        .count();
    eprintln!(
        "plan: {} cells ({} losses x {} widths x {} epoch settings x {} seeds), {} SGD steps in all, {done} already finished; output in {}",
        cells.len(),
        plan.grid.losses.len(),
        plan.grid.widths.len(),
        plan.grid.epochs.len(),
        plan.grid.seeds.len(),
        plan.total_steps(cells),
        args.out.display()
    );
    if args.dry_run {
        for (i, cell) in cells.iter().enumerate() {
            println!("{i:>4}  {}  ({:?})", cell.name(), job.sweep.state(cell));
        }
        return Ok(());
    }
    sweep::execute(&job)?;

    let report_dir = args.out.join("report");
    let report = report::write_report(&args.out, &report_dir)?;
    let runs: Vec<PathBuf> = plan
        .comparison_cells(cells)
        .into_iter()
        .map(|c| job.sweep.run_dir(c).root)
        .collect();
    let comparison = compare_runs(&runs)?;
    let compare_dir = args.out.join("compare");
    compare::write_outputs(&comparison, &compare_dir)?;
    let depth = comparison.depth_markdown();
    if !depth.is_empty() {
        // The report gains the layer-by-layer comparison of the compared cells.
        let report_md = report_dir.join("report.md");
        let mut md = std::fs::read_to_string(&report_md)
            .with_context(|| format!("cannot read {}", report_md.display()))?;
        md.push_str(&format!(
            "\n{depth}\nRuns compared: {} (`compare/compare_layers.csv`, figure              `compare/compare_layers.png`).\n",
            comparison.runs.join(", ")
        ));
        report::write_text(&report_md, &md)?;
    }

    println!("\n{}", report.verdict_table());
    println!(
        "{}",
        table(
            "class-mean Procrustes distance (0 = same geometry up to rotation and scale)",
            &comparison.runs,
            &comparison.means_procrustes
        )
    );
    if let Some(baseline) = &comparison.untrained_means_procrustes {
        println!(
            "same distances from each run's untrained (epoch-0) network: {}",
            compare::distances(baseline)
        );
    }
    print!("{depth}");
    println!(
        "report: {}\ncompare: {}",
        report_dir.join("report.md").display(),
        compare_dir.join("compare.json").display()
    );
    Ok(())
}
