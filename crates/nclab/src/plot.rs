//! Figures as PNG and SVG, drawn with plotters and an embedded font (no system font
//! libraries). Every figure is written to `STEM.png` and `STEM.svg`, each atomically.

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &str = "sans-serif";

/// Colours of the series, in order (the losses keep their colour across figures).
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font cannot be invalid; if it were, text would be missing, not wrong.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// Index into [`PALETTE`], so a loss has the same colour in every panel.
    pub colour: usize,
    pub points: Vec<(f64, f64)>,
}

/// One panel of a figure: several series against a shared x axis.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Log-scale y axis (used only when every value is positive).
    pub log_y: bool,
}

/// A grid of numbers shown as coloured cells with their values written in.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_ticks: Vec<String>,
    pub y_ticks: Vec<String>,
    /// values[row][col]; `None` is drawn grey (no run).
    pub values: Vec<Vec<Option<f64>>>,
    /// Diverging colours centred on 0 (for differences), else sequential.
    pub diverging: bool,
    /// What the colour scale measures, written beside it (`accuracy`, `points`, ...).
    pub units: String,
}

/// Width in pixels of a label of `text` at the tick font (13 px): a generous 7.5 px per
/// character, so no tick label is cut off.
fn label_width(text: &str) -> u32 {
    (text.chars().count() as f64 * 7.5).ceil() as u32
}

/// [`label_width`] of the longest of `labels` (0 for none).
fn widest_label(labels: &[String]) -> u32 {
    labels.iter().map(|t| label_width(t)).max().unwrap_or(0)
}

/// Names shortened the same way everywhere they appear (heatmap ticks, legends): the
/// longest common prefix and suffix that end at a separator (`/`, `_`, `-`, `.`) are
/// dropped when every name keeps something, then a name still longer than `max` characters
/// keeps its start and end around `…`. Distinct names stay distinct unless only their
/// middles differ beyond `max`; then they are numbered.
pub fn short_names(names: &[String], max: usize) -> Vec<String> {
    let is_sep = |c: char| matches!(c, '/' | '_' | '-' | '.');
    let chars: Vec<Vec<char>> = names.iter().map(|n| n.chars().collect()).collect();
    let shortest = chars.iter().map(Vec::len).min().unwrap_or(0);
    let mut prefix = 0;
    if names.len() > 1 {
        let common = (0..shortest)
            .take_while(|&i| chars.iter().all(|c| c[i] == chars[0][i]))
            .count();
        prefix = (0..common)
            .rev()
            .find(|&i| is_sep(chars[0][i]))
            .map_or(0, |i| i + 1);
    }
    let mut suffix = 0;
    if names.len() > 1 {
        let common = (0..shortest - prefix)
            .take_while(|&i| {
                chars
                    .iter()
                    .all(|c| c[c.len() - 1 - i] == chars[0][chars[0].len() - 1 - i])
            })
            .count();
        suffix = (0..common)
            .rev()
            .find(|&i| is_sep(chars[0][chars[0].len() - 1 - i]))
            .map_or(0, |i| i + 1);
    }
    let mut short: Vec<String> = chars
        .iter()
        .map(|c| {
            let kept: Vec<char> = c[prefix..c.len() - suffix].to_vec();
            if kept.len() <= max || max < 3 {
                kept.into_iter().collect()
            } else {
                let head = (max - 1) / 2;
                let tail = max - 1 - head;
                let mut out: String = kept[..head].iter().collect();
                out.push('…');
                out.extend(&kept[kept.len() - tail..]);
                out
            }
        })
        .collect();
    let mut sorted = short.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() < short.len() {
        for (i, name) in short.iter_mut().enumerate() {
            *name = format!("{}:{name}", i + 1);
        }
    }
    short
}

/// Whether values span enough decades (and are all positive) to deserve a log axis.
pub fn spans_decades(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if !v.is_finite() {
            continue;
        }
        if v <= 0.0 {
            return false;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    hi > 0.0 && hi / lo >= 100.0
}

/// Writes `stem.png` and `stem.svg` with the panels in a grid of `columns` columns.
pub fn panels(stem: &Path, title: &str, panels: &[Panel], columns: usize) -> Result<()> {
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns);
    let size = (420 * columns as u32, 40 + 320 * rows as u32);
    render(
        stem,
        size,
        &Figure::Panels {
            title,
            panels,
            rows,
            columns,
        },
    )
}

