"""nclab.ufm against `nclab ufm --json` (the same instance, start and solver give the same
numbers), and its argument checks."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import nclab.ufm

INSTANCES = [
    ("ce", dict(classes=4, per_class=5, dim=8, lambda_w=5e-4, lambda_h=5e-4, lambda_b=5e-4)),
    ("ls", dict(classes=5, per_class=3, dim=6, lambda_w=5e-3, lambda_h=5e-3, lambda_b=1e-2)),
    ("mse", dict(classes=3, per_class=4, dim=2, lambda_w=1e-3, lambda_h=1e-3, lambda_b=1e-3)),
    ("fl", dict(classes=4, per_class=2, dim=5, lambda_w=1.0, lambda_h=1.0, lambda_b=1.0)),
]


def _flags(loss, params, **extra):
    args = ["ufm", "--loss", loss, "--json"]
    for key, value in {**params, **extra}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


@pytest.mark.parametrize("loss, params", INSTANCES)
def test_solve_gives_the_cli_numbers(loss, params, cli):
    run = subprocess.run([cli, *_flags(loss, params, seed=3)], check=True, capture_output=True, text=True)
    expected = json.loads(run.stdout)
    got = nclab.ufm.solve(loss, **params, seed=3)
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        if key == "seconds":
            continue
        if want is None:
            assert got[key] is None, key
        else:
            assert np.isclose(got[key], want, rtol=1e-12, atol=1e-300), (key, got[key], want)
    optimum = nclab.ufm.optimum(loss, **params)
    if expected["optimum"] is None:
        assert optimum is None and nclab.ufm.not_covered_reason(loss, **params)
    else:
        assert optimum["value"] == pytest.approx(expected["optimum"], rel=1e-14)
        assert nclab.ufm.not_covered_reason(loss, **params) is None


def test_the_origin_optimal_case_has_null_metrics():
    got = nclab.ufm.solve("fl", classes=4, per_class=2, dim=5, lambda_w=1.0, lambda_h=1.0, lambda_b=1.0)
    assert got["nc1"] is None and abs(got["relative_gap"]) < 1e-9
    assert nclab.ufm.optimum("fl", 4, 2, 5, 1.0, 1.0, 1.0)["origin_is_optimal"]


def test_target_gap_and_bad_arguments():
    base = dict(classes=4, per_class=5, dim=8, lambda_w=5e-4, lambda_h=5e-4, lambda_b=5e-4)
    early = nclab.ufm.solve("ce", **base, target_gap=1e-3)
    assert 0 <= early["relative_gap"] <= 1e-3
    cases = [
        (dict(classes=1), "classes must be at least 2, got 1"),
        (dict(dim=-3), "dim must be at least 1, got -3"),
        (dict(lambda_w=-1.0), "lambda_w must be >= 0, got -1"),
        (dict(lambda_h=float("nan")), "lambda_h must be a finite number, got NaN"),
        (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1"),
        (dict(optimizer="adam"), "optimizer must be 'lbfgs', 'gd' or 'momentum', got 'adam'"),
        (dict(target_gap=-1.0), "target_gap must be a finite number >= 0, got -1"),
        (dict(classes=10**9, per_class=10**9), "above the memory limit"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            nclab.ufm.solve("ce", **{**base, **change})
    with pytest.raises(ValueError, match="unknown loss 'hinge' .expected one of ce, ls, fl, mse."):
        nclab.ufm.solve("hinge", **base)
    with pytest.raises(ValueError, match="target_gap needs f"):
        nclab.ufm.solve("ce", **{**base, "dim": 2}, target_gap=0.1)
