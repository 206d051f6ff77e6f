"""Architecture tables, one per paper table, in the row types of :mod:`.rows` (the paper's column order).

Rows cite the table they come from; the structure lives here and nothing else does: widths follow the
multiplier by :mod:`.widths`, and :mod:`.resolve` turns a table into a builder spec.
"""

from __future__ import annotations

from typing import NamedTuple

from .rows import DW, MQA, UIB, Bneck, Bottleneck, Conv, FusedIB, LastConv, MaxPool, Res, Row

__all__ = ["MOBILENET_V1", "MOBILENET_V2", "MOBILENET_V3_LARGE", "MOBILENET_V3_SMALL", "MOBILENET_V4", "MOBILENET_V5",
           "RESNET", "Table", "V4Table", "V5Table"]


class Table(NamedTuple):
    """A family's stem row, its stages of rows (the last may be the pre-pool conv) and its hidden head width."""

    stem: Conv
    stages: tuple[tuple[Row, ...], ...]
    head: int | None = None


# --------------------------------------------------------------------------------------------------
# MobileNetV1 (Howard et al. 2017), Table 1. Columns: type / stride, filter shape (output channels).
# Each "Conv dw / s" + "Conv 1x1" pair is one depthwise-separable row (DW).
# The paper prints the second-to-last dw as "s2"; the feature map stays 7x7, so it is s1 (a known typo).
# --------------------------------------------------------------------------------------------------
MOBILENET_V1 = Table(
    Conv(3, 32, 2),  # Conv / s2, 3x3x3x32
    (
        # DW(s, out, n)                 input size
        (DW(1, 64),),  # 112x112x32
        (DW(2, 128), DW(1, 128)),  # 112x112x64
        (DW(2, 256), DW(1, 256)),  # 56x56x128
        (DW(2, 512), DW(1, 512, n=5)),  # 28x28x256, then 5x at 14x14x512
        (DW(2, 1024), DW(1, 1024)),  # 14x14x512
    ),
)

# --------------------------------------------------------------------------------------------------
# MobileNetV2 (Sandler et al. 2018), Table 2. Columns: t (expansion), c (output), n (repeats), s (stride).
# --------------------------------------------------------------------------------------------------
MOBILENET_V2 = Table(
    Conv(3, 32, 2),  # conv2d 3x3, s2, 224^2 x 3 -> 112^2 x 32
    (
        # Bottleneck(t, c, n, s)   input
        (Bottleneck(1, 16, 1, 1),),  # 112^2 x 32
        (Bottleneck(6, 24, 2, 2),),  # 112^2 x 16
        (Bottleneck(6, 32, 3, 2),),  # 56^2 x 24
        (Bottleneck(6, 64, 4, 2),),  # 28^2 x 32
        (Bottleneck(6, 96, 3, 1),),  # 14^2 x 64
        (Bottleneck(6, 160, 3, 2),),  # 14^2 x 96
        (Bottleneck(6, 320, 1, 1),),  # 7^2 x 160
        (LastConv(1280),),  # conv2d 1x1 -> 7^2 x 1280, then avgpool 7x7 and conv2d 1x1 -> k
    ),
)

