"""Weights in and out: the native format, torchvision / timm / Keras checkpoints, the registry and the hub.

* :mod:`.files`: reading weights files safely (format from the bytes, state dicts without running code);
* :mod:`.load`: loading a file, tag, ``hf-hub:`` repository or native directory into a model;
* :mod:`.options`: what a pretrained reference implies for the model to build (eps, padding, widths);
* :mod:`.create`: :func:`create_model`, a registered architecture with optional pretrained weights;
* :mod:`.registry`: published checkpoints by tag, fetched and verified; :mod:`.hub`: the Hugging Face Hub;
* :mod:`.sources`: name and layout mappings from other implementations' checkpoints.

The native format itself (``model.safetensors`` + ``config.json``) is written and read by
:mod:`mobilenets.models.native`, so that a model can save itself without importing this package.
"""

from .create import create_model
from .files import load_state_dict_file, sniff_format
from .load import LoadResult, from_pretrained, load_pretrained, load_weights
from .native import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    WeightsError,
    read_config,
    restore_preprocessing,
    save_pretrained,
)
from .options import (
    FIXED_OPTIONS,
    PretrainedOptions,
    inspect_pretrained,
    log,
    pretrained_defaults,
    pretrained_kwargs,
)

__all__ = [
    "CONFIG_NAME",
    "FIXED_OPTIONS",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "LoadResult",
    "PretrainedOptions",
    "WeightsError",
    "create_model",
    "from_pretrained",
    "inspect_pretrained",
    "load_pretrained",
    "load_state_dict_file",
    "load_weights",
    "log",
    "pretrained_defaults",
    "pretrained_kwargs",
    "read_config",
    "restore_preprocessing",
    "save_pretrained",
    "sniff_format",
]
