"""The latency lookup table: parts that rebuild the network exactly, a cache that is reused only when its
conditions match, and predictions that are the sum of the parts plus the constant."""

import dataclasses
import json
import math

import pytest
import torch

import mobilenets
from mobilenets.analysis.lut import LUT_BACKENDS, LatencyTable, Part, measure_network_ms, network_parts

pytestmark = pytest.mark.usefixtures("one_thread")

# An entry in milliseconds: one warm-up call, three timed ones.
FAST = {"warmup": 1, "warmup_s": 0.0, "min_runs": 3, "min_time_s": 0.0}


@pytest.fixture(scope="module")
def small():
    return mobilenets.create_model("mobilenet_v3_small", width_mult=0.25, small_input=True, in_chans=1,
                                   num_classes=10).eval()


@pytest.fixture(scope="module")
def parts(small):
    return network_parts(small, 32)


def _table(backend, tmp_path, **kw):
    return LatencyTable(backend, threads=kw.pop("threads", 1), cache_dir=tmp_path, timing=FAST, pairing=(1, 0.0), **kw)


def _with_eps(module, eps):
    # A part's BatchNorm takes the default eps: it decides no latency, so it is not part of the key.
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = eps
    return module


def test_parts_cover_the_network_with_the_shapes_it_sees(small, parts):
    modules = [small.stem, *(b for stage in small.blocks for b in stage)]
    seen = []
    hooks = [m.register_forward_hook(lambda _m, i, o: seen.append((tuple(i[0].shape[1:]), o))) for m in modules]
    x = torch.randn(1, 1, 32, 32)
    try:
        with torch.no_grad():
            logits = small(x)
    finally:
        for h in hooks:
            h.remove()
    assert [p.kind for p in parts] == ["stem"] + ["block"] * (len(parts) - 2) + ["head"]
    assert [p.index for p in parts] == list(range(len(parts)))
    assert len(seen) == len(parts) - 1
    assert any(p.input_shape[1] == 32 and p.index > 1 for p in parts)  # small_input kept the early strides at 1
    for part, module, (shape, out) in zip(parts, modules, seen):
        assert part.input_shape == shape
        built = _with_eps(part.build(), small.arch.bn_eps)
        built.load_state_dict(module.state_dict())  # the same layers, name for name
        with torch.no_grad():
            xin = torch.randn(1, *shape)
            assert torch.allclose(built(xin), module(xin), atol=1e-6)
            assert built(xin).shape == out.shape
    head = parts[-1]
    assert head.input_shape == tuple(seen[-1][1].shape[1:])
    built = head.build()
    built[2].load_state_dict(small.head_hidden.state_dict())
    built[-1].load_state_dict(small.classifier.state_dict())
    with torch.no_grad():
        feats = small.forward_features(x)
        assert torch.allclose(built(feats), logits, atol=1e-6)
    assert parts[0].spec["in_chs"] == 1


def test_part_key_ignores_the_index_and_build_leaves_the_rng_alone(parts):
    p = parts[3]
    assert Part("block", 99, p.spec, p.input_shape).key == p.key
    assert json.loads(p.key)["input_shape"] == list(p.input_shape)
    torch.manual_seed(5)
    want = torch.rand(3)
    torch.manual_seed(5)
    p.build()
    assert torch.equal(torch.rand(3), want)
    with pytest.raises(ValueError, match=r"unknown part kind 'blok'; did you mean 'block'"):
        Part("blok", 1, p.spec, p.input_shape)
    with pytest.raises(ValueError, match="input_shape"):
        Part("block", 1, p.spec, (8, 0, 4))


