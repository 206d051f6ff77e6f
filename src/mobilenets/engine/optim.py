"""Optimizers and learning-rate schedules built from :mod:`mobilenets.config`.

* :func:`param_groups` -- weight decay only where it regularises (conv / linear weights).
* :class:`RMSpropTF` -- RMSprop with TensorFlow semantics, the optimizer of the MobileNet papers.
* :func:`build_optimizer` -- sgd / rmsprop_tf / adamw from an :class:`~mobilenets.config.OptimConfig`.
* :func:`lr_at` / :func:`build_scheduler` -- warm-up + cosine / step / exponential / onecycle /
  constant, as a pure multiplier function wrapped in :class:`~torch.optim.lr_scheduler.LambdaLR`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from mobilenets.config import OptimConfig, SchedConfig
from mobilenets.engine.ema import unwrap_model

__all__ = [
    "RMSpropTF",
    "build_optimizer",
    "build_scheduler",
    "lr_at",
    "param_groups",
]

#: RMSpropTF's default epsilon: the MobileNet papers' TensorFlow setting. Because TF adds it
#: *inside* the square root, 1e-3 caps how much a tiny gradient is amplified at 1/sqrt(1e-3) ~ 32x.
RMSPROP_TF_EPS = 1e-3
#: AdamW's default epsilon (PyTorch's).
ADAMW_EPS = 1e-8


# ----------------------------------------------------------------------------------------------
# Parameter groups
# ----------------------------------------------------------------------------------------------


def _no_weight_decay_names(model: nn.Module) -> set[str]:
    fn = getattr(model, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def param_groups(
    model: nn.Module, weight_decay: float, no_decay_norm_bias: bool = True
) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed and an undecayed group.

    No weight decay on

    * parameters with ``ndim <= 1`` when ``no_decay_norm_bias`` (BN/LN scales and shifts, all
      biases, layer-scale vectors): decaying a norm's scale only fights the normalisation and
      decaying biases does not regularise anything -- it just shifts activations;
    * any parameter the model names in an optional ``model.no_weight_decay()`` set (timm
      convention); an entry also covers everything below it (``"head"`` covers ``head.weight``).

    Groups carry a ``"name"`` key (``"decay"`` / ``"no_decay"``) for logging; empty groups are
    omitted. Wrapped models (DDP, torch.compile) are unwrapped so names are the user's names.
    """
    inner = unwrap_model(model)
    skip = _no_weight_decay_names(inner)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in inner.named_parameters():
        if not p.requires_grad:
            continue
        listed = name in skip or any(name.startswith(s + ".") for s in skip)
        if listed or (no_decay_norm_bias and p.ndim <= 1):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay), "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


# ----------------------------------------------------------------------------------------------
# RMSpropTF
# ----------------------------------------------------------------------------------------------


class RMSpropTF(Optimizer):
    """RMSprop as TensorFlow implements it (and as the MobileNet V1-V3 papers trained with).

    Per parameter, with gradient ``g`` (timm ``RMSpropTF`` semantics)::

        g        = g + wd * p                           # coupled L2 (decoupled_decay=False)
        p        = p * (1 - lr * wd)                    # ... or decoupled (decoupled_decay=True)
        sq       = alpha * sq + (1 - alpha) * g^2       # sq starts at ONES, not zeros
        [ga      = alpha * ga + (1 - alpha) * g]        # centered only; denominator uses sq - ga^2
        buf      = momentum * buf + lr * g / sqrt(sq + eps)   # lr applied inside the momentum
        p        = p - buf

    How this differs from :class:`torch.optim.RMSprop`, and why it matters:

    * ``sq`` initialised to ones: the first steps are ~``lr * g`` for small gradients; PyTorch's
      zero init makes the first update ~``lr * sign(g) / sqrt(1 - alpha)`` (3.2 lr at alpha=0.9)
      whatever the gradient's size, a jolt the papers' warm-up-free recipes never saw.
    * ``eps`` inside the sqrt with a large default (1e-3): it caps the amplification of tiny
      gradients (at ~32x), which is what the papers' hyper-parameters were tuned with.
    * lr inside the momentum buffer (``lr_in_momentum=True``): an lr change (warm-up, decay)
      only affects new gradients, so a schedule does not rescale the accumulated velocity.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.9,
        eps: float = RMSPROP_TF_EPS,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        centered: bool = False,
        decoupled_decay: bool = False,
        lr_in_momentum: bool = True,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not eps > 0.0:
            raise ValueError(f"invalid epsilon: {eps}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum: {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"invalid alpha: {alpha}")
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": centered,
            "decoupled_decay": decoupled_decay,
            "lr_in_momentum": lr_in_momentum,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            lr: float = group["lr"]
            alpha: float = group["alpha"]
            eps: float = group["eps"]
            wd: float = group["weight_decay"]
            momentum: float = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if momentum > 0.0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1

                if wd != 0.0:
                    if group["decoupled_decay"]:
                        p.mul_(1.0 - lr * wd)
                    else:
                        grad = grad.add(p, alpha=wd)

                square_avg: torch.Tensor = state["square_avg"]
                # sq = alpha * sq + (1 - alpha) * g^2, written as an in-place lerp towards g^2.
                square_avg.mul_(alpha).addcmul_(grad, grad, value=1.0 - alpha)
                if group["centered"]:
                    grad_avg: torch.Tensor = state["grad_avg"]
                    grad_avg.mul_(alpha).add_(grad, alpha=1.0 - alpha)
                    avg = square_avg.addcmul(grad_avg, grad_avg, value=-1.0).add_(eps).sqrt_()
                else:
                    avg = square_avg.add(eps).sqrt_()

                if momentum > 0.0:
                    buf: torch.Tensor = state["momentum_buffer"]
                    if group["lr_in_momentum"]:
                        buf.mul_(momentum).addcdiv_(grad, avg, value=lr)
                        p.sub_(buf)
                    else:
                        buf.mul_(momentum).addcdiv_(grad, avg)
                        p.sub_(buf, alpha=lr)
                else:
                    p.addcdiv_(grad, avg, value=-lr)
        return loss


# ----------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> Optimizer:
    """The optimizer named by ``cfg.name`` over :func:`param_groups` of ``model``.

    ``cfg.lr`` is used as given (batch-size scaling is the caller's job). ``weight_decay`` is
    decoupled for AdamW and a coupled L2 term for SGD and RMSpropTF, as each optimizer defines it.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_norm_bias)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0.0,  # torch rejects nesterov without momentum
            weight_decay=cfg.weight_decay,
        )
    if cfg.name == "rmsprop_tf":
        return RMSpropTF(
            groups,
            lr=cfg.lr,
            alpha=cfg.alpha,
            eps=cfg.eps if cfg.eps is not None else RMSPROP_TF_EPS,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            groups,
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps if cfg.eps is not None else ADAMW_EPS,
            weight_decay=cfg.weight_decay,
        )
    raise ValueError(f"unknown optimizer {cfg.name!r}; expected 'sgd', 'rmsprop_tf' or 'adamw'")


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------

