"""Model registry: ``build_model(name, **kwargs)``, ``list_models()`` and ``register_model``.

Each registered entry point is a keyword-only function that resolves an architecture table and hands it
to the one builder. ``build_model`` validates names and keywords up front so a typo fails with the
closest valid spelling instead of a ``TypeError`` deep inside a constructor. A table file's path
(:mod:`.table_file`) stands wherever a name does: every function here reads it through
:func:`resolve_model_name`, the one place that turns it into ``"mobilenet_table"`` with ``table=<its dict>``. The registry knows no
weights: ``mobilenets.create_model(name, pretrained=...)`` (:mod:`mobilenets.weights`) builds on it.
The entry points register themselves when :mod:`mobilenets.models.archs` is imported, which the
package's ``__init__`` does, so every registered name is known as soon as ``mobilenets.models`` is.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .._validate import did_you_mean
from .mobilenet import MobileNet
from .table_file import SUFFIXES, is_table_path, load_table, read_table_file, table_to_dict

__all__ = ["TABLE_MODEL", "TASKS", "build_model", "check_model_kwargs", "get_model_kwargs", "instantiate",
           "is_model_name", "list_models", "model_task", "register_model", "register_task_model", "resolve_model_name"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# Keywords every entry point forwards to the builder (MobileNet.__init__), beside its own.
_COMMON_KWARGS: set[str] = set()


TASKS = ("classify", "detect", "segment")
#: The entry point a table file builds through (:func:`mobilenets.models.archs.mobilenet_table`).
TABLE_MODEL = "mobilenet_table"


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register an entry point under its function name; its ``task`` attribute (default ``"classify"``)
    says what it builds (``"detect"``: a detector, whose forward takes images and targets; ``"segment"``:
    a segmenter, whose forward returns the ``{"out", "aux"}`` logits dict)."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    if getattr(fn, "task", "classify") not in TASKS:
        raise ValueError(f"model {fn.__name__!r} has task {fn.task!r}; expected one of {TASKS}")  # type: ignore[attr-defined]
    _MODELS[fn.__name__] = fn
    return fn


def register_task_model(name: str, doc: str, cls: type[nn.Module], task: str, *, backbone: str | None,
                        base_kwargs: Mapping[str, Any] | None = None, **defaults: Any) -> Callable[..., nn.Module]:
    """Register ``name``: ``cls`` (a detector or segmenter built on a registered backbone) with this
    backbone (``None``: the caller picks) and defaults; ``backbone_kwargs`` given by the caller are merged
    over ``base_kwargs`` (so ``{"width_mult": 0.5}`` keeps V3's reduced tail of a named entry).

    The entry's signature is exactly ``cls``'s keywords (no classifier options, the fixed backbone left
    out), so :func:`build_model` checks them; ``entry.task`` says what it builds.
    """
    base = dict(base_kwargs or {})

    def entry(**kwargs: Any) -> nn.Module:
        options = {**defaults, **kwargs}
        given = options.get("backbone_kwargs")
        if given is not None and not isinstance(given, Mapping):
            raise ValueError(f"backbone_kwargs={given!r} invalid; expected a mapping of the backbone's keywords")
        options["backbone_kwargs"] = {**base, **dict(given or {})}
        if backbone is not None:
            options["backbone"] = backbone
        return cls(**options)

    params = []
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if backbone is not None and p.name == "backbone":
            continue
        params.append(p.replace(default=defaults[p.name]) if p.name in defaults else p)
    entry.__signature__ = inspect.Signature(params, return_annotation=cls)  # type: ignore[attr-defined]
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = doc
    entry.task = task  # type: ignore[attr-defined]
    return register_model(entry)


def list_models(pattern: str = "*", task: str | None = "classify") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted.

    ``task`` picks the kind: ``"classify"`` (the default: every name a classifier's code can take),
    ``"detect"`` (the SSDLite detectors), ``"segment"`` (LR-ASPP, DeepLabV3) or ``None`` for all.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task={task!r} invalid; expected one of {TASKS} or None")
    return sorted(n for n, fn in _MODELS.items() if fnmatch.fnmatch(n, pattern)
                  and (task is None or getattr(fn, "task", "classify") == task))


def is_model_name(name: object) -> bool:
    """Whether ``name`` is a registered model name or a table file's path (both build a model)."""
    return (isinstance(name, str) and name in _MODELS) or is_table_path(name)


def resolve_model_name(name: str, kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(registered name, keywords)`` for ``name``: a table file's path becomes ``mobilenet_table`` with
    ``table=<the file's dict>``, and ``mobilenet_table``'s own ``table=`` (a path or a dict) its checked dict
    form, so the model's recorded keywords (``config.json``) rebuild it without the file."""
    kwargs = dict(kwargs or {})
    if is_table_path(name):
        if "table" in kwargs:
            raise ValueError(f"table= given with the table file {str(name)!r}; expected one or the other")
        return TABLE_MODEL, {"table": table_to_dict(read_table_file(name)), **kwargs}
    if name == TABLE_MODEL and kwargs.get("table") is not None:
        kwargs["table"] = table_to_dict(load_table(kwargs["table"]))
    return name, kwargs


def _registered(name: str) -> str:
    return TABLE_MODEL if is_table_path(name) else name


def model_task(name: str) -> str:
    """What a registered model (or a table file) builds: ``"classify"``, ``"detect"`` or ``"segment"``."""
    return getattr(_entry(_registered(name)), "task", "classify")


def get_model_kwargs(name: str) -> dict[str, Any]:
    """The keywords ``create_model(name, ...)`` accepts, with their defaults (``inspect.Parameter.empty`` if none).

    For a table file's path: ``mobilenet_table``'s less ``table`` (the file is the table), its defaults
    the file's ``options`` where it sets them (what a keyword left out builds with).
    """
    if is_table_path(name):
        options = read_table_file(name).options
        return {k: options.get(k, v) for k, v in get_model_kwargs(TABLE_MODEL).items() if k != "table"}
    fn = _entry(name)
    own = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    # Entry points that forward **kwargs to the builder take its keywords too; one with an explicit
    # signature only (the detectors) takes exactly its own.
    forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    common = {
        p.name: p.default
        for p in inspect.signature(MobileNet.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    } if forwards else {}
    return {**common, **own}


def _entry(name: str) -> Callable[..., nn.Module]:
    if isinstance(name, str) and name.lower().endswith(SUFFIXES) and name not in _MODELS:
        raise ValueError(f"unknown model {name!r}: no such table file (expected an existing {', '.join(SUFFIXES)} "
                         "file or a registered name)")
    if not isinstance(name, str) or name not in _MODELS:
        raise ValueError(f"unknown model {name!r}{did_you_mean(name, sorted(_MODELS))} (see mobilenets.list_models())")
    return _MODELS[name]


def check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse an unknown model name or keyword (with the closest valid spelling) and non-boolean switches."""
    _check_model_kwargs(*resolve_model_name(name, kwargs))


def _check_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> None:
    valid = get_model_kwargs(name)
    for key in kwargs:
        if key not in valid:
            raise ValueError(f"unknown keyword {key!r} for model {name!r}{did_you_mean(key, sorted(valid))}")
        # On/off switches must be real booleans: the string "false" is truthy and would turn a switch on.
        if isinstance(valid[key], bool) and not isinstance(kwargs[key], bool):
            raise ValueError(f"{key}={kwargs[key]!r} invalid for model {name!r}; expected True or False")


def instantiate(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """Call the entry point with keywords already checked, recording ``model_name`` / ``model_kwargs``."""
    return _instantiate(*resolve_model_name(name, kwargs))


def _instantiate(name: str, kwargs: dict[str, Any]) -> nn.Module:
    model = _entry(name)(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture by name, randomly initialised.

    ``mobilenets.create_model`` (:mod:`mobilenets.weights.create`) is the public entry point: the same,
    plus ``pretrained=``. Keywords are the entry point's own options (e.g. ``width_mult``) and the
    builder's common ones (``num_classes``, ``in_chans``, ``dropout``, ``drop_path_rate``, ...).
    """
    name, kwargs = resolve_model_name(name, kwargs)
    _check_model_kwargs(name, kwargs)
    return _instantiate(name, kwargs)
