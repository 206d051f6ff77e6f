"""Channel groups of a MobileNet and pruning them by filter norm, with the weights carried over.

Why groups and not layers: a channel count cannot change alone. The output width of a block is the input
width of the next, and a residual chain (blocks whose shortcut adds input to output) shares one width
from its first producer to the block after it; a depthwise-separable block's depthwise conv runs on its
input channels. NetAdapt (Yang et al. 2018) simplifies "a layer"; here the unit is the group of channel
dimensions that must stay equal, found by union-find over the resolved architecture:

* ``out:-1`` (the stem's output) ... ``out:i`` (block ``i``'s output); a shortcut joins ``out:i`` with
  ``out:i-1``; a ``ds`` block's depthwise conv and squeeze-excite run on its input's group;
* ``mid:i``: an inverted residual's expansion width (its own group);
* ``se:i``: a squeeze-excite's hidden width, which follows its channels (``make_divisible(c / 4)``, the
  table dialect's rule) and keeps its highest-norm units;
* ``head``: the hidden head layer (V3's 1024 / 1280).

:func:`prune` keeps, in every dimension of a group, the channels with the largest L2 norm of the filters
that produce them (summed over the group's producers), and copies every kept weight, BatchNorm statistic
and bias into a network built from the new architecture. Before any fine-tuning the pruned network
computes exactly what the original computes once the removed channels' inputs to later layers are cut
(``tests/test_adapt.py`` checks this). :func:`shrink_kernel` and :func:`drop_se` are the two structural
proposals (5x5 -> 3x3 depthwise kernel, the centre of the old one; no squeeze-excite).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..models.blocks import BlockSpec
from ..models.layers import make_divisible
from ..models.mobilenet import ArchSpec, MobileNet

__all__ = ["ADAPTABLE_TYPES", "ChannelGroup", "build_like", "channel_groups", "check_adaptable", "drop_se", "prune",
           "resize_group", "shrink_kernel", "tensor_dims"]

#: Block types whose channels :func:`prune` can follow (MobileNetV1/V2/V3 tables and their stems).
ADAPTABLE_TYPES = ("conv", "ds", "ir")

Dims = tuple[str | None, ...]


@dataclass(frozen=True)
class ChannelGroup:
    """One set of channel dimensions that must keep one width: ``nodes`` name them (see the module doc)."""

    name: str
    nodes: tuple[str, ...]
    width: int
    blocks: tuple[int, ...]
    """The blocks (indices into ``ArchSpec.blocks``) whose cost changes with this width, for the LUT."""


def check_adaptable(arch: ArchSpec) -> None:
    """Refuse architectures whose channels this module cannot follow, naming the block type."""
    for i, spec in enumerate([arch.stem, *arch.blocks]):
        if spec.type not in ADAPTABLE_TYPES:
            raise ValueError(f"block {i} of {arch.family} is a {spec.type!r} block; adaptation follows the channels of "
                             f"{', '.join(ADAPTABLE_TYPES)} blocks (MobileNetV1/V2/V3 tables)")
        if spec.type == "ir" and spec.mid_chs == spec.in_chs:
            raise ValueError(f"block {i} of {arch.family} is an inverted residual without expansion, which the table "
                             "rows cannot express; adapt the registered model instead")


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def join(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _in_node(i: int) -> str:
    return f"out:{i - 1}"


def _channel_node(i: int, spec: BlockSpec) -> str:
    """The node a block's depthwise conv and squeeze-excite run on."""
    return f"mid:{i}" if spec.type == "ir" else _in_node(i)


def channel_groups(arch: ArchSpec) -> list[ChannelGroup]:
    """Every prunable group of ``arch`` (the stem's input and the classifier's output are fixed)."""
    check_adaptable(arch)
    blocks = arch.blocks
    uf = _Union()
    width: dict[str, int] = {"out:-1": arch.stem.out_chs}
    for i, spec in enumerate(blocks):
        width[f"out:{i}"] = spec.out_chs
        uf.find(f"out:{i}")
        if spec.type == "ir":
            width[f"mid:{i}"] = int(spec.mid_chs or spec.in_chs)
            uf.find(f"mid:{i}")
        if spec.has_skip:
            uf.join(f"out:{i}", _in_node(i))
    if arch.head_hidden:
        width["head"] = arch.head_hidden
    members: dict[str, list[str]] = {}
    for node in width:
        members.setdefault(uf.find(node) if node != "head" else "head", []).append(node)
    groups = []
    for nodes in members.values():
        touched = sorted({b for n in nodes for b in _blocks_of(n, len(blocks))})
        groups.append(ChannelGroup(_group_name(nodes), tuple(nodes), width[nodes[0]], tuple(touched)))
    return sorted(groups, key=lambda g: (g.blocks[0] if g.blocks else 10**6, g.name))


