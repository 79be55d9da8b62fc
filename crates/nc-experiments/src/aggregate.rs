//! What a report shows, computed from a folder of runs: the runs grouped by (width, epochs)
//! and loss, each group's numbers over its seeds, the mean curves, plain-language findings,
//! and the tables (`summary.csv`, Markdown, plain text). Drawing is left to the front end.

use crate::error::{Error, Result};
use crate::run_dir::Summary;
use crate::runs::{self, Run, Unreadable};
use crate::stats::Welch;
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

pub use crate::stats::mean_std;

/// The mean of values that are all present (None if any is missing or there are none).
fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.collect::<Option<Vec<f64>>>()?;
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Evaluations averaged for the terminal-phase test accuracy: the last five (with the
/// default `eval_every` of E/100, the last 4% of training).
pub const TERMINAL_WINDOW: usize = 5;

/// Validation samples from which the best-validation checkpoint can be the headline: its
/// accuracy then moves in steps of at most 0.1%, fine enough for differences between losses
/// of a few tenths of a percent. Below it (the default job holds out 140 digits, steps of
/// 0.7%, ties frequent) the selection mostly picks an early epoch by noise.
pub const MIN_VALIDATION_FOR_SELECTION: usize = 1000;

/// Which test accuracy a report leads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headline {
    /// Mean test accuracy over the last [`TERMINAL_WINDOW`] evaluations: the network at the
    /// end of training, in the terminal phase the paper is about.
    Terminal,
    /// Test accuracy of the best-validation checkpoint (the paper's convention; ties go to
    /// the latest epoch).
    BestValidation,
}

impl Headline {
    pub fn label(self) -> &'static str {
        match self {
            Headline::Terminal => "terminal-phase test acc",
            Headline::BestValidation => "best-val test acc",
        }
    }
}

/// Mean of column `key` over the last `window` evaluation rows that hold it.
fn tail_mean(run: &Run, key: &str, window: usize) -> Option<f64> {
    let values: Vec<f64> = run
        .rows
        .iter()
        .rev()
        .filter_map(|row| row.get(key).copied())
        .take(window)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// One (width, epochs, loss) cell of the sweep, over its seeds.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub width: f64,
    pub epochs: usize,
    pub loss: LossKind,
    pub seeds: usize,
    /// The headline test accuracy of each seed (as [`Report::headline`] says), in run order.
    pub headline_values: Vec<f64>,
    /// Their mean and sample std over seeds.
    pub test_acc: (f64, Option<f64>),
    /// Test accuracy at the last epoch: mean and std over seeds.
    pub final_test_acc: (f64, Option<f64>),
    /// Mean test accuracy over the last [`TERMINAL_WINDOW`] evaluations: mean, std over seeds.
    pub terminal_test_acc: (f64, Option<f64>),
    /// Test accuracy of the best-validation checkpoint: mean and std over seeds.
    pub best_val_test_acc: (f64, Option<f64>),
    /// The epoch each seed's best-validation checkpoint was selected at.
    pub best_epochs: Vec<usize>,
    pub final_train_acc: f64,
    pub initial_train_nc1: Option<f64>,
    pub final_train_nc1: Option<f64>,
    /// log10 of each seed's final train NC1 (the seeds whose last row has it).
    pub log_final_train_nc1: Vec<f64>,
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

    fn result(&self, width: f64, epochs: usize, headline: Headline) -> CellResult {
        let finished: Vec<(&Run, &Summary)> = self
            .runs
            .iter()
            .filter_map(|r| r.summary.as_ref().map(|s| (r, s)))
            .collect();
        let terminal: Vec<f64> = finished
            .iter()
            .map(|(run, s)| tail_mean(run, "test_acc", TERMINAL_WINDOW).unwrap_or(s.final_test_acc))
            .collect();
        let best_val: Vec<f64> = finished.iter().map(|(_, s)| s.best_val_test_acc).collect();
        let final_test: Vec<f64> = finished.iter().map(|(_, s)| s.final_test_acc).collect();
        let headline_values = match headline {
            Headline::Terminal => terminal.clone(),
            Headline::BestValidation => best_val.clone(),
        };
        let last = |key: &str| mean_of(self.runs.iter().map(|r| r.last(key)));
        CellResult {
            width,
            epochs,
            loss: self.loss,
            seeds: self.runs.len(),
            test_acc: mean_std(&headline_values),
            headline_values,
            final_test_acc: mean_std(&final_test),
            terminal_test_acc: mean_std(&terminal),
            best_val_test_acc: mean_std(&best_val),
            best_epochs: finished.iter().map(|(_, s)| s.best_epoch).collect(),
            final_train_acc: finished.iter().map(|(_, s)| s.final_train_acc).sum::<f64>()
                / finished.len() as f64,
            initial_train_nc1: mean_of(self.runs.iter().map(|r| r.first("train_nc1"))),
            final_train_nc1: last("train_nc1"),
            log_final_train_nc1: self
                .runs
                .iter()
                .filter_map(|r| r.last("train_nc1"))
                .filter(|v| *v > 0.0)
                .map(f64::log10)
                .collect(),
            final_train_nc2: last("train_nc2"),
            final_train_nc3: last("train_nc3"),
            final_test_nc1: last("test_nc1"),
        }
    }
}

