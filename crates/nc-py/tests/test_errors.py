"""Bad input through Python raises ValueError/TypeError with the message `nclab analyze`
prints for the same arrays in a file (after its "error: FILE: " prefix)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import nclab

RNG = np.random.default_rng(11)
H = RNG.standard_normal((12, 4)).astype(np.float32)
Y = np.arange(12) % 3
W = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)


def _with(**changes):
    arrays = {"features": H, "labels": Y, "weight": W, "bias": B}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def _nan():
    h = H.copy()
    h[7, 2] = np.nan
    return h


CASES = {
    "nan feature": (_with(features=_nan()), ValueError),
    "negative label": (_with(labels=np.array([0, 1, 2, -1] * 3)), ValueError),
    "label outside the classifier's classes": (_with(labels=np.array([0, 1, 2, 5] * 3)), ValueError),
    "empty class": (_with(labels=np.array([0, 2] * 6)), ValueError),
    "labels too short": (_with(labels=Y[:11]), ValueError),
    "labels 2-D": (_with(labels=Y.reshape(3, 4)), ValueError),
    "float labels": (_with(labels=Y.astype(np.float32)), TypeError),
    "integer features": (_with(features=np.ones((12, 4), dtype=np.int64)), TypeError),
    "1-D features": (_with(features=H[:, 0].copy()), ValueError),
    "no feature columns": (_with(features=np.zeros((12, 0), dtype=np.float32)), ValueError),
    "weight with the wrong d": (_with(weight=W[:, :3].copy()), ValueError),
    "bias with the wrong K": (_with(bias=B[:2].copy()), ValueError),
    "inf in the weight": (_with(weight=np.where(W > 0, np.inf, W).astype(np.float32)), ValueError),
    "one class": (_with(labels=np.zeros(12, dtype=np.int64), weight=None, bias=None), ValueError),
    "all means equal": (
        _with(features=np.ones((12, 4), dtype=np.float32), weight=None, bias=None),
        ValueError,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_the_cli_message(case, cli, tmp_path):
    arrays, kind = CASES[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    run = subprocess.run([cli, "analyze", str(path), "--json"], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    prefix = f"error: {path}: "
    assert run.stderr.startswith(prefix), run.stderr
    cli_message = run.stderr[len(prefix):].strip()
    with pytest.raises(kind) as raised:
        nclab.metrics(
            arrays["features"], arrays["labels"], arrays.get("weight"), arrays.get("bias")
        )
    assert str(raised.value) == cli_message


def test_bias_without_weight_and_too_many_classes():
    with pytest.raises(ValueError, match="array 'weight' .* is missing, but a bias was given"):
        nclab.metrics(H, Y, None, B)
    with pytest.raises(ValueError, match="the largest label, 99, asks for 100 classes, but the features hold only 12"):
        nclab.metrics(H, np.array([99] + [0] * 11))
    with pytest.raises(ValueError, match="num_classes asks for 20 classes"):
        nclab.metrics(H, Y, num_classes=20)
    with pytest.raises(ValueError, match=r"class 3 has no samples \(every class 0..4"):
        nclab.metrics(H, Y, W, B, num_classes=4)
    with pytest.raises(ValueError, match="the classifier is 3 x 4, but the features have 4 classes"):
        nclab.metrics(H, np.arange(12) % 4, W, B, num_classes=4)
    with pytest.raises(ValueError, match=r"array 'means_from' has shape \(2, 4\)"):
        nclab.metrics(H, Y, means_from=np.zeros((2, 4)))


def test_no_error_is_a_panic_exception():
    """Every refusal above is an ordinary Exception (a PanicException is a BaseException)."""
    for arrays, _ in CASES.values():
        try:
            nclab.metrics(arrays["features"], arrays["labels"], arrays.get("weight"), arrays.get("bias"))
        except Exception as err:  # noqa: BLE001 - the point of the test
            assert type(err).__name__ != "PanicException"
