"""SSD default boxes (anchors), the same boxes in the same order as torchvision's ``DefaultBoxGenerator``.

A torchvision SSD checkpoint's heads predict one set of outputs per anchor in that generator's order
(level by level, row-major locations, then the width/height pairs of the location), so the anchors must
match it exactly for loaded weights to mean anything. Scales follow the SSD paper (page 6): evenly spaced
from ``min_ratio`` to ``max_ratio`` over the levels, plus 1.0 for the extra "sqrt(s_k s_k+1)" box of the
last level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..._validate import check_number

__all__ = ["DefaultBoxes"]


def _sizes(name: str, value: Sequence[int]) -> tuple[int, int]:
    if len(value) != 2:
        raise ValueError(f"{name}={tuple(value)!r} invalid; expected (height, width)")
    h, w = (int(v) for v in value)
    if h < 1 or w < 1:
        raise ValueError(f"{name}={tuple(value)!r} invalid; expected positive sizes")
    return h, w


class DefaultBoxes:
    """SSD anchors for a set of feature maps: ``boxes(feature_sizes, image_size) -> [A, 4]`` xyxy pixels.

    ``aspect_ratios[k]`` lists the ratios of level ``k`` (each adds a wide and a tall box beside the two
    square ones); ``scales`` (one per level plus one) replaces the ``min_ratio .. max_ratio`` spacing;
    ``steps`` (pixels per cell, one per level) places the centres by stride instead of by the feature-map
    size; ``clip`` clamps the relative widths and heights to ``[0, 1]`` (torchvision's default).
    """

    def __init__(
        self,
        aspect_ratios: Sequence[Sequence[float]],
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        scales: Sequence[float] | None = None,
        steps: Sequence[int] | None = None,
        clip: bool = True,
    ) -> None:
        if (
            isinstance(aspect_ratios, str)
            or not aspect_ratios
            or any(isinstance(r, str) for r in aspect_ratios)
        ):
            raise ValueError(
                f"aspect_ratios={aspect_ratios!r} invalid; expected a list of ratio lists, one per level"
            )
        self.aspect_ratios = [
            [check_number("aspect_ratios", r, lambda v: v > 0, "positive ratios") for r in level]
            for level in aspect_ratios
        ]
        levels = len(self.aspect_ratios)
        if steps is not None and len(steps) != levels:
            raise ValueError(f"steps={list(steps)!r} invalid; expected {levels} steps, one per level")
        self.steps = (
            None if steps is None else [check_number("steps", s, lambda v: v > 0, "positive") for s in steps]
        )
        self.clip = bool(clip)
        if scales is None:
            lo = check_number("min_ratio", min_ratio, lambda v: v > 0, "a positive fraction of the image")
            hi = check_number("max_ratio", max_ratio, lambda v: v >= lo, f"a fraction >= min_ratio={lo}")
            if levels > 1:
                self.scales = [lo + (hi - lo) * k / (levels - 1.0) for k in range(levels)] + [1.0]
            else:
                self.scales = [lo, hi]
        else:
            if len(scales) != levels + 1:
                raise ValueError(
                    f"scales has {len(scales)} values; expected {levels + 1} (one per level plus one)"
                )
            self.scales = [check_number("scales", s, lambda v: v > 0, "positive scales") for s in scales]
        self._wh = [self._wh_pairs(k) for k in range(levels)]

    def _wh_pairs(self, k: int) -> Tensor:
        """Level ``k``'s relative (w, h): two squares (s_k and sqrt(s_k s_k+1)), then wide/tall per ratio."""
        s, s_next = self.scales[k], self.scales[k + 1]
        pairs = [[s, s], [math.sqrt(s * s_next)] * 2]
        for ratio in self.aspect_ratios[k]:
            root = math.sqrt(ratio)
            pairs += [[s * root, s / root], [s / root, s * root]]
        return torch.as_tensor(pairs, dtype=torch.float32)

    def __repr__(self) -> str:
        return (
            f"DefaultBoxes(aspect_ratios={self.aspect_ratios}, clip={self.clip}, scales={self.scales}, "
            f"steps={self.steps})"
        )

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature-map cell of each level (what the heads' output channels are sized by)."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def __call__(
        self,
        feature_sizes: Sequence[Sequence[int]],
        image_size: Sequence[int],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Anchors ``[A, 4]`` xyxy in pixels of an ``image_size = (h, w)`` image for ``feature_sizes``
        (one ``(h, w)`` per level), in torchvision's order: level, row, column, then box of the cell."""
        if len(feature_sizes) != len(self.aspect_ratios):
            raise ValueError(
                f"{len(feature_sizes)} feature sizes; expected {len(self.aspect_ratios)}, one per level"
            )
        img_h, img_w = _sizes("image_size", image_size)
        levels = []
        for k, size in enumerate(feature_sizes):
            fh, fw = _sizes(f"feature_sizes[{k}]", size)
            if self.steps is not None:
                cells_x, cells_y = img_w / self.steps[k], img_h / self.steps[k]
            else:
                cells_y, cells_x = fh, fw
            cx = ((torch.arange(fw) + 0.5) / cells_x).to(dtype)
            cy = ((torch.arange(fh) + 0.5) / cells_y).to(dtype)
            grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
            wh = self._wh[k].clamp(0, 1) if self.clip else self._wh[k]
            centres = torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=-1)
            centres = centres.repeat_interleave(wh.shape[0], dim=0)
            levels.append(torch.cat((centres, wh.to(dtype).repeat(fh * fw, 1)), dim=1))
        cxcywh = torch.cat(levels)
        scale = torch.tensor([img_w, img_h])
        boxes = torch.cat(
            ((cxcywh[:, :2] - 0.5 * cxcywh[:, 2:]) * scale, (cxcywh[:, :2] + 0.5 * cxcywh[:, 2:]) * scale),
            dim=-1,
        )
        return boxes.to(device=device) if device is not None else boxes
