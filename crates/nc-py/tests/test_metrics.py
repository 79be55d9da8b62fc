"""nclab.metrics against the numpy brute force of conftest.py and against the CLI, and the
invariance of its numbers under the input's layout and precision."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import nclab
from conftest import EXAMPLE, assert_metrics_close, brute_force, gaussian


@pytest.mark.parametrize(
    "k, d, counts, seed",
    [
        (5, 12, [30, 30, 30, 30, 30], 0),  # balanced, d > K
        (10, 4, [5, 40, 12, 7, 30, 9, 22, 3, 16, 11], 1),  # d < K - 1, unequal counts
        (3, 50, [2, 9, 4], 2),  # few samples, d > N
        (6, 5, [20, 3, 15, 8, 11, 6], 3),  # d = K - 1
    ],
)
def test_every_key_matches_the_brute_force(k, d, counts, seed):
    rng = np.random.default_rng(seed)
    h, y, w, b = gaussian(rng, k, d, counts)
    got = nclab.metrics(h, y, w, b)
    assert sorted(got) == sorted(nclab.METRIC_KEYS)
    assert_metrics_close(got, brute_force(h, y, k, w, b))
    # Without a classifier the classifier keys are None.
    assert_metrics_close(nclab.metrics(h, y), brute_force(h, y, k))
    # Reference means of the NCC rule from elsewhere (a "training split").
    reference = np.stack([h[y == c].mean(axis=0) for c in range(k)]) + rng.standard_normal((k, d))
    assert_metrics_close(
        nclab.metrics(h, y, w, b, means_from=reference), brute_force(h, y, k, w, b, reference)
    )


def test_the_brute_force_notices_a_wrong_number():
    """The comparison above can fail: a perturbed classifier moves nc2 beyond the tolerance."""
    rng = np.random.default_rng(4)
    h, y, w, b = gaussian(rng, 4, 6, [10, 10, 10, 10])
    got = nclab.metrics(h, y, w, b)
    expected = brute_force(h, y, 4, w * (1 + 1e-6 * rng.standard_normal(w.shape)), b)
    with pytest.raises(AssertionError):
        assert_metrics_close(got, expected)


def test_same_numbers_as_the_cli_on_the_example_file(cli):
    out = subprocess.run(
        [cli, "analyze", str(EXAMPLE), "--json"], check=True, capture_output=True, text=True
    )
    expected = json.loads(out.stdout)
    data = np.load(EXAMPLE)
    got = nclab.metrics(data["features"], data["labels"], data["weight"], data["bias"])
    assert sorted(got) == sorted(expected)
    assert_metrics_close(got, expected, rtol=1e-13, atol=0)
    # And as the brute force (the example file has K = 10 classes of 50, d = 32).
    assert_metrics_close(
        got, brute_force(data["features"], data["labels"], 10, data["weight"], data["bias"])
    )


def test_same_numbers_as_the_cli_with_means_from(cli, tmp_path):
    data = np.load(EXAMPLE)
    rng = np.random.default_rng(5)
    train = {key: data[key] for key in data.files}
    train["features"] = (data["features"] + rng.standard_normal(data["features"].shape)).astype(
        np.float32
    )
    np.savez(tmp_path / "train.npz", **train)
    out = subprocess.run(
        [cli, "analyze", str(EXAMPLE), "--means-from", str(tmp_path / "train.npz"), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    train_means = nclab.MeanAccumulator(10, 32)
    train_means.add(train["features"], train["labels"])
    got = nclab.metrics(
        data["features"], data["labels"], data["weight"], data["bias"],
        means_from=train_means.means(),
    )  # fmt: skip
    assert_metrics_close(got, json.loads(out.stdout), rtol=1e-13, atol=0)


def test_layouts_and_precisions_give_the_same_numbers():
    rng = np.random.default_rng(6)
    h, y, w, b = gaussian(rng, 7, 9, [40] * 7, dtype=np.float32)
    reference = nclab.metrics(h, y, w, b)
    wide = np.zeros((h.shape[0], 2 * h.shape[1]), dtype=np.float32)
    wide[:, ::2] = h
    variants = {
        "float64": h.astype(np.float64),
        "fortran": np.asfortranarray(h),
        "strided": wide[:, ::2],
        "big-endian": h.astype(">f4"),
        "list": h.tolist(),
    }
    for name, features in variants.items():
        got = nclab.metrics(features, y, w, b)
        # The same values in any layout or precision give the same metrics; up to the
        # order of the parallel f64 sums (rayon's reduction tree), hence 1e-12, not bits.
        assert_metrics_close(got, reference, rtol=1e-12, atol=1e-15), name
    for dtype in [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32]:
        assert nclab.metrics(h, y.astype(dtype), w, b) == reference, dtype
    assert nclab.metrics(h, y, w.astype(np.float32), b.astype(np.float32))["nc1"] == reference[
        "nc1"
    ]


def test_contiguous_float32_is_passed_in_place():
    from nclab import _arrays

    h = np.zeros((10, 3), dtype=np.float32)
    assert _arrays.features(h) is h
    assert _arrays.features(np.asfortranarray(h)) is not h


def test_nan_classifier_quantities_are_none():
    """All rows of W equal: nc2 etc. are 0/0, written null by the CLI, None here."""
    rng = np.random.default_rng(7)
    h, y, w, _ = gaussian(rng, 3, 4, [5, 5, 5])
    got = nclab.metrics(h, y, np.ones((3, 4)))
    assert got["nc2"] is None and got["equinorm_w"] is None
    assert got["accuracy"] is not None


def test_a_convention_changes_the_formulas_it_names_and_is_recorded():
    rng = np.random.default_rng(9)
    h, y, w, b = gaussian(rng, 5, 12, [30, 4, 17, 9, 22])
    spec = nclab.metrics(h, y, w, b)
    assert spec["convention"] == "nclab"
    papyan = nclab.metrics(h, y, w, b, convention="papyan2020")
    assert papyan["convention"] == "papyan2020"
    # Not divided by K; with classes this unequal the mean of class means moves Sigma_B.
    assert not np.isclose(papyan["nc1"], spec["nc1"], rtol=1e-3)
    # The switches of a mix act one by one: NC1 not divided by K, everything else as nclab.
    total = nclab.metrics(h, y, w, b, convention="nclab+nc1-scale=total")
    assert total["convention"] == "nclab+nc1-scale=total"
    assert total["nc1"] == pytest.approx(5 * spec["nc1"], rel=1e-12)
    assert total["nc2"] == spec["nc2"] and total["cdnv"] == spec["cdnv"]
    agreement = nclab.metrics(h, y, w, b, convention="nclab+nc4=agreement")
    assert agreement["nc4"] == pytest.approx(1 - spec["nc4"], abs=1e-15)


def test_an_unknown_convention_is_a_value_error_naming_the_choices():
    h, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    h[1::2] += 1.0
    with pytest.raises(ValueError, match="unknown convention 'papyan' \\(expected one of nclab, zhou2022"):
        nclab.metrics(h, y, convention="papyan")
    with pytest.raises(ValueError, match="convention switch nc3: unknown value 'frobenius'"):
        nclab.metrics(h, y, convention="nclab+nc3=frobenius")
