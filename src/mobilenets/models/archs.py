"""Architecture tables, one per paper table, and the resolvers that turn them into builder specs.

Rows are written in the paper's column order and cite the table they come from. A resolver applies the
width multiplier, the variant switches and the input-size adaptations, and nothing else: the structure
lives in the tables. The entry points at the bottom are what :func:`mobilenets.create_model` calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

from .._validate import check_choice
from .blocks import BlockSpec
from .layers import make_divisible
from .mobilenet import ArchSpec, MobileNet
from .registry import register_model

# --------------------------------------------------------------------------------------------------
# MobileNetV1 (Howard et al. 2017), Table 1. Columns: type / stride, filter shape (output channels).
# Each "Conv dw / s" + "Conv 1x1" pair is one depthwise-separable row ("ds").
# The paper prints the second-to-last dw as "s2"; the feature map stays 7x7, so it is s1 (a known typo).
# --------------------------------------------------------------------------------------------------
MOBILENET_V1_STEM = ("conv", 2, 32)  # Conv / s2, 3x3x3x32
MOBILENET_V1 = (
    # (type, stride, out)         input size
    [("ds", 1, 64)],  # 112x112x32
    [("ds", 2, 128), ("ds", 1, 128)],  # 112x112x64
    [("ds", 2, 256), ("ds", 1, 256)],  # 56x56x128
    [("ds", 2, 512)] + [("ds", 1, 512)] * 5,  # 28x28x256, then 5x at 14x14x512
    [("ds", 2, 1024), ("ds", 1, 1024)],  # 14x14x512
)

# --------------------------------------------------------------------------------------------------
# MobileNetV2 (Sandler et al. 2018), Table 2. Columns: t (expansion), c (output), n (repeats), s (stride).
# --------------------------------------------------------------------------------------------------
MOBILENET_V2_STEM = 32  # conv2d 3x3, s2, 224^2 x 3 -> 112^2 x 32
MOBILENET_V2 = (
    # t,  c,   n, s      input
    (1, 16, 1, 1),  # 112^2 x 32
    (6, 24, 2, 2),  # 112^2 x 16
    (6, 32, 3, 2),  # 56^2 x 24
    (6, 64, 4, 2),  # 28^2 x 32
    (6, 96, 3, 1),  # 14^2 x 64
    (6, 160, 3, 2),  # 14^2 x 96
    (6, 320, 1, 1),  # 7^2 x 160
)
MOBILENET_V2_HEAD = 1280  # conv2d 1x1 -> 7^2 x 1280, then avgpool 7x7 and conv2d 1x1 -> k

# --------------------------------------------------------------------------------------------------
# MobileNetV3 (Howard et al. 2019), Tables 1 (Large) and 2 (Small).
# Columns: input resolution, kernel, exp size, #out, SE, NL (RE = ReLU, HS = h-swish), s.
# Stages group rows as timm does; the input column is checked against the strides when resolving.
# --------------------------------------------------------------------------------------------------
V3Row = tuple[int, int, int, int, bool, str, int]
MOBILENET_V3_LARGE: tuple[tuple[V3Row, ...], ...] = (
    ((112, 3, 16, 16, False, "RE", 1),),
    ((112, 3, 64, 24, False, "RE", 2), (56, 3, 72, 24, False, "RE", 1)),
    ((56, 5, 72, 40, True, "RE", 2), (28, 5, 120, 40, True, "RE", 1), (28, 5, 120, 40, True, "RE", 1)),
    (
        (28, 3, 240, 80, False, "HS", 2),
        (14, 3, 200, 80, False, "HS", 1),
        (14, 3, 184, 80, False, "HS", 1),
        (14, 3, 184, 80, False, "HS", 1),
    ),
    ((14, 3, 480, 112, True, "HS", 1), (14, 3, 672, 112, True, "HS", 1)),
    ((14, 5, 672, 160, True, "HS", 2), (7, 5, 960, 160, True, "HS", 1), (7, 5, 960, 160, True, "HS", 1)),
)
MOBILENET_V3_SMALL: tuple[tuple[V3Row, ...], ...] = (
    ((112, 3, 16, 16, True, "RE", 2),),
    ((56, 3, 72, 24, False, "RE", 2), (28, 3, 88, 24, False, "RE", 1)),
    ((28, 5, 96, 40, True, "HS", 2), (14, 5, 240, 40, True, "HS", 1), (14, 5, 240, 40, True, "HS", 1)),
    ((14, 5, 120, 48, True, "HS", 1), (14, 5, 144, 48, True, "HS", 1)),
    ((14, 5, 288, 96, True, "HS", 2), (7, 5, 576, 96, True, "HS", 1), (7, 5, 576, 96, True, "HS", 1)),
)
# The stem (conv2d 3x3, 16, HS, s2) and the tail: conv2d 1x1 to 6x the last width (960 / 576, HS),
# pool, conv2d 1x1 NBN (1280 / 1024, HS), conv2d 1x1 NBN -> k. Table 2 marks SE on Small's 576 conv;
# the authors' released models and every reference implementation have none there, so neither do we.
MOBILENET_V3_STEM = 16
MOBILENET_V3_HEAD = {"large": 1280, "small": 1024}

# --------------------------------------------------------------------------------------------------
# MobileNetV4 (Qin et al. 2024), appendix tables of MNv4-Conv-S/M/L and MNv4-Hybrid-M/L, in the stage
# grouping of the reference code (TF model garden, timm). Row kinds:
#   Conv(k, out, s)                       plain conv-BN-act
#   FusedIB(k, e, out, s)                 kxk expand conv (ratio e) -> 1x1 project
#   UIB(a, k, e, out, s, n)               universal inverted bottleneck: a = depthwise kernel before the
#                                         expansion, k = depthwise kernel after it (0 = absent), ratio e;
#                                         ExtraDW: a, k > 0; IR: a = 0; ConvNeXt-like: k = 0; FFN: a = k = 0
#   MQA(heads, key_dim, kv_stride, out, n) Mobile MQA, keys/values downsampled by kv_stride (3x3 dw)
# The paper's "expanded dim" column is ratio x input width, rounded to a multiple of 8. input_size /
# crop_pct are the resolution timm's checkpoints were trained at and their evaluation crop. n repeats a row
# with stride 1 after the first. The stem is a 3x3/2 conv; the head pools, then 1x1 -> 1280 with BN + act.
# --------------------------------------------------------------------------------------------------
class Conv(NamedTuple):
    k: int
    out: int
    s: int


class FusedIB(NamedTuple):
    k: int
    e: float
    out: int
    s: int


class UIB(NamedTuple):
    a: int
    k: int
    e: float
    out: int
    s: int
    n: int = 1


class MQA(NamedTuple):
    heads: int
    key_dim: int
    kv_stride: int
    out: int
    n: int = 1


V4Row = Conv | FusedIB | UIB | MQA



class V4Table(NamedTuple):
    """One MNv4 variant: stem width, activation, timm's training size / eval crop, LayerScale, stages."""

    stem: int
    act: str
    input_size: int
    crop_pct: float
    stages: tuple[tuple[V4Row, ...], ...]
    layer_scale: float | None = None


