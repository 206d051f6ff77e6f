"""timm MobileNetV1 / V2 / V3 / V4 / V5 state dicts (``mobilenetv1_*``, ``mobilenetv2_*``, ``mobilenetv3_*``,
``tf_mobilenetv3_*``, ``mobilenetv4_*``, ``mobilenetv5_*``) -> our names.

timm's EfficientNet-style builder uses the same stage grouping as our tables, so ``blocks.<s>.<i>`` maps
to ``blocks.<s>.<i>``; only the names inside a block differ (``bn1``/``bn2``/``bn3`` follow the convs in
order). The head differs per family: V2's 1280 conv is timm's ``conv_head`` + ``bn2`` (our last stage),
V3's 1280/1024 layer is a 1x1 conv with bias (our ``head_hidden`` Linear: same arithmetic, reshaped).
BatchNorm eps is PyTorch's 1e-5, except the ``tf_`` ports of the TensorFlow weights (eps 1e-3, TF "same"
padding, inputs normalised with mean = std = 0.5), which is what the ``timm_tf`` source means.
MobileNetV4's universal inverted bottleneck and attention blocks use timm's inner names unchanged; its
fused IB renames like the others, and its head is ``conv_head`` (no bias) + ``norm_head`` (our
``head_hidden`` Linear + BatchNorm1d). MobileNetV5's stem is a ``ConvNormAct`` (``conv_stem.conv`` with a
bias, ``conv_stem.bn`` its RMSNorm) and its MSFA neck (``msfa.*``) has our names; Gemma 3n's own
checkpoints hold the same tensors under ``model.vision_tower.timm_model.``, which is stripped.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..._validate import did_you_mean
from ...models.blocks import ConvBlock, block_type_of
from ._common import BN_PARAMS, MappedState, flat_blocks, has_head_hidden

__all__ = ["BN_EPS", "BN_EPS_TF", "architecture", "describe", "looks_like", "to_native"]

BN_EPS = 1e-5
BN_EPS_TF = 1e-3

_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)")
GEMMA_PREFIX = "model.vision_tower.timm_model."  # Gemma 3n's checkpoints nest the timm encoder under this
# timm's names inside a block are each block type's ``timm_names`` (mobilenets.models.blocks.BLOCK_TYPES).


# timm's architecture names (``timm.list_models("*mobilenetv[1-4]*")``) that equal one of our models, by
# pattern; the three digits are the width multiplier x 100.
_ARCH_PATTERNS = (
    (re.compile(r"mobilenetv1_(?P<w>\d{3})"), "mobilenet_v1"),
    (re.compile(r"mobilenetv2_(?P<w>\d{3})"), "mobilenet_v2"),
    (re.compile(r"(?P<tf>tf_)?mobilenetv3_(?P<size>large|small)_(?P<minimal>minimal_)?(?P<w>\d{3})"), "mobilenet_v3"),
    (re.compile(r"mobilenetv4_(?P<kind>conv|hybrid)_(?P<size>small|medium|large)(?:_(?P<w>\d{3}))?"), "mobilenet_v4"),
    (re.compile(r"mobilenetv5_(?P<size>300m|base)(?P<enc>_enc)?"), "mobilenet_v5"),
)
# timm variants that change the architecture in ways ours do not express, with what they change.
_UNSUPPORTED = (
    (re.compile(r"mobilenetv1_\d{3}h"), "a 1x1 head conv + BatchNorm before the classifier"),
    (re.compile(r"mobilenetv[23]_.*\d{3}d"), "a depth multiplier (more blocks per stage)"),
    (re.compile(r"mobilenetv3_rw"), "timm's own V3 variant: another stage layout, no head bias"),
    (re.compile(r"mobilenetv4_conv_(aa|blur)_.*"), "anti-aliased downsampling"),
)
# timm's published names, for suggesting the closest to a misspelt one.
_KNOWN_NAMES = (
    "mobilenetv1_100", "mobilenetv1_125", "mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075",
    "mobilenetv2_100", "mobilenetv2_140", "mobilenetv3_large_075", "mobilenetv3_large_100",
    "mobilenetv3_small_050", "mobilenetv3_small_075", "mobilenetv3_small_100", "tf_mobilenetv3_large_075",
    "tf_mobilenetv3_large_100", "tf_mobilenetv3_large_minimal_100", "tf_mobilenetv3_small_075",
    "tf_mobilenetv3_small_100", "tf_mobilenetv3_small_minimal_100", "mobilenetv4_conv_small_035",
    "mobilenetv4_conv_small_050", "mobilenetv4_conv_small", "mobilenetv4_conv_medium", "mobilenetv4_conv_large",
    "mobilenetv4_hybrid_medium", "mobilenetv4_hybrid_large", "mobilenetv4_hybrid_medium_075",
    "mobilenetv4_hybrid_large_075", "mobilenetv5_300m", "mobilenetv5_300m_enc", "mobilenetv5_base",
)
SUPPORTED_NAMES = ("mobilenetv1_<NNN>, mobilenetv2_<NNN>, [tf_]mobilenetv3_{large,small}[_minimal]_<NNN>, "
                   "mobilenetv4_{conv,hybrid}_{small,medium,large}[_<NNN>], mobilenetv5_{300m[_enc],base} (NNN = width x 100)")


def architecture(name: str) -> tuple[str, dict[str, Any], str]:
    """Our model name, its ``create_model`` keywords and the loader source for a timm architecture name.

    ``"tf_mobilenetv3_large_075"`` -> ``("mobilenet_v3_large", {"width_mult": 0.75, "width_convention":
    "timm"}, "timm_tf")``. The source carries what the name implies beyond the widths (the ``tf_``
    ports' padding and eps, V1's ReLU6: :func:`mobilenets.weights.sources.architecture_options`). A timm
    variant ours cannot reproduce is a ``ValueError`` naming it and the supported patterns.
    """
    base = name.split(".", 1)[0]  # "mobilenetv3_large_100.ra_in1k" is the architecture plus a weights tag
    for pattern, family in _ARCH_PATTERNS:
        m = pattern.fullmatch(base)
        if m is None:
            continue
        groups = m.groupdict()
        kwargs: dict[str, Any] = {}
        width = int(groups["w"]) / 100 if groups.get("w") else 1.0
        if width != 1.0:
            kwargs["width_mult"] = width
        source = "timm"
        arch = family
        if family == "mobilenet_v3":
            arch = f"mobilenet_v3_{groups['size']}"
            kwargs["width_convention"] = "timm"
            if groups["minimal"]:
                kwargs["minimalistic"] = True
            if groups["tf"]:
                source = "timm_tf"
        elif family == "mobilenet_v4":
            arch = f"mobilenet_v4_{groups['kind']}_{groups['size']}"
        elif family == "mobilenet_v5":
            arch = f"mobilenet_v5_{groups['size']}" + ("_enc" if groups["enc"] else "")
        return arch, kwargs, source
    for pattern, change in _UNSUPPORTED:
        if pattern.fullmatch(base):
            raise ValueError(f"timm architecture {name!r} has no mobilenets equivalent ({change}); "
                             f"supported: {SUPPORTED_NAMES}")
    hint = did_you_mean(base, _KNOWN_NAMES)
    raise ValueError(f"timm architecture {name!r} has no mobilenets equivalent{hint} (supported: {SUPPORTED_NAMES})")


def _unnest(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Gemma 3n checkpoint's vision tower as the timm state dict it is (other checkpoints unchanged)."""
    if f"{GEMMA_PREFIX}conv_stem.conv.weight" not in state:
        return state
    return {k[len(GEMMA_PREFIX):]: v for k, v in state.items() if k.startswith(GEMMA_PREFIX)}


