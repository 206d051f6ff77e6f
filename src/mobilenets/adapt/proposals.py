"""NetAdapt's proposals: for each channel group (and each kernel / squeeze-excite choice), the simplest change
of the current network that meets the iteration's latency target *by prediction*.

Yang et al. (2018), Algorithm 1: "for each layer, choose the number of filters such that the resource
constraint is met" -- the largest width whose predicted latency is at most the target, so that each
proposal removes no more capacity than the target asks for. Widths are multiples of 8 (the rule of every
MobileNet table, and what mobile kernels run fastest); a width that would change the network's topology
(a stride-1 block whose input and output widths become equal gains a shortcut; an expansion equal to its
input width loses its 1x1 conv in the table dialect) is skipped. The two structural proposals of a block are
its 5x5 depthwise kernel made 3x3 and its squeeze-excite removed, each followed, when it alone does not
meet the target, by the largest width of that block's own channels that does.

A stage proposal ("for each block (or stage)", as the issue of this tool puts it) narrows every group that
lies within one stage by one common factor, the largest (in steps of 0.05) that meets the target. Where
latency is mostly per-layer overhead (small inputs, batch 1), a single group rarely meets an iteration's
target short of 8 channels, and a stage-wide cut of a few tenths removes far less capacity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..models.mobilenet import ArchSpec
from .groups import ChannelGroup, channel_groups, drop_se, resize_group, shrink_kernel

__all__ = ["MIN_WIDTH", "Proposal", "is_valid", "largest_width", "make_proposals", "smallest_arch", "stage_proposal"]

#: The narrowest a group may get, and the step between widths.
MIN_WIDTH = 8

Predict = Callable[[ArchSpec], float]


@dataclass(frozen=True)
class Proposal:
    """One simplified network: what changed (for the log and ``adapt.json``), its architecture and prediction."""

    name: str
    change: str
    arch: ArchSpec
    predicted_ms: float


def is_valid(old: ArchSpec, new: ArchSpec) -> bool:
    """Whether ``new`` keeps ``old``'s topology: the same shortcuts, and every expansion still widens."""
    for a, b in zip(old.blocks, new.blocks, strict=True):
        if a.has_skip != b.has_skip:
            return False
        if b.type == "ir" and (b.mid_chs or b.in_chs) == b.in_chs:
            return False
    return True


def _candidates(arch: ArchSpec, group: ChannelGroup) -> list[tuple[int, ArchSpec]]:
    """Narrower valid widths of ``group``, ascending, with their architectures."""
    out = []
    for width in range(MIN_WIDTH, group.width, MIN_WIDTH):
        new = resize_group(arch, group, width)
        if is_valid(arch, new):
            out.append((width, new))
    return out


def largest_width(arch: ArchSpec, group: ChannelGroup, target_ms: float,
                  predict: Predict) -> tuple[int, ArchSpec, float] | None:
    """The largest narrower width of ``group`` predicted at or under ``target_ms`` (``None``: none is).

    Binary search over the valid widths: latency falls with width (the LUT's noise may bend that a little,
    and the search then returns a width that meets the target, perhaps not the very largest).
    """
    cands = _candidates(arch, group)
    if not cands:
        return None
    first = predict(cands[0][1])
    if first > target_ms:
        return None
    lo, hi, best = 1, len(cands) - 1, (cands[0][0], cands[0][1], first)
    while lo <= hi:
        mid = (lo + hi) // 2
        ms = predict(cands[mid][1])
        if ms <= target_ms:
            best, lo = (cands[mid][0], cands[mid][1], ms), mid + 1
        else:
            hi = mid - 1
    return best


def _own_group(arch: ArchSpec, block: int) -> ChannelGroup | None:
    """The group of the channels block ``block``'s depthwise conv runs on."""
    node = f"mid:{block}" if arch.blocks[block].type == "ir" else f"out:{block - 1}"
    return next((g for g in channel_groups(arch) if node in g.nodes), None)


def _structural(arch: ArchSpec, block: int, new: ArchSpec, what: str, target_ms: float,
                predict: Predict) -> Proposal | None:
    ms = predict(new)
    if ms <= target_ms:
        return Proposal(f"block {block} {what}", what, new, ms)
    group = _own_group(new, block)
    found = largest_width(new, group, target_ms, predict) if group is not None else None
    if found is None:
        return None
    width, shrunk, ms = found
    return Proposal(f"block {block} {what}", f"{what}, {group.name} {group.width} -> {width}", shrunk, ms)