_V4_HEAD = Conv(1, 960, 1)
MOBILENET_V4: dict[str, V4Table] = {
    # MNv4-Conv-S (paper Table 11 / timm mobilenetv4_conv_small)
    "conv_small": V4Table(32, "relu", 224, 0.875, stages=(
        (Conv(3, 32, 2), Conv(1, 32, 1)),
        (Conv(3, 96, 2), Conv(1, 64, 1)),
        (UIB(5, 5, 3, 96, 2), UIB(0, 3, 2, 96, 1, n=4), UIB(3, 0, 4, 96, 1)),
        (UIB(3, 3, 6, 128, 2), UIB(5, 5, 4, 128, 1), UIB(0, 5, 4, 128, 1), UIB(0, 5, 3, 128, 1),
         UIB(0, 3, 4, 128, 1, n=2)),
        (_V4_HEAD,),
    )),
    # MNv4-Conv-M
    "conv_medium": V4Table(32, "relu", 256, 0.95, stages=(
        (FusedIB(3, 4, 48, 2),),
        (UIB(3, 5, 4, 80, 2), UIB(3, 3, 2, 80, 1)),
        (UIB(3, 5, 6, 160, 2), UIB(3, 3, 4, 160, 1, n=2), UIB(3, 5, 4, 160, 1), UIB(3, 3, 4, 160, 1),
         UIB(3, 0, 4, 160, 1), UIB(0, 0, 2, 160, 1), UIB(3, 0, 4, 160, 1)),
        (UIB(5, 5, 6, 256, 2), UIB(5, 5, 4, 256, 1), UIB(3, 5, 4, 256, 1, n=2), UIB(0, 0, 4, 256, 1),
         UIB(3, 0, 4, 256, 1), UIB(3, 5, 2, 256, 1), UIB(5, 5, 4, 256, 1), UIB(0, 0, 4, 256, 1, n=2),
         UIB(5, 0, 2, 256, 1)),
        (_V4_HEAD,),
    )),
    # MNv4-Conv-L
    "conv_large": V4Table(24, "relu", 384, 0.95, stages=(
        (FusedIB(3, 4, 48, 2),),
        (UIB(3, 5, 4, 96, 2), UIB(3, 3, 4, 96, 1)),
        (UIB(3, 5, 4, 192, 2), UIB(3, 3, 4, 192, 1, n=3), UIB(3, 5, 4, 192, 1), UIB(5, 3, 4, 192, 1, n=5),
         UIB(3, 0, 4, 192, 1)),
        (UIB(5, 5, 4, 512, 2, n=4), UIB(5, 0, 4, 512, 1), UIB(5, 3, 4, 512, 1), UIB(5, 0, 4, 512, 1, n=2),
         UIB(5, 3, 4, 512, 1), UIB(5, 5, 4, 512, 1), UIB(5, 0, 4, 512, 1, n=3)),
        (_V4_HEAD,),
    )),
    # MNv4-Hybrid-M: Conv-M with Mobile MQA in the last two stages (keys/values at stride 2 in stage 3)
    "hybrid_medium": V4Table(32, "relu", 256, 0.95, layer_scale=1e-5, stages=(
        (FusedIB(3, 4, 48, 2),),
        (UIB(3, 5, 4, 80, 2), UIB(3, 3, 2, 80, 1)),
        (UIB(3, 5, 6, 160, 2), UIB(0, 0, 2, 160, 1), UIB(3, 3, 4, 160, 1), UIB(3, 5, 4, 160, 1),
         MQA(4, 64, 2, 160), UIB(3, 3, 4, 160, 1), MQA(4, 64, 2, 160), UIB(3, 0, 4, 160, 1),
         MQA(4, 64, 2, 160), UIB(3, 3, 4, 160, 1), MQA(4, 64, 2, 160), UIB(3, 0, 4, 160, 1)),
        (UIB(5, 5, 6, 256, 2), UIB(5, 5, 4, 256, 1), UIB(3, 5, 4, 256, 1, n=2), UIB(0, 0, 2, 256, 1),
         UIB(3, 5, 2, 256, 1), UIB(0, 0, 2, 256, 1), UIB(0, 0, 4, 256, 1), MQA(4, 64, 1, 256),
         UIB(3, 0, 4, 256, 1), MQA(4, 64, 1, 256), UIB(5, 5, 4, 256, 1), MQA(4, 64, 1, 256),
         UIB(5, 0, 4, 256, 1), MQA(4, 64, 1, 256), UIB(5, 0, 4, 256, 1)),
        (_V4_HEAD,),
    )),
    # MNv4-Hybrid-L (GELU throughout)
    "hybrid_large": V4Table(24, "gelu", 384, 0.95, layer_scale=1e-5, stages=(
        (FusedIB(3, 4, 48, 2),),
        (UIB(3, 5, 4, 96, 2), UIB(3, 3, 4, 96, 1)),
        (UIB(3, 5, 4, 192, 2), UIB(3, 3, 4, 192, 1, n=3), UIB(3, 5, 4, 192, 1), UIB(5, 3, 4, 192, 1, n=2),
         MQA(8, 48, 2, 192), UIB(5, 3, 4, 192, 1), MQA(8, 48, 2, 192), UIB(5, 3, 4, 192, 1),
         MQA(8, 48, 2, 192), UIB(5, 3, 4, 192, 1), MQA(8, 48, 2, 192), UIB(3, 0, 4, 192, 1)),
        (UIB(5, 5, 4, 512, 2, n=4), UIB(5, 0, 4, 512, 1), UIB(5, 3, 4, 512, 1), UIB(5, 0, 4, 512, 1, n=2),
         UIB(5, 3, 4, 512, 1), UIB(5, 5, 4, 512, 1), MQA(8, 64, 1, 512), UIB(5, 0, 4, 512, 1),
         MQA(8, 64, 1, 512), UIB(5, 0, 4, 512, 1), MQA(8, 64, 1, 512), UIB(5, 0, 4, 512, 1),
         MQA(8, 64, 1, 512), UIB(5, 0, 4, 512, 1)),
        (_V4_HEAD,),
    )),
}
MOBILENET_V4_HEAD = 1280

