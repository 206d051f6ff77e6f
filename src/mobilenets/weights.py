"""Weights in and out: the native format, and loading torchvision, timm and Keras checkpoints.

Native format: a directory with ``model.safetensors`` + ``config.json``, everything needed to rebuild
the model (:func:`save_pretrained` / :func:`from_pretrained`): the registered architecture and keywords,
class names and the preprocessing metadata evaluation and export read.

Foreign checkpoints: :func:`load_weights` reads torchvision and timm state dicts (``.pth``, ``.pt``,
``.bin``, ``.safetensors``) and Keras weight files (legacy ``.h5`` and Keras 3 ``.weights.h5``, with
h5py only), maps names and layouts onto our model (``mobilenets.sources``), applies the source's
BatchNorm epsilon, padding mode and input normalisation, and names every tensor it could not place.

Nothing is ever unpickled with code execution: safetensors and HDF5 hold plain arrays, and any other
file goes through ``torch.load(..., weights_only=True)``, which refuses (and says why) a file that needs
more than tensors and plain containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._validate import did_you_mean
from .constants import IMAGENET_MEAN_STD, TF_MEAN_STD
from .fileio import atomic_write_bytes

__all__ = [
    "FIXED_OPTIONS",
    "LoadResult",
    "PretrainedOptions",
    "WeightsError",
    "from_pretrained",
    "inspect_pretrained",
    "load_pretrained",
    "load_state_dict_file",
    "load_weights",
    "pretrained_defaults",
    "pretrained_kwargs",
    "save_pretrained",
    "sniff_format",
]

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1



class WeightsError(ValueError):
    """A weights file that cannot be used: corrupt, foreign, unsafe, or not matching the model."""


def _announce(message: str) -> None:
    """Log ``message`` at INFO, and print it to stderr when nobody configured logging.

    It reports a choice made on the caller's behalf (an architecture option a checkpoint needs), which
    must not go unseen: Python drops INFO records when logging is unconfigured, as it is under the
    ``mobilenets`` command line and in a plain script. An application with its own logging set-up
    gets the record only, filtered by its levels.
    """
    log.info(message)
    if not log.hasHandlers():
        print(f"mobilenets: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------------------- native
def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    *,
    class_names: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (each atomically)."""
    from safetensors.torch import save

    name = getattr(model, "model_name", None)
    if name is None:
        raise WeightsError("model has no model_name: build it with mobilenets.create_model to save it natively")
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    kwargs = dict(getattr(model, "model_kwargs", {}))
    kwargs["num_classes"] = int(getattr(model, "num_classes", kwargs.get("num_classes", 1000)))
    kwargs["in_chans"] = int(getattr(model, "in_chans", kwargs.get("in_chans", 3)))
    cfg = dict(getattr(model, "pretrained_cfg", {}))
    config = {
        "format": "mobilenets",
        "format_version": FORMAT_VERSION,
        "architecture": name,
        "kwargs": _jsonable(kwargs),
        "num_classes": kwargs["num_classes"],
        "class_names": list(class_names) if class_names is not None else None,
        "input_size": _jsonable(cfg.get("input_size")),
        "mean": _jsonable(cfg.get("mean")),
        "std": _jsonable(cfg.get("std")),
        "interpolation": cfg.get("interpolation"),
        "crop_pct": cfg.get("crop_pct"),
        # Where the weights came from (a registry tag or a converted file's source), if anywhere.
        **{k: cfg[k] for k in ("source", "tag") if cfg.get(k)},
        **(extra or {}),
    }
    atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(config, indent=2).encode())
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected a directory written by save_pretrained")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != "mobilenets" or "architecture" not in config:
        raise WeightsError(f"{path} is not a mobilenets config (missing format/architecture)")
    return config


# ----------------------------------------------------------------------------------- reading files
def sniff_format(path: str | Path) -> str:
    """The container format from the file's first bytes, never from its name alone.

    Returns ``"safetensors"``, ``"torch"`` (zip, ``torch.save``), ``"pickle"`` (legacy torch.save or a
    bare pickle), ``"hdf5"`` (Keras) or ``"unknown"``. Names lie (``.bin`` is pickle or safetensors,
    ``.pt`` is zip or pickle); the magic bytes decide which reader is safe to use.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "torch"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size:
        return "safetensors"
    return "unknown"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refusal_reason(exc: BaseException) -> str | None:
    """The line of a ``weights_only`` refusal that names the offending global, if it is one."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return None
    for line in text.splitlines():
        if "Unsupported" in line or "GLOBAL" in line or "not an allowed global" in line:
            # torch goes on to explain how to allowlist the global: not advice to give about a payload.
            return line.split(" Please use")[0].strip().rstrip(".")
    return _first_line(exc)


