"""The native weights format: a directory with ``model.safetensors`` + ``config.json``.

It holds everything needed to rebuild the model: the registered architecture and its keywords, class
names and the preprocessing metadata evaluation and export read. The writer lives with the models so
that :meth:`~mobilenets.models.mobilenet.MobileNet.save_pretrained` needs nothing above them; reading
it back into a model (``from_pretrained``) is :mod:`mobilenets.weights`' job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..fileio import atomic_write_bytes

__all__ = ["CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "WeightsError", "read_config", "save_pretrained"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


class WeightsError(ValueError):
    """A weights file that cannot be used: corrupt, foreign, unsafe, or not matching the model."""


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
