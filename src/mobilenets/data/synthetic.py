"""Random images for benchmarks and smoke tests, learnable or pure noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .tensor import TensorImageDataset


class SyntheticDataset(TensorImageDataset):
    """Random images for benchmarks and smoke tests.

    ``learnable=False``: uniform noise (labels carry no information — pure throughput benchmarks).
    ``learnable=True``: each class has its own smooth random pattern (a random ``4×4`` grid per channel,
    bilinearly upsampled), drawn from ``pattern_seed``; each sample is its class pattern plus Gaussian
    noise, so a small network learns it in a few hundred steps.  Patterns depend only on
    ``pattern_seed`` (default 0), samples on ``seed``, so train/val/test made with different ``seed``
    share the same classes.
    """

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        seed: int = 0,
        learnable: bool = True,
        pattern_seed: int = 0,
        noise: float = 0.15,
    ) -> None:
        if n < 1 or num_classes < 1 or image_size < 1:
            raise ValueError(
                f"n, num_classes and image_size must be positive, got {n}, {num_classes}, {image_size}"
            )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        g = torch.Generator().manual_seed(int(seed))
        labels = torch.arange(n, dtype=torch.int64) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        if not learnable:
            images = torch.randint(
                0, 256, (n, channels, image_size, image_size), generator=g, dtype=torch.uint8
            )
        else:
            pg = torch.Generator().manual_seed(int(pattern_seed))
            grid = torch.rand(num_classes, channels, 4, 4, generator=pg)
            patterns = F.interpolate(
                grid, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
            images = torch.empty((n, channels, image_size, image_size), dtype=torch.uint8)
            for start in range(0, n, 512):
                lab = labels[start : start + 512]
                x = 0.1 + 0.8 * patterns[lab]
                x = x + noise * torch.randn(x.shape, generator=g)
                images[start : start + 512] = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
        super().__init__(images, labels, [f"class_{i}" for i in range(num_classes)])
        self.learnable = learnable


def make_synthetic(
    n: int,
    num_classes: int = 10,
    image_size: int = 32,
    channels: int = 3,
    seed: int = 0,
    learnable: bool = True,
    pattern_seed: int = 0,
) -> SyntheticDataset:
    """Shorthand for :class:`SyntheticDataset`."""
    return SyntheticDataset(n, num_classes, image_size, channels, seed, learnable, pattern_seed)