/// Writes `stem.png` and `stem.svg` with one heatmap.
pub fn heatmap(stem: &Path, map: &Heatmap) -> Result<()> {
    let (widest_x, widest_y) = (widest_label(&map.x_ticks), widest_label(&map.y_ticks));
    let cell = 110.max(widest_x + 16);
    // y label area, cells, colour bar; at least as wide as the title (18 px font).
    let width = (widest_y + 60 + cell * map.x_ticks.len() as u32 + COLOUR_BAR_WIDTH)
        .max(label_width(&map.title) * 3 / 2 + 40);
    let size = (width, 120 + 60 * map.y_ticks.len() as u32);
    render(stem, size, &Figure::Heatmap(map))
}

/// Writes `stem.png` and `stem.svg`: a histogram of `values` with an optional vertical marker
/// (e.g. the theoretical optimum).
pub fn histogram(
    stem: &Path,
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
    marker: Option<(f64, &str)>,
) -> Result<()> {
    render(
        stem,
        (640, 420),
        &Figure::Histogram {
            title,
            x_label,
            values,
            bins,
            marker,
        },
    )
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What a figure shows; drawn once per backend.
enum Figure<'a> {
    Panels {
        title: &'a str,
        panels: &'a [Panel],
        rows: usize,
        columns: usize,
    },
    Heatmap(&'a Heatmap),
    Histogram {
        title: &'a str,
        x_label: &'a str,
        values: &'a [f64],
        bins: usize,
        marker: Option<(f64, &'a str)>,
    },
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, figure: &Figure<'_>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    match *figure {
        Figure::Panels {
            title,
            panels,
            rows,
            columns,
        } => {
            let root = root.titled(title, (FONT, 22))?;
            for (area, panel) in root.split_evenly((rows, columns)).iter().zip(panels) {
                draw_panel(area, panel)?;
            }
            Ok(())
        }
        Figure::Heatmap(map) => draw_heatmap(root, map),
        Figure::Histogram {
            title,
            x_label,
            values,
            bins,
            marker,
        } => draw_histogram(root, title, x_label, values, bins, marker),
    }
}

fn draw_histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    values: &[f64],
    bins: usize,
    marker: Option<(f64, &str)>,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if let Some((m, _)) = marker {
        lo = lo.min(m);
        hi = hi.max(m);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(lo.abs() * 1e-9).max(1e-12);
    let (lo, hi) = (lo - pad, hi + pad);
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    for v in &finite {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(lo..hi, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("count")
        .label_style((FONT, 13))
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = lo + i as f64 * width;
        Rectangle::new(
            [(x0, 0.0), (x0 + width, c as f64)],
            PALETTE[0].mix(0.7).filled(),
        )
    }))?;
    if let Some((m, label)) = marker {
        chart
            .draw_series(LineSeries::new(
                vec![(m, 0.0), (m, top)],
                PALETTE[3].stroke_width(2),
            ))?
            .label(label)
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[3].stroke_width(2))
            });
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// Renders the figure to PNG and SVG, each via a temporary file and a rename.
fn render(stem: &Path, size: (u32, u32), figure: &Figure<'_>) -> Result<()> {
    register_font();
    let png = with_extension(stem, "png");
    let svg = with_extension(stem, "svg");
    let png_tmp = with_extension(stem, "tmp.png");
    let svg_tmp = with_extension(stem, "tmp.svg");
    {
        let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(&root, figure).map_err(|e| anyhow!("drawing {}: {e}", png.display()))?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg_tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(&root, figure).map_err(|e| anyhow!("drawing {}: {e}", svg.display()))?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", svg.display()))?;
    }
    std::fs::rename(&png_tmp, &png).with_context(|| format!("writing {}", png.display()))?;
    std::fs::rename(&svg_tmp, &svg).with_context(|| format!("writing {}", svg.display()))?;
    Ok(())
}

