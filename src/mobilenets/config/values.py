"""Values checked against their annotations: a plain mapping becomes a typed dataclass tree and back.

:func:`from_dict` builds any tree of nested dataclasses from YAML-shaped data, checking every value with
:func:`_convert` (one small converter per kind of annotation: literal choices, unions, scalars, lists and
tuples, mappings, nested dataclasses); :func:`to_dict` turns a tree back into YAML/JSON-safe types.

Types are checked strictly (``epochs=1.5`` is an error, not ``1``), but YAML's quirks are forgiven where
the intent is unambiguous: ``lr: 4e-3`` is a *string* to PyYAML (YAML 1.1 needs a dot in the mantissa)
and is accepted as a float; ``yes``/``no``/``1``/``0`` are accepted for booleans. Unknown keys are
errors naming the full dotted key and the closest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .._validate import closest, did_you_mean
from .errors import ConfigError

__all__ = ["all_keys", "from_dict", "to_dict"]

T = TypeVar("T")

_NONE_TYPE = type(None)
_TRUE_STRINGS = frozenset({"true", "yes", "1"})
_FALSE_STRINGS = frozenset({"false", "no", "0"})


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ----------------------------------------------------------------------------------------------
# Type conversion
# ----------------------------------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    """Human-readable type, as a user would write it in YAML terms."""
    if tp is Any:
        return "Any"
    if tp is _NONE_TYPE:
        return "null"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{_type_name(args[0])}, ...]"
        return "tuple[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin in (list, dict):
        return (
            f"{origin.__name__}[" + ", ".join(_type_name(a) for a in args) + "]" if args else origin.__name__
        )
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", repr(tp))


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert_literal(tp: Any, value: Any, key: str) -> Any:
    args = get_args(tp)
    for choice in args:
        if value == choice and type(value) is type(choice):
            return choice
    choices = ", ".join(repr(c) for c in args)
    hint = did_you_mean(value, args)
    raise ConfigError(f"got {value!r}, expected one of {choices}{hint}", key=key)


def _convert_union(tp: Any, value: Any, key: str) -> Any:
    args = get_args(tp)
    if value is None:
        if _NONE_TYPE in args:
            return None
        raise ConfigError(f"got null, expected {_type_name(tp)}", key=key)
    members = [a for a in args if a is not _NONE_TYPE]
    if len(members) == 1:
        try:
            return _convert(members[0], value, key)
        except ConfigError as exc:
            raise ConfigError(f"{exc.message} (or null)", key=exc.key) from None
    for member in members:
        try:
            return _convert(member, value, key)
        except ConfigError:
            continue
    raise ConfigError(f"expected {_type_name(tp)}, got {_describe(value)}", key=key)


def _convert_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_STRINGS:
            return True
        if text in _FALSE_STRINGS:
            return False
    raise ConfigError(f"expected bool (true/false/yes/no/1/0), got {_describe(value)}", key=key)


def _number_from_text(value: Any, parse: Callable[[str], Any], kind: str, key: str) -> Any:
    """A number written as text (PyYAML reads ``4e-3`` as a string), or the one-line error for ``kind``."""
    if isinstance(value, str):
        try:
            return parse(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"expected {kind}, got {_describe(value)}", key=key)


def _convert_int(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"expected int, got {_describe(value)}", key=key)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ConfigError(f"expected int, got {value!r} (a float with a fractional part)", key=key)
    return _number_from_text(value, int, "int", key)


def _convert_float(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"expected float, got {_describe(value)}", key=key)
    if isinstance(value, int | float):
        return float(value)
    return _number_from_text(value, float, "float", key)


def _convert_str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)  # type: ignore[return-value]
    raise ConfigError(f"expected str, got {_describe(value)} (quote it in YAML)", key=key)


#: The scalar types a config field may have, each with its converter.
_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _convert_bool,
    int: _convert_int,
    float: _convert_float,
    str: _convert_str,
}


def _convert_sequence(tp: Any, value: Any, key: str) -> list[Any] | tuple[Any, ...]:
    """A ``list[X]``, ``tuple[X, ...]`` or fixed-length ``tuple[X, Y]`` from a YAML list."""
    origin, args = get_origin(tp), get_args(tp)
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ConfigError(f"expected {_type_name(tp)} (a YAML list), got {_describe(value)}", key=key)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise ConfigError(
                f"expected {_type_name(tp)} with {len(args)} items, got {len(value)}: {value!r}", key=key
            )
        item_types = list(args)
    else:
        item_types = [args[0] if args else Any] * len(value)
    items = [_convert(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(item_types, value))]
    return tuple(items) if origin is tuple else items


def _convert_mapping(tp: Any, value: Any, key: str) -> dict[Any, Any]:
    """A ``dict[K, V]`` (or bare ``dict``) from a YAML mapping."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected {_type_name(tp)} (a YAML mapping), got {_describe(value)}", key=key)
    args = get_args(tp)
    key_tp, val_tp = args if args else (Any, Any)
    out: dict[Any, Any] = {}
    for k, v in value.items():
        if key_tp is str and not isinstance(k, str):
            raise ConfigError(f"mapping keys must be strings, got {_describe(k)}", key=key)
        out[k] = _convert(val_tp, v, _join(key, str(k)))
    return out


