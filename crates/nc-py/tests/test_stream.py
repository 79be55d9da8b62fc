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
from conftest import (
    FIXTURES,
    _distance_to_simplex,
    _equiangle,
    _equinorm,
    assert_metrics_close,
    brute_force,
    gaussian,
)


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


# Conventions (docs/metrics.md, "Conventions"): phase 2 computes under the one scatter(...)
# names, records it in its bytes, and merges only with states of the same one.

def _convention_data(seed=31):
    """Imbalanced classes and a classifier whose rows share a component, so that the raw and
    centred W differ (nc2, nc3, equinorm_w, equiangle_w)."""
    rng = np.random.default_rng(seed)
    h, y, w, b = gaussian(rng, 6, 10, [50, 20, 35, 41, 9, 27])
    return h, y, w + 2.0 * rng.standard_normal(10), b


def _sharded(h, y, w, b, convention, cut=97):
    """Phase 1 on two shards merged, phase 2 per shard under `convention`, pickled as if from
    other processes and merged into the accumulator the merged means give."""
    shards = [(h[:cut], y[:cut]), (h[cut:], y[cut:])]
    total = nclab.MeanAccumulator(6, 10)
    for x, labels in shards:
        part = nclab.MeanAccumulator(6, 10)
        part.add(x, labels)
        total.merge(pickle.loads(pickle.dumps(part)))
    merged = total.scatter(w, b, convention=convention)
    for x, labels in shards:
        part = total.scatter(w, b, convention=convention)
        part.add(x, labels)
        merged.merge(pickle.loads(pickle.dumps(part)))
    return merged


@pytest.mark.parametrize(
    "convention",
    ["zhu2021", "nclab+nc1-scale=total", "papyan2020", "rhubarbwu", "nctoolbox",
     "zhou2022+nc4=agreement,cdnv-variance=sample"],
)  # fmt: skip
def test_streaming_under_a_convention_equals_one_call(convention):
    h, y, w, b = _convention_data()
    merged = _sharded(h, y, w, b, convention)
    assert merged.convention == convention  # each is already in its canonical form
    got = merged.result()
    once = nclab.metrics(h, y, w, b, convention=convention)
    assert got["convention"] == once["convention"] == convention
    assert_metrics_close(got, once, rtol=1e-12, atol=1e-15)
    default = nclab.metrics(h, y, w, b)
    differs = [k for k, v in once.items() if isinstance(v, float) and not np.isclose(v, default[k])]
    assert differs, f"{convention} gave nclab's numbers"


def test_a_convention_streams_the_formulas_it_names():
    """Against the brute force of conftest, changed by hand where the convention differs from
    nclab's: nc1 not divided by K; the raw classifier rows of zhu2021 (whose float32 pinv
    cutoff removes nothing on these well-separated means)."""
    h, y, w, b = _convention_data(32)
    brute = brute_force(h, y, 6, w, b)
    total = _sharded(h, y, w, b, "nclab+nc1-scale=total").result()
    assert np.isclose(total["nc1"], 6 * brute["nc1"], rtol=1e-9)
    for key in ("nc2", "nc3", "nc4", "cdnv", "equinorm_w", "equiangle_h", "accuracy"):
        assert np.isclose(total[key], brute[key], rtol=1e-9, atol=1e-12), key
    zhu = _sharded(h, y, w, b, "zhu2021").result()
    mu = np.stack([h[y == c].mean(axis=0) for c in range(6)])
    m = (mu - h.mean(axis=0)).T
    s = np.linalg.svd(m, compute_uv=False)
    assert (s[:5] / s[0]).min() ** 2 > 10 * np.finfo(np.float32).eps  # the cutoff keeps all 5
    raw = {
        "nc1": brute["nc1"],
        "nc2": _distance_to_simplex(w @ w.T),
        "nc3": _distance_to_simplex(w @ m),
        "equinorm_w": _equinorm(w),
        "equiangle_w": _equiangle(w),
    }
    for key, want in raw.items():
        assert np.isclose(zhu[key], want, rtol=1e-9, atol=1e-12), (key, zhu[key], want)
    assert not np.isclose(zhu["nc2"], brute["nc2"], rtol=1e-3)  # raw and centred W differ here


