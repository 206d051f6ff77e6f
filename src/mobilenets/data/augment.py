"""Batched, on-device data augmentation.

Why batched: for small in-memory datasets (digits, CIFAR) the classic "one PIL image at a time in a
DataLoader worker" pipeline is the bottleneck, not the network.  Every op here takes a whole batch
``B×C×H×W`` of float images in ``[0, 1]`` (on whatever device it lives), draws *per-sample* random
parameters as tensors, and applies them with batched kernels: ``affine_grid``/``grid_sample`` for
geometry, broadcasting and ``torch.where`` for colour, and a short Python loop over the ~14 op *types*
(never over samples) for the auto-augment family.

Semantics follow torchvision's definitions (``RandAugment``, ``TrivialAugmentWide``, ``AutoAugment``,
``RandomErasing``, ``RandomResizedCrop``) and timm's ``Mixup`` for mixing; magnitudes that torchvision
expresses on the 0..255 scale (the Solarize threshold) are expressed as fractions of 1 here because the
images are float in ``[0, 1]``.  Ops that quantise (Posterize, Equalize) work on the 256 uint8 levels,
so an image that came from uint8 is treated exactly as torchvision treats the uint8 tensor.

Randomness comes from an optional :class:`torch.Generator` (for reproducibility); random parameters are
drawn on the generator's device and moved to the batch's device, so a CPU generator can drive a CUDA
batch.  Without a generator the global torch RNG of the batch's device is used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_choice, check_prob

__all__ = [
    "AA_OPS",
    "AUTO_AUGMENT_CHOICES",
    "AUTO_AUGMENT_POLICIES",
    "CROP_CHOICES",
    "OP_NAMES",
    "RA_OPS",
    "BatchAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_sharpness",
    "affine",
    "apply_op",
    "auto_augment",
    "autocontrast",
    "equalize",
    "eval_preprocess",
    "hflip",
    "identity",
    "invert",
    "mixup_cutmix",
    "normalize",
    "pad_crop",
    "posterize",
    "rand_augment",
    "random_erasing",
    "random_resized_crop",
    "resize",
    "rotate",
    "shear_x",
    "shear_y",
    "smooth_one_hot",
    "solarize",
    "to_float",
    "translate_x",
    "translate_y",
    "trivial_augment_wide",
]

# --------------------------------------------------------------------------------------------------
# random-number helpers
# --------------------------------------------------------------------------------------------------


def _param_device(generator: torch.Generator | None) -> torch.device:
    """Where per-sample random parameters are drawn: on the generator's device (torch requires it), or
    on the CPU.  Drawing the few per-sample numbers on the CPU means Python-side decisions (grouping
    samples by op, box sizes) never need a device→host sync that would stall a CUDA stream."""
    return generator.device if generator is not None else torch.device("cpu")


def _move(t: Tensor, device: torch.device) -> Tensor:
    """Host→device copy without a stream sync (pageable memory is staged by the driver at once, so the
    source may be freed immediately; only device→host copies need blocking)."""
    return t if t.device == device else t.to(device, non_blocking=True)


def _rand_params(
    shape: Sequence[int] | int, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0
) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    u = torch.rand(shape, generator=generator, device=_param_device(generator))
    if low != 0.0 or high != 1.0:
        u = u * (high - low) + low
    return u


def _randint_params(high: int, shape: Sequence[int] | int, generator: torch.Generator | None) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.randint(0, high, shape, generator=generator, device=_param_device(generator))


def _uniform(
    shape: Sequence[int] | int,
    generator: torch.Generator | None,
    device: torch.device,
    low: float = 0.0,
    high: float = 1.0,
) -> Tensor:
    return _move(_rand_params(shape, generator, low, high), device)


def _randint(
    high: int, shape: Sequence[int] | int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    return _move(_randint_params(high, shape, generator), device)


def _randint_below(high: Tensor, generator: torch.Generator | None) -> Tensor:
    """Per-element integer in ``[0, high)`` for a tensor of (positive) upper bounds (on the
    parameter device)."""
    u = _rand_params(high.shape, generator).to(high.device)
    return torch.minimum((u * high).floor().long(), (high - 1).long().clamp_min(0))


def _seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=_param_device(generator)).item())


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy RNG seeded from the torch RNG, for the few scalar draws torch cannot do with a generator
    (Beta samples).  Seeding from torch keeps everything reproducible from one torch seed."""
    return np.random.default_rng(_seed_from(generator))


