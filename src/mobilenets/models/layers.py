"""Small building pieces shared by every architecture.

Layers are passed in (``norm_layer``, ``act_layer``) rather than hard-coded so that one block
definition serves MobileNetV1/V2 (ReLU/ReLU6, BN eps 1e-5), V3 (h-swish, BN eps 1e-3, momentum 0.01)
and the ablations of the V3 CIFAR-10 study (h-swish replaced by ReLU) without a second copy of the block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .depthwise import depthwise_conv2d_fast_backward, fast_path_applies

__all__ = [
    "ConvNormAct",
    "DepthwiseConv2d",
    "DepthwiseConv2dSame",
    "DropPath",
    "GELUTanh",
    "LayerScale2d",
    "RMSNorm2d",
    "SqueezeExcite",
    "conv2d_class",
    "create_act",
    "create_conv2d",
    "get_act_layer",
    "is_depthwise",
    "make_divisible",
    "norm_layer_for",
]

LayerFactory = Callable[..., nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor`` (the rule every reference implementation uses).

    Hardware runs channel counts that are multiples of 8 much faster; never rounding down by more than
    10% keeps a width multiplier from silently removing capacity (TF-slim ``_make_divisible``).
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return int(new_value)


class GELUTanh(nn.GELU):
    """GELU with the tanh approximation (MobileNetV5 / Gemma 3n): its checkpoints were trained with it."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")


_ACTIVATIONS: dict[str, LayerFactory] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "hsigmoid": nn.Hardsigmoid,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "gelu_tanh": GELUTanh,
    "identity": nn.Identity,
}


def get_act_layer(name: str | None) -> LayerFactory:
    """Map an activation name from an architecture table to a module factory."""
    if name is None:
        return nn.Identity
    key = name.lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]


def create_act(act_layer: LayerFactory | None) -> nn.Module:
    """Instantiate an activation, in place where the module supports it (saves a copy per layer)."""
    if act_layer is None or act_layer is nn.Identity:
        return nn.Identity()
    if act_layer in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU):
        return act_layer(inplace=True)
    return act_layer()


class RMSNorm2d(nn.Module):
    """Root-mean-square normalisation over the channels of an NCHW map, with a per-channel weight (no bias).

    MobileNetV5 normalises with it instead of BatchNorm: it needs no batch statistics, so it behaves the
    same in training and inference and at batch 1 (Gemma 3n runs the encoder on one image at a time).
    ``y = x / sqrt(mean_c(x^2) + eps) * weight``, computed in plain ops so that every exporter sees it.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return x * self.weight.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


NORMS = ("batchnorm", "rmsnorm")


def norm_layer_for(eps: float, momentum: float, norm: str = "batchnorm") -> LayerFactory:
    """The norm factory of a family: BatchNorm with its own eps/momentum (V3: 1e-3 / 0.01, V1/V2/ResNet:
    1e-5 / 0.1), or RMSNorm2d (V5: eps 1e-6, no running statistics, so ``momentum`` does not apply)."""
    if norm == "rmsnorm":
        return partial(RMSNorm2d, eps=eps)
    if norm != "batchnorm":
        raise ValueError(f"norm={norm!r} invalid; expected one of {', '.join(NORMS)}")
    return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)


def _same_pad_amount(size: int, kernel: int, stride: int, dilation: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: asymmetric (extra pixel bottom/right) at stride 2.

    Keras/TF checkpoints were trained with it; symmetric padding shifts every stride-2 feature map by
    half a pixel and changes the logits, so reproducing Keras outputs needs this exact rule.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        ph = _same_pad_amount(ih, kh, self.stride[0], self.dilation[0])
        pw = _same_pad_amount(iw, kw, self.stride[1], self.dilation[1])
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class _Fp32UnderCpuAutocast:
    """Mixin for depthwise convolutions: under CPU autocast they run in fp32.

    Why: on CPUs without AMX, oneDNN's bf16 depthwise *backward* is 3-20x slower than its fp32 one
    (V3-Small at 32x32, batch 128: 449 ms of convolution backward per step in bf16 against 142 ms in
    fp32, ``docs/benchmarks.md``), which made ``amp=bf16`` training slower than fp32. Depthwise
    convs do few MACs per byte, so bf16 buys them little anyway; the pointwise convs, where the
    MACs are, still run in bf16. Outside CPU autocast (fp32, CUDA, export, inference) this is a
    plain ``nn.Conv2d``: same parameters, same state-dict keys, same numerics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return self._conv(x.float())
        return self._conv(x)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)  # type: ignore[misc]