def test_the_convention_is_recorded_in_canonical_form_and_survives_pickling():
    h, y, w, b = _convention_data(33)
    phase1, _ = _two_passes(_batches(h, y, [182]), 6, 10)
    # Text that names a preset, or no change from one, is written as that preset.
    for text, canonical in [
        ("nclab", "nclab"),
        (" zhu2021 ", "zhu2021"),
        ("nclab+nc1-scale=per-class", "nclab"),
        ("nclab+weight=raw,pinv=dim-eps-f32", "zhu2021"),
        ("zhu2021+weight=raw", "zhu2021"),
        ("nclab+nc1-scale=total", "nclab+nc1-scale=total"),
    ]:
        assert phase1.scatter(w, b, convention=text).convention == canonical, text
    assert phase1.scatter(w, b).convention == "nclab"
    phase2 = phase1.scatter(w, b, convention="nclab+nc1-scale=total")
    for x, labels in _batches(h, y, [100, 82]):
        phase2.add(x, labels)
    data = phase2.to_bytes()
    assert b'"convention":"nclab+nc1-scale=total"' in data
    assert nclab.state_info(data)["convention"] == "nclab+nc1-scale=total"
    back = pickle.loads(pickle.dumps(phase2))
    assert not back.attached and back.convention == "nclab+nc1-scale=total"
    assert back.to_bytes() == data
    assert nclab.ScatterAccumulator.from_bytes(data).convention == "nclab+nc1-scale=total"
    assert "convention='nclab+nc1-scale=total'" in repr(back)
    again = phase1.scatter(w, b, convention="nclab+nc1-scale=total")
    again.merge(back)
    assert again.result() == phase2.result()
    # Phase-1 sums serve every convention: their bytes say nclab, whatever phase 2 uses.
    assert nclab.state_info(phase1.to_bytes())["convention"] == "nclab"


def test_merging_states_of_two_conventions_is_refused_naming_both():
    h, y, w, b = _convention_data(34)
    phase1, nclab_state = _two_passes(_batches(h, y, [182]), 6, 10, weight=w, bias=b)
    _, zhu = _two_passes(_batches(h, y, [182]), 6, 10, weight=w, bias=b, convention="zhu2021")
    expected = "cannot merge: a phase-2 state of convention 'zhu2021' into one of convention 'nclab'"
    with pytest.raises(ValueError, match=expected):
        nclab_state.merge(zhu)
    with pytest.raises(ValueError, match=expected):
        nclab_state.merge(zhu.to_bytes())
    detached = nclab.ScatterAccumulator.from_bytes(zhu.to_bytes())
    with pytest.raises(ValueError, match="convention 'nclab' into one of convention 'zhu2021'"):
        detached.merge(pickle.loads(pickle.dumps(nclab_state)))
    mix = phase1.scatter(w, b, convention="zhu2021+nc1-scale=total")
    with pytest.raises(ValueError, match=r"convention 'zhu2021' into one of convention 'zhu2021\+nc1-scale=total'"):
        mix.merge(zhu)
    assert nclab_state.num_samples == zhu.num_samples == 182 and mix.num_samples == 0


def test_bad_convention_text_raises_value_error_as_metrics_does():
    h, y, w, b = _convention_data(35)
    phase1, _ = _two_passes(_batches(h, y, [182]), 6, 10)
    for text, expected in [
        ("zhu2020", "unknown convention 'zhu2020' (expected one of nclab, zhou2022"),
        ("nclab+nc1-scale=half", "convention switch nc1-scale: unknown value 'half' (expected one of per-class, total)"),
        ("nclab+bogus=1", "unknown convention switch 'bogus'"),
        ("nclab+nc3", "expected name=value after '+'"),
        ("", "unknown convention ''"),
    ]:
        with pytest.raises(ValueError) as streamed:
            phase1.scatter(w, b, convention=text)
        assert expected in str(streamed.value), (text, str(streamed.value))
        with pytest.raises(ValueError) as once:
            nclab.metrics(h, y, w, b, convention=text)
        assert str(streamed.value) == str(once.value)
    with pytest.raises(TypeError):
        phase1.scatter(w, b, convention=None)


