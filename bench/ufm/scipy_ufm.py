#!/usr/bin/env python3
"""The UFM with cross-entropy, in numpy, minimised by scipy's L-BFGS-B: the peer that
`nclab ufm` is benchmarked against (bench/ufm/README.md).

f(W, H, b) = (1/N) sum_i CE(W h_i + b, y_i) + lW/2 ||W||^2 + lH/2 ||H||^2 + lb/2 ||b||^2,
K classes of n samples, W: K x d, H: d x N, b: K, start N(0, s^2). The solve stops as soon
as f <= f* + gap |f*|, f* given on the command line (nclab computes it from the theory).
Prints one JSON object: objective, relative_gap, iterations, evaluations, seconds.
"""
import argparse
import json
import time

import numpy as np
from scipy.optimize import minimize


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, required=True)
    parser.add_argument("--per-class", type=int, required=True)
    parser.add_argument("--dim", type=int, required=True)
    parser.add_argument("--lambda-w", type=float, required=True)
    parser.add_argument("--lambda-h", type=float, required=True)
    parser.add_argument("--lambda-b", type=float, required=True)
    parser.add_argument("--optimum", type=float, required=True, help="f* from the theory")
    parser.add_argument("--target-gap", type=float, default=1e-9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--max-iter", type=int, default=100_000)
    args = parser.parse_args()

    k, n, d = args.classes, args.per_class, args.dim
    samples = k * n
    labels = np.repeat(np.arange(k), n)
    columns = np.arange(samples)
    lw, lh, lb = args.lambda_w, args.lambda_h, args.lambda_b

    def objective_and_gradient(x):
        w = x[: k * d].reshape(k, d)
        h = x[k * d : k * d + d * samples].reshape(d, samples)
        b = x[k * d + d * samples :]
        z = w @ h + b[:, None]
        top = z.max(axis=0)
        e = np.exp(z - top)
        total = e.sum(axis=0)
        loss = np.mean(top + np.log(total) - z[labels, columns])
        g = e / total
        g[labels, columns] -= 1.0
        g /= samples
        value = loss + 0.5 * (lw * np.vdot(w, w) + lh * np.vdot(h, h) + lb * np.vdot(b, b))
        grad = np.concatenate([(g @ h.T + lw * w).ravel(), (w.T @ g + lh * h).ravel(), g.sum(axis=1) + lb * b])
        return value, grad

    rng = np.random.default_rng(args.seed)
    x0 = rng.normal(0.0, args.init_scale, size=k * d + d * samples + k)
    target = args.optimum + args.target_gap * abs(args.optimum)

    def stop_at_target(intermediate_result):
        if intermediate_result.fun <= target:
            raise StopIteration

    clock = time.perf_counter()
    result = minimize(
        objective_and_gradient,
        x0,
        jac=True,
        method="L-BFGS-B",
        callback=stop_at_target,
        options={"maxiter": args.max_iter, "maxfun": 10 * args.max_iter, "maxcor": 10, "ftol": 0.0, "gtol": 0.0},
    )
    seconds = time.perf_counter() - clock
    print(json.dumps({
        "objective": float(result.fun),
        "relative_gap": float((result.fun - args.optimum) / abs(args.optimum)),
        "iterations": int(result.nit),
        "evaluations": int(result.nfev),
        "seconds": seconds,
    }))


if __name__ == "__main__":
    main()
