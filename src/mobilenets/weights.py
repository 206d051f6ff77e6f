"""The native weights format: ``model.safetensors`` + ``config.json``, loaded without unpickling.

A directory written by :func:`save_pretrained` is everything needed to rebuild the model
(``from_pretrained``): the registered architecture name and keywords, class names and the
preprocessing metadata evaluation and export read. Weights are safetensors, so loading never runs code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["WeightsError", "from_pretrained", "load_pretrained", "load_state_dict_file", "save_pretrained"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights file that cannot be used: corrupt, foreign, or not matching the model."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        **(extra or {}),
    }
    _atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    _atomic_write_bytes(directory / CONFIG_NAME, json.dumps(config, indent=2).encode())
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


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without executing pickled code: safetensors, or ``torch.load(weights_only=True)``."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path} is empty")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types; all mean "refused or corrupt"
        raise WeightsError(
            f"{path} could not be loaded safely: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            " (only tensors and plain containers are accepted; nothing in the file was executed)"
        ) from None
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj


def _apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, skip_classifier: bool) -> None:
    own = model.state_dict()
    if skip_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = [k for k in own if k not in state and not (skip_classifier and k.startswith("classifier."))]
    unexpected = [k for k in state if k not in own]
    if mismatched or missing or unexpected:
        parts = []
        if mismatched:
            parts.append("shape mismatch: " + "; ".join(mismatched[:5]))
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {', '.join(unexpected[:3])})")
        raise WeightsError(f"{source} does not match the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=not skip_classifier)


def load_pretrained(model: nn.Module, path: str | Path, *, skip_classifier: bool | None = None) -> nn.Module:
    """Load native weights (a ``save_pretrained`` directory or a ``.safetensors``/``.pt`` state dict).

    ``skip_classifier=None`` skips the classifier automatically when the class counts differ, which is
    what fine-tuning on a new dataset needs; the classifier then keeps its fresh initialisation.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights {path} not found")
    state = load_state_dict_file(path)
    if skip_classifier is None:
        w = state.get("classifier.weight")
        own = model.state_dict().get("classifier.weight")
        skip_classifier = w is not None and (own is None or own.shape != w.shape)
    _apply_state_dict(model, state, str(path), skip_classifier)
    return model


def from_pretrained(directory: str | Path, **overrides: Any) -> nn.Module:
    """Rebuild a model from a ``save_pretrained`` directory (a training run directory works too)."""
    from .models import create_model

    config = read_config(directory)
    kwargs = {**config.get("kwargs", {}), **overrides}
    model = create_model(config["architecture"], **kwargs)
    load_pretrained(model, Path(directory) / WEIGHTS_NAME, skip_classifier=False)
    if config.get("class_names"):
        model.class_names = list(config["class_names"])
    for key in ("mean", "std", "input_size", "interpolation", "crop_pct"):
        if config.get(key) is not None:
            value = config[key]
            model.pretrained_cfg[key] = tuple(value) if isinstance(value, list) else value
    return model
