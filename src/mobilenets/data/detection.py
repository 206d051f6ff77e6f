"""What every detection dataset shares: the item and batch formats, the loaders, the category maps, the
COCO ground-truth dict and the one-line annotation error.

Conventions (the detection plan's, used by the readers in :mod:`.coco`, :mod:`.voc` and the composed
digit scenes in :mod:`.scenes`):

* boxes are float32 ``xyxy`` in pixels of the image they refer to, pixel ``i`` covering ``[i, i + 1)``;
* labels are int64, **0 = background**, object classes ``1..K``; ``classes[0] == "__background__"``,
  so ``len(classes)`` is the detector's ``num_classes``; ``label_to_category[label]`` is the dataset's
  own category id (index 0 unused, 0), the map back for the COCO evaluator;
* ``dataset[i] -> (image uint8 [C, S, S], {"boxes" [K, 4] in S pixels, "labels" [K], "image_id": int,
  "orig_size": (H, W)})`` with ``S`` the split's image size;
* a batch is ``(images uint8 [N, C, S, S], targets)`` with padded targets ``{"boxes" [N, M, 4],
  "labels" [N, M] (-1 = padding, always after the real boxes), "image_id" [N], "orig_size" [N, 2]}``,
  ``M >= 1`` the most boxes of any image in the batch. One tensor per key (not a list of dicts) so a
  batch moves to the device in four copies and augments as a whole (:class:`~.augment.boxes.BoxAugment`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AnnotationError",
    "DetectionLoader",
    "FileDetectionDataset",
    "category_maps",
    "collate_detection",
    "ground_truth",
    "make_detection_batches",
    "targets_to",
    "unpad_targets",
]

Target = dict[str, Any]


class AnnotationError(ValueError):
    """A malformed annotation file; the one-line message names the file and the entry."""


def category_maps(categories: Sequence[tuple[int, str]]) -> tuple[list[str], list[int], dict[int, int]]:
    """``(classes, label_to_category, category_to_label)`` for ``(category id, name)`` pairs.

    Categories sorted by id get the contiguous labels ``1..K`` (0 is the background), so a detector
    has ``K + 1`` outputs whatever gaps the ids have (COCO's 80 classes use ids 1..90).
    """
    ordered = sorted((int(i), str(n)) for i, n in categories)
    classes = ["__background__", *(name for _, name in ordered)]
    label_to_category = [0, *(cid for cid, _ in ordered)]
    return classes, label_to_category, {cid: k + 1 for k, (cid, _) in enumerate(ordered)}


def ground_truth(images: list[dict], annotations: list[dict], classes: Sequence[str],
                 label_to_category: Sequence[int]) -> dict[str, Any]:
    """A COCO ``instances`` dict (what pycocotools' ``COCO()`` loads) from plain lists: ``images``
    (id, width, height, file_name), ``annotations`` (image_id, category_id, bbox xywh, area, iscrowd;
    ids are numbered 1.. here when missing) and the categories named by ``classes``."""
    anns = []
    for k, a in enumerate(annotations):
        a = dict(a)
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
        anns.append(a)
    cats = [{"id": int(c), "name": str(n)} for c, n in zip(label_to_category[1:], classes[1:])]
    return {"images": images, "annotations": anns, "categories": cats}


# --------------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------------


def pad_targets(boxes: Sequence[Tensor], labels: Sequence[Tensor], image_ids: Sequence[int],
                orig_sizes: Sequence[Sequence[int]]) -> dict[str, Tensor]:
    """Per-image boxes and labels as the padded batch dict (labels -1 and zero boxes as padding)."""
    n = len(boxes)
    m = max([1, *(int(b.shape[0]) for b in boxes)])
    device = boxes[0].device if n else torch.device("cpu")
    out_boxes = torch.zeros((n, m, 4), dtype=torch.float32, device=device)
    out_labels = torch.full((n, m), -1, dtype=torch.int64, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        out_boxes[i, : b.shape[0]] = b
        out_labels[i, : lab.shape[0]] = lab
    return {
        "boxes": out_boxes,
        "labels": out_labels,
        "image_id": torch.tensor([int(i) for i in image_ids], dtype=torch.int64),
        "orig_size": torch.tensor([[int(s[0]), int(s[1])] for s in orig_sizes], dtype=torch.int64).view(n, 2),
    }


def collate_detection(items: Sequence[tuple[Tensor, Target]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Stack ``(image uint8 [C, S, S], target)`` items into ``(images [N, C, S, S], padded targets)``.

    Images must share one size (every split resizes to its ``S``); images stay uint8, a quarter of the
    host-to-device traffic of float."""
    if not items:
        raise ValueError("collate_detection needs at least one item")
    sizes = {tuple(img.shape) for img, _ in items}
    if len(sizes) > 1:
        raise ValueError(f"images of one batch must share a size, got {sorted(sizes)}")
    images = torch.stack([img for img, _ in items])
    targets = pad_targets([t["boxes"].reshape(-1, 4).float() for _, t in items],
                          [t["labels"].reshape(-1).long() for _, t in items],
                          [int(t["image_id"]) for _, t in items], [t["orig_size"] for _, t in items])
    return images, targets


def unpad_targets(targets: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """The padded batch targets as one dict per image (``boxes`` [K, 4], ``labels`` [K], ``image_id``,
    ``orig_size``), padding dropped: the list form torchvision-style losses take."""
    out = []
    keep = targets["labels"] >= 0
    for i in range(targets["labels"].shape[0]):
        k = keep[i]
        out.append({"boxes": targets["boxes"][i][k], "labels": targets["labels"][i][k],
                    "image_id": targets["image_id"][i], "orig_size": targets["orig_size"][i]})
    return out


def targets_to(targets: dict[str, Tensor], device: torch.device | str) -> dict[str, Tensor]:
    """The padded targets on ``device`` (non-blocking copies; a no-op for tensors already there)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in targets.items()}


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int) -> Tensor:
    """This rank's sample order for ``epoch``: a permutation seeded with ``seed + epoch`` (the same on
    every rank), padded by wrapping to a multiple of ``world_size``, every ``world_size``-th index from
    ``rank`` — :class:`~.tensor.TensorLoader`'s scheme, so resume and DDP behave as for classifiers."""
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        order = torch.arange(n)
    if world_size > 1:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
        order = order[rank::world_size]
    return order


class _EpochSampler(torch.utils.data.Sampler[int]):
    """:func:`epoch_order` as a DataLoader sampler with ``set_epoch`` (exact resume for file datasets)."""

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int, world_size: int) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world_size = n, shuffle, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        order = epoch_order(self.n, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch, rank=self.rank,
                            world_size=self.world_size)
        return iter(order.tolist())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)