def _unwrap(obj: Any) -> Any:
    """Training checkpoints nest the weights (``{"state_dict": ...}``, ``{"model": ...}``); EMA first."""
    if isinstance(obj, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model", "model_state_dict", "module"):
            if isinstance(obj.get(key), dict) and obj[key] and all(isinstance(v, torch.Tensor) for v in obj[key].values()):
                return obj[key]
    return obj


def _strip_wrappers(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the prefixes DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``) add."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without executing pickled code: safetensors, or ``torch.load(weights_only=True)``.

    A directory means its ``model.safetensors``. Errors name the file and say what is wrong with it:
    empty, truncated, not a weights file, or refused because unpickling it would run code.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    fmt = sniff_format(path)
    if fmt == "hdf5":
        raise WeightsError(f"{path} is an HDF5 (Keras) file, not a PyTorch state dict: use load_weights()")
    if fmt == "unknown":
        with open(path, "rb") as fh:
            head = fh.read(12)
        raise WeightsError(
            f"{path} is not a weights file this loader reads (safetensors, a torch.save checkpoint or Keras "
            f"HDF5); it starts with {head!r}"
        )
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file (truncated?): {_first_line(exc)}") from None
        return _strip_wrappers(state)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling fails in many exception types; each means refused or corrupt
        reason = _refusal_reason(exc)
        if reason is not None:
            raise WeightsError(
                f"{path} was refused: loading it would execute code ({reason}). A weights file holds only "
                "tensors and plain containers; nothing in this one was run. Re-save it as safetensors or a "
                "plain state dict if you trust where it came from."
            ) from None
        raise WeightsError(f"{path} is truncated or corrupt: {type(exc).__name__}: {_first_line(exc)}") from None
    obj = _unwrap(obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors (found {type(obj).__name__})")
    return _strip_wrappers({str(k): v for k, v in obj.items()})


def _state_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a state-dict file, reading as little of it as possible.

    safetensors headers and zip checkpoints (memory-mapped) give them without reading the tensors; any
    other file, or one these fast paths cannot read, goes through :func:`load_state_dict_file`, whose
    errors say what is wrong with it (and which never runs pickled code either).
    """
    fmt = sniff_format(path)
    if fmt == "safetensors":
        from safetensors import safe_open

        with contextlib.suppress(Exception), safe_open(str(path), framework="pt") as fh:
            names = fh.keys()
            return _strip_wrappers({k: tuple(fh.get_slice(k).get_shape()) for k in names})
    elif fmt == "torch":
        with contextlib.suppress(Exception):
            obj = _unwrap(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
            if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
                return _strip_wrappers({str(k): tuple(v.shape) for k, v in obj.items()})
    return {k: tuple(v.shape) for k, v in load_state_dict_file(path).items()}


def _classifier_classes(shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """The class count of a state dict's classifier: the last ``classifier[.N].weight`` Linear."""
    found: list[tuple[int, int]] = []
    for key, shape in shapes.items():
        m = re.fullmatch(r"classifier(?:\.(\d+))?\.weight", key)
        if m and len(shape) == 2:
            found.append((int(m.group(1) or 0), shape[0]))
    return max(found)[1] if found else None


# --------------------------------------------------------------------------------------- load_weights
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


def _resolve_weights_path(path: Path) -> Path:
    if path.is_dir():
        for name in (WEIGHTS_NAME, "pytorch_model.bin", "model.pth", "model.pt"):
            if (path / name).is_file():
                return path / name
        candidates = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt", ".bin", ".h5"))
        if len(candidates) == 1:
            return candidates[0]
        raise FileNotFoundError(f"no single weights file in directory {path} (found {[p.name for p in candidates]})")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    return path


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
    from . import sources

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
            if source == "timm" and getattr(model, "pad_type", "") == "same":
                source = "timm_tf"
        elif detected is not None and detected != source.removesuffix("_tf"):
            raise WeightsError(f"{path} looks like a {detected} checkpoint (by its key names), not {source}")
        if source == "native":
            mapped = sources.MappedState(tensors=dict(state), origin={k: k for k in state},
                                         description="mobilenets state dict")
        elif source == "torchvision":
            mapped = sources.torchvision.to_native(state, model)
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
        for key in [k for k in tensors if k.startswith("classifier.")]:
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
        and not (skip_classifier and k.startswith("classifier."))
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
    from .sources import architecture_options

    kwargs = getattr(model, "model_kwargs", None)
    options = architecture_options(source, getattr(getattr(model, "arch", None), "family", ""))
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
        if source in _SOURCE_MEAN_STD and getattr(model, "in_chans", 3) == 3:
            cfg["mean"], cfg["std"] = _SOURCE_MEAN_STD[source]
    log.info("loaded %s weights from %s (bn eps %s, padding %r)", source, result.path, eps, pad)


# ------------------------------------------------------------------------------ pretrained / registry
# Architecture options a checkpoint fixes without storing them (mobilenets.sources.architecture_options).
FIXED_OPTIONS = ("act", "bn_eps", "pad_type")
_SOURCE_LABEL = {"torchvision": "torchvision", "timm": "timm", "timm_tf": "timm tf_ port", "keras": "Keras",
                 "native": "mobilenets"}


@dataclass(frozen=True)
class PretrainedOptions:
    """What a pretrained reference says about the model to build for it, known before building it.

    ``fixed``: options the weights were trained with that no state dict stores (MobileNetV1's
    activation, BatchNorm eps, padding mode): another value would silently change every output, so a
    caller's contradicting keyword is refused. ``defaults``: the other keywords the reference carries
    (widths, width convention, class count), which the caller may override; another ``num_classes``
    fine-tunes. ``what`` names the reference and its source for messages.
    """

    what: str
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


def _split_fixed(saved: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """``(fixed, defaults)`` from saved keywords; ``base`` are the fixed options the source implies."""
    defaults = dict(saved)
    fixed = dict(base or {})
    fixed.update({k: defaults.pop(k) for k in FIXED_OPTIONS if k in defaults})
    return fixed, defaults


def _not_found(pretrained: str | Path) -> FileNotFoundError:

    from . import pretrained as registry

    hint = did_you_mean(pretrained, registry.list_pretrained(), what="the tag")
    return FileNotFoundError(
        f"pretrained weights {pretrained} not found: neither a file, a directory, a registry tag "
        f"(see mobilenets.list_pretrained()) nor hf-hub:ORG/REPO{hint}"
    )


def inspect_pretrained(
    name: str, pretrained: str | Path, *, source: str = "auto", given: Mapping[str, Any] | None = None
) -> PretrainedOptions:
    """Read what ``pretrained`` implies for ``create_model(name, ...)`` without building anything.

    A registry tag and an ``hf-hub:`` repository name their architecture and keywords; a native
    directory's ``config.json`` records them; a foreign file's source (from its bytes and key names,
    as :func:`load_weights` detects it) fixes BatchNorm eps, padding and V1's ReLU6, and its classifier
    gives the class count. timm's ``tf_`` ports have timm's key names: a file counts as one when the
    caller passes ``pad_type="same"`` (or ``source="timm_tf"``), or, without a ``pad_type``, when its
    name starts with ``tf_`` as timm's release files of those ports do.
    """
    from . import pretrained as registry
    from . import sources
    from .hub import is_hub_reference, read_hub_config

    given = given or {}
    if is_hub_reference(pretrained):
        checkpoint = read_hub_config(str(pretrained))
        if checkpoint.arch != name:
            raise ValueError(f"{pretrained} holds {checkpoint.arch} weights, not {name}")
        fixed, defaults = _split_fixed(checkpoint.kwargs, sources.architecture_options(checkpoint.source, name))
        origin = (f"timm {checkpoint.config.get('architecture')}" if checkpoint.layout == "timm"
                  else "mobilenets")
        return PretrainedOptions(f"{pretrained} ({origin} weights)", fixed, defaults)
    if isinstance(pretrained, str) and not Path(pretrained).exists() and registry.is_tag(pretrained):
        entry = registry.get_pretrained(pretrained)
        if entry.arch != name:
            raise ValueError(f"pretrained tag {pretrained!r} holds {entry.arch} weights, not {name}")
        fixed, defaults = _split_fixed({**entry.kwargs, "num_classes": entry.num_classes},
                                       sources.architecture_options(entry.source, name))
        return PretrainedOptions(f"tag {entry.tag!r} ({_SOURCE_LABEL[entry.source]} weights)", fixed, defaults)
    path = Path(pretrained)
    if not path.exists():
        raise _not_found(pretrained)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        config = read_config(path)
        if config["architecture"] != name:
            raise ValueError(f"{path} holds {config['architecture']} weights, not {name}")
        fixed, defaults = _split_fixed(config.get("kwargs", {}))
        return PretrainedOptions(f"{pretrained} (mobilenets weights)", fixed, defaults)
    if source not in sources.SOURCES:
        raise ValueError(f"source={source!r} invalid; expected one of {sources.SOURCES}")
    file = _resolve_weights_path(path)
    reason = ""
    if sniff_format(file) == "hdf5":
        source = "keras" if source == "auto" else source  # another explicit source: load_weights refuses it
        classes = sources.keras.classifier_classes(file)
    else:
        shapes = _state_shapes(file)
        if source == "auto":
            source = sources.detect_source(shapes) or "auto"  # unknown: load_weights says so
        classes = _classifier_classes(shapes)
        if source == "timm" and given.get("pad_type", "same" if file.name.startswith("tf_") else "") == "same":
            source = "timm_tf"
            reason = ", by its pad_type='same'" if "pad_type" in given else ", by its tf_ file name"
    if source == "auto":
        return PretrainedOptions(str(pretrained))
    label = f"{pretrained} ({_SOURCE_LABEL.get(source, source)} weights{reason})"
    return PretrainedOptions(label, sources.architecture_options(source, name),
                             {"num_classes": classes} if classes is not None else {})


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool | str):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def pretrained_kwargs(
    name: str, pretrained: str | Path, kwargs: Mapping[str, Any], *, source: str = "auto"
) -> dict[str, Any]:
    """The keywords to build ``name`` with for ``pretrained``: the caller's, over what the weights imply.

    Architecture options the weights fix (:class:`PretrainedOptions`) are applied and reported in one
    log line (also printed when logging is not configured, so the command line shows it); one that
    contradicts a keyword the caller passed is refused in one line naming the option and both values,
    rather than building a model whose outputs would silently differ from the source's.
    """
    from .models import get_model_kwargs

    options = inspect_pretrained(name, pretrained, source=source, given=kwargs)
    valid = get_model_kwargs(name)
    fixed = {k: v for k, v in options.fixed.items() if k in valid}
    for key, value in fixed.items():
        if key in kwargs and not _same_value(kwargs[key], value):
            raise WeightsError(
                f"{options.what} was trained with {key}={value!r}, but {key}={kwargs[key]!r} was passed: "
                f"leave {key} out and the weights' value is applied"
            )
    applied = {k: v for k, v in fixed.items() if k not in kwargs}
    if applied:
        shown = ", ".join(f"{k}={v!r}" for k, v in applied.items())
        _announce(f"{options.what}: building {name} with {shown}, as the weights were trained")
    return {**options.defaults, **fixed, **kwargs}


def pretrained_defaults(name: str, pretrained: str | Path) -> dict[str, Any]:
    """The ``create_model`` keywords a pretrained reference implies (tag, hf-hub repo, directory or file).

    :func:`pretrained_kwargs` is what ``create_model`` uses: the same keywords, checked against the
    caller's and reported.
    """
    from .models import get_model_kwargs

    options = inspect_pretrained(name, pretrained)
    valid = get_model_kwargs(name)
    return {**options.defaults, **{k: v for k, v in options.fixed.items() if k in valid}}


def load_pretrained(model: nn.Module, path: str | Path, *, skip_classifier: bool | None = None) -> nn.Module:
    """Load a registry tag, an ``hf-hub:`` repository, a native directory or any weights file into ``model``.

    ``skip_classifier=None`` skips the classifier automatically when the class counts differ, which is
    what fine-tuning on a new dataset needs; the classifier then keeps its fresh initialisation.
    """
    from . import pretrained as registry
    from .hub import is_hub_reference, resolve_hub

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
        _restore_preprocessing(model, read_config(path))
    return model


def _restore_preprocessing(model: nn.Module, config: dict[str, Any]) -> None:
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict):
        return
    for key in ("mean", "std", "input_size", "interpolation", "crop_pct", "source", "tag"):
        if config.get(key) is not None:
            value = config[key]
            if key in ("mean", "std", "input_size") and len(value) != len(cfg.get(key, value)):
                continue  # e.g. a 3-channel config for a model rebuilt with another in_chans
            cfg[key] = tuple(value) if isinstance(value, list) else value


def from_pretrained(directory: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild a model from a ``save_pretrained`` directory (a training run directory works too).

    ``overrides`` replace the saved keywords; a different ``num_classes`` keeps a fresh classifier
    (fine-tuning) and loads everything else.
    """
    from .models import create_model

    config = read_config(directory)
    kwargs = {**config.get("kwargs", {}), **overrides}
    model = create_model(config["architecture"], **kwargs)
    skip = None if "num_classes" in overrides else False
    load_weights(model, Path(directory) / WEIGHTS_NAME, source="native", skip_classifier=skip)
    if config.get("class_names") and not (skip is None and model.num_classes != config.get("num_classes")):
        model.class_names = list(config["class_names"])
    _restore_preprocessing(model, config)
    return model