def looks_like(state: dict[str, torch.Tensor]) -> bool:
    state = _unnest(state)
    stem = "conv_stem.weight" in state or "conv_stem.conv.weight" in state
    return stem and any(k.startswith("blocks.") for k in state)


def describe(state: dict[str, torch.Tensor]) -> str:
    state = _unnest(state)
    if "msfa.norm.weight" in state:
        stages = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
        return f"timm MobileNetV5 checkpoint with {len(stages)} stages and the MSFA neck"
    stages = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
    w = state.get("classifier.weight")
    classes = w.shape[0] if w is not None else "?"
    head = "conv_head+bn2" if "bn2.weight" in state else "conv_head" if "conv_head.weight" in state else "no head conv"
    return f"timm EfficientNet/MobileNetV3-style checkpoint with {len(stages)} stages, {head}, {classes} classes"


def _rename(rest: str, table: dict[str, str]) -> str | None:
    if rest.startswith("se.") and re.fullmatch(r"se\.(conv_reduce|conv_expand)\.(weight|bias)", rest):
        return rest
    name, _, param = rest.partition(".")
    if name not in table:
        return None
    if table[name].endswith("bn") or table[name] == "bn":
        return f"{table[name]}.{param}" if param in BN_PARAMS else None
    return f"{table[name]}.{param}" if param == "weight" else None


