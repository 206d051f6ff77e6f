"""Experiment grids: many training runs on one dataset, resumable, aggregated into ``results.json``.

Why: the V3 CIFAR-10 study's heart is a comparison table (params, MACs, top-1, latency against ResNet-50) and an
SE / h-swish ablation; the V1 paper's heart is its width- and resolution-multiplier tables. Each of those
is a set of runs that differ in one or two settings. An experiment spec (YAML) names them once; every run
is an ordinary :func:`mobilenets.engine.train.train` job, so a grid inherits everything a single run has
(config validation, checkpoints, bit-identical resume, summary.json).

Spec format (every key optional except ``runs`` or ``grids``)::

    name: v3_digits_study
    base: ../digits.yaml              # a TrainConfig recipe, relative to this file
    overrides: [epochs=10]            # applied to every run (list of key=value, or a mapping)
    seeds: [0, 1, 2]                  # every run is repeated once per seed; mean ± std in the report
    latency: {runs: 30, warmup: 5, best_backend: true}
    runs:
      v3_small: [model.name=mobilenet_v3_small]
      v3_small_relu: {overrides: {model.kwargs.use_hswish: false}}
    grids:                            # cartesian products, named by a template
      - name: "v1_a{width_mult}"
        overrides: [model.name=mobilenet_v1]
        axes: {model.kwargs.width_mult: [1.0, 0.5, 0.25]}

Layout: ``<exp_dir>/runs/<run>/seed<k>/`` is the run directory of one training job. A job is *finished*
when its ``summary.json`` exists (train writes it last) and is then skipped; a job with
``checkpoints/last.pt`` but no summary was killed and is resumed from its checkpoint. ``results.json`` and
``results.csv`` are rewritten atomically after every job, so a killed grid loses at most the job in flight.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, TrainConfig, load_config
from ..fileio import atomic_write_bytes

__all__ = [
    "ExperimentSpec",
    "LatencySpec",
    "RunSpec",
    "aggregate",
    "load_results",
    "load_spec",
    "plan_jobs",
    "run_experiment",
    "run_record",
    "write_results",
]

RESULT_FIELDS = (
    "name", "seed", "model", "kwargs", "image_size", "dataset", "params", "macs", "test_acc1", "test_acc5",
    "best_val_acc1", "epochs", "train_time_s", "wall_time_s", "latency_eager_ms", "latency_best_ms",
    "best_backend", "run_dir",
)
_RESERVED = ("output_dir", "resume", "seed")


@dataclass
class RunSpec:
    """One named configuration of the grid: overrides on top of the experiment's base config."""

    name: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class LatencySpec:
    """How each finished run's batch-1 latency is measured (see :mod:`mobilenets.analysis.latency`)."""

    runs: int = 30
    warmup: int = 5
    best_backend: bool = True


@dataclass
class ExperimentSpec:
    """A grid of runs on one dataset; loaded from YAML by :func:`load_spec`."""

    name: str
    runs: list[RunSpec]
    base: str | None = None
    overrides: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    latency: LatencySpec = field(default_factory=LatencySpec)
    source: str | None = None

    def config_for(self, run: RunSpec, seed: int, run_dir: Path | str, extra: Sequence[str] = ()) -> TrainConfig:
        """The validated TrainConfig of one job (base recipe, experiment overrides, run overrides, seed)."""
        items = [*self.overrides, *run.overrides, *extra, f"seed={seed}", f"output_dir={run_dir}"]
        return load_config(TrainConfig, self.base, items)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (recorded in results.json so a report knows what was asked for)."""
        return asdict(self)


# ------------------------------------------------------------------------------------------- loading
def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def _override_list(value: Any, where: str) -> list[str]:
    """Overrides as ``key=value`` strings, from a list of strings or a ``{key: value}`` mapping."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        items = [f"{k}={_format_value(v)}" for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        raise ConfigError(f"got {value!r}, expected a list of key=value strings or a mapping", key=where)
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value", key=where)
        key = item.split("=", 1)[0].strip()
        if key in _RESERVED:
            raise ConfigError(f"{key!r} is set by the experiment runner and cannot be overridden", key=where)
    return items


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _expand_grid(grid: Mapping[str, Any], where: str) -> list[RunSpec]:
    unknown = set(grid) - {"name", "overrides", "axes"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}; expected name, overrides, axes", key=where)
    axes = grid.get("axes") or {}
    if not isinstance(axes, Mapping) or not axes or any(not isinstance(v, list) or not v for v in axes.values()):
        raise ConfigError("axes must map config keys to non-empty lists of values", key=f"{where}.axes")
    template = str(grid.get("name") or "_".join(f"{_short(k)}{{{_short(k)}}}" for k in axes))
    base = _override_list(grid.get("overrides"), f"{where}.overrides")
    runs = []
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        values = {_short(k): _format_value(v) for k, v in zip(keys, combo)}
        try:
            name = template.format(**values)
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"name template {template!r} refers to {exc}, not an axis", key=f"{where}.name") from None
        runs.append(RunSpec(name, [*base, *(f"{k}={_format_value(v)}" for k, v in zip(keys, combo))]))
    return runs


