//! `nclab compare RUN...`: feature equivalence between runs, as matrices over all pairs
//! (computed by `nc_experiments::comparison`), with a heatmap per quantity.

use crate::plot::{self, Heatmap, Panel, Series};
use anyhow::Result;
use nc_experiments::comparison::{compare_runs, mean_over_pairs, table, Comparison};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(
    after_help = "Each RUN is a directory written by `nclab train` (final.safetensors; \
features_train.npz and features_test.npz from --save-features for CKA and prediction agreement). \
Runs trained with --nc-layers are also compared at every layer they all watched: \
compare_layers.csv and compare_layers.png/.svg."
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
    if !comparison.layers.is_empty() {
        print!("{}", comparison.depth_markdown());
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
    let names = plot::short_names(&c.runs, 18);
    for (name, m) in c.matrices() {
        plot::heatmap(
            &out.join(format!("compare_{name}")),
            &Heatmap {
                title: name.replace('_', " "),
                x_label: "run".into(),
                y_label: "run".into(),
                x_ticks: names.clone(),
                y_ticks: names.clone(),
                values: m.clone(),
                diverging: false,
                units: match name {
                    "train_cka" => "linear CKA (1 = same)",
                    "test_prediction_agreement" => "agreement (fraction)",
                    "per_class_accuracy_gap" => "accuracy gap (fraction)",
                    _ => "distance (0 = same)",
                }
                .into(),
            },
        )?;
    }
    if !c.layers.is_empty() {
        layers_figure(c, &out.join("compare_layers"))?;
    }
    Ok(())
}

/// Mean pairwise class-mean Procrustes distance and CKA against the layer index, with the
/// runs' mean distance from their own untrained networks as a baseline.
fn layers_figure(c: &Comparison, stem: &Path) -> Result<()> {
    let line = |label: &str, colour: usize, points: Vec<(f64, Option<f64>)>| Series {
        label: label.into(),
        colour,
        points: points
            .into_iter()
            .filter_map(|(x, y)| y.map(|y| (x, y)))
            .collect(),
    };
    let at = |f: &dyn Fn(&nc_experiments::comparison::LayerComparison) -> Option<f64>| {
        c.layers
            .iter()
            .map(|l| (l.index as f64, f(l)))
            .collect::<Vec<_>>()
    };
    let baseline = |l: &nc_experiments::comparison::LayerComparison| {
        let v: Vec<f64> = l
            .untrained_means_procrustes
            .iter()
            .flatten()
            .copied()
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let panel = |title: &str, y_label: &str, series: Vec<Series>| Panel {
        title: title.into(),
        x_label: "layer".into(),
        y_label: y_label.into(),
        series: series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .collect(),
        log_y: false,
    };
    let panels = [
        panel(
            "class-mean Procrustes distance",
            "distance",
            vec![
                line(
                    "between runs (mean over pairs)",
                    0,
                    at(&|l| mean_over_pairs(&l.means_procrustes)),
                ),
                line("each run vs its untrained network", 3, at(&baseline)),
            ],
        ),
        panel(
            "linear CKA of training features",
            "CKA",
            vec![line(
                "between runs (mean over pairs)",
                0,
                at(&|l| mean_over_pairs(&l.train_cka)),
            )],
        ),
    ];
    plot::panels(
        stem,
        "Runs compared layer by layer (layer 1 nearest the input)",
        &panels,
        2,
    )
}
