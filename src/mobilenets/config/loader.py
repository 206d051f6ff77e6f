"""Reading, checking, describing and writing a config: defaults, then a YAML file, then overrides.

Typical use::

    cfg = load_config(TrainConfig, "configs/digits.yaml", ["optim.lr=0.01", "model.kwargs.width_mult=0.5"])
    save_yaml(cfg, run_dir / "config.yaml")   # exactly what ran, re-loadable with load_config
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError
from .overrides import apply_overrides
from .values import _init_fields, _join, from_dict, to_dict

__all__ = ["describe", "load_config", "save_yaml", "validate"]

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``; then validated.

    An empty YAML file means "all defaults". Errors from the file are prefixed with its name.
    """
    data: Any = {}
    if path is not None:
        p = Path(path)
        try:
            with p.open("r", encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{p}: the config file must contain a YAML mapping of keys (e.g. 'epochs: 40'), "
                f"got {type(data).__name__}"
            )
        try:
            cfg = from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{exc.message} (in {p})", key=exc.key) from None
    else:
        cfg = from_dict(cls, data)
    cfg = apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def validate(cfg: Any, path: str = "") -> None:
    """Run every ``validate()`` method in the tree, children first, with full dotted keys.

    Sections raise :class:`ConfigError` with keys relative to themselves; this prefixes the
    section path, so ``OptimConfig.validate`` reporting ``lr`` surfaces as ``optim.lr``.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return
    for f in _init_fields(type(cfg)):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, _join(path, f.name))
    method = getattr(cfg, "validate", None)
    if callable(method):
        try:
            method()
        except ConfigError as exc:
            raise exc.prefixed(path) from None
    # After the section's own checks (their messages name the allowed range): no field may hold NaN or
    # infinity, which would otherwise only surface mid-training (e.g. mixup_alpha=.inf).
    for f in _init_fields(type(cfg)):
        value = getattr(cfg, f.name)
        items = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ConfigError(f"got {value!r}, but it must be finite", key=_join(path, f.name))


def describe(cfg: Any, resolved_from: Any = None, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every leaf key of a config tree as ``(dotted key, value, one-line help)``, in declaration order.

    ``resolved_from``: the same config before its ``null`` fields were resolved; keys whose value came from
    resolution get "(automatic)" appended to their help, so a user sees which values were chosen for them.
    """
    rows: list[tuple[str, Any, str]] = []
    for f in _init_fields(type(cfg)):
        key = _join(prefix, f.name)
        value = getattr(cfg, f.name)
        before = getattr(resolved_from, f.name) if resolved_from is not None else None
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            rows.extend(describe(value, before, key))
            continue
        help_text = str(f.metadata.get("help", ""))
        if resolved_from is not None and to_dict(before) != to_dict(value):
            help_text += " (automatic)"
        rows.append((key, to_dict(value), help_text))
    return rows


def save_yaml(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML atomically (temp file + ``os.replace``), creating parent dirs.

    Atomic so that a crash mid-write never leaves a truncated config next to a checkpoint,
    which would make the run impossible to resume or reproduce.
    """
    from ..fileio import atomic_write_bytes

    p = Path(path)
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
    atomic_write_bytes(p, text.encode("utf-8"))
    return p