# --------------------------------------------------------------------------------------------------
# ResNet (He et al. 2016), Table 1: the baseline of the V3 CIFAR-10 study's comparison table.
# Columns: block, output channels, n (repeats), stride of the stage's first block.
# --------------------------------------------------------------------------------------------------
RESNET = {
    "resnet18": (("basic", 64, 2, 1), ("basic", 128, 2, 2), ("basic", 256, 2, 2), ("basic", 512, 2, 2)),
    "resnet50": (
        ("bottleneck", 256, 3, 1),
        ("bottleneck", 512, 4, 2),
        ("bottleneck", 1024, 6, 2),
        ("bottleneck", 2048, 3, 2),
    ),
}


# --------------------------------------------------------------------------------------------------
# Resolvers
# --------------------------------------------------------------------------------------------------
def _check_width(width_mult: float) -> None:
    if not isinstance(width_mult, int | float) or isinstance(width_mult, bool) or not 0 < width_mult < math.inf:
        raise ValueError(f"width_mult={width_mult!r} invalid; expected a finite number > 0")


class _FirstDownsample:
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


def resolve_mobilenet_v1(
    width_mult: float = 1.0, separable: bool = True, small_input: bool = False, act: str = "relu"
) -> ArchSpec:
    """Resolve Table 1 of the V1 paper.

    ``act`` is ReLU as in the paper; the published TF-slim/Keras and timm weights were trained with
    ReLU6, so loading them needs ``act="relu6"`` for the outputs to match.
    """
    _check_width(width_mult)
    check_choice("act", act, ("relu", "relu6"))

    def rnd(c: int) -> int:
        return make_divisible(c * width_mult)

    _, stem_stride, stem_out = MOBILENET_V1_STEM
    first = _FirstDownsample(small_input)
    stem = BlockSpec("conv", 3, rnd(stem_out), 3, 1 if small_input else stem_stride, act=act,
                     nominal_stride=stem_stride)
    in_chs, stages = stem.out_chs, []
    for rows in MOBILENET_V1:
        stage = []
        for _, s, out in rows:
            # separable=False: the "Conv MobileNet" of V1 Table 4, a full 3x3 conv per row.
            kind = "ds" if separable else "conv"
            stage.append(BlockSpec(kind, in_chs, rnd(out), 3, first(s), act=act, skip=False, pw_act=True,
                                   nominal_stride=s))
            in_chs = stage[-1].out_chs
        stages.append(tuple(stage))
    return ArchSpec("mobilenet_v1", stem, tuple(stages), default_dropout=0.0, small_input=small_input,
                    extra={"width_mult": width_mult, "separable": separable, "act": act})