def to_native(state: dict[str, torch.Tensor], model: nn.Module) -> MappedState:
    """Translate a timm state dict to our model's names; V3's ``conv_head`` becomes a Linear weight."""
    state = _unnest(state)
    out = MappedState(description=describe(state))
    modules = dict(flat_blocks(model))
    last_prefix = next(reversed(modules)) if modules else None
    last_is_conv = last_prefix is not None and isinstance(modules[last_prefix], ConvBlock)
    hidden = has_head_hidden(model)
    own_keys = set(model.state_dict())
    for key, value in state.items():
        new: str | None = None
        if key == "conv_stem.weight":
            new = "stem.conv.weight"
        elif key.startswith("conv_stem."):  # V5: a ConvNormAct stem, our names below "stem."
            new = f"stem.{key[10:]}" if f"stem.{key[10:]}" in own_keys else None
        elif key.startswith("msfa."):  # V5's neck: timm's names are ours
            new = key if key in own_keys else None
        elif key.startswith("bn1."):
            new = f"stem.bn.{key[4:]}" if key[4:] in BN_PARAMS else None
        elif m := _BLOCK.fullmatch(key):
            prefix = f"blocks.{m.group(1)}.{m.group(2)}"
            block = modules.get(prefix)
            block_type = block_type_of(block) if block is not None else None
            table = block_type.timm_names if block_type else None
            if block_type and block_type.timm_same_names:
                inner = m.group(3) if f"{prefix}.{m.group(3)}" in own_keys else None
            else:
                inner = _rename(m.group(3), table) if table else None
            new = f"{prefix}.{inner}" if inner else None
        elif key.startswith("conv_head."):
            if hidden:  # V3: 1x1 conv with bias on the pooled features == our Linear
                new = f"head_hidden.0.{key[10:]}"
                if key.endswith(".weight") and value.ndim == 4:
                    value = value.flatten(1)
            elif last_is_conv and key == "conv_head.weight":  # V2: the 1280 conv, our last stage
                new = f"{last_prefix}.conv.weight"
        elif key.startswith("norm_head.") and hidden:  # V4: BatchNorm after the head conv
            new = f"head_hidden.1.{key[10:]}" if key[10:] in BN_PARAMS else None
        elif key.startswith("bn2.") and last_is_conv and not hidden:
            new = f"{last_prefix}.bn.{key[4:]}" if key[4:] in BN_PARAMS else None
        elif key in ("classifier.weight", "classifier.bias"):
            new = key
        if new is None:
            out.unexpected.append(key)
        else:
            out.put(new, value, key)
    return out
