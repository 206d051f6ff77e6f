"""The registered segmenters: ``lraspp`` and ``deeplabv3`` on any backbone, and torchvision's two models.

Every entry builds :class:`~.segmenter.LRASPP` or :class:`~.segmenter.DeepLabV3` and takes exactly that
class's keywords (no classifier options), so :func:`mobilenets.create_model` checks them; a named entry
fixes its backbone, and its ``backbone_kwargs`` are merged over the entry's. ``entry.task`` is
``"segment"``: ``mobilenets.list_models(task="segment")`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import register_task_model
from .segmenter import LRASPP, DeepLabV3, Segmenter

__all__ = ["deeplabv3", "deeplabv3_mobilenet_v3_large", "lraspp", "lraspp_mobilenet_v3_large"]


def _entry(name: str, doc: str, cls: type[Segmenter], *, backbone: str | None, **defaults: Any) -> Callable[..., Segmenter]:
    return register_task_model(name, doc, cls, "segment", backbone=backbone, **defaults)  # type: ignore[return-value]


lraspp = _entry(
    "lraspp", "LR-ASPP on any registered backbone: create_model('lraspp', backbone=NAME, num_classes=...).",
    LRASPP, backbone=None)
deeplabv3 = _entry(
    "deeplabv3", "DeepLabV3 on any registered backbone: create_model('deeplabv3', backbone=NAME, num_classes=...).",
    DeepLabV3, backbone=None)
lraspp_mobilenet_v3_large = _entry(
    "lraspp_mobilenet_v3_large",
    "torchvision's LR-ASPP on MobileNetV3-Large at output stride 16: 3,221,538 params at 21 classes, 2.09 GMACs at 520.",
    LRASPP, backbone="mobilenet_v3_large")
deeplabv3_mobilenet_v3_large = _entry(
    "deeplabv3_mobilenet_v3_large",
    "torchvision's DeepLabV3 on MobileNetV3-Large at output stride 16: 11,025,477 params at 21 classes "
    "(11,029,328 with aux_loss), 10.45 GMACs at 520.",
    DeepLabV3, backbone="mobilenet_v3_large")