# --------------------------------------------------------------------------------------------------
# MobileNetV3 (Howard et al. 2019), Tables 1 (Large) and 2 (Small).
# Columns: input resolution, kernel, exp size, #out, SE, NL (RE = ReLU, HS = h-swish), s.
# Stages group rows as timm does; the input column is checked against the strides when resolving.
# The stem (conv2d 3x3, 16, HS, s2) and the tail: conv2d 1x1 to 6x the last width (960 / 576, HS),
# pool, conv2d 1x1 NBN (1280 / 1024, HS), conv2d 1x1 NBN -> k. Table 2 marks SE on Small's 576 conv;
# the authors' released models and every reference implementation have none there, so neither do we.
# --------------------------------------------------------------------------------------------------
MOBILENET_V3_LARGE = Table(
    Conv(3, 16, 2, "HS"),
    (
        (Bneck(112, 3, 16, 16, False, "RE", 1),),
        (Bneck(112, 3, 64, 24, False, "RE", 2), Bneck(56, 3, 72, 24, False, "RE", 1)),
        (Bneck(56, 5, 72, 40, True, "RE", 2), Bneck(28, 5, 120, 40, True, "RE", 1),
         Bneck(28, 5, 120, 40, True, "RE", 1)),
        (Bneck(28, 3, 240, 80, False, "HS", 2), Bneck(14, 3, 200, 80, False, "HS", 1),
         Bneck(14, 3, 184, 80, False, "HS", 1), Bneck(14, 3, 184, 80, False, "HS", 1)),
        (Bneck(14, 3, 480, 112, True, "HS", 1), Bneck(14, 3, 672, 112, True, "HS", 1)),
        (Bneck(14, 5, 672, 160, True, "HS", 2), Bneck(7, 5, 960, 160, True, "HS", 1),
         Bneck(7, 5, 960, 160, True, "HS", 1)),
        (LastConv(960, "HS"),),
    ),
    head=1280,
)
MOBILENET_V3_SMALL = Table(
    Conv(3, 16, 2, "HS"),
    (
        (Bneck(112, 3, 16, 16, True, "RE", 2),),
        (Bneck(56, 3, 72, 24, False, "RE", 2), Bneck(28, 3, 88, 24, False, "RE", 1)),
        (Bneck(28, 5, 96, 40, True, "HS", 2), Bneck(14, 5, 240, 40, True, "HS", 1),
         Bneck(14, 5, 240, 40, True, "HS", 1)),
        (Bneck(14, 5, 120, 48, True, "HS", 1), Bneck(14, 5, 144, 48, True, "HS", 1)),
        (Bneck(14, 5, 288, 96, True, "HS", 2), Bneck(7, 5, 576, 96, True, "HS", 1),
         Bneck(7, 5, 576, 96, True, "HS", 1)),
        (LastConv(576, "HS"),),
    ),
    head=1024,
)

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
class V4Table(NamedTuple):
    """One MNv4 variant: stem width, activation, timm's training size / eval crop, LayerScale, stages."""

    stem: Conv
    act: str
    input_size: int
    crop_pct: float
    stages: tuple[tuple[Row, ...], ...]
    layer_scale: float | None = None