def resolve_mobilenet_v2(width_mult: float = 1.0, small_input: bool = False) -> ArchSpec:
    _check_width(width_mult)

    def rnd(c: float) -> int:
        return make_divisible(c * width_mult)

    first = _FirstDownsample(small_input)
    stem = BlockSpec("conv", 3, rnd(MOBILENET_V2_STEM), 3, 1 if small_input else 2, act="relu6", nominal_stride=2)
    in_chs, stages = stem.out_chs, []
    for t, c, n, s in MOBILENET_V2:
        stage = []
        for i in range(n):
            stride = s if i == 0 else 1
            out = rnd(c)
            if t == 1:
                spec = BlockSpec("ds", in_chs, out, 3, first(stride), act="relu6", nominal_stride=stride)
            else:
                spec = BlockSpec("ir", in_chs, out, 3, first(stride), mid_chs=make_divisible(in_chs * t),
                                 act="relu6", nominal_stride=stride)
            stage.append(spec)
            in_chs = out
        stages.append(tuple(stage))
    # The last conv keeps 1280 channels for width < 1 (V2 paper, Sec. 6.1: "for multipliers less than one,
    # we apply width multiplier to all layers except the very last convolutional layer").
    head = make_divisible(MOBILENET_V2_HEAD * max(1.0, width_mult))
    stages.append((BlockSpec("conv", in_chs, head, 1, 1, act="relu6"),))
    return ArchSpec("mobilenet_v2", stem, tuple(stages), small_input=small_input, extra={"width_mult": width_mult})