#: Fraction of the run used as warm-up by 'onecycle' when ``warmup_epochs`` is 0 (OneCycleLR's pct_start).
ONECYCLE_PCT_START = 0.3


def _cosine(progress: float, floor: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(cfg: SchedConfig, epochs: int, steps_per_epoch: int, step: int) -> float:
    """The lr multiplier (``lr = base_lr * lr_at(...)``) after ``step`` scheduler steps.

    ``step`` counts *scheduler* steps: optimizer steps when ``cfg.per_step`` (position in epochs
    ``t = step / steps_per_epoch``), epochs otherwise (``t = step``; ``steps_per_epoch`` ignored).
    Step 0 is the lr of the very first optimizer step.

    * warm-up: linear from ``warmup_lr_ratio`` at t=0 to 1 at ``t = warmup_epochs``;
    * cosine: from 1 to ``min_lr_ratio`` over the remaining epochs, reaching it at t = epochs (so
      the last epoch still trains at a small non-zero lr);
    * step: ``gamma ** floor((t - warmup) / step_size)`` (torchvision's V3 recipe: 0.973 every
      2 epochs), counted from the end of warm-up like torchvision's SequentialLR;
    * exponential: ``gamma ** (t - warmup)``, i.e. ``gamma`` per epoch (smooth when per_step);
    * onecycle: cosine warm-up (OneCycleLR's 'cos' anneal) over ``warmup_epochs`` -- or 30 % of
      the run if that is 0 -- then cosine decay to ``min_lr_ratio``;
    * constant: 1 after warm-up;
    * poly: ``max(1 - after / (epochs - warmup), 0) ** power`` after warm-up (DeepLab's schedule,
      torchvision's segmentation reference with power 0.9), floored at ``min_lr_ratio``.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    t = step / steps_per_epoch if cfg.per_step else float(step)
    warmup = float(cfg.warmup_epochs)
    start = cfg.warmup_lr_ratio

    if cfg.name == "onecycle":
        if warmup <= 0.0:
            warmup = ONECYCLE_PCT_START * epochs
        if t < warmup:
            # cosine ramp from `start` up to 1
            return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * t / warmup))
        return _cosine((t - warmup) / max(epochs - warmup, 1e-12), cfg.min_lr_ratio)

    if t < warmup:
        return start + (1.0 - start) * t / warmup

    after = t - warmup
    if cfg.name == "cosine":
        return _cosine(after / max(epochs - warmup, 1e-12), cfg.min_lr_ratio)
    if cfg.name == "step":
        # The epsilon absorbs float error when a boundary falls exactly on a step (e.g. 34/17).
        return cfg.gamma ** math.floor(after / cfg.step_size + 1e-9)
    if cfg.name == "exponential":
        return cfg.gamma**after
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "poly":
        left = max(1.0 - after / max(epochs - warmup, 1e-12), 0.0)
        return max(left ** cfg.power, cfg.min_lr_ratio)
    raise ValueError(f"unknown schedule {cfg.name!r}")


def build_scheduler(optimizer: Optimizer, cfg: SchedConfig, epochs: int, steps_per_epoch: int) -> LambdaLR:
    """A :class:`LambdaLR` following :func:`lr_at`.

    Stepping contract -- never mix the two:

    * ``cfg.per_step=True``: call ``scheduler.step()`` once after every *optimizer* step (with
      gradient accumulation, ``steps_per_epoch`` is the number of optimizer steps per epoch);
    * ``cfg.per_step=False``: call ``scheduler.step()`` once at the end of every epoch.

    Resuming: save ``scheduler.state_dict()`` (just the step counter and last lrs; the lambda is a
    plain function and is not saved) with the optimizer's, rebuild both from the same config, then
    ``load_state_dict`` both -- the lambda is recreated deterministically from the config, so the
    following lrs are identical to an uninterrupted run.
    """
    # Validate eagerly so a bad config fails at build time, not at the first step.
    lr_at(cfg, epochs, steps_per_epoch, 0)

    def multiplier(step: int) -> float:  # a plain function: LambdaLR then keeps it out of state_dict
        return lr_at(cfg, epochs, steps_per_epoch, step)

    return LambdaLR(optimizer, lr_lambda=multiplier)
