"""Name and layout mappings from other implementations' checkpoints to our models.

One module per source (``torchvision``, ``timm``, ``keras``), each a pure function from the file's
tensors and *our* model to a :class:`~mobilenets.sources._common.MappedState`. The loading policy
(which file format, which source, error messages, BatchNorm eps, padding, preprocessing) lives in
:func:`mobilenets.weights.load_weights`; none of the source libraries is imported.
"""

from __future__ import annotations

import torch

from . import keras, timm, torchvision
from ._common import MappedState

__all__ = ["SOURCES", "MappedState", "detect_source", "keras", "timm", "torchvision"]

# "timm_tf": timm's tf_ ports of the TensorFlow weights (TF "same" padding, BN eps 1e-3, mean = std = 0.5).
SOURCES = ("auto", "native", "torchvision", "timm", "timm_tf", "keras")


def detect_source(state: dict[str, torch.Tensor]) -> str | None:
    """Tell a state dict's writer from its key names; ``None`` when no known layout matches."""
    if "stem.conv.weight" in state:
        return "native"
    if torchvision.looks_like(state):
        return "torchvision"
    if timm.looks_like(state):
        return "timm"
    return None
