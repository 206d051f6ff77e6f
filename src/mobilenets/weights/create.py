"""``create_model(name, pretrained=...)``: a registered architecture, with pretrained weights if asked.

The architecture itself is :func:`mobilenets.models.registry.build_model`'s; this adds what a weights
reference implies (its keywords, a file's eps / padding / V1's ReLU6) before building, and loads the
weights after.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..models.registry import build_model, check_model_kwargs, instantiate
from .load import load_pretrained
from .options import pretrained_kwargs

__all__ = ["create_model"]


def create_model(name: str, pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :func:`mobilenets.list_models`.
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
    if pretrained is None:
        return build_model(name, **kwargs)
    check_model_kwargs(name, kwargs)
    # What the weights imply (a tag's or repo's keywords; a file's eps, padding and V1's ReLU6) is
    # known from the reference itself, so the model is built right instead of failing to load.
    model = instantiate(name, pretrained_kwargs(name, pretrained, kwargs))
    load_pretrained(model, pretrained)
    return model
