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
