"""The native format seen from the weights side: the writer and reader (:mod:`mobilenets.models.native`) and
putting a saved config's preprocessing back on a model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..models.native import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    WeightsError,
    read_config,
    save_pretrained,
)

__all__ = ["CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "WeightsError", "read_config", "restore_preprocessing", "save_pretrained"]


def restore_preprocessing(model: nn.Module, config: dict[str, Any]) -> None:
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict):
        return
    for key in ("mean", "std", "input_size", "interpolation", "crop_pct", "source", "tag"):
        if config.get(key) is not None:
            value = config[key]
            if key in ("mean", "std", "input_size") and len(value) != len(cfg.get(key, value)):
                continue  # e.g. a 3-channel config for a model rebuilt with another in_chans
            cfg[key] = tuple(value) if isinstance(value, list) else value