def _check_batch(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be a batch B×C×H×W, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor in [0, 1] (got dtype {x.dtype}); convert uint8 with to_float()"
        )


def _per_sample(value: float | Tensor, n: int, x: Tensor) -> Tensor:
    """Broadcast a scalar or a length-``n`` tensor of per-sample magnitudes to shape ``(n, 1, 1, 1)``."""
    if not isinstance(value, Tensor):  # a fill kernel, not a host→device copy
        return torch.full((n, 1, 1, 1), float(value), dtype=x.dtype, device=x.device)
    t = _move(value, x.device).to(x.dtype)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"per-sample magnitude must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t.view(n, 1, 1, 1)


def to_float(images: Tensor) -> Tensor:
    """uint8 ``0..255`` → float32 ``[0, 1]``; float input is returned unchanged (assumed in ``[0, 1]``)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}")
    return images


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------


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


def _rrc_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    attempts: int = 10,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision's RandomResizedCrop box sampler, vectorised: 10 attempts per sample, first valid wins,
    fallback to a centre crop with the aspect ratio clamped into ``ratio``.  Runs on the parameter
    device (the CPU unless a device generator is given)."""
    area = float(height * width)
    target_area = area * _rand_params((n, attempts), generator, scale[0], scale[1])
    log_r = _rand_params((n, attempts), generator, math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.float().argmax(dim=1, keepdim=True)
    any_valid = valid.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    # fallback: whole image, with the ratio clamped
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = float(width), float(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = float(height), float(round(height * max(ratio)))
    else:
        fw, fh = float(width), float(height)
    w = torch.where(any_valid, w, torch.full_like(w, fw))
    h = torch.where(any_valid, h, torch.full_like(h, fh))
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
    i, j, bh, bw = _rrc_boxes(b, h, w, scale, ratio, generator)
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


# --------------------------------------------------------------------------------------------------
# colour ops (torchvision definitions, float images in [0, 1])
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# the auto-augment family
# --------------------------------------------------------------------------------------------------

#: All op names; the order defines the integer op ids used internally.
OP_NAMES: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
_OP_ID = {name: i for i, name in enumerate(OP_NAMES)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
_SIGNED = {*_GEOMETRIC, "Brightness", "Color", "Contrast", "Sharpness"}
#: RandAugment and TrivialAugmentWide draw uniformly from these 14 ops (no Invert), as torchvision does.
RA_OPS: tuple[str, ...] = OP_NAMES[:14]
#: AutoAugment's op set (all but Identity).
AA_OPS: tuple[str, ...] = OP_NAMES[1:]


def apply_op(
    x: Tensor,
    op: str,
    magnitude: float | Tensor = 0.0,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """Apply one auto-augment op by name with torchvision's ``_apply_op`` magnitude semantics:
    shear factor, translation in pixels, rotation in degrees, ``1 + magnitude`` as the factor of the
    four enhance ops, bits for Posterize, a ``[0, 1]`` threshold for Solarize.  ``magnitude`` may be a
    per-sample tensor."""
    if op not in _OP_ID:
        raise ValueError(f"unknown augmentation op {op!r}; allowed: {', '.join(OP_NAMES)}")
    if op == "Identity":
        return x
    if op == "ShearX":
        return shear_x(x, magnitude, interpolation, fill)
    if op == "ShearY":
        return shear_y(x, magnitude, interpolation, fill)
    if op == "TranslateX":
        return translate_x(x, magnitude, interpolation, fill)
    if op == "TranslateY":
        return translate_y(x, magnitude, interpolation, fill)
    if op == "Rotate":
        return rotate(x, magnitude, interpolation, fill)
    if op == "Brightness":
        return adjust_brightness(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Color":
        return adjust_saturation(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Contrast":
        return adjust_contrast(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Sharpness":
        return adjust_sharpness(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Posterize":
        return posterize(x, magnitude)
    if op == "Solarize":
        return solarize(x, magnitude)
    if op == "AutoContrast":
        return autocontrast(x)
    if op == "Equalize":
        return equalize(x)
    return invert(x)


def _magnitude_table(
    kind: str, num_bins: int, height: int, width: int, device: torch.device | str = "cpu"
) -> Tensor:
    """Physical magnitudes per (op id, bin), following torchvision's ``_augmentation_space`` for
    RandAugment (``"ra"``), TrivialAugmentWide (``"ta"``) and AutoAugment (``"aa"``).  Cached per
    configuration and device, since it would otherwise be rebuilt for every batch."""
    return _magnitude_table_cached(kind, num_bins, height, width, str(device))


@functools.lru_cache(maxsize=64)
def _magnitude_table_cached(kind: str, num_bins: int, height: int, width: int, device: str) -> Tensor:
    table = torch.zeros(len(OP_NAMES), num_bins)
    denom = max(num_bins - 1, 1)
    bins = torch.arange(num_bins, dtype=torch.float32)

    def lin(hi: float, lo: float = 0.0) -> Tensor:
        return torch.linspace(lo, hi, num_bins) if num_bins > 1 else torch.tensor([lo])

    if kind == "ta":
        shear, tx, ty, rot, enh, post_div = 0.99, 32.0, 32.0, 135.0, 0.99, 6.0
    else:
        shear, tx, ty, rot, enh, post_div = 0.3, 150.0 / 331.0 * width, 150.0 / 331.0 * height, 30.0, 0.9, 4.0
    table[_OP_ID["ShearX"]] = lin(shear)
    table[_OP_ID["ShearY"]] = lin(shear)
    table[_OP_ID["TranslateX"]] = lin(tx)
    table[_OP_ID["TranslateY"]] = lin(ty)
    table[_OP_ID["Rotate"]] = lin(rot)
    for name in ("Brightness", "Color", "Contrast", "Sharpness"):
        table[_OP_ID[name]] = lin(enh)
    table[_OP_ID["Posterize"]] = 8.0 - torch.round(bins / (denom / post_div))
    table[_OP_ID["Solarize"]] = torch.linspace(1.0, 0.0, num_bins) if num_bins > 1 else torch.tensor([1.0])
    return table.to(device)


_SIGNED_MASK = torch.tensor([name in _SIGNED for name in OP_NAMES])


def _apply_ops_batched(
    x: Tensor, op_ids: Tensor, mags: Tensor, interpolation: str = "nearest", fill: float = 0.0
) -> Tensor:
    """Apply op ``op_ids[i]`` with magnitude ``mags[i]`` to sample ``i`` (``op_ids == -1``: skip).

    All geometric samples share one ``grid_sample``; each colour op runs once on the subset of samples
    that drew it, so the loop is over op types only.  ``op_ids``/``mags`` live on the parameter device
    (normally the CPU), so the grouping needs no device→host sync; only index tensors are copied over.
    """
    b, _, h, w = x.shape
    dev = x.device
    num = len(OP_NAMES)
    shifted = op_ids.long() + 1  # 0 = skip
    counts = torch.bincount(shifted, minlength=num + 1).tolist()
    if counts[0] + counts[1] == b:  # everything is skip / Identity
        return x
    order = torch.argsort(shifted, stable=True)
    groups = dict(zip(range(-1, num), order.split(counts)))
    out = x.clone()

    geo_ids = [_OP_ID[name] for name in _GEOMETRIC]
    geo_idx = [groups[i] for i in geo_ids if counts[i + 1] > 0]
    if geo_idx:
        idx = torch.cat(geo_idx)
        ids, m = op_ids[idx], mags[idx].float()
        zeros = torch.zeros_like(m)
        mats = torch.where(
            (ids == _OP_ID["ShearX"]).view(-1, 1, 1),
            _shear_x_mats(m),
            torch.where(
                (ids == _OP_ID["ShearY"]).view(-1, 1, 1),
                _shear_y_mats(m),
                torch.where(
                    (ids == _OP_ID["Rotate"]).view(-1, 1, 1),
                    _rotate_mats(m, h, w),
                    _translate_mats(
                        torch.where(ids == _OP_ID["TranslateX"], m, zeros),
                        torch.where(ids == _OP_ID["TranslateY"], m, zeros),
                    ),
                ),
            ),
        )
        idx_d = _move(idx, dev)
        out.index_copy_(0, idx_d, affine(x.index_select(0, idx_d), mats, interpolation, fill))

    mags_d = _move(mags.to(torch.float32), dev).to(x.dtype)
    for name in OP_NAMES:
        op = _OP_ID[name]
        if name == "Identity" or name in _GEOMETRIC or counts[op + 1] == 0:
            continue
        idx_d = _move(groups[op], dev)
        out.index_copy_(0, idx_d, apply_op(x.index_select(0, idx_d), name, mags_d.index_select(0, idx_d)))
    return out


def _signs(ops: Tensor, generator: torch.Generator | None) -> Tensor:
    """±1 per sample: negative with probability 1/2 for signed ops (torchvision's coin flip)."""
    flip = _randint_params(2, ops.shape[0], generator).bool() & _SIGNED_MASK.to(ops.device)[ops.clamp_min(0)]
    return torch.where(flip, -1.0, 1.0)


def rand_augment(
    x: Tensor,
    num_ops: int = 2,
    magnitude: int = 9,
    num_magnitude_bins: int = 31,
    generator: torch.Generator | None = None,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """RandAugment (Cubuk et al. 2019) as in torchvision: ``num_ops`` rounds, each sample draws one of 14
    ops uniformly, fixed magnitude bin, random sign for signed ops — independently per sample."""
    _check_batch(x)
    if not 0 <= magnitude < num_magnitude_bins:
        raise ValueError(f"magnitude {magnitude} must be in [0, num_magnitude_bins={num_magnitude_bins})")
    if num_ops < 0:
        raise ValueError(f"num_ops must be >= 0, got {num_ops}")
    b, _, h, w = x.shape
    table = _magnitude_table("ra", num_magnitude_bins, h, w, _param_device(generator))
    for _ in range(num_ops):
        ops = _randint_params(len(RA_OPS), b, generator)
        mags = table[ops, magnitude] * _signs(ops, generator)
        x = _apply_ops_batched(x, ops, mags, interpolation, fill)
    return x


def trivial_augment_wide(
    x: Tensor,
    num_magnitude_bins: int = 31,
    generator: torch.Generator | None = None,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """TrivialAugmentWide (Müller & Hutter 2021) as in torchvision: one op per sample, uniformly random
    op, uniformly random magnitude bin from the "wide" ranges, random sign."""
    _check_batch(x)
    b, _, h, w = x.shape
    table = _magnitude_table("ta", num_magnitude_bins, h, w, _param_device(generator))
    ops = _randint_params(len(RA_OPS), b, generator)
    bins = _randint_params(num_magnitude_bins, b, generator)
    mags = table[ops, bins] * _signs(ops, generator)
    return _apply_ops_batched(x, ops, mags, interpolation, fill)


#: The published AutoAugment sub-policies (Cubuk et al. 2018), as torchvision lists them:
#: ``(op, probability, magnitude bin out of 10 or None)`` pairs.
AUTO_AUGMENT_POLICIES: dict[str, tuple[tuple[tuple[str, float, int | None], ...], ...]] = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
}


@functools.lru_cache(maxsize=16)
def _policy_tensors(policy: str, device: str) -> tuple[Tensor, Tensor, Tensor]:
    """A policy table as (op ids, probabilities, magnitude bins), each 25×2, cached per device."""
    table = AUTO_AUGMENT_POLICIES[policy]
    ops = torch.tensor([[_OP_ID[op] for op, _, _ in sub] for sub in table], device=device)
    probs = torch.tensor([[p for _, p, _ in sub] for sub in table], device=device)
    bins = torch.tensor([[m if m is not None else 0 for _, _, m in sub] for sub in table], device=device)
    return ops, probs, bins


def auto_augment(
    x: Tensor,
    policy: str = "imagenet",
    generator: torch.Generator | None = None,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """AutoAugment with a published policy: each sample draws one of the 25 sub-policies and applies
    its two ops, each with its own probability, magnitude bin (of 10) and a random sign."""
    _check_batch(x)
    if policy not in AUTO_AUGMENT_POLICIES:
        raise ValueError(
            f"unknown AutoAugment policy {policy!r}; allowed: {', '.join(AUTO_AUGMENT_POLICIES)}"
        )
    b, _, h, w = x.shape
    pdev = _param_device(generator)
    ops_t, probs_t, bins_t = _policy_tensors(policy, str(pdev))
    table = _magnitude_table("aa", 10, h, w, pdev)
    choice = _randint_params(ops_t.shape[0], b, generator)
    for k in range(2):
        ops = ops_t[choice, k]
        apply = _rand_params(b, generator) < probs_t[choice, k]
        mags = table[ops, bins_t[choice, k]] * _signs(ops, generator)
        x = _apply_ops_batched(
            x, torch.where(apply, ops, torch.full_like(ops, -1)), mags, interpolation, fill
        )
    return x


# --------------------------------------------------------------------------------------------------
# erasing, mixing, targets, normalisation
# --------------------------------------------------------------------------------------------------


def random_erasing(
    x: Tensor,
    p: float = 0.25,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: str | float = "random",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random erasing (Zhong et al. 2017) per sample with torchvision's box sampler (10 attempts).

    ``value="random"`` fills with per-pixel standard-normal noise — the right statistics *after*
    normalisation, which is where :class:`BatchAugment` applies it (as timm and torchvision recipes do).
    A number fills with that constant (``0`` = the mean colour after normalisation).
    """
    _check_batch(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_erasing probability must be in [0, 1], got {p}")
    if isinstance(value, str) and value != "random":
        raise ValueError(f"random_erasing value {value!r} must be 'random' or a number")
    if p == 0.0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    attempts = 10
    area = float(h * w)
    # boxes on the parameter device (CPU), then four small vectors go to the batch's device
    erase_area = area * _rand_params((b, attempts), generator, scale[0], scale[1])
    aspect = torch.exp(_rand_params((b, attempts), generator, math.log(ratio[0]), math.log(ratio[1])))
    eh = torch.round(torch.sqrt(erase_area * aspect))
    ew = torch.round(torch.sqrt(erase_area / aspect))
    valid = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    first = valid.float().argmax(dim=1, keepdim=True)
    eh = eh.gather(1, first).squeeze(1)
    ew = ew.gather(1, first).squeeze(1)
    apply = valid.any(dim=1) & (_rand_params(b, generator) < p)
    top = _randint_below((h - eh + 1).clamp_min(1), generator).float()
    left = _randint_below((w - ew + 1).clamp_min(1), generator).float()
    # only the selected samples are touched: noise and masks cost ∝ p, not ∝ batch size
    sel = apply.nonzero().squeeze(1)
    k = int(sel.numel())
    if k == 0:
        return x
    box = _move(torch.stack([top, top + eh, left, left + ew], dim=1)[sel], dev)  # top, bottom, left, right
    ys = torch.arange(h, device=dev, dtype=box.dtype).view(1, h, 1)
    xs = torch.arange(w, device=dev, dtype=box.dtype).view(1, 1, w)
    edge = [box[:, i].view(k, 1, 1) for i in range(4)]
    mask = ((ys >= edge[0]) & (ys < edge[1]) & (xs >= edge[2]) & (xs < edge[3])).unsqueeze(1)
    shape = (k, *x.shape[1:])
    if value == "random":
        if generator is None or generator.device == dev:
            fill = torch.randn(shape, generator=generator, device=dev, dtype=x.dtype)
        else:  # a CPU generator driving a CUDA batch: seed a device generator from it (no big copy)
            noise_gen = torch.Generator(device=dev).manual_seed(_seed_from(generator))
            fill = torch.randn(shape, generator=noise_gen, device=dev, dtype=x.dtype)
    else:
        fill = torch.full((), float(value), device=dev, dtype=x.dtype)
    sel_d = _move(sel, dev)
    out = x.clone()
    out.index_copy_(0, sel_d, torch.where(mask, fill, x.index_select(0, sel_d)))
    return out


def smooth_one_hot(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """One-hot targets with label smoothing, timm's convention: off-value ``s/K``, on-value
    ``1 - s + s/K`` (so each row sums to 1)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    y = y.long()
    # range check only on the CPU: on an accelerator it would force a device→host sync every batch
    if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((y.shape[0], num_classes), off, device=y.device, dtype=torch.float32)
    return out.scatter_(1, y.view(-1, 1), on)


def mixup_cutmix(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
    generator: torch.Generator | None = None,
    correct_lam: bool = True,
) -> tuple[Tensor, Tensor]:
    """Mixup / CutMix with timm's batch-mode semantics.

    One λ per batch: with probability ``prob`` the batch is mixed; if both alphas are > 0, CutMix is
    chosen with probability ``switch_prob``; λ ~ Beta(α, α).  Each image is mixed with the image at the
    mirrored batch position (``x.flip(0)``).  CutMix pastes a box of area ≈ (1-λ) and, like timm,
    corrects λ to the box area actually pasted after clipping.  Targets are
    ``λ·smooth(y) + (1-λ)·smooth(y.flip(0))`` and always sum to 1.  The input is not modified.
    """
    _check_batch(x)
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"alphas must be >= 0, got mixup_alpha={mixup_alpha}, cutmix_alpha={cutmix_alpha}")
    targets = smooth_one_hot(y, num_classes, label_smoothing).to(x.device)
    lam, use_cutmix = 1.0, False
    rng = _numpy_rng(generator)
    if (mixup_alpha > 0 or cutmix_alpha > 0) and rng.random() < prob:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < switch_prob)
            alpha = cutmix_alpha if use_cutmix else mixup_alpha
        elif mixup_alpha > 0:
            alpha = mixup_alpha
        else:
            use_cutmix, alpha = True, cutmix_alpha
        lam = float(rng.beta(alpha, alpha))
    if lam == 1.0:
        return x, targets
    h, w = x.shape[-2:]
    if use_cutmix:
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        yl, yh = int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cy + cut_h // 2, 0, h))
        xl, xh = int(np.clip(cx - cut_w // 2, 0, w)), int(np.clip(cx + cut_w // 2, 0, w))
        out = x.clone()
        out[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        if correct_lam:
            lam = 1.0 - (yh - yl) * (xh - xl) / float(h * w)
    else:
        out = x * lam + x.flip(0) * (1.0 - lam)
    return out, targets * lam + targets.flip(0) * (1.0 - lam)


def _stats_tensor(values: Sequence[float] | float | Tensor, channels: int, name: str, x: Tensor) -> Tensor:
    if isinstance(values, Tensor):
        t = _move(values, x.device).to(x.dtype).flatten()
    else:
        t = torch.as_tensor(values, dtype=torch.float64).flatten()
        if name == "std" and bool((t <= 0).any()):
            raise ValueError(f"std must be positive, got {values}")
        t = _move(t.to(x.dtype), x.device)
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"{name} has {t.numel()} values but the images have {channels} channels")
    return t.view(1, channels, 1, 1)


def normalize(
    x: Tensor, mean: Sequence[float] | float | Tensor, std: Sequence[float] | float | Tensor
) -> Tensor:
    """``(x - mean) / std`` per channel; a single value is used for every channel.  Python values are
    validated (positive std); tensors are trusted, to keep the device path free of host syncs."""
    _check_batch(x)
    m = _stats_tensor(mean, x.shape[1], "mean", x)
    s = _stats_tensor(std, x.shape[1], "std", x)
    return (x - m) / s


def eval_preprocess(
    images: Tensor,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    size: int | tuple[int, int] | None = None,
) -> Tensor:
    """Evaluation path: uint8 → float ``[0, 1]``, optional (antialiased bilinear) resize, normalise.
    ``mean``/``std`` of ``None`` skip normalisation."""
    x = to_float(images)
    if x.ndim != 4:
        raise ValueError(f"images must be a batch B×C×H×W, got shape {tuple(x.shape)}")
    if size is not None:
        x = resize(x, size)
    if mean is not None or std is not None:
        x = normalize(x, 0.0 if mean is None else mean, 1.0 if std is None else std)
    return x


# --------------------------------------------------------------------------------------------------
# composable module
# --------------------------------------------------------------------------------------------------

CROP_CHOICES: tuple[str, ...] = ("none", "pad", "rrc")
AUTO_AUGMENT_CHOICES: tuple[str | None, ...] = (
    None,
    "none",
    "randaugment",
    "trivialaugment",
    "autoaugment-imagenet",
    "autoaugment-cifar10",
)


class BatchAugment(torch.nn.Module):
    """The whole training-time augmentation pipeline for a batch, configured by plain keyword args so
    it can be built straight from a YAML config.

    Order (timm/torchvision recipe order): uint8→float, crop (``"pad"`` random translation or
    ``"rrc"`` random-resized-crop to ``size``; with ``"none"``/``"pad"`` a ``size`` different from the
    input is reached by a plain resize), horizontal flip, auto-augment, normalise, random erasing,
    mixup/cutmix + label smoothing.

    ``forward(images, labels)`` returns ``(float images, targets)``.  Targets are the int64 labels when
    neither mixing nor label smoothing is configured, and ``B×num_classes`` float soft targets
    otherwise (decided by the configuration, not per batch, so the loss function never changes type).
    In ``eval()`` mode the module only does :func:`eval_preprocess` and passes labels through.

    ``mean``/``std`` of ``None`` skip normalisation.  ``seed`` (or an explicit ``generator``) makes the
    augmentation stream reproducible.  Random parameters are always drawn on the CPU (a CUDA
    generator is replaced by a CPU generator with the same seed) and copied to the batch's device
    without blocking, so a training step never waits on the GPU because of augmentation.
    """

    def __init__(
        self,
        *,
        crop: str = "none",
        padding: int = 4,
        pad_mode: str = "reflect",
        size: int | None = None,
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip: float = 0.0,
        auto_augment: str | None = None,
        ra_num_ops: int = 2,
        ra_magnitude: int = 9,
        ra_num_bins: int = 31,
        random_erasing: float = 0.0,
        erasing_value: str | float = "random",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("crop", crop, CROP_CHOICES)
        check_choice("pad_mode", pad_mode, ("reflect", "constant"))
        check_choice("auto_augment", auto_augment, AUTO_AUGMENT_CHOICES)
        if crop == "rrc" and size is None:
            raise ValueError("crop='rrc' needs size=<output size>")
        if size is not None and int(size) <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if int(padding) < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if isinstance(erasing_value, str) and erasing_value != "random":
            raise ValueError(f"unknown erasing_value {erasing_value!r}; allowed values: 'random' or a number")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha/cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0 <= ra_magnitude < ra_num_bins:
            raise ValueError(f"ra_magnitude {ra_magnitude} must be in [0, ra_num_bins={ra_num_bins})")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.crop = crop
        self.padding = int(padding)
        self.pad_mode = pad_mode
        self.size = None if size is None else int(size)
        self.rrc_scale = tuple(rrc_scale)
        self.rrc_ratio = tuple(rrc_ratio)
        self.hflip = check_prob("hflip", hflip)
        self.auto_augment = None if auto_augment == "none" else auto_augment
        self.ra_num_ops = int(ra_num_ops)
        self.ra_magnitude = int(ra_magnitude)
        self.ra_num_bins = int(ra_num_bins)
        self.random_erasing = check_prob("random_erasing", random_erasing)
        self.erasing_value = erasing_value
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.mix_prob = check_prob("mix_prob", mix_prob)
        self.switch_prob = check_prob("switch_prob", switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.num_classes = num_classes
        if self.soft_targets and (num_classes is None or int(num_classes) < 2):
            raise ValueError("mixup/cutmix/label_smoothing need num_classes >= 2")
        if mean is not None:
            self.register_buffer(
                "mean", torch.as_tensor(mean, dtype=torch.float32).flatten(), persistent=False
            )
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten(), persistent=False)
            if bool((self.std <= 0).any()):
                raise ValueError(f"std must be positive, got {std}")
        else:
            self.mean = None
            self.std = None
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        if generator is not None and generator.device.type != "cpu":
            # per-sample parameters are drawn where the generator lives; on an accelerator every
            # Python-side decision would then cost a device→host sync, so use a CPU twin with the same seed
            generator = torch.Generator().manual_seed(generator.initial_seed())
        self.generator = generator

    @property
    def mixing(self) -> bool:
        """True when mixup or cutmix can fire."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0

    @property
    def soft_targets(self) -> bool:
        """True when ``forward`` returns float soft targets instead of int64 labels."""
        return self.mixing or self.label_smoothing > 0

    def extra_repr(self) -> str:
        keys = (
            "crop",
            "padding",
            "size",
            "hflip",
            "auto_augment",
            "random_erasing",
            "mixup_alpha",
            "cutmix_alpha",
            "mix_prob",
            "label_smoothing",
            "num_classes",
        )
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    def _normalize(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        return normalize(x, self.mean, self.std)

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Augment one batch; see the class docstring for the order and the target type."""
        if images.ndim != 4:
            raise ValueError(f"images must be a batch B×C×H×W, got shape {tuple(images.shape)}")
        if labels.shape[:1] != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if not self.training:
            return eval_preprocess(images, self.mean, self.std, self.size), labels
        g = self.generator
        x = to_float(images)
        if self.crop == "pad" and self.padding > 0:
            x = pad_crop(x, self.padding, self.pad_mode, generator=g)
        if self.crop == "rrc":
            x = random_resized_crop(x, self.size, self.rrc_scale, self.rrc_ratio, generator=g)
        elif self.size is not None:
            x = resize(x, self.size)
        if self.hflip > 0:
            x = hflip(x, self.hflip, generator=g)
        if self.auto_augment == "randaugment":
            x = rand_augment(x, self.ra_num_ops, self.ra_magnitude, self.ra_num_bins, generator=g)
        elif self.auto_augment == "trivialaugment":
            x = trivial_augment_wide(x, generator=g)
        elif self.auto_augment is not None:
            x = auto_augment(x, self.auto_augment.split("-", 1)[1], generator=g)
        x = self._normalize(x)
        if self.random_erasing > 0:
            x = random_erasing(x, self.random_erasing, value=self.erasing_value, generator=g)
        if not self.soft_targets:
            return x, labels.long()
        assert self.num_classes is not None
        if self.mixing:
            return mixup_cutmix(
                x,
                labels,
                int(self.num_classes),
                self.mixup_alpha,
                self.cutmix_alpha,
                self.mix_prob,
                self.switch_prob,
                self.label_smoothing,
                generator=g,
            )
        return x, smooth_one_hot(labels, int(self.num_classes), self.label_smoothing).to(x.device)