def _check_name(name: str, where: str) -> str:
    if not name or any(c in name for c in "/\\ ") or name in (".", ".."):
        raise ConfigError(f"run name {name!r} must be non-empty without slashes or spaces", key=where)
    return name


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment spec; every job's TrainConfig is checked before any training."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment spec {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping")
    allowed = {"name", "base", "overrides", "seeds", "latency", "runs", "grids"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)} in {path}; expected {sorted(allowed)}")
    runs: list[RunSpec] = []
    raw_runs = data.get("runs") or {}
    if isinstance(raw_runs, Mapping):
        for name, value in raw_runs.items():
            where = f"runs.{name}"
            if isinstance(value, Mapping) and set(value) <= {"overrides"}:
                value = value.get("overrides")
            runs.append(RunSpec(_check_name(str(name), where), _override_list(value, where)))
    else:
        raise ConfigError("runs must map run names to override lists", key="runs")
    for i, grid in enumerate(data.get("grids") or []):
        if not isinstance(grid, Mapping):
            raise ConfigError("each grid must be a mapping", key=f"grids[{i}]")
        runs.extend(_expand_grid(grid, f"grids[{i}]"))
    if not runs:
        raise ConfigError(f"{path} defines no runs (give 'runs' and/or 'grids')")
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"duplicate run names {dupes}", key="runs")
    for r in runs:
        _check_name(r.name, f"runs.{r.name}")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    if not isinstance(seeds, list) or not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"got {seeds!r}, expected a non-empty list of seeds >= 0 (or a count)", key="seeds")
    lat = data.get("latency") or {}
    if not isinstance(lat, Mapping) or set(lat) - {"runs", "warmup", "best_backend"}:
        raise ConfigError("latency takes runs, warmup, best_backend", key="latency")
    base = data.get("base")
    if base is not None:
        base_path = Path(str(base)).expanduser()
        base = str(base_path if base_path.is_absolute() else (path.parent / base_path).resolve())
    spec = ExperimentSpec(
        name=str(data.get("name") or path.stem), runs=runs, base=base,
        overrides=_override_list(data.get("overrides"), "overrides"), seeds=list(dict.fromkeys(seeds)),
        latency=LatencySpec(**lat), source=str(path.resolve()),
    )
    for r in runs:  # fail before any work, naming the run whose config is wrong
        try:
            spec.config_for(r, spec.seeds[0], "validate-only")
        except ConfigError as exc:
            raise ConfigError(f"run {r.name!r}: {exc}") from None
    return spec


# ------------------------------------------------------------------------------------------- running
@dataclass
class Job:
    """One (run, seed) pair and its run directory."""

    run: RunSpec
    seed: int
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "summary.json").is_file()

    @property
    def resumable(self) -> bool:
        return not self.finished and (self.run_dir / "checkpoints" / "last.pt").is_file()


def plan_jobs(spec: ExperimentSpec, exp_dir: str | Path) -> list[Job]:
    """All jobs in run order (seed-major, so a first complete table exists after the first seed)."""
    exp_dir = Path(exp_dir)
    return [Job(r, s, exp_dir / "runs" / r.name / f"seed{s}") for s in spec.seeds for r in spec.runs]


