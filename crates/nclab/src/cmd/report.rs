//! `nclab report DIR`: figures, tables and a Markdown report from any mix of run directories.

use crate::plot::{self, Heatmap, Panel, Series};
use crate::runs::{self, Run};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Folder holding run directories (`nclab train --out` / `nclab sweep --out`), at any depth.
    pub dir: PathBuf,
    /// Where to write the report (default: DIR/report).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let out = args.out.unwrap_or_else(|| args.dir.join("report"));
    let report = write_report(&args.dir, &out)?;
    println!("{}", report.verdict_table());
    for dir in &report.unfinished {
        eprintln!("left out (unfinished, no summary.json): {}", dir.display());
    }
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

/// The order losses appear in, and their colour index.
const LOSS_ORDER: [&str; 4] = ["ce", "ls", "fl", "mse"];

/// Curves of the paper's figure, with their axis names.
const NC_CURVES: [(&str, &str); 5] = [
    ("nc1", "NC1"),
    ("nc2", "NC2"),
    ("nc3", "NC3"),
    ("bias_relation", "||W mu_G + b||"),
    ("nc4", "NC4"),
];

fn loss_rank(loss: &str) -> usize {
    LOSS_ORDER
        .iter()
        .position(|l| *l == loss)
        .unwrap_or(LOSS_ORDER.len())
}

/// Mean and sample standard deviation (ddof 1; None for a single value).
pub fn mean_std(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// One (width, epochs, loss) cell of the sweep, over its seeds.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub width: f64,
    pub epochs: usize,
    pub loss: String,
    pub seeds: usize,
    /// Best-validation test accuracy: mean and std over seeds.
    pub test_acc: (f64, Option<f64>),
    pub final_train_acc: f64,
    pub initial_train_nc1: Option<f64>,
    pub final_train_nc1: Option<f64>,
    pub final_train_nc2: Option<f64>,
    pub final_train_nc3: Option<f64>,
    pub final_test_nc1: Option<f64>,
}

pub struct Report {
    pub cells: Vec<CellResult>,
    pub unfinished: Vec<PathBuf>,
}

impl Report {
    /// A short plain-text table: one line per (width, epochs, loss).
    pub fn verdict_table(&self) -> String {
        let mut out = format!(
            "{:>6} {:>6} {:>5} {:>16} {:>9} {:>22} {:>10}\n",
            "width", "epochs", "loss", "test acc", "train acc", "train NC1 init -> end", "test NC1"
        );
        for c in &self.cells {
            let _ = writeln!(
                out,
                "{:>6} {:>6} {:>5} {:>16} {:>9.4} {:>22} {:>10}",
                c.width,
                c.epochs,
                c.loss,
                pm(c.test_acc),
                c.final_train_acc,
                format!("{} -> {}", num(c.initial_train_nc1), num(c.final_train_nc1)),
                num(c.final_test_nc1)
            );
        }
        out
    }
}

fn pm((mean, std): (f64, Option<f64>)) -> String {
    match std {
        Some(s) => format!("{mean:.4} ± {s:.4}"),
        None => format!("{mean:.4}"),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| {
        if x != 0.0 && x.abs() < 1e-3 {
            format!("{x:.2e}")
        } else {
            format!("{x:.4}")
        }
    })
}

fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.collect::<Option<Vec<f64>>>()?;
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Groups finished runs by (width, epochs) and then by loss, in a stable order.
type Grid<'a> = BTreeMap<(u64, usize), BTreeMap<(usize, String), Vec<&'a Run>>>;

fn grid(runs: &[Run]) -> Grid<'_> {
    let mut grid: Grid<'_> = BTreeMap::new();
    for run in runs {
        grid.entry((run.width.to_bits(), run.epochs))
            .or_default()
            .entry((loss_rank(&run.loss), run.loss.clone()))
            .or_default()
            .push(run);
    }
    grid
}