def resolve_mobilenet_v3(
    variant: Literal["large", "small"],
    width_mult: float = 1.0,
    *,
    reduced_tail: bool = False,
    dilated: bool = False,
    minimalistic: bool = False,
    use_se: bool = True,
    use_hswish: bool = True,
    width_convention: Literal["torchvision", "timm", "keras"] = "torchvision",
    small_input: bool = False,
) -> ArchSpec:
    """Resolve Table 1/2 of the V3 paper.

    ``width_convention`` decides how widths follow the multiplier, since the two reference
    implementations differ (both publish weights):

    * ``"torchvision"``: every width is scaled, including the expansion sizes (``exp * α`` rounded),
      the 1x1 conv before pooling (6x the last block width) and the hidden head layer (1280·α).
    * ``"timm"``: expansions are ratios of the (rounded) input width, the stem stays 16 below α = 0.75,
      the pre-pool conv is ``960·α`` rounded and the hidden head layer stays 1280 / 1024.
    * ``"keras"`` (``keras.applications``): as timm, except that the stem is always 16, the pre-pool conv
      is 6x the *rounded* last width and the hidden head layer grows with α > 1. It equals timm at the
      published α = 0.75 / 1.0 and is needed to load Keras weights of other widths.
    """
    _check_width(width_mult)
    check_choice("variant", variant, ("large", "small"))
    check_choice("width_convention", width_convention, ("torchvision", "timm", "keras"))
    table = MOBILENET_V3_LARGE if variant == "large" else MOBILENET_V3_SMALL
    tv = width_convention == "torchvision"

    def rnd(c: float) -> int:
        return make_divisible(c * width_mult)

    def act(nl: str) -> str:
        # minimalistic: ReLU everywhere; use_hswish=False: the V3 CIFAR-10 study's ablation, h-swish -> ReLU.
        return "hswish" if nl == "HS" and use_hswish and not minimalistic else "relu"

    rows = [r for stage in table for r in stage]
    n_rows = len(rows)
    # Rows of the last stage (from the final stride-2 row on): reduced_tail halves them (torchvision),
    # dilated swaps their stride for dilation 2 (output stride 16, for segmentation backbones).
    last_stage_start = max(i for i, r in enumerate(rows) if r[6] == 2)
    divider = 2 if reduced_tail else 1

    first = _FirstDownsample(small_input)
    keras = width_convention == "keras"
    stem_out = rnd(MOBILENET_V3_STEM) if tv or (width_mult >= 0.75 and not keras) else MOBILENET_V3_STEM
    stem = BlockSpec("conv", 3, stem_out, 3, 1 if small_input else 2, act=act("HS"), nominal_stride=2)

    in_chs, in_paper, resolution, stages, i = stem_out, MOBILENET_V3_STEM, 112, [], 0
    for stage_rows in table:
        stage = []
        for res, k, exp, out, se, nl, s in stage_rows:
            if res != resolution:
                raise AssertionError(f"V3 {variant} table row {i}: input {res} but strides give {resolution}")
            resolution //= s
            if reduced_tail and i >= last_stage_start:
                out //= divider
                if i > last_stage_start:
                    exp //= divider
            dil = 2 if dilated and i >= last_stage_start else 1
            stride = 1 if dil > 1 else first(s)
            out_chs = rnd(out)
            mid = rnd(exp) if tv else make_divisible(in_chs * exp / in_paper)
            se_chs = make_divisible(mid / 4) if se and use_se and not minimalistic else None
            spec = BlockSpec(
                "ds" if exp == in_paper else "ir", in_chs, out_chs, 3 if minimalistic else k, stride,
                mid_chs=mid, se_chs=se_chs, act=act(nl), dilation=dil, nominal_stride=s,
            )
            stage.append(spec)
            in_chs, in_paper, i = out_chs, out, i + 1
        stages.append(tuple(stage))
    assert i == n_rows
    last_conv = 6 * in_chs if tv else make_divisible(6 * in_chs) if keras else rnd(6 * in_paper)
    stages.append((BlockSpec("conv", in_chs, last_conv, 1, 1, act=act("HS")),))
    head = MOBILENET_V3_HEAD[variant]
    head_hidden = rnd(head // divider) if tv else rnd(head) if keras and width_mult > 1 else head
    return ArchSpec(
        f"mobilenet_v3_{variant}", stem, tuple(stages), head_hidden=head_hidden, head_act=act("HS"),
        bn_eps=1e-3, bn_momentum=0.01, small_input=small_input,
        extra={"width_mult": width_mult, "width_convention": width_convention},
    )


V4Variant = Literal["conv_small", "conv_medium", "conv_large", "hybrid_medium", "hybrid_large"]


def resolve_mobilenet_v4(variant: V4Variant, width_mult: float = 1.0, small_input: bool = False) -> ArchSpec:
    """Resolve an MNv4 table with timm's width rules (``mobilenetv4_*``), whose checkpoints it must load.

    Output widths (and the 960 conv) scale with ``width_mult``; the stem scales only for α >= 1 and the
    1280 head never (timm's ``fix_stem`` / fixed ``num_features``); expansions are ratios of the rounded
    input width; attention heads and key width are fixed. The hybrids' residual branches carry LayerScale.
    """
    _check_width(width_mult)
    check_choice("variant", variant, tuple(MOBILENET_V4))
    table = MOBILENET_V4[variant]
    act, layer_scale = table.act, table.layer_scale

    def rnd(c: float) -> int:
        return make_divisible(c * width_mult)

    first = _FirstDownsample(small_input)
    stem_out = rnd(table.stem) if width_mult >= 1.0 else table.stem
    stem = BlockSpec("conv", 3, stem_out, 3, 1 if small_input else 2, act=act, nominal_stride=2)
    in_chs, stages = stem_out, []
    for rows in table.stages:
        stage: list[BlockSpec] = []
        for row in rows:
            for i in range(getattr(row, "n", 1)):
                s = getattr(row, "s", 1) if i == 0 else 1
                out = rnd(row.out)
                common = {"act": act, "nominal_stride": s}
                if isinstance(row, Conv):
                    spec = BlockSpec("conv", in_chs, out, row.k, first(s), **common)
                elif isinstance(row, FusedIB):
                    spec = BlockSpec("fused_ib", in_chs, out, row.k, first(s), mid_chs=make_divisible(in_chs * row.e),
                                     **common)
                elif isinstance(row, UIB):
                    spec = BlockSpec("uib", in_chs, out, row.k, first(s), mid_chs=make_divisible(in_chs * row.e),
                                     kernel_start=row.a, layer_scale=layer_scale, **common)
                else:
                    spec = BlockSpec("mqa", in_chs, out, 3, 1, heads=row.heads, key_dim=row.key_dim,
                                     kv_stride=row.kv_stride, layer_scale=layer_scale, **common)
                stage.append(spec)
                in_chs = out
        stages.append(tuple(stage))
    return ArchSpec(
        f"mobilenet_v4_{variant}", stem, tuple(stages), head_hidden=MOBILENET_V4_HEAD, head_act=act, head_norm=True,
        interpolation="bicubic", input_size=table.input_size, crop_pct=table.crop_pct, small_input=small_input,
        extra={"width_mult": width_mult, "variant": variant},
    )


def resolve_resnet(name: str, small_input: bool = False) -> ArchSpec:
    """ResNet-18/50 with torchvision's layout (stride on the 3x3 conv of the bottleneck: "v1.5").

    ``small_input`` uses the usual CIFAR stem: a 3x3 stride-1 conv and no max pool.
    """
    if small_input:
        stem = BlockSpec("conv", 3, 64, 3, 1, act="relu", nominal_stride=2)
    else:
        stem = BlockSpec("conv", 3, 64, 7, 2, act="relu")
    stages: list[tuple[BlockSpec, ...]] = []
    in_chs = 64
    for s_idx, (block, out, n, s) in enumerate(RESNET[name]):
        stage = [] if small_input or s_idx else [BlockSpec("maxpool", 64, 64, 3, 2)]
        for i in range(n):
            stride = s if i == 0 else 1
            # Without the max pool, the first block stands for its stride-2 step so levels stay C1..C5.
            nominal = 2 if small_input and s_idx == 0 and i == 0 else stride
            stage.append(BlockSpec(block, in_chs, out, 3, stride, act="relu", nominal_stride=nominal))
            in_chs = out
        stages.append(tuple(stage))
    return ArchSpec(name, stem, tuple(stages), default_dropout=0.0, small_input=small_input)


# --------------------------------------------------------------------------------------------------
# Entry points (registered names). Common builder keywords (num_classes, in_chans, dropout, ...) pass
# through **kwargs to MobileNet; create_model validates them.
# --------------------------------------------------------------------------------------------------
@register_model
def mobilenet_v1(
    *, width_mult: float = 1.0, separable: bool = True, act: Literal["relu", "relu6"] = "relu",
    small_input: bool = False, **kwargs,
) -> MobileNet:
    """MobileNetV1 (Howard et al. 2017); ``separable=False`` is the paper's "Conv MobileNet" (Table 4).

    ``act="relu6"`` matches the published Keras/TF-slim and timm weights (the paper says ReLU).
    """
    return MobileNet(resolve_mobilenet_v1(width_mult, separable, small_input, act), **kwargs)


@register_model
def mobilenet_v2(*, width_mult: float = 1.0, small_input: bool = False, **kwargs) -> MobileNet:
    """MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, ReLU6."""
    return MobileNet(resolve_mobilenet_v2(width_mult, small_input), **kwargs)


def _v3(variant: Literal["large", "small"], width_mult: float, reduced_tail: bool, dilated: bool,
        minimalistic: bool, use_se: bool, use_hswish: bool, width_convention: Literal["torchvision", "timm", "keras"],
        small_input: bool, **kwargs) -> MobileNet:
    arch = resolve_mobilenet_v3(
        variant, width_mult, reduced_tail=reduced_tail, dilated=dilated, minimalistic=minimalistic, use_se=use_se,
        use_hswish=use_hswish, width_convention=width_convention, small_input=small_input,
    )
    return MobileNet(arch, **kwargs)


@register_model
def mobilenet_v3_large(
    *, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False, minimalistic: bool = False,
    use_se: bool = True, use_hswish: bool = True, width_convention: Literal["torchvision", "timm", "keras"] = "torchvision",
    small_input: bool = False, **kwargs,
) -> MobileNet:
    """MobileNetV3-Large (Howard et al. 2019, Table 1)."""
    return _v3("large", width_mult, reduced_tail, dilated, minimalistic, use_se, use_hswish, width_convention,
               small_input, **kwargs)


@register_model
def mobilenet_v3_small(
    *, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False, minimalistic: bool = False,
    use_se: bool = True, use_hswish: bool = True, width_convention: Literal["torchvision", "timm", "keras"] = "torchvision",
    small_input: bool = False, **kwargs,
) -> MobileNet:
    """MobileNetV3-Small (Howard et al. 2019, Table 2)."""
    return _v3("small", width_mult, reduced_tail, dilated, minimalistic, use_se, use_hswish, width_convention,
               small_input, **kwargs)


def _v4_entry(variant: V4Variant, doc: str) -> Callable[..., MobileNet]:
    """One registered entry point per MNv4 variant (same keywords for all five)."""

    def entry(*, width_mult: float = 1.0, small_input: bool = False, **kwargs) -> MobileNet:
        return MobileNet(resolve_mobilenet_v4(variant, width_mult, small_input), **kwargs)

    entry.__name__ = entry.__qualname__ = f"mobilenet_v4_{variant}"
    entry.__doc__ = doc
    return register_model(entry)


mobilenet_v4_conv_small = _v4_entry("conv_small", "MobileNetV4-Conv-Small (Qin et al. 2024): 3.77M params, 0.19 GMACs at 224.")
mobilenet_v4_conv_medium = _v4_entry("conv_medium", "MobileNetV4-Conv-Medium: 9.72M params, 1.08 GMACs at 256.")
mobilenet_v4_conv_large = _v4_entry("conv_large", "MobileNetV4-Conv-Large: 32.6M params, 6.38 GMACs at 384.")
mobilenet_v4_hybrid_medium = _v4_entry(
    "hybrid_medium", "MobileNetV4-Hybrid-Medium: Conv-Medium with Mobile MQA; 11.1M params, 1.27 GMACs at 256.")
mobilenet_v4_hybrid_large = _v4_entry(
    "hybrid_large", "MobileNetV4-Hybrid-Large: Mobile MQA, GELU; 37.8M params, 7.71 GMACs at 384.")


@register_model
def resnet18(*, small_input: bool = False, **kwargs) -> MobileNet:
    """ResNet-18, the light baseline."""
    return MobileNet(resolve_resnet("resnet18", small_input), **kwargs)


@register_model
def resnet50(*, small_input: bool = False, **kwargs) -> MobileNet:
    """ResNet-50, the baseline of the V3 CIFAR-10 study's comparison table."""
    return MobileNet(resolve_resnet("resnet50", small_input), **kwargs)
