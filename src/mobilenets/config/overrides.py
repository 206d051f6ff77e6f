"""``key=value`` overrides: from the command line, a recipe's list, or ``$MOBILENETS_TRAIN_OVERRIDES``.

Keys are dotted paths into a dataclass tree (``optim.lr=0.01``); values are parsed as YAML and then
type-checked exactly like a YAML file, so an override and a recipe can never disagree about a name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .values import (
    _NONE_TYPE,
    _convert,
    _dataclass_of,
    _describe,
    _init_fields,
    _is_union,
    _join,
    _type_name,
    _unknown_key_error,
    from_dict,
    to_dict,
)

__all__ = ["ENV_OVERRIDES", "apply_overrides", "env_overrides"]

T = TypeVar("T")


def _free_form_value_type(tp: Any) -> Any | None:
    """Value type of a ``dict[str, X]`` field (free-form sub-keys), else None.

    ``Any`` counts as free-form too, so nested sub-keys work inside free-form dicts
    (``model.kwargs.block.se=false``).
    """
    if tp is Any:
        return Any
    if _is_union(tp):
        found = [a for a in get_args(tp) if a is not _NONE_TYPE]
        tp = found[0] if len(found) == 1 else None
    if tp is dict:
        return Any
    if get_origin(tp) is dict:
        args = get_args(tp)
        return args[1] if args else Any
    return None


def _accepts_str(tp: Any) -> bool:
    if tp is str or tp is Any:
        return True
    if get_origin(tp) is Literal:
        return any(isinstance(a, str) for a in get_args(tp))
    if _is_union(tp):
        return any(_accepts_str(a) for a in get_args(tp))
    return False


def _parse_override_value(raw: str, tp: Any) -> Any:
    """Parse the right-hand side of ``key=value`` with YAML, keeping strings strings.

    YAML turns ``device=0`` into an int and ``model.name=no`` into False; when the field wants a
    string and YAML produced a non-string scalar, the raw text is used instead. ``null``/``~``
    and an empty value give None.
    """
    text = raw.strip()
    if not text:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if tp is not Any and _accepts_str(tp):
            return text
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"could not parse {raw!r} as a YAML value: {problem}") from None
    if tp is not Any and isinstance(value, bool | int | float) and _accepts_str(tp):
        try:
            _convert(tp, value, "")
        except ConfigError:
            return text
    return value


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _split_override(item: str) -> tuple[str, str, list[str]]:
    """``key=value`` as (stripped key, raw value text, key parts), or the error saying what is wrong."""
    if "=" not in item:
        raise ConfigError(
            f"override {item!r} must have the form key=value, e.g. optim.lr=0.01 or model.kwargs.width_mult=0.5"
        )
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(
            f"override {item!r} has an empty key part; expected key=value such as optim.lr=0.01"
        )
    return key, raw, parts


def _part_type(tp: Any, parts: list[str], i: int) -> Any:
    """The annotation of key part ``parts[i]`` inside a value annotated ``tp`` (a section or a free-form dict)."""
    part = parts[i]
    parent = ".".join(parts[:i])
    section = _dataclass_of(tp)
    free_value_tp = _free_form_value_type(tp)
    if section is not None:
        if part not in {f.name for f in _init_fields(section)}:
            raise _unknown_key_error(section, part, parent, tuple(parts[i + 1 :]))
        return get_type_hints(section)[part]
    if free_value_tp is not None:
        return free_value_tp
    raise ConfigError(f"is a {_type_name(tp)} value, so it has no sub-key '{part}'", key=parent)


def _walk(cls: type, data: dict[str, Any], parts: list[str]) -> tuple[dict[str, Any], Any]:
    """The mapping of ``data`` that holds the last key part, and that part's annotation.

    Mappings on the way are copied (and created where the value is null), so ``data`` can be changed there.
    """
    node: dict[str, Any] = data
    tp: Any = cls
    for i, part in enumerate(parts):
        tp = _part_type(tp, parts, i)
        if i == len(parts) - 1:
            break
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, Mapping):
            raise ConfigError(
                f"holds {_describe(child)}, not a mapping, so it has no sub-key '{parts[i + 1]}'",
                key=_join(".".join(parts[:i]), part),
            )
        child = dict(child)
        node[part] = child
        node = child
    return node, tp


def _apply_one(cls: type, data: dict[str, Any], item: str) -> None:
    """Apply override ``item`` to the plain-data tree ``data`` of ``cls`` in place, type-checking the result."""
    key, raw, parts = _split_override(item)
    node, tp = _walk(cls, data, parts)
    last = parts[-1]
    try:
        value = _parse_override_value(raw, tp)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (from override {item!r})", key=key) from None
    if (
        isinstance(value, Mapping)
        and isinstance(node.get(last), Mapping)
        and _dataclass_of(tp) is not None
    ):
        value = _deep_merge(dict(node[last]), value)
    node[last] = value
    try:  # type-check now, so the error points at the override that caused it
        from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (from override {item!r})", key=exc.key) from None


def apply_overrides(cfg: T, overrides: Iterable[str]) -> T:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied (``cfg`` is not modified).

    Keys are dotted paths (``optim.lr=0.01``); values are parsed as YAML (``aug.scale=[0.08,1.0]``,
    ``model.pretrained=null``) and then type-checked exactly like a YAML file. Free-form dict
    fields accept arbitrary sub-keys (``model.kwargs.width_mult=0.5``). Setting a whole section
    to a mapping (``optim={lr: 0.1}``) merges into it rather than resetting its other fields.
    """
    cls = type(cfg)
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"apply_overrides needs a dataclass instance, got {cfg!r}")
    data: dict[str, Any] = to_dict(cfg)
    for item in overrides:
        _apply_one(cls, data, item)
    return from_dict(cls, data)


#: Space-separated ``key=value`` overrides that every training run (``train``, ``experiment``) appends to its
#: own: one switch that shortens every recipe and README command for a smoke run (``epochs=1``).
ENV_OVERRIDES = "MOBILENETS_TRAIN_OVERRIDES"


def env_overrides() -> list[str]:
    """The overrides in ``$MOBILENETS_TRAIN_OVERRIDES`` (shell-quoted words), checked for the key=value form."""
    import shlex

    items = shlex.split(os.environ.get(ENV_OVERRIDES, ""))
    for item in items:
        if "=" not in item:
            raise ConfigError(f"${ENV_OVERRIDES} holds {item!r}; expected key=value words, e.g. 'epochs=1'")
    return items
