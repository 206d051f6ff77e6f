"""Box-aware batched augmentation for detection: the SSD recipe (torchvision's detection reference:
photometric distortion, zoom-out, random IoU crop, horizontal flip) on a whole batch on the device.

Zoom-out, crop, flip and the final resize are all axis-aligned scalings and shifts, so each image gets
**one** affine map (output pixel -> input pixel) and the batch is warped by **one** ``grid_sample``;
the boxes go through the inverse of the same map, so they stay on the moved pixels by construction.
Boxes are then clipped to the output and dropped when their centre left the crop (torchvision's
``RandomIoUCrop`` rule) or they are thinner than ``min_size`` pixels; dropped boxes become padding
(label -1) at the end of their row. Random parameters come from one CPU ``torch.Generator`` (the
per-image numbers are few) and are copied to the batch's device without a sync.

Differences from torchvision, for batching: the IoU crop draws its ``trials`` candidates at once and
keeps the first that qualifies, and an image where none qualifies keeps its whole view (torchvision
redraws the IoU threshold until one does); the photometric jitter is brightness, contrast and saturation
(each with probability 0.5 inside a jittered image, torchvision's ranges) without the hue shift and
channel swap; boxes and crops use continuous coordinates (torchvision rounds crops to whole pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._validate import check_prob
from .base import _move, to_float
from .color import adjust_brightness, adjust_contrast, adjust_saturation
from .geometry import _affine_grid

__all__ = ["IOU_CROP_OPTIONS", "BoxAugment"]

#: torchvision's ``RandomIoUCrop`` choices of the minimum IoU of a kept box with the crop; 1.0 = no crop.
IOU_CROP_OPTIONS: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def _box_crop_iou(boxes: Tensor, crops: Tensor) -> Tensor:
    """IoU of each box [N, 1, M, 4] with each crop [N, T, 1, 4] -> [N, T, M]."""
    iw = (torch.minimum(boxes[..., 2], crops[..., 2]) - torch.maximum(boxes[..., 0], crops[..., 0])).clamp(min=0)
    ih = (torch.minimum(boxes[..., 3], crops[..., 3]) - torch.maximum(boxes[..., 1], crops[..., 1])).clamp(min=0)
    inter = iw * ih
    area_b = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    area_c = (crops[..., 2] - crops[..., 0]) * (crops[..., 3] - crops[..., 1])
    return inter / (area_b + area_c - inter).clamp(min=1e-9)


class BoxAugment(torch.nn.Module):
    """Training augmentation of ``(uint8 images [N, C, H, W], padded targets)`` batches (see the module
    docstring); ``forward`` returns ``(float images in [0, 1] [N, C, S, S], targets)`` with ``S`` =
    ``size`` (default: the input size). In ``eval()`` mode only the uint8 -> float conversion.

    Probabilities per image: ``photometric`` (jitter), ``zoom_out`` (the image shrunk into a canvas
    up to ``zoom_out_max`` times its side, filled with ``fill``), ``iou_crop`` (an SSD crop of the
    canvas), ``hflip``. Normalisation is the detector's own job (it knows its mean and std).
    """

    def __init__(self, *, iou_crop: float = 0.0, zoom_out: float = 0.0, zoom_out_max: float = 4.0,
                 hflip: float = 0.0, photometric: float = 0.0, size: int | None = None,
                 fill: float | Sequence[float] = 0.0, min_size: float = 1.0, trials: int = 40,
                 crop_scale: tuple[float, float] = (0.3, 1.0), crop_ratio: tuple[float, float] = (0.5, 2.0),
                 seed: int | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.iou_crop = check_prob("iou_crop", iou_crop)
        self.zoom_out = check_prob("zoom_out", zoom_out)
        self.hflip = check_prob("hflip", hflip)
        self.photometric = check_prob("photometric", photometric)
        if not float(zoom_out_max) >= 1.0:
            raise ValueError(f"zoom_out_max={zoom_out_max!r} invalid; expected a number >= 1")
        if size is not None and int(size) < 1:
            raise ValueError(f"size={size!r} invalid; expected a positive number of pixels")
        if int(trials) < 1 or not 0 < crop_scale[0] <= crop_scale[1] <= 1 or not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"trials={trials}, crop_scale={crop_scale}, crop_ratio={crop_ratio} invalid; expected "
                             "trials >= 1, 0 < min scale <= max scale <= 1, 0 < min ratio <= max ratio")
        self.zoom_out_max, self.size, self.min_size = float(zoom_out_max), None if size is None else int(size), float(min_size)
        self.fill = tuple(float(v) for v in fill) if isinstance(fill, Sequence) else (float(fill),)
        self.trials, self.crop_scale, self.crop_ratio = int(trials), tuple(crop_scale), tuple(crop_ratio)
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        if generator is not None and generator.device.type != "cpu":
            generator = torch.Generator().manual_seed(generator.initial_seed())
        self.generator = generator

    @classmethod
    def from_config(cls, aug: Any, *, size: int | None = None, fill: float | Sequence[float] = 0.0,
                    seed: int | None = None, generator: torch.Generator | None = None) -> BoxAugment:
        """The detection augmentation an ``AugConfig`` describes: ``aug.iou_crop``, ``aug.zoom_out``,
        ``aug.zoom_out_max``, ``aug.hflip``, ``aug.photometric`` (fields missing from an older config
        read as off, ``zoom_out_max`` as 4). ``aug.hflip`` of None (the dataset's default) must be
        resolved by the caller first."""
        if getattr(aug, "hflip", 0.0) is None:
            raise ValueError("aug.hflip is None (the dataset's default): resolve it before building the pipeline")
        return cls(iou_crop=float(getattr(aug, "iou_crop", 0.0) or 0.0), zoom_out=float(getattr(aug, "zoom_out", 0.0) or 0.0),
                   zoom_out_max=float(getattr(aug, "zoom_out_max", 4.0) or 4.0), hflip=float(getattr(aug, "hflip", 0.0)),
                   photometric=float(getattr(aug, "photometric", 0.0) or 0.0), size=size, fill=fill, seed=seed,
                   generator=generator)

    def extra_repr(self) -> str:
        keys = ("iou_crop", "zoom_out", "zoom_out_max", "hflip", "photometric", "size", "fill", "min_size")
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(shape, generator=self.generator)

    def forward(self, images: Tensor, targets: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        if images.ndim != 4:
            raise ValueError(f"images must be a batch N×C×H×W, got shape {tuple(images.shape)}")
        if targets["boxes"].shape[:1] != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but boxes of shape {tuple(targets['boxes'].shape)}")
        x = to_float(images)
        if not self.training:
            return x, targets
        h, w = x.shape[-2:]
        ho, wo = (self.size, self.size) if self.size is not None else (h, w)
        x = self._photometric(x)
        if self.iou_crop == self.zoom_out == self.hflip == 0.0 and (ho, wo) == (h, w):
            return x, targets
        a, b = self._maps(targets, h, w, ho, wo)  # x_in = a * u + b, per image, for x and y
        return self._warp(x, a, b, ho, wo), self._move_boxes(targets, a, b, ho, wo)

    def _photometric(self, x: Tensor) -> Tensor:
        """Brightness, contrast and saturation jitter, each with probability 0.5 in a jittered image."""
        if self.photometric == 0.0:
            return x
        n = x.shape[0]
        on = self._rand(n) < self.photometric
        for op, (lo, hi) in ((adjust_brightness, (0.875, 1.125)), (adjust_contrast, (0.5, 1.5)),
                             (adjust_saturation, (0.5, 1.5))):
            use = on & (self._rand(n) < 0.5)
            factor = torch.where(use, lo + (hi - lo) * self._rand(n), torch.ones(n))
            if bool(use.any()) and not (op is adjust_saturation and x.shape[1] == 1):
                x = op(x, factor)
        return x

    def _maps(self, targets: dict[str, Tensor], h: int, w: int, ho: int, wo: int) -> tuple[Tensor, Tensor]:
        """Per image ``(a, b)`` [N, 2] of the map output -> input ``p_in = a * p_out + b`` (x, y)."""
        n, dev = targets["boxes"].shape[0], targets["boxes"].device
        size = torch.tensor([float(w), float(h)])
        zoom = torch.where(self._rand(n) < self.zoom_out, 1 + (self.zoom_out_max - 1) * self._rand(n), torch.ones(n))
        canvas = zoom[:, None] * size  # [N, 2]
        offset = self._rand(n, 2) * (canvas - size)  # where the image lies in the canvas
        flip = _move(self._rand(n) < self.hflip, dev)
        canvas, offset = _move(canvas, dev), _move(offset, dev)
        crop = self._crops(targets, canvas, offset)  # [N, 4] in canvas coordinates, on the boxes' device
        out = torch.tensor([float(wo), float(ho)], device=dev)
        extent = crop[:, 2:] - crop[:, :2]
        a = extent / out
        b = crop[:, :2] - offset
        a = torch.stack([torch.where(flip, -a[:, 0], a[:, 0]), a[:, 1]], 1)
        b = torch.stack([torch.where(flip, b[:, 0] + extent[:, 0], b[:, 0]), b[:, 1]], 1)
        return a, b

    def _crops(self, targets: dict[str, Tensor], canvas: Tensor, offset: Tensor) -> Tensor:
        """One SSD IoU crop per image [N, 4] (the whole canvas when off or when no candidate qualifies)."""
        n, t, dev = canvas.shape[0], self.trials, canvas.device
        whole = torch.cat([torch.zeros_like(canvas), canvas], 1)
        if self.iou_crop == 0.0:
            return whole
        choice = torch.randint(0, len(IOU_CROP_OPTIONS), (n,), generator=self.generator)
        min_iou = torch.tensor(IOU_CROP_OPTIONS)[choice]
        active = _move((self._rand(n) < self.iou_crop) & (min_iou < 1.0), dev)
        lo, hi = self.crop_scale
        wh = _move(lo + (hi - lo) * self._rand(n, t, 2), dev) * canvas[:, None]  # [N, T, 2]
        xy = _move(self._rand(n, t, 2), dev) * (canvas[:, None] - wh)
        cand = torch.cat([xy, xy + wh], -1)  # [N, T, 4]
        ratio = wh[..., 0] / wh[..., 1]
        boxes = targets["boxes"].float() + offset.repeat(1, 2)[:, None]  # [N, M, 4] in canvas coordinates
        valid = (targets["labels"] >= 0)[:, None]  # [N, 1, M]
        centre = (boxes[..., :2] + boxes[..., 2:]) / 2
        c = cand[:, :, None]  # [N, T, 1, 4]
        inside = ((centre[:, None, :, 0] > c[..., 0]) & (centre[:, None, :, 0] < c[..., 2])
                  & (centre[:, None, :, 1] > c[..., 1]) & (centre[:, None, :, 1] < c[..., 3]) & valid)
        iou = torch.where(inside, _box_crop_iou(boxes[:, None], c), -1.0)
        ok = ((ratio >= self.crop_ratio[0]) & (ratio <= self.crop_ratio[1]) & inside.any(-1)
              & (iou.amax(-1) >= _move(min_iou, dev)[:, None]))
        first = ok.long().argmax(1)
        chosen = cand[torch.arange(n, device=dev), first]
        use = active & ok.any(1)
        return torch.where(use[:, None], chosen, whole)

    def _warp(self, x: Tensor, a: Tensor, b: Tensor, ho: int, wo: int) -> Tensor:
        """One ``grid_sample`` of the batch through the per-image maps (bilinear; outside -> ``fill``)."""
        n, c, h, w = x.shape
        a, b = _move(a, x.device), _move(b, x.device)
        size = torch.tensor([float(w), float(h)], device=x.device)
        out = torch.tensor([float(wo), float(ho)], device=x.device)
        scale = a * out / size  # normalised (align_corners=False) coordinates: g_in = scale * g_out + shift
        shift = (a * out + 2 * b) / size - 1
        zero = torch.zeros(n, device=x.device)
        theta = torch.stack([scale[:, 0], zero, shift[:, 0], zero, scale[:, 1], shift[:, 1]], 1).view(n, 2, 3)
        grid = _affine_grid(theta, ho, wo)
        fill = torch.tensor(self.fill, dtype=x.dtype).expand(c) if len(self.fill) in (1, c) else None
        if fill is None:
            raise ValueError(f"fill has {len(self.fill)} values but the images have {c} channels")
        if bool((fill == 0).all()):
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        src = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        res = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        inside = res[:, -1:]
        return res[:, :-1] + (1 - inside) * _move(fill, x.device).view(1, c, 1, 1)

    def _move_boxes(self, targets: dict[str, Tensor], a: Tensor, b: Tensor, ho: int, wo: int) -> dict[str, Tensor]:
        """Boxes through the inverse map ``p_out = (p_in - b) / a``: clipped, filtered, padding last."""
        boxes, labels = targets["boxes"], targets["labels"]
        a4, b4 = a.repeat(1, 2)[:, None], b.repeat(1, 2)[:, None]  # [N, 1, 4], on the boxes' device
        moved = (boxes.float() - b4) / a4
        x1, x2 = torch.minimum(moved[..., 0], moved[..., 2]), torch.maximum(moved[..., 0], moved[..., 2])
        y1, y2 = torch.minimum(moved[..., 1], moved[..., 3]), torch.maximum(moved[..., 1], moved[..., 3])
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        keep = (labels >= 0) & (cx > 0) & (cx < wo) & (cy > 0) & (cy < ho)
        clipped = torch.stack([x1.clamp(0, wo), y1.clamp(0, ho), x2.clamp(0, wo), y2.clamp(0, ho)], -1)
        keep &= ((clipped[..., 2] - clipped[..., 0]) >= self.min_size) & ((clipped[..., 3] - clipped[..., 1]) >= self.min_size)
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
        keep = keep.gather(1, order)
        clipped = clipped.gather(1, order[..., None].expand(-1, -1, 4))
        out = dict(targets)
        out["boxes"] = torch.where(keep[..., None], clipped, 0.0)
        out["labels"] = torch.where(keep, labels.gather(1, order), -1)
        return out