/// One loss against CE at one (width, epochs) setting, over seeds: Welch's two-sided t-test
/// of the headline test accuracy and of log10 final train NC1 (None with fewer than two
/// seeds on either side).
#[derive(Debug, Clone)]
pub struct VersusCe {
    pub width: f64,
    pub epochs: usize,
    pub loss: LossKind,
    /// Mean headline accuracy minus CE's.
    pub acc_diff: f64,
    pub acc_test: Option<Welch>,
    /// Mean log10 final train NC1 minus CE's.
    pub log_nc1_diff: Option<f64>,
    pub log_nc1_test: Option<Welch>,
}

impl VersusCe {
    /// The six printed fields, in table order: accuracy difference, its test, its verdict,
    /// log10 NC1 difference, its test, its verdict.
    fn fields(&self) -> [String; 6] {
        [
            format!("{:+.4}", self.acc_diff),
            welch_text(self.acc_test),
            verdict(self.acc_test).into(),
            self.log_nc1_diff
                .map_or("n/a".into(), |d| format!("{d:+.2}")),
            welch_text(self.log_nc1_test),
            verdict(self.log_nc1_test).into(),
        ]
    }
}

/// The significance level the findings use.
pub const SIGNIFICANCE: f64 = 0.05;

/// "differs from CE" / "within seed noise" for a test at [`SIGNIFICANCE`].
fn verdict(test: Option<Welch>) -> &'static str {
    match test {
        None => "n/a (one seed)",
        Some(w) if w.p < SIGNIFICANCE => "differs",
        Some(_) => "within seed noise",
    }
}

