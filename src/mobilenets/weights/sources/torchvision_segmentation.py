"""torchvision segmentation state dicts (``lraspp_mobilenet_v3_large``, ``deeplabv3_mobilenet_v3_large``)
-> our segmenters' names.

torchvision keeps the MobileNetV3 ``features`` as the backbone (``IntermediateLayerGetter``), so
``backbone.<j>...`` is the classifier's ``features.<j>...`` and the classifier mapping (:mod:`.torchvision`)
places it in our backbone. The heads are numbered ``nn.Sequential`` s:

- LR-ASPP: ``classifier.cbr.{0,1}`` (conv, BN), ``classifier.scale.1`` (the gate's conv),
  ``classifier.{low,high}_classifier`` (1x1 convs with bias);
- DeepLabV3: ``classifier.0`` the ASPP (``convs.<i>.{0,1}`` the 1x1 and atrous branches,
  ``convs.<last>.{1,2}`` the pooling branch's conv and BN, ``project.{0,1}``), ``classifier.{1,2}`` the
  3x3 conv and its BN, ``classifier.4`` the class conv; ``aux_classifier.{0,1,4}`` the FCN head's conv,
  BN and class conv.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import torchvision as tv_classifier
from ._common import BN_PARAMS, MappedState

__all__ = ["describe", "looks_like", "num_classes", "to_native"]

_BACKBONE = re.compile(r"backbone\.(\d+)\.(.+)")
_ASPP_CONV = re.compile(r"classifier\.0\.convs\.(\d+)\.(\d+)\.(\w+)")
_CLASS_KEYS = ("classifier.low_classifier.weight", "classifier.4.weight")


def looks_like(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("backbone.0.0.") for k in state) and (
        "classifier.cbr.0.weight" in state or "classifier.0.project.0.weight" in state)


def _rows(value: Any) -> int:
    return int(value.shape[0]) if isinstance(value, torch.Tensor) else int(next(iter(value)))


def num_classes(shapes: Mapping[str, Any]) -> int | None:
    """Classes of the file: output channels of its class convolution (LR-ASPP's low classifier, DeepLab's last)."""
    key = next((k for k in _CLASS_KEYS if k in shapes), None)
    return _rows(shapes[key]) if key is not None else None


def describe(state: Mapping[str, Any]) -> str:
    kind = "LR-ASPP" if "classifier.cbr.0.weight" in state else "DeepLabV3"
    aux = " with the auxiliary head" if any(k.startswith("aux_classifier.") for k in state) else ""
    return f"torchvision {kind} with {num_classes(state) or '?'} classes{aux}"


def _unit(prefix: str, which: str, tail: str, conv: str = "0", bn: str = "1") -> str | None:
    """A ConvNormAct's conv weight (index ``conv``) or BatchNorm tensor (index ``bn``) under our ``prefix``."""
    if which == conv and tail == "weight":
        return f"{prefix}.conv.weight"
    return f"{prefix}.bn.{tail}" if which == bn and tail in BN_PARAMS else None


def _head_key(key: str, pooling: int) -> str | None:
    """Our name for one of torchvision's head tensors (``pooling``: index of DeepLab's pooling branch)."""
    if m := re.fullmatch(r"classifier\.cbr\.([01])\.(\w+)", key):
        return _unit("head.cbr", m.group(1), m.group(2))
    if key == "classifier.scale.1.weight":
        return "head.scale.conv.weight"
    if m := re.fullmatch(r"classifier\.((?:low|high)_classifier)\.(weight|bias)", key):
        return f"head.{m.group(1)}.{m.group(2)}"
    if m := _ASPP_CONV.fullmatch(key):
        i, which, tail = int(m.group(1)), m.group(2), m.group(3)
        if i == pooling:
            return _unit("head.aspp.pool", which, tail, conv="1", bn="2")
        return _unit(f"head.aspp.convs.{i}", which, tail)
    if m := re.fullmatch(r"classifier\.0\.project\.([01])\.(\w+)", key):
        return _unit("head.aspp.project", m.group(1), m.group(2))
    if m := re.fullmatch(r"classifier\.([12])\.(\w+)", key):
        return _unit("head.conv", m.group(1), m.group(2), conv="1", bn="2")
    if m := re.fullmatch(r"classifier\.4\.(weight|bias)", key):
        return f"head.classifier.{m.group(1)}"
    if m := re.fullmatch(r"aux_classifier\.([01])\.(\w+)", key):
        return _unit("aux_head.conv", m.group(1), m.group(2))
    if m := re.fullmatch(r"aux_classifier\.4\.(weight|bias)", key):
        return f"aux_head.classifier.{m.group(1)}"
    return None


def to_native(state: Mapping[str, torch.Tensor], model: nn.Module) -> MappedState:
    """Translate a torchvision LR-ASPP / DeepLabV3 state dict to our segmenter's names (shapes unchanged)."""
    out = MappedState(description=describe(state))
    backbone = getattr(model, "backbone", None)
    if backbone is None or getattr(model, "task", None) != "segment":
        out.description += f" (the model, {type(model).__name__}, is not a segmenter)"
        out.unexpected.extend(state)
        return out
    names = {k: f"features.{m.group(1)}.{m.group(2)}" for k in state if (m := _BACKBONE.fullmatch(k))}
    inner = tv_classifier.to_native({names[k]: state[k] for k in names}, backbone)
    back = {v: k for k, v in names.items()}
    for key, value in inner.tensors.items():
        out.put(f"backbone.{key}", value, back[inner.origin[key]])
    out.unexpected.extend(back[k] for k in inner.unexpected)
    pooling = max((int(m.group(1)) for k in state if (m := _ASPP_CONV.fullmatch(k))), default=-1)
    for key, value in state.items():
        if key in names:
            continue
        new = _head_key(key, pooling)
        if new is None:
            out.unexpected.append(key)
        else:
            out.put(new, value, key)
    return out
