"""The training loop: ``train(cfg)`` runs a whole job, ``train_one_epoch`` and ``evaluate`` are the parts.

Speed comes from keeping in-memory datasets on the training device and augmenting whole batches there
(no per-sample Python work), channels_last, and few host synchronisations; each speed feature sits
behind one config switch. Everything a run produces goes into its run directory:

* ``config.yaml`` (resolved), ``metrics.csv`` (one row per epoch), TensorBoard events in ``tb/``,
* ``checkpoints/last.pt`` (atomic; everything needed for a bit-identical resume),
* ``model.safetensors`` + ``config.json``: the best weights by validation top-1 (never chosen on test),
* ``summary.json`` and PNG plots of loss, accuracy and learning rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, TrainConfig, save_yaml, to_dict
from ..fileio import atomic_write_text
from ..models.depthwise import use_fast_depthwise_backward
from .allocator import keep_freed_memory
from .checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, capture_rng, load_checkpoint, restore_rng
from .defaults import clamp_warmup, resolve_batch_size, resolve_dataset_defaults
from .distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    convert_sync_batchnorm,
    init_distributed,
)
from .ema import ModelEMA, unwrap_model
from .optim import build_optimizer, build_scheduler
from .progress import Progress, format_duration
from .resume import check_resume_changes, resume_command

__all__ = ["TrainingDiverged", "TrainingInterrupted", "evaluate", "resolve_device", "train", "train_one_epoch"]

METRIC_FIELDS = (
    "epoch", "lr", "train_loss", "val_loss", "val_acc1", "val_acc5", "ema_val_loss", "ema_val_acc1",
    "ema_val_acc5", "images_per_s", "epoch_s",
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived: a checkpoint of the exact current state was saved before stopping."""


class _StopRequest:
    """SIGINT/SIGTERM set a flag that the loop checks after each optimizer step.

    The first signal asks for a clean stop (checkpoint, then exit); a second SIGINT aborts at once.
    Handlers are only installed from the main thread (Python's rule) and restored afterwards.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def __call__(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------- runtime
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"got {name!r}, expected 'auto', 'cpu', 'cuda' or 'cuda:N'", key="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"got {name!r} but CUDA is not available on this machine", key="device")
    return device


def _setup_runtime(cfg: TrainConfig) -> torch.device:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        # Bit-reproducible runs (and resumes) at some speed cost; warn_only keeps ops without a
        # deterministic kernel usable instead of failing the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()  # no page-fault storm per step (see engine/allocator.py)
    if device.type == "cuda" and not cfg.deterministic:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def _amp_context(amp: str, device: torch.device) -> Any:
    if amp == "none":
        return nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 needs a CUDA device (use amp=bf16 on CPU)", key="amp")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


# ------------------------------------------------------------------------------------------- batches
def _device_batches(loader: Iterable, device: torch.device, channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        yield images, labels


def _prepare(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# --------------------------------------------------------------------------------------------- steps
def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # Soft targets (mixup/cutmix/label smoothing, built by BatchAugment) and hard labels alike.
    return F.cross_entropy(logits.float(), targets)


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
) -> EpochStats:
    """One pass over ``batches``: augment on the device, forward, backward, step (every ``accum_steps``).

    ``scheduler`` (if given) is stepped after every optimizer step; pass ``None`` for per-epoch schedules.
    The loss is read back to the host only every ``sync_every`` steps (1 on CPU, where it is free).
    An epoch interrupted by ``should_stop`` (checked after each optimizer step) returns
    ``completed=False`` and ``next_step``; it continues from there with ``start_step`` and the
    ``carried`` (loss sum, images, seconds) of its first part.
    """
    model.train()
    augment.train()
    device = next(model.parameters()).device
    start = time.perf_counter() - carried[2]
    loss_sum = torch.full((), carried[0], device=device, dtype=torch.float64)
    n_images, micro = carried[1], 0
    optimizer.zero_grad(set_to_none=True)
    amp_ctx = _amp_context(amp, device)
    last_loss = float("nan")
    completed, step = True, start_step - 1
    for step, (images, labels) in enumerate(batches, start=start_step):
        x, targets = augment(images, labels)
        x = _prepare(x, channels_last)
        with amp_ctx:
            logits = model(x)
        loss = _loss(logits, targets)
        if scaler is not None:
            scaler.scale(loss / accum_steps).backward()
        else:
            (loss / accum_steps).backward()
        micro += 1
        batch = images.shape[0]
        loss_sum += loss.detach() * batch
        n_images += batch
        if micro == accum_steps or step == steps - 1:
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
            micro = 0
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    preprocess: nn.Module,
    *,
    num_classes: int,
    amp: str = "none",
    channels_last: bool = False,
    confusion: bool = False,
    distributed: bool = False,
) -> dict[str, Any]:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy; optionally the confusion matrix.

    With ``distributed=True`` each rank evaluates its own shard and the counts are summed over ranks.
    """
    was_training = model.training
    model.eval()
    preprocess.eval()
    device = next(model.parameters()).device
    k = min(5, num_classes)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    loss_sum = torch.zeros((), device=device)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device) if confusion else None
    n = 0
    with _amp_context(amp, device):
        for images, labels in batches:
            x, labels = preprocess(images, labels)
            logits = model(_prepare(x, channels_last)).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            top = logits.topk(k, dim=1).indices
            hit = top.eq(labels[:, None])
            correct1 += hit[:, 0].sum()
            correct5 += hit.any(dim=1).sum()
            if cm is not None:
                cm += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes**2).view(
                    num_classes, num_classes
                )
            n += labels.shape[0]
    model.train(was_training)
    if distributed:
        totals = torch.stack([correct1.double(), correct5.double(), loss_sum.double(),
                              torch.tensor(float(n), device=device, dtype=torch.float64)])
        all_reduce_sum(totals)
        correct1, correct5, loss_sum, n = totals[0], totals[1], totals[2], int(totals[3])
        if cm is not None:
            all_reduce_sum(cm)
    if n == 0:
        raise ValueError("evaluation split is empty")
    out: dict[str, Any] = {
        "loss": float(loss_sum) / n,
        "acc1": 100.0 * float(correct1) / n,
        "acc5": 100.0 * float(correct5) / n,
        "n": n,
    }
    if cm is not None:
        cm = cm.cpu()
        out["confusion"] = cm.tolist()
        per_class = cm.diag().double() / cm.sum(1).clamp(min=1).double()
        out["per_class_acc1"] = (100.0 * per_class).tolist()
    return out