def test_cache_is_reused_by_a_second_table(parts, tmp_path):
    first = _table("eager", tmp_path)
    ms = [first.part_ms(p) for p in parts[:3]]
    assert first.measured == 3 and first.reused == 0 and all(math.isfinite(v) and v > 0 for v in ms)
    assert first.path.parent == tmp_path and first.path.is_file()
    again = _table("eager", tmp_path)
    assert again.path == first.path
    assert [again.part_ms(p) for p in parts[:3]] == ms
    assert again.measured == 0 and again.reused == 3
    assert "3 entries reused, 0 measured" in again.summary()
    data = json.loads(first.path.read_text())
    assert data["header"]["backend"] == "eager" and data["header"]["threads"] == 1
    assert set(data["header"]["versions"]) >= {"torch"}
    assert {k: v for k, v in data["entries"].items() if '"call"' not in k and "yardstick" not in k} == dict(zip([p.key for p in parts[:3]], ms))
    # each entry has the backend's call cost on its input removed; that cost is cached beside the parts
    calls = {k: v for k, v in data["entries"].items() if '"call"' in k}
    assert calls and all(v > 0 for v in calls.values())


def test_cache_is_another_file_for_other_threads_or_backend(parts, tmp_path):
    pytest.importorskip("onnxruntime")
    one = _table("eager", tmp_path)
    one.part_ms(parts[-1])
    two = _table("eager", tmp_path, threads=2)
    assert two.path != one.path
    two.part_ms(parts[-1])
    assert two.measured == 1
    ort = _table("onnxruntime", tmp_path)
    assert ort.path not in (one.path, two.path)
    ms = ort.part_ms(parts[-1])  # the head, exported alone to ONNX and run by ONNX Runtime
    assert ort.measured == 1 and math.isfinite(ms) and ms > 0
    header = json.loads(ort.path.read_text())["header"]
    assert header["backend"] == "onnxruntime" and header["versions"]["onnxruntime"] != "?"
    assert header["statistic"] == "min"
    median = _table("eager", tmp_path, statistic="median")  # medians are never mixed with minima
    assert median.path not in (one.path, two.path, ort.path)
    median.part_ms(parts[-1])
    assert median.measured == 1


def test_onnxruntime_times_a_block(parts, tmp_path):
    pytest.importorskip("onnxruntime")
    table = _table("onnxruntime", tmp_path)
    ms = table.part_ms(parts[5])  # a V3 block with squeeze-excite and h-swish
    assert math.isfinite(ms) and ms > 0 and table.measured == 1


def test_predict_is_the_sum_of_the_parts_plus_the_constant(parts, tmp_path):
    table = _table("eager", tmp_path)
    some = parts[:4]
    assert table.predict(some, 1.25) == sum(table.part_ms(p) for p in some) + 1.25
    assert table.predict(some) == sum(table.part_ms(p) for p in some)
    assert table.measured == 4


def test_a_corrupt_or_foreign_cache_file_is_ignored_with_one_line(parts, tmp_path):
    table = _table("eager", tmp_path)
    table.path.parent.mkdir(parents=True, exist_ok=True)
    table.path.write_text("{not json")
    said = []
    fresh = _table("eager", tmp_path, log=said.append)
    assert len(said) == 1 and "ignoring latency-table cache" in said[0] and "\n" not in said[0]
    fresh.part_ms(parts[0])
    assert fresh.measured == 1
    data = json.loads(fresh.path.read_text())  # rewritten whole
    data["header"]["cpu"] = "another machine"
    fresh.path.write_text(json.dumps(data))
    said.clear()
    other = _table("eager", tmp_path, log=said.append)
    assert len(said) == 1 and "header" in said[0]
    other.part_ms(parts[0])
    assert other.measured == 1 and other.reused == 0
    with pytest.warns(RuntimeWarning, match="ignoring latency-table cache"):
        fresh.path.write_text("[]")
        _table("eager", tmp_path)


