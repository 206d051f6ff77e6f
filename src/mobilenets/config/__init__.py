"""Typed training configuration: dataclasses are the single source of truth.

Why dataclasses and not a dict of dicts: every key, its type and its default live in exactly
one place (:mod:`mobilenets.config.schema`), so a YAML file, a command-line override and the code
that reads ``cfg.optim.lr`` can never disagree about a name. The generic machinery
(:func:`from_dict`, :func:`apply_overrides`, :func:`load_config`, :func:`to_dict`,
:func:`save_yaml`, :func:`validate`) works for *any* tree of nested dataclasses, so other
sub-systems can define their own configs and reuse it.

Design rules:

* Unknown keys are errors, never silently ignored: a typo such as ``optim.lrr`` would otherwise
  train with the default learning rate and waste a run. The error names the full dotted key and
  suggests the closest valid one.
* Types are checked strictly (``epochs=1.5`` is an error, not ``1``), but YAML's quirks are
  forgiven where the intent is unambiguous: ``lr: 4e-3`` is a *string* to PyYAML (YAML 1.1
  needs a dot in the mantissa) and is accepted as a float; ``yes``/``no``/``1``/``0`` are
  accepted for booleans.
* Range checks that may involve several fields live in each dataclass's ``validate()`` method
  and are run by :func:`validate` (and therefore by :func:`load_config`).

Where things live: ``schema`` (the dataclasses and their choices), ``values`` (type checking,
``from_dict``/``to_dict``), ``overrides`` (``key=value`` and ``$MOBILENETS_TRAIN_OVERRIDES``),
``loader`` (``load_config``, ``validate``, ``describe``, ``save_yaml``), ``errors`` (``ConfigError``).

Typical use::

    cfg = load_config(TrainConfig, "configs/digits.yaml", ["optim.lr=0.01", "model.kwargs.width_mult=0.5"])
    save_yaml(cfg, run_dir / "config.yaml")   # exactly what ran, re-loadable with load_config
"""

from .errors import ConfigError
from .loader import describe, load_config, save_yaml, validate
from .overrides import ENV_OVERRIDES, apply_overrides, env_overrides
from .schema import DATASET_DEFAULT as DATASET_DEFAULT  # importable as before; not in __all__
from .schema import (
    AmpMode,
    AugConfig,
    AutoAugment,
    CropMode,
    DataConfig,
    DatasetName,
    ModelConfig,
    OptimConfig,
    OptimizerName,
    SchedConfig,
    SchedulerName,
    TrainConfig,
    field_help,
)
from .values import all_keys, from_dict, to_dict

__all__ = [
    "ENV_OVERRIDES",
    "AmpMode",
    "AugConfig",
    "AutoAugment",
    "ConfigError",
    "CropMode",
    "DataConfig",
    "DatasetName",
    "ModelConfig",
    "OptimConfig",
    "OptimizerName",
    "SchedConfig",
    "SchedulerName",
    "TrainConfig",
    "all_keys",
    "apply_overrides",
    "describe",
    "env_overrides",
    "field_help",
    "from_dict",
    "load_config",
    "save_yaml",
    "to_dict",
    "validate",
]
