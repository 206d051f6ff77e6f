"""LR-ASPP and DeepLabV3 on any registered MobileNet backbone, with torchvision's output structure.

A segmenter takes a *normalised* batch ``[N, C, H, W]`` (like a classifier: ``pretrained_cfg`` gives
``mean`` / ``std``) and returns, in training and in eval, ``{"out": logits [N, K, H, W]}`` at the input
resolution, plus ``"aux"`` (the auxiliary FCN head's logits, same shape) when built with
``aux_loss=True``: the dict torchvision's segmentation models return, so code written for them works
unchanged. The backbone is a ``features_only`` model of the one builder at output stride 8, 16 or 32
(:mod:`.backbone`); the heads read two taps of it: the last block (C5, "high") and a low-level block at
stride 8 ("low": by default torchvision's, the first block reaching stride 8).

BatchNorm: ``bn_eps`` / ``bn_momentum`` left ``None`` keep torchvision's settings (the backbone's family
defaults, e.g. V3's 1e-3 / 0.01, and PyTorch's 1e-5 / 0.1 in the heads); a value applies to every
BatchNorm of the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..._validate import check_number
from ..layers import norm_layer_for
from ..mobilenet import MobileNet
from ..native import save_pretrained as write_native
from .backbone import build_backbone, tap_index
from .heads import DeepLabHead, FCNHead, LRASPPHead

__all__ = ["DEFAULT_INPUT_SIZE", "LRASPP", "DeepLabV3", "Segmenter", "is_segmenter"]

#: torchvision's evaluation size for its segmentation weights (resize 520).
DEFAULT_INPUT_SIZE = 520


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} invalid; expected an integer >= {minimum}")
    return value


class Segmenter(nn.Module):
    """What LR-ASPP and DeepLabV3 share: the dilated backbone, the two taps, the aux head, the interface.

    Attributes: ``backbone`` (a ``features_only`` :class:`~mobilenets.models.mobilenet.MobileNet`),
    ``head``, ``aux_head`` (``None`` without ``aux_loss``), ``low_index`` (flat index of the low tap),
    ``low_channels`` / ``high_channels``, ``output_stride``, ``num_classes``, ``in_chans``,
    ``pretrained_cfg``.
    """

    family = "segmenter"
    task = "segment"

    def __init__(self, *, backbone: str, backbone_kwargs: Mapping[str, Any] | None, num_classes: int,
                 in_chans: int, output_stride: int, aux_loss: bool, bn_eps: float | None,
                 bn_momentum: float | None, low_level: str) -> None:
        super().__init__()
        _positive_int("num_classes", num_classes, 2)
        _positive_int("in_chans", in_chans)
        if not isinstance(aux_loss, bool):
            raise ValueError(f"aux_loss={aux_loss!r} invalid; expected True or False")
        if bn_eps is not None:
            check_number("bn_eps", bn_eps, lambda v: 0.0 < v < math.inf, "a finite number > 0 (or None)")
        if bn_momentum is not None:
            check_number("bn_momentum", bn_momentum, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1] (or None)")
        self.num_classes, self.in_chans, self.output_stride = num_classes, in_chans, output_stride
        #: the registered classifier the backbone was built from (what load_backbone_weights builds)
        self.backbone_name, self.backbone_kwargs = backbone, dict(backbone_kwargs or {})
        self.backbone: MobileNet = build_backbone(backbone, output_stride=output_stride, in_chans=in_chans,
                                                  bn_eps=bn_eps, bn_momentum=bn_momentum,
                                                  backbone_kwargs=backbone_kwargs)
        self.low_index = tap_index(self.backbone, low_level)
        specs = (self.backbone.arch.stem, *self.backbone.arch.blocks)
        self.low_channels = specs[self.low_index].out_chs
        self.high_channels = specs[-1].out_chs
        self.low_reduction = math.prod(s.stride for s in specs[: self.low_index + 1])
        self.norm_layer = norm_layer_for(1e-5 if bn_eps is None else float(bn_eps),
                                         0.1 if bn_momentum is None else float(bn_momentum))
        self._with_aux = aux_loss
        self.aux_head: FCNHead | None = None  # built by _add_aux_head, after the head (state-dict order)
        cfg = self.backbone.pretrained_cfg
        self.pretrained_cfg: dict[str, Any] = {
            "input_size": (in_chans, DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE), "mean": tuple(cfg["mean"]),
            "std": tuple(cfg["std"]), "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": num_classes,
            "task": "segment", "first_conv": "backbone.stem.conv",
        }

    def _add_aux_head(self) -> None:
        if self._with_aux:
            self.aux_head = FCNHead(self.low_channels, self.num_classes, self.norm_layer)

    @property
    def aux_loss(self) -> bool:
        return self.aux_head is not None

    @property
    def class_layers(self) -> tuple[str, ...]:
        """State-dict prefixes of the convolutions whose outputs are classes (replaced for another class count)."""
        own = tuple(f"head.{name}" for name in self.head.class_layers)
        return own + (tuple(f"aux_head.{n}" for n in self.aux_head.class_layers) if self.aux_head else ())

    # ------------------------------------------------------------------------------------ network
    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The low-level tap and the last feature map (C5) of the backbone for a normalised batch."""
        tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        if not tracing and (x.ndim != 4 or x.shape[1] != self.in_chans):
            raise ValueError(f"expected input of shape (N, {self.in_chans}, H, W), got {tuple(x.shape)}")
        bb = self.backbone
        x = bb.stem(x)
        low = x
        i = 0
        for stage in bb.blocks:
            for block in stage:
                i += 1
                x = block(x)
                if i == self.low_index:
                    low = x
        return low, x

    def head_logits(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"out": [N, K, H, W]}`` (and ``"aux"`` with ``aux_loss``) at the input's resolution."""
        size = x.shape[-2:]
        low, high = self.features(x)
        result = {"out": F.interpolate(self.head_logits(low, high), size=size, mode="bilinear", align_corners=False)}
        if self.aux_head is not None:
            result["aux"] = F.interpolate(self.aux_head(low), size=size, mode="bilinear", align_corners=False)
        return result

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh class convolutions (head and aux head) for another class count: fine-tuning."""
        _positive_int("num_classes", num_classes, 2)
        self.head.reset_classes(num_classes)
        if self.aux_head is not None:
            self.aux_head.reset_classes(num_classes)
        self.num_classes = num_classes
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def save_pretrained(self, directory: str, class_names: list[str] | None = None) -> None:
        """Write the native format (``model.safetensors`` + ``config.json``); see :mod:`mobilenets.models.native`."""
        write_native(self, directory, class_names=class_names or getattr(self, "class_names", None))


class LRASPP(Segmenter):
    """Lite R-ASPP (MobileNetV3 paper, Sec. 6.4) on any backbone; torchvision's ``LRASPP`` layer for layer.

    Args:
        backbone: a registered classifier, built ``features_only``; ``backbone_kwargs`` its options.
        num_classes: classes including background (VOC: 21).
        in_chans: image channels.
        output_stride: 8, 16 (torchvision's) or 32; finer strides dilate the backbone.
        aux_loss: add the FCN auxiliary head on the low-level tap (torchvision's LR-ASPP has none).
        bn_eps, bn_momentum: ``None`` keeps torchvision's (see the module docstring).
        inter_channels: width of the gated high-level branch (128).
        low_level: the low-level tap, one of :data:`~.backbone.LOW_LEVELS` (``"first8"``: torchvision's).
    """

    family = "lraspp"

    def __init__(self, *, backbone: str = "mobilenet_v3_large", backbone_kwargs: Mapping[str, Any] | None = None,
                 num_classes: int = 21, in_chans: int = 3, output_stride: int = 16, aux_loss: bool = False,
                 bn_eps: float | None = None, bn_momentum: float | None = None, inter_channels: int = 128,
                 low_level: str = "first8") -> None:
        super().__init__(backbone=backbone, backbone_kwargs=backbone_kwargs, num_classes=num_classes,
                         in_chans=in_chans, output_stride=output_stride, aux_loss=aux_loss, bn_eps=bn_eps,
                         bn_momentum=bn_momentum, low_level=low_level)
        _positive_int("inter_channels", inter_channels)
        self.head = LRASPPHead(self.low_channels, self.high_channels, num_classes, inter_channels, self.norm_layer)
        self._add_aux_head()

    def head_logits(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.head(low, high)


class DeepLabV3(Segmenter):
    """DeepLabV3 (Chen et al. 2017) on any backbone; torchvision's ``DeepLabV3`` with ``DeepLabHead``.

    Args: as :class:`LRASPP` (``low_level`` places the auxiliary head), and
        atrous_rates: the ASPP's dilations (12, 24, 36; DeepLab's rates for output stride 8 that
            torchvision keeps at 16).
        aspp_channels: width of every ASPP branch and of the head (256).
    """

    family = "deeplabv3"

    def __init__(self, *, backbone: str = "mobilenet_v3_large", backbone_kwargs: Mapping[str, Any] | None = None,
                 num_classes: int = 21, in_chans: int = 3, output_stride: int = 16, aux_loss: bool = False,
                 bn_eps: float | None = None, bn_momentum: float | None = None,
                 atrous_rates: Sequence[int] = (12, 24, 36), aspp_channels: int = 256,
                 low_level: str = "first8") -> None:
        super().__init__(backbone=backbone, backbone_kwargs=backbone_kwargs, num_classes=num_classes,
                         in_chans=in_chans, output_stride=output_stride, aux_loss=aux_loss, bn_eps=bn_eps,
                         bn_momentum=bn_momentum, low_level=low_level)
        rates = None if isinstance(atrous_rates, str | bytes) else atrous_rates
        try:
            rates = tuple(rates)  # type: ignore[arg-type]
        except TypeError:
            rates = None
        if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
            raise ValueError(f"atrous_rates={atrous_rates!r} invalid; expected a non-empty sequence of integers >= 1")
        _positive_int("aspp_channels", aspp_channels)
        self.atrous_rates = rates
        self.head = DeepLabHead(self.high_channels, num_classes, rates, aspp_channels, self.norm_layer)
        self._add_aux_head()

    def head_logits(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.head(high)


def is_segmenter(model: nn.Module) -> bool:
    """Whether ``model`` is one of these segmenters (its forward returns the ``{"out", "aux"}`` dict)."""
    return isinstance(model, Segmenter)
