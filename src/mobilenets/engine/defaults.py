"""Settings a run derives when it starts: the dataset's own defaults, a batch size that fits the data, a
warm-up that fits the run.

Why here and not as dataclass defaults: the right value depends on things the config alone does not know
(which dataset, which model, how many training images). A field left ``null`` takes the value chosen
here; a value the user gave is kept. Every choice is returned as one human-readable line, printed when the
run starts, and the resolved values are what the run saves in its ``config.yaml`` -- so a resume, an
``eval`` or a second look at the run sees exactly what ran.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from ..config import ConfigError, TrainConfig

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MIN_STEPS_PER_EPOCH",
    "clamp_warmup",
    "model_input_size",
    "resolve_batch_size",
    "resolve_config",
    "resolve_dataset_defaults",
]

#: The batch size when none is given (the main job's: ~19 optimizer steps per epoch on digits).
DEFAULT_BATCH_SIZE = 64
#: The automatic batch size is capped so that an epoch has at least this many optimizer steps: with two
#: steps per epoch (30 images per class at batch 64) BatchNorm's running statistics and the EMA trail the
#: weights for the whole run and validation stays at chance.
MIN_STEPS_PER_EPOCH = 10
#: The smallest automatic batch: BatchNorm needs a few images to estimate batch statistics.
MIN_AUTO_BATCH = 8


def model_input_size(name: str, kwargs: dict[str, Any], pretrained: str | None) -> int:
    """The square input side the model is meant for: the pretrained weights' if they record one, else the
    architecture's default (built on the meta device, so nothing is allocated)."""
    import torch

    from ..weights import create_model

    if pretrained:
        from ..weights import CONFIG_NAME, read_config, registry

        if not Path(pretrained).exists() and registry.is_tag(pretrained):
            return int(registry.get_pretrained(pretrained).input_size[-1])
        path = Path(pretrained)
        if path.is_dir() and (path / CONFIG_NAME).is_file():
            size = read_config(path).get("input_size")
            if size:
                return int(size[-1])
    with torch.device("meta"):
        model = create_model(name, **{k: v for k, v in kwargs.items() if k != "num_classes"})
    return int(model.pretrained_cfg["input_size"][-1])


