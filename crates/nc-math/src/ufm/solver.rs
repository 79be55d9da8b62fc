//! Full-batch f64 minimisers: L-BFGS with a strong-Wolfe line search (Nocedal & Wright,
//! Algorithms 7.4, 3.5 and 3.6), gradient descent and heavy-ball momentum, and the seeded
//! random start.

use super::objective::{Objective, Ufm};
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::Serialize;

/// Sufficient-decrease constant of the Wolfe conditions.
const WOLFE_DECREASE: f64 = 1e-4;
/// Curvature constant of the strong Wolfe conditions.
const WOLFE_CURVATURE: f64 = 0.9;
/// Function evaluations one line search may spend.
const LINE_SEARCH_EVALUATIONS: usize = 40;

/// Which first-order method to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "optimizer", rename_all = "lowercase")]
pub enum Optimizer {
    /// Limited-memory BFGS keeping `memory` curvature pairs.
    Lbfgs { memory: usize },
    /// `x <- x - step * grad f(x)`.
    #[serde(rename = "gd")]
    GradientDescent { step: f64 },
    /// Heavy ball: `v <- momentum * v - step * grad f(x)`, `x <- x + v`.
    Momentum { step: f64, momentum: f64 },
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveOptions {
    pub optimizer: Optimizer,
    /// Stop once `||grad f||_2 <= grad_tol`.
    pub grad_tol: f64,
    pub max_iter: usize,
    /// Stop once `f(x) <= target` (e.g. `f* (1 + gap)` to time how long a gap takes).
    pub target: Option<f64>,
}

/// Why a solve stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The gradient norm reached the tolerance.
    Converged,
    /// The objective reached the target value.
    ReachedTarget,
    /// The iteration budget ran out.
    MaxIterations,
    /// No step along the search direction lowers f any more: f is at its floating-point
    /// floor (typical once the gradient norm is near machine precision).
    Stalled,
}

/// The state after one iteration, handed to the observer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iterate {
    pub iteration: usize,
    pub objective: f64,
    pub grad_norm: f64,
}

/// Result of a solve.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub x: Vec<f64>,
    pub objective: f64,
    pub grad_norm: f64,
    pub iterations: usize,
    pub stop: Stop,
}

/// Entries drawn i.i.d. from `N(0, scale^2)` with a seeded generator: the random start.
pub fn random_start(ufm: &Ufm, seed: u64, scale: f64) -> Result<Vec<f64>> {
    let normal = Normal::new(0.0, scale).map_err(|_| {
        Error::InvalidArgument(format!("init scale must be finite and >= 0, got {scale}"))
    })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok((0..ufm.num_params())
        .map(|_| normal.sample(&mut rng))
        .collect())
}

/// Minimises `objective` from `start`. `observe` sees the start (iteration 0) and every
/// iterate after it, with its parameters.
pub fn minimize(
    objective: &impl Objective,
    start: Vec<f64>,
    options: &SolveOptions,
    mut observe: impl FnMut(&Iterate, &[f64]),
) -> Result<Solution> {
    validate(options)?;
    if start.len() != objective.num_params() {
        return Err(Error::Shape {
            what: "start point",
            expected: objective.num_params().to_string(),
            got: start.len().to_string(),
        });
    }
    let mut state = State::new(objective, start);
    observe(&state.iterate(0), &state.x);
    let mut method = Method::new(&options.optimizer);
    let mut iterations = 0;
    let stop = loop {
        if state.grad_norm <= options.grad_tol {
            break Stop::Converged;
        }
        if options.target.is_some_and(|target| state.value <= target) {
            break Stop::ReachedTarget;
        }
        if iterations >= options.max_iter {
            break Stop::MaxIterations;
        }
        if !method.step(objective, &mut state)? {
            break Stop::Stalled;
        }
        iterations += 1;
        observe(&state.iterate(iterations), &state.x);
    };
    let grad_norm = state.grad_norm;
    Ok(Solution {
        objective: state.value,
        grad_norm,
        x: state.x,
        iterations,
        stop,
    })
}

