"""Resuming a run: its own saved configuration plus only the overrides given now.

Why: ``mobilenets train output_dir=RUN resume=true`` is the command a run prints when it is interrupted.
Rebuilding the config from the defaults would train another model (and crash on the checkpoint) or,
worse, silently continue a 4-epoch run as a 20-epoch one with another schedule. So a resume starts from
``RUN/config.yaml`` and applies only what the command line says, and a change that the checkpoint's
state depends on (model, data, augmentation, optimizer, schedule, seed, ...) is refused naming the key.
The same check guards ``train(cfg)`` from Python against the checkpoint's recorded config.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, TrainConfig, apply_overrides, from_dict, to_dict, validate

__all__ = ["RESUMABLE_KEYS", "check_resume_changes", "load_resume_config", "resume_command"]

#: Keys a resume may change: how the run is executed and observed, not what it computes -- plus ``epochs``
#: (a run may be extended) and ``optim.lr`` (lowered after a divergence; the schedule is rescaled).
RESUMABLE_KEYS = frozenset({
    "epochs", "optim.lr", "optim.clip_grad", "resume", "output_dir", "quiet", "log_every", "save_every",
    "threads", "device", "eval_batch_size", "compile", "fast_depthwise_grad", "deterministic", "channels_last",
    "data.root", "data.num_workers", "data.download", "data.device_resident",
})


def resume_command(run_dir: str | Path) -> str:
    """The command that continues ``run_dir`` (what a run prints at start and when interrupted)."""
    return f"mobilenets train output_dir={shlex.quote(str(run_dir))} resume=true"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping) and not prefix.endswith("kwargs"):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def check_resume_changes(saved: Mapping[str, Any], cfg: TrainConfig, completed_epochs: int | None = None) -> list[str]:
    """Compare a run's saved config (a plain mapping) with the config it is resumed with.

    Returns notes for the changes allowed (``epochs`` extended, ``optim.lr`` changed); raises
    :class:`ConfigError` naming the first key whose change the checkpoint's state cannot follow.
    Keys missing from ``saved`` (added to the config since the run was written) count as their defaults.
    """
    before, after = _flatten(dict(saved)), _flatten(to_dict(cfg))
    # A key the saved config lacks was added to the config after the run started: the run used what is
    # now its default (e.g. ``task: auto``), so it is compared with that default.
    defaults = _flatten(to_dict(TrainConfig()))
    notes: list[str] = []
    for key in sorted(set(before) | set(after)):
        old = before[key] if key in before else defaults.get(key)
        new = after.get(key)
        if old == new:
            continue
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"cannot change on resume (the run was trained with {old!r}, got {new!r}): its checkpoint "
                f"depends on it; start a new run with another output_dir instead", key=key)
        if key == "epochs":
            done = completed_epochs if completed_epochs is not None else 0
            if new < max(done, 1):
                raise ConfigError(f"got {new}, but the run has already completed {done} epochs", key=key)
            notes.append(f"epochs {old} -> {new}: the lr schedule is recomputed for {new} epochs from the "
                         f"current step, so the lr changes where the run continues")
        elif key == "optim.lr":
            notes.append(f"optim.lr {old} -> {new}: the schedule's base lr is rescaled from the current step")
    return notes


def load_resume_config(overrides: Sequence[str], config_file: str | Path | None = None) -> TrainConfig:
    """The config a ``resume=true`` command means: ``output_dir``'s saved ``config.yaml``, then the values of
    ``config_file`` (if given) and ``overrides``. Whether the checkpoint can follow the changes is checked
    by the trainer against the checkpoint itself (:func:`check_resume_changes`)."""
    probe = apply_overrides(TrainConfig(), overrides)
    if not probe.output_dir:
        raise ConfigError("resume=true needs output_dir=RUN_DIR, the run to continue", key="output_dir")
    run_dir = Path(probe.output_dir)
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        what = "does not exist" if not run_dir.exists() else "has no config.yaml (not a training run directory)"
        raise FileNotFoundError(f"resume=true: {run_dir} {what}; output_dir must name the run to continue")
    with saved_file.open(encoding="utf-8") as fh:
        saved = yaml.safe_load(fh) or {}
    try:
        cfg = from_dict(TrainConfig, saved)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (in {saved_file})", key=exc.key) from None
    if config_file is not None:
        with Path(config_file).open(encoding="utf-8") as fh:
            extra = yaml.safe_load(fh) or {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"{config_file}: the config file must contain a YAML mapping of keys")
        items = [f"{k}={json.dumps(v)}" for k, v in _flatten(extra).items()]
        cfg = apply_overrides(cfg, items)
    cfg = apply_overrides(cfg, [*overrides, "resume=true"])
    validate(cfg)
    return cfg
