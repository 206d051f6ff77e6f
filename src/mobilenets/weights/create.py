"""``create_model(name, pretrained=...)``: a registered architecture, with pretrained weights if asked.

The architecture itself is :func:`mobilenets.models.registry.build_model`'s; this adds what a weights
reference implies (its keywords, a file's eps / padding / V1's ReLU6) before building, and loads the
weights after.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..models.registry import build_model, check_model_kwargs, instantiate, resolve_model_name
from .load import load_pretrained
from .options import pretrained_kwargs

__all__ = ["create_model", "load_backbone_weights"]


def create_model(name: str, pretrained: str | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :func:`mobilenets.list_models`, or a table file's path (``.yaml`` / ``.yml`` /
            ``.json``, :mod:`mobilenets.models.table_file`), which builds ``mobilenet_table`` with it.
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
    # A table file becomes "mobilenet_table" with table=<its dict> first, so the weights' recorded
    # architecture and keywords are compared with what they would build.
    name, kwargs = resolve_model_name(name, kwargs)
    check_model_kwargs(name, kwargs)
    # What the weights imply (a tag's or repo's keywords; a file's eps, padding and V1's ReLU6) is
    # known from the reference itself, so the model is built right instead of failing to load.
    model = instantiate(name, pretrained_kwargs(name, pretrained, kwargs))
    load_pretrained(model, pretrained)
    return model


def load_backbone_weights(model: nn.Module, pretrained: str) -> int:
    """Initialise a detector's or segmenter's backbone from a classifier's weights (ImageNet, usually).

    Why: torchvision's detection and segmentation references start from an ImageNet backbone
    (``--weights-backbone``); training a segmenter's backbone from scratch on VOC-sized data does not
    reach their figures. ``pretrained`` is anything :func:`create_model` takes for the backbone's
    classifier (``model.backbone_name``: a tag, a directory, a torchvision/timm/Keras file); every
    backbone tensor must be found there with its shape (the classifier head is not used). Dilation
    changes no weight, so an output-stride-16 backbone takes a stride-32 classifier's weights. The
    source's BatchNorm eps is copied too (torchvision's V3 uses 1e-3). Returns the tensors loaded.
    """
    name = getattr(model, "backbone_name", None)
    backbone = getattr(model, "backbone", None)
    if name is None or not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(model).__name__} has no named backbone to load classifier weights into")
    kwargs = {"in_chans": getattr(model, "in_chans", 3), **dict(getattr(model, "backbone_kwargs", {}) or {})}
    source = create_model(name, pretrained=pretrained, **kwargs)
    theirs = source.state_dict()
    mine = backbone.state_dict()
    missing = [k for k in mine if k not in theirs]
    wrong = [k for k in mine if k in theirs and theirs[k].shape != mine[k].shape]
    if missing or wrong:
        bad = (missing or wrong)[0]
        raise ValueError(f"backbone weights {pretrained!r} do not fit {name}: {len(missing)} tensors missing, "
                         f"{len(wrong)} of another shape (first: {bad!r})")
    backbone.load_state_dict({k: theirs[k] for k in mine})
    source_modules = dict(source.named_modules())
    for mod_name, mod in backbone.named_modules():
        src = source_modules.get(mod_name)
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and isinstance(src, nn.modules.batchnorm._BatchNorm):
            mod.eps = src.eps
    return len(mine)
