"""Colour ops with torchvision's definitions on float images in ``[0, 1]``, with per-sample factors;
Posterize and Equalize work on the 256 uint8 levels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import _check_batch, _per_sample


def _blend(img: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (factor * img + (1.0 - factor) * other).clamp_(0.0, 1.0)


def _grayscale(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.2989 * r + 0.587 * g + 0.114 * b


def identity(x: Tensor, magnitude: float | Tensor = 0.0) -> Tensor:
    """No-op (kept so that every auto-augment op has a function)."""
    return x


def adjust_brightness(x: Tensor, factor: float | Tensor) -> Tensor:
    """Multiply by ``factor`` (per sample) and clip: blend with black."""
    _check_batch(x)
    return (x * _per_sample(factor, x.shape[0], x)).clamp_(0.0, 1.0)


def adjust_saturation(x: Tensor, factor: float | Tensor) -> Tensor:
    """Blend with the grayscale image (torchvision ``adjust_saturation``); identity for 1 channel."""
    _check_batch(x)
    if x.shape[1] == 1:
        return x
    return _blend(x, _grayscale(x), _per_sample(factor, x.shape[0], x))


def adjust_contrast(x: Tensor, factor: float | Tensor) -> Tensor:
    """Blend with the mean grey level of each image (torchvision ``adjust_contrast``)."""
    _check_batch(x)
    mean = _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, _per_sample(factor, x.shape[0], x))


def adjust_sharpness(x: Tensor, factor: float | Tensor) -> Tensor:
    """Blend with a 3×3 smoothed copy (PIL's SMOOTH kernel, border pixels untouched), like torchvision."""
    _check_batch(x)
    b, _, h, w = x.shape
    if h <= 2 or w <= 2:
        return x
    # PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]]/13 == (9·mean3×3 + 4·centre)/13; avg_pool is much
    # faster than a grouped conv on CPU.
    smooth = (9.0 * F.avg_pool2d(x, 3, stride=1) + 4.0 * x[..., 1:-1, 1:-1]) / 13.0
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(x, degenerate, _per_sample(factor, b, x))


def _to_levels(x: Tensor) -> Tensor:
    """Float [0,1] → the integer uint8 level 0..255 (exact for images that came from uint8)."""
    return (x * 255.0).round_().clamp_(0.0, 255.0)


def posterize(x: Tensor, bits: int | Tensor) -> Tensor:
    """Keep the ``bits`` most significant bits of each uint8 level, per sample."""
    _check_batch(x)
    bits_t = _per_sample(bits, x.shape[0], x).round().clamp(0, 8)
    step = torch.pow(2.0, 8.0 - bits_t)
    return (torch.floor(_to_levels(x) / step) * step).div_(255.0)


def solarize(x: Tensor, threshold: float | Tensor) -> Tensor:
    """Invert pixels at or above ``threshold`` (a fraction of 1; torchvision's 255-scale threshold/255)."""
    _check_batch(x)
    t = _per_sample(threshold, x.shape[0], x)
    return torch.where(x >= t, 1.0 - x, x)


def invert(x: Tensor, magnitude: float | Tensor = 0.0) -> Tensor:
    """``1 - x``."""
    _check_batch(x)
    return 1.0 - x


def autocontrast(x: Tensor, magnitude: float | Tensor = 0.0) -> Tensor:
    """Stretch each channel of each image to the full ``[0, 1]`` range (constant channels unchanged)."""
    _check_batch(x)
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    flat = span <= 0
    scale = torch.where(flat, torch.ones_like(span), 1.0 / torch.where(flat, torch.ones_like(span), span))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return ((x - lo) * scale).clamp_(0.0, 1.0)


def equalize(x: Tensor, magnitude: float | Tensor = 0.0) -> Tensor:
    """Histogram equalisation per channel per image on the 256 uint8 levels (PIL/torchvision algorithm),
    with all histograms computed in one ``bincount`` call."""
    _check_batch(x)
    b, c, h, w = x.shape
    levels = _to_levels(x).long().reshape(b * c, h * w)
    rows = b * c
    offsets = torch.arange(rows, device=x.device).view(rows, 1) * 256
    hist = torch.bincount((levels + offsets).reshape(-1), minlength=rows * 256).view(rows, 256)
    # count of the highest non-empty bin: PIL's step ignores it
    idx = torch.arange(256, device=x.device).expand(rows, 256)
    last = torch.where(hist > 0, idx, torch.zeros_like(idx)).amax(dim=1, keepdim=True)
    last_count = hist.gather(1, last)
    step = torch.div(hist.sum(dim=1, keepdim=True) - last_count, 255, rounding_mode="floor")
    safe_step = step.clamp_min(1)
    lut = torch.div(
        torch.cumsum(hist, dim=1) + torch.div(safe_step, 2, rounding_mode="floor"),
        safe_step,
        rounding_mode="floor",
    )
    lut = F.pad(lut, (1, 0))[:, :-1].clamp_(0, 255)
    out = lut.gather(1, levels).to(x.dtype).div_(255.0)
    # a channel with a single non-empty bin is left exactly as it was (PIL/torchvision behaviour)
    out = torch.where(step == 0, x.reshape(b * c, h * w), out)
    return out.reshape(b, c, h, w)
