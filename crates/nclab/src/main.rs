//! `nclab`: does the choice of classification loss matter once a network is large and
//! trained long? See the README for the commands and the metric definitions.

mod args;
mod cmd;
mod plot;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "nclab",
    version,
    about = "Neural-collapse toolkit: train, measure, solve the UFM, compare losses"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: the paper's experiment at a preset scale (default: ~15 min on a laptop CPU).
    Reproduce(cmd::reproduce::Args),
    /// Compute every neural-collapse metric of a feature file (.npz, .safetensors or a directory of .npy).
    Analyze(cmd::analyze::Args),
    /// Solve the unconstrained feature model for one loss and check it against the closed-form optimum.
    Ufm(cmd::ufm::Args),
    /// Probe the UFM landscape: random restarts and curvature at critical points.
    Landscape(cmd::landscape::Args),
    /// Train a classifier under one loss and track neural collapse every epoch.
    Train(cmd::train::Args),
    /// Figures, tables and a Markdown report from a folder of training runs.
    Report(cmd::report::Args),
    /// Train every cell of loss x width x epochs x seed (here, or one cell per batch job).
    Sweep(cmd::sweep::Args),
    /// Feature equivalence between runs: Procrustes distances, CKA, prediction agreement.
    Compare(cmd::compare::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Reproduce(args) => cmd::reproduce::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Ufm(args) => cmd::ufm::run(args),
        Command::Landscape(args) => cmd::landscape::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Sweep(args) => cmd::sweep::run(args),
        Command::Compare(args) => cmd::compare::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            // 2 = bad input or a failed run, the same status clap uses for bad arguments.
            ExitCode::from(2)
        }
    }
}
