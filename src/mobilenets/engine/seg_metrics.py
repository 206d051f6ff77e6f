"""Segmentation metrics from one exactly accumulated confusion matrix.

Why a confusion matrix: mIoU, pixel accuracy, mean class accuracy and per-class IoU all follow from
the ``[K, K]`` counts of (true class, predicted class) pixels, which add exactly across batches and
across DDP ranks (integer sums, no averaging of averages), so a sharded evaluation scores the same as
a single process. Pixels whose target is ``ignore_index`` (255: VOC's object borders, crop padding)
count nowhere. A class that appears neither in the targets nor in the predictions has no IoU (NaN)
and is left out of the mean, as in torchvision's and mmsegmentation's references.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..constants import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "ConfusionMatrix", "confusion_matrix", "segmentation_scores"]



def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``[K, K]`` int64 counts, rows the true class, columns the predicted one.

    ``pred`` and ``target`` are integer label maps of one shape (any batch layout). A target outside
    ``0..K-1`` other than ``ignore_index`` is an error (a palette index the dataset does not define).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    k = int(num_classes)
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
        bad = int(t[(t < 0) | (t >= k)][0])
        raise ValueError(f"target label {bad} invalid; expected 0..{k - 1} or the ignore index {ignore_index}")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= k):
        bad = int(p[(p < 0) | (p >= k)][0])
        raise ValueError(f"predicted label {bad} invalid; expected 0..{k - 1}")
    return torch.bincount(t * k + p, minlength=k * k).reshape(k, k)


def segmentation_scores(cm: torch.Tensor, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU of a confusion matrix.

    ``miou`` averages the IoU of the classes present in targets or predictions; ``per_class_iou`` maps
    each class name (default its index) to its IoU, ``None`` for a class seen nowhere.
    """
    cm = cm.double().cpu()
    diag = cm.diag()
    true = cm.sum(1)
    predicted = cm.sum(0)
    union = true + predicted - diag
    iou = torch.where(union > 0, diag / union.clamp(min=1), torch.full_like(diag, float("nan")))
    acc = torch.where(true > 0, diag / true.clamp(min=1), torch.full_like(diag, float("nan")))
    total = float(cm.sum())
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    if len(names) != cm.shape[0]:
        raise ValueError(f"{len(names)} class names for a {cm.shape[0]}-class confusion matrix")
    present = ~torch.isnan(iou)
    return {
        "miou": float(iou[present].mean()) if bool(present.any()) else 0.0,
        "pixel_acc": float(diag.sum() / total) if total else 0.0,
        "mean_acc": float(acc[~torch.isnan(acc)].mean()) if bool((~torch.isnan(acc)).any()) else 0.0,
        "per_class_iou": {n: (None if bool(torch.isnan(v)) else float(v)) for n, v in zip(names, iou)},
        "pixels": int(total),
    }


class ConfusionMatrix:
    """A running confusion matrix: :meth:`update` per batch (on the batch's device), :meth:`all_reduce`
    once under DDP (integer sums), :meth:`scores` at the end."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device: torch.device | str = "cpu") -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes!r} invalid; expected >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and true label maps (same shape)."""
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.matrix = self.matrix.to(cm.device) + cm

    def all_reduce(self) -> None:
        """Sum the matrices of every DDP rank (a no-op without a process group)."""
        from .distributed import all_reduce_sum

        self.matrix = all_reduce_sum(self.matrix)

    def scores(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        return segmentation_scores(self.matrix, class_names)
