"""What every segmentation dataset shares: the split protocol, the loaders, mask decoding and checks, and
the file-backed and in-memory datasets the readers (:mod:`.voc`, :mod:`.coco`, the ``mask_folder``
layout of :func:`mask_folder_splits`) build on.

Conventions:

* a mask holds one class index per pixel, **0 = background** where the dataset has one, classes
  ``0..K-1`` with ``K = num_classes`` (background included) and :data:`IGNORE_INDEX` (255) for pixels
  that count for nothing (VOC's object borders, crowd regions, crop padding);
* ``dataset[i] -> (uint8 image [C, S, S], uint8 mask [S, S])``, ``S`` the split's ``image_size``: files
  are resized at load, the image bilinearly (antialiased, PIL) and the mask by nearest neighbour (so no
  pixel gets a label that is a blend of two classes);
* a batch is ``(uint8 images [B, C, S, S], int64 masks [B, S, S])`` on the loader's device; masks
  travel as uint8 (an eighth of the traffic) and widen on the device.

A split has ``num_classes``, ``classes``, ``ignore_index``, ``num_channels``, ``image_size``,
``__len__``, ``__getitem__``, ``subset(indices)``, optionally ``batch(indices)`` (in-memory fast path)
and ``set_epoch(e)`` (splits regenerated per epoch, e.g. the training digit scenes).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..constants import IGNORE_INDEX
from .detection import AnnotationError, epoch_order

__all__ = [
    "IGNORE_INDEX",
    "MASK_IMAGE_EXTENSIONS",
    "FileSegmentationDataset",
    "SegmentationLoader",
    "TensorSegmentationDataset",
    "check_mask",
    "collate_segmentation",
    "load_mask",
    "make_segmentation_batches",
    "mask_folder_splits",
    "read_classes_file",
    "segmentation_order",
]

#: Image file endings a ``mask_folder`` split's ``images/`` may hold (its masks are always PNG).
MASK_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------------


def load_mask(path: str | Path) -> np.ndarray:
    """A PNG of class indices as uint8 ``[H, W]``: palette (mode ``P``, VOC's format: the index, not the
    colour), 8-bit grey (``L``), 1-bit, or 16/32-bit grey with values below 256. Anything else (RGB
    colours, values >= 256) is an :class:`~.detection.AnnotationError` naming the file, since guessing a
    colour-to-class map would silently train on wrong labels."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "L"):
                arr = np.asarray(img, dtype=np.uint8)
            elif mode == "1":
                arr = np.asarray(img, dtype=np.uint8)  # booleans: 0 / 1
            elif mode.startswith("I"):
                wide = np.asarray(img).astype(np.int64)
                if wide.size and (wide.min() < 0 or wide.max() > 255):
                    raise AnnotationError(f"{path}: mask values {int(wide.min())}..{int(wide.max())} invalid; "
                                          "expected class indices 0..255")
                arr = wide.astype(np.uint8)
            else:
                raise AnnotationError(f"{path}: a mode {mode!r} mask; expected a palette (P) or grayscale (L) PNG "
                                      "of class indices")
    except AnnotationError:
        raise
    except Exception as exc:  # PIL raises many types
        raise AnnotationError(f"{path}: cannot decode mask: {type(exc).__name__}: {exc}") from None
    return np.ascontiguousarray(arr)


def check_mask(mask: np.ndarray | Tensor, num_classes: int, path: str | Path,
               ignore_index: int = IGNORE_INDEX) -> None:
    """Raise an :class:`~.detection.AnnotationError` naming ``path`` when a value of ``mask`` is neither a
    class ``0..num_classes-1`` nor ``ignore_index``."""
    values = np.unique(np.asarray(mask))
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise AnnotationError(f"{path}: mask value(s) {shown} outside the {num_classes} classes 0..{num_classes - 1} "
                              f"(and not the ignore index {ignore_index})")


