"""torchvision MobileNetV2 / V3 state dicts -> our names.

torchvision numbers layers instead of naming them: ``features.0`` is the stem, ``features.1 .. n`` the
blocks in order and ``features.n+1`` the final 1x1 conv; inside a block, V3 lists its ConvNormAct units
as ``block.<j>`` (SE as ``fc1``/``fc2``) and V2 as ``conv.<j>``, with the linear projection split into a
bare conv and a BatchNorm. The j-th unit is our j-th unit of the same block (:func:`block_units`).
BatchNorm eps: 1e-5 for V2, 1e-3 for V3. Preprocessing: ImageNet mean/std, bilinear resize.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ._common import BN_PARAMS, MappedState, block_units, family, flat_blocks, has_head_hidden

__all__ = ["BN_EPS", "describe", "looks_like", "to_native"]

BN_EPS = {"mobilenet_v2": 1e-5, "mobilenet_v3_large": 1e-3, "mobilenet_v3_small": 1e-3}

_FEATURE = re.compile(r"features\.(\d+)\.(.+)")
_CLASSIFIER = re.compile(r"classifier\.(\d+)\.(weight|bias)")


def looks_like(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("features.0.0.") for k in state) and any(k.startswith("classifier.") for k in state)


def describe(state: dict[str, torch.Tensor]) -> str:
    """A one-line guess of what the checkpoint is, for error messages."""
    v3 = any(".block." in k for k in state)
    n = max((int(m.group(1)) for k in state if (m := _FEATURE.match(k))), default=0)
    linears = sorted({int(m.group(1)) for k in state if (m := _CLASSIFIER.match(k))})
    classes = state[f"classifier.{linears[-1]}.weight"].shape[0] if linears else "?"
    kind = ("MobileNetV3-Large" if n >= 16 else "MobileNetV3-Small") if v3 else "MobileNetV2"
    return f"torchvision {kind} with {n - 1} blocks and {classes} classes"


def _unit_key(unit: str, kind: str, tail: str) -> str | None:
    """``tail`` inside a ConvNormAct (``0.weight`` conv, ``1.<bn>`` BatchNorm) or an SE (``fc1``/``fc2``)."""
    if kind == "se":
        m = re.fullmatch(r"(fc1|fc2)\.(weight|bias)", tail)
        if not m:
            return None
        return f"{unit}.{'conv_reduce' if m.group(1) == 'fc1' else 'conv_expand'}.{m.group(2)}"
    if tail == "0.weight":
        return f"{unit}.conv.weight"
    m = re.fullmatch(r"1\.(\w+)", tail)
    return f"{unit}.bn.{m.group(1)}" if m and m.group(1) in BN_PARAMS else None


def _block_key(prefix: str, block: nn.Module, rest: str) -> str | None:
    units = block_units(prefix, block)
    if len(units) == 1 and units[0][1] == "conv" and units[0][0] == prefix:  # the final 1x1 conv
        return _unit_key(prefix, "conv", rest)
    m = re.fullmatch(r"block\.(\d+)\.(.+)", rest)  # V3: every unit is a ConvNormAct or an SE
    if m:
        j = int(m.group(1))
        return _unit_key(*units[j], m.group(2)) if j < len(units) else None
    m = re.fullmatch(r"conv\.(\d+)\.(.+)", rest)  # V2: ConvNormAct units, then a bare conv and a BN
    if not m:
        return None
    j, tail = int(m.group(1)), m.group(2)
    if "." in tail:  # "<j>.0.weight" / "<j>.1.<bn>": a ConvNormAct unit
        return _unit_key(*units[j], tail) if j < len(units) else None
    if j == len(units) - 1 and tail == "weight":
        return f"{units[j][0]}.conv.weight"
    if j == len(units) and tail in BN_PARAMS:
        return f"{units[j - 1][0]}.bn.{tail}"
    return None


def to_native(state: dict[str, torch.Tensor], model: nn.Module) -> MappedState:
    """Translate a torchvision MobileNetV2/V3 state dict to our model's names (shapes unchanged)."""
    out = MappedState(description=describe(state))
    v3_file = any(".block." in k for k in state)
    if v3_file != family(model).startswith("mobilenet_v3") and family(model).startswith("mobilenet_v"):
        out.description += f" (the model is {family(model)})"
    blocks = flat_blocks(model)
    linears = sorted({int(m.group(1)) for k in state if (m := _CLASSIFIER.match(k))})
    head_targets = ["head_hidden.0", "classifier"] if has_head_hidden(model) else ["classifier"]
    for key, value in state.items():
        new: str | None = None
        if m := _FEATURE.fullmatch(key):
            k, rest = int(m.group(1)), m.group(2)
            if k == 0:
                new = _unit_key("stem", "conv", rest)
            elif k - 1 < len(blocks):
                new = _block_key(*blocks[k - 1], rest)
        elif m := _CLASSIFIER.fullmatch(key):
            # Align from the end: the last Linear is the classifier, V3's one before it the hidden layer.
            idx = linears.index(int(m.group(1))) - (len(linears) - len(head_targets))
            new = f"{head_targets[idx]}.{m.group(2)}" if idx >= 0 else None
        if new is None:
            out.unexpected.append(key)
        else:
            out.put(new, value, key)
    return out
