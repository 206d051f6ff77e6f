"""Keras ``keras.applications`` MobileNet / MobileNetV2 / MobileNetV3 weight files -> our names.

Two HDF5 layouts are read with h5py alone (no TensorFlow, no Keras):

* legacy ``.h5`` (what keras.applications publishes, and ``model.save_weights("x.h5")`` in Keras 2):
  one group per layer *name*, whose ``weight_names`` attribute lists its arrays in order; a full-model
  file keeps the same under ``model_weights``. tf.keras V3 names contain slashes
  (``expanded_conv_1/expand/BatchNorm``); Keras 3 spells the same ``expanded_conv_1_expand_bn``. Names
  are normalised so that both match.
* Keras 3 ``.weights.h5``: ``layers/<class>[_<n>]/vars/<i>``, i.e. layers are numbered per class
  in model order and their names are not stored. The expected layer sequence is rebuilt from our model
  (the same order ``keras.applications`` creates them in) and paired class by class.

Arrays are converted to PyTorch layouts: conv kernels HWIO -> OIHW, depthwise HW(C)(1) -> (C)1HW, Dense
(in, out) -> (out, in), 1x1 conv heads -> Linear. BatchNorm eps is 1e-3 everywhere; padding is TF "same"
(Keras pads stride-2 layers asymmetrically); inputs are scaled to [-1, 1] (mean = std = 0.5 on [0, 1]
images; V3's in-model Rescaling layer does the same from [0, 255]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...models.blocks import ConvBlock, block_type_of
from ...models.native import WeightsError
from ._common import MappedState, block_units, family, flat_blocks, has_head_hidden

__all__ = ["BN_EPS", "KerasFile", "KerasLayer", "classifier_classes", "describe", "expected_layers", "read_keras_file",
           "to_native"]

BN_EPS = 1e-3

# Keras 3 class names as snake case, the prefix of a layer's group in a .weights.h5 file.
CONV, DWCONV, BN, DENSE = "conv2d", "depthwise_conv2d", "batch_normalization", "dense"


@dataclass(frozen=True)
class KerasLayer:
    """One weighted Keras layer: its name, class, and the place in our model it fills.

    ``kind`` says how to convert its arrays: ``conv``, ``dwconv``, ``bn``, ``dense`` (Dense layer),
    ``conv_linear`` (1x1 conv with bias on pooled features, i.e. a Linear), ``se_reduce``/``se_expand``.
    """

    name: str
    cls: str
    target: str
    kind: str


@dataclass
class KerasFile:
    """Arrays read from a Keras weights file, by normalised layer name or by class and position."""

    path: Path
    layout: str  # "legacy" or "keras3"
    by_name: dict[str, list[np.ndarray]]
    by_class: dict[str, list[tuple[str, list[np.ndarray]]]]
    raw_names: dict[str, str]  # normalised -> as written in the file


def normalise(name: str) -> str:
    """tf.keras ``expanded_conv/depthwise/BatchNorm`` and Keras 3 ``expanded_conv_depthwise_bn`` agree."""
    name = name.lower().replace("/batchnorm", "_bn").replace("/", "_")
    return name


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "reading Keras .h5 weights needs h5py (no TensorFlow): pip install 'mobilenets[keras]'"
        ) from None
    return h5py


def read_keras_file(path: str | Path) -> KerasFile:
    """Read every weight array of a Keras HDF5 weights file without Keras or TensorFlow."""
    h5py = _import_h5py()
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    try:
        with f:
            if "layers" in f and isinstance(f["layers"], h5py.Group) and "layer_names" not in f.attrs:
                return _read_keras3(path, f, h5py)
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            if "layer_names" not in group.attrs:
                raise WeightsError(
                    f"{path} is an HDF5 file but not Keras weights: neither a 'layer_names' attribute (legacy .h5) "
                    "nor a 'layers' group (Keras 3 .weights.h5)"
                )
            return _read_legacy(path, group)
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} could not be read as Keras weights (truncated or corrupt?): {exc}") from None


def classifier_classes(path: str | Path) -> int | None:
    """The class count of a Keras file's classifier from the array shapes alone (no array is read).

    Legacy files name the layer (``conv_preds`` V1, ``predictions``/``Logits`` V2, ``logits`` V3); Keras 3
    files only number layers per class, and the classifier is the last Dense (V2) or Conv2D (V1, V3).
    ``None`` when the file has no classifier (``include_top=False``) or cannot be read: the loader then
    says what is wrong with it.
    """
    h5py = _import_h5py()
    try:
        with h5py.File(path, "r") as f:
            if "layers" in f and isinstance(f["layers"], h5py.Group) and "layer_names" not in f.attrs:
                last: dict[str, tuple[int, Any]] = {}
                for name, g in f["layers"].items():
                    m = re.fullmatch(r"(conv2d|dense)(?:_(\d+))?", name)
                    if m and isinstance(g, h5py.Group) and "vars" in g and "0" in g["vars"]:
                        n = int(m.group(2) or 0)
                        if m.group(1) not in last or n > last[m.group(1)][0]:
                            last[m.group(1)] = (n, g["vars"]["0"].shape)
                shape = (last.get("dense") or last.get("conv2d") or (0, None))[1]
                return int(shape[-1]) if shape else None
            group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            for layer in (_str(n) for n in group.attrs.get("layer_names", [])):
                if normalise(layer) in ("conv_preds", "predictions", "logits"):
                    names = [_str(n) for n in group[layer].attrs.get("weight_names", [])]
                    return int(group[layer][names[0]].shape[-1]) if names else None
    except (OSError, KeyError, ValueError, RuntimeError):
        return None
    return None


def _str(value: bytes | str) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_legacy(path: Path, group: Any) -> KerasFile:
    by_name: dict[str, list[np.ndarray]] = {}
    raw: dict[str, str] = {}
    for layer in (_str(n) for n in group.attrs["layer_names"]):
        g = group[layer]
        names = [_str(n) for n in g.attrs.get("weight_names", [])]
        if not names:
            continue
        by_name[normalise(layer)] = [np.asarray(g[n][()]) for n in names]
        raw[normalise(layer)] = layer
    return KerasFile(path, "legacy", by_name, {}, raw)


def _read_keras3(path: Path, f: Any, h5py: Any) -> KerasFile:
    by_class: dict[str, list[tuple[int, str, list[np.ndarray]]]] = {}
    for name, g in f["layers"].items():
        if not isinstance(g, h5py.Group) or "vars" not in g or not len(g["vars"]):
            continue
        m = re.fullmatch(r"(.+?)(?:_(\d+))?", name)
        assert m is not None
        cls, n = m.group(1), int(m.group(2) or 0)
        arrays = [np.asarray(g["vars"][str(i)][()]) for i in range(len(g["vars"]))]
        by_class.setdefault(cls, []).append((n, f"layers/{name}", arrays))
    ordered = {cls: [(label, arrays) for _, label, arrays in sorted(items, key=lambda t: t[0])]
               for cls, items in by_class.items()}
    return KerasFile(path, "keras3", {}, ordered, {})


# ------------------------------------------------------------------------------------- layer tables
def _conv_pair(name: str, target: str, depthwise: bool = False, bn: str = "_bn") -> list[KerasLayer]:
    return [KerasLayer(name, DWCONV if depthwise else CONV, f"{target}.conv", "dwconv" if depthwise else "conv"),
            KerasLayer(name + bn, BN, f"{target}.bn", "bn")]


def _block_layers(p: str, prefix: str, block: nn.Module) -> list[KerasLayer]:
    """A V2/V3 block's layers: each unit named ``<p><suffix>`` by its block type's ``keras_names``."""
    block_type = block_type_of(block)
    names = block_type.keras_names if block_type else {}
    layers: list[KerasLayer] = []
    for unit, kind in block_units(prefix, block):
        part = unit.rsplit(".", 1)[1]
        if kind == "se":
            layers.append(KerasLayer(p + "squeeze_excite_conv", CONV, f"{unit}.conv_reduce", "se"))
            layers.append(KerasLayer(p + "squeeze_excite_conv_1", CONV, f"{unit}.conv_expand", "se"))
        else:
            layers += _conv_pair(p + names[part], unit, depthwise=part == "conv_dw")
    return layers


def expected_layers(model: nn.Module) -> list[KerasLayer]:
    """The weighted layers keras.applications creates for this architecture, in creation order."""
    fam = family(model)
    blocks = flat_blocks(model)
    layers: list[KerasLayer] = []
    if fam == "mobilenet_v1":
        layers += _conv_pair("conv1", "stem")
        for n, (prefix, _) in enumerate(blocks, start=1):
            layers += _conv_pair(f"conv_dw_{n}", f"{prefix}.conv_dw", depthwise=True)
            layers += _conv_pair(f"conv_pw_{n}", f"{prefix}.conv_pw")
        layers.append(KerasLayer("conv_preds", CONV, "classifier", "conv_linear"))
    elif fam == "mobilenet_v2":
        layers += [KerasLayer("conv1", CONV, "stem.conv", "conv"), KerasLayer("bn_conv1", BN, "stem.bn", "bn")]
        for n, (prefix, block) in enumerate(blocks):
            if isinstance(block, ConvBlock):
                layers += _conv_pair("conv_1", prefix)
                continue
            layers += _block_layers("expanded_conv_" if n == 0 else f"block_{n}_", prefix, block)
        layers.append(KerasLayer("predictions", DENSE, "classifier", "dense"))
    elif fam in ("mobilenet_v3_large", "mobilenet_v3_small"):
        layers += _conv_pair("conv", "stem")
        for n, (prefix, block) in enumerate(blocks):
            if isinstance(block, ConvBlock):
                layers += _conv_pair("conv_1", prefix)
                continue
            layers += _block_layers("expanded_conv_" if n == 0 else f"expanded_conv_{n}_", prefix, block)
        if has_head_hidden(model):
            layers.append(KerasLayer("conv_2", CONV, "head_hidden.0", "conv_linear"))
        layers.append(KerasLayer("logits", CONV, "classifier", "conv_linear"))
    else:
        raise ValueError(f"Keras weights exist for MobileNet V1/V2/V3 only, not {fam}")
    return layers


def describe(kf: KerasFile) -> str:
    names = set(kf.by_name)
    if kf.layout == "keras3":
        counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(kf.by_class.items()))
        return f"Keras 3 weights ({counts})"
    kind = ("MobileNetV1" if "conv_dw_1" in names else "MobileNetV2" if "block_1_expand" in names
            else "MobileNetV3" if "expanded_conv_1_expand" in names or "expanded_conv_1_depthwise" in names
            else "unknown architecture")
    return f"Keras {kind} weights ({len(names)} layers)"


# Other spellings of the same layer in published files: keras-applications' MobileNetV2 (which wrote
# the published V2 weights) named its classifier "Logits"; Keras 3 calls it "predictions".
_ALIASES = {"predictions": ("logits",)}


def _find(kf: KerasFile, name: str) -> str | None:
    for candidate in (normalise(name), *_ALIASES.get(normalise(name), ())):
        if candidate in kf.by_name:
            return candidate
    return None


# ----------------------------------------------------------------------------------------- convert
_BN_NAMES = ("weight", "bias", "running_mean", "running_var")


def _convert(layer: KerasLayer, arrays: list[np.ndarray], out: MappedState, label: str) -> None:
    """Put one Keras layer's arrays into ``out`` in PyTorch layout (shapes are checked later)."""
    t = [torch.from_numpy(np.ascontiguousarray(a)).float() for a in arrays]
    if layer.kind == "bn":
        for name, value in zip(_BN_NAMES, t):
            out.put(f"{layer.target}.{name}", value, f"{label}[{name}]")
        if len(t) != 4:
            out.unexpected.append(f"{label}: {len(t)} arrays, expected gamma, beta, moving mean, moving variance")
        return
    kernel, rest = t[0], t[1:]
    if layer.kind == "dwconv":
        h, w, c, mult = kernel.shape if kernel.ndim == 4 else (*kernel.shape, 1)
        weight = kernel.reshape(h, w, c * mult).permute(2, 0, 1).unsqueeze(1)
    elif layer.kind == "dense":
        weight = kernel.t()
    elif kernel.ndim == 4 and layer.kind in ("conv_linear",):
        weight = kernel.permute(3, 2, 0, 1).flatten(1)  # 1x1 conv on pooled features == Linear
    elif kernel.ndim == 4:
        weight = kernel.permute(3, 2, 0, 1)
    else:
        weight = kernel
    out.put(f"{layer.target}.weight", weight.contiguous(), f"{label}[kernel]")
    if rest:
        out.put(f"{layer.target}.bias", rest[0], f"{label}[bias]")
    if len(rest) > 1:
        out.unexpected.append(f"{label}: {len(t)} arrays, expected kernel and bias")