fn with_extension(stem: &Path, extension: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let points = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for (x, y) in points() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let log_y = panel.log_y && y0 > 0.0;
    // A few whole-numbered x values (layers): one tick per value, none between.
    let x_ticks = if points().all(|(x, _)| x.fract() == 0.0) && x1 - x0 <= 12.0 {
        (x1 - x0) as usize + 1
    } else {
        10
    };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, (FONT, 17))
        .margin(10)
        .x_label_area_size(38)
        .y_label_area_size(62);
    if log_y {
        let (lo, hi) = (y0 / 1.5, if y1 > y0 { y1 * 1.5 } else { y0 * 10.0 });
        let mut chart = builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .x_labels(x_ticks)
            .x_label_formatter(&|v| axis_number(*v))
            .y_desc(&panel.y_label)
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style((FONT, 12))
            .draw()?;
        draw_lines(&mut chart, panel)?;
    } else {
        let pad = ((y1 - y0) * 0.08).max(1e-9);
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .x_labels(x_ticks)
            .x_label_formatter(&|v| axis_number(*v))
            .y_desc(&panel.y_label)
            .label_style((FONT, 12))
            .draw()?;
        draw_lines(&mut chart, panel)?;
    }
    Ok(())
}

/// A tick label without a spurious decimal part: epochs print as `100`, not `100.0`.
fn axis_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        // Ticks between whole numbers: at most 3 decimals, without the float's rounding
        // noise (2.4999999999999996 prints as 2.5).
        let fixed = format!("{v:.3}");
        fixed
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn draw_lines<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    panel: &Panel,
) -> DrawResult<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64>,
{
    for series in &panel.series {
        let colour = PALETTE[series.colour % PALETTE.len()];
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(&series.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, colour.filled())))?;
    }
    if !panel.series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// Sequential (viridis-like) or diverging (blue-white-red) colour of t in [0, 1].
fn colour_at(t: f64, diverging: bool) -> RGBColor {
    let stops: &[(f64, (f64, f64, f64))] = if diverging {
        &[
            (0.0, (33.0, 102.0, 172.0)),
            (0.5, (247.0, 247.0, 247.0)),
            (1.0, (178.0, 24.0, 43.0)),
        ]
    } else {
        &[
            (0.0, (68.0, 1.0, 84.0)),
            (0.25, (59.0, 82.0, 139.0)),
            (0.5, (33.0, 145.0, 140.0)),
            (0.75, (94.0, 201.0, 98.0)),
            (1.0, (253.0, 231.0, 37.0)),
        ]
    };
    let t = t.clamp(0.0, 1.0);
    let i = stops
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(stops.len() - 2);
    let ((ta, a), (tb, b)) = (stops[i], stops[i + 1]);
    let f = if tb > ta { (t - ta) / (tb - ta) } else { 0.0 };
    let mix = |x: f64, y: f64| (x + f * (y - x)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_heatmap<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, map: &Heatmap) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let (cols, rows) = (map.x_ticks.len(), map.y_ticks.len());
    let known: Vec<f64> = map
        .values
        .iter()
        .flatten()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = colour_range(&known, map.diverging);
    let widest_y = widest_label(&map.y_ticks);
    // The title spans the whole figure, cells and colour bar, so a narrow grid cannot cut it.
    let root = root.titled(&map.title, (FONT, 18))?;
    let (width, _) = root.dim_in_pixel();
    let (cells_area, bar_area) = root.split_horizontally(width.saturating_sub(COLOUR_BAR_WIDTH));
    draw_colour_bar(&bar_area, lo, hi, map)?;
    let mut chart = ChartBuilder::on(&cells_area)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(widest_y + 40)
        .build_cartesian_2d(0.0..cols as f64, 0.0..rows as f64)?;
    let (x_ticks, y_ticks) = (map.x_ticks.clone(), map.y_ticks.clone());
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&map.x_label)
        .y_desc(&map.y_label)
        .x_labels(cols * 2 + 1)
        .y_labels(rows * 2 + 1)
        .x_label_formatter(&move |v| tick(&x_ticks, *v))
        .y_label_formatter(&move |v| tick(&y_ticks, *v))
        .label_style((FONT, 13))
        .draw()?;
    for (r, row) in map.values.iter().enumerate() {
        for (c, value) in row.iter().enumerate() {
            let fill = match value {
                Some(v) if v.is_finite() => colour_at((v - lo) / (hi - lo), map.diverging),
                _ => RGBColor(200, 200, 200),
            };
            let (x, y) = (c as f64, r as f64);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                fill.filled(),
            )))?;
            let text = value.map_or("n/a".to_string(), |v| format!("{v:.4}"));
            let dark = (fill.0 as u32 + fill.1 as u32 + fill.2 as u32) < 330;
            let style = TextStyle::from((FONT, 14).into_font())
                .color(if dark { &WHITE } else { &BLACK })
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
            chart.draw_series(std::iter::once(Text::new(text, (x + 0.5, y + 0.5), style)))?;
        }
    }
    Ok(())
}