# ------------------------------------------------------------------------------------------ building
def build_data(cfg: TrainConfig, device: torch.device) -> tuple[dict[str, Any], Any]:
    from ..data.datasets import DATASET_INFO, build_datasets

    info = DATASET_INFO[cfg.data.name]
    datasets = build_datasets(
        cfg.data.name,
        cfg.data.root,
        cfg.data.image_size,
        seed=0,  # split seeds are fixed so the test split never changes with the training seed
        download=cfg.data.download,
        val_size=cfg.data.val_size,
        num_classes=cfg.model.num_classes if cfg.data.name == "synthetic" else None,
        synthetic_sizes=(cfg.data.synthetic_size, max(cfg.data.synthetic_size // 4, 1), max(cfg.data.synthetic_size // 4, 1)),
    )
    return datasets, info


def make_batches(dataset: Any, batch_size: int, *, shuffle: bool, seed: int, device: torch.device,
                 device_resident: bool, num_workers: int, drop_last: bool = False,
                 dist_info: DistInfo | None = None, repeated_aug: int = 0) -> tuple[Any, int]:
    """A re-iterable source of (uint8 images, labels) batches on ``device`` and its length.

    Under DDP each rank draws a disjoint shard of the same per-epoch permutation (``dist_info``);
    ``repeated_aug`` > 1 uses the repeated-augmentation sampler for file datasets.
    """
    from .distributed import RepeatAugSampler

    dist_info = dist_info or DistInfo()
    from ..data.datasets import TensorImageDataset, TensorLoader, collate

    if batch_size > len(dataset) and drop_last:
        raise ConfigError(f"got {batch_size}, larger than the {len(dataset)}-image training split", key="batch_size")
    if isinstance(dataset, TensorImageDataset):
        loader = TensorLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                              device=device if device_resident else None, rank=dist_info.rank,
                              world_size=dist_info.world_size)
        return loader, len(loader)
    sampler: Any = None
    if repeated_aug > 1:
        sampler = RepeatAugSampler(len(dataset), dist_info.rank, dist_info.world_size, repeated_aug, shuffle, seed)
    elif dist_info.enabled:
        sampler = torch.utils.data.DistributedSampler(dataset, dist_info.world_size, dist_info.rank, shuffle, seed)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, drop_last=drop_last,
        num_workers=num_workers, collate_fn=collate, pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0, generator=generator,
    )
    if sampler is not None:
        loader.set_epoch = sampler.set_epoch  # type: ignore[attr-defined]
    return loader, len(loader)


