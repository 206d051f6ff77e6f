"""Detection: SSD box arithmetic, matching, losses and post-processing (:mod:`.boxes`) and the SSD
default boxes (:mod:`.anchors`), kept apart from any model so the deploy path can reuse them; the
SSDLite detector on any MobileNet backbone (:mod:`.ssdlite`, registered in :mod:`.archs`)."""

from .anchors import DefaultBoxes
from .archs import (
    ssdlite,
    ssdlite320_mobilenet_v3_large,
    ssdlite_mobilenet_v1,
    ssdlite_mobilenet_v2,
    ssdlite_mobilenet_v3_small,
    ssdlite_mobilenet_v4_conv_medium,
    ssdlite_mobilenet_v4_conv_small,
)
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
from .ssdlite import DEFAULT_EXTRA_CHANNELS, SSDLite

__all__ = [
    "DEFAULT_EXTRA_CHANNELS",
    "SSD_BOX_WEIGHTS",
    "BoxCoder",
    "DefaultBoxes",
    "Matcher",
    "SSDLite",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "nms",
    "postprocess",
    "remove_small",
    "ssd_loss",
    "ssd_match",
    "ssdlite",
    "ssdlite320_mobilenet_v3_large",
    "ssdlite_mobilenet_v1",
    "ssdlite_mobilenet_v2",
    "ssdlite_mobilenet_v3_small",
    "ssdlite_mobilenet_v4_conv_medium",
    "ssdlite_mobilenet_v4_conv_small",
]
