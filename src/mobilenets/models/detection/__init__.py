"""Detection: SSD box arithmetic, matching, losses and post-processing (:mod:`.boxes`) and the SSD
default boxes (:mod:`.anchors`), kept apart from any model so the deploy path can reuse them."""

from .anchors import DefaultBoxes
from .boxes import (
    SSD_BOX_WEIGHTS,
    BoxCoder,
    Matcher,
    batched_nms,
    box_area,
    box_iou,
    clip_boxes,
    nms,
    postprocess,
    remove_small,
    ssd_loss,
    ssd_match,
)

__all__ = [
    "SSD_BOX_WEIGHTS",
    "BoxCoder",
    "DefaultBoxes",
    "Matcher",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "nms",
    "postprocess",
    "remove_small",
    "ssd_loss",
    "ssd_match",
]
