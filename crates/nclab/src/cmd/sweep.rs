//! `nclab sweep`: every cell of loss x width x epochs x seed as an ordinary `nclab train` run
//! directory with a stable name, run here (`--jobs N` at once), listed as one command per
//! cell for a batch system (`--list`), or run one cell (`--cell I`, e.g. a Slurm array task).
//! The grid, the cell names and their state are `nc_experiments::sweep`'s.

use crate::args::{loss_kind_parser, user_error};
use anyhow::{bail, Context, Result};
use nc_experiments::sweep::{Cell, CellState, Grid, Lock, SweepDir};
use nc_math::loss::LossKind;
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
    /// Losses, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = loss_kind_parser(), default_values_t = LossKind::ALL)]
    pub losses: Vec<LossKind>,
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

/// Options of `nclab train` the sweep sets per cell, so they may not appear among the fixed ones.
const SWEPT_FLAGS: [&str; 6] = [
    "--loss", "--width", "--epochs", "--seed", "--out", "--resume",
];

/// The arguments of `nclab train` for `cell` (without the program name).
pub fn train_args(cell: &Cell, fixed: &[String], sweep: &SweepDir) -> Vec<String> {
    let mut args = vec!["train".to_string()];
    args.extend(fixed.iter().cloned());
    args.extend([
        "--loss".into(),
        cell.loss.name().into(),
        "--width".into(),
        cell.width.to_string(),
        "--epochs".into(),
        cell.epochs.to_string(),
        "--seed".into(),
        cell.seed.to_string(),
        "--out".into(),
        sweep.run_dir(cell).root.display().to_string(),
    ]);
    args
}

/// A sweep to run here: its cells, where, how many at once, and the shared train options.
pub struct Job {
    pub cells: Vec<Cell>,
    pub sweep: SweepDir,
    pub jobs: usize,
    pub retry_failed: bool,
    pub train_args: Vec<String>,
}

