"""The unconstrained feature model (docs/ufm.md): its closed-form optimum and its solver.

``solve`` returns the keys of ``nclab ufm --json``: objective, optimum (f* of the theory, or
None where it does not apply), relative_gap = (f - f*)/|f*|, grad_norm, iterations, seconds,
and nc1..nc4 of the solution (None at the origin, where they are 0/0).

Losses: "ce", "ls" (alpha), "fl" (gamma), "mse" (rescale), with the paper's defaults.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import _core

__all__ = ["optimum", "solve", "not_covered_reason"]


def optimum(
    loss: str, classes: int, per_class: int, dim: int,
    lambda_w: float, lambda_h: float, lambda_b: float,
    *, alpha: float = 0.05, gamma: float = 3.0, rescale: float = 15.0,
) -> Optional[Dict[str, Any]]:  # fmt: skip
    """f* of the UFM with K = ``classes``, n = ``per_class``, d = ``dim``: a dict with
    ``value`` (f*), ``margin`` (the optimal logit margin), ``origin_is_optimal`` and
    ``origin_is_spurious_local_minimum``; None where the theory does not cover the instance
    (see :func:`not_covered_reason`)."""
    return _core.ufm_optimum(
        loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b,
        alpha=alpha, gamma=gamma, rescale=rescale,
    )  # fmt: skip


def not_covered_reason(
    loss: str, classes: int, per_class: int, dim: int,
    lambda_w: float, lambda_h: float, lambda_b: float,
    *, alpha: float = 0.05, gamma: float = 3.0, rescale: float = 15.0,
) -> Optional[str]:  # fmt: skip
    """Why the theory gives no f* for the instance (e.g. d < K-1), or None when it does."""
    return _core.ufm_not_covered_reason(
        loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b,
        alpha=alpha, gamma=gamma, rescale=rescale,
    )  # fmt: skip


def solve(
    loss: str, classes: int, per_class: int, dim: int,
    lambda_w: float, lambda_h: float, lambda_b: float,
    *, alpha: float = 0.05, gamma: float = 3.0, rescale: float = 15.0,
    seed: int = 0, init_scale: float = 0.1, optimizer: str = "lbfgs", tol: float = 1e-10,
    max_iter: int = 10_000, lr: float = 0.1, momentum: float = 0.9, memory: int = 10,
    target_gap: Optional[float] = None,
) -> Dict[str, Any]:  # fmt: skip
    """Minimises the UFM objective from a seeded N(0, init_scale^2) start (``nclab ufm``):
    ``optimizer`` is "lbfgs" (``memory`` pairs), "gd" (step ``lr``) or "momentum"; it stops
    at ``||grad f|| <= tol``, after ``max_iter`` iterations, or once the relative gap is at
    most ``target_gap``."""
    return _core.ufm_solve(
        loss, classes, per_class, dim, lambda_w, lambda_h, lambda_b,
        alpha=alpha, gamma=gamma, rescale=rescale, seed=seed, init_scale=init_scale,
        optimizer=optimizer, tol=tol, max_iter=max_iter, lr=lr, momentum=momentum,
        memory=memory, target_gap=target_gap,
    )  # fmt: skip