def test_backend_errors(monkeypatch, tmp_path):
    from mobilenets.deploy import bench
    from mobilenets.deploy.extras import MissingExtraError

    assert LUT_BACKENDS[0] == "eager" and all(k in bench.BACKENDS for k in LUT_BACKENDS)
    with pytest.raises(ValueError, match=r"unknown latency-table backend 'onnxrt'; did you mean 'onnxruntime'\?; "
                                         r"expected one of eager, onnxruntime"):
        LatencyTable("onnxrt", threads=1, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="threads=0 invalid"):
        LatencyTable("eager", threads=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"unknown latency statistic 'mean'; .*expected one of min, median"):
        LatencyTable("eager", threads=1, cache_dir=tmp_path, statistic="mean")
    missing = dataclasses.replace(bench.BACKENDS["onnxruntime"], requires=(("no_such_runtime_xyz", "onnx"),))
    monkeypatch.setitem(bench.BACKENDS, "onnxruntime", missing)
    with pytest.raises(MissingExtraError, match=r"mobilenets\[onnx\]"):
        LatencyTable("onnxruntime", threads=1, cache_dir=tmp_path)


def test_default_cache_dir_is_beside_the_best_backend_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache" / "best_backend.json"))
    assert LatencyTable("eager", threads=1).path.parent == tmp_path / "cache" / "lut"


def test_measure_network_ms_times_the_whole_model(small):
    small.train()
    try:
        ms = measure_network_ms(small, 32, "eager", threads=1, repeats=2, timing=FAST)
        assert small.training  # the caller's model is left as it was
    finally:
        small.eval()
    assert math.isfinite(ms) and ms > 0
    with pytest.raises(ValueError, match="input_size=4 invalid"):
        measure_network_ms(small, 4, "eager", threads=1)
    # The least call is never above the median call of the same runs.
    times = []
    from mobilenets.deploy import bench

    real = bench.time_callable

    def recording(fn, x, **kw):
        out = real(fn, x, **kw)
        times.append(out)
        return out

    import unittest.mock

    with unittest.mock.patch.object(bench, "time_callable", recording):
        least = measure_network_ms(small, 32, "eager", threads=1, repeats=2, timing=FAST)
    assert least == pytest.approx(1e3 * min(min(t) for t in times))


def test_measure_network_ms_exports_the_whole_model_for_onnxruntime(small, parts, tmp_path):
    pytest.importorskip("onnxruntime")
    whole = measure_network_ms(small, 32, "onnxruntime", threads=1, repeats=1, timing=FAST)
    table = _table("onnxruntime", tmp_path)
    constant = whole - table.predict(parts)
    assert math.isfinite(whole) and whole > 0
    assert table.predict(parts, constant) == pytest.approx(whole)


def test_two_tables_on_one_file_keep_each_others_entries(parts, tmp_path):
    a, b = _table("eager", tmp_path), _table("eager", tmp_path)
    a.part_ms(parts[0])
    b.part_ms(parts[1])  # b's save merges a's entry instead of overwriting it
    assert {k for k in json.loads(a.path.read_text())["entries"] if '"call"' not in k and "yardstick" not in k} == {parts[0].key, parts[1].key}
    assert b.part_ms(parts[0]) == a.part_ms(parts[0]) and b.measured == 1 and b.reused == 1


def test_paired_timing_cancels_a_drifting_machine(monkeypatch):
    """An entry is its ratio to the yardstick timed beside it: a machine whose speed halves and recovers
    between rounds (as the shared VM this was written on did) leaves the ratio, hence the entry, unchanged."""
    from mobilenets.analysis import lut

    speed = iter([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5] * 3)  # one factor per timing: ref, part, ref

    def fake_round(fn, x, timing, statistic):
        return fn() * next(speed)

    monkeypatch.setattr(lut, "_round_ms", fake_round)
    ratio = lut._paired_ratio(lambda: 3.0, None, lambda: 1.0, None, "min", (3, 0.0))
    assert ratio == pytest.approx(3.0)


def test_entries_are_scaled_by_the_tables_yardstick(parts, tmp_path):
    """Every entry of a cache file is (ratio to the yardstick) x (the file's one yardstick time): the
    yardstick is measured once per file and read back, never re-measured by a later table."""
    first = _table("eager", tmp_path)
    first.part_ms(parts[1])
    data = json.loads(first.path.read_text())
    yard = [v for k, v in data["entries"].items() if "yardstick" in k]
    assert len(yard) == 1 and yard[0] > 0
    second = _table("eager", tmp_path)
    assert second._yardstick()[2] == yard[0] and second.measured == 0