def _measure(run_dir: Path, lat: LatencySpec) -> dict[str, Any]:
    """Latency of a finished run's best weights, cached in ``latency.json`` next to its summary."""
    cache = run_dir / "latency.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from ..analysis.latency import measure_latency
    from ..weights import from_pretrained

    model = from_pretrained(run_dir)
    shape = tuple(int(v) for v in model.pretrained_cfg["input_size"])
    result = measure_latency(model, shape, runs=lat.runs, warmup=lat.warmup, best_backend=lat.best_backend).to_dict()
    result["input_size"] = list(shape)
    atomic_write_bytes(cache, json.dumps(result, indent=2).encode())
    return result


def run_record(run_dir: Path, name: str, seed: int, lat: LatencySpec | None = None, root: Path | None = None) -> dict[str, Any]:
    """The results row of one finished run directory (summary + config + latency)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    latency = _measure(run_dir, lat or LatencySpec())
    rel = os.path.relpath(run_dir, root) if root else str(run_dir)
    return {
        "name": name, "seed": seed, "model": summary.get("model"), "kwargs": cfg.get("model", {}).get("kwargs", {}),
        "image_size": cfg.get("data", {}).get("image_size"), "dataset": summary.get("dataset"),
        "params": summary.get("params"), "macs": summary.get("macs"), "test_acc1": summary.get("test_acc1"),
        "test_acc5": summary.get("test_acc5"), "best_val_acc1": summary.get("best_val_acc1"),
        "epochs": summary.get("epochs"), "train_time_s": summary.get("train_time_s"),
        "wall_time_s": summary.get("wall_time_s"), "latency_eager_ms": latency["eager_ms"],
        "latency_best_ms": latency["best_ms"], "best_backend": latency["best_backend"],
        "latency_note": latency.get("note", ""), "run_dir": rel,
        **_task_fields(summary),
    }


#: The ``summary.json`` figures of a detection run (``DetectionTask.summary``) a results row carries.
DETECTION_FIELDS = ("test_map", "test_map50", "test_map75", "test_map_small", "test_map_medium", "test_map_large",
                    "best_val_map")
#: The ``summary.json`` figures of a segmentation run (``SegmentationTask.summary``) a results row carries
#: (its per-class IoU too, under ``test_per_class_iou``).
SEGMENTATION_FIELDS = ("test_miou", "test_pixel_acc", "test_mean_acc", "test_loss", "best_val_miou")
#: Task (a summary's ``task``) -> the figures its rows carry; a classifier's rows carry none beyond the common ones.
TASK_FIELDS = {"detect": DETECTION_FIELDS, "segment": SEGMENTATION_FIELDS}


def _task_fields(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``task`` and the task's own figures (COCO box mAP of a detector, mIoU and per-class IoU of a segmenter);
    nothing for a classifier (its rows stay as they were)."""
    task = summary.get("task")
    if task not in TASK_FIELDS:
        return {}
    fields: dict[str, Any] = {"task": task, **{k: summary.get(k) for k in TASK_FIELDS[task]}}
    if task == "segment":
        fields["test_per_class_iou"] = dict(summary.get("test_per_class_iou") or {})
    return fields


