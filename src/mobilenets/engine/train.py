"""A whole training job: ``train(cfg)`` is setup, resume, the epoch loop and finish around one
:class:`RunState`. The parts live beside it: :func:`~mobilenets.engine.epoch.train_one_epoch` (one pass
over the batches), :func:`~mobilenets.engine.evaluate.evaluate` (the evaluation loop),
:mod:`~mobilenets.engine.build` (data, model, augmentation), :mod:`mobilenets.data.loader` (batches).

Speed comes from keeping in-memory datasets on the training device and augmenting whole batches there
(no per-sample Python work), channels_last, and few host synchronisations; each speed feature sits
behind one config switch. What is task-specific (batches, model, augmentation, loss, evaluation, the
metric that picks the best weights, the metrics columns and summary keys) is asked of the run's
:class:`~mobilenets.engine.task.Task`; the loop itself is the same for every task. Everything a run
produces goes into its run directory:

* ``config.yaml`` (resolved), ``metrics.csv`` (one row per epoch), TensorBoard events in ``tb/``,
* ``checkpoints/last.pt`` (atomic; everything needed for a bit-identical resume),
* ``model.safetensors`` + ``config.json``: the best weights by the task's validation metric (top-1,
  or box mAP for detection; never chosen on test),
* ``summary.json`` and PNG plots of loss, accuracy (a detector: ``map.png``) and learning rate.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, TrainConfig, save_yaml
from ..data.loader import device_batches
from ..models.depthwise import use_fast_depthwise_backward
from .build import build_data, build_model
from .checkpoint import atomic_torch_save, capture_rng, load_checkpoint, restore_rng
from .defaults import clamp_warmup, resolve_batch_size, resolve_dataset_defaults
from .distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    convert_sync_batchnorm,
    init_distributed,
)
from .ema import ModelEMA
from .epoch import EpochStats, train_one_epoch
from .evaluate import evaluate
from .optim import build_optimizer, build_scheduler
from .progress import Progress, format_duration
from .resume import check_resume_changes, resume_command
from .rundir import TensorBoard, checkpoint_state, clean_copy, new_run_dir, write_metrics_csv
from .runtime import Logger, StopRequest, resolve_device, setup_runtime
from .task import Task, get_task, resolve_task

__all__ = [
    "RunState", "TrainingDiverged", "TrainingInterrupted", "build_model", "evaluate", "resolve_device", "train",
    "train_one_epoch",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived: a checkpoint of the exact current state was saved before stopping."""


@dataclass
class RunState:
    """Everything a training job holds between its phases.

    :func:`_setup` builds it (data, model, loaders, augmentation, optimisation), :func:`_resume`
    restores its weights, optimiser and counters from ``checkpoints/last.pt``, the epoch loop advances
    ``epoch`` / ``history`` / ``best`` and :func:`_finish` tests the best weights and writes the summary.
    """

    cfg: TrainConfig
    task: Task
    device: torch.device
    dist: DistInfo
    run_dir: Path
    log: Logger
    notes: list[str]
    datasets: dict[str, Any]
    test_split: str  # what the "test" figure is measured on ("test", or the val split)
    classes: list[str]
    num_classes: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model: nn.Module  # the module whose weights are saved
    train_model: nn.Module  # what the step runs: the model, wrapped in DDP / torch.compile as configured
    ema: ModelEMA | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    train_batches: Any
    steps_per_epoch: int
    val_batches: Any
    augment: nn.Module
    eval_pre: nn.Module
    generators: dict[str, torch.Generator]
    start_epoch: int = 0
    epoch: int = 0  # the epoch being trained (0-based)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"acc1": -1.0, "epoch": -1, "source": None})
    partial: dict[str, Any] | None = None  # where an epoch stopped mid-way (from the checkpoint)
    train_time: float = 0.0
    tb: TensorBoard | None = None

    @property
    def main(self) -> bool:
        return self.dist.is_main

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save_checkpoint(self, epoch: int, rng_all: list[Any], partial: dict[str, Any] | None = None) -> None:
        atomic_torch_save(checkpoint_state(epoch, self.model, self.ema, self.optimizer, self.scheduler, self.scaler,
                                           rng_all, self.cfg, self.history, self.best, self.dist, partial=partial),
                          self.ckpt_path)


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
        device = setup_runtime(cfg)
        dist_info = init_distributed(device.type)
        if dist_info.enabled and device.type == "cuda":
            device = torch.device("cuda", dist_info.local_rank)
        try:
            with StopRequest() as stop:
                return _train(cfg, device, dist_info, t_start, stop)
        finally:
            cleanup_distributed()
    finally:
        torch.set_num_threads(caller_threads)


