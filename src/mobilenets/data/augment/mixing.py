"""Soft targets: label smoothing and timm's batch-mode Mixup / CutMix."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import _check_batch, _numpy_rng


def smooth_one_hot(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """One-hot targets with label smoothing, timm's convention: off-value ``s/K``, on-value
    ``1 - s + s/K`` (so each row sums to 1)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    y = y.long()
    # range check only on the CPU: on an accelerator it would force a device→host sync every batch
    if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = torch.full((y.shape[0], num_classes), off, device=y.device, dtype=torch.float32)
    return out.scatter_(1, y.view(-1, 1), on)


def mixup_cutmix(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
    generator: torch.Generator | None = None,
    correct_lam: bool = True,
) -> tuple[Tensor, Tensor]:
    """Mixup / CutMix with timm's batch-mode semantics.

    One λ per batch: with probability ``prob`` the batch is mixed; if both alphas are > 0, CutMix is
    chosen with probability ``switch_prob``; λ ~ Beta(α, α).  Each image is mixed with the image at the
    mirrored batch position (``x.flip(0)``).  CutMix pastes a box of area ≈ (1-λ) and, like timm,
    corrects λ to the box area actually pasted after clipping.  Targets are
    ``λ·smooth(y) + (1-λ)·smooth(y.flip(0))`` and always sum to 1.  The input is not modified.
    """
    _check_batch(x)
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"alphas must be >= 0, got mixup_alpha={mixup_alpha}, cutmix_alpha={cutmix_alpha}")
    targets = smooth_one_hot(y, num_classes, label_smoothing).to(x.device)
    lam, use_cutmix = 1.0, False
    rng = _numpy_rng(generator)
    if (mixup_alpha > 0 or cutmix_alpha > 0) and rng.random() < prob:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < switch_prob)
            alpha = cutmix_alpha if use_cutmix else mixup_alpha
        elif mixup_alpha > 0:
            alpha = mixup_alpha
        else:
            use_cutmix, alpha = True, cutmix_alpha
        lam = float(rng.beta(alpha, alpha))
    if lam == 1.0:
        return x, targets
    h, w = x.shape[-2:]
    if use_cutmix:
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        yl, yh = int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cy + cut_h // 2, 0, h))
        xl, xh = int(np.clip(cx - cut_w // 2, 0, w)), int(np.clip(cx + cut_w // 2, 0, w))
        out = x.clone()
        out[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
        if correct_lam:
            lam = 1.0 - (yh - yl) * (xh - xl) / float(h * w)
    else:
        out = x * lam + x.flip(0) * (1.0 - lam)
    return out, targets * lam + targets.flip(0) * (1.0 - lam)