def _resize_pair(img: Any, mask: np.ndarray, size: int, num_channels: int) -> tuple[Tensor, Tensor]:
    """PIL image + uint8 mask -> (uint8 [C, S, S] bilinear antialiased, uint8 [S, S] nearest)."""
    from PIL import Image

    img = img.convert("L") if num_channels == 1 else img
    arr = np.asarray(img.resize((size, size), resample=Image.Resampling.BILINEAR), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    m = Image.fromarray(mask, mode="L").resize((size, size), resample=Image.Resampling.NEAREST)
    return (torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous(),
            torch.from_numpy(np.asarray(m, dtype=np.uint8).copy()))


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------


class _SegmentationBase(torch.utils.data.Dataset):
    """The split protocol's static attributes; ``classes[k]`` names class ``k`` (background included)."""

    ignore_index = IGNORE_INDEX
    num_channels = 3
    image_size = 0
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class FileSegmentationDataset(_SegmentationBase):
    """Image/mask file pairs decoded per item and resized to ``image_size`` (see the module docstring):
    what the VOC and ``mask_folder`` readers share (COCO rasterises its masks instead; it overrides
    :meth:`_mask`).

    ``records`` are ``(image path, mask path)``; a mask whose size differs from its image, or with a value
    outside ``0..K-1`` that is not 255, raises an :class:`~.detection.AnnotationError` naming the mask file
    when the item is read (:meth:`verify` checks every pair up front). :meth:`cache` decodes the whole
    split into a :class:`TensorSegmentationDataset`, the in-memory fast path, for sets that fit.
    """

    def __init__(self, records: Sequence[tuple[str, str]], image_size: int, classes: Sequence[str], *,
                 num_channels: int = 3, ignore_index: int = IGNORE_INDEX) -> None:
        if int(image_size) < 1:
            raise ValueError(f"image_size={image_size} invalid; expected >= 1")
        if int(num_channels) not in (1, 3):
            raise ValueError(f"num_channels={num_channels} invalid; expected 1 (grey) or 3 (RGB)")
        if not 1 <= len(classes) <= 255 or not 0 <= int(ignore_index) <= 255 or int(ignore_index) < len(classes):
            raise ValueError(f"{len(classes)} classes with ignore_index={ignore_index} invalid; expected 1..255 classes "
                             "and an ignore index in num_classes..255")
        self.records = [(str(i), str(m)) for i, m in records]
        self.image_size = int(image_size)
        self.classes = [str(c) for c in classes]
        self.num_channels = int(num_channels)
        self.ignore_index = int(ignore_index)

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, indices: Sequence[int] | Tensor) -> FileSegmentationDataset:
        new = copy.copy(self)
        new.records = [self.records[int(i)] for i in indices]
        return new

    def _mask(self, index: int) -> np.ndarray:
        return load_mask(self.records[index][1])

    def _load(self, index: int) -> tuple[Any, np.ndarray]:
        """The original-size image (PIL, RGB) and its checked mask."""
        from .folder import load_rgb

        image_path, mask_path = self.records[index]
        img = load_rgb(image_path)
        mask = self._mask(index)
        if (mask.shape[1], mask.shape[0]) != img.size:
            raise AnnotationError(f"{mask_path}: the mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                                  f"{image_path} is {img.size[0]}x{img.size[1]}")
        check_mask(mask, self.num_classes, mask_path, self.ignore_index)
        return img, mask

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        img, mask = self._load(index)
        return _resize_pair(img, mask, self.image_size, self.num_channels)

    def verify(self) -> FileSegmentationDataset:
        """Decode every pair once and raise the first problem (naming its file); returns ``self``."""
        for i in range(len(self)):
            self._load(i)
        return self

    def cache(self) -> TensorSegmentationDataset:
        """The whole split decoded into memory (``len * (C + 1) * S * S`` bytes), batched by indexing."""
        items = [self[i] for i in range(len(self))]
        s, c = self.image_size, self.num_channels
        images = torch.stack([x for x, _ in items]) if items else torch.zeros((0, c, s, s), dtype=torch.uint8)
        masks = torch.stack([m for _, m in items]) if items else torch.zeros((0, s, s), dtype=torch.uint8)
        return TensorSegmentationDataset(images, masks, self.classes, ignore_index=self.ignore_index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={self.num_classes}, size={self.image_size})"


class TensorSegmentationDataset(_SegmentationBase):
    """A split held as tensors: uint8 ``images`` [N, C, S, S] and ``masks`` [N, S, S] on one device,
    batched by indexing there (``batch``), the fast path of :class:`SegmentationLoader`."""

    def __init__(self, images: Tensor, masks: Tensor, classes: Sequence[str], *,
                 ignore_index: int = IGNORE_INDEX) -> None:
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [N, C, S, S], got {images.dtype} {tuple(images.shape)}")
        if masks.shape != (images.shape[0], *images.shape[2:]) or masks.dtype != torch.uint8:
            raise ValueError(f"masks must be uint8 [N, H, W] matching images {tuple(images.shape)}, got "
                             f"{masks.dtype} {tuple(masks.shape)}")
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be square (S x S), got {tuple(images.shape[-2:])}")
        self.images, self.masks = images, masks
        self.classes = [str(c) for c in classes]
        self.ignore_index = int(ignore_index)
        self.num_channels = int(images.shape[1])
        self.image_size = int(images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.masks[index]

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images and masks of ``indices`` on :attr:`device` (uint8 both)."""
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.device)
        return self.images.index_select(0, idx), self.masks.index_select(0, idx)

    def subset(self, indices: Sequence[int] | Tensor) -> TensorSegmentationDataset:
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.device)
        return TensorSegmentationDataset(self.images[idx], self.masks[idx], self.classes, ignore_index=self.ignore_index)

    def to(self, device: torch.device | str) -> TensorSegmentationDataset:
        device = torch.device(device)
        if device == self.device:
            return self
        return TensorSegmentationDataset(self.images.to(device), self.masks.to(device), self.classes,
                                         ignore_index=self.ignore_index)

    def __repr__(self) -> str:
        return f"TensorSegmentationDataset(n={len(self)}, classes={self.num_classes}, size={self.image_size})"


# --------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------


def segmentation_order(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                       pad: bool | None = None) -> Tensor:
    """This rank's sample order for ``epoch``.

    The permutation is :func:`~.detection.epoch_order`'s (seeded with ``seed + epoch``, the same on every
    rank). ``pad`` (default: ``shuffle``) wraps it to a multiple of ``world_size`` so every training rank
    takes the same number of steps (DDP needs them in lock-step); unpadded shards (evaluation) are
    disjoint and cover the split exactly once, so confusion matrices summed over ranks equal the
    single-process one.
    """
    order = epoch_order(n, shuffle=shuffle, seed=seed, epoch=epoch, rank=0, world_size=1)
    if world_size == 1:
        return order
    if shuffle if pad is None else pad:
        total = math.ceil(n / world_size) * world_size
        if total > n:
            order = torch.cat([order, order[: total - n]])
    return order[rank::world_size]


class _OrderSampler(torch.utils.data.Sampler[int]):
    def __init__(self, n: int, shuffle: bool, seed: int, rank: int, world_size: int) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world_size = n, shuffle, seed, rank, world_size
        self.epoch = 0

    def _order(self) -> Tensor:
        return segmentation_order(self.n, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch, rank=self.rank,
                                  world_size=self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self._order().tolist())

    def __len__(self) -> int:
        return int(self._order().numel())


def collate_segmentation(items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack ``(image uint8 [C, S, S], mask uint8 [S, S])`` items into one batch (sizes must agree)."""
    if not items:
        raise ValueError("collate_segmentation needs at least one item")
    sizes = {(tuple(x.shape), tuple(m.shape)) for x, m in items}
    if len(sizes) > 1:
        raise ValueError(f"images and masks of one batch must share a size, got {sorted(sizes)}")
    return torch.stack([x for x, _ in items]), torch.stack([m for _, m in items])


def _fast_path(dataset: Any) -> Any:
    """The dataset's in-memory batch function: ``segmentation_batch`` (datasets that also serve another
    task, e.g. the digit scenes) or ``batch``; None for per-item datasets."""
    return getattr(dataset, "segmentation_batch", None) or getattr(dataset, "batch", None)


class SegmentationLoader:
    """Batches ``(uint8 images [B, C, S, S], int64 masks [B, S, S])`` of a segmentation split on
    ``device``, re-iterable, with ``set_epoch(e)``.

    In-memory splits (``batch(indices)``) are moved to the device once and indexed there; others go
    through a ``DataLoader`` (``num_workers`` processes) with a seeded per-epoch sampler. The order is
    :func:`segmentation_order`: training shards (``shuffle=True``) are padded to equal length, evaluation
    shards are disjoint. A split with ``set_epoch`` (fresh training scenes) is told the epoch before each
    pass; without ``set_epoch`` calls each ``iter()`` advances the epoch.
    """

    def __init__(self, dataset: Any, batch_size: int, *, shuffle: bool, seed: int, device: torch.device | str,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, num_workers: int = 0) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size} invalid; expected >= 1")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers={num_workers} invalid; expected >= 0")
        self.device = torch.device(device)
        self.in_memory = _fast_path(dataset) is not None
        self.dataset = dataset.to(self.device) if self.in_memory and hasattr(dataset, "to") else dataset
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.rank, self.world_size = bool(drop_last), int(rank), int(world_size)
        self.epoch = 0
        self._sampler = _OrderSampler(len(dataset), self.shuffle, self.seed, self.rank, self.world_size)
        self._loader: Any = None
        if not self.in_memory:
            self._loader = torch.utils.data.DataLoader(
                dataset, batch_size=self.batch_size, sampler=self._sampler, drop_last=self.drop_last,
                num_workers=int(num_workers), collate_fn=collate_segmentation,
                pin_memory=self.device.type == "cuda", persistent_workers=int(num_workers) > 0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and, for fresh training splits, whose images) the next pass uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self._sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self._sampler.epoch = epoch
        if not self.in_memory:
            for images, masks in self._loader:
                yield (images.to(self.device, non_blocking=True),
                       masks.to(self.device, non_blocking=True).long())
            return
        fetch = _fast_path(self.dataset)
        order = self._sampler._order()
        n = order.numel()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            images, masks = fetch(order[start : start + self.batch_size])
            yield images, masks.long()