def _train(cfg: TrainConfig, device: torch.device, dist_info: DistInfo, t_start: float,
           stop: StopRequest) -> dict[str, Any]:
    run_dir, resume_state = _locate_run(cfg, dist_info)
    st = _setup(cfg, device, dist_info, run_dir, resume_state)
    if resume_state is not None:
        _resume(st, resume_state)
    _open_run_dir(st)
    _epoch_loop(st, stop)
    if st.tb is not None:
        st.tb.close()
    if not st.main:
        return {"rank": dist_info.rank, "run_dir": str(st.run_dir)}
    return _finish(st, t_start)


# ------------------------------------------------------------------------------------------- setup
def _locate_run(cfg: TrainConfig, dist_info: DistInfo) -> tuple[Path, dict[str, Any] | None]:
    """The run directory (not created yet) and, with ``resume=true``, the checkpoint it holds."""
    run_dir = Path(cfg.output_dir) if cfg.output_dir else new_run_dir(cfg, claim=False)
    if dist_info.enabled and not cfg.output_dir:
        raise ConfigError("set output_dir explicitly for a distributed run (every rank must agree on it)",
                          key="output_dir")
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not cfg.resume:
        return run_dir, None
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"resume=true but {ckpt_path} does not exist (set output_dir to the run to resume)")
    return run_dir, load_checkpoint(ckpt_path)


def _resolve_config(cfg: TrainConfig, device: torch.device, dist_info: DistInfo,
                    resume_state: dict[str, Any] | None) -> tuple[TrainConfig, list[str], dict[str, Any], Any]:
    """Fields left null take the dataset's / the run's own defaults; each choice is one line at start."""
    cfg, notes = resolve_dataset_defaults(cfg)
    cfg, more = clamp_warmup(cfg)
    notes += more
    datasets, info = build_data(cfg, device)
    cfg, more = resolve_batch_size(cfg, len(datasets["train"]), dist_info.world_size)
    notes += more
    if resume_state is not None:
        notes += check_resume_changes(resume_state["config"], cfg, completed_epochs=int(resume_state["epoch"]) + 1)
    return cfg, notes, datasets, info


def _check_classes(cfg: TrainConfig, train_ds: Any, info: Any, dist_info: DistInfo) -> tuple[list[str], int, int]:
    """The class names, the class count the model predicts and the image channels."""
    classes = list(getattr(train_ds, "classes", []) or [])
    # The split's own names first: a dataset whose class count depends on its options (COCO masks with
    # VOC's classes or all of COCO's) knows better than the registry's static figure.
    num_classes = cfg.model.num_classes or len(classes) or info.num_classes
    # Also with pretrained weights: fine-tuning re-initialises the classifier for the dataset's classes, but
    # a classifier narrower than the labels would fail mid-epoch (and a wider one wastes outputs).
    if classes and num_classes != len(classes):
        raise ConfigError(f"got {num_classes} but dataset {cfg.data.name} has {len(classes)} classes", key="model.num_classes")
    channels = getattr(train_ds, "num_channels", info.channels)
    if cfg.batch_size * dist_info.world_size > len(train_ds):
        raise ConfigError(f"got {cfg.batch_size} (x {dist_info.world_size} processes), larger than the "
                          f"{len(train_ds)}-image training split", key="batch_size")
    return classes, num_classes, channels


def _model_on_device(cfg: TrainConfig, task: Task, device: torch.device, dist_info: DistInfo, info: Any,
                     num_classes: int, channels: int) -> tuple[nn.Module, Any, Any]:
    """The model (initialised from ``cfg.seed``) on ``device`` in its memory format, and its mean/std."""
    from ..models.registry import is_model_name, model_task

    if is_model_name(cfg.model.name) and model_task(cfg.model.name) != task.name:
        kinds = {"classify": "a classifier", "detect": "a detector", "segment": "a segmenter"}
        raise ConfigError(f"got {cfg.model.name!r}, {kinds[model_task(cfg.model.name)]}, for task {task.name}; "
                          f"expected {kinds[task.name]} (`mobilenets list -v` marks each)", key="model.name")
    model = task.build_model(cfg, info, num_classes, channels)
    pcfg = getattr(model, "pretrained_cfg", {})
    mean, std = pcfg.get("mean", tuple(info.mean)), pcfg.get("std", tuple(info.std))
    if cfg.sync_bn and dist_info.enabled:
        model = convert_sync_batchnorm(model, device.type)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.fast_depthwise_grad and device.type == "cpu":
        use_fast_depthwise_backward(model)
    return model, mean, std


