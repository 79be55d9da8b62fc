//! `nclab compare RUN...`: feature equivalence between runs, as matrices over all pairs
//! (computed by `nc_experiments::comparison`), with a heatmap per quantity.

use crate::plot::{self, Heatmap};
use anyhow::Result;
use nc_experiments::comparison::{compare_runs, table, Comparison};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    after_help = "Each RUN is a directory written by `nclab train` (final.safetensors; \
features_train.npz and features_test.npz from --save-features for CKA and prediction agreement)."
)]
pub struct Args {
    /// Run directories (two or more).
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Folder for compare.json, compare.csv and the heatmaps (default: ./compare).
    #[arg(long, default_value = "compare")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let comparison = compare_runs(&args.runs)?;
    for warning in &comparison.warnings {
        eprintln!("warning: {warning}");
    }
    write_outputs(&comparison, &args.out)?;
    print!(
        "{}",
        table(
            "means_procrustes",
            &comparison.runs,
            &comparison.means_procrustes
        )
    );
    if let Some(baseline) = &comparison.untrained_means_procrustes {
        println!(
            "untrained baseline (each run's epoch-0 means vs its trained means): {}",
            distances(baseline)
        );
    }
    println!("written: {}", args.out.join("compare.json").display());
    Ok(())
}

/// One distance per run, 4 decimals, `n/a` where a run saved no initial means.
pub fn distances(values: &[Option<f64>]) -> String {
    values
        .iter()
        .map(|d| d.map_or("n/a".into(), |x| format!("{x:.4}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// compare.json, compare.csv and one heatmap (PNG and SVG) per quantity.
pub fn write_outputs(c: &Comparison, out: &Path) -> Result<()> {
    c.write(out)?;
    for (name, m) in c.matrices() {
        plot::heatmap(
            &out.join(format!("compare_{name}")),
            &Heatmap {
                title: name.replace('_', " "),
                x_label: "run".into(),
                y_label: "run".into(),
                x_ticks: c.runs.clone(),
                y_ticks: c.runs.clone(),
                values: m.clone(),
                diverging: false,
            },
        )?;
    }
    Ok(())
}
