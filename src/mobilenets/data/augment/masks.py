"""Mask-aware batched augmentation for segmentation: random rescale, random crop (padded where the
rescaled image is smaller than the crop), horizontal flip and normalisation of a whole batch on its
device, the image and its class-index mask moved by the same map.

Rescale, crop and flip are axis-aligned scalings and shifts, so each sample gets **one** affine map
(output pixel -> input pixel) and the batch is warped by **one** ``grid_sample`` for the images
(bilinear) and one for the masks (nearest: a pixel keeps a class of the input, never a blend of two).
Output pixels that fall outside the rescaled image are padding: 0 in the image (before normalisation),
``ignore_index`` in the mask, so no loss or metric counts them. Random parameters come from one CPU
``torch.Generator`` (a few numbers per sample) and are copied to the batch's device without a sync:
the same generator state gives the same batch on any device.

The recipe is torchvision's segmentation reference (random resize by 0.5..2, pad to the crop with 0 /
255, random crop, flip) with the scale drawn relative to the input image's side and the crop placed
uniformly over the rescaled image (or, when that is smaller, the image placed uniformly in the crop);
torchvision resizes the shorter side and pads at the bottom-right only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._validate import check_prob
from ...constants import IGNORE_INDEX
from .base import _move, to_float
from .geometry import _affine_grid
from .pipeline import normalize

__all__ = ["MaskAugment"]


class MaskAugment(torch.nn.Module):
    """``forward(images uint8 [B, C, H, W], masks [B, H, W]) -> (normalised float [B, C, size, size],
    int64 masks [B, size, size])`` (see the module docstring).

    Training mode: per sample a scale uniform in ``scale`` (1 = the input's size), a random
    ``size x size`` crop of the rescaled sample, a horizontal flip with probability ``hflip``.
    ``eval()`` mode: no randomness; images resized (bilinear, antialiased) and masks (nearest) to
    ``size`` only when they differ, then normalised.
    """

    def __init__(self, size: int, *, scale: tuple[float, float] = (1.0, 1.0), hflip: float = 0.0,
                 mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0,
                 ignore_index: int = IGNORE_INDEX, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if int(size) < 1:
            raise ValueError(f"size={size!r} invalid; expected a positive number of pixels")
        lo, hi = (float(v) for v in scale)
        if not 0.0 < lo <= hi:
            raise ValueError(f"scale={tuple(scale)!r} invalid; expected (min, max) with 0 < min <= max")
        if not 0 <= int(ignore_index) <= 255:
            raise ValueError(f"ignore_index={ignore_index!r} invalid; expected 0..255")
        self.size, self.scale, self.hflip = int(size), (lo, hi), check_prob("hflip", hflip)
        self.mean = tuple(float(v) for v in mean) if isinstance(mean, Sequence) else (float(mean),)
        self.std = tuple(float(v) for v in std) if isinstance(std, Sequence) else (float(std),)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std={std!r} invalid; expected positive values")
        self.ignore_index = int(ignore_index)
        if generator is not None and generator.device.type != "cpu":
            generator = torch.Generator().manual_seed(generator.initial_seed())
        self.generator = generator

    @classmethod
    def from_config(cls, aug: Any, *, size: int, mean: Sequence[float] | float, std: Sequence[float] | float,
                    ignore_index: int = IGNORE_INDEX, generator: torch.Generator | None = None) -> MaskAugment:
        """The segmentation augmentation an ``AugConfig`` describes: ``aug.seg_scale`` (missing: (1, 1))
        and ``aug.hflip`` (None, the dataset's unresolved default, reads as 0)."""
        scale = tuple(getattr(aug, "seg_scale", None) or (1.0, 1.0))
        return cls(size, scale=(float(scale[0]), float(scale[1])), hflip=float(getattr(aug, "hflip", 0.0) or 0.0),
                   mean=mean, std=std, ignore_index=ignore_index, generator=generator)

    def extra_repr(self) -> str:
        return (f"size={self.size}, scale={self.scale}, hflip={self.hflip}, mean={self.mean}, std={self.std}, "
                f"ignore_index={self.ignore_index}")

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator)

    def forward(self, images: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        if images.ndim != 4:
            raise ValueError(f"images must be a batch B×C×H×W, got shape {tuple(images.shape)}")
        if masks.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"masks must be B×H×W matching images {tuple(images.shape)}, got {tuple(masks.shape)}")
        x = to_float(images)
        n, _, h, w = x.shape
        s = self.size
        randomise = self.training and (self.scale != (1.0, 1.0) or self.hflip > 0 or (h, w) != (s, s))
        if not randomise:
            if (h, w) != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
                masks = F.interpolate(masks[:, None].float(), size=(s, s), mode="nearest-exact")[:, 0]
            return normalize(x, self.mean, self.std), masks.long()
        a, b = self._maps(n, h, w)
        theta = self._theta(a, b, h, w, x.device)
        grid = _affine_grid(theta, s, s)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # nearest sampling of (mask + 1): padding reads 0, i.e. -1 after the shift, then ignore_index
        m = F.grid_sample(masks[:, None].float() + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        m = m[:, 0].long() - 1
        m = torch.where(m < 0, self.ignore_index, m)
        return normalize(out, self.mean, self.std), m

    def _maps(self, n: int, h: int, w: int) -> tuple[Tensor, Tensor]:
        """Per sample ``(a, b)`` [N, 2] of the map output pixel -> input pixel ``p_in = a * p_out + b``
        (x, y), drawn on the CPU."""
        lo, hi = self.scale
        k = lo + (hi - lo) * self._rand(n)  # [N]
        size_in = torch.tensor([float(w), float(h)])
        scaled = k[:, None] * size_in  # the rescaled sample's (width, height)
        room = scaled - self.size  # > 0: crop inside the image; < 0: image inside the crop
        offset = torch.minimum(room, torch.zeros(())) + self._rand(n, 2) * room.abs()
        flip = self._rand(n) < self.hflip
        a = (1.0 / k)[:, None].expand(n, 2).clone()
        b = offset / k[:, None]
        # a mirrored output column u reads the unmirrored column size - u
        a[:, 0] = torch.where(flip, -a[:, 0], a[:, 0])
        b[:, 0] = torch.where(flip, b[:, 0] + self.size / k, b[:, 0])
        return a, b

    def _theta(self, a: Tensor, b: Tensor, h: int, w: int, device: torch.device) -> Tensor:
        """The maps in ``grid_sample``'s normalised coordinates (align_corners=False) as [N, 2, 3]."""
        n, s = a.shape[0], float(self.size)
        size = torch.tensor([float(w), float(h)])
        scale = a * s / size  # g_in = scale * g_out + shift
        shift = (a * s + 2 * b) / size - 1
        zero = torch.zeros(n)
        theta = torch.stack([scale[:, 0], zero, shift[:, 0], zero, scale[:, 1], shift[:, 1]], 1).view(n, 2, 3)
        return _move(theta, device)
