"""Semantic segmentation: LR-ASPP and DeepLabV3 heads (:mod:`.heads`) on any registered backbone put at
output stride 8, 16 or 32 (:mod:`.backbone`), as models with torchvision's output dict
(:mod:`.segmenter`), registered with task ``"segment"`` (:mod:`.archs`)."""

from .archs import deeplabv3, deeplabv3_mobilenet_v3_large, lraspp, lraspp_mobilenet_v3_large
from .backbone import LOW_LEVELS, OUTPUT_STRIDES, build_backbone, dilate_arch, tap_index
from .heads import ASPP, DeepLabHead, FCNHead, LRASPPHead
from .segmenter import DEFAULT_INPUT_SIZE, LRASPP, DeepLabV3, Segmenter, is_segmenter

__all__ = [
    "ASPP",
    "DEFAULT_INPUT_SIZE",
    "LOW_LEVELS",
    "LRASPP",
    "OUTPUT_STRIDES",
    "DeepLabHead",
    "DeepLabV3",
    "FCNHead",
    "LRASPPHead",
    "Segmenter",
    "build_backbone",
    "deeplabv3",
    "deeplabv3_mobilenet_v3_large",
    "dilate_arch",
    "is_segmenter",
    "lraspp",
    "lraspp_mobilenet_v3_large",
    "tap_index",
]
