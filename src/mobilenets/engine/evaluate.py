"""The evaluation loop (:func:`evaluate`) and the datasets a saved model is evaluated on.

:func:`evaluate` is the one loop that measures top-1/top-5 and loss, during training (validation,
final test) and after it (:mod:`mobilenets.deploy.evaluate`, for weights and exported artefacts).
:func:`build_eval_datasets` takes the data from the training run's ``config.yaml`` when there is one
beside the weights (dataset, its directory, the split sizes), so ``mobilenets eval RUN`` needs no
``--data-root`` for the data the run was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ..constants import IGNORE_INDEX
from .distributed import all_gather_object, all_reduce_sum
from .runtime import amp_context, prepare_input

__all__ = ["DATA_ROOT_FLAG", "RecordedData", "build_eval_datasets", "coco_detections", "evaluate",
           "evaluate_detection", "evaluate_segmentation", "recorded_data", "segmentation_logits"]

DATA_ROOT_FLAG = "--data-root"
"""The option of ``eval`` and ``quantize`` that sets the dataset directory (named in their errors)."""


@dataclass(frozen=True)
class RecordedData:
    """The ``data`` section a training run recorded in its ``config.yaml``.

    Why: the run directory already knows where its dataset lives and how it was split (CIFAR's
    validation carve-out size, the synthetic split sizes); evaluating or quantizing it should reuse
    that instead of asking again, or silently use a different split.
    """

    config_path: Path
    name: str | None
    root: str | None
    val_size: int | None = None
    synthetic_size: int | None = None
    model_num_classes: int | None = None
    image_size: int | None = None
    scene_sizes: tuple[int, ...] | None = None


def recorded_data(source: str | Path | None) -> RecordedData | None:
    """The data settings of the training run that produced ``source`` (a run directory, or a file in
    one), read from its ``config.yaml``; ``None`` when there is none or it cannot be read.

    The YAML is read as plain data, not as a :class:`~mobilenets.config.TrainConfig`: a run written by
    another version may hold keys this one does not know, and only the ``data`` section matters here.
    """
    if source is None:
        return None
    path = Path(source)
    if path.is_file():
        path = path.parent
    config = path / "config.yaml"
    if not config.is_file():
        return None
    try:
        raw = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return None
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}

    def _int(value: Any) -> int | None:
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    root = data.get("root")
    return RecordedData(
        config_path=config, name=str(data["name"]) if data.get("name") else None,
        root=str(root) if root not in (None, "") else None, val_size=_int(data.get("val_size")),
        synthetic_size=_int(data.get("synthetic_size")), model_num_classes=_int(model.get("num_classes")),
        image_size=_int(data.get("image_size")),
        scene_sizes=tuple(int(n) for n in data["scene_sizes"]) if isinstance(data.get("scene_sizes"), list) else None,
    )


def build_eval_datasets(
    source: str | Path | None,
    *,
    data: str | None,
    root: str | None,
    known_dataset: str | None,
    image_size: int,
    crop_pct: float,
    interpolation: str,
    num_classes: int | None = None,
    task: str | None = None,
) -> tuple[str, str | None, dict[str, Any]]:
    """The datasets to evaluate or calibrate a model on: ``(dataset name, root used, splits)``.

    ``task`` (the model's: ``classify``, ``detect``, ``segment``) picks the splits of a dataset that
    serves several tasks (VOC's boxes or its masks); ``None`` takes the dataset's own.

    ``data`` / ``root`` are what the user passed (``--data`` / ``--data-root``); unset, they come from
    the weights' metadata (``known_dataset``) and the run's ``config.yaml`` beside ``source``. A
    missing or unusable directory is a one-line ``ValueError`` naming ``--data-root DIR`` (and the
    config.yaml the directory was read from, when the user did not type it).
    """
    from ..data.registry import DataRootError, build_datasets

    recorded = recorded_data(source)
    dataset = data or known_dataset or (recorded.name if recorded else None)
    if dataset is None:
        raise ValueError(f"{source} names no dataset in its metadata; pass --data NAME (e.g. --data cifar10)")
    same = recorded is not None and recorded.name == dataset
    origin = None
    if root is None and same and recorded is not None and recorded.root:
        root, origin = recorded.root, f"{recorded.config_path} as data.root"
    options: dict[str, Any] = {}
    if same and recorded is not None:
        if recorded.val_size is not None:
            options["val_size"] = recorded.val_size
        if recorded.synthetic_size is not None:  # the sizes engine.build.build_data derives from it
            n = recorded.synthetic_size
            options["synthetic_sizes"] = (n, max(n // 4, 1), max(n // 4, 1))
        if recorded.scene_sizes is not None:  # digit_scenes: the same (val, test) scenes as the run's
            options["scene_sizes"] = recorded.scene_sizes
    if dataset == "synthetic":  # as engine.train builds it: the model's class count, 3 channels
        options["num_classes"] = num_classes
    if task is not None:
        options["task"] = task
    try:
        datasets = build_datasets(dataset, root, image_size, crop_pct=crop_pct, interpolation=interpolation,
                                  **options)
    except DataRootError as exc:
        raise ValueError(exc.message(DATA_ROOT_FLAG, origin=origin)) from None
    return dataset, root, datasets


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    preprocess: nn.Module,
    *,
    num_classes: int,
    amp: str = "none",
    channels_last: bool = False,
    confusion: bool = False,
    distributed: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy; optionally the confusion matrix.

    With ``distributed=True`` each rank evaluates its own shard and the counts are summed over ranks.
    """
    was_training = model.training
    model.eval()
    preprocess.eval()
    device = next(model.parameters()).device
    k = min(5, num_classes)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    loss_sum = torch.zeros((), device=device)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device) if confusion else None
    n = 0
    with amp_context(amp, device):
        for images, labels in batches:
            x, labels = preprocess(images, labels)
            logits = model(prepare_input(x, channels_last)).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            top = logits.topk(k, dim=1).indices
            hit = top.eq(labels[:, None])
            correct1 += hit[:, 0].sum()
            correct5 += hit.any(dim=1).sum()
            if cm is not None:
                cm += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes**2).view(
                    num_classes, num_classes
                )
            n += labels.shape[0]
    model.train(was_training)
    if distributed:
        totals = torch.stack([correct1.double(), correct5.double(), loss_sum.double(),
                              torch.tensor(float(n), device=device, dtype=torch.float64)])
        all_reduce_sum(totals)
        correct1, correct5, loss_sum, n = totals[0], totals[1], totals[2], int(totals[3])
        if cm is not None:
            all_reduce_sum(cm)
    if n == 0:
        raise ValueError("evaluation split is empty")
    out: dict[str, Any] = {
        "loss": float(loss_sum) / n,
        "acc1": 100.0 * float(correct1) / n,
        "acc5": 100.0 * float(correct5) / n,
        "n": n,
    }
    if cm is not None:
        cm = cm.cpu()
        out["confusion"] = cm.tolist()
        per_class = cm.diag().double() / cm.sum(1).clamp(min=1).double()
        out["per_class_acc1"] = (100.0 * per_class).tolist()
    return out