class DepthwiseConv2d(_Fp32UnderCpuAutocast, nn.Conv2d):
    """Depthwise ``nn.Conv2d`` (``groups == in_channels``) kept in fp32 under CPU autocast.

    ``fast_cpu_backward`` (off by default; ``models.depthwise.use_fast_depthwise_backward`` sets it)
    routes CPU training of 5x5+ kernels through a faster weight gradient, see ``models/depthwise.py``.
    """

    fast_cpu_backward: bool = False

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast_cpu_backward and fast_path_applies(self, x):
            return depthwise_conv2d_fast_backward(x, self.weight, self.bias, self.stride[0], self.padding[0])
        return super()._conv(x)


class DepthwiseConv2dSame(_Fp32UnderCpuAutocast, Conv2dSame):
    """Depthwise :class:`Conv2dSame` kept in fp32 under CPU autocast."""


def conv2d_class(pad_type: str, stride: int, depthwise: bool) -> type[nn.Conv2d]:
    """The conv class for a padding mode, stride and grouping (``set_pad_type`` rebuilds with it too).

    Stride-1 "same" padding is symmetric for odd kernels, so a plain conv is exact (and faster).
    """
    if pad_type not in ("", "same"):
        raise ValueError(f"unknown pad_type {pad_type!r}; expected '' (PyTorch) or 'same' (TensorFlow)")
    same = pad_type == "same" and stride != 1
    if depthwise:
        return DepthwiseConv2dSame if same else DepthwiseConv2d
    return Conv2dSame if same else nn.Conv2d


def is_depthwise(in_chs: int, groups: int) -> bool:
    """One filter group per input channel (channel multipliers > 1 included)."""
    return groups > 1 and groups == in_chs


def create_conv2d(
    in_chs: int,
    out_chs: int,
    kernel_size: int,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
    pad_type: str = "",
) -> nn.Conv2d:
    """A Conv2d with PyTorch-style symmetric padding (``pad_type=""``) or TF "same" (``"same"``).

    Depthwise convs get :class:`DepthwiseConv2d` (fp32 under CPU autocast, otherwise identical).
    """
    if stride not in (1, 2):
        raise ValueError(f"illegal stride value {stride}; expected 1 or 2")
    cls = conv2d_class(pad_type, stride, is_depthwise(in_chs, groups))
    padding = 0 if issubclass(cls, Conv2dSame) else (kernel_size - 1) // 2 * dilation
    return cls(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias)


class ConvNormAct(nn.Sequential):
    """Conv -> BatchNorm -> activation, the unit every MobileNet table row is made of.

    Names (``conv``, ``bn``, ``act``) are stable because checkpoint conversion maps onto them.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        act_layer: LayerFactory | None = nn.ReLU,
        pad_type: str = "",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = create_conv2d(in_chs, out_chs, kernel_size, stride, dilation, groups, bias, pad_type)
        self.bn = norm_layer(out_chs)
        self.act = create_act(act_layer)
        self.in_chs, self.out_chs = in_chs, out_chs


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite as in MobileNetV3: pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> gate.

    No BatchNorm inside (a common reproduction bug); the gate is hard-sigmoid in V3.
    """

    def __init__(
        self,
        channels: int,
        rd_channels: int,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Hardsigmoid,
    ) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = create_act(act_layer)
        self.conv_expand = nn.Conv2d(rd_channels, channels, 1, bias=True)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(self.act(self.conv_reduce(s)))
        return x * self.gate(s)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample (Huang et al. 2016), as timm's recipes use."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_path_rate {drop_prob} out of range; expected 0 <= p < 1")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of a residual branch (CaiT, Touvron et al. 2021), as MobileNetV4's hybrids use.

    Initialised small (1e-5) so each attention/UIB branch starts close to the identity, which is what
    keeps the deep hybrid models stable early in training. The parameter is named ``gamma`` like timm's.
    """

    def __init__(self, channels: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((channels,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.gamma.numel()}, init_value={self.init_value}"