/// The value range of the colour scale: the values' own range, symmetric about 0 when
/// `diverging`. Never empty, never infinite and never narrower than 1e-9 of its size (the
/// colour bar's axis needs a proper range: with none, no finite value, or values all
/// equal, choosing its tick marks never ended).
fn colour_range(values: &[f64], diverging: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return if diverging { (-1.0, 1.0) } else { (0.0, 1.0) };
    }
    if diverging {
        let m = lo.abs().max(hi.abs());
        (lo, hi) = (-m, m);
    }
    let size = lo.abs().max(hi.abs());
    if size == 0.0 {
        return (-1.0, 1.0);
    }
    if hi - lo < 1e-9 * size {
        let centre = 0.5 * (lo + hi);
        (lo, hi) = (centre - 0.5 * size, centre + 0.5 * size);
    }
    (lo, hi)
}

/// Pixels kept right of the cells for the colour bar and its labels.
const COLOUR_BAR_WIDTH: u32 = 130;

/// The colour scale from `lo` (bottom) to `hi` (top), its value labels and `map.units`.
fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
    map: &Heatmap,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    const STEPS: usize = 64;
    let mut bar = ChartBuilder::on(area)
        .margin_top(12)
        .margin_bottom(57)
        .margin_right(8)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..1.0, lo..hi)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_desc(&map.units)
        .y_label_formatter(&|v| {
            if *v != 0.0 && v.abs() < 1e-3 {
                format!("{v:.1e}")
            } else {
                format!("{v:.4}")
            }
        })
        .label_style((FONT, 12))
        .draw()?;
    let step = (hi - lo) / STEPS as f64;
    bar.draw_series((0..STEPS).map(|i| {
        let y = lo + i as f64 * step;
        let t = (i as f64 + 0.5) / STEPS as f64;
        Rectangle::new(
            [(0.0, y), (1.0, y + step)],
            colour_at(t, map.diverging).filled(),
        )
    }))?;
    Ok(())
}