def _convert_dataclass(tp: type, value: Any, key: str) -> Any:
    if isinstance(value, tp):
        return copy.deepcopy(value)
    if isinstance(value, Mapping):
        return from_dict(tp, value, key)
    raise ConfigError(f"expected a mapping of {tp.__name__} fields, got {_describe(value)}", key=key)


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    if tp is Any:
        return copy.deepcopy(value)
    origin = get_origin(tp)
    if origin is Literal:
        return _convert_literal(tp, value, key)
    if _is_union(tp):
        return _convert_union(tp, value, key)
    if value is None:
        raise ConfigError(f"got null, expected {_type_name(tp)}", key=key)
    scalar = next((convert for kind, convert in _SCALARS.items() if tp is kind), None)
    if scalar is not None:
        return scalar(value, key)
    if origin is tuple or origin is list:
        return _convert_sequence(tp, value, key)
    if origin is dict or tp is dict:
        return _convert_mapping(tp, value, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, key)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"expected {_type_name(tp)}, got {_describe(value)}", key=key)


def _init_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``Cfg`` or ``Cfg | None``), else None."""
    if _is_union(tp):
        found = [a for a in get_args(tp) if a is not _NONE_TYPE]
        tp = found[0] if len(found) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a dataclass tree, sections included (e.g. ``optim``, ``optim.lr``).

    Used for "did you mean" suggestions and handy for CLI help / shell completion.
    """
    hints = get_type_hints(cls)
    keys: list[str] = []
    for f in _init_fields(cls):
        full = _join(prefix, f.name)
        keys.append(full)
        sub = _dataclass_of(hints[f.name])
        if sub is not None:
            keys.extend(all_keys(sub, full))
    return keys


def _unknown_key_error(cls: type, key: Any, path: str, rest: tuple[str, ...] = ()) -> ConfigError:
    """Error for an unknown key, suggesting the closest valid key in this section or below.

    Siblings and deeper keys compete on the similarity of their *last* component, so a misplaced
    ``momentum`` at top level suggests ``optim.momentum`` rather than ``bn_momentum``; a tie goes
    to the shallower key. ``rest`` is the remainder of a dotted override key after the unknown
    part: for ``optm.lr`` the suggestion is then the whole corrected key ``optim.lr``.
    """
    key_s = str(key)
    keys = all_keys(cls)
    by_depth = sorted(keys, key=lambda k: k.count("."))  # equally close: the shallower key wins
    suggestion = closest(key_s, by_depth, key=lambda k: k.rsplit(".", 1)[-1])
    hint = ""
    if suggestion is not None:
        completed = ".".join((suggestion, *rest))
        if rest and completed in keys:
            suggestion = completed
        hint = f"did you mean '{_join(path, suggestion)}'? "
    context = f" (in '{_join(path, '.'.join((key_s, *rest)))}')" if rest else ""
    where = f"under '{path}'" if path else "at top level"
    siblings = ", ".join(f.name for f in _init_fields(cls))
    return ConfigError(
        f"unknown key{context}; {hint}(valid keys {where}: {siblings})", key=_join(path, key_s)
    )


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build the dataclass ``cls`` (recursively) from a plain mapping, checking every value.

    Missing keys take the dataclass defaults; unknown keys and wrongly typed values raise
    :class:`ConfigError` naming the full dotted key. ``path`` is the dotted prefix used in error
    messages (set by the recursion). Range checks are *not* run here: see :func:`validate`.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"expected a mapping of {cls.__name__} fields, got {_describe(data)}", key=path or None
        )
    hints = get_type_hints(cls)
    fields_by_name = {f.name: f for f in _init_fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields_by_name:
            raise _unknown_key_error(cls, key, path)
        kwargs[key] = _convert(hints[key], value, _join(path, key))
    for name, f in fields_by_name.items():
        if (
            name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(
                f"missing required key (expected {_type_name(hints[name])})", key=_join(path, name)
            )
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    """Convert a dataclass tree to plain YAML/JSON-safe types (tuples become lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in _init_fields(type(cfg))}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, os.PathLike):
        return os.fspath(cfg)
    return cfg
