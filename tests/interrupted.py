"""A training run killed in its second epoch, then resumed: what the exact-resume tests of every task share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mobilenets.config import TrainConfig
from mobilenets.engine import train as train_mod
from mobilenets.engine.train import train


def killed_then_resumed(monkeypatch: pytest.MonkeyPatch, make_cfg: Callable[..., TrainConfig], run: Path) -> dict[str, Any]:
    """Train ``make_cfg(run)`` until a KeyboardInterrupt in epoch 2, resume with ``resume=true``, and return
    the final ``checkpoints/last.pt`` (to compare with an uninterrupted run's)."""
    real = train_mod.train_one_epoch
    calls = {"n": 0}

    def killed_in_epoch_two(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(run))
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    train(make_cfg(run, "resume=true"))
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)
