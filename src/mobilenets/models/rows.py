"""The row types of the architecture tables, each in its paper's column order, and how each resolves.

A row is a NamedTuple of paper units; :meth:`specs` turns it into builder specs (:class:`BlockSpec`)
with concrete widths, using the :class:`Context` the resolve loop (:mod:`.resolve`) carries from row to
row: the width rules and multiplier, the current input width, the family's switches. ``n`` repeats a
row with stride 1 after the first.

====================  =========================================================================
``Conv(k, out, s)``   a plain conv-BN-act (stems, MNv4's conv rows)
``DW(s, out, n)``     V1 Table 1: "Conv dw / s" followed by "Conv 1x1" (one depthwise-separable row)
``Bottleneck(t, c, n, s)``  V2 Table 2: expansion t, output c, repeats n, stride s
``Bneck(input, k, exp, out, se, nl, s)``  V3 Tables 1/2: input resolution, kernel, exp size, #out, SE, NL, s
``LastConv(out, nl)`` the 1x1 conv before pooling (V2's 1280, V3's 960 / 576), by the width rules
``FusedIB``, ``UIB``, ``MQA``  MNv4's fused / universal inverted bottleneck and Mobile MQA rows
``MaxPool(k, s)``, ``Res(block, out, n, s)``  ResNet Table 1: the stem's max pool, a stage of blocks
====================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from .blocks import BlockSpec
from .layers import make_divisible
from .widths import WidthRules

__all__ = [
    "DW",
    "MQA",
    "UIB",
    "Bneck",
    "Bottleneck",
    "Context",
    "Conv",
    "FirstDownsample",
    "FusedIB",
    "LastConv",
    "MaxPool",
    "Res",
    "Row",
]


class FirstDownsample:
    """Turns the first stride-2 row after the stem into stride 1 when ``small_input`` is on.

    For 32x32 inputs (CIFAR, digits) a 224-style network would shrink the image to 1x1; keeping the stem
    and the first downsampling at stride 1 leaves a 4x4 final map (output stride 8), the common recipe
    for MobileNets on CIFAR (published reproductions: MobileNetV2 94.43% with this stem).
    """

    def __init__(self, active: bool) -> None:
        self.pending = active

    def __call__(self, stride: int) -> int:
        if self.pending and stride == 2:
            self.pending = False
            return 1
        return stride


@dataclass
class Context:
    """What the resolve loop carries from row to row, and the switches of the family being resolved.

    ``act(nl)`` maps a row's NL column (V3: ``"RE"`` / ``"HS"``; ``None`` for rows without one) to an
    activation. ``tail_start`` is the row index where V3's last stage begins: ``divider`` (reduced_tail)
    halves its widths and ``dilated`` swaps its strides for dilation 2.
    """

    family: str
    rules: WidthRules
    alpha: float
    act: Callable[[str | None], str]
    small_input: bool = False
    separable: bool = True
    se: bool = True
    minimalistic: bool = False
    layer_scale: float | None = None
    tail_start: int | None = None
    divider: int = 1
    dilated: bool = False
    resolution: int = 0
    in_chs: int = 0
    in_table: int = 0
    index: int = 0
    lent_stride: int | None = None
    first: FirstDownsample = field(init=False)
    specs: list[BlockSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.first = FirstDownsample(self.small_input)

    def width(self, table_width: float) -> int:
        return self.rules.out(table_width, self.alpha)

    def expansion(self, exp: float, in_table: float = 1) -> int:
        return self.rules.expansion(exp, in_table, self.in_chs, self.alpha)

    def in_tail(self) -> bool:
        return self.tail_start is not None and self.index >= self.tail_start

    def emit(self, spec: BlockSpec, table_width: int) -> None:
        self.specs.append(spec)
        self.in_chs, self.in_table, self.index = spec.out_chs, table_width, self.index + 1


def _repeats(n: int, s: int) -> list[int]:
    return [s if i == 0 else 1 for i in range(n)]


class Conv(NamedTuple):
    k: int
    out: int
    s: int
    nl: str | None = None

    def stem(self, ctx: Context) -> BlockSpec:
        """This row as the stem (stride 1 for ``small_input``; the stem's width follows the width rules)."""
        return BlockSpec("conv", 3, ctx.rules.stem(self.out, ctx.alpha), self.k, 1 if ctx.small_input else self.s,
                         act=ctx.act(self.nl), nominal_stride=self.s)

    def resolve(self, ctx: Context) -> None:
        ctx.emit(BlockSpec("conv", ctx.in_chs, ctx.width(self.out), self.k, ctx.first(self.s), act=ctx.act(self.nl),
                           nominal_stride=self.s), self.out)


class DW(NamedTuple):
    s: int
    out: int
    n: int = 1

    def resolve(self, ctx: Context) -> None:
        # separable=False: the "Conv MobileNet" of V1 Table 4, a full 3x3 conv per row.
        kind = "ds" if ctx.separable else "conv"
        for s in _repeats(self.n, self.s):
            ctx.emit(BlockSpec(kind, ctx.in_chs, ctx.width(self.out), 3, ctx.first(s), act=ctx.act(None), skip=False,
                               pw_act=True, nominal_stride=s), self.out)


class Bottleneck(NamedTuple):
    t: int
    c: int
    n: int
    s: int

    def resolve(self, ctx: Context) -> None:
        for s in _repeats(self.n, self.s):
            out, act = ctx.width(self.c), ctx.act(None)
            if self.t == 1:
                spec = BlockSpec("ds", ctx.in_chs, out, 3, ctx.first(s), act=act, nominal_stride=s)
            else:
                spec = BlockSpec("ir", ctx.in_chs, out, 3, ctx.first(s), mid_chs=ctx.expansion(self.t), act=act,
                                 nominal_stride=s)
            ctx.emit(spec, self.c)


class Bneck(NamedTuple):
    input: int
    k: int
    exp: int
    out: int
    se: bool
    nl: str
    s: int

    def resolve(self, ctx: Context) -> None:
        if self.input != ctx.resolution:
            raise AssertionError(f"{ctx.family} table row {ctx.index}: input {self.input} but strides give "
                                 f"{ctx.resolution}")
        ctx.resolution //= self.s
        out, exp = self.out, self.exp
        if ctx.in_tail():
            out //= ctx.divider
            if ctx.index > (ctx.tail_start or 0):
                exp //= ctx.divider
        dilation = 2 if ctx.dilated and ctx.in_tail() else 1
        stride = 1 if dilation > 1 else ctx.first(self.s)
        mid = ctx.expansion(exp, ctx.in_table)
        se_chs = make_divisible(mid / 4) if self.se and ctx.se else None
        ctx.emit(BlockSpec("ds" if exp == ctx.in_table else "ir", ctx.in_chs, ctx.width(out),
                           3 if ctx.minimalistic else self.k, stride, mid_chs=mid, se_chs=se_chs, act=ctx.act(self.nl),
                           dilation=dilation, nominal_stride=self.s), out)


class LastConv(NamedTuple):
    out: int
    nl: str | None = None

    def resolve(self, ctx: Context) -> None:
        out = self.out // ctx.divider if ctx.in_tail() else self.out
        width = ctx.rules.last_conv(out, ctx.in_chs, ctx.in_table, ctx.alpha)
        ctx.emit(BlockSpec("conv", ctx.in_chs, width, 1, 1, act=ctx.act(self.nl)), out)


class FusedIB(NamedTuple):
    k: int
    e: float
    out: int
    s: int

    def resolve(self, ctx: Context) -> None:
        ctx.emit(BlockSpec("fused_ib", ctx.in_chs, ctx.width(self.out), self.k, ctx.first(self.s),
                           mid_chs=ctx.expansion(self.e), act=ctx.act(None), nominal_stride=self.s), self.out)


class UIB(NamedTuple):
    a: int
    k: int
    e: float
    out: int
    s: int
    n: int = 1

    def resolve(self, ctx: Context) -> None:
        for s in _repeats(self.n, self.s):
            ctx.emit(BlockSpec("uib", ctx.in_chs, ctx.width(self.out), self.k, ctx.first(s),
                               mid_chs=ctx.expansion(self.e), kernel_start=self.a, layer_scale=ctx.layer_scale,
                               act=ctx.act(None), nominal_stride=s), self.out)


class MQA(NamedTuple):
    heads: int
    key_dim: int
    kv_stride: int
    out: int
    n: int = 1

    def resolve(self, ctx: Context) -> None:
        for _ in range(self.n):
            ctx.emit(BlockSpec("mqa", ctx.in_chs, ctx.width(self.out), 3, 1, heads=self.heads, key_dim=self.key_dim,
                               kv_stride=self.kv_stride, layer_scale=ctx.layer_scale, act=ctx.act(None),
                               nominal_stride=1), self.out)


class MaxPool(NamedTuple):
    k: int
    s: int

    def resolve(self, ctx: Context) -> None:
        if ctx.small_input:  # the CIFAR stem has no max pool: the next block stands for its stride-2 step
            ctx.lent_stride = self.s
            return
        ctx.emit(BlockSpec("maxpool", ctx.in_chs, ctx.in_chs, self.k, self.s), ctx.in_table)


class Res(NamedTuple):
    block: str
    out: int
    n: int
    s: int

    def resolve(self, ctx: Context) -> None:
        for s in _repeats(self.n, self.s):
            # Without the max pool, the first block stands for its stride-2 step so levels stay C1..C5.
            nominal, ctx.lent_stride = ctx.lent_stride or s, None
            ctx.emit(BlockSpec(self.block, ctx.in_chs, ctx.width(self.out), 3, s, act=ctx.act(None),
                               nominal_stride=nominal), self.out)


Row = Conv | DW | Bottleneck | Bneck | LastConv | FusedIB | UIB | MQA | MaxPool | Res
