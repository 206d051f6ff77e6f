"""The registered SSDLite detectors: ``ssdlite`` on any backbone, and one name per published layout.

Every entry builds :class:`~mobilenets.models.detection.ssdlite.SSDLite`; a named entry fixes the
backbone and its options (its ``backbone_kwargs`` are merged over the entry's, so
``backbone_kwargs={"width_mult": 0.5}`` keeps V3's reduced tail) and the input size. The entries take
exactly SSDLite's keywords (no classifier options), so :func:`mobilenets.create_model` checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import register_task_model
from .ssdlite import SSDLite

__all__ = [
    "ssdlite",
    "ssdlite320_mobilenet_v3_large",
    "ssdlite_mobilenet_v1",
    "ssdlite_mobilenet_v2",
    "ssdlite_mobilenet_v3_small",
    "ssdlite_mobilenet_v4_conv_medium",
    "ssdlite_mobilenet_v4_conv_small",
]

def _entry(name: str, doc: str, *, backbone: str | None, **defaults: Any) -> Callable[..., SSDLite]:
    return register_task_model(name, doc, SSDLite, "detect", backbone=backbone, **defaults)  # type: ignore[return-value]


ssdlite = _entry(
    "ssdlite", "SSDLite on any registered backbone: create_model('ssdlite', backbone=NAME, num_classes=..., image_size=...).",
    backbone=None)
ssdlite320_mobilenet_v3_large = _entry(
    "ssdlite320_mobilenet_v3_large",
    "torchvision's SSDLite320 on MobileNetV3-Large (reduced tail): 3,440,060 params at 91 classes, 0.58 GMACs.",
    backbone="mobilenet_v3_large", base_kwargs={"reduced_tail": True})
ssdlite_mobilenet_v3_small = _entry(
    "ssdlite_mobilenet_v3_small", "SSDLite320 on MobileNetV3-Small (reduced tail, as the V3 paper's Table 6).",
    backbone="mobilenet_v3_small", base_kwargs={"reduced_tail": True})
ssdlite_mobilenet_v2 = _entry(
    "ssdlite_mobilenet_v2",
    "The MobileNetV2 paper's SSDLite (Sec. 6.2): levels at the expansion of the first stride-32 block and the 1280 conv, 300x300.",
    backbone="mobilenet_v2", image_size=300)
ssdlite_mobilenet_v1 = _entry(
    "ssdlite_mobilenet_v1", "SSDLite on MobileNetV1: levels at the ends of C4 and C5 (V1 has no expansion), 300x300.",
    backbone="mobilenet_v1", image_size=300)
ssdlite_mobilenet_v4_conv_small = _entry(
    "ssdlite_mobilenet_v4_conv_small", "SSDLite320 on MobileNetV4-Conv-Small (expansion of its first stride-32 UIB).",
    backbone="mobilenet_v4_conv_small")
ssdlite_mobilenet_v4_conv_medium = _entry(
    "ssdlite_mobilenet_v4_conv_medium", "SSDLite320 on MobileNetV4-Conv-Medium (expansion of its first stride-32 UIB).",
    backbone="mobilenet_v4_conv_medium")
