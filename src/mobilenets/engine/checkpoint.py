"""Training checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint holds everything a bit-identical resume needs (model, EMA, optimizer, scheduler, scaler,
epoch, every RNG state, the resolved config). It is written to a temporary file in the same directory,
fsynced and renamed over the previous one, so a crash or a full disk at any moment leaves either the old
or the new checkpoint, never a torn one; loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write

__all__ = ["CheckpointError", "atomic_torch_save", "capture_rng", "load_checkpoint", "restore_rng"]

CHECKPOINT_FORMAT = "mobilenets-train-v1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, foreign or unsafe to load."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`mobilenets.fileio.atomic_write` (temp file, fsync, rename, fsync dir)."""
    with atomic_write(path) as fh:
        torch.save(obj, fh)
        # Fault-injection hook for the kill tests: widen the window between the complete temp file
        # and the rename so a SIGKILL lands mid-write often. Unset in normal use.
        delay = float(os.environ.get("MOBILENETS_FAULT_CHECKPOINT_DELAY", "0") or 0)
        if delay > 0:
            import time

            time.sleep(delay)
    return Path(path)


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every RNG state the training loop consumes, as tensors and plain Python values."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, gen in (generators or {}).items():
        state[f"gen.{name}"] = gen.get_state()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in (generators or {}).items():
        if f"gen.{name}" in state:
            gen.set_state(state[f"gen.{name}"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint safely and check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle asking for forbidden globals
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"checkpoint {path} could not be loaded safely ({type(exc).__name__}: {first}); "
            "nothing in it was executed"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a mobilenets training checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return ckpt
