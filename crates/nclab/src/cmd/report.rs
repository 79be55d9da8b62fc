//! `nclab report DIR`: figures, tables and a Markdown report from any mix of run directories.
//! The numbers and tables are `nc_experiments::aggregate`'s; this module draws and assembles.

use crate::plot::{self, Heatmap, Panel, Series};
use anyhow::{Context, Result};
use nc_experiments::aggregate::{Report, Setting, ACCURACY_CURVES, NC_CURVES};
use nc_experiments::depth::{depth_tables_markdown, profile_epochs, DEPTH_CURVES};
use nc_experiments::run_dir::layer_column;
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
    for run in &report.unreadable {
        eprintln!("left out (cannot be read): {}", run.reason);
    }
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

/// One line per loss: its mean curve of column `key` over seeds.
fn series(setting: &Setting, key: &str) -> Vec<Series> {
    setting
        .losses
        .iter()
        .map(|l| Series {
            label: l.loss.name().to_string(),
            colour: l.loss as usize,
            points: l.mean_curve(key),
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
    let report = Report::scan(root)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut md = String::from("# nclab report: are all losses created equal?\n\n");
    let _ = writeln!(
        md,
        "{} finished runs under `{}`. Metric definitions: docs/metrics.md, under the convention `{}`. \
         {} ± is the sample standard deviation over seeds.\n",
        report.finished().count(),
        root.display(),
        report.convention,
        report.headline_reason
    );
    if !report.unfinished.is_empty() {
        let _ = writeln!(
            md,
            "Unfinished runs left out: {}\n",
            report
                .unfinished
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    if !report.unreadable.is_empty() {
        let _ = writeln!(
            md,
            "Runs that could not be read, left out: {}\n",
            report
                .unreadable
                .iter()
                .map(|u| format!("`{}` ({})", u.dir.display(), u.reason))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    for setting in &report.settings {
        let (width, epochs, tag) = (setting.width, setting.epochs, setting.tag());
        let mut nc_panels = Vec::new();
        for split in ["train", "test"] {
            for (key, label) in NC_CURVES {
                nc_panels.push(panel(
                    format!("{label} ({split})"),
                    label,
                    series(setting, &format!("{split}_{key}")),
                ));
            }
        }
        plot::panels(
            &out.join(format!("nc_{tag}")),
            &format!("Neural collapse, width {width}, {epochs} epochs"),
            &nc_panels,
            NC_CURVES.len(),
        )?;
        let acc_panels: Vec<Panel> = ACCURACY_CURVES
            .iter()
            .map(|key| panel(key.replace('_', " "), "accuracy", series(setting, key)))
            .collect();
        plot::panels(
            &out.join(format!("accuracy_{tag}")),
            &format!("Accuracy, width {width}, {epochs} epochs"),
            &acc_panels,
            ACCURACY_CURVES.len(),
        )?;

        let _ = writeln!(md, "## Width {width}, {epochs} epochs\n");
        let _ = writeln!(
            md,
            "![neural collapse](nc_{tag}.png)\n\n![accuracy](accuracy_{tag}.png)\n"
        );
        md.push_str(&report.setting_table_markdown(setting));
        md.push('\n');
        if !setting.layers().is_empty() {
            write_depth_figures(out, setting)?;
            let _ = writeln!(
                md,
                "![through depth](depth_{tag}.png)\n\n![layers over training](depth_epochs_{tag}.png)\n"
            );
            md.push_str(&depth_tables_markdown(setting));
            md.push('\n');
        }
    }
    md.push_str(&report.findings_markdown());
    md.push_str(&report.seed_tests_markdown());
    write_heatmaps(out, &report, &mut md)?;
    md.push_str(
        "\n## Notes\n\n- Test-split curves use the test split's own class means for NC1-NC3, but the training means for NC4 \
         (a decision rule may not look at test labels). With imbalanced test classes (the embedded MNIST-10k test split has \
         63 to 327 digits per class) even a perfect simplex ETF of class means gives nonzero NC2-of-means and NC3, because \
         the global mean is the sample mean.\n- NC curves are means over seeds at each evaluated epoch.\n",
    );
    write_text(&out.join("report.md"), &md)?;
    write_text(&out.join("summary.csv"), &report.summary_csv())?;
    Ok(report)
}

/// For a setting whose runs watched layers: `depth_{tag}` (NC1 and NCC accuracy against the
/// layer index, one panel per split, metric and profile epoch, one line per loss) and
/// `depth_epochs_{tag}` (the same metrics against the epoch, one panel per layer).
fn write_depth_figures(out: &Path, setting: &Setting) -> Result<()> {
    let layers = setting.layers();
    let epochs = profile_epochs(&setting.depth_epochs());
    let tag = setting.tag();
    let mut by_layer = Vec::new();
    for split in ["train", "test"] {
        for (metric, label) in DEPTH_CURVES {
            for &epoch in &epochs {
                let series = setting
                    .losses
                    .iter()
                    .map(|l| Series {
                        label: l.loss.name().to_string(),
                        colour: l.loss as usize,
                        points: l.layer_profile(layers, split, metric, epoch),
                    })
                    .filter(|s| !s.points.is_empty())
                    .collect();
                let mut p = panel(format!("{label} ({split}), epoch {epoch}"), label, series);
                p.x_label = "layer".into();
                by_layer.push(p);
            }
        }
    }
    plot::panels(
        &out.join(format!("depth_{tag}")),
        &format!(
            "Through depth, width {}, {} epochs (layer 1 nearest the input)",
            setting.width, setting.epochs
        ),
        &by_layer,
        epochs.len().max(1),
    )?;
    let mut by_epoch = Vec::new();
    for split in ["train", "test"] {
        for (metric, label) in DEPTH_CURVES {
            for layer in layers {
                by_epoch.push(panel(
                    format!("{label} ({split}), layer {} ({})", layer.index, layer.name),
                    label,
                    series(setting, &layer_column(split, layer.index, metric)),
                ));
            }
        }
    }
    plot::panels(
        &out.join(format!("depth_epochs_{tag}")),
        &format!(
            "Every watched layer over training, width {}, {} epochs",
            setting.width, setting.epochs
        ),
        &by_epoch,
        layers.len(),
    )
}

fn write_heatmaps(out: &Path, report: &Report, md: &mut String) -> Result<()> {
    let (widths, epochs, losses) = report.axes();
    md.push_str("## Test accuracy over width x epochs\n\n");
    for &loss in &losses {
        for map in report.heatmaps(loss) {
            let stem = format!("heatmap_{}_{loss}", map.kind);
            plot::heatmap(
                &out.join(&stem),
                &Heatmap {
                    title: map.title,
                    x_label: "epochs".into(),
                    y_label: "width".into(),
                    x_ticks: epochs.iter().map(|e| e.to_string()).collect(),
                    y_ticks: widths.iter().map(|w| w.to_string()).collect(),
                    values: map.values,
                    diverging: map.diverging,
                    units: map.units.into(),
                },
            )?;
            let _ = writeln!(md, "![{stem}]({stem}.png)");
        }
        md.push('\n');
    }
    md.push_str(&report.accuracy_grid_markdown());
    Ok(())
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
    nc_data::io::write_atomic_bytes(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
