"""What a training run learns: the :class:`Task` the one training loop asks for everything task-specific.

Why a task object: classification and detection share everything that makes a run robust (config,
AMP, EMA, clipping, schedules, exact resume, kill-safety, DDP, progress, metrics.csv, summary.json),
and differ only in a handful of answers: how batches are built, which model, which augmentation and
evaluation preprocessing, the loss of a batch, the evaluation and which metric picks the best
checkpoint. :mod:`mobilenets.engine.train` asks the task these questions and never forks on it, so a
fix to the loop reaches every task at once.

* :class:`ClassificationTask` (``task: classify``): exactly the classifier training of before.
* :class:`DetectionTask` (``task: detect``): a detector (``ssdlite``) on a detection dataset, COCO box
  mAP on val chooses the best weights.
* :class:`SegmentationTask` (``task: segment``): a segmenter (``lraspp``, ``deeplabv3``) on per-pixel
  masks, cross-entropy with the ignore index (plus ``aux_weight`` times the auxiliary head's), mIoU on
  val chooses the best weights.

``task: auto`` takes the dataset's own (``DATASET_INFO[name].task``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, TrainConfig
from .build import build_augment, build_model, resolve_task
from .epoch import classification_loss
from .evaluate import evaluate, evaluate_detection, evaluate_segmentation
from .seg_metrics import IGNORE_INDEX

__all__ = ["TASKS", "ClassificationTask", "DetectionTask", "SegmentationTask", "Task", "get_task", "resolve_task"]


class Task:
    """The task-specific answers of a training run (see the module docstring for why).

    ``metric`` is the validation key that chooses the best checkpoint (larger is better), ``fields``
    the columns of ``metrics.csv``.
    """

    name: ClassVar[str]
    metric: ClassVar[str]
    metric_label: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]

    def __init__(self, cfg: TrainConfig | None = None) -> None:
        #: the run's configuration, for the answers that depend on it (a segmentation loss's aux weight)
        self.cfg = cfg

    # ------------------------------------------------------------------ data
    def batches(self, dataset: Any, batch_size: int, *, cfg: TrainConfig, shuffle: bool, seed: int,
                device: torch.device, drop_last: bool = False, rank: int = 0, world_size: int = 1) -> tuple[Any, int]:
        """A re-iterable source of ``(uint8 images, targets)`` batches and its length."""
        raise NotImplementedError

    def eval_batches(self, dataset: Any, batch_size: int, *, cfg: TrainConfig, device: torch.device,
                     rank: int = 0, world_size: int = 1) -> Any:
        """This rank's evaluation batches of a split (in order, no drops): :meth:`batches` unshuffled on
        this rank's shard (a detection shard may repeat images, which evaluation gathers once per image id;
        a segmentation shard gives every image to exactly one rank, so summed confusion matrices are exact)."""
        return self.batches(dataset, batch_size, cfg=cfg, shuffle=False, seed=0, device=device, rank=rank,
                            world_size=world_size)[0]

    # ------------------------------------------------------------------ model
    def build_model(self, cfg: TrainConfig, info: Any, num_classes: int, channels: int) -> nn.Module:
        """The model ``cfg.model`` names, for the dataset's classes and channels (on the CPU)."""
        raise NotImplementedError

    def augment(self, cfg: TrainConfig, num_classes: int, mean: Any, std: Any,
                generator: torch.Generator) -> nn.Module:
        """The training batch augmentation (on the CPU; move it to the device)."""
        raise NotImplementedError

    def eval_preprocess(self, cfg: TrainConfig, mean: Any, std: Any) -> nn.Module:
        """What evaluation does to a uint8 batch before the model (no augmentation)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, x: torch.Tensor, targets: Any, amp_ctx: Any) -> torch.Tensor:
        """The scalar training loss of one augmented batch (forward included, under ``amp_ctx``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation and reports
    def evaluate(self, model: nn.Module, batches: Iterable[Any], preprocess: nn.Module, *, cfg: TrainConfig,
                 dataset: Any, num_classes: int, distributed: bool = False) -> dict[str, Any]:
        """The split's metrics; ``result[self.metric]`` is what the best checkpoint is chosen by."""
        raise NotImplementedError

    def row(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> dict[str, Any]:
        """The validation columns of an epoch's metrics row (``ema_`` ones ``None`` without EMA)."""
        raise NotImplementedError

    def epoch_text(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> str:
        """The validation part of the epoch log line."""
        raise NotImplementedError

    def summary(self, best_value: float, test: dict[str, Any]) -> dict[str, Any]:
        """The task's keys of ``summary.json``: the best validation figure and the test figures."""
        raise NotImplementedError

    def aug_text(self, cfg: TrainConfig) -> str:
        """The augmentation part of the settings line printed at start."""
        raise NotImplementedError

    def profile_size(self, model: nn.Module, cfg: TrainConfig, channels: int) -> tuple[int, int, int]:
        """The (C, H, W) input the parameter / MAC count is measured at."""
        return (channels, int(cfg.data.image_size or 0), int(cfg.data.image_size or 0))


class ClassificationTask(Task):
    """Image classification: cross-entropy on (soft) labels, top-1 on val chooses the best weights."""

    name = "classify"
    metric = "acc1"
    metric_label = "val top-1"
    fields = ("epoch", "lr", "train_loss", "val_loss", "val_acc1", "val_acc5", "ema_val_loss", "ema_val_acc1",
              "ema_val_acc5", "images_per_s", "epoch_s")

    def batches(self, dataset: Any, batch_size: int, *, cfg: TrainConfig, shuffle: bool, seed: int,
                device: torch.device, drop_last: bool = False, rank: int = 0, world_size: int = 1) -> tuple[Any, int]:
        from ..data.loader import make_batches

        return make_batches(dataset, batch_size, shuffle=shuffle, seed=seed, device=device,
                            device_resident=cfg.data.device_resident, num_workers=cfg.data.num_workers,
                            drop_last=drop_last, rank=rank, world_size=world_size,
                            repeated_aug=cfg.repeated_aug if shuffle else 0)

    def eval_batches(self, dataset: Any, batch_size: int, *, cfg: TrainConfig, device: torch.device,
                     rank: int = 0, world_size: int = 1) -> Any:
        from ..data.loader import shard

        return self.batches(shard(dataset, rank, world_size), batch_size, cfg=cfg, shuffle=False, seed=0,
                            device=device)[0]

    def build_model(self, cfg: TrainConfig, info: Any, num_classes: int, channels: int) -> nn.Module:
        model = build_model(cfg, num_classes, channels)
        if not cfg.model.pretrained:
            # Trained from scratch: the dataset's own statistics become the model's preprocessing.
            model.pretrained_cfg.update(mean=tuple(info.mean), std=tuple(info.std),
                                        input_size=(channels, cfg.data.image_size, cfg.data.image_size))
        return model

    def augment(self, cfg: TrainConfig, num_classes: int, mean: Any, std: Any,
                generator: torch.Generator) -> nn.Module:
        return build_augment(cfg, num_classes, mean, std, generator)

    def eval_preprocess(self, cfg: TrainConfig, mean: Any, std: Any) -> nn.Module:
        from ..data.augment import BatchAugment

        return BatchAugment(mean=mean, std=std).eval()

    def loss(self, model: nn.Module, x: torch.Tensor, targets: Any, amp_ctx: Any) -> torch.Tensor:
        return classification_loss(model, x, targets, amp_ctx)

    def evaluate(self, model: nn.Module, batches: Iterable[Any], preprocess: nn.Module, *, cfg: TrainConfig,
                 dataset: Any, num_classes: int, distributed: bool = False) -> dict[str, Any]:
        return evaluate(model, batches, preprocess, num_classes=num_classes, amp=cfg.amp,
                        channels_last=cfg.channels_last, distributed=distributed)

    def row(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "val_loss": val["loss"], "val_acc1": val["acc1"], "val_acc5": val["acc5"],
            "ema_val_loss": ema_val["loss"] if ema_val else None,
            "ema_val_acc1": ema_val["acc1"] if ema_val else None,
            "ema_val_acc5": ema_val["acc5"] if ema_val else None,
        }

    def epoch_text(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> str:
        ema_txt = f" ema {ema_val['acc1']:.2f}" if ema_val else ""
        return f"val {val['acc1']:.2f}{ema_txt}"

    def summary(self, best_value: float, test: dict[str, Any]) -> dict[str, Any]:
        return {"best_val_acc1": best_value, "test_acc1": test["acc1"], "test_acc5": test["acc5"],
                "test_loss": test["loss"]}

    def aug_text(self, cfg: TrainConfig) -> str:
        a = cfg.aug
        crop = {"pad": f"pad-and-crop {a.padding} px", "rrc": f"random-resized-crop {tuple(a.scale)}"}.get(
            str(a.crop), "no crop")
        return f"{crop}, hflip {a.hflip:g}"


_DETECT_KEYS = ("map", "map50", "map75")


class DetectionTask(Task):
    """Object detection (``ssdlite`` and other torchvision-style detectors): the model's own loss dict
    summed, COCO box mAP@[.5:.95] on val chooses the best weights.

    Batches follow :mod:`mobilenets.data.detection` (padded target dicts), the augmentation is
    :class:`~mobilenets.data.augment.boxes.BoxAugment` (float images in 0..1: the detector normalises
    with its own ``image_mean`` / ``image_std``, set from the dataset when training from scratch).
    """

    name = "detect"
    metric = "map"
    metric_label = "val mAP"
    fields = ("epoch", "lr", "train_loss", "val_map", "val_map50", "val_map75", "ema_val_map", "ema_val_map50",
              "ema_val_map75", "images_per_s", "epoch_s")

    def batches(self, dataset: Any, batch_size: int, *, cfg: TrainConfig, shuffle: bool, seed: int,
                device: torch.device, drop_last: bool = False, rank: int = 0, world_size: int = 1) -> tuple[Any, int]:
        from ..data.detection import make_detection_batches

        return make_detection_batches(dataset, batch_size, shuffle=shuffle, seed=seed, device=device,
                                      drop_last=drop_last, rank=rank, world_size=world_size,
                                      num_workers=cfg.data.num_workers)

    def build_model(self, cfg: TrainConfig, info: Any, num_classes: int, channels: int) -> nn.Module:
        extra: dict[str, Any] = {}
        if not cfg.model.pretrained:  # from scratch: the dataset's statistics are the model's normalisation
            extra = {"image_mean": tuple(info.mean), "image_std": tuple(info.std)}
        return build_model(cfg, num_classes, channels, extra=extra)

    def augment(self, cfg: TrainConfig, num_classes: int, mean: Any, std: Any,
                generator: torch.Generator) -> nn.Module:
        from ..data.augment.boxes import BoxAugment

        return BoxAugment.from_config(cfg.aug, size=cfg.data.image_size, generator=generator)

    def eval_preprocess(self, cfg: TrainConfig, mean: Any, std: Any) -> nn.Module:
        return detection_preprocess()

    def loss(self, model: nn.Module, x: torch.Tensor, targets: Any, amp_ctx: Any) -> torch.Tensor:
        from ..data.detection import unpad_targets

        with amp_ctx:
            losses = model(x, unpad_targets(targets))
        return sum(v.float() for v in losses.values())  # type: ignore[return-value]

    def evaluate(self, model: nn.Module, batches: Iterable[Any], preprocess: nn.Module, *, cfg: TrainConfig,
                 dataset: Any, num_classes: int, distributed: bool = False) -> dict[str, Any]:
        return evaluate_detection(model, batches, preprocess, dataset=dataset, amp=cfg.amp,
                                  channels_last=cfg.channels_last, distributed=distributed)

    def row(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> dict[str, Any]:
        out = {f"val_{k}": val[k] for k in _DETECT_KEYS}
        out.update({f"ema_val_{k}": ema_val[k] if ema_val else None for k in _DETECT_KEYS})
        return out

    def epoch_text(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> str:
        ema_txt = f" ema {ema_val['map']:.3f}/{ema_val['map50']:.3f}" if ema_val else ""
        return f"val mAP/AP50 {val['map']:.3f}/{val['map50']:.3f}{ema_txt}"

    def summary(self, best_value: float, test: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"best_val_map": best_value}
        for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large"):
            out[f"test_{key}"] = test.get(key)
        out["test_per_class"] = test.get("per_class", {})
        return out

    def aug_text(self, cfg: TrainConfig) -> str:
        a = cfg.aug
        return (f"iou-crop {a.iou_crop:g}, zoom-out {a.zoom_out:g} (<= {a.zoom_out_max:g}x), hflip {a.hflip or 0:g}, "
                f"photometric {a.photometric:g}")

    def profile_size(self, model: nn.Module, cfg: TrainConfig, channels: int) -> tuple[int, int, int]:
        size = getattr(model, "pretrained_cfg", {}).get("input_size")
        return tuple(size) if size else super().profile_size(model, cfg, channels)  # type: ignore[return-value]


def detection_preprocess() -> nn.Module:
    """Evaluation preprocessing of a detection batch: uint8 -> float in 0..1, boxes unchanged (the
    detector resizes and normalises itself)."""
    from ..data.augment.boxes import BoxAugment

    return BoxAugment().eval()


_SEG_KEYS = ("miou", "pixel_acc", "loss")


class SegmentationTask(Task):
    """Semantic segmentation (``lraspp``, ``deeplabv3`` and other torchvision-style segmenters): per-pixel
    cross-entropy ignoring :data:`~mobilenets.engine.seg_metrics.IGNORE_INDEX`, plus ``cfg.aux_weight``
    times the auxiliary head's when the model has one; mIoU on val chooses the best weights.

    Batches follow :mod:`mobilenets.data.segmentation` (uint8 images, int64 masks), the augmentation is
    :class:`~mobilenets.data.augment.masks.MaskAugment` (random scale, crop with ignore padding, flip),
    and the model takes normalised images like a classifier, so export and quantisation reuse the
    classifier path with the logits map as the one output.
    """

    name = "segment"
    metric = "miou"
    metric_label = "val mIoU"
    fields = ("epoch", "lr", "train_loss", "val_loss", "val_miou", "val_pixel_acc", "ema_val_loss", "ema_val_miou",
              "ema_val_pixel_acc", "images_per_s", "epoch_s")

    @property
    def aux_weight(self) -> float:
        return float(self.cfg.aux_weight) if self.cfg is not None else 0.5

    def batches(self, dataset: Any, batch_size: int, *, cfg: TrainConfig, shuffle: bool, seed: int,
                device: torch.device, drop_last: bool = False, rank: int = 0, world_size: int = 1) -> tuple[Any, int]:
        from ..data.segmentation import make_segmentation_batches

        return make_segmentation_batches(dataset, batch_size, shuffle=shuffle, seed=seed, device=device,
                                         drop_last=drop_last, rank=rank, world_size=world_size,
                                         num_workers=cfg.data.num_workers)

    def build_model(self, cfg: TrainConfig, info: Any, num_classes: int, channels: int) -> nn.Module:
        model = build_model(cfg, num_classes, channels)
        if not cfg.model.pretrained:  # from scratch: the dataset's statistics are the model's preprocessing
            model.pretrained_cfg.update(mean=tuple(info.mean), std=tuple(info.std),
                                        input_size=(channels, cfg.data.image_size, cfg.data.image_size))
        return model

    def augment(self, cfg: TrainConfig, num_classes: int, mean: Any, std: Any,
                generator: torch.Generator) -> nn.Module:
        from ..data.augment.masks import MaskAugment

        return MaskAugment.from_config(cfg.aug, size=cfg.data.image_size, mean=mean, std=std, generator=generator)

    def eval_preprocess(self, cfg: TrainConfig, mean: Any, std: Any) -> nn.Module:
        from ..data.augment.masks import MaskAugment

        return MaskAugment(cfg.data.image_size, mean=mean, std=std).eval()

    def loss(self, model: nn.Module, x: torch.Tensor, targets: Any, amp_ctx: Any) -> torch.Tensor:
        with amp_ctx:
            out = model(x)
        loss = F.cross_entropy(out["out"].float(), targets, ignore_index=IGNORE_INDEX)
        if "aux" in out and self.aux_weight:
            loss = loss + self.aux_weight * F.cross_entropy(out["aux"].float(), targets, ignore_index=IGNORE_INDEX)
        return loss

    def evaluate(self, model: nn.Module, batches: Iterable[Any], preprocess: nn.Module, *, cfg: TrainConfig,
                 dataset: Any, num_classes: int, distributed: bool = False) -> dict[str, Any]:
        return evaluate_segmentation(model, batches, preprocess, num_classes=num_classes,
                                     class_names=list(getattr(dataset, "classes", []) or []) or None,
                                     ignore_index=int(getattr(dataset, "ignore_index", IGNORE_INDEX)), amp=cfg.amp,
                                     channels_last=cfg.channels_last, distributed=distributed)

    def row(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> dict[str, Any]:
        out = {f"val_{k}": val[k] for k in _SEG_KEYS}
        out.update({f"ema_val_{k}": ema_val[k] if ema_val else None for k in _SEG_KEYS})
        return out

    def epoch_text(self, val: dict[str, Any], ema_val: dict[str, Any] | None) -> str:
        ema_txt = f" ema {ema_val['miou']:.3f}" if ema_val else ""
        return f"val mIoU {val['miou']:.3f} pixel acc {val['pixel_acc']:.3f}{ema_txt}"

    def summary(self, best_value: float, test: dict[str, Any]) -> dict[str, Any]:
        return {"best_val_miou": best_value, "test_miou": test["miou"], "test_pixel_acc": test["pixel_acc"],
                "test_mean_acc": test["mean_acc"], "test_loss": test["loss"], "test_per_class_iou": test["per_class_iou"]}

    def aug_text(self, cfg: TrainConfig) -> str:
        a = cfg.aug
        return f"scale {tuple(a.seg_scale)}, crop with ignore padding, hflip {a.hflip or 0:g}"


TASKS: dict[str, type[Task]] = {"classify": ClassificationTask, "detect": DetectionTask,
                                "segment": SegmentationTask}


def get_task(name: str, cfg: TrainConfig | None = None) -> Task:
    """The task object for a resolved task name (``classify`` / ``detect`` / ``segment``) and the run's
    configuration."""
    if name not in TASKS:
        raise ConfigError(f"got {name!r}; expected one of {sorted(TASKS)} (or auto)", key="task")
    return TASKS[name](cfg)