def make_segmentation_batches(dataset: Any, batch_size: int, *, shuffle: bool, seed: int,
                              device: torch.device | str, drop_last: bool = False, rank: int = 0,
                              world_size: int = 1, num_workers: int = 0) -> tuple[SegmentationLoader, int]:
    """``(loader, steps)``: a re-iterable :class:`SegmentationLoader` and the batches it yields per epoch
    (on this rank)."""
    if drop_last and batch_size > len(dataset):
        from ..config import ConfigError

        raise ConfigError(f"got {batch_size}, larger than the {len(dataset)}-image training split", key="batch_size")
    loader = SegmentationLoader(dataset, batch_size, shuffle=shuffle, seed=seed, device=device, drop_last=drop_last,
                                rank=rank, world_size=world_size, num_workers=num_workers)
    return loader, len(loader)


# --------------------------------------------------------------------------------------------------
# the mask_folder layout
# --------------------------------------------------------------------------------------------------


def _folder_records(split_dir: Path) -> list[tuple[str, str]]:
    """``(image, mask)`` pairs of ``split_dir/images/NAME.ext`` and ``split_dir/masks/NAME.png``."""
    images = sorted(p for p in (split_dir / "images").iterdir() if p.suffix.lower() in MASK_IMAGE_EXTENSIONS)
    if not images:
        raise AnnotationError(f"{split_dir / 'images'}: no images (expected {', '.join(MASK_IMAGE_EXTENSIONS)} files)")
    names: dict[str, Path] = {}
    records = []
    for p in images:
        if p.stem in names:
            raise AnnotationError(f"{p}: two images named {p.stem!r} ({names[p.stem].name} and {p.name}); "
                                  "their masks would be the same file")
        names[p.stem] = p
        mask = split_dir / "masks" / f"{p.stem}.png"
        if not mask.is_file():
            raise AnnotationError(f"{p}: no mask {mask}")
        records.append((str(p), str(mask)))
    return records


