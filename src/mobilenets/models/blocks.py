"""The blocks an architecture table can name, each built from a resolved :class:`BlockSpec`.

A table row (paper units) is resolved by a family's resolver (width multiplier, conventions, variants)
into a ``BlockSpec`` with concrete channel counts; :data:`BLOCK_TYPES` turns the spec into a module.
Adding a block type (e.g. MobileNetV4's universal inverted bottleneck) means adding one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from .layers import ConvNormAct, DropPath, LayerFactory, SqueezeExcite, create_act, get_act_layer

__all__ = ["BLOCK_TYPES", "BlockSpec", "build_block"]


@dataclass(frozen=True)
class BlockSpec:
    """One block with concrete channel counts, as the builder needs it.

    ``nominal_stride`` is the stride the paper's table gives; ``stride`` is what is built after
    ``small_input`` / ``dilated`` changed it. Feature levels (C1..C5) follow the nominal strides so a
    backbone always exposes five levels whatever input-size adaptation is active.
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

    def __post_init__(self) -> None:
        if self.type not in BLOCK_TYPES:
            raise ValueError(f"unknown block type {self.type!r}; expected one of {sorted(BLOCK_TYPES)}")
        if self.stride not in (1, 2):
            raise ValueError(f"illegal stride value {self.stride}; expected 1 or 2")
        if self.in_chs <= 0 or self.out_chs <= 0 or (self.mid_chs is not None and self.mid_chs <= 0):
            raise ValueError(f"channel counts must be positive, got {self}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel size must be a positive odd number, got {self.kernel}")
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
                         norm_layer=norm_layer, act_layer=get_act_layer(spec.act), pad_type=pad_type)


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


BlockFactory = Callable[..., nn.Module]

BLOCK_TYPES: dict[str, BlockFactory] = {
    "conv": ConvBlock,
    "ds": DepthwiseSeparable,
    "ir": InvertedResidual,
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "maxpool": MaxPoolBlock,
}


def build_block(spec: BlockSpec, norm_layer: LayerFactory, drop_path: float = 0.0, pad_type: str = "") -> nn.Module:
    """Instantiate the module a resolved table row describes."""
    return BLOCK_TYPES[spec.type](spec, norm_layer=norm_layer, drop_path=drop_path, pad_type=pad_type)
