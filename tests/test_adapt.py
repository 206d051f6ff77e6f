"""NetAdapt: channel groups, filter-norm pruning that keeps the function, proposals that meet their target by
prediction, the adapted table, resume after a kill, the impossible budget and the command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import mobilenets
from mobilenets.adapt import groups as G
from mobilenets.adapt.groups import channel_groups, drop_se, prune, resize_group, shrink_kernel, tensor_dims
from mobilenets.adapt.proposals import MIN_WIDTH, is_valid, make_proposals, smallest_arch

pytestmark = pytest.mark.usefixtures("one_thread")


def _v3(**kw) -> nn.Module:
    model = mobilenets.create_model("mobilenet_v3_small", small_input=True, in_chans=1, num_classes=10, **kw).eval()
    for m in model.modules():  # trained-looking BatchNorm: the statistics must be carried, not reset
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1.0, 0.3)
            m.bias.data.normal_(0.0, 0.3)
    return model


def _halved(arch):
    for g in channel_groups(arch):
        arch = resize_group(arch, g, max(MIN_WIDTH, g.width // 2 // 8 * 8))
    return arch


def test_groups_follow_shortcuts_and_depthwise_inputs() -> None:
    model = _v3()
    groups = {g.name: g for g in channel_groups(model.arch)}
    # the residual chain of V3-Small's 40-wide stage shares one width, from its first producer to the next block
    chain = groups["output of blocks 3-5"]
    assert chain.nodes == ("out:3", "out:4", "out:5") and chain.width == 40 and chain.blocks == (3, 4, 5, 6)
    assert groups["expansion of block 4"].nodes == ("mid:4",) and groups["expansion of block 4"].width == 240
    assert groups["head hidden layer"].width == 1024
    # every node of every block is in exactly one group
    nodes = [n for g in groups.values() for n in g.nodes]
    assert len(nodes) == len(set(nodes))


def test_pruned_network_computes_the_original_restricted_to_the_kept_filters() -> None:
    model = _v3()
    arch = _halved(model.arch)
    pruned = prune(model, arch).eval()
    assert pruned.arch == arch
    dims = tensor_dims(model.arch, model)
    keep = G._kept_indices(model.arch, arch, model.state_dict(), dims)
    # the original with every removed channel's input to later layers cut: the same function
    masked = copy.deepcopy(model)
    state = masked.state_dict()
    for key, d in dims.items():
        for axis, node in enumerate(d):
            if axis == 0 or node is None or node not in keep:
                continue
            mask = torch.ones(state[key].shape[axis], dtype=torch.bool)
            mask[keep[node]] = False
            index = [slice(None)] * state[key].ndim
            index[axis] = mask
            state[key][tuple(index)] = 0
    masked.load_state_dict(state)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pruned(x), masked(x), atol=1e-5)
        assert not torch.allclose(pruned(x), model(x), atol=1e-3)  # the cut channels did matter
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters()) / 2


def test_filter_selection_keeps_the_highest_norm_filters() -> None:
    model = _v3()
    group = next(g for g in channel_groups(model.arch) if g.name == "expansion of block 4")
    w = model.blocks[2][1].conv_pw.conv.weight  # block 4's expansion conv: it produces mid:4
    assert w.shape[0] == 240
    chosen = torch.tensor([3, 17, 100, 101, 239, 5, 60, 61])
    with torch.no_grad():
        w.mul_(0.01)
        w[chosen] *= 1000.0
    pruned = prune(model, resize_group(model.arch, group, 8))
    kept = pruned.blocks[2][1].conv_pw.conv.weight
    assert torch.equal(kept, w[torch.sort(chosen).values])


def test_kernel_and_se_proposals_carry_the_weights() -> None:
    model = _v3()
    i = next(i for i, s in enumerate(model.arch.blocks) if s.kernel == 5 and s.se_chs)
    arch = drop_se(shrink_kernel(model.arch, i), i)
    pruned = prune(model, arch)
    spec = pruned.arch.blocks[i]
    assert spec.kernel == 3 and spec.se_chs is None
    names = [n for n, _ in pruned.named_modules()]
    flat = [b for stage in model.blocks for b in stage]
    new_flat = [b for stage in pruned.blocks for b in stage]
    assert isinstance(new_flat[i].se, nn.Identity) and not isinstance(flat[i].se, nn.Identity)
    assert torch.equal(new_flat[i].conv_dw.conv.weight, flat[i].conv_dw.conv.weight[:, :, 1:4, 1:4])
    assert names


def _mac_proxy(arch) -> float:
    """A latency stand-in for the proposal logic: the network's multiply-adds at 32 px, counted from the specs
    (monotone in every width, as a latency table nearly is)."""
    res = 32 // arch.stem.stride
    total = float(arch.stem.out_chs * 9 * res * res)
    for s in arch.blocks:
        mid = s.mid_chs or s.in_chs
        out_res = res // s.stride
        total += (s.in_chs * mid if s.type == "ir" else 0) * res * res
        total += mid * s.kernel ** 2 * out_res ** 2 + mid * s.out_chs * out_res ** 2
        total += 2 * mid * (s.se_chs or 0)
        res = out_res
    return total / 1e6 + (arch.head_hidden or 0) * arch.blocks[-1].out_chs / 1e6


@pytest.mark.parametrize("fraction", [0.95, 0.85])
def test_every_proposal_meets_its_target_by_prediction(fraction: float) -> None:
    model = _v3(width_mult=0.5)
    base = _mac_proxy(model.arch)
    target = fraction * base
    proposals = make_proposals(model.arch, target, _mac_proxy)
    assert proposals, "some change must meet a 5-15% cut"
    for p in proposals:
        assert p.predicted_ms <= target
        assert p.predicted_ms == pytest.approx(_mac_proxy(p.arch))
        assert is_valid(model.arch, p.arch)
    # the largest width that meets the target: one step wider does not
    for p in proposals:
        if p.name.startswith("expansion"):
            g_new = next(g for g in channel_groups(p.arch) if g.name == p.name)
            g_old = next(g for g in channel_groups(model.arch) if g.name == p.name)
            if g_new.width + MIN_WIDTH < g_old.width:
                wider = resize_group(model.arch, g_old, g_new.width + MIN_WIDTH)
                assert not is_valid(model.arch, wider) or _mac_proxy(wider) > target


def test_smallest_arch_keeps_the_topology() -> None:
    model = _v3()
    small = smallest_arch(model.arch)
    assert is_valid(model.arch, small)
    assert all(s.kernel == 3 and s.se_chs is None for s in small.blocks if s.type in ("ds", "ir"))
    assert max(g.width for g in channel_groups(small)) <= 24


# --------------------------------------------------------------------------- the whole job, on a tiny table
TINY_TABLE = """\
format: mobilenets-table
version: 1
family: mobilenet_v3_small
name: tiny
options: {small_input: true}
stem: Conv(3, 32, 2, "HS")
stages:
- - Bneck(112, 3, 32, 32, True, "RE", 2)
- - Bneck(56, 3, 128, 48, False, "RE", 2)
  - Bneck(28, 3, 192, 48, False, "RE", 1)
