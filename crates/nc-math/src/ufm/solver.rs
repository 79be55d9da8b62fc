//! Full-batch f64 minimisers: L-BFGS with a strong-Wolfe line search (Nocedal & Wright,
//! Algorithms 7.4, 3.5 and 3.6), gradient descent and heavy-ball momentum, and the seeded
//! random start.

use super::objective::{Objective, Ufm};
use crate::error::{Error, Result};
use crate::vector::{add_scaled_into, dot, dots, dots_each, linear_combination_into, CHUNK};
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
///
/// The whole solve runs on one of rayon's worker threads: the vector kernels and the
/// objective's sample blocks are parallel loops, a few per iteration, and a loop started
/// from outside the pool hands its work to a worker and sleeps until it is done (a futex
/// wake-up each way, ~15% of a small solve's time at one thread), while one started on a
/// worker runs there directly.
pub fn minimize(
    objective: &impl Objective,
    start: Vec<f64>,
    options: &SolveOptions,
    observe: impl FnMut(&Iterate, &[f64]) + Send,
) -> Result<Solution> {
    rayon::scope(|_| minimize_here(objective, start, options, observe))
}

fn minimize_here(
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

    /// [`State::new`] at `x`, also returning the slope `grad . direction`, taken in the same
    /// pass over the gradient as its norm.
    /// `grad` is a buffer of the right length; its contents are overwritten.
    fn along(
        objective: &impl Objective,
        x: Vec<f64>,
        mut grad: Vec<f64>,
        direction: &[f64],
    ) -> (Self, f64) {
        let value = objective.value_grad(&x, &mut grad);
        let [grad_sq, slope, _] = dots(&grad, &grad, direction, direction);
        let state = State {
            x,
            value,
            grad,
            grad_norm: grad_sq.sqrt(),
        };
        (state, slope)
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
            Optimizer::Lbfgs { memory } => Method::Lbfgs(Lbfgs::new(memory)),
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
                let mut x = vec![0.0; state.x.len()];
                add_scaled_into(&mut x, &state.x, -*step, &state.grad);
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
                let mut x = vec![0.0; state.x.len()];
                add_scaled_into(&mut x, &state.x, 1.0, velocity);
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

/// A curvature pair `s = x_{k+1} - x_k`, `y = g_{k+1} - g_k` (with `y.s > 0`).
struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
}

/// L-BFGS in its "vector-free" form (Chen, Weimer et al. 2014): the two-loop recursion runs
/// on the coefficients of the direction in the basis `[s_0, y_0, ..., s_{L-1}, y_{L-1}, g]`,
/// using only the inner products among those vectors. Each iteration then streams the
/// stored pairs twice (one pass for the new inner products, one to form the direction)
/// instead of the four passes and the intermediate writes of the explicit recursion; with
/// 1.3 million parameters and 10 pairs, that traffic (not the arithmetic) is the cost.
struct Lbfgs {
    memory: usize,
    /// Oldest first.
    pairs: Vec<Pair>,
    /// Inner products among the pairs' vectors, row-major over the basis order
    /// `s_0, y_0, s_1, y_1, ...` (2L x 2L).
    gram: Vec<f64>,
    /// Inner products of the current gradient with that basis (2L).
    grad_dots: Vec<f64>,
    /// Buffers of discarded pairs, directions and trial points.
    spare: Spare,
}

impl Lbfgs {
    fn new(memory: usize) -> Self {
        Lbfgs {
            memory,
            pairs: Vec::new(),
            gram: Vec::new(),
            grad_dots: Vec::new(),
            spare: Spare::default(),
        }
    }

    fn basis_len(&self) -> usize {
        2 * self.pairs.len()
    }

    /// The stored vectors in basis order `s_0, y_0, s_1, y_1, ...`.
    fn basis(&self) -> Vec<&[f64]> {
        self.pairs
            .iter()
            .flat_map(|pair| [pair.s.as_slice(), pair.y.as_slice()])
            .collect()
    }

    /// `rho_p = 1 / (s_p . y_p)`, from the Gram matrix.
    fn rho(&self, pair: usize) -> f64 {
        let len = self.basis_len();
        1.0 / self.gram[2 * pair * len + 2 * pair + 1]
    }

    fn forget(&mut self) {
        for pair in self.pairs.drain(..) {
            self.spare.give(pair.s);
            self.spare.give(pair.y);
        }
        self.gram.clear();
        self.grad_dots.clear();
    }

    /// Coefficients `(c, c_g)` of the search direction `-H_k g = sum_j c_j v_j + c_g g`
    /// over the basis `v = [s_0, y_0, ...]`, by the two-loop recursion with
    /// `H_0 = (s.y / y.y) I` (newest pair), or `H_0 = I / ||g||` without pairs.
    fn direction_coefficients(&self, grad_sq: f64) -> (Vec<f64>, f64) {
        let len = self.basis_len();
        let mut coef = vec![0.0; len];
        let mut coef_g = -1.0;
        // (current direction) . v_j
        let dot_basis = |coef: &[f64], coef_g: f64, j: usize| -> f64 {
            coef.iter()
                .enumerate()
                .map(|(i, c)| c * self.gram[i * len + j])
                .sum::<f64>()
                + coef_g * self.grad_dots[j]
        };
        let mut alphas = vec![0.0; self.pairs.len()];
        for p in (0..self.pairs.len()).rev() {
            alphas[p] = self.rho(p) * dot_basis(&coef, coef_g, 2 * p);
            coef[2 * p + 1] -= alphas[p];
        }
        let gamma = match self.pairs.len() {
            0 => 1.0 / grad_sq.sqrt().max(f64::MIN_POSITIVE),
            pairs => {
                let newest = 2 * (pairs - 1);
                self.gram[newest * len + newest + 1] / self.gram[(newest + 1) * len + newest + 1]
            }
        };
        coef.iter_mut().for_each(|c| *c *= gamma);
        coef_g *= gamma;
        for p in 0..self.pairs.len() {
            let beta = self.rho(p) * dot_basis(&coef, coef_g, 2 * p + 1);
            coef[2 * p] += alphas[p] - beta;
        }
        (coef, coef_g)
    }

    /// Search direction `-H_k g` and its slope `g . direction`.
    fn direction(&mut self, state: &State) -> (Vec<f64>, f64) {
        let (coef, coef_g) = self.direction_coefficients(state.grad_norm * state.grad_norm);
        let slope = coef
            .iter()
            .zip(&self.grad_dots)
            .map(|(c, d)| c * d)
            .sum::<f64>()
            + coef_g * state.grad_norm * state.grad_norm;
        let mut direction = self.spare.take(state.grad.len());
        let mut vectors = self.basis();
        vectors.push(&state.grad);
        let mut coef = coef;
        coef.push(coef_g);
        linear_combination_into(&mut direction, &vectors, &coef);
        (direction, slope)
    }

    fn step(&mut self, objective: &impl Objective, state: &mut State) -> bool {
        let (mut direction, mut slope) = self.direction(state);
        if slope >= 0.0 || slope.is_nan() {
            // Not a descent direction (lost positive definiteness): restart from steepest descent.
            self.spare.give(direction);
            self.forget();
            (direction, slope) = self.direction(state);
        }
        let mut found = self.search(objective, state, &direction, slope);
        if found.is_none() && !self.pairs.is_empty() {
            // No acceptable step along the quasi-Newton direction: retry along steepest descent.
            self.spare.give(direction);
            self.forget();
            (direction, slope) = self.direction(state);
            found = self.search(objective, state, &direction, slope);
        }
        self.spare.give(direction);
        let Some(next) = found else {
            return false;
        };
        self.update(state, &next);
        let previous = std::mem::replace(state, next);
        self.spare.recycle(previous);
        true
    }

    fn search(
        &mut self,
        objective: &impl Objective,
        from: &State,
        direction: &[f64],
        slope0: f64,
    ) -> Option<State> {
        LineSearch {
            objective,
            from,
            direction,
            slope0,
            spare: &mut self.spare,
        }
        .run()
    }

    /// Adds the pair from `from` to `to` (if `s.y > 0`) and refreshes the inner products
    /// for the new gradient, in one pass over the stored vectors.
    fn update(&mut self, from: &State, to: &State) {
        if self.pairs.len() == self.memory {
            let oldest = self.pairs.remove(0);
            self.spare.give(oldest.s);
            self.spare.give(oldest.y);
            let len = self.basis_len() + 2;
            self.gram = (2..len)
                .flat_map(|i| (2..len).map(move |j| (i, j)))
                .map(|(i, j)| self.gram[i * len + j])
                .collect();
            self.grad_dots.drain(..2);
        }
        let (mut s, mut y) = (self.spare.take(from.x.len()), self.spare.take(from.x.len()));
        let stored = self.basis();
        let dots = new_pair_dots(
            &from.x, &to.x, &from.grad, &to.grad, &mut s, &mut y, &stored,
        );
        let old = stored.len();
        if dots.s_y > 0.0 {
            let len = old + 2;
            let mut gram = vec![0.0; len * len];
            for i in 0..old {
                gram[i * len..i * len + old].copy_from_slice(&self.gram[i * old..(i + 1) * old]);
                for (j, value) in [(old, dots.s[i]), (old + 1, dots.y[i])] {
                    gram[i * len + j] = value;
                    gram[j * len + i] = value;
                }
            }
            gram[old * len + old] = dots.s_s;
            gram[old * len + old + 1] = dots.s_y;
            gram[(old + 1) * len + old] = dots.s_y;
            gram[(old + 1) * len + old + 1] = dots.y_y;
            self.gram = gram;
            self.grad_dots = dots.grad;
            self.grad_dots.extend([dots.grad_s, dots.grad_y]);
            self.pairs.push(Pair { s, y });
        } else {
            self.grad_dots = dots.grad;
            self.spare.give(s);
            self.spare.give(y);
        }
    }
}

/// Inner products of a new pair `(s, y)` and the new gradient `g` with the stored basis
/// vectors `v_j` (`s`, `y`, `grad` below) and with each other.
struct NewPairDots {
    s: Vec<f64>,
    y: Vec<f64>,
    grad: Vec<f64>,
    s_s: f64,
    s_y: f64,
    y_y: f64,
    grad_s: f64,
    grad_y: f64,
}

/// Writes `s = x1 - x0` and `y = g1 - g0`, and in the same pass takes the inner products of
/// `s`, `y` and `g1` with every stored vector and with each other.
fn new_pair_dots(
    x0: &[f64],
    x1: &[f64],
    g0: &[f64],
    g1: &[f64],
    s: &mut [f64],
    y: &mut [f64],
    stored: &[&[f64]],
) -> NewPairDots {
    let count = stored.len();
    // Per chunk: [s.v_j, y.v_j, g1.v_j for each j] then s.s, s.y, y.y, g1.s, g1.y.
    let width = 3 * count + 5;
    let chunk_dots = |offset: usize, s: &mut [f64], y: &mut [f64]| -> Vec<f64> {
        let range = offset..offset + s.len();
        let g1 = &g1[range.clone()];
        add_scaled_into(s, &x1[range.clone()], -1.0, &x0[range.clone()]);
        add_scaled_into(y, g1, -1.0, &g0[range.clone()]);
        let mut out = vec![0.0; width];
        let chunks: Vec<&[f64]> = stored.iter().map(|v| &v[range.clone()]).collect();
        for (j, three) in dots_each(&chunks, s, y, g1).into_iter().enumerate() {
            out[3 * j..3 * j + 3].copy_from_slice(&three);
        }
        let [ss, sy, sg] = dots(s, s, y, g1);
        let [yy, yg, _] = dots(y, y, g1, g1);
        out[3 * count..].copy_from_slice(&[ss, sy, yy, sg, yg]);
        out
    };
    let sums = s
        .par_chunks_mut(CHUNK)
        .zip(y.par_chunks_mut(CHUNK))
        .enumerate()
        .map(|(index, (s, y))| chunk_dots(index * CHUNK, s, y))
        .reduce(
            || vec![0.0; width],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    NewPairDots {
        s: (0..count).map(|j| sums[3 * j]).collect(),
        y: (0..count).map(|j| sums[3 * j + 1]).collect(),
        grad: (0..count).map(|j| sums[3 * j + 2]).collect(),
        s_s: sums[3 * count],
        s_y: sums[3 * count + 1],
        y_y: sums[3 * count + 2],
        grad_s: sums[3 * count + 3],
        grad_y: sums[3 * count + 4],
    }
}

/// A trial point along the search direction.
struct Trial {
    step: f64,
    value: f64,
    slope: f64,
    state: State,
}

/// Parameter-sized buffers of discarded points, reused for new ones. A fresh allocation of
/// this size is mapped anew by the allocator and pays a page fault per 4 KiB on first touch,
/// which costs more than the arithmetic that fills it.
#[derive(Default)]
struct Spare(Vec<Vec<f64>>);

impl Spare {
    /// A buffer of `len` entries with unspecified contents.
    fn take(&mut self, len: usize) -> Vec<f64> {
        let mut buffer = self.0.pop().unwrap_or_default();
        buffer.resize(len, 0.0);
        buffer
    }

    fn give(&mut self, buffer: Vec<f64>) {
        if buffer.capacity() > 0 {
            self.0.push(buffer);
        }
    }

    fn recycle(&mut self, state: State) {
        self.give(state.x);
        self.give(state.grad);
    }
}

/// Strong-Wolfe line search from step 1 (Nocedal & Wright, Algorithms 3.5 and 3.6) along
/// `direction` from `from`, whose slope there is `slope0 = grad f(from) . direction`.
struct LineSearch<'a, O> {
    objective: &'a O,
    from: &'a State,
    direction: &'a [f64],
    slope0: f64,
    spare: &'a mut Spare,
}

impl<O: Objective> LineSearch<'_, O> {
    fn trial(&mut self, step: f64) -> Trial {
        let n = self.from.x.len();
        let mut x = self.spare.take(n);
        add_scaled_into(&mut x, &self.from.x, step, self.direction);
        let grad = self.spare.take(n);
        let (state, slope) = State::along(self.objective, x, grad, self.direction);
        Trial {
            step,
            value: state.value,
            slope,
            state,
        }
    }

    /// Hands `chosen` back and recycles the other trials' buffers.
    fn finish<const N: usize>(
        &mut self,
        chosen: Option<Trial>,
        others: [Trial; N],
    ) -> Option<State> {
        others.into_iter().for_each(|t| self.spare.recycle(t.state));
        chosen.map(|t| t.state)
    }

    fn sufficient_decrease(&self, t: &Trial) -> bool {
        t.value <= self.from.value + WOLFE_DECREASE * t.step * self.slope0
    }

    fn curvature(&self, t: &Trial) -> bool {
        t.slope.abs() <= -WOLFE_CURVATURE * self.slope0
    }

    /// The accepted point, or `None` if no step satisfies the conditions within the budget.
    fn run(mut self) -> Option<State> {
        if self.slope0 >= 0.0 {
            return None;
        }
        let mut previous = Trial {
            step: 0.0,
            value: self.from.value,
            slope: self.slope0,
            state: State {
                x: Vec::new(),
                value: self.from.value,
                grad: Vec::new(),
                grad_norm: 0.0,
            },
        };
        let mut step = 1.0;
        for evaluation in 0..LINE_SEARCH_EVALUATIONS {
            let current = self.trial(step);
            if !current.value.is_finite() {
                step = 0.5 * (previous.step + step);
                self.spare.recycle(current.state);
                continue;
            }
            let budget = LINE_SEARCH_EVALUATIONS - evaluation;
            if !self.sufficient_decrease(&current)
                || (evaluation > 0 && current.value >= previous.value)
            {
                return self.zoom(previous, current, budget);
            }
            if self.curvature(&current) {
                return self.finish(Some(current), [previous]);
            }
            if current.slope >= 0.0 {
                return self.zoom(current, previous, budget);
            }
            step *= 2.0;
            self.spare
                .recycle(std::mem::replace(&mut previous, current).state);
        }
        self.finish(None, [previous])
    }

    /// Algorithm 3.6: `low` satisfies sufficient decrease and has the lowest value so far;
    /// the minimiser lies between `low` and `high`. Trial steps by cubic interpolation,
    /// safeguarded towards the midpoint.
    fn zoom(mut self, mut low: Trial, mut high: Trial, budget: usize) -> Option<State> {
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
            let current = self.trial(step);
            if !current.value.is_finite()
                || !self.sufficient_decrease(&current)
                || current.value >= low.value
            {
                self.spare
                    .recycle(std::mem::replace(&mut high, current).state);
                continue;
            }
            if self.curvature(&current) {
                return self.finish(Some(current), [low, high]);
            }
            let old_low = std::mem::replace(&mut low, current);
            if low.slope * (high.step - old_low.step) >= 0.0 {
                // The minimiser lies between the old `low` and the new one.
                self.spare
                    .recycle(std::mem::replace(&mut high, old_low).state);
            } else {
                self.spare.recycle(old_low.state);
            }
        }
        // Out of budget: keep any point that lowered f, so progress is not thrown away.
        if low.step > 0.0 && low.value < self.from.value {
            self.finish(Some(low), [high])
        } else {
            self.finish(None, [low, high])
        }
    }
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

#[cfg(test)]
mod tests;
