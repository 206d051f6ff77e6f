"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Each registered entry point is a keyword-only function that resolves an architecture table and hands it
to the one builder. ``create_model`` validates names and keywords up front so a typo fails with the
closest valid spelling instead of a ``TypeError`` deep inside a constructor.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from .._validate import did_you_mean

__all__ = ["create_model", "get_model_kwargs", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# Keywords every entry point forwards to the builder (MobileNet.__init__), beside its own.
_COMMON_KWARGS: set[str] = set()


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register an entry point under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    _ensure_loaded()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def get_model_kwargs(name: str) -> dict[str, Any]:
    """The keywords ``create_model(name, ...)`` accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
    _ensure_loaded()
    fn = _entry(name)
    own = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    from .mobilenet import MobileNet

    common = {
        p.name: p.default
        for p in inspect.signature(MobileNet.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return {**common, **own}


def _entry(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str) or name not in _MODELS:
        raise ValueError(f"unknown model {name!r}{did_you_mean(name, sorted(_MODELS))} (see mobilenets.list_models())")
    return _MODELS[name]


def create_model(name: str, pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :func:`list_models`.
        pretrained: a registry tag (``mobilenets.list_pretrained()``), ``hf-hub:ORG/REPO`` (a timm or
            mobilenets repository on the Hugging Face Hub), a ``save_pretrained`` directory or a
            torchvision/timm/Keras weights file, loaded after construction. A tag, repository or
            directory supplies the keywords it was trained with (width convention, class count, ...)
            as defaults; a file supplies its class count. Options the weights need but do not store
            (BatchNorm eps, TF "same" padding, V1's ReLU6) are applied and logged in one line; passing a
            contradicting value is an error. A different ``num_classes`` keeps a fresh classifier for
            fine-tuning.
        **kwargs: the entry point's own options (e.g. ``width_mult``) and the builder's common ones
            (``num_classes``, ``in_chans``, ``dropout``, ``drop_path_rate``, ``features_only``, ...).
    """
    _ensure_loaded()
    fn = _entry(name)
    valid = get_model_kwargs(name)
    for key in kwargs:
        if key not in valid:
            raise ValueError(f"unknown keyword {key!r} for model {name!r}{did_you_mean(key, sorted(valid))}")
        # On/off switches must be real booleans: the string "false" is truthy and would turn a switch on.
        if isinstance(valid[key], bool) and not isinstance(kwargs[key], bool):
            raise ValueError(f"{key}={kwargs[key]!r} invalid for model {name!r}; expected True or False")
    if pretrained is not None:
        # What the weights imply (a tag's or repo's keywords; a file's eps, padding and V1's ReLU6) is
        # known from the reference itself, so the model is built right instead of failing to load.
        from ..weights import pretrained_kwargs

        kwargs = pretrained_kwargs(name, pretrained, kwargs)
    model = fn(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    if pretrained is not None:
        from ..weights import load_pretrained

        load_pretrained(model, pretrained)
    return model


def _ensure_loaded() -> None:
    # The architecture module registers its entry points on import.
    from . import archs  # noqa: F401