_V4_HEAD = Conv(1, 960, 1)
MOBILENET_V4: dict[str, V4Table] = {
    # MNv4-Conv-S (paper Table 11 / timm mobilenetv4_conv_small)
    "conv_small": V4Table(Conv(3, 32, 2), "relu", 224, 0.875, stages=(
        (Conv(3, 32, 2), Conv(1, 32, 1)),
        (Conv(3, 96, 2), Conv(1, 64, 1)),
        (UIB(5, 5, 3, 96, 2), UIB(0, 3, 2, 96, 1, n=4), UIB(3, 0, 4, 96, 1)),
        (UIB(3, 3, 6, 128, 2), UIB(5, 5, 4, 128, 1), UIB(0, 5, 4, 128, 1), UIB(0, 5, 3, 128, 1),
         UIB(0, 3, 4, 128, 1, n=2)),
        (_V4_HEAD,),
    )),
    # MNv4-Conv-M
    "conv_medium": V4Table(Conv(3, 32, 2), "relu", 256, 0.95, stages=(
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
    "conv_large": V4Table(Conv(3, 24, 2), "relu", 384, 0.95, stages=(
        (FusedIB(3, 4, 48, 2),),
        (UIB(3, 5, 4, 96, 2), UIB(3, 3, 4, 96, 1)),
        (UIB(3, 5, 4, 192, 2), UIB(3, 3, 4, 192, 1, n=3), UIB(3, 5, 4, 192, 1), UIB(5, 3, 4, 192, 1, n=5),
         UIB(3, 0, 4, 192, 1)),
        (UIB(5, 5, 4, 512, 2, n=4), UIB(5, 0, 4, 512, 1), UIB(5, 3, 4, 512, 1), UIB(5, 0, 4, 512, 1, n=2),
         UIB(5, 3, 4, 512, 1), UIB(5, 5, 4, 512, 1), UIB(5, 0, 4, 512, 1, n=3)),
        (_V4_HEAD,),
    )),
    # MNv4-Hybrid-M: Conv-M with Mobile MQA in the last two stages (keys/values at stride 2 in stage 3)
    "hybrid_medium": V4Table(Conv(3, 32, 2), "relu", 256, 0.95, layer_scale=1e-5, stages=(
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
    "hybrid_large": V4Table(Conv(3, 24, 2), "gelu", 384, 0.95, layer_scale=1e-5, stages=(
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
MOBILENET_V4_HEAD = 1280  # pooled, then 1x1 -> 1280 with BN + act

# --------------------------------------------------------------------------------------------------
# MobileNetV5 (Gemma 3n's vision encoder; no paper: the rows are timm 1.0.31's mobilenetv5.py, which
# reproduces Google's released weights). MNv4's row kinds, with RMSNorm2d for BatchNorm, GELU (tanh)
# throughout, LayerScale 1e-5 on every UIB and attention branch, and a stem conv with a bias. Stage 2 of
# the 300m variant attends with keys/values at stride 2 (MQA kv_stride 2); stage 3 at full resolution.
# After the stages, the MSFA neck (.neck) fuses C4 and C5 into a 2048-wide 16x16 grid. timm writes "s2" on
# the base variant's attention rows; its builder drops the stride of every row but a stage's first, so
# they are stride 1 here. mean / std: the 300m weights take pixels in [0, 1] unnormalised.
# --------------------------------------------------------------------------------------------------
class V5Table(NamedTuple):
    """One MNv5 variant: stem, default size / eval crop, the input normalisation, stages, MSFA width."""

    stem: Conv
    input_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stages: tuple[tuple[Row, ...], ...]
    msfa_chs: int = 2048


def _alternate(a: Row, b: Row, n: int) -> tuple[Row, ...]:
    """``a, b`` repeated ``n`` times: V5's attention stages alternate MQA and a UIB feed-forward."""
    return (a, b) * n


_V5_STAGE0 = (FusedIB(3, 4, 128, 2), FusedIB(3, 4, 128, 1), FusedIB(3, 4, 128, 1))
_V5_STAGE1 = (UIB(3, 5, 6, 256, 2), UIB(5, 0, 4, 256, 1), UIB(3, 0, 4, 256, 1), UIB(5, 0, 4, 256, 1),
              UIB(3, 0, 4, 256, 1))
MOBILENET_V5: dict[str, V5Table] = {
    # mobilenetv5_300m(_enc): 294,126,912 params, 435.74 GMACs at 768
    "300m": V5Table(Conv(3, 64, 2), 768, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), stages=(
        _V5_STAGE0,
        _V5_STAGE1,
        (UIB(5, 5, 6, 640, 2), UIB(5, 0, 4, 640, 1, n=7), UIB(0, 0, 1, 640, 1),
         *_alternate(MQA(12, 64, 2, 640), UIB(0, 0, 2, 640, 1), 14)),
        (UIB(5, 5, 6, 1280, 2), *_alternate(MQA(16, 96, 1, 1280), UIB(0, 0, 2, 1280, 1), 19)),
    )),
    # mobilenetv5_base: 82,647,976 params with a 1000-class classifier, 20.05 GMACs at 256
    "base": V5Table(Conv(3, 64, 2), 256, 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), stages=(
        _V5_STAGE0,
        _V5_STAGE1,
        (UIB(5, 5, 6, 512, 2), UIB(5, 0, 4, 512, 1, n=2), UIB(0, 0, 1, 512, 1),
         *_alternate(MQA(8, 64, 1, 512), UIB(0, 0, 2, 512, 1), 6)),
        (UIB(5, 5, 6, 1024, 2), *_alternate(MQA(16, 64, 1, 1024), UIB(0, 0, 2, 1024, 1), 7)),
    )),
}

# --------------------------------------------------------------------------------------------------
# ResNet (He et al. 2016), Table 1: the baseline of the V3 CIFAR-10 study's comparison table.
# Columns: block, output channels, n (repeats), stride of the stage's first block. The 3x3/2 max pool
# opens conv2_x; the CIFAR stem (small_input) is a 3x3 stride-1 conv without it.
# --------------------------------------------------------------------------------------------------
RESNET = {
    "resnet18": Table(Conv(7, 64, 2), (
        (MaxPool(3, 2), Res("basic", 64, 2, 1)),
        (Res("basic", 128, 2, 2),),
        (Res("basic", 256, 2, 2),),
        (Res("basic", 512, 2, 2),),
    )),
    "resnet50": Table(Conv(7, 64, 2), (
        (MaxPool(3, 2), Res("bottleneck", 256, 3, 1)),
        (Res("bottleneck", 512, 4, 2),),
        (Res("bottleneck", 1024, 6, 2),),
        (Res("bottleneck", 2048, 3, 2),),
    )),
}
RESNET_CIFAR_STEM = Conv(3, 64, 2)  # built at stride 1 (small_input); stands for the stride-2 stem