- - Bneck(28, 5, 256, 64, True, "HS", 2)
- - Bneck(14, 5, 384, 96, True, "HS", 2)
- - LastConv(384, "HS")
head: 512
"""


def _fake_measure(model, input_size, backend, *, threads, batch=1, repeats=3, timing=None, statistic="min", gap_s=0.0) -> float:
    """A deterministic stand-in for a whole-network measurement (the resume test compares two runs' choices):
    the lookup table's own sum (cached, so it never changes between runs) with a 3% per-call overhead."""
    from mobilenets.analysis.lut import LatencyTable, network_parts

    return 1.03 * LatencyTable(backend, threads=threads, cache_dir=_LUT_DIR[0]).predict(network_parts(model, input_size))


_LUT_DIR: list[Path] = []


@pytest.fixture
def tiny_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from mobilenets.analysis import lut

    monkeypatch.setitem(lut.DEFAULT_TIMING, "min_time_s", 0.005)
    monkeypatch.setitem(lut.DEFAULT_TIMING, "min_runs", 3)
    monkeypatch.setitem(lut.DEFAULT_TIMING, "warmup_s", 0.0)
    monkeypatch.setattr(lut, "PAIRED_ROUNDS", 1)
    monkeypatch.setattr(lut, "PAIRED_CHUNK_S", 0.0)
    _LUT_DIR[:] = [tmp_path / "lut"]
    table = tmp_path / "tiny.yaml"
    table.write_text(TINY_TABLE)
    model = mobilenets.create_model(str(table), in_chans=1, num_classes=10)
    base = tmp_path / "base"
    model.save_pretrained(str(base))
    return base


def _opts(tmp_path: Path, **kw):
    from mobilenets.adapt import AdaptOptions

    return AdaptOptions(**{"budget_fraction": 0.8, "backend": "onnxruntime", "threads": 1, "iterations": 2,
                           "finetune_steps": 1, "lut_dir": str(tmp_path / "lut"), **kw})


#: Short fine-tunes on small batches: the tests check the job's logic, not what it learns.
FAST = ["batch_size=16", "eval_batch_size=180"]


def test_adapt_writes_a_table_that_builds_trains_and_exports(tiny_base: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.adapt import adapt, netadapt, run
    from mobilenets.deploy.export import export_model

    monkeypatch.setattr(netadapt, "measure_network_ms", _fake_measure)
    monkeypatch.setattr(run, "measure_network_ms", _fake_measure)
    out = tmp_path / "adapt"
    record = adapt(str(tiny_base), _opts(tmp_path, iterations=1), out=out, overrides=[*FAST, "epochs=1"],
                   long_term="finetune", log=lambda m: None)
    assert record["done"] and len(record["iterations"]) >= 1
    for it in record["iterations"]:
        assert it["predicted_ms"] <= it["target_ms"] and it["proposals"] and it["measured_ms"] > 0
        assert {"name", "change", "predicted_ms", "val_acc1", "val_loss"} <= set(it["proposals"][0])
    final = record["result"]
    assert final["meets_budget"] == (final["measured_ms"] <= record["budget_ms"])
    assert (out / "adapt.png").is_file() and (out / "widths.png").is_file()
    saved = json.loads((out / "adapt.json").read_text())
    assert saved["result"]["table"] == str(out / "model.yaml")
    # the table builds like any model name, as the network the last iteration kept
    model = mobilenets.create_model(str(out / "model.yaml"), in_chans=1, num_classes=10)
    adapted = mobilenets.from_pretrained(str(out / "adapted"))
    assert model.arch == adapted.arch
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in mobilenets.from_pretrained(str(tiny_base)).parameters())
    # the long-term fine-tune is a normal run directory; it exports and verifies
    res = export_model(out / "finetune", "onnx", tmp_path / "adapted.onnx")
    assert res.verified and res.max_abs_diff < 1e-4


def test_resume_after_a_kill_between_iterations_gives_the_same_table(tiny_base: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.adapt import adapt, netadapt, run

    monkeypatch.setattr(netadapt, "measure_network_ms", _fake_measure)
    monkeypatch.setattr(run, "measure_network_ms", _fake_measure)
    opts = _opts(tmp_path, kernels=False, se=False)
    killed = tmp_path / "killed"
    first = adapt(str(tiny_base), opts, out=killed, overrides=FAST, long_term="none", log=lambda m: None,
                  stop_after=1)
    assert not first["done"] and len(first["iterations"]) == 1 and not (killed / "model.yaml").exists()
    lines: list[str] = []
    resumed = adapt(str(tiny_base), opts, out=killed, overrides=FAST, long_term="none", log=lines.append)
    assert any("resuming after iteration 1" in line for line in lines)
    straight = adapt(str(tiny_base), opts, out=tmp_path / "straight", overrides=FAST, long_term="none",
                     log=lambda m: None)
    assert [it["chosen"] for it in resumed["iterations"]] == [it["chosen"] for it in straight["iterations"]]
    assert (killed / "model.yaml").read_text() == (tmp_path / "straight" / "model.yaml").read_text()
    # a continuation asked for something else is refused, naming the option
    with pytest.raises(ValueError, match="finetune_steps"):
        adapt(str(tiny_base), _opts(tmp_path, kernels=False, se=False, finetune_steps=5), out=killed,
              overrides=FAST, long_term="none", log=lambda m: None)


def test_an_impossible_budget_is_one_clear_error(tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.adapt import BudgetError, adapt, netadapt
    from mobilenets.cli import main

    monkeypatch.setattr(netadapt, "measure_network_ms", _fake_measure)
    with pytest.raises(BudgetError, match=r"smallest network .* reach runs in: [\d.]+ ms"):
        adapt(str(tiny_base), _opts(tmp_path, budget_fraction=None, budget_ms=1e-4), out=tmp_path / "a",
              long_term="none", log=lambda m: None)
    code = main(["adapt", str(tiny_base), "--budget-ms", "0.0001", "--backend", "onnxruntime", "--threads", "1",
                 "--lut-dir", str(tmp_path / "lut"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "smallest network" in err[-1] and err[-1].startswith("mobilenets adapt: error:")
    code = main(["adapt", str(tiny_base), "--budget-ms", "1", "--backend", "onnxruntim", "--out", str(tmp_path / "c")])
    assert code == 2 and "did you mean 'onnxruntime'" in capsys.readouterr().err