def _edit_header(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replaces `old` by `new` in the header, re-padded to 8 bytes, with its length fixed."""
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n].rstrip(b" ")
    assert old in header
    header = header.replace(old, new)
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data[8 + n :]


def test_reading_refuses_a_convention_that_does_not_parse_or_is_not_canonical():
    h, y, w, b = _convention_data(36)
    phase1, phase2 = _two_passes(_batches(h, y, [182]), 6, 10, weight=w, bias=b)
    data = phase2.to_bytes()
    key = b'"convention":"nclab"'
    cases = [
        (b'"convention":"zhu2020"', "metric convention 'zhu2020': unknown convention 'zhu2020'"),
        (b'"convention":"nclab+nc1-scale=per-class"',
         "metric convention 'nclab+nc1-scale=per-class' is not in canonical form (nclab writes it 'nclab')"),
        (b'"convention":"nclab+weight=raw,pinv=dim-eps-f32"', "(nclab writes it 'zhu2021')"),
        (b'"convention":""', "the metric convention is empty"),
    ]  # fmt: skip
    for new, expected in cases:
        bad = _edit_header(data, key, new)
        for read in (nclab.ScatterAccumulator.from_bytes, nclab.state_info, phase2.merge):
            with pytest.raises(ValueError) as err:
                read(bad)
            assert str(err.value).startswith("not a valid nclab partial state: "), str(err.value)
            assert expected in str(err.value), str(err.value)
    # A valid other convention reads, and is named by the merge it does not fit.
    zhu = _edit_header(data, key, b'"convention":"zhu2021"')
    assert nclab.ScatterAccumulator.from_bytes(zhu).convention == "zhu2021"
    with pytest.raises(ValueError, match="convention 'zhu2021' into one of convention 'nclab'"):
        phase2.merge(zhu)
    with pytest.raises(ValueError, match="phase-1 states record 'nclab'"):
        nclab.MeanAccumulator.from_bytes(_edit_header(phase1.to_bytes(), key, b'"convention":"zhu2021"'))


def test_bytes_of_the_first_format_version_still_read():
    """Written by the Rust library before phase-2 states carried other conventions
    (crates/nc-data/tests/partial_state.rs, bytes_of_the_first_version_still_decode)."""
    old = (FIXTURES / "partial_state_v1_phase2.safetensors").read_bytes()
    state = nclab.ScatterAccumulator.from_bytes(old)
    assert state.convention == "nclab" and state.num_samples == 4 and state.to_bytes() == old
    assert nclab.state_info(old)["convention"] == "nclab"
    old1 = (FIXTURES / "partial_state_v1_phase1.safetensors").read_bytes()
    assert nclab.MeanAccumulator.from_bytes(old1).to_bytes() == old1


def test_states_from_python_and_from_the_cli_merge(cli, tmp_path):
    """A worker in Python and a batch job of `nclab analyze --phase` write the same format:
    `nclab merge` adds them, and the metrics are those of one call over all rows."""
    import json
    import subprocess

    h, y, w, b = _data(24)
    once = nclab.metrics(h, y, w, b)
    cut = 90
    np.savez(tmp_path / "cli_shard.npz", features=h[cut:], labels=y[cut:], weight=w, bias=b)
    python_means = nclab.MeanAccumulator(6, 10)
    python_means.add(h[:cut], y[:cut])
    (tmp_path / "py.means").write_bytes(python_means.to_bytes())

    def run(*args):
        out = subprocess.run([cli, *map(str, args)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    shard = tmp_path / "cli_shard.npz"
    run("analyze", "--phase", "means", shard, "--num-classes", 6, "--out", tmp_path / "cli.means")
    run("merge", tmp_path / "py.means", tmp_path / "cli.means", "--out", tmp_path / "all.means")
    # Python's plan from the merged means the CLI wrote, and the CLI's phase 2 with them.
    merged = nclab.MeanAccumulator.from_bytes((tmp_path / "all.means").read_bytes())
    python_scatter = merged.scatter(w.astype(np.float64), b.astype(np.float64))
    python_scatter.add(h[:cut], y[:cut])
    (tmp_path / "py.scatter").write_bytes(python_scatter.to_bytes())
    run("analyze", "--phase", "scatter", shard, "--num-classes", 6, "--means", tmp_path / "all.means",
        "--out", tmp_path / "cli.scatter")
    result = json.loads(run("merge", tmp_path / "py.scatter", tmp_path / "cli.scatter",
                            "--means", tmp_path / "all.means", "--classifier-from", shard, "--json"))
    assert_metrics_close(result, once, rtol=1e-12, atol=1e-15)
