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
    /// Ceiling on memory sized by inputs, e.g. 8G or 512M (default: half of physical memory,
    /// or of `ulimit -v`; also NCLAB_MAX_MEMORY). Larger inputs are refused with a message.
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_memory)]
    max_memory: Option<u64>,
}

fn parse_memory(text: &str) -> Result<u64, String> {
    nc_data::limits::parse_size(text)
        .ok_or_else(|| format!("'{text}' is not a size (bytes, or with K, M, G or T)"))
}

#[derive(Subcommand)]
enum Command {
    /// The main job: the paper's experiment at a preset scale (default: ~15 min on a laptop CPU).
    Reproduce(cmd::reproduce::Args),
    /// Compute every neural-collapse metric of a feature file (.npz, .safetensors, .pt/.pth or a directory of .npy), or of several files as shards of one set.
    Analyze(cmd::analyze::Args),
    /// Merge the partial states of `analyze --phase means|scatter` run per shard (e.g. by a batch scheduler).
    Merge(cmd::merge::Args),
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
    if let Some(bytes) = cli.max_memory {
        nc_data::limits::set_max_memory(bytes);
    }
    let result = match cli.command {
        Command::Reproduce(args) => cmd::reproduce::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Merge(args) => cmd::merge::run(args),
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
            eprintln!("error: {}", describe(&err));
            // 2 = bad input or a failed run, the same status clap uses for bad arguments.
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each cause once: the libraries' messages already
/// carry the message of their source (so that a front end printing one error says it all),
/// while contexts added here do not.
fn describe(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::describe;
    use anyhow::Context;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::other("too many levels of symbolic links");
        // A library error that quotes its source and also chains it.
        let data = nc_data::DataError::Io {
            path: "loop.npz".into(),
            action: "opening",
            source: io,
        };
        let err = anyhow::Error::from(data);
        assert_eq!(
            describe(&err),
            "loop.npz: opening failed: too many levels of symbolic links"
        );
        // A context added at the edge keeps its cause.
        let err = Err::<(), _>(std::io::Error::other("disk full"))
            .context("cannot write out.csv")
            .unwrap_err();
        assert_eq!(describe(&err), "cannot write out.csv: disk full");
    }
}
