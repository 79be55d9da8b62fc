//! `nclab ufm`: solve the unconstrained feature model for one loss from a seeded random
//! start and compare the result with the closed-form optimum f* of the theory.

use crate::args::{loss_kind_parser, LossParamsArgs};
use anyhow::{bail, Context, Result};
use nc_math::loss::LossKind;
use nc_math::ufm::solver::{minimize, random_start, Iterate, Optimizer, SolveOptions};
use nc_math::ufm::{relative_gap, solution_metrics, theory, Ufm};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerName {
    Lbfgs,
    Gd,
    Momentum,
}

/// The UFM instance and how to solve it; shared by `nclab ufm` and `nclab landscape`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProblemArgs {
    /// The loss.
    #[arg(long, value_parser = loss_kind_parser())]
    pub loss: LossKind,
    #[command(flatten)]
    pub loss_params: LossParamsArgs,
    /// Number of classes K (>= 2).
    #[arg(long, allow_hyphen_values = true)]
    pub classes: i64,
    /// Samples per class n (>= 1).
    #[arg(long, allow_hyphen_values = true)]
    pub per_class: i64,
    /// Feature dimension d (>= 1; the theory needs d >= K-1).
    #[arg(long, allow_hyphen_values = true)]
    pub dim: i64,
    /// Weight decay on the classifier W.
    #[arg(long, allow_hyphen_values = true)]
    pub lambda_w: f64,
    /// Weight decay on the features H.
    #[arg(long, allow_hyphen_values = true)]
    pub lambda_h: f64,
    /// Weight decay on the bias b.
    #[arg(long, allow_hyphen_values = true)]
    pub lambda_b: f64,
    /// Seed of the random start.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Standard deviation s of the random start: every entry of W, H, b is N(0, s^2).
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    pub init_scale: f64,
    /// lbfgs (strong-Wolfe line search), gd (fixed step) or momentum (heavy ball).
    #[arg(long, value_enum, default_value_t = OptimizerName::Lbfgs)]
    pub optimizer: OptimizerName,
    /// Stop once the gradient norm ||grad f||_2 is at most this.
    #[arg(long, default_value_t = 1e-10, allow_hyphen_values = true)]
    pub tol: f64,
    /// Iteration budget.
    #[arg(long, default_value_t = 10_000)]
    pub max_iter: usize,
    /// Step size of gd and momentum.
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    pub lr: f64,
    /// Momentum coefficient of the heavy-ball method, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_hyphen_values = true)]
    pub momentum: f64,
    /// Curvature pairs kept by L-BFGS.
    #[arg(long, default_value_t = 10)]
    pub memory: usize,
}