fn validate(options: &SolveOptions) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument(what));
    if !(options.grad_tol.is_finite() && options.grad_tol >= 0.0) {
        return bad(format!(
            "gradient tolerance must be finite and >= 0, got {}",
            options.grad_tol
        ));
    }
    match options.optimizer {
        Optimizer::Lbfgs { memory: 0 } => bad("L-BFGS needs a memory of at least 1".into()),
        Optimizer::GradientDescent { step } | Optimizer::Momentum { step, .. }
            if !(step.is_finite() && step > 0.0) =>
        {
            bad(format!("step size must be finite and > 0, got {step}"))
        }
        Optimizer::Momentum { momentum, .. } if !(0.0..1.0).contains(&momentum) => {
            bad(format!("momentum must be in [0, 1), got {momentum}"))
        }
        _ => Ok(()),
    }
}

/// The current point with its value and gradient.
struct State {
    x: Vec<f64>,
    value: f64,
    grad: Vec<f64>,
    grad_norm: f64,
}

impl State {
    fn new(objective: &impl Objective, x: Vec<f64>) -> Self {
        let mut grad = vec![0.0; x.len()];
        let value = objective.value_grad(&x, &mut grad);
        let grad_norm = dot(&grad, &grad).sqrt();
        State {
            x,
            value,
            grad,
            grad_norm,
        }
    }

    fn iterate(&self, iteration: usize) -> Iterate {
        Iterate {
            iteration,
            objective: self.value,
            grad_norm: self.grad_norm,
        }
    }
}

enum Method {
    Lbfgs(Lbfgs),
    GradientDescent {
        step: f64,
    },
    Momentum {
        step: f64,
        momentum: f64,
        velocity: Vec<f64>,
    },
}

impl Method {
    fn new(optimizer: &Optimizer) -> Self {
        match *optimizer {
            Optimizer::Lbfgs { memory } => Method::Lbfgs(Lbfgs {
                memory,
                pairs: Vec::new(),
            }),
            Optimizer::GradientDescent { step } => Method::GradientDescent { step },
            Optimizer::Momentum { step, momentum } => Method::Momentum {
                step,
                momentum,
                velocity: Vec::new(),
            },
        }
    }

    /// One iteration; false when no progress is possible.
    fn step(&mut self, objective: &impl Objective, state: &mut State) -> Result<bool> {
        match self {
            Method::Lbfgs(lbfgs) => Ok(lbfgs.step(objective, state)),
            Method::GradientDescent { step } => {
                let x = add_scaled(&state.x, -*step, &state.grad);
                move_to(objective, state, x)
            }
            Method::Momentum {
                step,
                momentum,
                velocity,
            } => {
                if velocity.is_empty() {
                    velocity.resize(state.x.len(), 0.0);
                }
                for (v, g) in velocity.iter_mut().zip(&state.grad) {
                    *v = *momentum * *v - *step * g;
                }
                let x = add_scaled(&state.x, 1.0, velocity);
                move_to(objective, state, x)
            }
        }
    }
}

/// Fixed-step methods: accept `x`, or fail if the objective blew up.
fn move_to(objective: &impl Objective, state: &mut State, x: Vec<f64>) -> Result<bool> {
    *state = State::new(objective, x);
    if !state.value.is_finite() {
        return Err(Error::InvalidArgument(
            "the objective diverged: lower the step size".into(),
        ));
    }
    Ok(true)
}

/// A curvature pair `s = x_{k+1} - x_k`, `y = g_{k+1} - g_k` with `rho = 1 / (y.s)`.
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
}

struct Lbfgs {
    memory: usize,
    pairs: Vec<Pair>,
}