def _blocks_of(node: str, n_blocks: int) -> list[int]:
    """Blocks whose latency a node's width changes: -1 is the stem, ``n_blocks`` the head."""
    kind, _, idx = node.partition(":")
    if kind == "head":
        return [n_blocks]
    i = int(idx)
    if kind == "mid":
        return [i]
    return [i, i + 1]  # its producer and its consumer (n_blocks: the head reads the last block)


def _group_name(nodes: list[str]) -> str:
    mids = [n for n in nodes if n.startswith("mid:")]
    if mids:
        return f"expansion of block {int(mids[0][4:])}"
    if nodes == ["head"]:
        return "head hidden layer"
    outs = sorted(int(n[4:]) for n in nodes)
    if outs[0] == -1:
        return "stem" if len(outs) == 1 else f"stem to block {outs[-1]}"
    return f"output of block {outs[0]}" if len(outs) == 1 else f"output of blocks {outs[0]}-{outs[-1]}"


# ---------------------------------------------------------------------------------------- new widths
def resize_group(arch: ArchSpec, group: ChannelGroup, new_width: int) -> ArchSpec:
    """``arch`` with every dimension of ``group`` at ``new_width`` (squeeze-excite widths follow)."""
    nodes = set(group.nodes)
    stem = arch.stem.with_(out_chs=new_width) if "out:-1" in nodes else arch.stem
    specs = []
    for i, spec in enumerate(arch.blocks):
        changes: dict[str, int] = {}
        if _in_node(i) in nodes:
            changes["in_chs"] = new_width
        if f"out:{i}" in nodes:
            changes["out_chs"] = new_width
        if f"mid:{i}" in nodes:
            changes["mid_chs"] = new_width
        if spec.type == "ds" and "in_chs" in changes and spec.mid_chs is not None:
            changes["mid_chs"] = new_width
        spec = spec.with_(**changes) if changes else spec
        if spec.se_chs is not None and changes:
            spec = spec.with_(se_chs=make_divisible(_se_channels(spec) / 4))
        specs.append(spec)
    head = new_width if "head" in nodes else arch.head_hidden
    return replace(arch, stem=stem, stages=_restage(arch, specs), head_hidden=head)


def _se_channels(spec: BlockSpec) -> int:
    return int(spec.mid_chs or spec.in_chs) if spec.type == "ir" else spec.in_chs


def _restage(arch: ArchSpec, specs: list[BlockSpec]) -> tuple[tuple[BlockSpec, ...], ...]:
    out, k = [], 0
    for stage in arch.stages:
        out.append(tuple(specs[k:k + len(stage)]))
        k += len(stage)
    return tuple(out)


def shrink_kernel(arch: ArchSpec, block: int, kernel: int = 3) -> ArchSpec:
    """``arch`` with block ``block``'s depthwise kernel at ``kernel`` (weights: the old kernel's centre)."""
    specs = list(arch.blocks)
    specs[block] = specs[block].with_(kernel=kernel)
    return replace(arch, stages=_restage(arch, specs))


def drop_se(arch: ArchSpec, block: int) -> ArchSpec:
    """``arch`` without block ``block``'s squeeze-excite."""
    specs = list(arch.blocks)
    specs[block] = specs[block].with_(se_chs=None)
    return replace(arch, stages=_restage(arch, specs))


# -------------------------------------------------------------------------------- tensors and weights
def tensor_dims(arch: ArchSpec, model: MobileNet) -> dict[str, Dims]:
    """For every parameter and buffer of ``model``: the node each dimension belongs to (``None``: fixed)."""
    dims: dict[str, Dims] = {}

    def conv(prefix: str, out: str | None, inp: str | None, depthwise: bool = False) -> None:
        dims[f"{prefix}.conv.weight"] = (out, None if depthwise else inp, None, None)
        for key in ("weight", "bias", "running_mean", "running_var"):
            dims[f"{prefix}.bn.{key}"] = (out,)

    conv("stem", "out:-1", None)
    for i, (name, spec) in enumerate(zip(_block_names(model), arch.blocks, strict=True)):
        src, dst = _in_node(i), f"out:{i}"
        if spec.type == "conv":
            conv(name, dst, src)
            continue
        chans = _channel_node(i, spec)
        if spec.type == "ir":
            conv(f"{name}.conv_pw", chans, src)
        conv(f"{name}.conv_dw", chans, chans, depthwise=True)
        if spec.se_chs is not None:
            se = f"se:{i}"
            dims[f"{name}.se.conv_reduce.weight"] = (se, chans, None, None)
            dims[f"{name}.se.conv_reduce.bias"] = (se,)
            dims[f"{name}.se.conv_expand.weight"] = (chans, se, None, None)
            dims[f"{name}.se.conv_expand.bias"] = (chans,)
        conv(f"{name}.conv_pw" if spec.type == "ds" else f"{name}.conv_pwl", dst, chans)
    last = f"out:{len(arch.blocks) - 1}"
    if arch.head_hidden:
        dims["head_hidden.0.weight"] = ("head", last)
        dims["head_hidden.0.bias"] = ("head",)
        dims["classifier.weight"] = (None, "head")
    else:
        dims["classifier.weight"] = (None, last)
    dims["classifier.bias"] = (None,)
    return dims