impl ProblemArgs {
    /// Checks every value and builds the instance and the solver options.
    pub fn validate(&self) -> Result<(Ufm, SolveOptions)> {
        let finite = [
            ("--alpha", self.loss_params.alpha),
            ("--gamma", self.loss_params.gamma),
            ("--rescale", self.loss_params.rescale),
            ("--lambda-w", self.lambda_w),
            ("--lambda-h", self.lambda_h),
            ("--lambda-b", self.lambda_b),
            ("--init-scale", self.init_scale),
            ("--tol", self.tol),
            ("--lr", self.lr),
            ("--momentum", self.momentum),
        ];
        if let Some((flag, value)) = finite.iter().find(|(_, v)| !v.is_finite()) {
            bail!("{flag} must be a finite number, got {value}");
        }
        let count = |flag: &str, value: i64, min: i64| -> Result<usize> {
            if value < min {
                bail!("{flag} must be at least {min}, got {value}");
            }
            Ok(value as usize)
        };
        let classes = count("--classes", self.classes, 2)?;
        let per_class = count("--per-class", self.per_class, 1)?;
        let dim = count("--dim", self.dim, 1)?;
        for (flag, value) in [
            ("--lambda-w", self.lambda_w),
            ("--lambda-h", self.lambda_h),
            ("--lambda-b", self.lambda_b),
        ] {
            if value < 0.0 {
                bail!("{flag} must be >= 0, got {value}");
            }
        }
        if self.init_scale < 0.0 {
            bail!("--init-scale must be >= 0, got {}", self.init_scale);
        }
        let loss = self.loss_params.loss(self.loss);
        let ufm = Ufm::new(
            loss,
            classes,
            per_class,
            dim,
            self.lambda_w,
            self.lambda_h,
            self.lambda_b,
        )
        .context("invalid UFM")?;
        // Refuse what cannot be held before allocating any of it.
        let pairs = if self.optimizer == OptimizerName::Lbfgs {
            self.memory
        } else {
            0
        };
        let limit = nc_data::limits::max_memory();
        match ufm.working_set_bytes(pairs) {
            Some(bytes) if bytes <= limit => {}
            estimate => bail!(
                "K = {classes}, n = {per_class}, d = {dim} needs about {} (W, H, b, the solver's vectors and the N x K logits), above the memory limit of {} (raise it with --max-memory)",
                estimate.map_or("more than 16 EiB".to_string(), nc_data::limits::human),
                nc_data::limits::human(limit)
            ),
        }
        let optimizer = match self.optimizer {
            OptimizerName::Lbfgs => Optimizer::Lbfgs {
                memory: self.memory,
            },
            OptimizerName::Gd => Optimizer::GradientDescent { step: self.lr },
            OptimizerName::Momentum => Optimizer::Momentum {
                step: self.lr,
                momentum: self.momentum,
            },
        };
        if self.memory == 0 {
            bail!("--memory must be at least 1");
        }
        if self.lr <= 0.0 {
            bail!("--lr must be > 0, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum must be in [0, 1), got {}", self.momentum);
        }
        if self.tol < 0.0 {
            bail!("--tol must be >= 0, got {}", self.tol);
        }
        Ok((
            ufm,
            SolveOptions {
                optimizer,
                grad_tol: self.tol,
                max_iter: self.max_iter,
                target: None,
            },
        ))
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "What each number means: docs/ufm.md. Exit status 2 on bad arguments.")]
pub struct Args {
    #[command(flatten)]
    pub problem: ProblemArgs,
    /// Print one JSON object with exactly the keys objective, optimum, relative_gap,
    /// grad_norm, iterations, seconds, nc1, nc2, nc3, nc4.
    #[arg(long)]
    pub json: bool,
    /// Write one CSV row per iteration: iteration, objective, grad_norm, nc1..nc4.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Stop as soon as the relative gap (f - f*) / |f*| is at most G (needs f* from the
    /// theory); used to time how long a given accuracy takes.
    #[arg(long, value_name = "G", allow_hyphen_values = true)]
    pub target_gap: Option<f64>,
}

/// The `--json` report.
#[derive(Serialize)]
struct Report {
    objective: f64,
    optimum: Option<f64>,
    relative_gap: Option<f64>,
    grad_norm: f64,
    iterations: usize,
    seconds: f64,
    nc1: Option<f64>,
    nc2: Option<f64>,
    nc3: Option<f64>,
    nc4: Option<f64>,
}

/// A point with `||(W, H)||_F` at most this is the origin, where the NC metrics are 0/0
/// (the criterion for an origin-optimal solve).
const ORIGIN_NORM: f64 = 1e-6;

/// `[nc1, nc2, nc3, nc4]` of a point; all `None` where the class means coincide or the point
/// is the origin.
fn nc_values(ufm: &Ufm, x: &[f64]) -> Result<[Option<f64>; 4]> {
    let weights_and_features = &x[..x.len() - ufm.classes];
    if weights_and_features
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        <= ORIGIN_NORM
    {
        return Ok([None; 4]);
    }
    Ok(match solution_metrics(ufm, x)? {
        Some(m) => [Some(m.nc1), m.nc2, m.nc3, m.nc4],
        None => [None; 4],
    })
}