def coco_detections(outputs: list[dict[str, torch.Tensor]], targets: dict[str, torch.Tensor], size_hw: tuple[int, int],
                    label_to_category: list[int]) -> dict[int, list[dict[str, Any]]]:
    """A batch's detections as COCO results, per image id: boxes from the ``size_hw`` input pixels the
    model saw to the original image (``targets["orig_size"]``), xyxy -> xywh, labels -> category ids."""
    out: dict[int, list[dict[str, Any]]] = {}
    h, w = size_hw
    ids, sizes = targets["image_id"].tolist(), targets["orig_size"].tolist()
    for det, image_id, (oh, ow) in zip(outputs, ids, sizes):
        boxes = det["boxes"].float().cpu() * torch.tensor([ow / w, oh / h, ow / w, oh / h])
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        out[int(image_id)] = [
            {"image_id": int(image_id), "category_id": int(label_to_category[int(lab)]), "bbox": box, "score": float(sc)}
            for box, sc, lab in zip(xywh, det["scores"].float().cpu().tolist(), det["labels"].cpu().tolist())
        ]
    return out


@torch.no_grad()
def evaluate_detection(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    preprocess: nn.Module,
    *,
    dataset: Any,
    amp: str = "none",
    channels_last: bool = False,
    distributed: bool = False,
) -> dict[str, Any]:
    """COCO box metrics (:func:`~mobilenets.engine.coco_eval.coco_evaluate`) of a detector on a split.

    The detector's eval forward gives boxes in the pixels of the batch; they are scaled to each
    image's original size and scored against ``dataset.coco_ground_truth()``. With
    ``distributed=True`` every rank's detections are gathered first (one set per image id, so a
    padded shard does not count an image twice).
    """
    from .coco_eval import coco_evaluate

    was_training = model.training
    model.eval()
    preprocess.eval()
    device = next(model.parameters()).device
    per_image: dict[int, list[dict[str, Any]]] = {}
    with amp_context(amp, device):
        for images, targets in batches:
            x, targets = preprocess(images, targets)
            outputs = model(prepare_input(x, channels_last))
            per_image.update(coco_detections(outputs, targets, tuple(x.shape[-2:]), dataset.label_to_category))
    model.train(was_training)
    if distributed:
        merged: dict[int, list[dict[str, Any]]] = {}
        for part in all_gather_object(per_image):
            for image_id, dets in part.items():
                merged.setdefault(image_id, dets)
        per_image = merged
    if not per_image:
        raise ValueError("evaluation split is empty")
    gt = dataset.coco_ground_truth()
    names = dict(zip(dataset.label_to_category[1:], list(dataset.classes)[1:]))
    result = coco_evaluate(gt, [d for dets in per_image.values() for d in dets], names)
    result["n"] = len(per_image)
    return result