def _optimisation(cfg: TrainConfig, model: nn.Module, device: torch.device, dist_info: DistInfo,
                  steps_per_epoch: int) -> tuple[Any, Any, Any, ModelEMA | None, nn.Module]:
    """Optimizer, scheduler, fp16 scaler, EMA and the module the step runs (DDP / compiled)."""
    optimizer = build_optimizer(model, cfg.optim)
    opt_steps = math.ceil(steps_per_epoch / cfg.optim.grad_accum_steps)
    scheduler = build_scheduler(optimizer, cfg.sched, cfg.epochs, opt_steps)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    ema = ModelEMA(model, decay=cfg.ema_decay, warmup=cfg.ema_warmup) if cfg.ema else None
    train_model: nn.Module = model
    if dist_info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist_info.local_rank] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    return optimizer, scheduler, scaler, ema, train_model


def _setup(cfg: TrainConfig, device: torch.device, dist_info: DistInfo, run_dir: Path,
           resume_state: dict[str, Any] | None) -> RunState:
    """Defaults, data, model, loaders, augmentation and optimisation, in the order that fixes every
    random draw: the model's initial weights from ``cfg.seed``, then per-rank seeds for the rest."""
    from ..data.registry import test_split_label

    cfg, notes, datasets, info = _resolve_config(cfg, device, dist_info, resume_state)
    task = get_task(resolve_task(cfg), cfg)  # cfg.task stays as given ("auto"): summary.json records the task
    test_split = test_split_label(datasets)
    if test_split != "test":
        notes.append(f"note: {cfg.data.root} has no test/ folder, so the final 'test' figure is measured on the "
                     "val split, which also chooses the best epoch: it is not a held-out result")
    train_ds = datasets["train"]
    classes, num_classes, channels = _check_classes(cfg, train_ds, info, dist_info)
    model, mean, std = _model_on_device(cfg, task, device, dist_info, info, num_classes, channels)
    # Every rank built the same initial weights from cfg.seed; from here on each rank draws its own
    # random numbers (dropout, drop path, augmentation) so the replicas do not augment alike.
    rank, world = dist_info.rank, dist_info.world_size
    torch.manual_seed(cfg.seed + 1000 * rank)
    random.seed(cfg.seed + 1000 * rank)

    train_batches, steps_per_epoch = task.batches(train_ds, cfg.batch_size, cfg=cfg, shuffle=True, seed=cfg.seed,
                                                  device=device, drop_last=True, rank=rank, world_size=world)
    val_batches = task.eval_batches(datasets["val"], cfg.eval_batch_size, cfg=cfg, device=device, rank=rank,
                                    world_size=world)
    aug_gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(cfg.seed + 1 + 1000 * rank)
    augment = task.augment(cfg, num_classes, mean, std, aug_gen).to(device)
    eval_pre = task.eval_preprocess(cfg, mean, std).to(device).eval()
    optimizer, scheduler, scaler, ema, train_model = _optimisation(cfg, model, device, dist_info, steps_per_epoch)
    return RunState(
        cfg=cfg, task=task, device=device, dist=dist_info, run_dir=run_dir, log=Logger(enabled=dist_info.is_main), notes=notes,
        datasets=datasets, test_split=test_split, classes=classes, num_classes=num_classes,
        channels=channels, mean=mean, std=std, model=model, train_model=train_model, ema=ema, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, train_batches=train_batches, steps_per_epoch=steps_per_epoch,
        val_batches=val_batches, augment=augment, eval_pre=eval_pre, generators={"augment": aug_gen},
        best={task.metric: -1.0, "epoch": -1, "source": None},
    )