impl Lbfgs {
    /// Search direction `-H_k g` by the two-loop recursion, `H_0 = (s.y / y.y) I`.
    fn direction(&self, grad: &[f64]) -> Vec<f64> {
        let mut q = vec![0.0; grad.len()];
        axpy(-1.0, grad, &mut q);
        let mut alphas = vec![0.0; self.pairs.len()];
        for (pair, alpha) in self.pairs.iter().zip(alphas.iter_mut()).rev() {
            *alpha = pair.rho * dot(&pair.s, &q);
            axpy(-*alpha, &pair.y, &mut q);
        }
        let gamma = match self.pairs.last() {
            Some(last) => 1.0 / (last.rho * dot(&last.y, &last.y)),
            None => 1.0 / dot(grad, grad).sqrt().max(f64::MIN_POSITIVE),
        };
        if q.len() < PARALLEL_LENGTH {
            q.iter_mut().for_each(|v| *v *= gamma);
        } else {
            q.par_iter_mut().for_each(|v| *v *= gamma);
        }
        for (pair, alpha) in self.pairs.iter().zip(&alphas) {
            let beta = pair.rho * dot(&pair.y, &q);
            axpy(alpha - beta, &pair.s, &mut q);
        }
        q
    }

    fn step(&mut self, objective: &impl Objective, state: &mut State) -> bool {
        let mut direction = self.direction(&state.grad);
        if dot(&direction, &state.grad) >= 0.0 {
            // Not a descent direction (lost positive definiteness): restart from steepest descent.
            self.pairs.clear();
            direction = self.direction(&state.grad);
        }
        let found = line_search(objective, state, &direction).or_else(|| {
            if self.pairs.is_empty() {
                return None;
            }
            self.pairs.clear();
            direction = self.direction(&state.grad);
            line_search(objective, state, &direction)
        });
        let Some(next) = found else {
            return false;
        };
        // Reuse the oldest pair's buffers once the memory is full (no fresh allocation).
        let (mut s, mut y) = match self.pairs.len() == self.memory {
            true => {
                let oldest = self.pairs.remove(0);
                (oldest.s, oldest.y)
            }
            false => (vec![0.0; state.x.len()], vec![0.0; state.x.len()]),
        };
        difference_into(&next.x, &state.x, &mut s);
        difference_into(&next.grad, &state.grad, &mut y);
        let sy = dot(&s, &y);
        if sy > 0.0 {
            self.pairs.push(Pair {
                s,
                y,
                rho: 1.0 / sy,
            });
        }
        *state = next;
        true
    }
}

/// A trial point along the search direction.
struct Trial {
    step: f64,
    value: f64,
    slope: f64,
    state: State,
}

fn trial(objective: &impl Objective, from: &State, direction: &[f64], step: f64) -> Trial {
    let x = add_scaled(&from.x, step, direction);
    let state = State::new(objective, x);
    Trial {
        step,
        value: state.value,
        slope: dot(&state.grad, direction),
        state,
    }
}

/// Strong-Wolfe line search from step 1 (Nocedal & Wright, Algorithm 3.5): returns the
/// accepted point, or `None` if no step satisfies the conditions within the budget.
fn line_search(objective: &impl Objective, from: &State, direction: &[f64]) -> Option<State> {
    let (value0, slope0) = (from.value, dot(&from.grad, direction));
    if slope0 >= 0.0 {
        return None;
    }
    let armijo = |t: &Trial| t.value <= value0 + WOLFE_DECREASE * t.step * slope0;
    let curvature = |t: &Trial| t.slope.abs() <= -WOLFE_CURVATURE * slope0;
    let mut previous = Trial {
        step: 0.0,
        value: value0,
        slope: slope0,
        state: State {
            x: Vec::new(),
            value: value0,
            grad: Vec::new(),
            grad_norm: 0.0,
        },
    };
    let mut step = 1.0;
    for evaluation in 0..LINE_SEARCH_EVALUATIONS {
        let current = trial(objective, from, direction, step);
        if !current.value.is_finite() {
            step = 0.5 * (previous.step + step);
            continue;
        }
        if !armijo(&current) || (evaluation > 0 && current.value >= previous.value) {
            return zoom(
                objective,
                from,
                direction,
                previous,
                current,
                LINE_SEARCH_EVALUATIONS - evaluation,
            );
        }
        if curvature(&current) {
            return Some(current.state);
        }
        if current.slope >= 0.0 {
            return zoom(
                objective,
                from,
                direction,
                current,
                previous,
                LINE_SEARCH_EVALUATIONS - evaluation,
            );
        }
        step *= 2.0;
        previous = current;
    }
    None
}

