"""Detection models: SSDLite on any MobileNet backbone (:mod:`.ssdlite`, registered in :mod:`.archs`)."""

from .archs import (
    ssdlite,
    ssdlite320_mobilenet_v3_large,
    ssdlite_mobilenet_v1,
    ssdlite_mobilenet_v2,
    ssdlite_mobilenet_v3_small,
    ssdlite_mobilenet_v4_conv_medium,
    ssdlite_mobilenet_v4_conv_small,
)
from .ssdlite import DEFAULT_EXTRA_CHANNELS, SSDLite

__all__ = [
    "DEFAULT_EXTRA_CHANNELS",
    "SSDLite",
    "ssdlite",
    "ssdlite320_mobilenet_v3_large",
    "ssdlite_mobilenet_v1",
    "ssdlite_mobilenet_v2",
    "ssdlite_mobilenet_v3_small",
    "ssdlite_mobilenet_v4_conv_medium",
    "ssdlite_mobilenet_v4_conv_small",
]
