"""Normalisation, the evaluation preprocessing and :class:`BatchAugment`, the whole training-time
pipeline for a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import torch
from torch import Tensor

from ..._validate import check_choice, check_prob
from ...config import AugConfig, AutoAugment, CropMode
from .base import _check_batch, _move, to_float
from .erasing import random_erasing
from .geometry import hflip, pad_crop, random_resized_crop, resize
from .mixing import mixup_cutmix, smooth_one_hot
from .policies import auto_augment, rand_augment, trivial_augment_wide


def _stats_tensor(values: Sequence[float] | float | Tensor, channels: int, name: str, x: Tensor) -> Tensor:
    if isinstance(values, Tensor):
        t = _move(values, x.device).to(x.dtype).flatten()
    else:
        t = torch.as_tensor(values, dtype=torch.float64).flatten()
        if name == "std" and bool((t <= 0).any()):
            raise ValueError(f"std must be positive, got {values}")
        t = _move(t.to(x.dtype), x.device)
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(f"{name} has {t.numel()} values but the images have {channels} channels")
    return t.view(1, channels, 1, 1)


def normalize(
    x: Tensor, mean: Sequence[float] | float | Tensor, std: Sequence[float] | float | Tensor
) -> Tensor:
    """``(x - mean) / std`` per channel; a single value is used for every channel.  Python values are
    validated (positive std); tensors are trusted, to keep the device path free of host syncs."""
    _check_batch(x)
    m = _stats_tensor(mean, x.shape[1], "mean", x)
    s = _stats_tensor(std, x.shape[1], "std", x)
    return (x - m) / s


def eval_preprocess(
    images: Tensor,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    size: int | tuple[int, int] | None = None,
) -> Tensor:
    """Evaluation path: uint8 → float ``[0, 1]``, optional (antialiased bilinear) resize, normalise.
    ``mean``/``std`` of ``None`` skip normalisation."""
    x = to_float(images)
    if x.ndim != 4:
        raise ValueError(f"images must be a batch B×C×H×W, got shape {tuple(x.shape)}")
    if size is not None:
        x = resize(x, size)
    if mean is not None or std is not None:
        x = normalize(x, 0.0 if mean is None else mean, 1.0 if std is None else std)
    return x



#: The crop modes and auto-augment names, read from the config's ``CropMode`` / ``AutoAugment`` (the
#: config layer is below this one), so the two lists cannot drift apart.  ``None`` also means "off".
CROP_CHOICES: tuple[str, ...] = get_args(CropMode)
AUTO_AUGMENT_CHOICES: tuple[str | None, ...] = (None, *get_args(AutoAugment))


def _check_options(
    *,
    crop: str,
    padding: int,
    pad_mode: str,
    size: int | None,
    auto_augment: str | None,
    ra_magnitude: int,
    ra_num_bins: int,
    erasing_value: str | float,
    mixup_alpha: float,
    cutmix_alpha: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> None:
    """The checks of :class:`BatchAugment`'s options that are not a plain probability (those are
    checked where they are stored)."""
    check_choice("crop", crop, CROP_CHOICES)
    check_choice("pad_mode", pad_mode, ("reflect", "constant"))
    check_choice("auto_augment", auto_augment, AUTO_AUGMENT_CHOICES)
    if crop == "rrc" and size is None:
        raise ValueError("crop='rrc' needs size=<output size>")
    if size is not None and int(size) <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if int(padding) < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if isinstance(erasing_value, str) and erasing_value != "random":
        raise ValueError(f"unknown erasing_value {erasing_value!r}; allowed values: 'random' or a number")
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup_alpha/cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
    if not 0 <= ra_magnitude < ra_num_bins:
        raise ValueError(f"ra_magnitude {ra_magnitude} must be in [0, ra_num_bins={ra_num_bins})")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")


def _cpu_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The generator augmentation draws from: ``generator``, else one seeded with ``seed``, else None.

    Per-sample parameters are drawn where the generator lives; on an accelerator every Python-side
    decision would then cost a device→host sync, so a device generator is replaced by a CPU twin with
    the same seed."""
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    if generator is not None and generator.device.type != "cpu":
        generator = torch.Generator().manual_seed(generator.initial_seed())
    return generator


