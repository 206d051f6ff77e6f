"""MobileNetV5's Multi-Scale Fusion Adapter (MSFA): the neck that turns the last two stages into one grid.

Gemma 3n's language model reads a fixed grid of image tokens whatever the input size, built from more than
the last stage: the adapter brings the stage outputs it taps to the resolution of the first (nearest
upsampling), concatenates them on channels, mixes them with a UIB feed-forward (1x1 expand, 1x1 project,
no depthwise, no shortcut), brings the result to the fixed grid (average pooling when the map divides
evenly, bilinear resizing otherwise) and normalises it. At 768x768 the taps are C4 (48x48) and C5 (24x24),
and the grid is 16x16 with 2048 channels: 256 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BlockSpec, UniversalInvertedBottleneck
from .layers import LayerFactory, make_divisible

__all__ = ["MSFASpec", "MultiScaleFusionAdapter"]


@dataclass(frozen=True)
class MSFASpec:
    """Which feature levels the adapter fuses (C1..C5 = 0..4), its output width, grid and FFN expansion."""

    levels: tuple[int, ...] = (3, 4)
    out_chs: int = 2048
    grid: int = 16
    expansion: float = 2.0

    def __post_init__(self) -> None:
        if not self.levels or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 4 for v in self.levels):
            raise ValueError(f"msfa levels={self.levels!r} invalid; expected feature levels in 0..4 (C1..C5)")
        for name in ("out_chs", "grid"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"msfa {name}={value!r} invalid; expected an integer >= 1")


class MultiScaleFusionAdapter(nn.Module):
    """Resize to the first tap, concatenate, UIB feed-forward, pool or resize to ``grid`` x ``grid``, normalise.

    The names (``ffn`` with ``pw_exp`` / ``pw_proj``, ``norm``) are timm's, so Gemma 3n's encoder weights
    load without renaming.
    """

    def __init__(self, in_chs: Sequence[int], spec: MSFASpec, norm_layer: LayerFactory, act: str) -> None:
        super().__init__()
        total = sum(in_chs)
        self.grid = spec.grid
        self.ffn = UniversalInvertedBottleneck(
            BlockSpec("uib", total, spec.out_chs, kernel=0, mid_chs=make_divisible(total * spec.expansion), act=act,
                      skip=False), norm_layer)
        self.norm = norm_layer(spec.out_chs)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        h, w = feats[0].shape[-2:]
        resized = [f if f.shape[-2] >= h and f.shape[-1] >= w else F.interpolate(f, size=(h, w), mode="nearest")
                   for f in feats]
        x = self.ffn(torch.cat(resized, dim=1))
        g = self.grid
        if (h, w) != (g, g):
            if h % g == 0 and w % g == 0:
                # = avg_pool2d with kernel and stride h // g; the adaptive form keeps the sizes out of the
                # traced graph (pnnx turned the computed kernel into expressions ncnn cannot load)
                x = F.adaptive_avg_pool2d(x, (g, g))
            else:
                x = F.interpolate(x, size=(g, g), mode="bilinear")
        return self.norm(x)
