"""Short-term fine-tuning and validation of NetAdapt's proposals, through the engine's own pieces.

Why not a loop of its own: the engine already knows how a run's config builds its data, augmentation,
optimizer and evaluation (:mod:`mobilenets.engine.build`, :mod:`~mobilenets.engine.task`,
:mod:`~mobilenets.engine.optim`) and how one training pass goes (:func:`~mobilenets.engine.epoch.train_one_epoch`).
A proposal is fine-tuned by exactly that pass, for a fixed small number of steps at a constant learning
rate, and scored on the validation split (never the test split: choosing on test would make the final
test figure a tuned one). Everything a proposal's score depends on is seeded from ``(seed, iteration,
proposal)``, so an adaptation resumed after a kill chooses what the uninterrupted one chose.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data.loader import device_batches
from ..engine.build import build_data, resolve_task
from ..engine.defaults import resolve_batch_size, resolve_dataset_defaults
from ..engine.epoch import train_one_epoch
from ..engine.optim import build_optimizer
from ..engine.runtime import resolve_device
from ..engine.task import get_task

__all__ = ["ProposalTrainer"]


class ProposalTrainer:
    """The run config's data, augmentation and evaluation, built once, for many short fine-tunes.

    ``lr_scale`` multiplies the config's learning rate: a pruned network starts from good weights, and the
    full rate of training from scratch would undo them in the few steps a proposal gets.
    """

    def __init__(self, cfg: TrainConfig, *, steps: int, lr_scale: float = 0.05, seed: int = 0) -> None:
        if steps < 0:
            raise ValueError(f"fine-tune steps {steps} invalid; expected >= 0")
        cfg, _ = resolve_dataset_defaults(cfg)
        self.device = resolve_device(cfg.device)
        self.datasets, self.info = build_data(cfg, self.device)
        cfg, _ = resolve_batch_size(cfg, len(self.datasets["train"]))
        self.cfg = cfg
        self.task = get_task(resolve_task(cfg), cfg)
        if self.task.name != "classify":
            raise ValueError(f"adaptation scores classifiers by val top-1; got a {self.task.name} run")
        self.steps, self.seed = steps, seed
        self.optim = dataclasses.replace(cfg.optim, lr=cfg.optim.lr * lr_scale)
        self.num_classes = int(cfg.model.num_classes or getattr(self.datasets["train"], "num_classes", 0)
                               or len(getattr(self.datasets["train"], "classes", []) or []) or self.info.num_classes)
        self.val_batches = self.task.eval_batches(self.datasets["val"], cfg.eval_batch_size, cfg=cfg,
                                                  device=self.device)

    def _train_batches(self, seed: int) -> Iterator[Any]:
        source, _ = self.task.batches(self.datasets["train"], self.cfg.batch_size, cfg=self.cfg, shuffle=True,
                                      seed=seed, device=self.device, drop_last=True)
        for _ in itertools.count():
            yield from device_batches(source, self.device)

    def finetune(self, model: nn.Module, *, key: tuple[int, ...]) -> nn.Module:
        """``model`` after ``steps`` optimizer steps on the training split (in place; returned)."""
        if self.steps == 0:
            return model.eval()
        seed = self.seed * 1_000_003 + sum(k * 7919 ** i for i, k in enumerate(key))
        seed %= 2**31
        torch.manual_seed(seed)
        model.to(self.device)
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
        gen = torch.Generator().manual_seed(seed + 1)
        augment = self.task.augment(self.cfg, self.num_classes, mean, std, gen).to(self.device)
        optimizer = build_optimizer(model, self.optim)
        batches = itertools.islice(self._train_batches(seed), self.steps)
        train_one_epoch(model, batches, augment, optimizer, None, steps=self.steps, amp=self.cfg.amp,
                        clip_grad=self.cfg.optim.clip_grad, loss_fn=self.task.loss)
        return model.eval()

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Val top-1 and loss of ``model`` (the split that chooses; never the test split)."""
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
        pre = self.task.eval_preprocess(self.cfg, mean, std).to(self.device).eval()
        res = self.task.evaluate(model.to(self.device).eval(), device_batches(self.val_batches, self.device), pre,
                                 cfg=self.cfg, dataset=self.datasets["val"], num_classes=self.num_classes)
        return {"acc1": float(res["acc1"]), "loss": float(res["loss"])}