class DetectionLoader:
    """Batches of a detection dataset on ``device``, re-iterable, with ``set_epoch(e)``.

    In-memory datasets (those with ``batch(indices)``, e.g. the digit scenes) are indexed directly on
    the device; a dataset with ``set_epoch`` (the training scenes, generated fresh per epoch) is told
    the epoch first. File datasets go through a ``DataLoader`` with :func:`collate_detection` and a
    seeded per-epoch sampler. If ``set_epoch`` is never called each ``iter()`` advances the epoch.
    """

    def __init__(self, dataset: Any, batch_size: int, *, shuffle: bool, seed: int, device: torch.device | str,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, num_workers: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} invalid; expected >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.device = torch.device(device)
        self.in_memory = hasattr(dataset, "batch")
        self.dataset = dataset.to(self.device) if self.in_memory and hasattr(dataset, "to") else dataset
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.epoch = 0
        self._sampler: _EpochSampler | None = None
        self._loader: Any = None
        if not self.in_memory:
            self._sampler = _EpochSampler(len(dataset), shuffle, self.seed, rank, world_size)
            self._loader = torch.utils.data.DataLoader(
                dataset, batch_size=self.batch_size, sampler=self._sampler, drop_last=drop_last,
                num_workers=num_workers, collate_fn=collate_detection, pin_memory=self.device.type == "cuda",
                persistent_workers=num_workers > 0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and, for training scenes, whose scenes) the next pass uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = math.ceil(len(self.dataset) / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
        epoch = self.epoch
        self.epoch += 1
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        if not self.in_memory:
            assert self._sampler is not None
            self._sampler.set_epoch(epoch)
            for images, targets in self._loader:
                yield images.to(self.device, non_blocking=True), targets_to(targets, self.device)
            return
        order = epoch_order(len(self.dataset), shuffle=self.shuffle, seed=self.seed, epoch=epoch, rank=self.rank,
                            world_size=self.world_size)
        n = order.numel()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self.dataset.batch(order[start : start + self.batch_size])


def make_detection_batches(dataset: Any, batch_size: int, *, shuffle: bool, seed: int,
                           device: torch.device | str, drop_last: bool = False, rank: int = 0,
                           world_size: int = 1, num_workers: int = 0) -> tuple[DetectionLoader, int]:
    """``(loader, steps)``: a re-iterable :class:`DetectionLoader` of ``(images uint8 [N, C, S, S],
    padded targets)`` batches on ``device`` and the number of batches it yields per epoch."""
    if drop_last and batch_size > len(dataset):
        from ..config import ConfigError

        raise ConfigError(f"got {batch_size}, larger than the {len(dataset)}-image training split", key="batch_size")
    loader = DetectionLoader(dataset, batch_size, shuffle=shuffle, seed=seed, device=device, drop_last=drop_last,
                             rank=rank, world_size=world_size, num_workers=num_workers)
    return loader, len(loader)


# --------------------------------------------------------------------------------------------------
# file datasets (COCO, VOC)
# --------------------------------------------------------------------------------------------------


class FileDetectionDataset(torch.utils.data.Dataset):
    """Images decoded from files and resized to ``image_size``, with their boxes scaled: what the COCO
    and VOC readers share. A record is ``(path, image_id, width, height, boxes xyxy [K, 4] in original
    pixels, labels [K])`` for the training targets; the readers keep the full annotation for
    :meth:`coco_ground_truth`. Decoding failures name the file (:class:`~.folder.BadImageError`)."""

    num_channels = 3

    def __init__(self, records: list[tuple[str, int, int, int, np.ndarray, np.ndarray]], image_size: int,
                 classes: Sequence[str], label_to_category: Sequence[int]) -> None:
        if int(image_size) < 1:
            raise ValueError(f"image_size={image_size} invalid; expected >= 1")
        self.records = records
        self.image_size = int(image_size)
        self.classes = list(classes)
        self.label_to_category = list(label_to_category)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, indices: Sequence[int] | Tensor) -> FileDetectionDataset:
        """A dataset with the given records (and, through the subclasses, their ground truth only)."""
        import copy

        new = copy.copy(self)
        new.records = [self.records[int(i)] for i in indices]
        return new

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        from PIL import Image

        from .folder import load_rgb

        path, image_id, width, height, boxes, labels = self.records[index]
        img = load_rgb(path)
        if img.size != (width, height):
            raise AnnotationError(f"{path}: the image is {img.size[0]}x{img.size[1]} but its annotation says "
                                  f"{width}x{height}")
        s = self.image_size
        arr = np.asarray(img.resize((s, s), resample=Image.Resampling.BILINEAR), dtype=np.uint8)
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
        scale = torch.tensor([s / width, s / height, s / width, s / height], dtype=torch.float32)
        target = {"boxes": torch.from_numpy(boxes).float().reshape(-1, 4) * scale,
                  "labels": torch.from_numpy(labels).long().reshape(-1), "image_id": int(image_id),
                  "orig_size": (int(height), int(width))}
        return image, target

    def _images_gt(self) -> list[dict]:
        return [{"id": int(r[1]), "width": int(r[2]), "height": int(r[3]), "file_name": Path(r[0]).name}
                for r in self.records]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.classes) - 1}, size={self.image_size})"