impl Job {
    /// Checks the grid and the shared options (no per-cell option among them).
    pub fn new(grid: &Grid, out: &Path, train_args: Vec<String>) -> Result<Job> {
        let cells = grid.cells().map_err(user_error)?;
        for flag in &train_args {
            let name = flag.split('=').next().unwrap_or(flag);
            if SWEPT_FLAGS.contains(&name) {
                bail!("{name} is set by the sweep for each cell; give --losses/--widths/--epochs/--seeds/--out instead");
            }
        }
        Ok(Job {
            cells,
            sweep: SweepDir::new(out),
            jobs: 1,
            retry_failed: false,
            train_args,
        })
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
    let grid = Grid {
        losses: args.losses,
        widths: args.widths,
        epochs: args.epochs,
        seeds: args.seeds,
    };
    let mut job = Job::new(&grid, &args.out, args.train_args)?;
    job.jobs = args.jobs;
    job.retry_failed = args.retry_failed;
    if args.list {
        for cell in &job.cells {
            let line: Vec<String> = train_args(cell, &job.train_args, &job.sweep)
                .iter()
                .map(|a| shell_quote(a))
                .collect();
            println!("nclab {}", line.join(" "));
        }
        return Ok(());
    }
    if let Some(i) = args.cell {
        let Some(cell) = job.cells.get(i).cloned() else {
            bail!(
                "--cell {i}: the sweep has {} cells, numbered 0..{}",
                job.cells.len(),
                job.cells.len() - 1
            );
        };
        job.cells = vec![cell];
    }
    execute(&job)
}

/// Trains (or resumes) every cell of `job` that is not finished, `job.jobs` at once, each in
/// a child process; a failed cell leaves a marker and the others go on.
pub fn execute(job: &Job) -> Result<()> {
    release_locks_on_termination();
    let sweep = &job.sweep;
    std::fs::create_dir_all(sweep.bookkeeping())
        .with_context(|| format!("cannot create the sweep folder {}", sweep.root.display()))?;
    let mut todo = Vec::new();
    for cell in &job.cells {
        match sweep.state(cell) {
            CellState::Finished => eprintln!("{}: finished, skipped", cell.name()),
            CellState::Failed if !job.retry_failed => {
                eprintln!(
                    "{}: failed before, skipped (--retry-failed runs it again)",
                    cell.name()
                )
            }
            _ => todo.push(cell),
        }
    }
    let exe = std::env::current_exe().context("cannot find the nclab executable")?;
    // Several cells at once would interleave their progress bars: each writes a log instead.
    let quiet = job.jobs > 1;
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let total = todo.len();
    std::thread::scope(|scope| {
        for _ in 0..job.jobs.clamp(1, total.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&cell) = todo.get(i) else {
                    break;
                };
                // Another process (a second sweep over the same grid, a batch job) may train
                // the cell: hold its lock, then look at its state again.
                let _lock = match sweep.lock(cell) {
                    Ok(Lock::Acquired(lock)) => lock,
                    Ok(Lock::Held(owner)) => {
                        eprintln!(
                            "[{}/{total}] {}: being trained by {owner}, skipped",
                            i + 1,
                            cell.name()
                        );
                        continue;
                    }
                    Err(e) => {
                        eprintln!("[{}/{total}] {}: FAILED: {e}", i + 1, cell.name());
                        failures.lock().unwrap().push(cell.name());
                        continue;
                    }
                };
                let state = sweep.state(cell);
                if state == CellState::Finished {
                    eprintln!(
                        "[{}/{total}] {}: finished meanwhile, skipped",
                        i + 1,
                        cell.name()
                    );
                    continue;
                }
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
                if let Err(e) = run_cell(&exe, job, cell, state, quiet) {
                    let _ = sweep.mark_failed(cell, &format!("{e:#}\n"));
                    eprintln!("[{}/{total}] {}: FAILED: {e:#}", i + 1, cell.name());
                    failures.lock().unwrap().push(cell.name());
                } else {
                    let _ = sweep.clear_failed(cell);
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
            sweep.bookkeeping().display()
        );
    }
    Ok(())
}

/// The `nclab train` arguments that train or resume `cell` from `state`; `quiet` adds
/// `--quiet` unless the shared options already hold it.
fn child_args(job: &Job, cell: &Cell, state: CellState, quiet: bool) -> Vec<String> {
    let run = job.sweep.run_dir(cell);
    let mut args = if state == CellState::Interrupted
        || (state == CellState::Failed && run.config().is_file())
    {
        vec![
            "train".to_string(),
            "--resume".to_string(),
            run.root.display().to_string(),
        ]
    } else {
        train_args(cell, &job.train_args, &job.sweep)
    };
    let has_quiet = job.train_args.iter().any(|a| a == "--quiet" || a == "-q");
    if quiet && !has_quiet {
        args.push("--quiet".into());
    }
    args
}

/// Trains (or resumes) one cell in a child process; its output goes to `OUT/.sweep/CELL.log`.
/// The child dies with this process: killing the sweep leaves no trainer writing on.
fn run_cell(exe: &Path, job: &Job, cell: &Cell, state: CellState, quiet: bool) -> Result<()> {
    let mut command = Command::new(exe);
    command.args(child_args(job, cell, state, quiet));
    die_with_parent(&mut command);
    let log_path = job.sweep.log(cell);
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

/// On SIGTERM, SIGINT or SIGHUP (a batch system's time limit or preemption, Ctrl-C), the
/// sweep releases its cell locks and exits; its trainers die with it (`die_with_parent`), so
/// the next attempt, on any host, resumes the cells. Only SIGKILL leaves locks behind.
#[cfg(target_os = "linux")]
fn release_locks_on_termination() {
    use std::sync::Once;
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: plain libc calls on a local, zero-initialised signal set. Blocking the
        // signals here (before any worker thread exists) leaves them to the one thread that
        // waits for them; spawned children unblock them again (`die_with_parent`).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return;
            }
            std::thread::spawn(move || {
                let mut signal: libc::c_int = 0;
                if libc::sigwait(&set, &mut signal) == 0 {
                    let released = nc_experiments::sweep::release_held_locks();
                    eprintln!("sweep stopped by signal {signal}; released {released} cell lock(s)");
                    std::process::exit(128 + signal);
                }
            });
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn release_locks_on_termination() {}

/// Asks the kernel to end `command`'s process when the thread that started it (and so this
/// sweep) dies, even by SIGKILL (Linux's parent-death signal).
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and calls only the
    // async-signal-safe sigemptyset, sigprocmask, prctl and getppid.
    unsafe {
        command.pre_exec(move || {
            // The sweep blocks the termination signals for its own signal thread; the
            // trainer must receive them (the mask survives exec).
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The sweep may have died before the signal was armed.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &str) -> Result<Job, String> {
        let args = Cli::try_parse_from(std::iter::once("sweep").chain(line.split_whitespace()))
            .map_err(|e| e.to_string())?
            .args;
        let grid = Grid {
            losses: args.losses,
            widths: args.widths,
            epochs: args.epochs,
            seeds: args.seeds,
        };
        Job::new(&grid, &args.out, args.train_args).map_err(|e| e.to_string())
    }

    #[test]
    fn train_arguments_carry_fixed_options_and_the_cell() {
        let job = parse(
            "--losses ls --widths 2 --epochs 5 --seeds 3 --out runs/x -- --data mnist --batch-norm",
        )
        .unwrap();
        let line = train_args(&job.cells[0], &job.train_args, &job.sweep).join(" ");
        assert_eq!(line, "train --data mnist --batch-norm --loss ls --width 2 --epochs 5 --seed 3 --out runs/x/ls_w2_e5_s3");
    }

    #[test]
    fn the_default_losses_are_all_four() {
        let job = parse("--out o").unwrap();
        let names: Vec<String> = job.cells.iter().map(Cell::name).collect();
        assert_eq!(
            names,
            [
                "ce_w1_e100_s1",
                "ls_w1_e100_s1",
                "fl_w1_e100_s1",
                "mse_w1_e100_s1"
            ]
        );
    }

    #[test]
    fn quiet_is_passed_once() {
        let job = parse("--losses ce --out o -- --quiet").unwrap();
        let cell = &job.cells[0];
        let args = child_args(&job, cell, CellState::New, true);
        assert_eq!(
            args.iter().filter(|a| *a == "--quiet").count(),
            1,
            "{args:?}"
        );
        let job = parse("--losses ce --out o").unwrap();
        let args = child_args(&job, &job.cells[0], CellState::New, true);
        assert_eq!(args.last().map(String::as_str), Some("--quiet"));
        let args = child_args(&job, &job.cells[0], CellState::New, false);
        assert!(!args.contains(&"--quiet".to_string()));
    }

    #[test]
    fn swept_options_and_bad_values_are_rejected() {
        assert!(parse("--out o -- --loss ce").is_err());
        assert!(parse("--out o -- --epochs=3").is_err());
        let unknown = parse("--losses ce,xent --out o").err().unwrap();
        assert!(unknown.contains("xent"), "{unknown}");
        let width = parse("--widths 0 --out o").err().unwrap();
        assert!(width.starts_with("--widths:"), "{width}");
        let epochs = parse("--epochs 0 --out o").err().unwrap();
        assert!(epochs.starts_with("--epochs:"), "{epochs}");
    }
}
