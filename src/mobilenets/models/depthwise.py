"""A faster CPU training backward for depthwise convolutions with 5x5 (and larger) kernels.

Why: MobileNetV3/V4 put 5x5 depthwise convs on small maps (4x4 to 14x14), and oneDNN computes their
*weight* gradient 4-9x slower than the forward pass of the same MACs (V3-Small, 32x32, batch 128:
8.3 ms for the 240-channel 8x8 layer against 1.2 ms forward; ~46 ms of every training step in all).
The weight gradient is 25 channel-wise dot products between shifted inputs and the output gradient.
Written as shifted multiply-reductions and compiled by inductor, it becomes one vectorised loop over
channels-last memory: 2-9x faster on those layers, about as fast on large maps (``docs/benchmarks.md``).
The input gradient is the forward conv with the kernel flipped (stride 1) or the transposed conv
(stride 2), both faster than oneDNN's backward-data for these shapes.

Opt-in (``fast_depthwise_grad=true`` in a training config, :func:`use_fast_depthwise_backward` in
code): inductor compiles one kernel per layer shape, 3-7 s each the first time (cached on disk after),
which a 1-minute run does not win back. It is a training-time path only: in eval mode, without grad,
under ``torch.compile``, or off CPU the layer is a plain convolution. If inductor cannot compile here
(no C++ compiler), it warns once and falls back to oneDNN.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MIN_KERNEL",
    "depthwise_conv2d_fast_backward",
    "depthwise_weight_grad",
    "fast_path_applies",
    "use_fast_depthwise_backward",
]

MIN_KERNEL = 5
"""Smallest kernel the fast path takes: for 3x3 oneDNN's own weight gradient is faster (measured)."""

_compiled: Any = None
_broken = False
_MAX_SHAPES = 64  # distinct layer shapes one process compiles for (a V3-Large has 9 at 5x5)


def depthwise_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """Weight gradient of a depthwise conv, ``(C, 1, k, k)``, as shifted channel-wise dot products.

    In NHWC, tap (i, j) is ``sum over n, h, w of x_pad[n, s*h + i, s*w + j, c] * grad_out[n, h, w, c]``.
    Reducing over (n, h) first and then w keeps inductor's loop vectorised over channels with short
    accumulations (measured faster than one flat reduction).
    """
    h_out, w_out = grad_out.shape[-2:]
    xn = F.pad(x.permute(0, 2, 3, 1), (0, 0, padding, padding, padding, padding))
    gn = grad_out.permute(0, 2, 3, 1)
    taps = []
    for i in range(kernel):
        rows = xn[:, i : i + stride * (h_out - 1) + 1 : stride]
        for j in range(kernel):
            taps.append((rows[:, :, j : j + stride * (w_out - 1) + 1 : stride, :] * gn).sum((0, 1)).sum(0))
    return torch.stack(taps, 1).view(-1, 1, kernel, kernel)


def _weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor | None:
    """The compiled weight gradient, or None when inductor is unusable here (the caller falls back)."""
    global _compiled, _broken
    if _broken:
        return None
    if _compiled is None:
        _compiled = torch.compile(depthwise_weight_grad, dynamic=False)
    try:
        # One static kernel per layer shape; the default recompile limit (8) would silently fall back
        # to eager for the 9th shape, so the limit is raised for these calls only.
        config = torch._dynamo.config  # the setting was renamed (cache_size_limit -> recompile_limit)
        key = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        with config.patch(**{key: _MAX_SHAPES}):
            return _compiled(x, grad_out, kernel, stride, padding)
    except Exception as exc:  # any compiler failure means: use oneDNN instead
        _broken = True
        warnings.warn(f"fast depthwise backward disabled, inductor failed to compile it ({type(exc).__name__}: "
                      f"{exc}); using oneDNN's depthwise backward", RuntimeWarning, stacklevel=2)
        return None


class _DepthwiseConvFastBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        s, p, channels, k = ctx.stride, ctx.padding, weight.shape[0], weight.shape[-1]
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        grad_out = grad_out.contiguous(memory_format=fmt)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if s == 1:
                grad_x = F.conv2d(grad_out, weight.flip(-1, -2), None, 1, p, 1, channels)
            else:
                extra = [x.shape[d] - ((grad_out.shape[d] - 1) * s - 2 * p + k) for d in (-2, -1)]
                grad_x = F.conv_transpose2d(grad_out, weight, None, s, p, extra, channels)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, grad_out, k, s, p)
            if grad_w is None:
                grad_w = torch.ops.aten.convolution_backward(grad_out, x, weight, None, [s, s], [p, p], [1, 1], False,
                                                             [0, 0], channels, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None


def fast_path_applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` may take the fast backward: CPU training of a plain odd-kernel depthwise conv."""
    k = conv.kernel_size
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and conv.training and torch.is_grad_enabled()
        and not torch.compiler.is_compiling() and not _broken
        and conv.groups == conv.in_channels == conv.out_channels and k[0] == k[1] >= MIN_KERNEL and k[0] % 2 == 1
        and conv.stride[0] == conv.stride[1] in (1, 2) and conv.dilation == (1, 1)
        and conv.padding == (k[0] // 2, k[1] // 2) and conv.padding_mode == "zeros"
    )


def depthwise_conv2d_fast_backward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                                   padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, groups=C)`` whose backward takes the fast CPU path."""
    return _DepthwiseConvFastBackward.apply(x, weight, bias, stride, padding)


def use_fast_depthwise_backward(model: nn.Module, enabled: bool = True) -> int:
    """Switch the fast backward of every :class:`~mobilenets.models.layers.DepthwiseConv2d` in ``model``.

    Returns how many of them have a kernel the fast path takes (``>= MIN_KERNEL``); 0 means the switch
    changes nothing for this model (V1/V2 use 3x3 depthwise convs only).
    """
    # DepthwiseConv2d (models/layers.py, which builds on this module) is the class with the switch.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and hasattr(type(m), "fast_cpu_backward")]
    for conv in convs:
        conv.fast_cpu_backward = enabled
    return sum(conv.kernel_size[0] >= MIN_KERNEL for conv in convs)
