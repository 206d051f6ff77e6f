"""What a training configuration builds: its datasets, its model and its batch augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, TrainConfig

__all__ = ["build_augment", "build_data", "build_model", "resolve_task"]


def build_data(cfg: TrainConfig, device: torch.device) -> tuple[dict[str, Any], Any]:
    from ..data.registry import DATASET_INFO, build_datasets

    info = DATASET_INFO[cfg.data.name]
    datasets = build_datasets(
        cfg.data.name,
        cfg.data.root,
        cfg.data.image_size,
        seed=0,  # split seeds are fixed so the test split never changes with the training seed
        download=cfg.data.download,
        val_size=cfg.data.val_size,
        num_classes=cfg.model.num_classes if cfg.data.name == "synthetic" else None,
        synthetic_sizes=(cfg.data.synthetic_size, max(cfg.data.synthetic_size // 4, 1), max(cfg.data.synthetic_size // 4, 1)),
        task=resolve_task(cfg),  # a dataset serving several tasks (VOC, COCO, the scenes) builds this one's splits
        coco_classes=cfg.data.coco_classes,
        **({"scene_sizes": tuple(cfg.data.scene_sizes)} if cfg.data.scene_sizes else {}),
    )
    return datasets, info


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int, extra: dict[str, Any] | None = None) -> nn.Module:
    """``cfg.model`` built by ``create_model``; ``extra`` are defaults ``cfg.model.kwargs`` may override
    (a detector's ``image_mean`` / ``image_std`` from its dataset)."""
    from ..weights import create_model

    kwargs = {**(extra or {}), **dict(cfg.model.kwargs)}
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_chans", in_chans)
    if cfg.model.dropout is not None:
        kwargs["dropout"] = cfg.model.dropout
    if cfg.model.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.model.drop_path_rate
    try:
        # With pretrained weights, create_model takes the tag's / directory's keywords (width
        # convention, padding, act) as defaults and re-initialises the classifier when the class
        # count differs (fine-tuning).
        model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, **kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc), key="model.pretrained" if cfg.model.pretrained else "model") from None
    if cfg.model.backbone_pretrained:
        from ..weights.create import load_backbone_weights

        try:
            load_backbone_weights(model, cfg.model.backbone_pretrained)
        except ValueError as exc:
            raise ConfigError(str(exc), key="model.backbone_pretrained") from None
    if cfg.bn_momentum is not None:
        # V3's momentum 0.01 leaves BN statistics far behind the weights when an epoch is
        # only ~20 steps; the main job trains with 0.1.
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = cfg.bn_momentum
    return model


def build_augment(cfg: TrainConfig, num_classes: int, mean: Sequence[float], std: Sequence[float],
                  generator: torch.Generator) -> nn.Module:
    """The training batch augmentation ``cfg.aug`` describes (on the CPU; move it to the device)."""
    from ..data.augment import BatchAugment

    return BatchAugment.from_config(cfg.aug, size=cfg.data.image_size, num_classes=num_classes, mean=mean,
                                    std=std, generator=generator)


def resolve_task(cfg: TrainConfig) -> str:
    """``cfg.task``, with ``auto`` replaced by the dataset's own task (``DatasetInfo.task``)."""
    if cfg.task != "auto":
        return cfg.task
    from ..data.registry import DATASET_INFO

    info = DATASET_INFO.get(cfg.data.name)
    return str(getattr(info, "task", "classify") or "classify")