def _resume(st: RunState, state: dict[str, Any]) -> None:
    """Weights, optimiser, schedule, EMA, scaler, random streams and counters from the checkpoint."""
    cfg = st.cfg
    st.model.load_state_dict(state["model"])
    st.optimizer.load_state_dict(state["optimizer"])
    st.scheduler.load_state_dict(state["scheduler"])
    if cfg.optim.lr != state["config"]["optim"]["lr"]:
        # A resume with a new lr (e.g. after divergence) rescales the schedule's base lr.
        for group in st.optimizer.param_groups:
            group["initial_lr"] = cfg.optim.lr
        st.scheduler.base_lrs = [cfg.optim.lr for _ in st.scheduler.base_lrs]
    if st.ema is not None and state.get("ema") is not None:
        st.ema.load_state_dict(state["ema"])
    if st.scaler is not None and state.get("scaler"):
        st.scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rng_per_rank") or []
    rng = per_rank[st.dist.rank] if len(per_rank) == st.dist.world_size else state["rng"]
    restore_rng(rng, st.generators)
    st.start_epoch = int(state["epoch"]) + 1
    st.history = list(state["history"])
    st.best = dict(state["best"])
    st.partial = state.get("partial")
    where = f", step {st.partial['step']}" if st.partial else ""
    st.log(f"resuming {st.run_dir} from epoch {st.start_epoch + 1}/{cfg.epochs}{where}")


