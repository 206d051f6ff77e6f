"""A training run's directory: its name, ``metrics.csv``, TensorBoard events, the checkpoint's content.

The layout (``config.yaml``, ``metrics.csv``, ``tb/``, ``checkpoints/last.pt``, ``model.safetensors`` +
``config.json``, ``summary.json``, PNG plots) is described in :mod:`mobilenets.engine.train`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from torch import nn

from ..config import TrainConfig, to_dict
from ..fileio import atomic_write_text
from .checkpoint import CHECKPOINT_FORMAT
from .distributed import DistInfo
from .ema import ModelEMA, unwrap_model

__all__ = ["METRIC_FIELDS", "TensorBoard", "checkpoint_state", "clean_copy", "new_run_dir", "write_metrics_csv"]

METRIC_FIELDS = (
    "epoch", "lr", "train_loss", "val_loss", "val_acc1", "val_acc5", "ema_val_loss", "ema_val_acc1",
    "ema_val_acc5", "images_per_s", "epoch_s",
)


def new_run_dir(cfg: TrainConfig, *, claim: bool = True, parent: Path = Path("runs")) -> Path:
    """``runs/<dataset>``, or the first free ``runs/<dataset>-N``: short names a user can type (README's
    ``runs/digits`` is the main job's), and a finished run is never overwritten. ``claim`` creates the
    directory at once (``mkdir`` fails if another process took the name first)."""
    for n in itertools.count(1):
        candidate = parent / (cfg.data.name if n == 1 else f"{cfg.data.name}-{n}")
        if candidate.exists():
            continue
        if not claim:
            return candidate
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def write_metrics_csv(rows: list[dict[str, float]], path: Path, fields: tuple[str, ...] = METRIC_FIELDS) -> None:
    """``metrics.csv``: one row per epoch in the task's ``fields`` (default: classification's columns)."""
    lines = [",".join(fields)]
    for row in rows:
        lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in fields))
    atomic_write_text(path, "\n".join(lines) + "\n")


class TensorBoard:
    """TensorBoard events if the package is importable; silently nothing otherwise."""

    def __init__(self, log_dir: Path, purge_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and value is not None:
                self.writer.add_scalar(key.replace("_", "/", 1), value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def checkpoint_state(epoch: int, model: nn.Module, ema: ModelEMA | None, optimizer: Any, scheduler: Any,
                     scaler: Any, rng_all: list[Any], cfg: TrainConfig, history: list[dict[str, Any]],
                     best: dict[str, Any], dist_info: DistInfo, partial: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a bit-identical resume needs; ``epoch`` is the last completed one."""
    return {
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "model": unwrap_model(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_all[0], "rng_per_rank": rng_all, "config": to_dict(cfg), "history": list(history),
        "best": dict(best), "world_size": dist_info.world_size, "partial": partial,
    }


def clean_copy(module: nn.Module, reference: nn.Module) -> nn.Module:
    """The module to save natively, carrying the reference model's name/kwargs/metadata."""
    module = unwrap_model(module)
    ref = unwrap_model(reference)
    for attr in ("model_name", "model_kwargs", "pretrained_cfg", "num_classes", "in_chans"):
        if hasattr(ref, attr):
            setattr(module, attr, getattr(ref, attr))
    return module