/// The label of the cell whose centre is at `v` (ticks sit at half-integers).
fn tick(labels: &[String], v: f64) -> String {
    let centre = v - 0.5;
    if (centre - centre.round()).abs() < 1e-6 && centre >= 0.0 {
        labels
            .get(centre.round() as usize)
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_drop_float_noise() {
        assert_eq!(axis_number(400.0), "400");
        assert_eq!(axis_number(2.4999999999999996), "2.5");
        assert_eq!(axis_number(0.125), "0.125");
        assert_eq!(axis_number(1.2), "1.2");
        assert_eq!(axis_number(-0.5), "-0.5");
    }

    #[test]
    fn writes_valid_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("nclab-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let panel = Panel {
            title: "NC1 (train)".into(),
            x_label: "epoch".into(),
            y_label: "NC1".into(),
            series: vec![Series {
                label: "ce".into(),
                colour: 0,
                points: vec![(0.0, 1.0), (1.0, 0.1), (2.0, 0.01)],
            }],
            log_y: true,
        };
        panels(&dir.join("lines"), "test", &[panel.clone(), panel], 2).unwrap();
        heatmap(
            &dir.join("map"),
            &Heatmap {
                title: "accuracy".into(),
                x_label: "epochs".into(),
                y_label: "width".into(),
                x_ticks: vec!["10".into(), "20".into()],
                y_ticks: vec!["1".into()],
                values: vec![vec![Some(0.9), None]],
                diverging: false,
                units: "accuracy".into(),
            },
        )
        .unwrap();
        histogram(
            &dir.join("hist"),
            "objective",
            "f",
            &[1.0, 1.1, 1.0],
            10,
            Some((1.0, "f*")),
        )
        .unwrap();
        for name in ["lines", "map", "hist"] {
            let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png");
            let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
            assert!(
                svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
                "{name}.svg"
            );
        }
        assert!(std::fs::read_to_string(dir.join("lines.svg"))
            .unwrap()
            .contains("NC1 (train)"));
        assert!(!dir.join("lines.tmp.png").exists());
    }

    #[test]
    fn colour_ranges_are_proper_for_degenerate_values() {
        assert_eq!(colour_range(&[0.2, 0.9, 0.5], false), (0.2, 0.9));
        assert_eq!(colour_range(&[-0.01, 0.004], true), (-0.01, 0.01));
        // None finite, all equal, all zero: a proper range around them.
        assert_eq!(colour_range(&[], false), (0.0, 1.0));
        assert_eq!(colour_range(&[f64::NAN, f64::INFINITY], true), (-1.0, 1.0));
        assert_eq!(colour_range(&[0.0, 0.0], true), (-1.0, 1.0));
        assert_eq!(colour_range(&[0.0], false), (-1.0, 1.0));
        let (lo, hi) = colour_range(&[0.93, 0.93], false);
        assert!(lo < 0.93 && hi > 0.93 && hi - lo >= 0.9, "{lo} {hi}");
    }

    #[test]
    fn heatmaps_of_degenerate_values_are_drawn() {
        let dir =
            std::env::temp_dir().join(format!("nclab-plot-degenerate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, values, diverging) in [
            ("none", vec![vec![None, None]], false),
            ("zeros", vec![vec![Some(0.0), Some(0.0)]], true),
            ("equal", vec![vec![Some(0.93), Some(0.93)]], false),
            ("tiny", vec![vec![Some(1e-14), Some(-2e-14)]], true),
        ] {
            heatmap(
                &dir.join(name),
                &Heatmap {
                    title: name.into(),
                    x_label: "epochs".into(),
                    y_label: "width".into(),
                    x_ticks: vec!["100".into(), "200".into()],
                    y_ticks: vec!["1".into()],
                    values,
                    diverging,
                    units: "accuracy".into(),
                },
            )
            .unwrap();
            assert!(dir.join(format!("{name}.png")).is_file());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_names_drop_shared_parts_at_separators_and_stay_distinct() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            short_names(
                &names(&[
                    "runs/reproduce/ce_w1_e400_s1",
                    "runs/reproduce/ls_w1_e400_s1"
                ]),
                20
            ),
            ["ce", "ls"]
        );
        // The shared part must end at a separator: "ce1" and "ce2" keep their whole names.
        assert_eq!(short_names(&names(&["ce1", "ce2"]), 20), ["ce1", "ce2"]);
        assert_eq!(
            short_names(&names(&["only/one_name"]), 20),
            ["only/one_name"]
        );
        let long = short_names(&names(&["a/averyveryverylongname", "a/b"]), 9);
        assert_eq!(long, ["aver…name", "b"]);
        assert_eq!(long[0].chars().count(), 9);
        // Names that only differ in the elided middle are numbered, not merged.
        let clash = short_names(&names(&["x/abcdefXXghijk", "x/abcdefYYghijk"]), 7);
        assert_eq!(clash, ["1:abc…ijk", "2:abc…ijk"]);
    }

    #[test]
    fn log_axis_only_for_positive_values_spanning_decades() {
        assert!(spans_decades([1.0, 0.001]));
        assert!(!spans_decades([1.0, 0.5]));
        assert!(!spans_decades([1.0, 0.0, 0.001]));
    }
}