def _shard(dataset: Any, dist_info: DistInfo) -> Any:
    """This rank's contiguous-stride share of an evaluation split (no padding: counts stay exact)."""
    if not dist_info.enabled:
        return dataset
    idx = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    if hasattr(dataset, "subset"):
        return dataset.subset(idx)
    return torch.utils.data.Subset(dataset, idx)


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    from ..weights import create_model

    kwargs = dict(cfg.model.kwargs)
    kwargs.setdefault("num_classes", num_classes)
    kwargs.setdefault("in_chans", in_chans)
    if cfg.model.dropout is not None:
        kwargs["dropout"] = cfg.model.dropout
    if cfg.model.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.model.drop_path_rate
    try:
        # With pretrained weights, create_model takes the tag's / directory's keywords (width
        # convention, padding, act) as defaults and re-initialises the classifier when the class
        # count differs (fine-tuning).
        model = create_model(cfg.model.name, pretrained=cfg.model.pretrained, **kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc), key="model.pretrained" if cfg.model.pretrained else "model") from None
    if cfg.bn_momentum is not None:
        # V3's momentum 0.01 leaves BN statistics far behind the weights when an epoch is
        # only ~20 steps; the main job trains with 0.1.
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = cfg.bn_momentum
    return model


def _new_run_dir(cfg: TrainConfig, *, claim: bool = True, parent: Path = Path("runs")) -> Path:
    """``runs/<dataset>``, or the first free ``runs/<dataset>-N``: short names a user can type (README's
    ``runs/digits`` is the main job's), and a finished run is never overwritten. ``claim`` creates the
    directory at once (``mkdir`` fails if another process took the name first)."""
    for n in itertools.count(1):
        candidate = parent / (cfg.data.name if n == 1 else f"{cfg.data.name}-{n}")
        if candidate.exists():
            continue
        if not claim:
            return candidate
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------- artefacts
def write_metrics_csv(rows: list[dict[str, float]], path: Path) -> None:
    lines = [",".join(METRIC_FIELDS)]
    for row in rows:
        lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" for k in METRIC_FIELDS))
    atomic_write_text(path, "\n".join(lines) + "\n")


