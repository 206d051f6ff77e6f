"""What a pretrained reference implies for the model to build, known before building it.

A registry tag, an ``hf-hub:`` repository, a native directory or a foreign weights file each fix some
``create_model`` options (BatchNorm eps, padding, V1's ReLU6) and suggest others (widths, class count);
:func:`pretrained_kwargs` merges them with the caller's keywords and refuses a contradiction.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._validate import did_you_mean
from ..models.native import CONFIG_NAME, WeightsError, read_config
from ..models.registry import get_model_kwargs
from . import registry, sources
from .files import _classifier_classes, _resolve_weights_path, _state_shapes, sniff_format
from .hub import is_hub_reference, read_hub_config

__all__ = ["FIXED_OPTIONS", "PretrainedOptions", "inspect_pretrained", "pretrained_defaults", "pretrained_kwargs"]

# The logger of the whole weights package (the name users and tests configure).
log = logging.getLogger("mobilenets.weights")


def _announce(message: str) -> None:
    """Log ``message`` at INFO, and print it to stderr when nobody configured logging.

    It reports a choice made on the caller's behalf (an architecture option a checkpoint needs), which
    must not go unseen: Python drops INFO records when logging is unconfigured, as it is under the
    ``mobilenets`` command line and in a plain script. An application with its own logging set-up
    gets the record only, filtered by its levels.
    """
    log.info(message)
    if not log.hasHandlers():
        print(f"mobilenets: {message}", file=sys.stderr)


# Architecture options a checkpoint fixes without storing them (mobilenets.weights.sources.architecture_options).
FIXED_OPTIONS = ("act", "bn_eps", "pad_type")
_SOURCE_LABEL = {"torchvision": "torchvision", "timm": "timm", "timm_tf": "timm tf_ port", "keras": "Keras",
                 "native": "mobilenets"}


@dataclass(frozen=True)
class PretrainedOptions:
    """What a pretrained reference says about the model to build for it, known before building it.

    ``fixed``: options the weights were trained with that no state dict stores (MobileNetV1's
    activation, BatchNorm eps, padding mode): another value would silently change every output, so a
    caller's contradicting keyword is refused. ``defaults``: the other keywords the reference carries
    (widths, width convention, class count), which the caller may override; another ``num_classes``
    fine-tunes. ``what`` names the reference and its source for messages.
    """

    what: str
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


def _split_fixed(saved: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """``(fixed, defaults)`` from saved keywords; ``base`` are the fixed options the source implies."""
    defaults = dict(saved)
    fixed = dict(base or {})
    fixed.update({k: defaults.pop(k) for k in FIXED_OPTIONS if k in defaults})
    return fixed, defaults


def _not_found(pretrained: str | Path) -> FileNotFoundError:
    hint = did_you_mean(pretrained, registry.list_pretrained(), what="the tag")
    return FileNotFoundError(
        f"pretrained weights {pretrained} not found: neither a file, a directory, a registry tag "
        f"(see mobilenets.list_pretrained()) nor hf-hub:ORG/REPO{hint}"
    )


def inspect_pretrained(
    name: str, pretrained: str | Path, *, source: str = "auto", given: Mapping[str, Any] | None = None
) -> PretrainedOptions:
    """Read what ``pretrained`` implies for ``create_model(name, ...)`` without building anything.

    A registry tag and an ``hf-hub:`` repository name their architecture and keywords; a native
    directory's ``config.json`` records them; a foreign file's source (from its bytes and key names,
    as :func:`load_weights` detects it) fixes BatchNorm eps, padding and V1's ReLU6, and its classifier
    gives the class count. timm's ``tf_`` ports have timm's key names: a file counts as one when the
    caller passes ``pad_type="same"`` (or ``source="timm_tf"``), or, without a ``pad_type``, when its
    name starts with ``tf_`` as timm's release files of those ports do.
    """
    given = given or {}
    if is_hub_reference(pretrained):
        checkpoint = read_hub_config(str(pretrained))
        if checkpoint.arch != name:
            raise ValueError(f"{pretrained} holds {checkpoint.arch} weights, not {name}")
        fixed, defaults = _split_fixed(checkpoint.kwargs, sources.architecture_options(checkpoint.source, name))
        origin = (f"timm {checkpoint.config.get('architecture')}" if checkpoint.layout == "timm"
                  else "mobilenets")
        return PretrainedOptions(f"{pretrained} ({origin} weights)", fixed, defaults)
    if isinstance(pretrained, str) and not Path(pretrained).exists() and registry.is_tag(pretrained):
        entry = registry.get_pretrained(pretrained)
        if entry.arch != name:
            raise ValueError(f"pretrained tag {pretrained!r} holds {entry.arch} weights, not {name}")
        fixed, defaults = _split_fixed({**entry.kwargs, "num_classes": entry.num_classes},
                                       sources.architecture_options(entry.source, name))
        return PretrainedOptions(f"tag {entry.tag!r} ({_SOURCE_LABEL[entry.source]} weights)", fixed, defaults)
    path = Path(pretrained)
    if not path.exists():
        raise _not_found(pretrained)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        config = read_config(path)
        if config["architecture"] != name:
            raise ValueError(f"{path} holds {config['architecture']} weights, not {name}")
        fixed, defaults = _split_fixed(config.get("kwargs", {}))
        return PretrainedOptions(f"{pretrained} (mobilenets weights)", fixed, defaults)
    if source not in sources.SOURCES:
        raise ValueError(f"source={source!r} invalid; expected one of {sources.SOURCES}")
    file = _resolve_weights_path(path)
    reason = ""
    aux = False
    if sniff_format(file) == "hdf5":
        source = "keras" if source == "auto" else source  # another explicit source: load_weights refuses it
        classes = sources.keras.classifier_classes(file)
    else:
        shapes = _state_shapes(file)
        if source == "auto":
            source = sources.detect_source(shapes) or "auto"  # unknown: load_weights says so
        classes = _classifier_classes(shapes)
        if sources.torchvision_segmentation.looks_like(shapes) and any(k.startswith("aux_classifier.") for k in shapes):
            aux = True  # a torchvision DeepLabV3 saved with its auxiliary head
        if source == "timm" and given.get("pad_type", "same" if file.name.startswith("tf_") else "") == "same":
            source = "timm_tf"
            reason = ", by its pad_type='same'" if "pad_type" in given else ", by its tf_ file name"
    if source == "auto":
        return PretrainedOptions(str(pretrained))
    label = f"{pretrained} ({_SOURCE_LABEL.get(source, source)} weights{reason})"
    defaults: dict[str, Any] = {"num_classes": classes} if classes is not None else {}
    if aux:
        defaults["aux_loss"] = True
    return PretrainedOptions(label, sources.architecture_options(source, name), defaults)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool | str):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def pretrained_kwargs(
    name: str, pretrained: str | Path, kwargs: Mapping[str, Any], *, source: str = "auto"
) -> dict[str, Any]:
    """The keywords to build ``name`` with for ``pretrained``: the caller's, over what the weights imply.

    Architecture options the weights fix (:class:`PretrainedOptions`) are applied and reported in one
    log line (also printed when logging is not configured, so the command line shows it); one that
    contradicts a keyword the caller passed is refused in one line naming the option and both values,
    rather than building a model whose outputs would silently differ from the source's.
    """
    options = inspect_pretrained(name, pretrained, source=source, given=kwargs)
    valid = get_model_kwargs(name)
    fixed = {k: v for k, v in options.fixed.items() if k in valid}
    for key, value in fixed.items():
        if key in kwargs and not _same_value(kwargs[key], value):
            raise WeightsError(
                f"{options.what} was trained with {key}={value!r}, but {key}={kwargs[key]!r} was passed: "
                f"leave {key} out and the weights' value is applied"
            )
    applied = {k: v for k, v in fixed.items() if k not in kwargs}
    if applied:
        shown = ", ".join(f"{k}={v!r}" for k, v in applied.items())
        _announce(f"{options.what}: building {name} with {shown}, as the weights were trained")
    return {**options.defaults, **fixed, **kwargs}


def pretrained_defaults(name: str, pretrained: str | Path) -> dict[str, Any]:
    """The ``create_model`` keywords a pretrained reference implies (tag, hf-hub repo, directory or file).

    :func:`pretrained_kwargs` is what ``create_model`` uses: the same keywords, checked against the
    caller's and reported.
    """
    options = inspect_pretrained(name, pretrained)
    valid = get_model_kwargs(name)
    return {**options.defaults, **{k: v for k, v in options.fixed.items() if k in valid}}
