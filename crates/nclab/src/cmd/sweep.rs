//! `nclab sweep`: every cell of loss x width x epochs x seed as an ordinary `nclab train` run
//! directory with a stable name, run here (`--jobs N` at once), listed as one command per
//! cell for a batch system (`--list`), or run one cell (`--cell I`, e.g. a Slurm array task).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(clap::Args, Clone)]
#[command(
    after_help = "Cells are ordered loss, then width, then epochs, then seed (the last varies fastest); \
--cell I counts from 0 in that order, as --list prints them.\n\
Example: nclab sweep --losses ce,ls,fl,mse --widths 0.5,1 --epochs 50,100 --seeds 1,2 --out runs/sweep -- --data mnist --batch-norm"
)]
pub struct Args {
    /// Losses, comma-separated (ce, ls, fl, mse).
    #[arg(long, value_delimiter = ',', default_value = "ce,ls,fl,mse")]
    pub losses: Vec<String>,
    /// Width multipliers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub widths: Vec<f64>,
    /// Training lengths in epochs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub epochs: Vec<usize>,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub seeds: Vec<u64>,
    /// Folder of the sweep: one run directory per cell.
    #[arg(long)]
    pub out: PathBuf,
    /// Cells to train at once on this machine.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Print one `nclab train` command per cell (for GNU parallel or a batch system) and exit.
    #[arg(long, conflicts_with = "cell")]
    pub list: bool,
    /// Run only cell I (0-based, in --list order), e.g. `--cell $SLURM_ARRAY_TASK_ID`.
    #[arg(long, value_name = "I")]
    pub cell: Option<usize>,
    /// Run again the cells whose last attempt failed (they are skipped otherwise).
    #[arg(long)]
    pub retry_failed: bool,
    /// Options passed to every `nclab train` (after `--`), e.g. `-- --data mnist --batch-norm`.
    #[arg(last = true)]
    pub train_args: Vec<String>,
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub loss: String,
    pub width: f64,
    pub epochs: usize,
    pub seed: u64,
}

impl Cell {
    /// The run directory's name: `{loss}_w{width}_e{epochs}_s{seed}`.
    pub fn name(&self) -> String {
        format!(
            "{}_w{}_e{}_s{}",
            self.loss, self.width, self.epochs, self.seed
        )
    }

    /// The arguments of `nclab train` for this cell (without the program name).
    pub fn train_args(&self, fixed: &[String], out: &Path) -> Vec<String> {
        let mut args = vec!["train".to_string()];
        args.extend(fixed.iter().cloned());
        args.extend([
            "--loss".into(),
            self.loss.clone(),
            "--width".into(),
            self.width.to_string(),
            "--epochs".into(),
            self.epochs.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--out".into(),
            out.join(self.name()).display().to_string(),
        ]);
        args
    }
}

/// Options the sweep sets per cell, so they may not appear among the fixed ones.
const SWEPT_FLAGS: [&str; 6] = [
    "--loss", "--width", "--epochs", "--seed", "--out", "--resume",
];

/// The cells in their fixed order: loss, width, epochs, seed (seed fastest).
pub fn cells(args: &Args) -> Result<Vec<Cell>> {
    for loss in &args.losses {
        if !["ce", "ls", "fl", "mse"].contains(&loss.as_str()) {
            bail!("--losses: unknown loss '{loss}' (expected ce, ls, fl, mse)");
        }
    }
    if let Some(w) = args.widths.iter().find(|w| !(**w > 0.0 && w.is_finite())) {
        bail!("--widths: {w} is not a positive width multiplier");
    }
    if args.epochs.contains(&0) {
        bail!("--epochs: every training length must be at least 1");
    }
    for flag in &args.train_args {
        let name = flag.split('=').next().unwrap_or(flag);
        if SWEPT_FLAGS.contains(&name) {
            bail!("{name} is set by the sweep for each cell; give --losses/--widths/--epochs/--seeds/--out instead");
        }
    }
    let mut cells = Vec::new();
    for loss in &args.losses {
        for &width in &args.widths {
            for &epochs in &args.epochs {
                for &seed in &args.seeds {
                    cells.push(Cell {
                        loss: loss.clone(),
                        width,
                        epochs,
                        seed,
                    });
                }
            }
        }
    }
    if cells.is_empty() {
        bail!("the sweep has no cells (every list needs at least one value)");
    }
    Ok(cells)
}

/// Where a cell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// `summary.json` exists.
    Finished,
    /// The last attempt failed (a marker in `OUT/.sweep/`).
    Failed,
    /// Started but not finished: continue it with `--resume`.
    Interrupted,
    New,
}

fn failure_marker(out: &Path, cell: &Cell) -> PathBuf {
    out.join(".sweep").join(format!("{}.failed", cell.name()))
}