/// Nocedal & Wright, Algorithm 3.6: `low` satisfies sufficient decrease and has the lowest
/// value so far; the minimiser lies between `low` and `high`. Trial steps by cubic
/// interpolation, safeguarded towards the midpoint.
fn zoom(
    objective: &impl Objective,
    from: &State,
    direction: &[f64],
    mut low: Trial,
    mut high: Trial,
    budget: usize,
) -> Option<State> {
    let (value0, slope0) = (from.value, dot(&from.grad, direction));
    for _ in 0..budget {
        let (a, b) = (low.step.min(high.step), low.step.max(high.step));
        if b - a <= f64::EPSILON * b {
            break;
        }
        let mut step = cubic_minimizer(&low, &high).unwrap_or(0.5 * (a + b));
        let margin = 0.1 * (b - a);
        if !(step > a + margin && step < b - margin) {
            step = 0.5 * (a + b);
        }
        let current = trial(objective, from, direction, step);
        if !current.value.is_finite()
            || current.value > value0 + WOLFE_DECREASE * step * slope0
            || current.value >= low.value
        {
            high = current;
            continue;
        }
        if current.slope.abs() <= -WOLFE_CURVATURE * slope0 {
            return Some(current.state);
        }
        if current.slope * (high.step - low.step) >= 0.0 {
            high = low;
        }
        low = current;
    }
    // Out of budget: keep any point that lowered f, so progress is not thrown away.
    (low.step > 0.0 && low.value < value0).then_some(low.state)
}

/// Minimiser of the cubic interpolating value and slope at two steps (N&W eq. 3.59).
fn cubic_minimizer(p: &Trial, q: &Trial) -> Option<f64> {
    let d1 = p.slope + q.slope - 3.0 * (p.value - q.value) / (p.step - q.step);
    let radicand = d1 * d1 - p.slope * q.slope;
    // Negative or NaN: no real minimiser.
    if radicand.is_nan() || radicand < 0.0 {
        return None;
    }
    let d2 = (q.step - p.step).signum() * radicand.sqrt();
    let step = q.step - (q.step - p.step) * (q.slope + d2 - d1) / (q.slope - p.slope + 2.0 * d2);
    step.is_finite().then_some(step)
}

/// Vectors at least this long are split across threads.
const PARALLEL_LENGTH: usize = 1 << 16;
/// Chunk of a vector handed to one thread.
const CHUNK: usize = 1 << 14;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < PARALLEL_LENGTH {
        return dot_serial(a, b);
    }
    a.par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(a, b)| dot_serial(a, b))
        .sum()
}

/// `a . b` with eight independent partial sums, so the loop vectorises (a single running
/// sum is one long chain of dependent additions).
fn dot_serial(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut partial = [0.0; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            partial[lane] += x[lane] * y[lane];
        }
    }
    partial.iter().sum::<f64>() + tail
}

/// `a + alpha b`
fn add_scaled(a: &[f64], alpha: f64, b: &[f64]) -> Vec<f64> {
    if a.len() < PARALLEL_LENGTH {
        return a.iter().zip(b).map(|(x, y)| x + alpha * y).collect();
    }
    a.par_iter()
        .zip(b.par_iter())
        .map(|(x, y)| x + alpha * y)
        .collect()
}

/// `out = a - b`
fn difference_into(a: &[f64], b: &[f64], out: &mut [f64]) {
    let serial = |out: &mut [f64], a: &[f64], b: &[f64]| {
        out.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (x, y))| *o = x - y)
    };
    if out.len() < PARALLEL_LENGTH {
        return serial(out, a, b);
    }
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| serial(out, a, b));
}

/// `y += alpha x`
fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    let serial =
        |x: &[f64], y: &mut [f64]| y.iter_mut().zip(x).for_each(|(yi, xi)| *yi += alpha * xi);
    if y.len() < PARALLEL_LENGTH {
        return serial(x, y);
    }
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| serial(x, y));
}

#[cfg(test)]
mod tests;
