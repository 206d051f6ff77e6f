"""Loading weights into a model: torchvision, timm, Keras and native checkpoints, tags and hub repositories.

:func:`load_weights` reads torchvision and timm state dicts (``.pth``, ``.pt``, ``.bin``,
``.safetensors``) and Keras weight files (legacy ``.h5`` and Keras 3 ``.weights.h5``, with h5py only),
maps names and layouts onto our model (:mod:`mobilenets.weights.sources`), applies the source's
BatchNorm epsilon, padding mode and input normalisation, and names every tensor it could not place.
:func:`load_pretrained` resolves a registry tag, an ``hf-hub:`` repository or a native directory first;
:func:`from_pretrained` rebuilds a model from a native directory.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..constants import IMAGENET_MEAN_STD, TF_MEAN_STD
from ..models.native import CONFIG_NAME, WEIGHTS_NAME, WeightsError, read_config
from ..models.registry import build_model
from . import registry, sources
from .files import _resolve_weights_path, load_state_dict_file, sniff_format
from .hub import is_hub_reference, resolve_hub
from .native import restore_preprocessing
from .options import _not_found

__all__ = ["LoadResult", "from_pretrained", "load_pretrained", "load_weights"]

log = logging.getLogger("mobilenets.weights")


@dataclass
class LoadResult:
    """What :func:`load_weights` did: the source it read, and every tensor it did not load, by name."""

    path: Path
    source: str
    description: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bn_eps: float | None = None
    pad_type: str | None = None


def _model_desc(model: nn.Module) -> str:
    name = getattr(model, "model_name", None) or getattr(getattr(model, "arch", None), "family", type(model).__name__)
    kwargs = getattr(model, "model_kwargs", None)
    if kwargs:
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    return str(name)


def _names(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


_SOURCE_MEAN_STD = {"torchvision": IMAGENET_MEAN_STD, "timm": IMAGENET_MEAN_STD, "timm_tf": TF_MEAN_STD,
                    "keras": TF_MEAN_STD}


def load_weights(
    model: nn.Module,
    path: str | Path,
    source: str = "auto",
    *,
    strict: bool = True,
    skip_classifier: bool | None = False,
) -> LoadResult:
    """Load a torchvision, timm, Keras or native checkpoint into ``model`` in place.

    Args:
        model: a model from :func:`mobilenets.create_model` with the source's architecture and widths.
        path: a ``.pth``/``.pt``/``.bin``/``.safetensors`` state dict, a Keras ``.h5``/``.weights.h5``
            file, or a directory holding one.
        source: ``"auto"`` (from the file: HDF5 is Keras, key names tell the others), ``"torchvision"``,
            ``"timm"``, ``"timm_tf"`` (timm's ``tf_`` ports), ``"keras"`` or ``"native"``. Auto-detected
            timm weights count as ``timm_tf`` when the model was built with ``pad_type="same"``.
        strict: raise when a tensor of the file has no place in the model or a model tensor is missing
            from the file; otherwise load what matches and report the rest in the result (and a warning).
            Shape mismatches always raise: such a file belongs to another architecture.
        skip_classifier: keep the model's own (freshly initialised) classifier instead of the file's;
            ``None`` skips it only when the class counts differ (fine-tuning on a new dataset).

    The source's BatchNorm epsilon, padding mode (TensorFlow "same" for Keras and ``tf_`` weights) and
    input normalisation (``pretrained_cfg`` mean/std) are applied to the model and recorded in its
    ``model_kwargs`` so that :func:`save_pretrained` reproduces it.
    """
    if source not in sources.SOURCES:
        raise ValueError(f"source={source!r} invalid; expected one of {sources.SOURCES}")
    path = _resolve_weights_path(Path(path))
    fmt = sniff_format(path)
    if fmt == "hdf5":
        if source not in ("auto", "keras"):
            raise WeightsError(f"{path} is an HDF5 (Keras) file, not a {source} checkpoint")
        source = "keras"
        mapped = sources.keras.to_native(sources.keras.read_keras_file(path), model)
    else:
        if source == "keras":
            raise WeightsError(f"{path} is not an HDF5 file, so not Keras weights (those are .h5 / .weights.h5)")
        state = load_state_dict_file(path)
        detected = sources.detect_source(state)
        if source == "auto":
            if detected is None:
                raise WeightsError(
                    f"{path}: cannot tell which implementation wrote it (keys such as {_names(list(state), 3)}); "
                    "pass source='torchvision', 'timm', 'timm_tf' or 'native'"
                )
            source = detected
            family = getattr(getattr(model, "arch", None), "family", "")
            if source == "timm" and getattr(model, "pad_type", "") == "same" and not family.startswith("mobilenet_v5"):
                source = "timm_tf"  # a tf_ port; V5's encoder is "same"-padded in timm itself
        elif detected is not None and detected != source.removesuffix("_tf"):
            raise WeightsError(f"{path} looks like a {detected} checkpoint (by its key names), not {source}")
        if source == "native":
            mapped = sources.MappedState(tensors=dict(state), origin={k: k for k in state},
                                         description="mobilenets state dict")
        elif source == "torchvision":
            tv = (sources.torchvision_detection if sources.torchvision_detection.looks_like(state)
                  else sources.torchvision_segmentation if sources.torchvision_segmentation.looks_like(state)
                  else sources.torchvision)
            mapped = tv.to_native(state, model)
        else:
            mapped = sources.timm.to_native(state, model)
    result = _apply(model, mapped, path, source, strict, skip_classifier)
    _adopt_source_settings(model, source, result)
    return result


def _apply(
    model: nn.Module, mapped: Any, path: Path, source: str, strict: bool, skip_classifier: bool | None
) -> LoadResult:
    own = model.state_dict()
    tensors: dict[str, torch.Tensor] = dict(mapped.tensors)
    result = LoadResult(path, source, mapped.description)
    what = f"{path} ({mapped.description})"

    file_w, own_w = tensors.get("classifier.weight"), own.get("classifier.weight")
    no_classifier = own_w is None
    prefixes = _class_prefixes(model)
    differ = _detector_classes(model, tensors, what)
    if differ is None:
        differ = _segmenter_classes(model, tensors, what)
    if differ is not None:  # a detector or segmenter: its class-dependent tensors are its class convs
        no_classifier = False
        skip_classifier = bool(differ) if skip_classifier is None else skip_classifier
        if differ and not skip_classifier:
            raise WeightsError(differ)
    if skip_classifier is None:
        skip_classifier = file_w is not None and (no_classifier or own_w.shape != file_w.shape)
    if file_w is not None and own_w is not None and not skip_classifier and file_w.shape != own_w.shape \
            and file_w.shape[1:] == own_w.shape[1:]:
        raise WeightsError(
            f"{what} has {file_w.shape[0]} classes but the model has {own_w.shape[0]} "
            f"(classifier.weight {tuple(file_w.shape)} vs {tuple(own_w.shape)}): build the model with "
            f"num_classes={file_w.shape[0]} to use the file's classifier, or load with skip_classifier=True "
            "to keep a fresh one for fine-tuning"
        )
    if skip_classifier or no_classifier:
        for key in [k for k in tensors if k.startswith(prefixes)]:
            result.skipped.append(mapped.origin.get(key, key))
            del tensors[key]

    features_only = bool(getattr(model, "features_only", False))
    mismatched = [
        f"{k} (file: {mapped.origin.get(k, k)}) {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in tensors.items()
        if k in own and own[k].shape != v.shape
    ]
    result.unexpected = list(mapped.unexpected) + [mapped.origin.get(k, k) for k in tensors if k not in own]
    result.missing = [
        k for k in own
        if k not in tensors and not k.endswith("num_batches_tracked")
        and not (skip_classifier and k.startswith(prefixes))
    ]
    if features_only:  # a backbone drops the head and the blocks past its deepest level on purpose
        result.unexpected = []
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: " + "; ".join(mismatched[:4]))
    if result.missing and (strict or mismatched):
        problems.append(f"{len(result.missing)} model tensors missing from the file: {_names(result.missing)}")
    if result.unexpected and (strict or mismatched):
        problems.append(f"{len(result.unexpected)} file tensors with no place in the model: {_names(result.unexpected)}")
    issue = _structural_issue(model, source)
    if issue and strict:
        problems.append(issue)
    if problems:
        raise WeightsError(f"{what} does not match the model {_model_desc(model)}: " + "; ".join(problems))
    if result.missing or result.unexpected or issue:
        warnings.warn(
            f"{path}: loaded non-strictly; missing {_names(result.missing)}; unexpected {_names(result.unexpected)}"
            + (f"; {issue}" if issue else ""),
            stacklevel=3,
        )
    load = {k: v.to(own[k].dtype) for k, v in tensors.items() if k in own}
    model.load_state_dict(load, strict=False)
    return result


# What a class count changes: a classifier's Linear, or the 1x1 convs ending a detector's class heads.
_CLASS_PREFIXES = ("classifier.", *(f"cls_head.{level}.1." for level in range(16)))


def _class_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of ``model``'s class-dependent tensors; a segmenter lists its own (``class_layers``)."""
    return _CLASS_PREFIXES + tuple(f"{name}." for name in getattr(model, "class_layers", ()))


def _segmenter_classes(model: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> str | None:
    """For a segmenter (a model with ``class_layers``): ``""`` if the file's class count is the model's, else why not.

    ``None`` for any other model.
    """
    layers = getattr(model, "class_layers", None)
    if not layers:
        return None
    key = f"{layers[0]}.weight"
    file_w, own_w = tensors.get(key), model.state_dict().get(key)
    if file_w is None or own_w is None or file_w.shape == own_w.shape or file_w.shape[1:] != own_w.shape[1:]:
        return ""
    return (f"{what} has {file_w.shape[0]} classes but the model has {own_w.shape[0]} "
            f"({key} {tuple(file_w.shape)} vs {tuple(own_w.shape)}): build the model with "
            f"num_classes={file_w.shape[0]} to use the file's class convolutions, or load with "
            "skip_classifier=True to keep fresh ones for fine-tuning")


def _detector_classes(model: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> str | None:
    """For a detector (a model with ``cls_head``): ``""`` if the file's class count is the model's, else why not.

    ``None`` for any other model. The class count is read from the first level, whose class and box
    outputs are ``classes x anchors`` and ``4 x anchors``.
    """
    if not hasattr(model, "cls_head"):
        return None
    own = model.state_dict()
    cls, box = tensors.get("cls_head.0.1.weight"), tensors.get("box_head.0.1.weight")
    mine = own.get("cls_head.0.1.weight")
    if cls is None or box is None or mine is None or cls.shape == mine.shape or cls.shape[1:] != mine.shape[1:]:
        return ""
    anchors = box.shape[0] // 4
    file_classes = cls.shape[0] // anchors if anchors else "?"
    return (f"{what} has {file_classes} classes but the model has {getattr(model, 'num_classes', '?')} "
            f"(cls_head.0.1.weight {tuple(cls.shape)} vs {tuple(mine.shape)}): build the model with "
            f"num_classes={file_classes} to use the file's class heads, or load with skip_classifier=True "
            "to keep fresh ones for fine-tuning")


def _structural_issue(model: nn.Module, source: str) -> str | None:
    """Architecture choices a file cannot carry but its outputs depend on (activation functions)."""
    arch = getattr(model, "arch", None)
    if arch is None or arch.family != "mobilenet_v1" or source not in ("timm", "timm_tf", "keras"):
        return None
    if arch.extra.get("act", "relu") != "relu6":
        return (f"{source}'s MobileNetV1 uses ReLU6 but the model ReLU: build it with act='relu6' "
                "(create_model('mobilenet_v1', pretrained=PATH) does so by itself)")
    return None


def _adopt_source_settings(model: nn.Module, source: str, result: LoadResult) -> None:
    """Give the model the source's BatchNorm eps, padding and input normalisation (recorded for saving)."""
    kwargs = getattr(model, "model_kwargs", None)
    arch = getattr(model, "arch", None)
    options = sources.architecture_options(source, arch.family if arch is not None else getattr(model, "family", ""))
    eps = options.get("bn_eps")
    if eps is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = eps
        result.bn_eps = eps
        if isinstance(kwargs, dict):
            kwargs["bn_eps"] = eps
    pad = options.get("pad_type")
    if pad is not None and hasattr(model, "set_pad_type"):
        model.set_pad_type(pad)  # also records it in model_kwargs
        result.pad_type = pad
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and source != "native":
        cfg["source"] = source
        # A detector normalises its own input (torchvision's SSDLite: 0.5 / 0.5), whatever the source.
        # ... and a family that states its weights' normalisation (MobileNetV5) keeps its own.
        own = getattr(arch, "mean", None) is not None
        if source in _SOURCE_MEAN_STD and getattr(model, "in_chans", 3) == 3 and cfg.get("task") != "detect" and not own:
            cfg["mean"], cfg["std"] = _SOURCE_MEAN_STD[source]
    log.info("loaded %s weights from %s (bn eps %s, padding %r)", source, result.path, eps, pad)


def load_pretrained(model: nn.Module, path: str | Path, *, skip_classifier: bool | None = None) -> nn.Module:
    """Load a registry tag, an ``hf-hub:`` repository, a native directory or any weights file into ``model``.

    ``skip_classifier=None`` skips the classifier automatically when the class counts differ, which is
    what fine-tuning on a new dataset needs; the classifier then keeps its fresh initialisation.
    """
    family = getattr(getattr(model, "arch", None), "family", None)
    if is_hub_reference(path):
        checkpoint = resolve_hub(str(path))
        if family is not None and family != checkpoint.arch:
            raise WeightsError(f"{path} holds {checkpoint.arch} weights, but the model is {family}")
        assert checkpoint.weights is not None
        try:
            load_weights(model, checkpoint.weights, source=checkpoint.source, skip_classifier=skip_classifier)
        except WeightsError as exc:
            kw = ", ".join(f"{k}={v!r}" for k, v in checkpoint.kwargs.items() if k != "num_classes")
            raise WeightsError(
                f"{exc}. {path} holds {checkpoint.arch}({kw}); create_model({checkpoint.arch!r}, pretrained={str(path)!r}) "
                "builds it so"
            ) from None
        checkpoint.apply_preprocessing(model)
        return model
    if isinstance(path, str) and not Path(path).exists() and registry.is_tag(path):
        entry = registry.get_pretrained(path)
        if family is not None and family != entry.arch:
            raise WeightsError(f"pretrained tag {path!r} holds {entry.arch} weights, but the model is {family}")
        file = registry.fetch(entry)
        try:
            load_weights(model, file, source=entry.source, skip_classifier=skip_classifier)
        except WeightsError as exc:
            kw = ", ".join(f"{k}={v!r}" for k, v in entry.kwargs.items())
            raise WeightsError(
                f"{exc}. Tag {entry.tag!r} was published for create_model({entry.arch!r}{', ' + kw if kw else ''}); "
                f"create_model({entry.arch!r}, pretrained={entry.tag!r}) builds it so"
            ) from None
        entry.apply_preprocessing(model)
        return model
    path = Path(path)
    if not path.exists():
        raise _not_found(path)
    native_dir = path.is_dir() and (path / CONFIG_NAME).is_file()
    load_weights(model, path / WEIGHTS_NAME if native_dir else path, skip_classifier=skip_classifier)
    if native_dir:
        restore_preprocessing(model, read_config(path))
    return model


def from_pretrained(directory: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild a model from a ``save_pretrained`` directory (a training run directory works too).

    ``overrides`` replace the saved keywords; a different ``num_classes`` keeps a fresh classifier
    (fine-tuning) and loads everything else.
    """
    config = read_config(directory)
    kwargs = {**config.get("kwargs", {}), **overrides}
    model = build_model(config["architecture"], **kwargs)
    skip = None if "num_classes" in overrides else False
    load_weights(model, Path(directory) / WEIGHTS_NAME, source="native", skip_classifier=skip)
    if config.get("class_names") and not (skip is None and model.num_classes != config.get("num_classes")):
        model.class_names = list(config["class_names"])
    restore_preprocessing(model, config)
    return model
