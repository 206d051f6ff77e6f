"""One pass over the training batches: augment on the device, forward, backward, optimizer step."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .ema import ModelEMA
from .progress import Progress
from .runtime import amp_context, prepare_input

__all__ = ["EpochStats", "classification_loss", "train_one_epoch"]

#: ``loss_fn(model, x, targets, amp_ctx) -> scalar loss``: the forward pass and loss of one batch (a task's).
LossFn = Callable[[nn.Module, torch.Tensor, Any, Any], torch.Tensor]


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Soft targets (mixup/cutmix/label smoothing, built by BatchAugment) and hard labels alike.
    return F.cross_entropy(logits.float(), targets)


def classification_loss(model: nn.Module, x: torch.Tensor, targets: Any, amp_ctx: Any) -> torch.Tensor:
    """Forward under ``amp_ctx``, then the cross-entropy in float32 (outside autocast)."""
    with amp_ctx:
        logits = model(x)
    return _loss(logits, targets)


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float
    steps: int
    lr: float
    completed: bool = True
    next_step: int = 0
    loss_sum: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, ema: ModelEMA | None,
                    scaler: torch.amp.GradScaler | None, clip_grad: float | None) -> None:
    """Unscale, clip, step (through the scaler under fp16), clear the gradients; then the per-step
    schedule and the EMA."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip_grad:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    if ema is not None:
        ema.update(model)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    augment: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    *,
    steps: int,
    ema: ModelEMA | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp: str = "none",
    channels_last: bool = False,
    clip_grad: float | None = None,
    accum_steps: int = 1,
    progress: Progress | None = None,
    sync_every: int = 1,
    on_nonfinite: Any = None,
    start_step: int = 0,
    carried: tuple[float, int, float] = (0.0, 0, 0.0),
    should_stop: Callable[[], bool] | None = None,
    loss_fn: LossFn | None = None,
) -> EpochStats:
    """One pass over ``batches``: augment on the device, forward, backward, step (every ``accum_steps``).

    ``scheduler`` (if given) is stepped after every optimizer step; pass ``None`` for per-epoch schedules.
    The loss is read back to the host only every ``sync_every`` steps (1 on CPU, where it is free).
    An epoch interrupted by ``should_stop`` (checked after each optimizer step) returns
    ``completed=False`` and ``next_step``; it continues from there with ``start_step`` and the
    ``carried`` (loss sum, images, seconds) of its first part. ``loss_fn`` is the task's forward and
    loss (:mod:`mobilenets.engine.task`; default: classification's cross-entropy).
    """
    model.train()
    augment.train()
    device = next(model.parameters()).device
    start = time.perf_counter() - carried[2]
    loss_sum = torch.full((), carried[0], device=device, dtype=torch.float64)
    n_images, micro = carried[1], 0
    optimizer.zero_grad(set_to_none=True)
    amp_ctx = amp_context(amp, device)
    last_loss = float("nan")
    completed, step = True, start_step - 1
    forward_loss = loss_fn or classification_loss
    for step, (images, labels) in enumerate(batches, start=start_step):
        x, targets = augment(images, labels)
        x = prepare_input(x, channels_last)
        loss = forward_loss(model, x, targets, amp_ctx)
        if scaler is not None:
            scaler.scale(loss / accum_steps).backward()
        else:
            (loss / accum_steps).backward()
        micro += 1
        batch = images.shape[0]
        loss_sum += loss.detach() * batch
        n_images += batch
        if micro == accum_steps or step == steps - 1:
            _optimizer_step(model, optimizer, scheduler, ema, scaler, clip_grad)
            micro = 0
        if step % sync_every == 0 or step == steps - 1:
            last_loss = float(loss.detach())
            if not math.isfinite(last_loss) and on_nonfinite is not None:
                on_nonfinite(step, last_loss, images, optimizer)
        if progress is not None:
            progress.update(batch, loss=last_loss, lr=optimizer.param_groups[0]["lr"])
        if should_stop is not None and micro == 0 and step < steps - 1 and should_stop():
            completed = False
            break
    seconds = time.perf_counter() - start
    mean_loss = float(loss_sum) / max(n_images, 1)
    if not math.isfinite(mean_loss) and on_nonfinite is not None:
        on_nonfinite(steps - 1, mean_loss, None, optimizer)
    return EpochStats(mean_loss, n_images, seconds, steps, optimizer.param_groups[0]["lr"], completed=completed,
                      next_step=step + 1, loss_sum=float(loss_sum))