/// Mean over seeds of column `key` at each evaluated epoch.
fn mean_curve(runs: &[&Run], key: &str) -> Vec<(f64, f64)> {
    let mut by_epoch: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for row in &run.rows {
            if let (Some(&epoch), Some(&v)) = (row.get("epoch"), row.get(key)) {
                by_epoch.entry(epoch as u64).or_default().push(v);
            }
        }
    }
    by_epoch
        .into_iter()
        .map(|(e, v)| (e as f64, v.iter().sum::<f64>() / v.len() as f64))
        .collect()
}

fn series(cell: &BTreeMap<(usize, String), Vec<&Run>>, key: &str) -> Vec<Series> {
    cell.iter()
        .map(|((rank, loss), runs)| Series {
            label: loss.clone(),
            colour: *rank,
            points: mean_curve(runs, key),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

fn panel(title: String, y_label: &str, series: Vec<Series>) -> Panel {
    let log_y = plot::spans_decades(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    Panel {
        title,
        x_label: "epoch".into(),
        y_label: y_label.into(),
        series,
        log_y,
    }
}

/// Writes figures, `report.md` and `summary.csv` into `out`.
pub fn write_report(root: &Path, out: &Path) -> Result<Report> {
    let scan = runs::scan(root)?;
    if scan.finished.is_empty() {
        anyhow::bail!(
            "{}: no finished runs (no summary.json) among {} run directories; unfinished: {}",
            root.display(),
            scan.unfinished.len(),
            scan.unfinished
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let grid = grid(&scan.finished);
    let mut md = String::from("# nclab report: are all losses created equal?\n\n");
    let _ = writeln!(
        md,
        "{} finished runs under `{}`. Metric definitions: docs/metrics.md. Test accuracy is that of the \
         best-validation checkpoint (the paper's convention); ± is the sample standard deviation over seeds.\n",
        scan.finished.len(),
        root.display()
    );
    if !scan.unfinished.is_empty() {
        let _ = writeln!(
            md,
            "Unfinished runs left out: {}\n",
            scan.unfinished
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut cells = Vec::new();
    for (&(width_bits, epochs), cell) in &grid {
        let width = f64::from_bits(width_bits);
        let tag = format!("w{width}_e{epochs}");
        let mut nc_panels = Vec::new();
        for split in ["train", "test"] {
            for (key, label) in NC_CURVES {
                nc_panels.push(panel(
                    format!("{label} ({split})"),
                    label,
                    series(cell, &format!("{split}_{key}")),
                ));
            }
        }
        plot::panels(
            &out.join(format!("nc_{tag}")),
            &format!("Neural collapse, width {width}, {epochs} epochs"),
            &nc_panels,
            NC_CURVES.len(),
        )?;
        let acc_panels: Vec<Panel> = ["train_acc", "val_acc", "test_acc"]
            .iter()
            .map(|key| panel(key.replace('_', " "), "accuracy", series(cell, key)))
            .collect();
        plot::panels(
            &out.join(format!("accuracy_{tag}")),
            &format!("Accuracy, width {width}, {epochs} epochs"),
            &acc_panels,
            3,
        )?;

        let _ = writeln!(md, "## Width {width}, {epochs} epochs\n");
        let _ = writeln!(
            md,
            "![neural collapse](nc_{tag}.png)\n\n![accuracy](accuracy_{tag}.png)\n"
        );
        md.push_str("| loss | seeds | test acc (best val) | final train acc | train NC1 init | train NC1 final | train NC2 | train NC3 | test NC1 |\n|---|---|---|---|---|---|---|---|---|\n");
        for ((_, loss), runs) in cell {
            let summaries: Vec<_> = runs.iter().filter_map(|r| r.summary.as_ref()).collect();
            let test: Vec<f64> = summaries.iter().map(|s| s.best_val_test_acc).collect();
            let last = |key: &str| {
                mean_of(
                    runs.iter()
                        .map(|r| r.last_row().and_then(|row| row.get(key).copied())),
                )
            };
            let result = CellResult {
                width,
                epochs,
                loss: loss.clone(),
                seeds: runs.len(),
                test_acc: mean_std(&test),
                final_train_acc: summaries.iter().map(|s| s.final_train_acc).sum::<f64>()
                    / summaries.len() as f64,
                initial_train_nc1: mean_of(
                    runs.iter()
                        .map(|r| r.first_row().and_then(|row| row.get("train_nc1").copied())),
                ),
                final_train_nc1: last("train_nc1"),
                final_train_nc2: last("train_nc2"),
                final_train_nc3: last("train_nc3"),
                final_test_nc1: last("test_nc1"),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {} | {} | {} | {} | {} |",
                loss,
                result.seeds,
                pm(result.test_acc),
                result.final_train_acc,
                num(result.initial_train_nc1),
                num(result.final_train_nc1),
                num(result.final_train_nc2),
                num(result.final_train_nc3),
                num(result.final_test_nc1)
            );
            cells.push(result);
        }
        md.push('\n');
    }
    md.push_str(&findings(&cells));
    write_heatmaps(out, &cells, &mut md)?;
    md.push_str(
        "\n## Notes\n\n- Test-split curves use the test split's own class means for NC1-NC3, but the training means for NC4 \
         (a decision rule may not look at test labels). With imbalanced test classes (the embedded MNIST-10k test split has \
         63 to 327 digits per class) even a perfect simplex ETF of class means gives nonzero NC2-of-means and NC3, because \
         the global mean is the sample mean.\n- NC curves are means over seeds at each evaluated epoch.\n",
    );
    write_text(&out.join("report.md"), &md)?;
    write_text(&out.join("summary.csv"), &summary_csv(&scan.finished))?;
    Ok(Report {
        cells,
        unfinished: scan.unfinished,
    })
}

/// Plain statements of what the numbers show, without hiding a loss that collapses less.
fn findings(cells: &[CellResult]) -> String {
    let mut md = String::from("## Findings\n\n");
    for c in cells {
        if let (Some(init), Some(end)) = (c.initial_train_nc1, c.final_train_nc1) {
            let factor = init / end;
            let verdict = if factor >= 10.0 {
                "collapses"
            } else {
                "collapses only partly"
            };
            let _ = writeln!(
                md,
                "- width {}, {} epochs, **{}**: train NC1 {} -> {} ({factor:.1}x lower): {verdict}; train accuracy {:.4}.",
                c.width, c.epochs, c.loss, num(Some(init)), num(Some(end)), c.final_train_acc
            );
        }
    }
    let mut spread: BTreeMap<(u64, usize), Vec<&CellResult>> = BTreeMap::new();
    for c in cells {
        spread
            .entry((c.width.to_bits(), c.epochs))
            .or_default()
            .push(c);
    }
    for ((w, e), group) in spread {
        if group.len() < 2 {
            continue;
        }
        let best = group
            .iter()
            .max_by(|a, b| a.test_acc.0.total_cmp(&b.test_acc.0))
            .unwrap();
        let worst = group
            .iter()
            .min_by(|a, b| a.test_acc.0.total_cmp(&b.test_acc.0))
            .unwrap();
        let _ = writeln!(
            md,
            "- width {}, {e} epochs: test accuracy ranges from {:.4} ({}) to {:.4} ({}), a spread of {:.4}.",
            f64::from_bits(w),
            worst.test_acc.0,
            worst.loss,
            best.test_acc.0,
            best.loss,
            best.test_acc.0 - worst.test_acc.0
        );
    }
    md.push('\n');
    md
}

fn write_heatmaps(out: &Path, cells: &[CellResult], md: &mut String) -> Result<()> {
    let mut widths: Vec<f64> = cells.iter().map(|c| c.width).collect();
    widths.sort_by(f64::total_cmp);
    widths.dedup();
    let mut epochs: Vec<usize> = cells.iter().map(|c| c.epochs).collect();
    epochs.sort();
    epochs.dedup();
    let mut losses: Vec<&str> = cells.iter().map(|c| c.loss.as_str()).collect();
    losses.sort_by_key(|l| (loss_rank(l), l.to_string()));
    losses.dedup();
    let find = |loss: &str, w: f64, e: usize| {
        cells
            .iter()
            .find(|c| c.loss == loss && c.width == w && c.epochs == e)
    };
    md.push_str("## Test accuracy over width x epochs\n\n");
    for loss in &losses {
        let grid_of = |value: &dyn Fn(&CellResult) -> Option<f64>| -> Vec<Vec<Option<f64>>> {
            widths
                .iter()
                .map(|&w| {
                    epochs
                        .iter()
                        .map(|&e| find(loss, w, e).and_then(value))
                        .collect()
                })
                .collect()
        };
        let maps = [
            (
                "test_acc",
                format!("{loss}: best-val test accuracy"),
                grid_of(&|c| Some(c.test_acc.0)),
                false,
            ),
            (
                "diff_from_ce",
                format!("{loss}: test accuracy minus CE's"),
                grid_of(&|c| find("ce", c.width, c.epochs).map(|ce| c.test_acc.0 - ce.test_acc.0)),
                true,
            ),
            (
                "seed_std",
                format!("{loss}: test accuracy std over seeds"),
                grid_of(&|c| c.test_acc.1),
                false,
            ),
        ];
        for (kind, title, values, diverging) in maps {
            if kind == "diff_from_ce" && *loss == "ce" {
                continue;
            }
            let stem = format!("heatmap_{kind}_{loss}");
            plot::heatmap(
                &out.join(&stem),
                &Heatmap {
                    title,
                    x_label: "epochs".into(),
                    y_label: "width".into(),
                    x_ticks: epochs.iter().map(|e| e.to_string()).collect(),
                    y_ticks: widths.iter().map(|w| w.to_string()).collect(),
                    values,
                    diverging,
                },
            )?;
            let _ = writeln!(md, "![{stem}]({stem}.png)");
        }
        md.push('\n');
    }
    // The table behind the heatmaps.
    let _ = write!(md, "| width | epochs |");
    for loss in &losses {
        let _ = write!(md, " {loss} |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(losses.len()));
    md.push('\n');
    for &w in &widths {
        for &e in &epochs {
            let _ = write!(md, "| {w} | {e} |");
            for loss in &losses {
                let _ = write!(
                    md,
                    " {} |",
                    find(loss, w, e).map_or("n/a".into(), |c| pm(c.test_acc))
                );
            }
            md.push('\n');
        }
    }
    Ok(())
}

/// One row per finished run, for pandas.
fn summary_csv(runs: &[Run]) -> String {
    let metrics = ["nc1", "nc2", "nc3", "nc4", "bias_relation"];
    let mut csv = String::from("dir,loss,width,epochs,seed,best_epoch,best_val_acc,best_val_test_acc,final_train_acc,final_test_acc");
    for split in ["train", "test"] {
        for m in metrics {
            let _ = write!(csv, ",final_{split}_{m}");
        }
    }
    csv.push_str(",initial_train_nc1\n");
    for run in runs {
        let Some(s) = &run.summary else { continue };
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        let _ = write!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
            csv_field(&run.dir.display().to_string()),
            run.loss,
            run.width,
            run.epochs,
            run.seed,
            s.best_epoch,
            opt(s.best_val_acc),
            s.best_val_test_acc,
            s.final_train_acc,
            s.final_test_acc
        );
        for split in ["train", "test"] {
            for m in metrics {
                let _ = write!(
                    csv,
                    ",{}",
                    opt(run
                        .last_row()
                        .and_then(|r| r.get(&format!("{split}_{m}")).copied()))
                );
            }
        }
        let _ = writeln!(
            csv,
            ",{}",
            opt(run.first_row().and_then(|r| r.get("train_nc1").copied()))
        );
    }
    csv
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    nc_data::io::write_atomic_bytes(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
