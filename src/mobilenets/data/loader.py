"""Batches for training and evaluation: the loader, the samplers and the shard of each process.

Everything here takes the process's ``rank`` and ``world_size`` as plain numbers (a single process is
``rank=0, world_size=1``); joining a process group is :mod:`mobilenets.engine.distributed`'s job.
In-memory datasets are batched by :class:`~mobilenets.data.tensor.TensorLoader` on the training
device; file datasets go through a ``DataLoader`` with a sampler. :func:`device_batches` moves each
batch to the device the model runs on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from ..config import ConfigError

__all__ = ["RepeatAugSampler", "device_batches", "make_batches", "shard"]


def make_batches(dataset: Any, batch_size: int, *, shuffle: bool, seed: int, device: torch.device,
                 device_resident: bool, num_workers: int, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, repeated_aug: int = 0) -> tuple[Any, int]:
    """A re-iterable source of (uint8 images, labels) batches on ``device`` and its length.

    With ``world_size`` > 1 each rank draws a disjoint shard of the same per-epoch permutation;
    ``repeated_aug`` > 1 uses the repeated-augmentation sampler for file datasets.
    """
    from .folder import collate
    from .tensor import TensorImageDataset, TensorLoader

    if batch_size > len(dataset) and drop_last:
        raise ConfigError(f"got {batch_size}, larger than the {len(dataset)}-image training split", key="batch_size")
    if isinstance(dataset, TensorImageDataset):
        loader = TensorLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                              device=device if device_resident else None, rank=rank, world_size=world_size)
        return loader, len(loader)
    sampler: Any = None
    if repeated_aug > 1:
        sampler = RepeatAugSampler(len(dataset), rank, world_size, repeated_aug, shuffle, seed)
    elif world_size > 1:
        sampler = torch.utils.data.DistributedSampler(dataset, world_size, rank, shuffle, seed)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, drop_last=drop_last,
        num_workers=num_workers, collate_fn=collate, pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0, generator=generator,
    )
    if sampler is not None:
        loader.set_epoch = sampler.set_epoch  # type: ignore[attr-defined]
    return loader, len(loader)


def device_batches(loader: Iterable, device: torch.device) -> Iterator[tuple[torch.Tensor, Any]]:
    """The loader's ``(images, targets)`` batches on ``device`` (a no-op for device-resident data).

    ``targets`` is a label tensor (classification) or a dict of tensors (detection: boxes, labels,
    image ids, original sizes); every tensor moves, anything else is passed through.
    """
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        if isinstance(labels, dict):
            labels = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                      for k, v in labels.items()}
        else:
            labels = labels.to(device, non_blocking=True)
        yield images, labels


def shard(dataset: Any, rank: int = 0, world_size: int = 1) -> Any:
    """This rank's contiguous-stride share of an evaluation split (no padding: counts stay exact)."""
    if world_size <= 1:
        return dataset
    idx = list(range(rank, len(dataset), world_size))
    if hasattr(dataset, "subset"):
        return dataset.subset(idx)
    return torch.utils.data.Subset(dataset, idx)


class RepeatAugSampler(torch.utils.data.Sampler[int]):
    """Repeated augmentation (Hoffer et al. 2020; timm/torchvision's RASampler for long ImageNet recipes).

    Each sample appears ``repeats`` times per epoch, spread over different ranks so each copy gets its
    own augmentation, and each rank still sees ``len(dataset) / world_size`` samples per epoch.
    """

    def __init__(self, dataset_len: int, rank: int = 0, world_size: int = 1, repeats: int = 3,
                 shuffle: bool = True, seed: int = 0) -> None:
        if repeats < 1:
            raise ValueError(f"repeats={repeats} invalid; expected >= 1")
        self.n, self.rank, self.world, self.repeats = dataset_len, rank, world_size, repeats
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.num_samples = math.ceil(dataset_len * repeats / world_size)
        self.total_size = self.num_samples * world_size
        self.num_selected = math.floor(dataset_len / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        indices = order.repeat_interleave(self.repeats).tolist()
        indices += indices[: self.total_size - len(indices)]
        return iter(indices[self.rank : self.total_size : self.world][: self.num_selected])

    def __len__(self) -> int:
        return self.num_selected