class BatchAugment(torch.nn.Module):
    """The whole training-time augmentation pipeline for a batch, configured by plain keyword args so
    it can be built straight from a YAML config.

    Order (timm/torchvision recipe order): uint8→float, crop (``"pad"`` random translation or
    ``"rrc"`` random-resized-crop to ``size``; with ``"none"``/``"pad"`` a ``size`` different from the
    input is reached by a plain resize), horizontal flip, auto-augment, normalise, random erasing,
    mixup/cutmix + label smoothing.

    ``forward(images, labels)`` returns ``(float images, targets)``.  Targets are the int64 labels when
    neither mixing nor label smoothing is configured, and ``B×num_classes`` float soft targets
    otherwise (decided by the configuration, not per batch, so the loss function never changes type).
    In ``eval()`` mode the module only does :func:`eval_preprocess` and passes labels through.

    ``mean``/``std`` of ``None`` skip normalisation.  ``seed`` (or an explicit ``generator``) makes the
    augmentation stream reproducible.  Random parameters are always drawn on the CPU (a CUDA
    generator is replaced by a CPU generator with the same seed) and copied to the batch's device
    without blocking, so a training step never waits on the GPU because of augmentation.
    """

    def __init__(
        self,
        *,
        crop: str = "none",
        padding: int = 4,
        pad_mode: str = "reflect",
        size: int | None = None,
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip: float = 0.0,
        auto_augment: str | None = None,
        ra_num_ops: int = 2,
        ra_magnitude: int = 9,
        ra_num_bins: int = 31,
        random_erasing: float = 0.0,
        erasing_value: str | float = "random",
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_options(
            crop=crop, padding=padding, pad_mode=pad_mode, size=size, auto_augment=auto_augment,
            ra_magnitude=ra_magnitude, ra_num_bins=ra_num_bins, erasing_value=erasing_value,
            mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, mean=mean, std=std,
        )
        self.crop = crop
        self.padding = int(padding)
        self.pad_mode = pad_mode
        self.size = None if size is None else int(size)
        self.rrc_scale = tuple(rrc_scale)
        self.rrc_ratio = tuple(rrc_ratio)
        self.hflip = check_prob("hflip", hflip)
        self.auto_augment = None if auto_augment == "none" else auto_augment
        self.ra_num_ops = int(ra_num_ops)
        self.ra_magnitude = int(ra_magnitude)
        self.ra_num_bins = int(ra_num_bins)
        self.random_erasing = check_prob("random_erasing", random_erasing)
        self.erasing_value = erasing_value
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.mix_prob = check_prob("mix_prob", mix_prob)
        self.switch_prob = check_prob("switch_prob", switch_prob)
        self.label_smoothing = check_prob("label_smoothing", label_smoothing, inclusive=False)
        self.num_classes = num_classes
        if self.soft_targets and (num_classes is None or int(num_classes) < 2):
            raise ValueError("mixup/cutmix/label_smoothing need num_classes >= 2")
        self._set_stats(mean, std)
        self.generator = _cpu_generator(generator, seed)

    def _set_stats(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        """Keep ``mean``/``std`` as (non-persistent) buffers, so ``.to(device)`` moves them."""
        if mean is None:
            self.mean = None
            self.std = None
            return
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten(), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten(), persistent=False)
        if bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive, got {std}")

    @classmethod
    def from_config(
        cls,
        aug: AugConfig,
        *,
        size: int | None = None,
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> BatchAugment:
        """The training pipeline an :class:`~mobilenets.config.AugConfig` describes: the one place that
        maps the config's fields onto this module's options.

        ``size`` is the training image size; it becomes the output of ``crop='rrc'`` (the other crops
        keep the batch's size).  ``aug.crop``, ``aug.padding`` and ``aug.hflip`` must be resolved (a
        ``None`` there means "the dataset's default", which only the caller knows).  The values are
        checked here, by :class:`BatchAugment` itself.
        """
        for name in ("crop", "padding", "hflip"):
            if getattr(aug, name) is None:
                raise ValueError(f"aug.{name} is None (the dataset's default): resolve it before building the pipeline")
        return cls(
            crop=aug.crop, padding=aug.padding, size=size if aug.crop == "rrc" else None,
            rrc_scale=tuple(aug.scale), hflip=aug.hflip, auto_augment=aug.auto_augment,
            ra_num_ops=aug.ra_num_ops, ra_magnitude=aug.ra_magnitude, random_erasing=aug.random_erasing,
            mixup_alpha=aug.mixup_alpha, cutmix_alpha=aug.cutmix_alpha, mix_prob=aug.mix_prob,
            label_smoothing=aug.label_smoothing, num_classes=num_classes, mean=mean, std=std,
            seed=seed, generator=generator,
        )

    @property
    def mixing(self) -> bool:
        """True when mixup or cutmix can fire."""
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0

    @property
    def soft_targets(self) -> bool:
        """True when ``forward`` returns float soft targets instead of int64 labels."""
        return self.mixing or self.label_smoothing > 0

    def extra_repr(self) -> str:
        keys = (
            "crop",
            "padding",
            "size",
            "hflip",
            "auto_augment",
            "random_erasing",
            "mixup_alpha",
            "cutmix_alpha",
            "mix_prob",
            "label_smoothing",
            "num_classes",
        )
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    def _normalize(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        return normalize(x, self.mean, self.std)

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Augment one batch; see the class docstring for the order and the target type."""
        if images.ndim != 4:
            raise ValueError(f"images must be a batch B×C×H×W, got shape {tuple(images.shape)}")
        if labels.shape[:1] != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if not self.training:
            return eval_preprocess(images, self.mean, self.std, self.size), labels
        g = self.generator
        x = to_float(images)
        if self.crop == "pad" and self.padding > 0:
            x = pad_crop(x, self.padding, self.pad_mode, generator=g)
        if self.crop == "rrc":
            x = random_resized_crop(x, self.size, self.rrc_scale, self.rrc_ratio, generator=g)
        elif self.size is not None:
            x = resize(x, self.size)
        if self.hflip > 0:
            x = hflip(x, self.hflip, generator=g)
        if self.auto_augment == "randaugment":
            x = rand_augment(x, self.ra_num_ops, self.ra_magnitude, self.ra_num_bins, generator=g)
        elif self.auto_augment == "trivialaugment":
            x = trivial_augment_wide(x, generator=g)
        elif self.auto_augment is not None:
            x = auto_augment(x, self.auto_augment.split("-", 1)[1], generator=g)
        x = self._normalize(x)
        if self.random_erasing > 0:
            x = random_erasing(x, self.random_erasing, value=self.erasing_value, generator=g)
        if not self.soft_targets:
            return x, labels.long()
        assert self.num_classes is not None
        if self.mixing:
            return mixup_cutmix(
                x,
                labels,
                int(self.num_classes),
                self.mixup_alpha,
                self.cutmix_alpha,
                self.mix_prob,
                self.switch_prob,
                self.label_smoothing,
                generator=g,
            )
        return x, smooth_one_hot(labels, int(self.num_classes), self.label_smoothing).to(x.device)