def _block_names(model: MobileNet) -> list[str]:
    return [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]


def _importance(state: Mapping[str, torch.Tensor], dims: Mapping[str, Dims], node_set: set[str]) -> torch.Tensor:
    """Squared L2 norm of every filter producing a channel of the group, summed over its producers."""
    total: torch.Tensor | None = None
    for key, d in dims.items():
        if not key.endswith("weight") or ".bn." in key or d[0] not in node_set or key.endswith("conv_expand.weight"):
            continue
        w = state[key]
        if w.ndim == 4 and d[1] is None and w.shape[1] == 1 and ".conv_dw." in key:
            continue  # a depthwise conv carries a channel through; it does not produce it
        norms = w.detach().float().flatten(1).pow(2).sum(1)
        total = norms if total is None else total + norms
    if total is None:
        raise ValueError(f"no producer found for channels {sorted(node_set)}")
    return total


def _keep(scores: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the ``width`` largest scores, in their original order (ties: the lower index)."""
    order = torch.argsort(-scores, stable=True)[:width]
    return torch.sort(order).values


def build_like(model: MobileNet, arch: ArchSpec) -> MobileNet:
    """A network of ``arch`` with ``model``'s classes, input channels, BatchNorm settings and metadata."""
    bn = next((m for m in model.modules() if isinstance(m, nn.BatchNorm2d)), None)
    new = MobileNet(arch, num_classes=model.num_classes, in_chans=model.in_chans, dropout=model.drop_rate,
                    bn_eps=bn.eps if bn is not None else None, bn_momentum=bn.momentum if bn is not None else None)
    new.pretrained_cfg = {**new.pretrained_cfg, **{k: v for k, v in model.pretrained_cfg.items()
                                                    if k in ("mean", "std", "input_size", "crop_pct", "interpolation")}}
    return new.to(next(model.parameters()).device)


def prune(model: MobileNet, new_arch: ArchSpec) -> MobileNet:
    """A network of ``new_arch`` carrying ``model``'s highest-norm channels (see the module docstring).

    ``new_arch`` may differ from ``model.arch`` in any group's width (never wider), a depthwise kernel
    (smaller, odd: the centre is kept) and squeeze-excites removed; the stem's input and the classes stay.
    """
    old_arch = model.arch
    old_state = model.state_dict()
    old_dims = tensor_dims(old_arch, model)
    new_model = build_like(model, new_arch)
    new_dims = tensor_dims(new_arch, new_model)
    keep = _kept_indices(old_arch, new_arch, old_state, old_dims)
    state = {}
    for key, target in new_model.state_dict().items():
        if key not in old_state:
            raise ValueError(f"pruned network has a tensor {key!r} the original lacks")
        t = old_state[key]
        for axis, node in enumerate(new_dims.get(key, ())):
            if node is not None and node in keep:
                t = t.index_select(axis, keep[node].to(t.device))
        if t.ndim == 4 and t.shape[2:] != target.shape[2:]:  # a smaller depthwise kernel: its centre
            off = (t.shape[2] - target.shape[2]) // 2
            t = t[:, :, off:off + target.shape[2], off:off + target.shape[3]]
        if t.shape != target.shape:
            raise ValueError(f"cannot carry {key} {tuple(old_state[key].shape)} into {tuple(target.shape)}")
        state[key] = t.clone()
    new_model.load_state_dict(state)
    return new_model


def _kept_indices(old: ArchSpec, new: ArchSpec, state: Mapping[str, torch.Tensor],
                  dims: Mapping[str, Dims]) -> dict[str, torch.Tensor]:
    """For every node whose width shrinks: the channels kept, by filter norm over its group."""
    keep: dict[str, torch.Tensor] = {}
    new_widths = {n: g.width for g in channel_groups(new) for n in g.nodes}
    for group in channel_groups(old):
        width = new_widths.get(group.nodes[0], group.width)
        if width > group.width:
            raise ValueError(f"{group.name}: {width} channels is wider than the original {group.width}")
        if width < group.width:
            idx = _keep(_importance(state, dims, set(group.nodes)), width)
            keep.update({n: idx for n in group.nodes})
    for i, (a, b) in enumerate(zip(old.blocks, new.blocks, strict=True)):
        if a.se_chs is not None and b.se_chs is not None and b.se_chs < a.se_chs:
            keep[f"se:{i}"] = _keep(_importance(state, dims, {f"se:{i}"}), b.se_chs)
    return keep
