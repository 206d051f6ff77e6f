"""Datasets that fit in memory, held as one uint8 tensor ``N×C×H×W`` plus an int64 label tensor, so
training can move them to the accelerator once and feed whole batches to the batched augmentation in
:mod:`mobilenets.data.augment` through :class:`TensorLoader` — no DataLoader, no per-sample Python on
the hot path.  Also the digits splits (scikit-learn's 8×8 digits) and the stratified splitter.

Splits are fixed and documented so that numbers are comparable between runs: the model is selected on
"val", never on "test".
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class TensorImageDataset(torch.utils.data.Dataset):
    """A whole image-classification dataset as tensors: ``images`` uint8 ``N×C×H×W``, ``labels`` int64
    ``N``, and the class names.  Cheap to index, to move to a device, and to batch by fancy indexing."""

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str]) -> None:
        if not isinstance(images, Tensor):
            raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images must have dtype torch.uint8, got {images.dtype}")
        if images.ndim != 4:
            raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have 1 or 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})"
            )
        if not isinstance(labels, Tensor):
            raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype != torch.int64:
            raise ValueError(f"labels must have dtype torch.int64, got {labels.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got {tuple(labels.shape)}"
            )
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("classes must not be empty")
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(classes):
                raise ValueError(f"labels must be in [0, {len(classes)}), got range [{lo}, {hi}]")
        self.images = images
        self.labels = labels
        self.classes = classes
        #: Row numbers in the original source (e.g. ``load_digits`` order) when this is a split of it;
        #: lets tests and reports prove that splits are disjoint without comparing pixels.
        self.source_indices: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def _replace(self, images: Tensor, labels: Tensor) -> TensorImageDataset:
        new = copy.copy(self)  # keeps the subclass and any extra attributes
        new.images, new.labels = images, labels
        return new

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """A copy with the tensors on ``device`` (no copy when they already are)."""
        return self._replace(self.images.to(device), self.labels.to(device))

    def subset(self, indices: Tensor | Sequence[int]) -> TensorImageDataset:
        """A new dataset with the given rows (copies the selected images)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        new = self._replace(self.images[idx], self.labels[idx])
        src = self.source_indices if self.source_indices is not None else torch.arange(len(self))
        new.source_indices = src[idx.cpu()]
        return new

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, channels={self.num_channels}, size={self.image_size}, "
            f"classes={len(self.classes)}, device={self.device})"
        )


def resize_images(images: Tensor, size: int, chunk: int = 2048) -> Tensor:
    """Resize a uint8 ``N×C×H×W`` tensor to ``size×size`` (bilinear, antialiased when shrinking), in
    chunks to bound the float32 working memory."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        res = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = res.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(
    labels: Tensor | np.ndarray, test_size: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` of a stratified split (scikit-learn's ``train_test_split``), sorted so
    the kept order is the original order."""
    from sklearn.model_selection import train_test_split

    y = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    n_classes = len(np.unique(y))
    if isinstance(test_size, int) and not n_classes <= test_size <= len(y) - n_classes:
        raise ValueError(
            f"cannot hold out {test_size} of {len(y)} samples stratified over {n_classes} classes; "
            f"expected {n_classes} <= size <= {len(y) - n_classes} (set data.val_size)"
        )
    idx = np.arange(len(y))
    keep, held = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed, shuffle=True)
    return np.sort(keep), np.sort(held)


#: The digits test split always uses this seed, so "test" is the same 360 images in every run.
DIGITS_TEST_SEED = 0


def load_digits_splits(image_size: int = 32, seed: int = 0) -> dict[str, TensorImageDataset]:
    """scikit-learn's 1797 real 8×8 handwritten digits, as fixed stratified splits.

    Split (stratified by class with ``sklearn.model_selection.train_test_split``):

    * ``"test"``: 360 images (20%), carved first from all 1797 with the constant seed
      :data:`DIGITS_TEST_SEED` = 0 — it never changes, whatever ``seed`` or ``image_size`` is;
    * ``"val"``: 180 images (10% of 1797), carved from the remaining 1437 with ``seed``;
    * ``"train"``: the other 1257 images (70%).

    Every class is present in every split in (almost exactly) its overall proportion.  Pixel values
    0..16 are mapped to uint8 with ``round(v * 255 / 16)`` and the images are upsampled bilinearly to
    ``image_size × image_size`` (1 channel), because MobileNets' five stride-2 stages need more than 8
    pixels.  Nothing is downloaded: the data ships inside the scikit-learn wheel.
    """
    from sklearn.datasets import load_digits

    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32)).view(-1, 1, 8, 8)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    x = (x * (255.0 / 16.0)).round_().clamp_(0, 255)
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.round_().clamp_(0, 255)
    images = x.to(torch.uint8).contiguous()
    n = len(y)
    rest, test = stratified_split(y, test_size=0.2, seed=DIGITS_TEST_SEED)
    val_count = round(0.1 * n)
    train_rel, val_rel = stratified_split(y[rest], test_size=val_count, seed=seed)
    train, val = rest[train_rel], rest[val_rel]
    classes = [str(i) for i in range(10)]

    def make(idx: np.ndarray) -> TensorImageDataset:
        t = torch.from_numpy(idx)
        ds = TensorImageDataset(images[t].clone(), y[t].clone(), classes)
        ds.source_indices = t
        return ds

    return {"train": make(train), "val": make(val), "test": make(test)}


class TensorLoader:
    """Batches straight out of an in-memory :class:`TensorImageDataset` on ``device``.

    Each epoch indexes the (device-resident) tensors with a permutation drawn from a
    ``torch.Generator`` seeded with ``seed + epoch`` — reproducible, and different every epoch.  Like
    ``DistributedSampler``, :meth:`set_epoch` selects the epoch; if it is never called, every
    ``iter()`` advances the epoch by one.  With ``world_size > 1`` the permutation (the same on every
    rank) is padded by wrapping around to a multiple of ``world_size`` and rank ``r`` takes every
    ``world_size``-th index from ``r``, so all ranks see the same number of batches (a requirement of
    DDP) and together cover the dataset.  Yields ``(uint8 images, int64 labels)`` on ``device``.
    """

    def __init__(
        self,
        dataset: TensorImageDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(dataset, TensorImageDataset):
            raise ValueError(f"TensorLoader needs a TensorImageDataset, got {type(dataset).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.dataset = dataset.to(device) if device is not None else dataset
        self.device = self.dataset.device
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return math.ceil(len(self.dataset) / self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self, epoch: int | None = None) -> Tensor:
        """This rank's sample order for ``epoch`` (default: the next one)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            total = self.num_samples * self.world_size
            if total > n:
                order = torch.cat([order, order[: total - n]])
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.indices().to(self.device)
        self.epoch += 1
        images, labels = self.dataset.images, self.dataset.labels
        n = order.numel()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield images.index_select(0, idx), labels.index_select(0, idx)