def read_classes_file(path: Path) -> list[str]:
    """Class names of a ``classes.txt``, one per line in index order (blank lines skipped)."""
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise AnnotationError(f"{path}: no class names; expected one name per line, class 0 first")
    if len(names) > 255:
        raise AnnotationError(f"{path}: {len(names)} classes; at most 255 fit beside the ignore index 255")
    return names


def mask_folder_splits(root: str | Path, image_size: int, *, num_channels: int = 3,
                       verify: bool = False) -> dict[str, FileSegmentationDataset]:
    """``{"train", "val", "test"}`` of a ``root/{train,val[,test]}/{images,masks}`` folder pair layout
    (``test`` is the ``val`` dataset itself when there is no ``test/``).

    Classes come from ``root/classes.txt`` (one name per line, class 0 first) when it exists; otherwise
    every mask is decoded once (and checked against its image's size) and ``K`` = the largest index + 1
    (255 excluded), with the indices as names. ``verify`` checks every pair at load even with a
    ``classes.txt``.
    """
    root = Path(root).expanduser()
    splits = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    records = {s: _folder_records(root / s) for s in splits}
    classes_file = root / "classes.txt"
    if classes_file.is_file():
        classes = read_classes_file(classes_file)
        check = verify
    else:
        from PIL import Image

        from .folder import BadImageError

        top = 0
        for pairs in records.values():
            for image_path, mask_path in pairs:
                mask = load_mask(mask_path)
                try:
                    with Image.open(image_path) as im:
                        size = im.size
                except Exception as exc:  # PIL raises many types
                    raise BadImageError(f"cannot decode image {image_path}: {type(exc).__name__}: {exc}") from None
                if (mask.shape[1], mask.shape[0]) != size:
                    raise AnnotationError(f"{mask_path}: the mask is {mask.shape[1]}x{mask.shape[0]} but its "
                                          f"image {image_path} is {size[0]}x{size[1]}")
                values = np.unique(mask)
                values = values[values != IGNORE_INDEX]
                if values.size:
                    top = max(top, int(values.max()))
        classes = [str(k) for k in range(top + 1)]
        check = False  # every mask was just read: sizes checked, and no value can exceed K - 1
    out = {s: FileSegmentationDataset(r, image_size, classes, num_channels=num_channels) for s, r in records.items()}
    if check:
        for ds in out.values():
            ds.verify()
    if "test" not in out:
        out["test"] = out["val"]
    return out