class _TensorBoard:
    """TensorBoard events if the package is importable; silently nothing otherwise."""

    def __init__(self, log_dir: Path, purge_step: int | None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and value is not None:
                self.writer.add_scalar(key.replace("_", "/", 1), value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ------------------------------------------------------------------------------------------- the job
def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run a whole training job as configured; returns (and writes) the run's ``summary.json``.

    Under torchrun (``WORLD_SIZE`` > 1) the job runs as DistributedDataParallel: rank 0 alone logs and
    writes files, metrics are reduced over ranks, and the process group is always torn down. ``threads``
    applies to this job only: the caller's thread count is restored afterwards.
    """
    t_start = time.perf_counter()
    caller_threads = torch.get_num_threads()
    try:
        device = _setup_runtime(cfg)
        dist_info = init_distributed(device.type)
        if dist_info.enabled and device.type == "cuda":
            device = torch.device("cuda", dist_info.local_rank)
        try:
            with _StopRequest() as stop:
                return _train(cfg, device, dist_info, t_start, stop)
        finally:
            cleanup_distributed()
    finally:
        torch.set_num_threads(caller_threads)


def _train(cfg: TrainConfig, device: torch.device, dist_info: DistInfo, t_start: float,
           stop: _StopRequest) -> dict[str, Any]:
    from ..analysis.plots import plot_training_curves
    from ..analysis.profile import profile
    from ..data.augment import BatchAugment
    from ..data.datasets import test_split_label
    from ..weights import from_pretrained, save_pretrained

    main = dist_info.is_main
    run_dir = Path(cfg.output_dir) if cfg.output_dir else _new_run_dir(cfg, claim=False)
    if dist_info.enabled and not cfg.output_dir:
        raise ConfigError("set output_dir explicitly for a distributed run (every rank must agree on it)",
                          key="output_dir")
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    log = _Logger(enabled=main)

    resume_state = None
    if cfg.resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"resume=true but {ckpt_path} does not exist (set output_dir to the run to resume)")
        resume_state = load_checkpoint(ckpt_path)

    # Fields left null take the dataset's / the run's own defaults; each choice is one line at start.
    cfg, notes = resolve_dataset_defaults(cfg)
    cfg, more = clamp_warmup(cfg)
    notes += more
    datasets, info = build_data(cfg, device)
    train_ds = datasets["train"]
    cfg, more = resolve_batch_size(cfg, len(train_ds), dist_info.world_size)
    notes += more
    if resume_state is not None:
        notes += check_resume_changes(resume_state["config"], cfg, completed_epochs=int(resume_state["epoch"]) + 1)
    test_split = test_split_label(datasets)
    if test_split != "test":
        notes.append(f"note: {cfg.data.root} has no test/ folder, so the final 'test' figure is measured on the "
                     "val split, which also chooses the best epoch: it is not a held-out result")
    classes = list(getattr(train_ds, "classes", []) or [])
    num_classes = cfg.model.num_classes or info.num_classes or len(classes)
    # Also with pretrained weights: fine-tuning re-initialises the classifier for the dataset's classes, but
    # a classifier narrower than the labels would fail mid-epoch (and a wider one wastes outputs).
    if classes and num_classes != len(classes):
        raise ConfigError(f"got {num_classes} but dataset {cfg.data.name} has {len(classes)} classes", key="model.num_classes")
    channels = getattr(train_ds, "num_channels", info.channels)
    if cfg.batch_size * dist_info.world_size > len(train_ds):
        raise ConfigError(f"got {cfg.batch_size} (x {dist_info.world_size} processes), larger than the "
                          f"{len(train_ds)}-image training split", key="batch_size")

    model = build_model(cfg, num_classes, channels)
    if not cfg.model.pretrained:
        # Trained from scratch: the dataset's own statistics become the model's preprocessing.
        model.pretrained_cfg.update(mean=tuple(info.mean), std=tuple(info.std),
                                    input_size=(channels, cfg.data.image_size, cfg.data.image_size))
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    if cfg.sync_bn and dist_info.enabled:
        model = convert_sync_batchnorm(model, device.type)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.fast_depthwise_grad and device.type == "cpu":
        use_fast_depthwise_backward(model)
    # Every rank built the same initial weights from cfg.seed; from here on each rank draws its own
    # random numbers (dropout, drop path, augmentation) so the replicas do not augment alike.
    torch.manual_seed(cfg.seed + 1000 * dist_info.rank)
    random.seed(cfg.seed + 1000 * dist_info.rank)

    train_batches, steps_per_epoch = make_batches(
        train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, device=device,
        device_resident=cfg.data.device_resident, num_workers=cfg.data.num_workers, drop_last=True,
        dist_info=dist_info, repeated_aug=cfg.repeated_aug,
    )
    eval_sources = {
        split: make_batches(_shard(datasets[split], dist_info), cfg.eval_batch_size, shuffle=False, seed=0,
                            device=device, device_resident=cfg.data.device_resident,
                            num_workers=cfg.data.num_workers)[0]
        for split in ("val",)
    }
    a = cfg.aug
    aug_gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(
        cfg.seed + 1 + 1000 * dist_info.rank)
    augment = BatchAugment(
        crop=a.crop, padding=a.padding, size=cfg.data.image_size if a.crop == "rrc" else None,
        rrc_scale=tuple(a.scale), hflip=a.hflip, auto_augment=a.auto_augment, ra_num_ops=a.ra_num_ops,
        ra_magnitude=a.ra_magnitude, random_erasing=a.random_erasing, mixup_alpha=a.mixup_alpha,
        cutmix_alpha=a.cutmix_alpha, mix_prob=a.mix_prob, label_smoothing=a.label_smoothing,
        num_classes=num_classes, mean=mean, std=std, generator=aug_gen,
    ).to(device)
    eval_pre = BatchAugment(mean=mean, std=std).to(device).eval()

    optimizer = build_optimizer(model, cfg.optim)
    accum = cfg.optim.grad_accum_steps
    opt_steps = math.ceil(steps_per_epoch / accum)
    scheduler = build_scheduler(optimizer, cfg.sched, cfg.epochs, opt_steps)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    ema = ModelEMA(model, decay=cfg.ema_decay, warmup=cfg.ema_warmup) if cfg.ema else None
    train_model: nn.Module = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist_info.local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    start_epoch, history, best = 0, [], {"acc1": -1.0, "epoch": -1, "source": None}
    partial: dict[str, Any] | None = None
    generators = {"augment": aug_gen}
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if cfg.optim.lr != resume_state["config"]["optim"]["lr"]:
            # A resume with a new lr (e.g. after divergence) rescales the schedule's base lr.
            for group in optimizer.param_groups:
                group["initial_lr"] = cfg.optim.lr
            scheduler.base_lrs = [cfg.optim.lr for _ in scheduler.base_lrs]
        if ema is not None and resume_state.get("ema") is not None:
            ema.load_state_dict(resume_state["ema"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        per_rank = resume_state.get("rng_per_rank") or []
        rng = per_rank[dist_info.rank] if len(per_rank) == dist_info.world_size else resume_state["rng"]
        restore_rng(rng, generators)
        start_epoch = int(resume_state["epoch"]) + 1
        history = list(resume_state["history"])
        best = dict(resume_state["best"])
        partial = resume_state.get("partial")
        where = f", step {partial['step']}" if partial else ""
        log(f"resuming {run_dir} from epoch {start_epoch + 1}/{cfg.epochs}{where}")

    if main:
        if not cfg.output_dir:  # claimed only now, so a run that fails before this leaves no empty directory
            run_dir = _new_run_dir(cfg)
            ckpt_path = run_dir / "checkpoints" / "last.pt"
            cfg = dataclasses.replace(cfg, output_dir=str(run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        # What ran, resolved; saved with resume=false so that the file alone re-runs it from scratch.
        save_yaml(dataclasses.replace(cfg, resume=False), run_dir / "config.yaml")
        for stale in ckpt_path.parent.glob(f".{ckpt_path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a process killed mid-write; last.pt itself is intact
    tb = _TensorBoard(run_dir / "tb", purge_step=start_epoch if start_epoch else None) if main else None
    n_params = sum(p.numel() for p in model.parameters())
    ranks = f" x {dist_info.world_size} processes" if dist_info.enabled else ""
    for note in notes:
        log(note)
    test_txt = "test" if test_split == "test" else "test (= val)"
    log(f"{cfg.model.name}: {n_params:,} params | {cfg.data.name}: {len(train_ds)} train / "
        f"{len(datasets['val'])} val / {len(datasets['test'])} {test_txt} | {device}{ranks} | run dir {run_dir}")
    log(_settings_line(cfg, steps_per_epoch, mean, std))
    log(f"interrupted? continue with: {resume_command(run_dir)}")

    sync_every = 1 if device.type == "cpu" else 25
    step_scheduler = scheduler if cfg.sched.per_step else None
    epoch = start_epoch

    def diverged(step: int, loss: float, images: torch.Tensor | None, opt: torch.optim.Optimizer) -> None:
        dump = {"epoch": epoch, "step": step, "loss": loss, "lr": opt.param_groups[0]["lr"], "rank": dist_info.rank}
        if images is not None:
            x = images.float()
            dump["batch"] = {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "divergence.json").write_text(json.dumps(dump, indent=2))
        raise TrainingDiverged(
            f"loss became {loss} at epoch {epoch} step {step} (lr {dump['lr']:.3g}); diagnostics in "
            f"{run_dir / 'divergence.json'}; the last good checkpoint is kept: continue with "
            f"`mobilenets train output_dir={run_dir} resume=true optim.lr=<lower>`"
        )

    train_time = sum(r.get("epoch_s", 0.0) for r in history)
    for epoch in range(start_epoch, cfg.epochs):
        if hasattr(train_batches, "set_epoch"):
            train_batches.set_epoch(epoch)
        remaining = (cfg.epochs - epoch - 1) * (train_time / max(len(history), 1)) if history else 0.0
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", quiet=cfg.quiet or not main,
                            remaining_after=remaining)
        first_step, carried = 0, (0.0, 0, 0.0)
        if partial is not None and partial["epoch"] == epoch:
            first_step = int(partial["step"])
            carried = (float(partial["loss_sum"]), int(partial["images"]), float(partial["seconds"]))
        batches = itertools.islice(_device_batches(train_batches, device, cfg.channels_last), first_step, None)
        stats = train_one_epoch(
            train_model, batches, augment, optimizer, step_scheduler, steps=steps_per_epoch, ema=ema,
            scaler=scaler, amp=cfg.amp, channels_last=cfg.channels_last, clip_grad=cfg.optim.clip_grad,
            accum_steps=accum, progress=progress, sync_every=sync_every, on_nonfinite=diverged,
            start_step=first_step, carried=carried,
            # Under DDP every rank must stop at the same step: signals are honoured at epoch ends there.
            should_stop=None if dist_info.enabled else stop,
        )
        if not stats.completed:
            if main:
                atomic_torch_save(_checkpoint(
                    epoch - 1, model, ema, optimizer, scheduler, scaler, all_gather_object(capture_rng(generators)),
                    cfg, history, best, dist_info, partial={
                        "epoch": epoch, "step": stats.next_step, "loss_sum": stats.loss_sum,
                        "images": stats.images, "seconds": stats.seconds}), ckpt_path)
                progress.close(f"stopped by signal {stop.signal} at epoch {epoch + 1} step {stats.next_step}")
            raise TrainingInterrupted(
                f"stopped by signal {stop.signal}; checkpoint saved at epoch {epoch + 1} step {stats.next_step}: "
                f"continue with `mobilenets train output_dir={run_dir} resume=true`")
        if not cfg.sched.per_step:
            scheduler.step()
        if dist_info.enabled:
            totals = all_reduce_sum(torch.tensor([stats.loss * stats.images, float(stats.images), stats.seconds],
                                                 dtype=torch.float64))
            stats.loss, stats.images = float(totals[0] / totals[1]), int(totals[1])
            stats.seconds = float(totals[2]) / dist_info.world_size
        eval_kw = {"num_classes": num_classes, "amp": cfg.amp, "channels_last": cfg.channels_last,
                   "distributed": dist_info.enabled}
        val_src = eval_sources["val"]
        val = evaluate(model, _device_batches(val_src, device, cfg.channels_last), eval_pre, **eval_kw)
        ema_val = (evaluate(ema.module, _device_batches(val_src, device, cfg.channels_last), eval_pre, **eval_kw)
                   if ema is not None else None)
        epoch_s = stats.seconds
        train_time += epoch_s
        row = {
            "epoch": epoch + 1, "lr": stats.lr, "train_loss": stats.loss, "val_loss": val["loss"],
            "val_acc1": val["acc1"], "val_acc5": val["acc5"],
            "ema_val_loss": ema_val["loss"] if ema_val else None,
            "ema_val_acc1": ema_val["acc1"] if ema_val else None,
            "ema_val_acc5": ema_val["acc5"] if ema_val else None,
            "images_per_s": stats.images_per_s, "epoch_s": epoch_s,
        }
        history.append(row)
        # Best by validation top-1 (never test), raw or EMA weights, whichever is better.
        candidates = [("model", val["acc1"], model)] + ([("ema", ema_val["acc1"], ema.module)] if ema_val else [])
        source, acc, module = max(candidates, key=lambda c: c[1])
        rng_all = all_gather_object(capture_rng(generators))
        if acc > best["acc1"]:
            best = {"acc1": acc, "epoch": epoch + 1, "source": source}
            if main:
                save_pretrained(_clean_copy(module, model), run_dir, class_names=classes or None,
                                extra={"dataset": cfg.data.name, "epoch": epoch + 1, "val_acc1": acc,
                                       "weights_source": source})
        last_epoch = epoch + 1 == cfg.epochs
        if main:
            if (cfg.save_every and (epoch + 1) % cfg.save_every == 0) or last_epoch or stop():
                atomic_torch_save(_checkpoint(epoch, model, ema, optimizer, scheduler, scaler, rng_all, cfg,
                                              history, best, dist_info), ckpt_path)
            write_metrics_csv(history, run_dir / "metrics.csv")
            if tb is not None:
                tb.log(row)
            ema_txt = f" ema {ema_val['acc1']:.2f}" if ema_val else ""
            progress.close(
                f"epoch {epoch + 1}/{cfg.epochs} loss {stats.loss:.4f} val {val['acc1']:.2f}{ema_txt} "
                f"lr {stats.lr:.2e} {stats.images_per_s:,.0f} img/s {epoch_s:.1f}s "
                f"(ETA {format_duration((cfg.epochs - epoch - 1) * train_time / len(history))})"
            )
        barrier()
        if stop() and not last_epoch:
            raise TrainingInterrupted(
                f"stopped by signal {stop.signal} after epoch {epoch + 1}; checkpoint saved: continue with "
                f"`mobilenets train output_dir={run_dir} resume=true`")
    if tb is not None:
        tb.close()
    if not main:
        return {"rank": dist_info.rank, "run_dir": str(run_dir)}

    # Final test of the best weights, reloaded from the run directory as a user would.
    test_src = make_batches(datasets["test"], cfg.eval_batch_size, shuffle=False, seed=0, device=device,
                            device_resident=cfg.data.device_resident, num_workers=cfg.data.num_workers)[0]
    best_model = from_pretrained(run_dir).to(device)
    if cfg.channels_last:
        best_model.to(memory_format=torch.channels_last)
    test = evaluate(best_model, _device_batches(test_src, device, cfg.channels_last), eval_pre,
                    num_classes=num_classes, amp=cfg.amp, channels_last=cfg.channels_last)
    prof = profile(best_model.cpu().float(), (channels, cfg.data.image_size, cfg.data.image_size))
    summary = {
        "model": cfg.model.name, "dataset": cfg.data.name, "params": prof.params, "macs": prof.macs,
        "epochs": cfg.epochs, "best_epoch": best["epoch"], "best_weights": best["source"],
        "best_val_acc1": best["acc1"], "test_acc1": test["acc1"], "test_acc5": test["acc5"],
        "test_loss": test["loss"], "train_time_s": train_time,
        "images_per_s": sum(r["images_per_s"] for r in history) / max(len(history), 1),
        "wall_time_s": time.perf_counter() - t_start, "device": str(device), "torch": torch.__version__,
        "world_size": dist_info.world_size, "run_dir": str(run_dir), "test_split": test_split,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    try:
        plot_training_curves(run_dir / "metrics.csv", run_dir)
    except Exception as exc:  # plots are a convenience; never fail a finished run over them
        log(f"warning: could not draw plots ({exc})")
    return summary


def _settings_line(cfg: TrainConfig, steps_per_epoch: int, mean: Any, std: Any) -> str:
    """The resolved values that decide what a run learns, in one line (printed at start)."""
    a = cfg.aug
    crop = {"pad": f"pad-and-crop {a.padding} px", "rrc": f"random-resized-crop {tuple(a.scale)}"}.get(str(a.crop), "no crop")
    stats = "/".join(f"{v:.3g}" for v in mean) + " std " + "/".join(f"{v:.3g}" for v in std)
    return (f"settings: {cfg.data.image_size} px, {crop}, hflip {a.hflip:g}, mean {stats} | batch {cfg.batch_size}, "
            f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs | {cfg.optim.name} lr {cfg.optim.lr:g}, "
            f"{cfg.sched.name} warm-up {cfg.sched.warmup_epochs:g} | EMA {'on' if cfg.ema else 'off'}")


def _checkpoint(epoch: int, model: nn.Module, ema: ModelEMA | None, optimizer: torch.optim.Optimizer,
                scheduler: Any, scaler: Any, rng_all: list[Any], cfg: TrainConfig, history: list[dict[str, Any]],
                best: dict[str, Any], dist_info: DistInfo, partial: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a bit-identical resume needs; ``epoch`` is the last completed one."""
    return {
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "model": unwrap_model(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None, "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_all[0], "rng_per_rank": rng_all, "config": to_dict(cfg), "history": list(history),
        "best": dict(best), "world_size": dist_info.world_size, "partial": partial,
    }


def _clean_copy(module: nn.Module, reference: nn.Module) -> nn.Module:
    """The module to save natively, carrying the reference model's name/kwargs/metadata."""
    module = unwrap_model(module)
    ref = unwrap_model(reference)
    for attr in ("model_name", "model_kwargs", "pretrained_cfg", "num_classes", "in_chans"):
        if hasattr(ref, attr):
            setattr(module, attr, getattr(ref, attr))
    return module


class _Logger:
    """Status lines on stderr, from rank 0 only."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        import sys

        if self.enabled:
            print(msg, file=sys.stderr, flush=True)
