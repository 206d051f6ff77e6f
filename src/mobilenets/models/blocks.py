"""The blocks an architecture table can name, each built from a resolved :class:`BlockSpec`.

A table row (paper units) is resolved by a family's resolver (width multiplier, conventions, variants)
into a ``BlockSpec`` with concrete channel counts; :data:`BLOCK_TYPES` turns the spec into a module.
Each entry there (:class:`BlockType`) also says how reports draw the block and how other
implementations' checkpoints name its layers, so adding a block type means adding its module and one
entry: MobileNetV4's universal inverted bottleneck (``uib``), fused inverted bottleneck (``fused_ib``)
and Mobile MQA attention (``mqa``) are entries like the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .layers import (
    ConvNormAct,
    DropPath,
    LayerFactory,
    LayerScale2d,
    SqueezeExcite,
    create_act,
    create_conv2d,
    get_act_layer,
)

__all__ = ["BLOCK_TYPES", "BlockSpec", "BlockType", "block_type_of", "build_block"]


@dataclass(frozen=True)
class BlockSpec:
    """One block with concrete channel counts, as the builder needs it.

    ``nominal_stride`` is the stride the paper's table gives; ``stride`` is what is built after
    ``small_input`` / ``dilated`` changed it. Feature levels (C1..C5) follow the nominal strides so a
    backbone always exposes five levels whatever input-size adaptation is active.

    MobileNetV4 fields: ``kernel_start`` / ``kernel_end`` are the optional depthwise convs before the
    expansion and after the projection of a ``uib`` block (0 = absent; ``kernel`` is its middle depthwise,
    also 0-able), ``layer_scale`` the initial LayerScale of the residual branch (``None`` = no LayerScale),
    and ``heads`` / ``key_dim`` / ``kv_stride`` configure an ``mqa`` block, whose ``kernel`` is the
    depthwise kernel that downsamples keys and values when ``kv_stride`` is 2. ``bias`` gives a ``conv``
    row's convolution a bias (MobileNetV5's stem has one).
    """

    type: str
    in_chs: int
    out_chs: int
    kernel: int = 3
    stride: int = 1
    mid_chs: int | None = None
    se_chs: int | None = None
    act: str = "relu"
    dilation: int = 1
    skip: bool | None = None
    pw_act: bool = False
    nominal_stride: int | None = None
    kernel_start: int = 0
    kernel_end: int = 0
    layer_scale: float | None = None
    heads: int = 0
    key_dim: int = 0
    kv_stride: int = 1
    bias: bool = False

    def __post_init__(self) -> None:
        if self.type not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {self.type!r}; expected one of {sorted(BLOCK_TYPES)}")
        if self.stride not in (1, 2):
            raise ValueError(f"illegal stride value {self.stride}; expected 1 or 2")
        if self.in_chs <= 0 or self.out_chs <= 0 or (self.mid_chs is not None and self.mid_chs <= 0):
            raise ValueError(f"channel counts must be positive, got {self}")
        optional = self.type == "uib"  # a UIB's middle depthwise may be absent (ConvNeXt-like / FFN forms)
        for name in ("kernel", "kernel_start", "kernel_end"):
            k = getattr(self, name)
            if (k == 0 and (optional or name != "kernel")) or (k >= 1 and k % 2 == 1):
                continue
            raise ValueError(f"{name}={k} invalid; expected a positive odd number" + (" or 0" if optional else ""))
        if self.type == "uib" and self.stride > 1 and not (self.kernel or self.kernel_start or self.kernel_end):
            raise ValueError("a stride-2 uib block needs at least one depthwise conv (kernel, kernel_start or kernel_end)")
        if self.type == "mqa" and (self.heads < 1 or self.key_dim < 1 or self.kv_stride not in (1, 2)):
            raise ValueError(f"mqa block needs heads >= 1, key_dim >= 1 and kv_stride 1 or 2, got {self}")
        if self.nominal_stride is None:
            object.__setattr__(self, "nominal_stride", self.stride)

    @property
    def has_skip(self) -> bool:
        auto = self.stride == 1 and self.in_chs == self.out_chs
        return auto if self.skip is None else (self.skip and auto)

    def with_(self, **changes: object) -> BlockSpec:
        return replace(self, **changes)


class _Residual(nn.Module):
    """Mixin: identity shortcut with stochastic depth, used by the MobileNet blocks (no act after add)."""

    has_skip: bool
    drop_path: nn.Module

    def _add_skip(self, shortcut: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(x) + shortcut if self.has_skip else x


def _se(spec: BlockSpec, chs: int) -> nn.Module:
    if spec.se_chs is None:
        return nn.Identity()
    return SqueezeExcite(chs, spec.se_chs, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid)


class DepthwiseSeparable(_Residual):
    """Depthwise kxk conv -> [SE] -> pointwise 1x1 conv (MobileNetV1 Fig. 3; V2/V3 first block).

    V1 keeps ReLU after the pointwise conv and has no shortcut; V2/V3 make the pointwise conv linear
    (the "linear bottleneck") and add the shortcut when shapes allow.
    """

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        act = get_act_layer(spec.act)
        self.has_skip = spec.has_skip
        self.conv_dw = ConvNormAct(spec.in_chs, spec.in_chs, spec.kernel, spec.stride, spec.dilation,
                                   groups=spec.in_chs, norm_layer=norm_layer, act_layer=act, pad_type=pad_type)
        self.se = _se(spec, spec.in_chs)
        self.conv_pw = ConvNormAct(spec.in_chs, spec.out_chs, 1, norm_layer=norm_layer,
                                   act_layer=act if spec.pw_act else None)
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_skip(x, self.conv_pw(self.se(self.conv_dw(x))))


class InvertedResidual(_Residual):
    """1x1 expand -> kxk depthwise -> [SE] -> 1x1 linear project (MobileNetV2 Table 1, V3 Fig. 4).

    The expansion is skipped when it would not widen (expansion width == input width), as in
    torchvision's and timm's V3 (the first V3-Large block).
    """

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        act = get_act_layer(spec.act)
        mid = spec.mid_chs or spec.in_chs
        self.has_skip = spec.has_skip
        self.conv_pw = (ConvNormAct(spec.in_chs, mid, 1, norm_layer=norm_layer, act_layer=act)
                        if mid != spec.in_chs else nn.Identity())
        self.conv_dw = ConvNormAct(mid, mid, spec.kernel, spec.stride, spec.dilation, groups=mid,
                                   norm_layer=norm_layer, act_layer=act, pad_type=pad_type)
        self.se = _se(spec, mid)
        self.conv_pwl = ConvNormAct(mid, spec.out_chs, 1, norm_layer=norm_layer, act_layer=None)
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_skip(x, self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x)))))


class ConvBlock(ConvNormAct):
    """A plain kxk conv row of a table (stems, V3's 960 1x1 conv, "Conv MobileNet" of V1 Table 4)."""

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__(spec.in_chs, spec.out_chs, spec.kernel, spec.stride, spec.dilation,
                         norm_layer=norm_layer, act_layer=get_act_layer(spec.act), pad_type=pad_type, bias=spec.bias)


class _ResNetBlock(nn.Module):
    """Shared tail of the ResNet blocks: projection shortcut when shapes change, ReLU after the add."""

    def _init_shortcut(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float) -> None:
        self.downsample = (ConvNormAct(spec.in_chs, spec.out_chs, 1, spec.stride, norm_layer=norm_layer, act_layer=None)
                           if spec.stride != 1 or spec.in_chs != spec.out_chs else nn.Identity())
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = create_act(get_act_layer(spec.act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop_path(self.residual(x)) + self.downsample(x))


class BasicBlock(_ResNetBlock):
    """ResNet-18/34 block: 3x3 -> 3x3 (He et al. 2016, Table 1)."""

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        act = get_act_layer(spec.act)
        self.residual = nn.Sequential(
            ConvNormAct(spec.in_chs, spec.out_chs, 3, spec.stride, norm_layer=norm_layer, act_layer=act, pad_type=pad_type),
            ConvNormAct(spec.out_chs, spec.out_chs, 3, norm_layer=norm_layer, act_layer=None, pad_type=pad_type),
        )
        self._init_shortcut(spec, norm_layer, drop_path)


class Bottleneck(_ResNetBlock):
    """ResNet-50 block: 1x1 reduce -> 3x3 (stride here, "ResNet v1.5" as torchvision) -> 1x1 expand."""

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        act = get_act_layer(spec.act)
        mid = spec.mid_chs or spec.out_chs // 4
        self.residual = nn.Sequential(
            ConvNormAct(spec.in_chs, mid, 1, norm_layer=norm_layer, act_layer=act),
            ConvNormAct(mid, mid, 3, spec.stride, norm_layer=norm_layer, act_layer=act, pad_type=pad_type),
            ConvNormAct(mid, spec.out_chs, 1, norm_layer=norm_layer, act_layer=None),
        )
        self._init_shortcut(spec, norm_layer, drop_path)


class MaxPoolBlock(nn.MaxPool2d):
    """ResNet's 3x3/2 max pool after the stem, a row of its own so that C1 (stride 2) stays exposed."""

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__(spec.kernel, spec.stride, spec.kernel // 2)


def _layer_scale(spec: BlockSpec) -> nn.Module:
    return nn.Identity() if spec.layer_scale is None else LayerScale2d(spec.out_chs, spec.layer_scale)


class UniversalInvertedBottleneck(_Residual):
    """MobileNetV4's UIB (Qin et al. 2024, Fig. 4): [dw start] -> 1x1 expand -> [dw mid] -> 1x1 project -> [dw end].

    The two optional depthwise convs make one block cover four forms, chosen per row by the table:
    ExtraDW (start and mid), the classic inverted bottleneck (mid only), ConvNeXt-like (start only) and
    FFN (neither). The stride goes to the first depthwise present (mid, else start, else end), as in the
    reference implementations. The start/end depthwise convs are linear; expansion and mid are activated.
    """

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        act = get_act_layer(spec.act)
        mid = spec.mid_chs or spec.in_chs
        self.has_skip = spec.has_skip
        s_start = spec.stride if spec.kernel_start and not spec.kernel else 1
        s_end = spec.stride if not (spec.kernel_start or spec.kernel) else 1
        self.dw_start = (ConvNormAct(spec.in_chs, spec.in_chs, spec.kernel_start, s_start, spec.dilation,
                                     groups=spec.in_chs, norm_layer=norm_layer, act_layer=None, pad_type=pad_type)
                         if spec.kernel_start else nn.Identity())
        self.pw_exp = ConvNormAct(spec.in_chs, mid, 1, norm_layer=norm_layer, act_layer=act)
        self.dw_mid = (ConvNormAct(mid, mid, spec.kernel, spec.stride, spec.dilation, groups=mid,
                                   norm_layer=norm_layer, act_layer=act, pad_type=pad_type)
                       if spec.kernel else nn.Identity())
        self.se = _se(spec, mid)
        self.pw_proj = ConvNormAct(mid, spec.out_chs, 1, norm_layer=norm_layer, act_layer=None)
        self.dw_end = (ConvNormAct(spec.out_chs, spec.out_chs, spec.kernel_end, s_end, spec.dilation,
                                   groups=spec.out_chs, norm_layer=norm_layer, act_layer=None, pad_type=pad_type)
                       if spec.kernel_end else nn.Identity())
        self.layer_scale = _layer_scale(spec)
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw_proj(self.se(self.dw_mid(self.pw_exp(self.dw_start(x)))))
        return self._add_skip(x, self.layer_scale(self.dw_end(y)))


class FusedInvertedBottleneck(_Residual):
    """kxk expand conv (full, not depthwise) -> 1x1 linear project: the "fused IB" of MobileNetV4's stems.

    Also known as EdgeResidual / FusedMBConv (EfficientNet-EdgeTPU, EfficientNetV2): at high resolution
    and few channels one dense kxk conv runs faster on accelerators than a 1x1 + depthwise pair.
    """

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        act = get_act_layer(spec.act)
        mid = spec.mid_chs or spec.in_chs
        self.has_skip = spec.has_skip
        self.conv_exp = ConvNormAct(spec.in_chs, mid, spec.kernel, spec.stride, spec.dilation,
                                    norm_layer=norm_layer, act_layer=act, pad_type=pad_type)
        self.se = _se(spec, mid)
        self.conv_pwl = ConvNormAct(mid, spec.out_chs, 1, norm_layer=norm_layer, act_layer=None)
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_skip(x, self.conv_pwl(self.se(self.conv_exp(x))))


class MultiQueryAttention2d(nn.Module):
    """Mobile MQA (MobileNetV4, Sec. 3.3): many query heads, one shared key and one shared value head.

    Sharing K and V cuts the memory traffic that dominates attention on mobile accelerators; with
    ``kv_stride`` 2 the keys and values are further downsampled by a stride-2 depthwise conv + BN
    (spatial reduction), so attention costs L x L/4. Projections are 1x1 convs without bias, and the
    attention is written with two matmuls rather than a fused kernel so that every exporter (ONNX,
    ExecuTorch, OpenVINO) and the MAC counter see plain operations. Channel order of the heads follows
    the reference implementation, which is what lets timm's weights load unchanged.
    """

    def __init__(self, dim: int, dim_out: int, heads: int, key_dim: int, value_dim: int, kv_stride: int = 1,
                 dw_kernel: int = 3, norm_layer: LayerFactory = nn.BatchNorm2d, pad_type: str = "") -> None:
        super().__init__()
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.scale = key_dim ** -0.5
        self.query = nn.Sequential()
        self.query.add_module("proj", nn.Conv2d(dim, heads * key_dim, 1, bias=False))
        self.key = self._kv(dim, key_dim, kv_stride, dw_kernel, norm_layer, pad_type)
        self.value = self._kv(dim, value_dim, kv_stride, dw_kernel, norm_layer, pad_type)
        self.output = nn.Sequential()
        self.output.add_module("proj", nn.Conv2d(heads * value_dim, dim_out, 1, bias=False))

    @staticmethod
    def _kv(dim: int, out: int, stride: int, kernel: int, norm_layer: LayerFactory, pad_type: str) -> nn.Sequential:
        seq = nn.Sequential()
        if stride > 1:
            seq.add_module("down_conv", create_conv2d(dim, dim, kernel, stride, groups=dim, pad_type=pad_type))
            seq.add_module("norm", norm_layer(dim))
        seq.add_module("proj", nn.Conv2d(dim, out, 1, bias=False))
        return seq

    def init_weights(self) -> None:
        """Xavier-uniform projections, as the reference code: it keeps the hybrids stable early in training."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.query(x).reshape(b, self.heads, self.key_dim, h * w).transpose(-1, -2)  # B, H, L, dk
        k = self.key(x).flatten(2).unsqueeze(1)  # B, 1, dk, S
        v = self.value(x).flatten(2).transpose(-1, -2).unsqueeze(1)  # B, 1, S, dv
        attn = ((q * self.scale) @ k).softmax(dim=-1)  # B, H, L, S
        o = (attn @ v).transpose(1, 2).reshape(b, h, w, self.heads * self.value_dim)  # B, L, H*dv
        return self.output(o.permute(0, 3, 1, 2))


class MobileAttentionBlock(_Residual):
    """BatchNorm -> Mobile MQA -> LayerScale, with a residual: the attention row of MNv4-Hybrid tables."""

    def __init__(self, spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        self.has_skip = spec.has_skip
        self.norm = norm_layer(spec.in_chs)
        self.attn = MultiQueryAttention2d(spec.in_chs, spec.out_chs, spec.heads, spec.key_dim, spec.key_dim,
                                          spec.kv_stride, spec.kernel, norm_layer, pad_type)
        self.layer_scale = _layer_scale(spec)
        self.drop_path = DropPath(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._add_skip(x, self.layer_scale(self.attn(self.norm(x))))


BlockFactory = Callable[..., nn.Module]


def _expansion_text(spec: BlockSpec) -> str:
    return f" exp {spec.mid_chs / spec.in_chs:.2g}× ({spec.mid_chs})" if spec.mid_chs else ""


def _mid_text(spec: BlockSpec) -> str:
    return f" mid {spec.mid_chs}" if spec.mid_chs else ""


def _no_text(spec: BlockSpec) -> str:
    return ""


# MobileNetV4: a UIB's form is named by which depthwise convs it has (kernel_start, kernel).
_UIB_FORMS = {(True, True): "UIB ExtraDW", (False, True): "UIB IR", (True, False): "UIB ConvNeXt",
              (False, False): "UIB FFN"}


def _uib_text(spec: BlockSpec) -> str:
    kernels = "/".join(str(k) for k in (spec.kernel_start, spec.kernel) if k) or "1"
    return f"{_UIB_FORMS[(bool(spec.kernel_start), bool(spec.kernel))]} k{kernels}{_expansion_text(spec)}"


def _mqa_text(spec: BlockSpec) -> str:
    return f"mobile MQA {spec.heads}h×{spec.key_dim}" + (f" kv/{spec.kv_stride}" if spec.kv_stride > 1 else "")


@dataclass(frozen=True)
class BlockType:
    """One block type, described once: how to build it, how reports draw it, how checkpoints name it.

    ``label`` / ``detail`` / ``color``: the architecture figure's text (``"<label> k<kernel><detail>"``,
    or ``text`` for a block that names itself otherwise) and box colour. ``profile_kind``: the cost
    profiler's layer kind for the whole block when it is one unit (``None``: its layers are profiled one
    by one, as all of today's are). Weight-mapping hints for the checkpoint sources:
    ``units`` are the block's conv (``ConvNormAct``) and squeeze-excite units in forward order, as
    ``(attribute, kind)`` (``""`` is the block itself), which torchvision's numbered layers and Keras'
    layer order follow; ``timm_names`` maps timm's layer names inside the block to ours (``None``: timm
    has no such block; ``timm_same_names``: timm's names are ours); ``keras_names`` is Keras' layer-name
    suffix of each unit.
    """

    name: str
    build: BlockFactory
    label: str
    color: str
    detail: Callable[[BlockSpec], str] = _no_text
    text: Callable[[BlockSpec], str] | None = None
    profile_kind: str | None = None
    units: tuple[tuple[str, str], ...] = ()
    timm_names: Mapping[str, str] | None = None
    timm_same_names: bool = False
    keras_names: Mapping[str, str] = field(default_factory=dict)

    def head_text(self, spec: BlockSpec) -> str:
        """The first line of the block's box in the architecture figure."""
        return self.text(spec) if self.text else f"{self.label} k{spec.kernel}{self.detail(spec)}"


BLOCK_TYPES: dict[str, BlockType] = {b.name: b for b in (
    BlockType("conv", ConvBlock, "conv", "#f5e6d3", units=(("", "conv"),), timm_names={"conv": "conv", "bn1": "bn"}),
    BlockType("ds", DepthwiseSeparable, "depthwise separable", "#e3f1de",
              units=(("conv_dw", "conv"), ("se", "se"), ("conv_pw", "conv")),
              timm_names={"conv_dw": "conv_dw.conv", "bn1": "conv_dw.bn", "conv_pw": "conv_pw.conv", "bn2": "conv_pw.bn"},
              keras_names={"conv_dw": "depthwise", "conv_pw": "project"}),
    BlockType("ir", InvertedResidual, "inverted residual", "#dde8f5", _expansion_text,
              units=(("conv_pw", "conv"), ("conv_dw", "conv"), ("se", "se"), ("conv_pwl", "conv")),
              timm_names={"conv_pw": "conv_pw.conv", "bn1": "conv_pw.bn", "conv_dw": "conv_dw.conv", "bn2": "conv_dw.bn",
                          "conv_pwl": "conv_pwl.conv", "bn3": "conv_pwl.bn"},
              keras_names={"conv_pw": "expand", "conv_dw": "depthwise", "conv_pwl": "project"}),
    BlockType("basic", BasicBlock, "basic", "#ece0f2"),
    BlockType("bottleneck", Bottleneck, "bottleneck", "#ece0f2", _mid_text),
    BlockType("maxpool", MaxPoolBlock, "max pool", "#eeeeee"),
    BlockType("uib", UniversalInvertedBottleneck, "UIB", "#dde8f5", text=_uib_text, timm_same_names=True),
    BlockType("fused_ib", FusedInvertedBottleneck, "fused IB", "#f5e6d3", _expansion_text,
              timm_names={"conv_exp": "conv_exp.conv", "bn1": "conv_exp.bn", "conv_pwl": "conv_pwl.conv",
                          "bn2": "conv_pwl.bn"}),
    BlockType("mqa", MobileAttentionBlock, "mobile MQA", "#fbe3e3", text=_mqa_text, timm_same_names=True),
)}


def block_type_of(module: nn.Module) -> BlockType | None:
    """The description of the block type ``module`` was built as (``None`` for any other module)."""
    return next((b for b in BLOCK_TYPES.values() if isinstance(module, b.build)), None)


def build_block(spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> nn.Module:
    """Instantiate the module a resolved table row describes."""
    return BLOCK_TYPES[spec.type].build(spec, norm_layer=norm_layer, drop_path=drop_path, pad_type=pad_type)
