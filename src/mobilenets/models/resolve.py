"""The one resolve loop, and each family's switches for it.

:func:`resolve` walks a table (:mod:`.tables`): the stem row, then every row of every stage, each row
resolving itself (:mod:`.rows`) against a :class:`~.rows.Context` that holds the width rules
(:mod:`.widths`), the multiplier, the current input width and the family's switches. A family resolver
below only checks its options, builds that context and names the ArchSpec's family-level fields.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Literal

from .._validate import check_choice
from . import widths
from .mobilenet import ArchSpec
from .neck import MSFASpec
from .rows import Bneck, Context, Conv
from .tables import (
    MOBILENET_V1,
    MOBILENET_V2,
    MOBILENET_V3_LARGE,
    MOBILENET_V3_SMALL,
    MOBILENET_V4,
    MOBILENET_V4_HEAD,
    MOBILENET_V5,
    RESNET,
    RESNET_CIFAR_STEM,
    Table,
)

__all__ = ["resolve", "resolve_mobilenet_v1", "resolve_mobilenet_v2", "resolve_mobilenet_v3", "resolve_mobilenet_v4",
           "resolve_mobilenet_v5", "resolve_resnet"]

V3Convention = Literal["torchvision", "timm", "keras"]
V4Variant = Literal["conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large"]
V5Variant = Literal["300m", "base"]


def resolve(table: Table, ctx: Context, *, stem: Conv | None = None, **arch: Any) -> ArchSpec:
    """Resolve ``table`` row by row into an :class:`ArchSpec` (``arch``: its family-level fields)."""
    stem_row = stem or table.stem
    stem_spec = stem_row.stem(ctx)
    ctx.in_chs, ctx.in_table = stem_spec.out_chs, stem_row.out
    stages = []
    for rows in table.stages:
        ctx.specs = []
        for row in rows:
            row.resolve(ctx)
        stages.append(tuple(ctx.specs))
    return ArchSpec(ctx.family, stem_spec, tuple(stages), small_input=ctx.small_input, **arch)


def _check_width(width_mult: float) -> None:
    if not isinstance(width_mult, int | float) or isinstance(width_mult, bool) or not 0 < width_mult < math.inf:
        raise ValueError(f"width_mult={width_mult!r} invalid; expected a finite number > 0")


def _one_act(name: str):
    return lambda nl: name


def resolve_mobilenet_v1(
    width_mult: float = 1.0, separable: bool = True, small_input: bool = False, act: str = "relu", *,
    table: Table | None = None,
) -> ArchSpec:
    """Resolve Table 1 of the V1 paper (or ``table``: rows in its dialect, e.g. from a table file).

    ``act`` is ReLU as in the paper; the published TF-slim/Keras and timm weights were trained with
    ReLU6, so loading them needs ``act="relu6"`` for the outputs to match.
    """
    _check_width(width_mult)
    check_choice("act", act, ("relu", "relu6"))
    ctx = Context("mobilenet_v1", widths.MOBILENET_V1, width_mult, _one_act(act), small_input, separable=separable)
    return resolve(table or MOBILENET_V1, ctx, default_dropout=0.0,
                   extra={"width_mult": width_mult, "separable": separable, "act": act})


def resolve_mobilenet_v2(width_mult: float = 1.0, small_input: bool = False, *, table: Table | None = None) -> ArchSpec:
    """Resolve Table 2 of the V2 paper (or ``table``: rows in its dialect, e.g. from a table file)."""
    _check_width(width_mult)
    ctx = Context("mobilenet_v2", widths.MOBILENET_V2, width_mult, _one_act("relu6"), small_input)
    return resolve(table or MOBILENET_V2, ctx, extra={"width_mult": width_mult})


def resolve_mobilenet_v3(
    variant: Literal["large", "small"],
    width_mult: float = 1.0,
    *,
    reduced_tail: bool = False,
    dilated: bool = False,
    minimalistic: bool = False,
    use_se: bool = True,
    use_hswish: bool = True,
    width_convention: V3Convention = "torchvision",
    small_input: bool = False,
    table: Table | None = None,
) -> ArchSpec:
    """Resolve Table 1/2 of the V3 paper with one of the reference implementations' width rules.

    ``width_convention`` (:data:`~.widths.V3_CONVENTIONS`) decides how widths follow the multiplier, since
    torchvision, timm and keras.applications differ (all publish weights). ``reduced_tail`` halves the
    last stage (torchvision), ``dilated`` swaps its strides for dilation 2 (output stride 16, for
    segmentation backbones), ``minimalistic`` uses 3x3 kernels, ReLU and no SE throughout, and
    ``use_se`` / ``use_hswish`` are the V3 CIFAR-10 study's ablations. ``table`` replaces the paper's
    (rows in its dialect, e.g. from a table file), resolved by the same rules; its last stride-2 Bneck
    opens the tail.
    """
    _check_width(width_mult)
    check_choice("variant", variant, ("large", "small"))
    check_choice("width_convention", width_convention, ("torchvision", "timm", "keras"))
    if table is None:
        table = MOBILENET_V3_LARGE if variant == "large" else MOBILENET_V3_SMALL
    rows = [r for stage in table.stages for r in stage if isinstance(r, Bneck)]
    if not any(r.s == 2 for r in rows):
        raise ValueError(f"mobilenet_v3_{variant} table has no stride-2 Bneck row; expected one to open the tail")
    rules = widths.V3_CONVENTIONS[width_convention]

    def act(nl: str | None) -> str:
        # minimalistic: ReLU everywhere; use_hswish=False: the V3 CIFAR-10 study's ablation, h-swish -> ReLU.
        return "hswish" if nl == "HS" and use_hswish and not minimalistic else "relu"

    divider = 2 if reduced_tail else 1
    ctx = Context(f"mobilenet_v3_{variant}", rules, width_mult, act, small_input, se=use_se and not minimalistic,
                  minimalistic=minimalistic, divider=divider, dilated=dilated, resolution=224 // table.stem.s,
                  tail_start=max(i for i, r in enumerate(rows) if r.s == 2))
    if table.head is None:
        raise ValueError(f"mobilenet_v3_{variant} table has head=None; expected the hidden head width (1280 / 1024)")
    return resolve(table, ctx, head_hidden=rules.head(table.head, width_mult, divider), head_act=act("HS"),
                   bn_eps=1e-3, bn_momentum=0.01, extra={"width_mult": width_mult, "width_convention": width_convention})


def resolve_mobilenet_v4(variant: V4Variant, width_mult: float = 1.0, small_input: bool = False) -> ArchSpec:
    """Resolve an MNv4 table with timm's width rules (``mobilenetv4_*``), whose checkpoints it must load.

    Output widths (and the 960 conv) scale with ``width_mult``; the stem scales only for α >= 1 and the
    1280 head never (timm's ``fix_stem`` / fixed ``num_features``); expansions are ratios of the rounded
    input width; attention heads and key width are fixed. The hybrids' residual branches carry LayerScale.
    """
    _check_width(width_mult)
    check_choice("variant", variant, tuple(MOBILENET_V4))
    table = MOBILENET_V4[variant]
    ctx = Context(f"mobilenet_v4_{variant}", widths.MOBILENET_V4, width_mult, _one_act(table.act), small_input,
                  layer_scale=table.layer_scale)
    return resolve(Table(table.stem, table.stages), ctx, head_hidden=MOBILENET_V4_HEAD, head_act=table.act,
                   head_norm=True, interpolation="bicubic", input_size=table.input_size, crop_pct=table.crop_pct,
                   extra={"width_mult": width_mult, "variant": variant})


def resolve_mobilenet_v5(
    variant: V5Variant, width_mult: float = 1.0, small_input: bool = False, *, encoder: bool = False,
    msfa_chs: int | None = None, msfa_grid: int | None = None, layer_scale: float | None = 1e-5,
    table: Table | None = None,
) -> ArchSpec:
    """Resolve an MNv5 table with timm's width rules (``mobilenetv5_*``), whose checkpoints it must load.

    Widths scale as MNv4's (the stem only for α >= 1; attention heads and key width fixed); RMSNorm2d
    (eps 1e-6) replaces BatchNorm, GELU (tanh) every activation, and every UIB / attention branch carries
    LayerScale 1e-5. The MSFA neck fuses C4 and C5 into ``msfa_chs`` channels (2048, never scaled) on a
    ``msfa_grid`` square: 16 (256 tokens at 768x768), 4 with ``small_input``, which removes the 4x of the
    stem and first downsampling. ``encoder`` is Gemma 3n's encoder (timm ``mobilenetv5_300m_enc``): no
    head, ``forward`` returns the grid, and TensorFlow "same" padding as its weights were trained with.
    ``layer_scale`` is that initial LayerScale (None: none). 1e-5 is what the published weights were
    trained with; from scratch on a small dataset it keeps every UIB / attention stage's output at ~1e-5 of
    its input for hundreds of steps (the stride-2 first block of a stage has no skip to carry the signal, and
    RMSNorm's eps 1e-6 exceeds the variance it would have to undo), so short runs set it to 1.0 or None.
    ``table`` replaces the variant's rows (e.g. from a table file), resolved by the same rules.
    """
    _check_width(width_mult)
    check_choice("variant", variant, tuple(MOBILENET_V5))
    if layer_scale is not None and (isinstance(layer_scale, bool) or not isinstance(layer_scale, int | float)
                                    or not layer_scale > 0):
        raise ValueError(f"layer_scale={layer_scale!r} invalid; expected a number > 0 (or None: no LayerScale)")
    for key, value in (("msfa_chs", msfa_chs), ("msfa_grid", msfa_grid)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key}={value!r} invalid; expected an integer >= 1 (or None for the variant's)")
    v5 = MOBILENET_V5[variant]
    name = f"mobilenet_v5_{variant}" + ("_enc" if encoder else "")
    ctx = Context(name, widths.MOBILENET_V5, width_mult, _one_act("gelu_tanh"), small_input,
                  layer_scale=None if layer_scale is None else float(layer_scale))
    neck = MSFASpec(out_chs=msfa_chs or v5.msfa_chs, grid=msfa_grid or (4 if small_input else 16))
    arch = resolve(table or Table(v5.stem, v5.stages), ctx, norm="rmsnorm", bn_eps=1e-6, neck=neck, encoder=encoder,
                   default_dropout=0.0, pad_type="same" if encoder else "", interpolation="bicubic",
                   input_size=v5.input_size, crop_pct=v5.crop_pct, mean=v5.mean, std=v5.std,
                   extra={"width_mult": width_mult, "variant": variant})
    return replace(arch, stem=arch.stem.with_(bias=True))


def resolve_resnet(name: str, small_input: bool = False) -> ArchSpec:
    """ResNet-18/50 with torchvision's layout (stride on the 3x3 conv of the bottleneck: "v1.5").

    ``small_input`` uses the usual CIFAR stem: a 3x3 stride-1 conv and no max pool.
    """
    ctx = Context(name, widths.RESNET, 1.0, _one_act("relu"), small_input)
    return resolve(RESNET[name], ctx, stem=RESNET_CIFAR_STEM if small_input else None, default_dropout=0.0)