def _stage_groups(arch: ArchSpec, stage: int) -> list[ChannelGroup]:
    """The groups whose channels all lie inside stage ``stage`` (their producers are its blocks)."""
    start = sum(len(s) for s in arch.stages[:stage])
    inside = set(range(start, start + len(arch.stages[stage])))
    out = []
    for g in channel_groups(arch):
        owners = {int(n.split(":")[1]) for n in g.nodes if n != "head"}
        if owners and owners <= inside:
            out.append(g)
    return out


def _round_width(width: int, factor: float) -> int:
    return max(MIN_WIDTH, round(width * factor / MIN_WIDTH) * MIN_WIDTH)


def stage_proposal(arch: ArchSpec, stage: int, target_ms: float, predict: Predict) -> Proposal | None:
    """Stage ``stage``'s groups narrowed by the largest common factor (0.95, 0.90, ...) that meets the target."""
    groups = _stage_groups(arch, stage)
    if not groups:
        return None
    cands: list[tuple[float, ArchSpec, str]] = []
    seen: set[tuple[int, ...]] = set()
    for step in range(1, 20):
        factor = round(1.0 - 0.05 * step, 2)
        widths = tuple(min(g.width, _round_width(g.width, factor)) for g in groups)
        if widths in seen or all(w == g.width for w, g in zip(widths, groups, strict=True)):
            continue
        seen.add(widths)
        new = arch
        for g, w in zip(groups, widths, strict=True):
            new = resize_group(new, g, w) if w != g.width else new
        if is_valid(arch, new):
            change = ", ".join(f"{g.name} {g.width} -> {w}" for g, w in zip(groups, widths, strict=True) if w != g.width)
            cands.append((factor, new, change))
    # factors descend: search for the first (largest) that meets the target, latency falling with the factor
    lo, hi, best = 0, len(cands) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        ms = predict(cands[mid][1])
        if ms <= target_ms:
            best, hi = (cands[mid], ms), mid - 1
        else:
            lo = mid + 1
    if best is None:
        return None
    (factor, new, change), ms = best
    return Proposal(f"stage {stage}", f"widths x{factor:g}: {change}", new, ms)


def make_proposals(arch: ArchSpec, target_ms: float, predict: Predict, *, kernels: bool = True,
                   se: bool = True, stages: bool = True) -> list[Proposal]:
    """Every proposal of one NetAdapt iteration that meets ``target_ms`` by prediction."""
    out: list[Proposal] = []
    if stages:
        for s in range(len(arch.stages)):
            p = stage_proposal(arch, s, target_ms, predict)
            # a stage of one group is that group's own proposal already
            out += [p] if p is not None and len(_stage_groups(arch, s)) > 1 else []
    for group in channel_groups(arch):
        found = largest_width(arch, group, target_ms, predict)
        if found is not None:
            width, new, ms = found
            out.append(Proposal(group.name, f"{group.width} -> {width}", new, ms))
    for i, spec in enumerate(arch.blocks):
        if spec.type not in ("ds", "ir"):
            continue
        if kernels and spec.kernel > 3:
            p = _structural(arch, i, shrink_kernel(arch, i), f"kernel {spec.kernel} -> 3", target_ms, predict)
            out += [p] if p else []
        if se and spec.se_chs is not None:
            p = _structural(arch, i, drop_se(arch, i), "no squeeze-excite", target_ms, predict)
            out += [p] if p else []
    return out


def smallest_arch(arch: ArchSpec, *, kernels: bool = True, se: bool = True) -> ArchSpec:
    """The smallest network the search can reach from ``arch``: every group at its narrowest valid width,
    3x3 kernels and no squeeze-excite where those proposals are on (for the impossible-budget check)."""
    for i, spec in enumerate(arch.blocks):
        if kernels and spec.type in ("ds", "ir") and spec.kernel > 3:
            arch = shrink_kernel(arch, i)
        if se and spec.se_chs is not None:
            arch = drop_se(arch, i)
    changed = True
    while changed:  # shrinking one group can make a narrower width of another valid
        changed = False
        for group in channel_groups(arch):
            cands = _candidates(arch, group)
            if cands:
                arch, changed = cands[0][1], True
    return arch
