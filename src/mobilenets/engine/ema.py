"""Exponential moving average (EMA) of model weights.

Why: on short schedules the weights at the last step are noisy (the lr is still non-zero for
most of the run); an average over the last few hundred steps evaluates consistently better and
costs one extra copy of the weights. MobileNetV3 and V4 report their numbers with an EMA.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module under DDP / DataParallel (``.module``) and torch.compile (``._orig_mod``).

    Any nesting order is handled, so ``compile(DDP(model))`` and ``DDP(compile(model))`` both give
    back ``model``: parameter names and the EMA copy must not depend on how training wraps it.
    """
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


class ModelEMA:
    """An fp32 EMA copy of a model: ``ema = d * ema + (1 - d) * model`` after each optimizer step.

    * ``module`` is a deep copy of the (unwrapped) model in eval mode with ``requires_grad``
      off, kept in float32 even when the model trains in bf16/fp16 so that tiny updates
      ``(1 - d) * delta`` are not rounded away.
    * ``warmup=True`` uses ``d_eff = min(decay, (1 + step) / (10 + step))`` (the TF / timm
      schedule): d_eff is 0.1 at step 0, 0.5 at step 8, 0.9 at step 80, so a short run's average
      is not dominated by the random initialisation it started from.
    * Buffers (BatchNorm running mean/var, ``num_batches_tracked``) are *copied*, not averaged:
      running statistics already are an exponential average of activations, and averaging them a
      second time would make them lag the weights by two horizons -- on a dataset with ~17 steps
      per epoch that is several epochs of stale statistics. Integer buffers cannot be averaged at
      all. (For the very best EMA accuracy, recalibrate BN on the EMA weights with a few batches.)
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.998,
        warmup: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0  # number of update() calls so far; the default `step` of update()
        module = copy.deepcopy(unwrap_model(model))
        module.float()  # fp32 master copy even for half-precision models; int buffers unchanged
        if device is not None:
            module.to(device)
        module.eval()
        module.requires_grad_(False)
        self.module: nn.Module = module

    def decay_at(self, step: int) -> float:
        """The effective decay used for update number ``step`` (0-based)."""
        if self.warmup:
            return min(self.decay, (1.0 + step) / (10.0 + step))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> float:
        """Fold the current weights of ``model`` into the average; returns the decay used.

        ``step`` is the 0-based optimizer step (defaults to the internal counter, which is what a
        resumed run restores from :meth:`state_dict`). Call it after ``optimizer.step()``.
        """
        if step is None:
            step = self.updates
        d = self.decay_at(step)
        src = unwrap_model(model)

        ema_params = list(self.module.parameters())
        model_params = list(src.parameters())
        if len(ema_params) != len(model_params):
            raise ValueError(
                f"model has {len(model_params)} parameters but the EMA copy has {len(ema_params)}: "
                "was the model's structure changed after the EMA was created?"
            )
        if ema_params:
            src_tensors = [
                m.detach().to(device=e.device, dtype=e.dtype, non_blocking=True)
                for e, m in zip(ema_params, model_params)
            ]
            ema_tensors = [e.detach() for e in ema_params]
            # ema + (1 - d) * (model - ema) == d * ema + (1 - d) * model, in one fused op per group.
            torch._foreach_lerp_(ema_tensors, src_tensors, 1.0 - d)

        ema_buffers = list(self.module.buffers())
        model_buffers = list(src.buffers())
        if len(ema_buffers) != len(model_buffers):
            raise ValueError(
                f"model has {len(model_buffers)} buffers but the EMA copy has {len(ema_buffers)}"
            )
        for e, m in zip(ema_buffers, model_buffers):
            e.copy_(m.detach())  # copy_ casts dtype and moves device as needed

        self.updates = step + 1
        return d

    def state_dict(self) -> dict[str, Any]:
        """Weights, buffers and the update counter (decay/warmup come from the config)."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; a bare module state dict is accepted too."""
        if "module" in state and isinstance(state["module"], Mapping):
            self.module.load_state_dict(state["module"])
            self.updates = int(state.get("updates", 0))
        else:
            self.module.load_state_dict(state)  # type: ignore[arg-type]
