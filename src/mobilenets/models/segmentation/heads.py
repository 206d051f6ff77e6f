"""Segmentation heads: LR-ASPP (MobileNetV3 paper, Sec. 6.4), DeepLabV3's ASPP head and the FCN head.

Each is laid out as torchvision's (``torchvision.models.segmentation``), layer for layer, so that its
checkpoints convert by renaming alone; only the names are ours (``ConvNormAct`` units with ``conv`` /
``bn`` / ``act``, as the backbones). The heads return logits at their input's resolution; the model
upsamples them to the image. ``class_layers`` lists the convolutions whose outputs are classes: what
fine-tuning on another class count replaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct, LayerFactory

__all__ = ["ASPP", "DeepLabHead", "FCNHead", "LRASPPHead"]


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _new_classifier(old: nn.Conv2d, num_classes: int) -> nn.Conv2d:
    """A fresh 1x1 classifier conv like ``old`` for another class count (PyTorch's default init)."""
    return nn.Conv2d(old.in_channels, num_classes, 1, device=old.weight.device, dtype=old.weight.dtype)


class LRASPPHead(nn.Module):
    """Lite R-ASPP: a gated 1x1 branch on the high-level map plus a 1x1 classifier on the low-level one.

    ``cbr``: 1x1 conv (no bias) + BN + ReLU to ``inter_channels``; ``scale``: global pooling -> 1x1 conv
    (no bias) -> sigmoid, a per-channel gate computed from the whole image (the paper's cheap
    substitute for ASPP's image-pooling branch); the gated map is upsampled to the low-level map's size
    and both branches are classified (1x1 convs with bias) and summed.
    """

    class_layers = ("low_classifier", "high_classifier")

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128,
                 norm_layer: LayerFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        self.cbr = ConvNormAct(high_channels, inter_channels, 1, norm_layer=norm_layer, act_layer=nn.ReLU)
        self.scale = nn.Sequential()
        self.scale.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.scale.add_module("conv", nn.Conv2d(high_channels, inter_channels, 1, bias=False))
        self.scale.add_module("gate", nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = _upsample(x, low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)

    def reset_classes(self, num_classes: int) -> None:
        self.low_classifier = _new_classifier(self.low_classifier, num_classes)
        self.high_classifier = _new_classifier(self.high_classifier, num_classes)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3, Sec. 3.3): parallel views at several dilations.

    ``convs``: a 1x1 branch and one 3x3 branch per atrous rate; ``pool``: the image-level branch
    (global pooling -> 1x1 conv + BN + ReLU, broadcast back by bilinear upsampling of a 1x1 map);
    ``project``: the concatenation -> 1x1 conv + BN + ReLU, then dropout 0.5. Every conv has no bias.
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256,
                 norm_layer: LayerFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer)]
            + [ConvNormAct(in_channels, out_channels, 3, dilation=int(r), norm_layer=norm_layer) for r in atrous_rates])
        self.pool = ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer)
        self.project = ConvNormAct((len(self.convs) + 1) * out_channels, out_channels, 1, norm_layer=norm_layer)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(F.adaptive_avg_pool2d(x, 1))
        branches = [conv(x) for conv in self.convs] + [_upsample(pooled, x.shape[-2:])]
        return self.dropout(self.project(torch.cat(branches, dim=1)))


class DeepLabHead(nn.Module):
    """DeepLabV3's head: ASPP -> 3x3 conv (no bias) + BN + ReLU -> 1x1 conv with bias to the classes."""

    class_layers = ("classifier",)

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36),
                 channels: int = 256, norm_layer: LayerFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, atrous_rates, channels, norm_layer)
        self.conv = ConvNormAct(channels, channels, 3, norm_layer=norm_layer)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(self.aspp(x)))

    def reset_classes(self, num_classes: int) -> None:
        self.classifier = _new_classifier(self.classifier, num_classes)


class FCNHead(nn.Module):
    """The FCN head torchvision uses as DeepLabV3's auxiliary classifier: 3x3 conv to a quarter of the
    input width (no bias) + BN + ReLU, dropout 0.1, 1x1 conv with bias to the classes."""

    class_layers = ("classifier",)

    def __init__(self, in_channels: int, num_classes: int, norm_layer: LayerFactory = nn.BatchNorm2d) -> None:
        super().__init__()
        if in_channels < 4:
            raise ValueError(f"the auxiliary FCN head needs a tap with >= 4 channels, got {in_channels}")
        self.conv = ConvNormAct(in_channels, in_channels // 4, 3, norm_layer=norm_layer)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(in_channels // 4, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))

    def reset_classes(self, num_classes: int) -> None:
        self.classifier = _new_classifier(self.classifier, num_classes)
