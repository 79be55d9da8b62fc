//! What a report shows, computed from a folder of runs: the runs grouped by (width, epochs)
//! and loss, each group's numbers over its seeds, the mean curves, plain-language findings,
//! and the tables (`summary.csv`, Markdown, plain text). Drawing is left to the front end.

use crate::error::{Error, Result};
use crate::runs::{self, Run, Unreadable};
use nc_math::loss::LossKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The NC curves of the paper's figure: (metric column, axis label).
pub const NC_CURVES: [(&str, &str); 5] = [
    ("nc1", "NC1"),
    ("nc2", "NC2"),
    ("nc3", "NC3"),
    ("bias_relation", "||W mu_G + b||"),
    ("nc4", "NC4"),
];

/// The accuracy curves: train, validation, test.
pub const ACCURACY_CURVES: [&str; 3] = ["train_acc", "val_acc", "test_acc"];

/// Mean and sample standard deviation (ddof 1; None for a single value).
pub fn mean_std(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// The mean of values that are all present (None if any is missing or there are none).
fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.collect::<Option<Vec<f64>>>()?;
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// One (width, epochs, loss) cell of the sweep, over its seeds.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub width: f64,
    pub epochs: usize,
    pub loss: LossKind,
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

/// The runs of one loss at one (width, epochs) setting: its seeds.
#[derive(Debug, Clone)]
pub struct LossRuns {
    pub loss: LossKind,
    pub runs: Vec<Run>,
}

impl LossRuns {
    /// Mean over seeds of column `key` at each evaluated epoch: (epoch, mean).
    pub fn mean_curve(&self, key: &str) -> Vec<(f64, f64)> {
        let mut by_epoch: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for run in &self.runs {
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

    fn result(&self, width: f64, epochs: usize) -> CellResult {
        let summaries: Vec<_> = self
            .runs
            .iter()
            .filter_map(|r| r.summary.as_ref())
            .collect();
        let test: Vec<f64> = summaries.iter().map(|s| s.best_val_test_acc).collect();
        let last = |key: &str| mean_of(self.runs.iter().map(|r| r.last(key)));
        CellResult {
            width,
            epochs,
            loss: self.loss,
            seeds: self.runs.len(),
            test_acc: mean_std(&test),
            final_train_acc: summaries.iter().map(|s| s.final_train_acc).sum::<f64>()
                / summaries.len() as f64,
            initial_train_nc1: mean_of(self.runs.iter().map(|r| r.first("train_nc1"))),
            final_train_nc1: last("train_nc1"),
            final_train_nc2: last("train_nc2"),
            final_train_nc3: last("train_nc3"),
            final_test_nc1: last("test_nc1"),
        }
    }
}

/// Every loss at one (width, epochs) setting, in loss order.
#[derive(Debug, Clone)]
pub struct Setting {
    pub width: f64,
    pub epochs: usize,
    pub losses: Vec<LossRuns>,
}

impl Setting {
    /// The tag of this setting's figures: `w{width}_e{epochs}`.
    pub fn tag(&self) -> String {
        format!("w{}_e{}", self.width, self.epochs)
    }
}

/// One heatmap's numbers: rows are widths, columns epochs (as [`Report::axes`] orders them).
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapGrid {
    /// `test_acc`, `diff_from_ce` or `seed_std` (part of the figure's file name).
    pub kind: &'static str,
    pub title: String,
    pub values: Vec<Vec<Option<f64>>>,
    /// Whether 0 is the centre of the colour scale.
    pub diverging: bool,
}

/// A folder of runs, aggregated.
#[derive(Debug)]
pub struct Report {
    pub root: PathBuf,
    /// The finished runs grouped by (width, epochs), in increasing order.
    pub settings: Vec<Setting>,
    /// One result per (width, epochs, loss), in the order of `settings`.
    pub cells: Vec<CellResult>,
    /// Run directories without summary.json (interrupted or still running): left out.
    pub unfinished: Vec<PathBuf>,
    /// Run directories that could not be read, with the reason: left out.
    pub unreadable: Vec<Unreadable>,
    /// The metric convention every run recorded (docs/metrics.md, "Conventions").
    pub convention: String,
}

impl Report {
    /// Scans `root` for run directories and aggregates the finished ones.
    pub fn scan(root: &Path) -> Result<Report> {
        let scan = runs::scan(root)?;
        if scan.finished.is_empty() {
            return Err(Error::invalid(
                root,
                format!(
                    "no finished runs (no summary.json) among {} run directories; unfinished: {}{}",
                    scan.unfinished.len() + scan.unreadable.len(),
                    scan.unfinished
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    scan.unreadable
                        .iter()
                        .map(|u| format!("; unreadable: {}", u.reason))
                        .collect::<String>()
                ),
            ));
        }
        let mut grid: BTreeMap<(u64, usize), BTreeMap<LossKind, Vec<Run>>> = BTreeMap::new();
        // runs::scan checked that every finished run has the same fixed settings,
        // the convention among them.
        let convention = scan.finished[0].fixed_settings["convention"]
            .as_str()
            .unwrap_or("nclab")
            .to_string();
        for run in scan.finished {
            grid.entry((run.width.to_bits(), run.epochs))
                .or_default()
                .entry(run.loss.kind())
                .or_default()
                .push(run);
        }
        let settings: Vec<Setting> = grid
            .into_iter()
            .map(|((width_bits, epochs), losses)| Setting {
                width: f64::from_bits(width_bits),
                epochs,
                losses: losses
                    .into_iter()
                    .map(|(loss, runs)| LossRuns { loss, runs })
                    .collect(),
            })
            .collect();
        let cells = settings
            .iter()
            .flat_map(|s| s.losses.iter().map(|l| l.result(s.width, s.epochs)))
            .collect();
        Ok(Report {
            root: root.to_path_buf(),
            settings,
            cells,
            unfinished: scan.unfinished,
            unreadable: scan.unreadable,
            convention,
        })
    }

    /// Every finished run, in (width, epochs, loss, directory) order.
    pub fn finished(&self) -> impl Iterator<Item = &Run> {
        self.settings
            .iter()
            .flat_map(|s| s.losses.iter().flat_map(|l| l.runs.iter()))
    }

    /// The cell of `loss` at (`width`, `epochs`).
    pub fn cell(&self, loss: LossKind, width: f64, epochs: usize) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|c| c.loss == loss && c.width == width && c.epochs == epochs)
    }

    /// The distinct widths, epochs and losses of the cells, each sorted.
    pub fn axes(&self) -> (Vec<f64>, Vec<usize>, Vec<LossKind>) {
        let mut widths: Vec<f64> = self.cells.iter().map(|c| c.width).collect();
        widths.sort_by(f64::total_cmp);
        widths.dedup();
        let mut epochs: Vec<usize> = self.cells.iter().map(|c| c.epochs).collect();
        epochs.sort();
        epochs.dedup();
        let mut losses: Vec<LossKind> = self.cells.iter().map(|c| c.loss).collect();
        losses.sort();
        losses.dedup();
        (widths, epochs, losses)
    }

    /// The heatmaps over width (rows) x epochs (columns) for `loss`: best-validation test
    /// accuracy, its difference from CE's (left out for CE itself) and its std over seeds.
    pub fn heatmaps(&self, loss: LossKind) -> Vec<HeatmapGrid> {
        let (widths, epochs, _) = self.axes();
        let grid_of = |value: &dyn Fn(&CellResult) -> Option<f64>| -> Vec<Vec<Option<f64>>> {
            widths
                .iter()
                .map(|&w| {
                    epochs
                        .iter()
                        .map(|&e| self.cell(loss, w, e).and_then(value))
                        .collect()
                })
                .collect()
        };
        let mut maps = vec![HeatmapGrid {
            kind: "test_acc",
            title: format!("{loss}: best-val test accuracy"),
            values: grid_of(&|c| Some(c.test_acc.0)),
            diverging: false,
        }];
        if loss != LossKind::Ce {
            maps.push(HeatmapGrid {
                kind: "diff_from_ce",
                title: format!("{loss}: test accuracy minus CE's"),
                values: grid_of(&|c| {
                    self.cell(LossKind::Ce, c.width, c.epochs)
                        .map(|ce| c.test_acc.0 - ce.test_acc.0)
                }),
                diverging: true,
            });
        }
        maps.push(HeatmapGrid {
            kind: "seed_std",
            title: format!("{loss}: test accuracy std over seeds"),
            values: grid_of(&|c| c.test_acc.1),
            diverging: false,
        });
        maps
    }

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
                c.loss.name(),
                pm(c.test_acc),
                c.final_train_acc,
                format!("{} -> {}", num(c.initial_train_nc1), num(c.final_train_nc1)),
                num(c.final_test_nc1)
            );
        }
        out
    }

    /// The Markdown table of one setting: one row per loss.
    pub fn setting_table_markdown(&self, setting: &Setting) -> String {
        let mut md = String::from("| loss | seeds | test acc (best val) | final train acc | train NC1 init | train NC1 final | train NC2 | train NC3 | test NC1 |\n|---|---|---|---|---|---|---|---|---|\n");
        for l in &setting.losses {
            let Some(c) = self.cell(l.loss, setting.width, setting.epochs) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {} | {} | {} | {} | {} |",
                c.loss,
                c.seeds,
                pm(c.test_acc),
                c.final_train_acc,
                num(c.initial_train_nc1),
                num(c.final_train_nc1),
                num(c.final_train_nc2),
                num(c.final_train_nc3),
                num(c.final_test_nc1)
            );
        }
        md
    }

    /// Plain statements of what the numbers show, without hiding a loss that collapses less.
    pub fn findings_markdown(&self) -> String {
        let mut md = String::from("## Findings\n\n");
        for c in &self.cells {
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
        for setting in &self.settings {
            let group: Vec<&CellResult> = self
                .cells
                .iter()
                .filter(|c| c.width == setting.width && c.epochs == setting.epochs)
                .collect();
            if group.len() < 2 {
                continue;
            }
            let best = group
                .iter()
                .max_by(|a, b| a.test_acc.0.total_cmp(&b.test_acc.0))
                .expect("two or more cells");
            let worst = group
                .iter()
                .min_by(|a, b| a.test_acc.0.total_cmp(&b.test_acc.0))
                .expect("two or more cells");
            let _ = writeln!(
                md,
                "- width {}, {} epochs: test accuracy ranges from {:.4} ({}) to {:.4} ({}), a spread of {:.4}.",
                setting.width,
                setting.epochs,
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

    /// The Markdown table behind the heatmaps: test accuracy per (width, epochs) and loss.
    pub fn accuracy_grid_markdown(&self) -> String {
        let (widths, epochs, losses) = self.axes();
        let mut md = String::from("| width | epochs |");
        for loss in &losses {
            let _ = write!(md, " {loss} |");
        }
        md.push_str("\n|---|---|");
        md.push_str(&"---|".repeat(losses.len()));
        md.push('\n');
        for &w in &widths {
            for &e in &epochs {
                let _ = write!(md, "| {w} | {e} |");
                for &loss in &losses {
                    let _ = write!(
                        md,
                        " {} |",
                        self.cell(loss, w, e)
                            .map_or("n/a".into(), |c| pm(c.test_acc))
                    );
                }
                md.push('\n');
            }
        }
        md
    }

    /// `summary.csv`: one row per finished run, for pandas.
    pub fn summary_csv(&self) -> String {
        let metrics = ["nc1", "nc2", "nc3", "nc4", "bias_relation"];
        let mut csv = String::from("dir,loss,width,epochs,seed,best_epoch,best_val_acc,best_val_test_acc,final_train_acc,final_test_acc");
        for split in ["train", "test"] {
            for m in metrics {
                let _ = write!(csv, ",final_{split}_{m}");
            }
        }
        csv.push_str(",initial_train_nc1\n");
        let mut runs: Vec<&Run> = self.finished().collect();
        runs.sort_by(|a, b| a.dir.cmp(&b.dir));
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        for run in runs {
            let Some(s) = &run.summary else { continue };
            let _ = write!(
                csv,
                "{},{},{},{},{},{},{},{},{},{}",
                csv_field(&run.dir.display().to_string()),
                run.loss.name(),
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
                    let _ = write!(csv, ",{}", opt(run.last(&format!("{split}_{m}"))));
                }
            }
            let _ = writeln!(csv, ",{}", opt(run.first("train_nc1")));
        }
        csv
    }
}

/// `mean ± std`, or the mean alone for one seed.
pub fn pm((mean, std): (f64, Option<f64>)) -> String {
    match std {
        Some(s) => format!("{mean:.4} ± {s:.4}"),
        None => format!("{mean:.4}"),
    }
}

/// A metric value for a table: 4 decimals, or 3 significant digits below 1e-3.
pub fn num(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| {
        if x != 0.0 && x.abs() < 1e-3 {
            format!("{x:.2e}")
        } else {
            format!("{x:.4}")
        }
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_is_the_sample_standard_deviation() {
        let (m, s) = mean_std(&[1.0, 2.0, 4.0]);
        assert!((m - 7.0 / 3.0).abs() < 1e-15);
        // ddof 1: sum of squared deviations 14/3 over 2.
        assert!((s.unwrap() - (7.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(mean_std(&[0.5]), (0.5, None));
    }

    #[test]
    fn table_numbers_switch_to_exponents_below_a_thousandth() {
        assert_eq!(num(Some(0.00016)), "1.60e-4");
        assert_eq!(num(Some(0.38416)), "0.3842");
        assert_eq!(num(Some(0.0)), "0.0000");
        assert_eq!(num(None), "n/a");
        assert_eq!(pm((0.96, Some(0.01414))), "0.9600 ± 0.0141");
    }

    #[test]
    fn csv_fields_with_commas_are_quoted() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("runs/ce_w1"), "runs/ce_w1");
        assert_eq!(csv_field("q\",x"), "\"q\"\",x\"");
    }
}