def to_native(kf: KerasFile, model: nn.Module) -> MappedState:
    """Translate a Keras weights file to our model's names and PyTorch layouts."""
    out = MappedState(description=describe(kf))
    layers = expected_layers(model)
    if kf.layout == "legacy":
        found = {la.name: _find(kf, la.name) for la in layers}
        if not all(found.values()) and len(kf.by_name) == len(layers):
            # Keras itself loads legacy files by layer order, not by name; do the same when the names
            # differ (another Keras version's spelling) but the number of weighted layers agrees.
            found = dict(zip((la.name for la in layers), kf.by_name))
        for layer in layers:
            key = found[layer.name]
            if key is not None:
                _convert(layer, kf.by_name[key], out, kf.raw_names[key])
        used = set(found.values())
        out.unexpected += [kf.raw_names[k] for k in kf.by_name if k not in used]
        return out
    # Keras 3: pair the file's <class>_<n> groups with the expected layers of that class, in order.
    for cls in sorted({la.cls for la in layers} | set(kf.by_class)):
        expected = [la for la in layers if la.cls == cls]
        found = kf.by_class.get(cls, [])
        for layer, (label, arrays) in zip(expected, found):
            _convert(layer, arrays, out, f"{label} ({layer.name})")
        out.unexpected += [label for label, _ in found[len(expected):]]
    return out
