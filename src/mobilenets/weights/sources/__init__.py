"""Name and layout mappings from other implementations' checkpoints to our models.

One module per source (``torchvision``, ``timm``, ``keras``), each a pure function from the file's
tensors and *our* model to a :class:`~mobilenets.weights.sources._common.MappedState`. The loading policy
(which file format, which source, error messages, BatchNorm eps, padding, preprocessing) lives in
:func:`mobilenets.weights.load_weights`; none of the source libraries is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import keras, timm, torchvision, torchvision_detection, torchvision_segmentation
from ._common import MappedState

__all__ = ["SOURCES", "MappedState", "architecture_options", "detect_source", "keras", "timm", "torchvision",
           "torchvision_detection", "torchvision_segmentation"]

# "timm_tf": timm's tf_ ports of the TensorFlow weights (TF "same" padding, BN eps 1e-3, mean = std = 0.5).
SOURCES = ("auto", "native", "torchvision", "timm", "timm_tf", "keras")


def detect_source(state: Mapping[str, Any]) -> str | None:
    """Tell a state dict's writer from its key names; ``None`` when no known layout matches.

    Only the names are read, so a mapping of names to shapes works as well as one of tensors.
    """
    if "stem.conv.weight" in state or "backbone.stem.conv.weight" in state:  # a classifier or a detector
        return "native"
    if (torchvision.looks_like(state) or torchvision_detection.looks_like(state)
            or torchvision_segmentation.looks_like(state)):
        return "torchvision"
    if timm.looks_like(state):
        return "timm"
    return None


def architecture_options(source: str, arch: str) -> dict[str, Any]:
    """The ``create_model`` options that ``source``'s checkpoints for ``arch`` were trained with.

    None of them is stored in a state dict or a Keras file, yet each changes the outputs: BatchNorm's
    epsilon, the padding mode (TensorFlow "same" for Keras and timm's ``tf_`` ports, symmetric for the
    PyTorch-trained ones) and, for MobileNetV1, the activation (the published TF-slim/Keras and timm V1
    weights use ReLU6, the paper and our default ReLU). Knowing them from the source alone is what lets
    ``create_model(name, pretrained=FILE)`` build the right model before loading. ``native`` files
    record theirs in ``config.json`` instead, so nothing is implied for them here.
    """
    if source in ("auto", "native"):
        return {}
    if arch.startswith("mobilenet_v5"):
        # MobileNetV5 has no BatchNorm (RMSNorm2d, eps 1e-6 in the family) and timm registers the padding
        # per variant ("same" for the encoder only), which the family's resolver already chose.
        return {}
    if arch.startswith("ssdlite"):  # the detectors (family "ssdlite" or a registered ssdlite name)
        return {"bn_eps": torchvision_detection.BN_EPS} if source == "torchvision" else {}
    if arch.startswith(("lraspp", "deeplabv3")):
        # The segmenters: torchvision's BatchNorm settings are their defaults already (the backbone
        # family's, e.g. V3's 1e-3, and PyTorch's 1e-5 in the heads), so one eps for all would be wrong.
        return {}
    if source == "torchvision":
        options: dict[str, Any] = {"bn_eps": torchvision.BN_EPS.get(arch, 1e-5), "pad_type": ""}
    elif source == "timm":
        options = {"bn_eps": timm.BN_EPS, "pad_type": ""}
    elif source == "timm_tf":
        options = {"bn_eps": timm.BN_EPS_TF, "pad_type": "same"}
    elif source == "keras":
        options = {"bn_eps": keras.BN_EPS, "pad_type": "same"}
    else:
        raise ValueError(f"source={source!r} invalid; expected one of {SOURCES}")
    if arch == "mobilenet_v1" and source in ("timm", "timm_tf", "keras"):
        options = {"act": "relu6", **options}
    return options
