"""Geometric ops on a batch: one affine warp (``grid_sample``) for shear, translation and rotation with
per-sample magnitudes, horizontal flips, the pad-and-crop translation, random-resized-crop with
torchvision's box sampler (shared with the per-sample ImageFolder transform), and resize."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import _check_batch, _move, _rand_params, _randint, _randint_below, _uniform


def _pixel_to_theta(mats: Tensor, height: int, width: int) -> Tensor:
    """Convert per-sample 3×3 matrices mapping *output pixel* → *input pixel* coordinates (pixel centres
    at integer indices) into the normalised 2×3 ``theta`` that ``affine_grid(align_corners=False)``
    expects: ``theta = N · A · N⁻¹`` with ``u = (2p + 1)/size − 1``."""
    dev, dt = mats.device, mats.dtype
    n = torch.tensor(
        [[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0], [0.0, 0.0, 1.0]],
        device=dev,
        dtype=dt,
    )
    n_inv = torch.tensor(
        [[width / 2.0, 0.0, (width - 1) / 2.0], [0.0, height / 2.0, (height - 1) / 2.0], [0.0, 0.0, 1.0]],
        device=dev,
        dtype=dt,
    )
    return (n @ mats @ n_inv)[:, :2, :]


def _affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """``F.affine_grid(theta, ..., align_corners=False)`` written as two broadcast FMAs; about 2.5×
    faster than the library kernel on CPU for small images (it showed up in profiles)."""
    dt, dev = theta.dtype, theta.device
    xs = ((torch.arange(width, device=dev, dtype=dt) * 2 + 1) / width - 1).view(1, 1, width)
    ys = ((torch.arange(height, device=dev, dtype=dt) * 2 + 1) / height - 1).view(1, height, 1)
    t = theta.view(-1, 6, 1, 1).unbind(1)
    gx = t[0] * xs + t[1] * ys + t[2]
    gy = t[3] * xs + t[4] * ys + t[5]
    return torch.stack([gx, gy], dim=-1)


def affine(
    x: Tensor,
    matrix: Tensor,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """Warp each image by its own affine map.

    ``matrix`` is ``B×2×3`` or ``B×3×3`` and maps *output* pixel coordinates to *input* pixel coordinates
    (pixel centres at integer indices, x to the right, y down), i.e. it is the inverse transform, the
    form in which geometric augmentations are naturally written.  Pixels sampled from outside the image
    get ``fill`` (torchvision's default fill is 0).  One ``grid_sample`` call handles the whole batch.
    """
    _check_batch(x)
    b, _, h, w = x.shape
    if matrix.shape[0] != b or matrix.shape[-2:] not in ((2, 3), (3, 3)):
        raise ValueError(f"matrix must be {b}×2×3 or {b}×3×3, got {tuple(matrix.shape)}")
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(f"interpolation {interpolation!r} not supported; use 'nearest' or 'bilinear'")
    # the tiny B×3×3 algebra stays where the matrices are (the CPU on the hot path); only theta moves
    mats = matrix.to(torch.float32)
    if mats.shape[-2] == 2:
        bottom = torch.tensor([0.0, 0.0, 1.0], device=mats.device).expand(b, 1, 3)
        mats = torch.cat([mats, bottom], dim=1)
    theta = _move(_pixel_to_theta(mats, h, w), x.device)
    grid = _affine_grid(theta, h, w)
    src = x.float() if x.dtype != torch.float32 else x
    if fill != 0.0:
        # sample an extra all-ones channel to learn which output pixels came from outside the image
        src = torch.cat([src, torch.ones_like(src[:, :1])], dim=1)
    out = F.grid_sample(
        src, grid.to(src.dtype), mode=interpolation, padding_mode="zeros", align_corners=False
    )
    if fill != 0.0:
        mask = out[:, -1:]
        out = out[:, :-1] * mask + fill * (1.0 - mask)
    return out.to(x.dtype)


def _eye_batch(n: int, device: torch.device) -> Tensor:
    return torch.eye(3, device=device).repeat(n, 1, 1)


def _shear_x_mats(m: Tensor) -> Tensor:
    # torchvision's ShearX with center=[0, 0] (top-left image corner, i.e. pixel index -0.5):
    # x_in = x_out + m * (y_out + 0.5), matching PIL's (1, m, 0, 0, 1, 0) transform.
    mats = _eye_batch(m.numel(), m.device)
    mats[:, 0, 1] = m
    mats[:, 0, 2] = 0.5 * m
    return mats


def _shear_y_mats(m: Tensor) -> Tensor:
    mats = _eye_batch(m.numel(), m.device)
    mats[:, 1, 0] = m
    mats[:, 1, 2] = 0.5 * m
    return mats


def _translate_mats(tx: Tensor, ty: Tensor) -> Tensor:
    # torchvision truncates the translation to whole pixels (int(magnitude)); so do we.
    mats = _eye_batch(tx.numel(), tx.device)
    mats[:, 0, 2] = -torch.trunc(tx)
    mats[:, 1, 2] = -torch.trunc(ty)
    return mats


def _rotate_mats(degrees: Tensor, height: int, width: int) -> Tensor:
    # Positive angle = counter-clockwise on screen (torchvision/PIL convention), about the image centre.
    rad = torch.deg2rad(degrees.float())
    cos, sin = torch.cos(rad), torch.sin(rad)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    mats = _eye_batch(degrees.numel(), degrees.device)
    mats[:, 0, 0] = cos
    mats[:, 0, 1] = -sin
    mats[:, 1, 0] = sin
    mats[:, 1, 1] = cos
    mats[:, 0, 2] = cx - cos * cx + sin * cy
    mats[:, 1, 2] = cy - sin * cx - cos * cy
    return mats


def _mags(value: float | Tensor, x: Tensor) -> Tensor:
    """Per-sample geometric magnitudes as a length-B float tensor, kept off the accelerator: the
    matrices built from them are tiny and only the final ``theta`` is copied to the batch's device."""
    n = x.shape[0]
    t = value.float() if isinstance(value, Tensor) else torch.tensor(float(value))
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"per-sample magnitude must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t


def shear_x(x: Tensor, factor: float | Tensor, interpolation: str = "nearest", fill: float = 0.0) -> Tensor:
    """Horizontal shear by ``factor`` (= tan of the shear angle), per sample; torchvision's ``ShearX``."""
    _check_batch(x)
    return affine(x, _shear_x_mats(_mags(factor, x)), interpolation, fill)


def shear_y(x: Tensor, factor: float | Tensor, interpolation: str = "nearest", fill: float = 0.0) -> Tensor:
    """Vertical shear by ``factor`` (= tan of the shear angle), per sample; torchvision's ``ShearY``."""
    _check_batch(x)
    return affine(x, _shear_y_mats(_mags(factor, x)), interpolation, fill)


def translate_x(
    x: Tensor, pixels: float | Tensor, interpolation: str = "nearest", fill: float = 0.0
) -> Tensor:
    """Shift right by ``pixels`` (truncated to whole pixels, like torchvision), per sample."""
    _check_batch(x)
    t = _mags(pixels, x)
    return affine(x, _translate_mats(t, torch.zeros_like(t)), interpolation, fill)


def translate_y(
    x: Tensor, pixels: float | Tensor, interpolation: str = "nearest", fill: float = 0.0
) -> Tensor:
    """Shift down by ``pixels`` (truncated to whole pixels, like torchvision), per sample."""
    _check_batch(x)
    t = _mags(pixels, x)
    return affine(x, _translate_mats(torch.zeros_like(t), t), interpolation, fill)


def rotate(x: Tensor, degrees: float | Tensor, interpolation: str = "nearest", fill: float = 0.0) -> Tensor:
    """Rotate counter-clockwise by ``degrees`` about the image centre, per sample."""
    _check_batch(x)
    return affine(x, _rotate_mats(_mags(degrees, x), x.shape[-2], x.shape[-1]), interpolation, fill)


def hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right independently with probability ``p`` (p=1 equals ``x.flip(-1)``)."""
    if x.ndim != 4:
        raise ValueError(f"x must be a batch B×C×H×W, got shape {tuple(x.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"hflip probability must be in [0, 1], got {p}")
    if p == 0.0:
        return x
    if p == 1.0:
        return x.flip(-1)
    mask = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def pad_crop(
    x: Tensor,
    padding: int = 4,
    mode: str = "reflect",
    fill: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random translation crop (the CIFAR "pad 4 and crop 32" recipe), per sample.

    The batch is padded once and each image is cut out at its own random offset by indexing a strided
    view of all windows, so the cost is a couple of memory passes regardless of batch size.  ``padding=0`` is the
    identity.  ``mode`` is ``"reflect"`` or ``"constant"`` (filled with ``fill``).
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a batch B×C×H×W, got shape {tuple(x.shape)}")
    if mode not in ("reflect", "constant"):
        raise ValueError(f"pad_crop mode {mode!r} is not one of 'reflect', 'constant'")
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    b, _, h, w = x.shape
    if mode == "reflect" and (padding >= h or padding >= w):
        raise ValueError(f"reflect padding {padding} must be smaller than the image size {h}×{w}")
    src = x if x.is_floating_point() else x.float()
    if mode == "reflect":
        padded = F.pad(src, (padding, padding, padding, padding), mode="reflect")
    else:
        padded = F.pad(src, (padding, padding, padding, padding), mode="constant", value=fill)
    oy = _randint(2 * padding + 1, b, generator, x.device)
    ox = _randint(2 * padding + 1, b, generator, x.device)
    # all (2p+1)² windows as a zero-copy strided view, then one indexed copy picks each sample's window
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # B×C×(2p+1)×(2p+1)×H×W
    out = windows[torch.arange(b, device=x.device), :, oy, ox]
    return out.to(x.dtype)


class _Ops(NamedTuple):
    """The three functions the box rule needs, for Python floats or for tensors."""

    exp: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    round: Callable[[Any], Any]


_SCALAR_OPS = _Ops(math.exp, math.sqrt, round)
_TENSOR_OPS = _Ops(torch.exp, torch.sqrt, torch.round)


def rrc_box_size(
    u_area: Any, u_ratio: Any, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[Any, Any, Any]:
    """torchvision's RandomResizedCrop rule for one attempt: from two uniforms in ``[0, 1)`` a box of
    ``scale`` of the area with a log-uniform aspect in ``ratio``; returns ``(h, w, fits)``.

    ``u_area``/``u_ratio`` are Python floats (computed in double precision, as torchvision does) or
    tensors of any shape (computed in their dtype); the arithmetic is written once for both.
    """
    ops = _TENSOR_OPS if isinstance(u_area, Tensor) else _SCALAR_OPS
    target_area = float(height * width) * (u_area * (scale[1] - scale[0]) + scale[0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = ops.exp(u_ratio * (log_hi - log_lo) + log_lo)
    w = ops.round(ops.sqrt(target_area * aspect))
    h = ops.round(ops.sqrt(target_area / aspect))
    return h, w, (w > 0) & (w <= width) & (h > 0) & (h <= height)


def rrc_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """The box ``(h, w)`` when no attempt fits: the whole image with its aspect clamped into ``ratio``
    (centred by the callers)."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def rrc_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """One box ``(top, left, h, w)``, drawn attempt by attempt as torchvision does, with the torch RNG
    (a DataLoader seeds it per worker, unlike numpy's global state): the per-sample ImageFolder path."""
    for _ in range(attempts):
        u = torch.rand(3, generator=generator).tolist()
        h, w, fits = rrc_box_size(u[0], u[1], height, width, scale, ratio)
        if fits:
            i = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            j = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return i, j, h, w
    h, w = rrc_fallback(height, width, ratio)
    return (height - h) // 2, (width - w) // 2, max(h, 1), max(w, 1)


def rrc_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    attempts: int = 10,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``n`` boxes ``(top, left, h, w)`` as float tensors, all attempts drawn at once: 10 attempts per
    sample, first fitting one wins, else :func:`rrc_fallback` centred.  Runs on the parameter device
    (the CPU unless a device generator is given)."""
    u_area = _rand_params((n, attempts), generator)
    u_ratio = _rand_params((n, attempts), generator)
    h, w, valid = rrc_box_size(u_area, u_ratio, height, width, scale, ratio)
    first = valid.float().argmax(dim=1, keepdim=True)
    any_valid = valid.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    fh, fw = rrc_fallback(height, width, ratio)
    w = torch.where(any_valid, w, torch.full_like(w, float(fw)))
    h = torch.where(any_valid, h, torch.full_like(h, float(fh)))
    i = _randint_below(height - h + 1, generator).float()
    j = _randint_below(width - w + 1, generator).float()
    i = torch.where(any_valid, i, torch.floor((height - h) / 2))
    j = torch.where(any_valid, j, torch.floor((width - w) / 2))
    return i, j, h, w


def random_resized_crop(
    x: Tensor,
    size: int | tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
    interpolation: str = "bilinear",
) -> Tensor:
    """Inception-style random-resized-crop with a different box per sample, in one ``grid_sample``.

    Boxes follow torchvision's sampler exactly; resampling is plain bilinear (no antialiasing), which
    is exact for the usual upsampling case (small images, crops smaller than the output) and slightly
    aliased when a large crop is shrunk a lot — the price of doing the whole batch in one kernel.
    """
    _check_batch(x)
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if scale[0] > scale[1] or ratio[0] > ratio[1] or scale[0] <= 0 or ratio[0] <= 0:
        raise ValueError(f"invalid scale {scale} or ratio {ratio}: need 0 < low <= high")
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        raise ValueError(f"interpolation {interpolation!r} is not one of 'nearest', 'bilinear', 'bicubic'")
    b, _, h, w = x.shape
    i, j, bh, bw = rrc_boxes(b, h, w, scale, ratio, generator)
    theta = torch.zeros(b, 2, 3, device=bh.device)
    theta[:, 0, 0] = bw / w
    theta[:, 0, 2] = (2 * j + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * i + bh) / h - 1
    theta = _move(theta, x.device)
    grid = _affine_grid(theta, out_h, out_w)
    out = F.grid_sample(x.float(), grid, mode=interpolation, padding_mode="border", align_corners=False)
    if interpolation == "bicubic":
        out = out.clamp_(0.0, 1.0)
    return out.to(x.dtype)


def resize(x: Tensor, size: int | tuple[int, int], interpolation: str = "bilinear") -> Tensor:
    """Resize a float batch (antialiased when shrinking, as PIL/torchvision do)."""
    out_hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == out_hw:
        return x
    if interpolation == "nearest":
        return F.interpolate(x, size=out_hw, mode="nearest")
    out = F.interpolate(x, size=out_hw, mode=interpolation, align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out