def resolve_dataset_defaults(cfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Fill the fields left ``null`` with the dataset's defaults (image size, crop, padding, flip, and
    ``small_input`` for models that take it); returns the resolved copy and one line saying what was chosen.
    """
    from ..data.registry import DATASET_INFO
    from ..models import get_model_kwargs
    from ..models.table_file import is_table_path

    info = DATASET_INFO[cfg.data.name]
    d = info.defaults
    kwargs = dict(cfg.model.kwargs)
    chosen: list[str] = []
    try:
        valid = get_model_kwargs(cfg.model.name)
    except ValueError as exc:
        raise ConfigError(str(exc), key="model.name") from None
    # A table file whose options set small_input was made for that input: the file decides, not the dataset.
    fixed_by_table = is_table_path(cfg.model.name) and valid.get("small_input") is not None
    if "small_input" not in kwargs and "small_input" in valid and not fixed_by_table:
        kwargs["small_input"] = d.small_input
        chosen.append(f"model.kwargs.small_input={str(d.small_input).lower()}")
    image_size = cfg.data.image_size
    if image_size is None:
        image_size = d.image_size
        why = ""
        if image_size is None:
            image_size = model_input_size(cfg.model.name, kwargs, cfg.model.pretrained)
            why = f" (the {'pretrained weights' if cfg.model.pretrained else cfg.model.name}' input size)"
        chosen.append(f"data.image_size={image_size}{why}")
    aug = cfg.aug
    crop = aug.crop if aug.crop is not None else d.crop
    padding = aug.padding if aug.padding is not None else d.padding
    hflip = aug.hflip if aug.hflip is not None else d.hflip
    chosen += [f"aug.{k}={v}" for k, v, given in (("crop", crop, aug.crop), ("padding", padding, aug.padding),
                                                     ("hflip", hflip, aug.hflip)) if given is None]
    resolved = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, kwargs=kwargs),
        data=dataclasses.replace(cfg.data, image_size=image_size),
        aug=dataclasses.replace(aug, crop=crop, padding=padding, hflip=hflip),
    )
    notes = []
    if chosen:
        mean = "ImageNet mean/std" if cfg.data.name == "imagefolder" else f"{cfg.data.name} mean/std"
        notes.append(f"{cfg.data.name} defaults: {', '.join(chosen)}; {mean} (override any with key=value)")
    return resolved, notes


def resolve_batch_size(cfg: TrainConfig, n_train: int, world_size: int = 1) -> tuple[TrainConfig, list[str]]:
    """``batch_size=null`` becomes 64, capped so an epoch has at least :data:`MIN_STEPS_PER_EPOCH` optimizer
    steps; a batch size the user gave is kept, with a warning line when it leaves too few steps.

    A capped batch also scales ``optim.lr``, which is then read as the lr for batch 64: by the square root of
    the ratio for the adaptive optimizers (AdamW, RMSpropTF), linearly for SGD -- the usual rules. Without it
    batch 5 trains at batch 64's lr, and the noisy updates of a 90-image run never settle (measured: a 3-class
    folder of 30 images per class reached 80% val unscaled, 100% scaled).
    """
    accum = cfg.optim.grad_accum_steps
    per_step = world_size * accum  # images of one optimizer step, per image of the per-process batch
    if cfg.batch_size is not None:
        steps = n_train // (cfg.batch_size * per_step)
        if steps < MIN_STEPS_PER_EPOCH:
            return cfg, [f"warning: batch_size={cfg.batch_size} gives {steps} optimizer step(s) per epoch on "
                         f"{n_train} training images; BatchNorm statistics and the EMA may lag behind the weights "
                         f"(leave batch_size unset for an automatic size)"]
        return cfg, []
    cap = n_train // (MIN_STEPS_PER_EPOCH * per_step)
    batch = min(DEFAULT_BATCH_SIZE, max(cap, MIN_AUTO_BATCH), max(n_train // per_step, 1))
    if batch == DEFAULT_BATCH_SIZE:
        return dataclasses.replace(cfg, batch_size=batch), []
    ratio = batch / DEFAULT_BATCH_SIZE
    lr = cfg.optim.lr * (ratio if cfg.optim.name == "sgd" else math.sqrt(ratio))
    rule = "linearly" if cfg.optim.name == "sgd" else "by the square root of the batch ratio"
    steps64 = n_train // (DEFAULT_BATCH_SIZE * per_step)
    note = (f"batch_size={batch} (automatic: {DEFAULT_BATCH_SIZE} would give {steps64} optimizer step(s) per epoch "
            f"on {n_train} training images; capped for >= {MIN_STEPS_PER_EPOCH}); optim.lr={lr:.3g} "
            f"({cfg.optim.lr:g} for batch {DEFAULT_BATCH_SIZE}, scaled {rule})")
    return dataclasses.replace(cfg, batch_size=batch, optim=dataclasses.replace(cfg.optim, lr=lr)), [note]


def clamp_warmup(cfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """A warm-up as long as the run (the 1-epoch default with ``epochs=1``) would never reach the peak lr:
    clamp it to a fifth of the run and say so."""
    warmup = cfg.sched.warmup_epochs
    if warmup < cfg.epochs:
        return cfg, []
    clamped = cfg.epochs / 5
    note = (f"sched.warmup_epochs={clamped:g} (clamped from {warmup:g}: the warm-up must end before the "
            f"{cfg.epochs}-epoch run does)")
    return dataclasses.replace(cfg, sched=dataclasses.replace(cfg.sched, warmup_epochs=clamped)), [note]


def resolve_config(cfg: TrainConfig, world_size: int = 1) -> tuple[TrainConfig, list[str]]:
    """Everything a run would resolve at start, without training: dataset defaults, warm-up and -- when the
    training split can be read -- the automatic batch size (otherwise a note says why it stays open)."""
    from ..data.registry import build_datasets

    cfg, notes = resolve_dataset_defaults(cfg)
    cfg, more = clamp_warmup(cfg)
    notes += more
    if cfg.batch_size is None:
        try:
            n_train = len(build_datasets(cfg.data.name, cfg.data.root, cfg.data.image_size or 32,
                                         val_size=cfg.data.val_size,
                                         synthetic_sizes=(cfg.data.synthetic_size, 1, 1))["train"])
        except (ValueError, FileNotFoundError) as exc:
            notes.append(f"batch_size stays automatic until the data can be read ({exc})")
            return cfg, notes
        cfg, more = resolve_batch_size(cfg, n_train, world_size)
        notes += more
    return cfg, notes