def _open_run_dir(st: RunState) -> None:
    """Claim the run directory (rank 0), write ``config.yaml``, open TensorBoard and say what runs."""
    if st.main:
        if not st.cfg.output_dir:  # claimed only now, so a run that fails before this leaves no empty directory
            st.run_dir = new_run_dir(st.cfg)
            st.cfg = dataclasses.replace(st.cfg, output_dir=str(st.run_dir))
        st.run_dir.mkdir(parents=True, exist_ok=True)
        # What ran, resolved; saved with resume=false so that the file alone re-runs it from scratch.
        save_yaml(dataclasses.replace(st.cfg, resume=False), st.run_dir / "config.yaml")
        for stale in st.ckpt_path.parent.glob(f".{st.ckpt_path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a process killed mid-write; last.pt itself is intact
        st.tb = TensorBoard(st.run_dir / "tb", purge_step=st.start_epoch if st.start_epoch else None)
    cfg, log = st.cfg, st.log
    n_params = sum(p.numel() for p in st.model.parameters())
    ranks = f" x {st.dist.world_size} processes" if st.dist.enabled else ""
    for note in st.notes:
        log(note)
    test_txt = "test" if st.test_split == "test" else "test (= val)"
    log(f"{cfg.model.name}: {n_params:,} params | {cfg.data.name}: {len(st.datasets['train'])} train / "
        f"{len(st.datasets['val'])} val / {len(st.datasets['test'])} {test_txt} | {st.device}{ranks} | "
        f"run dir {st.run_dir}")
    log(_settings_line(cfg, st.task, st.steps_per_epoch, st.mean, st.std))
    log(f"interrupted? continue with: {resume_command(st.run_dir)}")


# -------------------------------------------------------------------------------------- epoch loop
def _epoch_loop(st: RunState, stop: StopRequest) -> None:
    cfg = st.cfg
    st.epoch = st.start_epoch
    st.train_time = sum(r.get("epoch_s", 0.0) for r in st.history)
    for epoch in range(st.start_epoch, cfg.epochs):
        st.epoch = epoch
        stats, progress = _train_epoch(st, stop)
        if not stats.completed:
            _stop_mid_epoch(st, stats, progress, stop)
        if not cfg.sched.per_step:
            st.scheduler.step()
        if st.dist.enabled:
            totals = all_reduce_sum(torch.tensor([stats.loss * stats.images, float(stats.images), stats.seconds],
                                                 dtype=torch.float64))
            stats.loss, stats.images = float(totals[0] / totals[1]), int(totals[1])
            stats.seconds = float(totals[2]) / st.dist.world_size
        row, val, ema_val = _validate(st, stats)
        rng_all = _keep_best(st, val, ema_val)
        last_epoch = epoch + 1 == cfg.epochs
        if st.main:
            if (cfg.save_every and (epoch + 1) % cfg.save_every == 0) or last_epoch or stop():
                st.save_checkpoint(epoch, rng_all)
            write_metrics_csv(st.history, st.run_dir / "metrics.csv", st.task.fields)
            if st.tb is not None:
                st.tb.log(row)
            progress.close(
                f"epoch {epoch + 1}/{cfg.epochs} loss {stats.loss:.4f} {st.task.epoch_text(val, ema_val)} "
                f"lr {stats.lr:.2e} {stats.images_per_s:,.0f} img/s {stats.seconds:.1f}s "
                f"(ETA {format_duration((cfg.epochs - epoch - 1) * st.train_time / len(st.history))})"
            )
        barrier()
        if stop() and not last_epoch:
            raise TrainingInterrupted(
                f"stopped by signal {stop.signal} after epoch {epoch + 1}; checkpoint saved: continue with "
                f"`mobilenets train output_dir={st.run_dir} resume=true`")


def _train_epoch(st: RunState, stop: StopRequest) -> tuple[EpochStats, Progress]:
    """Train ``st.epoch``, from the step a mid-epoch checkpoint stopped at when resuming into it."""
    cfg, epoch = st.cfg, st.epoch
    if hasattr(st.train_batches, "set_epoch"):
        st.train_batches.set_epoch(epoch)
    remaining = (cfg.epochs - epoch - 1) * (st.train_time / max(len(st.history), 1)) if st.history else 0.0
    progress = Progress(st.steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", quiet=cfg.quiet or not st.main,
                        remaining_after=remaining)
    first_step, carried = 0, (0.0, 0, 0.0)
    if st.partial is not None and st.partial["epoch"] == epoch:
        first_step = int(st.partial["step"])
        carried = (float(st.partial["loss_sum"]), int(st.partial["images"]), float(st.partial["seconds"]))
    batches = itertools.islice(device_batches(st.train_batches, st.device), first_step, None)
    stats = train_one_epoch(
        st.train_model, batches, st.augment, st.optimizer, st.scheduler if cfg.sched.per_step else None,
        steps=st.steps_per_epoch, ema=st.ema, scaler=st.scaler, amp=cfg.amp, channels_last=cfg.channels_last,
        clip_grad=cfg.optim.clip_grad, accum_steps=cfg.optim.grad_accum_steps, progress=progress,
        sync_every=1 if st.device.type == "cpu" else 25, on_nonfinite=functools.partial(_diverged, st),
        start_step=first_step, carried=carried, loss_fn=st.task.loss,
        # Under DDP every rank must stop at the same step: signals are honoured at epoch ends there.
        should_stop=None if st.dist.enabled else stop,
    )
    return stats, progress


def _diverged(st: RunState, step: int, loss: float, images: torch.Tensor | None, opt: torch.optim.Optimizer) -> None:
    """Write ``divergence.json`` and stop: the loss is NaN or infinite."""
    dump = {"epoch": st.epoch, "step": step, "loss": loss, "lr": opt.param_groups[0]["lr"], "rank": st.dist.rank}
    if images is not None:
        x = images.float()
        dump["batch"] = {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}
    st.run_dir.mkdir(parents=True, exist_ok=True)
    (st.run_dir / "divergence.json").write_text(json.dumps(dump, indent=2))
    raise TrainingDiverged(
        f"loss became {loss} at epoch {st.epoch} step {step} (lr {dump['lr']:.3g}); diagnostics in "
        f"{st.run_dir / 'divergence.json'}; the last good checkpoint is kept: continue with "
        f"`mobilenets train output_dir={st.run_dir} resume=true optim.lr=<lower>`"
    )


def _stop_mid_epoch(st: RunState, stats: EpochStats, progress: Progress, stop: StopRequest) -> None:
    """A signal stopped the epoch: checkpoint the exact state (with where the epoch stopped) and raise."""
    epoch = st.epoch
    if st.main:
        partial = {"epoch": epoch, "step": stats.next_step, "loss_sum": stats.loss_sum, "images": stats.images,
                   "seconds": stats.seconds}
        st.save_checkpoint(epoch - 1, all_gather_object(capture_rng(st.generators)), partial=partial)
        progress.close(f"stopped by signal {stop.signal} at epoch {epoch + 1} step {stats.next_step}")
    raise TrainingInterrupted(
        f"stopped by signal {stop.signal}; checkpoint saved at epoch {epoch + 1} step {stats.next_step}: "
        f"continue with `mobilenets train output_dir={st.run_dir} resume=true`")


def _validate(st: RunState, stats: EpochStats) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """Validation of the raw (and EMA) weights; the epoch's metrics row, appended to the history."""
    eval_kw = {"cfg": st.cfg, "dataset": st.datasets["val"], "num_classes": st.num_classes,
               "distributed": st.dist.enabled}
    if st.dist.enabled:  # every rank evaluates the statistics rank 0 saves
        broadcast_buffers(st.model)
        if st.ema is not None:
            broadcast_buffers(st.ema.module)
    val = st.task.evaluate(st.model, device_batches(st.val_batches, st.device), st.eval_pre, **eval_kw)
    ema_val = (st.task.evaluate(st.ema.module, device_batches(st.val_batches, st.device), st.eval_pre, **eval_kw)
               if st.ema is not None else None)
    st.train_time += stats.seconds
    row = {"epoch": st.epoch + 1, "lr": stats.lr, "train_loss": stats.loss, **st.task.row(val, ema_val),
           "images_per_s": stats.images_per_s, "epoch_s": stats.seconds}
    st.history.append(row)
    return row, val, ema_val


def _keep_best(st: RunState, val: dict[str, Any], ema_val: dict[str, Any] | None) -> list[Any]:
    """Save the weights when they are the best so far; returns every rank's random state (for the checkpoint)."""
    from ..weights import save_pretrained

    # Best by the task's validation metric (top-1 / mAP; never test), raw or EMA weights, whichever is better.
    metric = st.task.metric
    candidates = [("model", val[metric], st.model)]
    if ema_val and st.ema is not None:
        candidates.append(("ema", ema_val[metric], st.ema.module))
    source, score, module = max(candidates, key=lambda c: c[1])
    rng_all = all_gather_object(capture_rng(st.generators))
    if score > st.best[metric]:
        epoch = st.epoch + 1
        st.best = {metric: score, "epoch": epoch, "source": source}
        if st.main:
            save_pretrained(clean_copy(module, st.model), st.run_dir, class_names=st.classes or None,
                            extra={"dataset": st.cfg.data.name, "epoch": epoch, f"val_{metric}": score,
                                   "weights_source": source})
    return rng_all


# ------------------------------------------------------------------------------------------ finish
def _finish(st: RunState, t_start: float) -> dict[str, Any]:
    """Final test of the best weights, reloaded from the run directory as a user would; the summary."""
    from ..cost import profile
    from ..weights import from_pretrained
    from .plots import plot_training_curves

    cfg, device, task = st.cfg, st.device, st.task
    test_src = task.eval_batches(st.datasets["test"], cfg.eval_batch_size, cfg=cfg, device=device)
    best_model = from_pretrained(st.run_dir).to(device)
    if cfg.channels_last:
        best_model.to(memory_format=torch.channels_last)
    test = task.evaluate(best_model, device_batches(test_src, device), st.eval_pre, cfg=cfg,
                         dataset=st.datasets["test"], num_classes=st.num_classes)
    prof = profile(best_model.cpu().float(), task.profile_size(best_model, cfg, st.channels))
    best, history = st.best, st.history
    summary = {
        "model": cfg.model.name, "dataset": cfg.data.name, "task": task.name, "params": prof.params,
        "macs": prof.macs, "epochs": cfg.epochs, "best_epoch": best["epoch"], "best_weights": best["source"],
        **task.summary(best[task.metric], test), "train_time_s": st.train_time,
        "images_per_s": sum(r["images_per_s"] for r in history) / max(len(history), 1),
        "wall_time_s": time.perf_counter() - t_start, "device": str(device), "torch": torch.__version__,
        "world_size": st.dist.world_size, "run_dir": str(st.run_dir), "test_split": st.test_split,
    }
    (st.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    try:
        plot_training_curves(st.run_dir / "metrics.csv", st.run_dir, metric=task.metric)
    except Exception as exc:  # plots are a convenience; never fail a finished run over them
        st.log(f"warning: could not draw plots ({exc})")
    return summary


def _settings_line(cfg: TrainConfig, task: Task, steps_per_epoch: int, mean: Any, std: Any) -> str:
    """The resolved values that decide what a run learns, in one line (printed at start)."""
    stats = "/".join(f"{v:.3g}" for v in mean) + " std " + "/".join(f"{v:.3g}" for v in std)
    return (f"settings: {task.name}, {cfg.data.image_size} px, {task.aug_text(cfg)}, mean {stats} | batch {cfg.batch_size}, "
            f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs | {cfg.optim.name} lr {cfg.optim.lr:g}, "
            f"{cfg.sched.name} warm-up {cfg.sched.warmup_epochs:g} | EMA {'on' if cfg.ema else 'off'}")
