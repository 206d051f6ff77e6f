"""torchvision SSDLite state dicts (``ssdlite320_mobilenet_v3_large``) -> our SSDLite names.

torchvision cuts its MobileNetV3 ``features`` into two sequences at the expansion of the first
stride-32 block: ``backbone.features.0.<j>`` holds ``features[j]`` for ``j < c``, and its last entry
``backbone.features.0.<c>`` that block's expansion (``features[c].block.0``);
``backbone.features.1.0.<i>`` is the rest of that block (``features[c].block.<i>``) and
``backbone.features.1.<m>`` is ``features[c + m]``. Undoing the cut gives a classifier-style state
dict, which the classifier mapping (:mod:`.torchvision`) places in our backbone. Extras are
``backbone.extra.<i>.<j>.{0,1}`` (conv, BN of the j-th ConvNormAct); heads
``head.{classification,regression}_head.module_list.<l>.0.{0,1}`` (depthwise conv, BN) and ``.1`` (the
1x1 conv with bias).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from . import torchvision as tv_classifier
from ._common import BN_PARAMS, MappedState

__all__ = ["BN_EPS", "describe", "looks_like", "num_classes", "to_native"]

BN_EPS = 1e-3  # torchvision's SSDLite: BatchNorm2d(eps=0.001, momentum=0.03) everywhere

_FIRST = re.compile(r"backbone\.features\.0\.(\d+)\.(.+)")
_SECOND = re.compile(r"backbone\.features\.1\.(\d+)\.(.+)")
_EXTRA = re.compile(r"backbone\.extra\.(\d+)\.(\d+)\.([01])\.(\w+)")
_HEAD = re.compile(r"head\.(classification|regression)_head\.module_list\.(\d+)\.(.+)")
_CLS0, _REG0 = "head.classification_head.module_list.0.1.weight", "head.regression_head.module_list.0.1.weight"


def looks_like(state: Mapping[str, Any]) -> bool:
    return any(k.startswith("backbone.features.0.") for k in state) and any(
        k.startswith("head.classification_head.module_list.") for k in state)


def _rows(value: Any) -> int:
    """Output channels of a weight given as a tensor or as its shape."""
    return int(value.shape[0]) if isinstance(value, torch.Tensor) else int(next(iter(value)))


def num_classes(shapes: Mapping[str, Any]) -> int | None:
    """Classes per anchor: the first level's class outputs over its anchors (box outputs / 4)."""
    cls, reg = shapes.get(_CLS0), shapes.get(_REG0)
    if cls is None or reg is None:
        return None
    cls_out, reg_out = _rows(cls), _rows(reg)
    anchors = reg_out // 4
    return cls_out // anchors if anchors and cls_out % anchors == 0 else None


def describe(state: Mapping[str, torch.Tensor]) -> str:
    levels = len({m.group(2) for k in state if (m := _HEAD.fullmatch(k))})
    return f"torchvision SSDLite with {num_classes(state) or '?'} classes and {levels} levels"


def _uncut_backbone(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """torchvision detection key -> its classifier key (``features.<k>...``), for the backbone tensors."""
    firsts = [int(m.group(1)) for k in state if (m := _FIRST.fullmatch(k))]
    cut = max(firsts, default=0)
    names: dict[str, str] = {}
    for key in state:
        if m := _FIRST.fullmatch(key):
            j, rest = int(m.group(1)), m.group(2)
            names[key] = f"features.{j}.{rest}" if j < cut else f"features.{cut}.block.0.{rest}"
        elif m := _SECOND.fullmatch(key):
            i, rest = int(m.group(1)), m.group(2)
            if i == 0:
                names[key] = f"features.{cut}.block.{rest}"
            else:
                names[key] = f"features.{cut + i}.{rest}"
    return names


def _unit(prefix: str, which: str, tail: str) -> str | None:
    """A ConvNormAct's ``0.weight`` (conv) or ``1.<bn>`` (BatchNorm) under our ``prefix``."""
    if which == "0" and tail == "weight":
        return f"{prefix}.conv.weight"
    return f"{prefix}.bn.{tail}" if which == "1" and tail in BN_PARAMS else None


def _head_key(kind: str, level: str, rest: str) -> str | None:
    ours = f"{'cls_head' if kind == 'classification' else 'box_head'}.{level}"
    if m := re.fullmatch(r"0\.([01])\.(\w+)", rest):
        return _unit(f"{ours}.0", m.group(1), m.group(2))
    return f"{ours}.1.{rest[2:]}" if rest in ("1.weight", "1.bias") else None


def to_native(state: Mapping[str, torch.Tensor], model: nn.Module) -> MappedState:
    """Translate a torchvision SSDLite state dict to our SSDLite's names (shapes unchanged)."""
    out = MappedState(description=describe(state))
    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(model, "cls_head"):
        out.description += f" (the model, {type(model).__name__}, is not an SSDLite detector)"
        out.unexpected.extend(state)
        return out
    names = _uncut_backbone(state)
    inner = tv_classifier.to_native({names[k]: v for k, v in state.items() if k in names}, backbone)
    back = {v: k for k, v in names.items()}
    for key, value in inner.tensors.items():
        out.put(f"backbone.{key}", value, back[inner.origin[key]])
    out.unexpected.extend(back[k] for k in inner.unexpected)
    for key, value in state.items():
        if key in names:
            continue
        new: str | None = None
        if m := _EXTRA.fullmatch(key):
            new = _unit(f"extras.{m.group(1)}.{m.group(2)}", m.group(3), m.group(4))
        elif m := _HEAD.fullmatch(key):
            new = _head_key(*m.groups())
        if new is None:
            out.unexpected.append(key)
        else:
            out.put(new, value, key)
    return out
