//! `nclab landscape`: random restarts against f*, and the Hessian's extreme eigenvalues at
//! the origin, at a critical point where two classes share one mean, and at the global
//! solution.

use super::ufm::ProblemArgs;
use anyhow::{bail, Context, Result};
use nc_math::ufm::landscape::{probe, Landscape, ProbeOptions};
use std::io::Write;
use std::path::PathBuf;

/// Relative gaps below this are drawn in the histogram's lowest bin.
const GAP_FLOOR: f64 = 1e-17;

#[derive(clap::Args, Debug)]
#[command(after_help = "What each number means: docs/ufm.md. Exit status 2 on bad arguments.")]
pub struct Args {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Random starts (seeds seed, seed+1, ...), each solved to the tolerance.
    #[arg(long, default_value_t = 10)]
    pub restarts: usize,
    /// Lanczos steps for the Hessian's extreme eigenvalues at each critical point.
    #[arg(long, default_value_t = 100)]
    pub lanczos_steps: usize,
    /// Print the whole probe as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the histogram of the restarts' final objectives to STEM.png and STEM.svg.
    #[arg(long, value_name = "STEM")]
    pub plot: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let (ufm, solve) = args.problem.validate()?;
    if args.restarts == 0 {
        bail!("--restarts must be at least 1");
    }
    if args.lanczos_steps == 0 {
        bail!("--lanczos-steps must be at least 1");
    }
    let options = ProbeOptions {
        restarts: args.restarts,
        seed: args.problem.seed,
        init_scale: args.problem.init_scale,
        solve,
        lanczos_steps: args.lanczos_steps,
    };
    let landscape = probe(&ufm, &options).context("landscape probe failed")?;
    if let Some(stem) = &args.plot {
        plot_restarts(stem, &landscape)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&landscape)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "UFM {}: K = {}, n = {}, d = {}, lambda_w = {}, lambda_h = {}, lambda_b = {}",
        ufm.loss, ufm.classes, ufm.per_class, ufm.dim, ufm.lambda_w, ufm.lambda_h, ufm.lambda_b
    )?;
    match (landscape.optimum, &landscape.theory_gap) {
        (Some(f), _) => writeln!(
            out,
            "optimum f* = {f:.15e}, logit margin r* = {:.6e}",
            landscape.optimal_margin.unwrap_or(f64::NAN)
        )?,
        (None, reason) => writeln!(
            out,
            "optimum f*: not given by the theory ({})",
            reason.as_deref().unwrap_or("")
        )?,
    }
    let reached = landscape
        .restarts
        .iter()
        .filter(|r| r.relative_gap.is_some_and(|g| g.abs() <= 1e-9))
        .count();
    writeln!(
        out,
        "\nrestarts: {} of {} reach f* to a relative gap of 1e-9",
        reached,
        landscape.restarts.len()
    )?;
    writeln!(
        out,
        "{:>6} {:>24} {:>12} {:>10} {:>6}",
        "seed", "objective", "rel. gap", "|grad|", "iters"
    )?;
    for r in &landscape.restarts {
        let gap = r.relative_gap.map_or("-".into(), |g| format!("{g:.2e}"));
        writeln!(
            out,
            "{:>6} {:>24.15e} {:>12} {:>10.2e} {:>6}",
            r.seed, r.objective, gap, r.grad_norm, r.iterations
        )?;
    }
    writeln!(
        out,
        "\ncritical points (Hessian eigenvalues by {} Lanczos steps at most):",
        args.lanczos_steps
    )?;
    for p in &landscape.critical_points {
        let gap = p.relative_gap.map_or("-".into(), |g| format!("{g:.2e}"));
        writeln!(
            out,
            "  {:<15} f = {:.10e}  rel. gap {gap}  |grad| {:.1e}",
            p.name, p.objective, p.grad_norm
        )?;
        writeln!(
            out,
            "  {:<15} lambda_min = {:.3e}  lambda_max = {:.3e}",
            "", p.curvature.smallest, p.curvature.largest
        )?;
        writeln!(out, "  {:<15} {}", "", p.verdict)?;
    }
    Ok(())
}

/// Histogram of `log10 |relative gap|` of the restarts (of `f - min f` over the restarts when
/// the theory gives no f*), with the 1e-9 target marked.
fn plot_restarts(stem: &std::path::Path, landscape: &Landscape) -> Result<()> {
    let best = landscape
        .restarts
        .iter()
        .map(|r| r.objective)
        .fold(f64::INFINITY, f64::min);
    let (values, label): (Vec<f64>, _) = match landscape.optimum {
        Some(_) => (
            landscape
                .restarts
                .iter()
                .map(|r| {
                    r.relative_gap
                        .unwrap_or(f64::NAN)
                        .abs()
                        .max(GAP_FLOOR)
                        .log10()
                })
                .collect(),
            "log10 |f - f*| / |f*|",
        ),
        None => (
            landscape
                .restarts
                .iter()
                .map(|r| {
                    ((r.objective - best) / best.abs().max(GAP_FLOOR))
                        .max(GAP_FLOOR)
                        .log10()
                })
                .collect(),
            "log10 (f - best f) / |best f|",
        ),
    };
    let title = format!(
        "{} random restarts: final objective",
        landscape.restarts.len()
    );
    crate::plot::histogram(
        stem,
        &title,
        label,
        &values,
        20,
        Some((-9.0, "target 1e-9")),
    )
    .with_context(|| format!("writing the histogram {}", stem.display()))
}
