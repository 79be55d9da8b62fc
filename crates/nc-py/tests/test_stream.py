"""The streaming phases: batches and shards give the one-call numbers, states pickle as the
partial-state bytes of crates/nc-data/src/partial_state.rs, and merges refuse what does not
belong together."""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import nclab
from conftest import FIXTURES, assert_metrics_close, gaussian


def _data(seed=21, k=6, d=10, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return gaussian(rng, k, d, [50, 20, 35, 41, 9, 27], dtype=dtype)


def _batches(h, y, sizes):
    edges = np.cumsum([0] + list(sizes))
    assert edges[-1] == len(y)
    return [(h[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def _two_passes(batches, k, d, **plan):
    phase1 = nclab.MeanAccumulator(k, d)
    for x, y in batches:
        phase1.add(x, y)
    phase2 = phase1.scatter(**plan)
    for x, y in batches:
        phase2.add(x, y)
    return phase1, phase2


def test_streaming_equals_one_call():
    h, y, w, b = _data()
    once = nclab.metrics(h, y, w, b)
    batches = _batches(h, y, [1, 63, 0, 50, 68])
    phase1, phase2 = _two_passes(batches, 6, 10, weight=w, bias=b)
    assert phase1.num_samples == phase2.num_samples == len(y)
    np.testing.assert_array_equal(phase1.counts(), np.bincount(y))
    np.testing.assert_allclose(
        phase1.means(), np.stack([h[y == c].astype(np.float64).mean(0) for c in range(6)]), rtol=1e-12
    )
    assert_metrics_close(phase2.result(), once, rtol=1e-12, atol=1e-15)
    # The result can be asked for again, and more batches change it.
    assert phase2.result() == phase2.result()


def test_merged_shards_equal_one_pass():
    h, y, w, b = _data(22)
    once = nclab.metrics(h, y, w, b)
    shards = _batches(h, y, [40, 0, 70, 72])
    firsts = []
    for x, labels in shards:
        acc = nclab.MeanAccumulator(6, 10)
        acc.add(x, labels)
        firsts.append(acc)
    total = nclab.MeanAccumulator(6, 10)
    for acc in firsts:
        total.merge(pickle.loads(pickle.dumps(acc)))  # as if from other processes
    seconds = []
    for x, labels in shards:
        acc = total.scatter(w, b)  # each worker rebuilds the same plan from the merged means
        acc.add(x, labels)
        seconds.append(pickle.loads(pickle.dumps(acc)))
    assert not seconds[0].attached
    merged = total.scatter(w, b)
    for acc in seconds:
        merged.merge(acc)
    assert merged.attached and merged.num_samples == len(y)
    assert_metrics_close(merged.result(), once, rtol=1e-12, atol=1e-15)
    # Detached states merge among themselves (e.g. a tree reduction), and as bytes.
    tree = seconds[0]
    tree.merge(seconds[1].to_bytes())
    tree.merge(seconds[2])
    tree.merge(seconds[3])
    again = total.scatter(w, b)
    again.merge(tree)
    assert_metrics_close(again.result(), once, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="has no plan, so it cannot give metrics"):
        tree.result()
    with pytest.raises(ValueError, match="has no plan, so it cannot add batches"):
        tree.add(h, y)


def _phase1_in_a_worker(shard):
    x, labels = shard
    acc = nclab.MeanAccumulator(6, 10)
    acc.add(x, labels)
    return acc


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_accumulators_travel_between_processes(start):
    """Workers pickle their states back. "fork" after this process has computed: the child
    must not wait for the parent's thread pool, whose threads it did not inherit."""
    if start not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {start} here")
    h, y, w, b = _data(23)
    nclab.metrics(h, y)  # the parent's pool is running
    shards = _batches(h, y, [100, 82])
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(start)) as pool:
        parts = list(pool.map(_phase1_in_a_worker, shards))
    total = nclab.MeanAccumulator(6, 10)
    for part in parts:
        total.merge(part)
    once = nclab.MeanAccumulator(6, 10)
    once.add(h, y)
    np.testing.assert_allclose(total.means(), once.means(), rtol=1e-13)


def test_pickling_emits_exactly_the_rust_format_bytes():
    """The golden file was written by the Rust library (crates/nc-data/tests/partial_state.rs,
    golden_phase1_file) from the same state."""
    golden = (FIXTURES / "partial_state_phase1.safetensors").read_bytes()
    acc = nclab.MeanAccumulator(3, 2)
    acc.add(np.arange(8, dtype=np.float64).reshape(4, 2), np.array([0, 1, 0, 2]))
    assert acc.to_bytes() == golden
    pickled = pickle.dumps(acc)
    assert golden in pickled
    back = pickle.loads(pickled)
    assert back.to_bytes() == golden and back.num_samples == 4
    assert nclab.MeanAccumulator.from_bytes(golden).to_bytes() == golden
    info = nclab.state_info(golden)
    assert info == {
        "format": "nclab-partial-state", "version": 1, "phase": 1, "convention": "nclab",
        "num_classes": 3, "dim": 2, "num_samples": 4,
    }  # fmt: skip


def test_phase2_bytes_name_the_means_classifier_and_reference_by_sha256():
    h, y, w, b = _data(24)
    phase1, phase2 = _two_passes(_batches(h, y, [182]), 6, 10, weight=w, bias=b)
    data = phase2.to_bytes()
    assert data in pickle.dumps(phase2)
    assert pickle.loads(pickle.dumps(phase2)).to_bytes() == data
    info = nclab.state_info(data)
    sha = lambda a: hashlib.sha256(np.ascontiguousarray(a, "<f8").tobytes()).hexdigest()  # noqa: E731
    assert info["phase"] == 2 and info["rank"] == 5 and info["num_samples"] == 182
    assert info["means_sha256"] == sha(phase1.means())
    assert info["classifier_sha256"] == sha(np.concatenate([w.ravel(), b]))
    assert info["reference_sha256"] is None
    ref = phase1.means() + 1.0
    assert nclab.state_info(phase1.scatter(means_from=ref).to_bytes())["reference_sha256"] == sha(ref)


def test_merges_refuse_states_that_do_not_belong_together():
    h, y, w, b = _data(25)
    phase1, phase2 = _two_passes(_batches(h, y, [182]), 6, 10, weight=w, bias=b)
    with pytest.raises(ValueError, match="K=6, d=10 into one of K=7, d=10"):
        nclab.MeanAccumulator(7, 10).merge(phase1)
    with pytest.raises(ValueError, match="K=6, d=10 into one of K=6, d=9"):
        nclab.MeanAccumulator(6, 9).merge(phase1)
    with pytest.raises(ValueError, match="a phase-2 state into a phase-1 state"):
        nclab.MeanAccumulator(6, 10).merge(phase2)
    with pytest.raises(ValueError, match="a phase-1 state into a phase-2 state"):
        phase2.merge(phase1.to_bytes())
    other = nclab.MeanAccumulator(6, 10)
    other.add(h + 1, y)  # other data: other means
    with pytest.raises(ValueError, match=r"different class means \(phase 1\)"):
        phase2.merge(other.scatter(w, b))
    with pytest.raises(ValueError, match="different classifier"):
        phase2.merge(phase1.scatter(w + 1, b))
    with pytest.raises(ValueError, match="different classifier"):
        phase2.merge(phase1.scatter())
    with pytest.raises(ValueError, match="different reference means"):
        phase2.merge(phase1.scatter(w, b, means_from=phase1.means() * 2))
    with pytest.raises(TypeError, match="not int"):
        phase1.merge(3)
    with pytest.raises(ValueError, match="read them with ScatterAccumulator.from_bytes"):
        nclab.MeanAccumulator.from_bytes(phase2.to_bytes())
    with pytest.raises(ValueError, match="not a valid nclab partial state"):
        nclab.ScatterAccumulator.from_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="format version 2"):
        nclab.MeanAccumulator.from_bytes(phase1.to_bytes().replace(b'"version":"1"', b'"version":"2"'))
    # A refused merge changes nothing.
    assert phase2.num_samples == 182 and phase1.num_samples == 182


def test_batch_refusals_name_the_row_over_all_batches():
    acc = nclab.MeanAccumulator(3, 2)
    acc.add(np.zeros((4, 2)), np.array([0, 1, 2, 0]))
    bad = np.zeros((3, 2))
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="at row 5, column 1"):
        acc.add(bad, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="label 3 at row 6 is outside the classes 0..3"):
        acc.add(np.zeros((3, 2)), np.array([0, 0, 3]))
    with pytest.raises(ValueError, match="features have 3 columns, but this MeanAccumulator was made for d = 2"):
        acc.add(np.zeros((1, 3)), np.array([0]))
    assert acc.num_samples == 4  # the refused batches left nothing behind
    with pytest.raises(ValueError, match="class 0 has no samples"):
        nclab.MeanAccumulator(3, 2).means()


def test_phase2_refuses_other_data():
    h, y, w, b = _data(26)
    phase1, phase2 = _two_passes(_batches(h, y, [182]), 6, 10, weight=w, bias=b)
    phase2.add(h[:5], y[:5])
    with pytest.raises(ValueError, match="both passes must cover the same samples"):
        phase2.result()