def _per_class_mean(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Mean IoU of each class over seeds; ``None`` for a class no seed's test split scored (absent everywhere)."""
    names = list(dict.fromkeys(k for r in rows for k in (r.get("test_per_class_iou") or {})))
    return {k: _mean_std((r.get("test_per_class_iou") or {}).get(k) for r in rows)[0] for k in names}


def _mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def aggregate(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run name: constants (model, params, MACs) and mean / std over seeds of the measurements."""
    order: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        order.setdefault(str(r["name"]), []).append(r)
    out = []
    for rows in order.values():
        first = rows[0]
        row: dict[str, Any] = {k: first.get(k) for k in ("name", "model", "kwargs", "image_size", "dataset",
                                                           "params", "macs", "epochs", "best_backend")}
        row["seeds"] = [r["seed"] for r in rows]
        row["n"] = len(rows)
        row["run_dirs"] = [r["run_dir"] for r in rows]
        for key in ("test_acc1", "test_acc5", "best_val_acc1", "train_time_s", "latency_eager_ms", "latency_best_ms"):
            row[key], row[f"{key}_std"] = _mean_std(r.get(key) for r in rows)
        task = first.get("task")
        if task in TASK_FIELDS:
            row["task"] = task
            for key in TASK_FIELDS[task]:
                row[key], row[f"{key}_std"] = _mean_std(r.get(key) for r in rows)
            if task == "segment":
                row["test_per_class_iou"] = _per_class_mean(rows)
        out.append(row)
    return out


def _environment() -> dict[str, Any]:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads()}


def write_results(exp_dir: Path, spec: ExperimentSpec | None, records: list[dict[str, Any]],
                  errors: Mapping[str, str] | None = None, total: int | None = None) -> Path:
    """Write ``results.json`` and ``results.csv`` atomically; returns the JSON path."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "experiment": spec.name if spec else exp_dir.name,
        "spec": spec.to_dict() if spec else None,
        "environment": _environment(),
        "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": len(records), "total": total if total is not None else len(records),
        "errors": dict(errors or {}),
        "runs": records,
        "summary": aggregate(records),
    }
    atomic_write_bytes(exp_dir / "results.json", json.dumps(data, indent=2).encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RESULT_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "kwargs": json.dumps(r.get("kwargs", {}), sort_keys=True)})
    atomic_write_bytes(exp_dir / "results.csv", buf.getvalue().encode())
    return exp_dir / "results.json"


def run_experiment(
    spec: ExperimentSpec, exp_dir: str | Path, *, extra_overrides: Sequence[str] = (),
    log: Callable[[str], None] | None = None, keep_going: bool = True,
) -> dict[str, Any]:
    """Run (or continue) every job of ``spec`` under ``exp_dir``; returns the results.json content.

    Finished jobs are skipped and killed ones resumed, so calling this again after an interruption
    continues where it stopped. A job that raises is recorded under ``errors`` and, with ``keep_going``,
    the grid carries on; it is retried on the next call because it left no ``summary.json``.
    """
    from ..engine.train import train

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "experiment.yaml").write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    jobs = plan_jobs(spec, exp_dir)
    records: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for i, job in enumerate(jobs, 1):
        tag = f"[{i}/{len(jobs)}] {job.run.name} seed {job.seed}"
        if job.finished:
            log(f"{tag}: finished earlier, skipped")
        else:
            resume = job.resumable
            log(f"{tag}: {'resuming from checkpoint' if resume else 'training'} -> {job.run_dir}")
            cfg = spec.config_for(job.run, job.seed, job.run_dir, extra_overrides)
            cfg.resume = resume
            try:
                train(cfg)
            except Exception as exc:
                if not keep_going:
                    raise
                errors[f"{job.run.name}/seed{job.seed}"] = f"{type(exc).__name__}: {exc}"
                log(f"{tag}: FAILED ({type(exc).__name__}: {exc})\n{traceback.format_exc(limit=3)}")
                write_results(exp_dir, spec, records, errors, len(jobs))
                continue
        records.append(run_record(job.run_dir, job.run.name, job.seed, spec.latency, exp_dir))
        write_results(exp_dir, spec, records, errors, len(jobs))
    path = write_results(exp_dir, spec, records, errors, len(jobs))
    return json.loads(path.read_text())


def load_results(path: str | Path) -> dict[str, Any]:
    """Results of an experiment directory, or a one-run experiment built from a single run directory."""
    path = Path(path)
    if (path / "results.json").is_file():
        data = json.loads((path / "results.json").read_text())
        data["root"] = str(path.resolve())
        return data
    if (path / "summary.json").is_file():
        path = path.resolve()
        rec = run_record(path, path.name if not path.name.startswith("seed") else path.parent.name, 0)
        return {"experiment": path.name, "spec": None, "environment": _environment(), "runs": [rec],
                "summary": aggregate([rec]), "errors": {}, "finished": 1, "total": 1, "root": str(path)}
    raise FileNotFoundError(f"{path} is neither an experiment directory (results.json) nor a run directory (summary.json)")