pub fn cell_state(out: &Path, cell: &Cell) -> CellState {
    let dir = out.join(cell.name());
    if dir.join("summary.json").is_file() {
        CellState::Finished
    } else if failure_marker(out, cell).is_file() {
        CellState::Failed
    } else if dir.join("config.json").is_file() {
        CellState::Interrupted
    } else {
        CellState::New
    }
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

pub fn run(args: Args) -> Result<()> {
    let cells = cells(&args)?;
    if args.list {
        for cell in &cells {
            let line: Vec<String> = cell
                .train_args(&args.train_args, &args.out)
                .iter()
                .map(|a| shell_quote(a))
                .collect();
            println!("nclab {}", line.join(" "));
        }
        return Ok(());
    }
    std::fs::create_dir_all(args.out.join(".sweep"))
        .with_context(|| format!("cannot create the sweep folder {}", args.out.display()))?;
    let selected: Vec<&Cell> = match args.cell {
        Some(i) => vec![cells.get(i).with_context(|| {
            format!(
                "--cell {i}: the sweep has {} cells, numbered 0..{}",
                cells.len(),
                cells.len() - 1
            )
        })?],
        None => cells.iter().collect(),
    };
    let mut todo = Vec::new();
    for cell in selected {
        match cell_state(&args.out, cell) {
            CellState::Finished => eprintln!("{}: finished, skipped", cell.name()),
            CellState::Failed if !args.retry_failed => {
                eprintln!(
                    "{}: failed before, skipped (--retry-failed runs it again)",
                    cell.name()
                )
            }
            state => todo.push((cell, state)),
        }
    }
    let exe = std::env::current_exe().context("cannot find the nclab executable")?;
    // Several cells at once would interleave their progress bars: each writes a log instead.
    let quiet = args.jobs > 1;
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let total = todo.len();
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.clamp(1, total.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(cell, state)) = todo.get(i) else {
                    break;
                };
                eprintln!(
                    "[{}/{total}] {}: {}",
                    i + 1,
                    cell.name(),
                    if state == CellState::Interrupted {
                        "resuming"
                    } else {
                        "training"
                    }
                );
                if let Err(e) = run_cell(&exe, &args, cell, state, quiet) {
                    let _ = std::fs::write(failure_marker(&args.out, cell), format!("{e:#}\n"));
                    eprintln!("[{}/{total}] {}: FAILED: {e:#}", i + 1, cell.name());
                    failures.lock().unwrap().push(cell.name());
                } else {
                    let _ = std::fs::remove_file(failure_marker(&args.out, cell));
                    eprintln!("[{}/{total}] {}: done", i + 1, cell.name());
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        bail!(
            "{} of {total} cells failed: {} (logs in {}; rerun with --retry-failed)",
            failures.len(),
            failures.join(", "),
            args.out.join(".sweep").display()
        );
    }
    Ok(())
}

/// Trains (or resumes) one cell in a child process; its output goes to `OUT/.sweep/CELL.log`.
fn run_cell(exe: &Path, args: &Args, cell: &Cell, state: CellState, quiet: bool) -> Result<()> {
    let mut command = Command::new(exe);
    let dir = args.out.join(cell.name());
    if state == CellState::Interrupted
        || (state == CellState::Failed && dir.join("config.json").is_file())
    {
        command.args(["train", "--resume"]).arg(&dir);
    } else {
        command.args(cell.train_args(&args.train_args, &args.out));
    }
    if quiet {
        command.arg("--quiet");
    }
    let log_path = args.out.join(".sweep").join(format!("{}.log", cell.name()));
    let status = if quiet {
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot write {}", log_path.display()))?;
        command.stdout(log.try_clone()?).stderr(log).status()
    } else {
        command.status()
    }
    .with_context(|| format!("cannot start {}", exe.display()))?;
    if !status.success() {
        bail!(
            "nclab train exited with {status}{}",
            if quiet {
                format!(" (see {})", log_path.display())
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &str) -> Args {
        Cli::try_parse_from(std::iter::once("sweep").chain(line.split_whitespace()))
            .unwrap()
            .args
    }

    #[test]
    fn cells_are_ordered_with_seed_fastest_and_named_stably() {
        let args = parse("--losses ce,mse --widths 0.5,1 --epochs 10 --seeds 1,2 --out /tmp/s");
        let cells = cells(&args).unwrap();
        let names: Vec<String> = cells.iter().map(Cell::name).collect();
        assert_eq!(
            names,
            [
                "ce_w0.5_e10_s1",
                "ce_w0.5_e10_s2",
                "ce_w1_e10_s1",
                "ce_w1_e10_s2",
                "mse_w0.5_e10_s1",
                "mse_w0.5_e10_s2",
                "mse_w1_e10_s1",
                "mse_w1_e10_s2"
            ]
        );
    }

    #[test]
    fn train_arguments_carry_fixed_options_and_the_cell() {
        let args = parse(
            "--losses ls --widths 2 --epochs 5 --seeds 3 --out runs/x -- --data mnist --batch-norm",
        );
        let cell = &cells(&args).unwrap()[0];
        let line = cell.train_args(&args.train_args, &args.out).join(" ");
        assert_eq!(line, "train --data mnist --batch-norm --loss ls --width 2 --epochs 5 --seed 3 --out runs/x/ls_w2_e5_s3");
    }

    #[test]
    fn swept_options_and_bad_values_are_rejected() {
        assert!(cells(&parse("--out o -- --loss ce")).is_err());
        assert!(cells(&parse("--out o -- --epochs=3")).is_err());
        assert!(cells(&parse("--losses ce,xent --out o")).is_err());
        assert!(cells(&parse("--widths 0 --out o")).is_err());
        assert!(cells(&parse("--epochs 0 --out o")).is_err());
    }

    #[test]
    fn state_follows_the_files() {
        let out = std::env::temp_dir().join(format!("nclab-sweep-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let cell = Cell {
            loss: "ce".into(),
            width: 1.0,
            epochs: 2,
            seed: 1,
        };
        assert_eq!(cell_state(&out, &cell), CellState::New);
        std::fs::create_dir_all(out.join(cell.name())).unwrap();
        std::fs::write(out.join(cell.name()).join("config.json"), "{}").unwrap();
        assert_eq!(cell_state(&out, &cell), CellState::Interrupted);
        std::fs::create_dir_all(out.join(".sweep")).unwrap();
        std::fs::write(failure_marker(&out, &cell), "boom").unwrap();
        assert_eq!(cell_state(&out, &cell), CellState::Failed);
        std::fs::write(out.join(cell.name()).join("summary.json"), "{}").unwrap();
        assert_eq!(cell_state(&out, &cell), CellState::Finished);
    }
}