/// `t = .., df = .., p = ..` of a test, or `n/a`.
fn welch_text(test: Option<Welch>) -> String {
    match test {
        None => "n/a".into(),
        Some(w) if w.df.is_nan() => format!("no spread on either side, p = {}", w.p),
        Some(w) if w.p < 1e-3 => format!("t = {:.2}, df = {:.1}, p = {:.1e}", w.t, w.df, w.p),
        Some(w) => format!("t = {:.2}, df = {:.1}, p = {:.3}", w.t, w.df, w.p),
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
    /// What the colour scale measures.
    pub units: &'static str,
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
    /// Which test accuracy the tables, heatmaps and tests lead with.
    pub headline: Headline,
    /// Why that one (a sentence for the report).
    pub headline_reason: String,
}

/// Best-validation selection leads only if every finished run held out at least
/// [`MIN_VALIDATION_FOR_SELECTION`] validation samples; else the terminal-phase accuracy.
fn choose_headline(settings: &[Setting]) -> (Headline, String) {
    let sizes: Vec<Option<usize>> = settings
        .iter()
        .flat_map(|s| s.losses.iter().flat_map(|l| l.runs.iter()))
        .filter_map(|r| r.summary.as_ref().map(|s| s.val_samples))
        .collect();
    let smallest = sizes
        .iter()
        .copied()
        .collect::<Option<Vec<usize>>>()
        .and_then(|v| v.into_iter().min());
    match smallest {
        Some(n) if n >= MIN_VALIDATION_FOR_SELECTION => (
            Headline::BestValidation,
            format!(
                "Test accuracy is that of the best-validation checkpoint (the paper's convention; ties go to the \
                 latest epoch): every run held out at least {n} validation samples, so validation accuracy moves in \
                 steps of at most {:.2}%.",
                100.0 / n as f64
            ),
        ),
        Some(n) => (
            Headline::Terminal,
            format!(
                "Test accuracy is the terminal-phase one, the mean over the last {TERMINAL_WINDOW} evaluations: with \
                 {n} validation samples (steps of {:.2}%, ties frequent) best-validation selection cannot resolve \
                 differences between losses and mostly picks an early epoch; the best-validation number is shown \
                 beside it with the epoch it was selected at (ties go to the latest epoch). Best-validation \
                 selection leads from {MIN_VALIDATION_FOR_SELECTION} validation samples on.",
                100.0 / n.max(1) as f64
            ),
        ),
        None => (
            Headline::Terminal,
            format!(
                "Test accuracy is the terminal-phase one, the mean over the last {TERMINAL_WINDOW} evaluations: some \
                 runs do not record their validation size (summary.json `val_samples`), so best-validation selection \
                 is not trusted to resolve differences between losses; it is shown beside it with its epoch."
            ),
        ),
    }
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
        let (headline, headline_reason) = choose_headline(&settings);
        let cells = settings
            .iter()
            .flat_map(|s| {
                s.losses
                    .iter()
                    .map(move |l| l.result(s.width, s.epochs, headline))
            })
            .collect();
        Ok(Report {
            root: root.to_path_buf(),
            settings,
            cells,
            unfinished: scan.unfinished,
            unreadable: scan.unreadable,
            convention,
            headline,
            headline_reason,
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

    /// The heatmaps over width (rows) x epochs (columns) for `loss`: the headline test
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
            title: format!("{loss}: {}", self.headline.label()),
            values: grid_of(&|c| Some(c.test_acc.0)),
            diverging: false,
            units: "test accuracy (fraction)",
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
                units: "difference (fraction)",
            });
        }
        maps.push(HeatmapGrid {
            kind: "seed_std",
            title: format!("{loss}: test accuracy std over seeds"),
            values: grid_of(&|c| c.test_acc.1),
            diverging: false,
            units: "std (fraction)",
        });
        maps
    }

    /// A short plain-text table: one line per (width, epochs, loss), then the tests against
    /// CE where there are seeds to test.
    pub fn verdict_table(&self) -> String {
        let mut out = format!(
            "{:>6} {:>6} {:>5} {:>5} {:>24} {:>24} {:>9} {:>22} {:>10}\n",
            "width",
            "epochs",
            "loss",
            "seeds",
            self.headline.label(),
            "best-val (epoch)",
            "train acc",
            "train NC1 init -> end",
            "test NC1"
        );
        for c in &self.cells {
            let _ = writeln!(
                out,
                "{:>6} {:>6} {:>5} {:>5} {:>24} {:>24} {:>9.4} {:>22} {:>10}",
                c.width,
                c.epochs,
                c.loss.name(),
                c.seeds,
                pm(c.test_acc),
                format!(
                    "{:.4} ({})",
                    c.best_val_test_acc.0,
                    epochs_text(&c.best_epochs)
                ),
                c.final_train_acc,
                format!("{} -> {}", num(c.initial_train_nc1), num(c.final_train_nc1)),
                num(c.final_test_nc1)
            );
        }
        let tests = self.versus_ce();
        if tests.iter().any(|t| t.acc_test.is_some()) {
            let _ = writeln!(
                out,
                "\nagainst CE over seeds (Welch's two-sided t-test, p < {SIGNIFICANCE}: differs):"
            );
            for t in &tests {
                let [acc, acc_test, acc_verdict, nc1, nc1_test, nc1_verdict] = t.fields();
                let _ = writeln!(
                    out,
                    "  width {} {} epochs {:>4}: test acc {acc} ({acc_test}; {acc_verdict}); log10 train NC1 {nc1} ({nc1_test}; {nc1_verdict})",
                    t.width,
                    t.epochs,
                    t.loss.name(),
                );
            }
        }
        out
    }

    /// The Markdown table of one setting: one row per loss.
    pub fn setting_table_markdown(&self, setting: &Setting) -> String {
        let mut md = format!(
            "| loss | seeds | {} | final test acc | best-val test acc (epoch) | final train acc | train NC1 init | train NC1 final | train NC2 | train NC3 | test NC1 |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.headline.label()
        );
        for l in &setting.losses {
            let Some(c) = self.cell(l.loss, setting.width, setting.epochs) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} ({}) | {:.4} | {} | {} | {} | {} | {} |",
                c.loss,
                c.seeds,
                pm(c.test_acc),
                pm(c.final_test_acc),
                pm(c.best_val_test_acc),
                epochs_text(&c.best_epochs),
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

    /// Each loss against CE at every setting where both have runs.
    pub fn versus_ce(&self) -> Vec<VersusCe> {
        self.cells
            .iter()
            .filter(|c| c.loss != LossKind::Ce)
            .filter_map(|c| {
                let ce = self.cell(LossKind::Ce, c.width, c.epochs)?;
                let mean = |v: &[f64]| (!v.is_empty()).then(|| mean_std(v).0);
                Some(VersusCe {
                    width: c.width,
                    epochs: c.epochs,
                    loss: c.loss,
                    acc_diff: c.test_acc.0 - ce.test_acc.0,
                    acc_test: Welch::test(&c.headline_values, &ce.headline_values),
                    log_nc1_diff: mean(&c.log_final_train_nc1)
                        .zip(mean(&ce.log_final_train_nc1))
                        .map(|(a, b)| a - b),
                    log_nc1_test: Welch::test(&c.log_final_train_nc1, &ce.log_final_train_nc1),
                })
            })
            .collect()
    }

    /// The Markdown section of the tests against CE: per setting, one row per loss.
    pub fn seed_tests_markdown(&self) -> String {
        let tests = self.versus_ce();
        if tests.is_empty() {
            return String::new();
        }
        let mut md = format!(
            "## Against CE, over seeds\n\nEach loss against CE at the same width and epochs: the difference of the \
             means over seeds, Welch's two-sided t-test (unequal variances; t, its Welch-Satterthwaite degrees of \
             freedom df, p), and whether p < {SIGNIFICANCE}. Test accuracy is the {}; train NC1 is compared on \
             log10 of its final value, because it spans decades. With a few seeds per loss (the default job \
             has three seeds) a test like this detects only large differences (several seed standard deviations): \"within seed noise\" means not \
             shown to differ, not shown to be equal.\n\n\
             | width | epochs | loss | test acc - CE | t, df, p | verdict | log10 train NC1 - CE | t, df, p | verdict |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            self.headline.label()
        );
        for t in &tests {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                t.width,
                t.epochs,
                t.loss,
                t.fields().join(" | ")
            );
        }
        md.push('\n');
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
                "- width {}, {} epochs: {} (mean over seeds) ranges from {:.4} ({}) to {:.4} ({}), a spread of {:.4}; {}",
                setting.width,
                setting.epochs,
                self.headline.label(),
                worst.test_acc.0,
                worst.loss,
                best.test_acc.0,
                best.loss,
                best.test_acc.0 - worst.test_acc.0,
                if group.iter().all(|c| c.seeds >= 2) {
                    "the tests against CE below say which differences exceed the seed noise."
                } else {
                    "with one seed per loss a spread cannot be told from seed noise."
                }
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
        let mut csv = String::from("dir,loss,width,epochs,seed,best_epoch,best_val_acc,best_val_test_acc,final_train_acc,final_test_acc,terminal_test_acc");
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
                "{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&run.dir.display().to_string()),
                run.loss.name(),
                run.width,
                run.epochs,
                run.seed,
                s.best_epoch,
                opt(s.best_val_acc),
                s.best_val_test_acc,
                s.final_train_acc,
                s.final_test_acc,
                opt(tail_mean(run, "test_acc", TERMINAL_WINDOW))
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

/// The epochs of the seeds' best-validation checkpoints: `12` or `12, 40, 388`.
fn epochs_text(epochs: &[usize]) -> String {
    epochs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
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