def segmentation_logits(output: Any) -> torch.Tensor:
    """The main logits of a segmentation model's output: ``output["out"]`` of torchvision's dict
    structure, or the tensor itself (an exported graph returns the logits alone)."""
    return output["out"] if isinstance(output, dict) else output


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    preprocess: nn.Module,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    ignore_index: int = IGNORE_INDEX,
    amp: str = "none",
    channels_last: bool = False,
    distributed: bool = False,
) -> dict[str, Any]:
    """mIoU, pixel accuracy, per-class IoU (:mod:`~mobilenets.engine.seg_metrics`) and the mean
    cross-entropy per labelled pixel of a segmentation model on a split.

    Every pixel is counted in one integer confusion matrix; with ``distributed=True`` each rank
    evaluates its shard (every image on exactly one rank) and the matrices and loss sums are added, so
    the figures equal a single process's.
    """
    from .seg_metrics import ConfusionMatrix

    was_training = model.training
    model.eval()
    preprocess.eval()
    device = next(model.parameters()).device
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # loss sum, labelled pixels, images
    with amp_context(amp, device):
        for images, masks in batches:
            x, masks = preprocess(images, masks)
            logits = segmentation_logits(model(prepare_input(x, channels_last))).float()
            if logits.shape[-2:] != masks.shape[-2:]:
                logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            masks = masks.long()
            totals[0] += F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="sum").double()
            totals[1] += (masks != ignore_index).sum()
            totals[2] += masks.shape[0]
            cm.update(logits.argmax(1), masks)
    model.train(was_training)
    if distributed:
        cm.all_reduce()
        all_reduce_sum(totals)
    if int(totals[2]) == 0:
        raise ValueError("evaluation split is empty")
    result = cm.scores(class_names)
    result["loss"] = float(totals[0] / totals[1].clamp(min=1))
    result["n"] = int(totals[2])
    return result