pub fn run(args: Args) -> Result<()> {
    let (ufm, mut options) = args.problem.validate()?;
    let optimum = theory::optimum(&ufm);
    if let Some(gap) = args.target_gap {
        if !(gap.is_finite() && gap >= 0.0) {
            bail!("--target-gap must be a finite number >= 0, got {gap}");
        }
        let Some(optimum) = &optimum else {
            bail!(
                "--target-gap needs f*, which the theory does not give here: {}",
                theory::not_covered_reason(&ufm).unwrap_or_default()
            );
        };
        options.target = Some(nc_math::ufm::objective_at_gap(gap, optimum.value));
    }
    let start = random_start(&ufm, args.problem.seed, args.problem.init_scale)?;

    let mut trace_rows = Vec::new();
    let mut trace_error = None;
    let mut observe = |it: &Iterate, x: &[f64]| {
        if args.trace.is_none() || trace_error.is_some() {
            return;
        }
        match nc_values(&ufm, x) {
            Ok(nc) => {
                let cells: Vec<String> = nc
                    .iter()
                    .map(|v| v.map_or(String::new(), |v| format!("{v:e}")))
                    .collect();
                trace_rows.push(format!(
                    "{},{:e},{:e},{}",
                    it.iteration,
                    it.objective,
                    it.grad_norm,
                    cells.join(",")
                ));
            }
            Err(err) => trace_error = Some(err),
        }
    };
    let clock = Instant::now();
    let solution = minimize(&ufm, start, &options, &mut observe).context("solver failed")?;
    let seconds = clock.elapsed().as_secs_f64();
    if let Some(err) = trace_error {
        return Err(err).context("NC metrics for the trace");
    }
    if let Some(path) = &args.trace {
        let mut text = String::from("iteration,objective,grad_norm,nc1,nc2,nc3,nc4\n");
        trace_rows.iter().for_each(|row| {
            text.push_str(row);
            text.push('\n');
        });
        std::fs::write(path, text)
            .with_context(|| format!("writing the trace {}", path.display()))?;
    }

    let [nc1, nc2, nc3, nc4] = nc_values(&ufm, &solution.x)?;
    let report = Report {
        objective: solution.objective,
        optimum: optimum.as_ref().map(|o| o.value),
        relative_gap: optimum
            .as_ref()
            .map(|o| relative_gap(solution.objective, o.value)),
        grad_norm: solution.grad_norm,
        iterations: solution.iterations,
        seconds,
        nc1,
        nc2,
        nc3,
        nc4,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        return Ok(());
    }
    let show = |v: Option<f64>| {
        v.map_or("null (at the origin: 0/0)".to_string(), |v| {
            format!("{v:.3e}")
        })
    };
    writeln!(
        out,
        "UFM {}: K = {}, n = {}, d = {}, lambda_w = {}, lambda_h = {}, lambda_b = {}",
        ufm.loss, ufm.classes, ufm.per_class, ufm.dim, ufm.lambda_w, ufm.lambda_h, ufm.lambda_b
    )?;
    writeln!(out, "objective     {:.15e}", report.objective)?;
    match &optimum {
        Some(o) => {
            writeln!(
                out,
                "optimum f*    {:.15e}  (logit margin r* = {:.6e})",
                o.value, o.margin
            )?;
            writeln!(
                out,
                "relative_gap  {:.3e}",
                report.relative_gap.unwrap_or(f64::NAN)
            )?;
            if o.origin_is_optimal {
                writeln!(
                    out,
                    "              the origin W = H = 0 is the global minimiser here"
                )?;
            } else if o.origin_is_spurious_local_minimum() {
                writeln!(
                    out,
                    "              the origin is also a local minimiser, but not a global one"
                )?;
            }
        }
        None => writeln!(
            out,
            "optimum f*    not given by the theory: {}",
            theory::not_covered_reason(&ufm).unwrap_or_default()
        )?,
    }
    writeln!(out, "grad_norm     {:.3e}", report.grad_norm)?;
    writeln!(
        out,
        "iterations    {} ({:?})",
        report.iterations, solution.stop
    )?;
    writeln!(out, "seconds       {:.3}", report.seconds)?;
    for (name, value) in [("nc1", nc1), ("nc2", nc2), ("nc3", nc3), ("nc4", nc4)] {
        writeln!(out, "{name}           {}", show(value))?;
    }
    Ok(())
}
