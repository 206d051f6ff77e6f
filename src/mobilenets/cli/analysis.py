"""``mobilenets profile | experiment | report``: the cost of a model, experiment grids and their report.

:func:`register_profile` and :func:`register` add the parsers to the main command line's sub-parsers;
handlers raise ``ValueError`` / ``FileNotFoundError`` for bad input, which the main command line prints
as one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import RAW, add_overrides_argument, examples, override_items, parse_set, wrap_description

__all__ = ["best_backend_note", "cmd_experiment", "cmd_report", "register", "register_profile"]


# ------------------------------------------------------------------------------------------ profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from ..cost import DETECTOR_PARTS, SEGMENTER_PARTS, profile
    from ..weights import create_model

    kwargs = parse_set(override_items(args))
    if args.width_mult is not None:
        kwargs["width_mult"] = args.width_mult
    model = create_model(args.model, **kwargs)
    size = args.input_size or model.pretrained_cfg["input_size"][-1]
    # A detector's or segmenter's cost is argued by part (backbone, extra levels / head, the heads).
    task = model.pretrained_cfg.get("task")
    detector = task == "detect"
    parts = {"detect": DETECTOR_PARTS, "segment": SEGMENTER_PARTS}.get(str(task))
    result = profile(model, size, parts=parts)
    if args.json:
        data = result.to_dict()
        data["model"] = args.model
        data["kwargs"] = kwargs
        print(json.dumps(data))
    else:
        print(f"{args.model} {kwargs or ''} @ {size}x{size}")
        print(result.format_table(max_rows=None if args.all_rows else 400))
        if detector:
            print(_heads_line(result))
    return 0


def _heads_line(result: Any) -> str:
    """One line with the two prediction heads together (the "heads" of the backbone / extras / heads split)."""
    from ..tables import format_count, format_macs

    heads = [s for label, s in result.by_part().items() if label.endswith("head")]
    params, macs = sum(s.params for s in heads), sum(s.macs for s in heads)
    return (f"heads (classification + regression): {format_count(params)} params "
            f"({100 * params / max(result.params, 1):.1f}%), {format_macs(macs, digits=3)} MACs "
            f"({100 * macs / max(result.macs, 1):.1f}%)")


def register_profile(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profile`` sub-command (the first one ``mobilenets --help`` lists)."""
    p = subparsers.add_parser(
        "profile", help="parameters, MACs and per-layer cost of a model", formatter_class=RAW,
        description=wrap_description("Count parameters and multiply-accumulates analytically, layer by layer, with the V1 "
                          "paper's breakdown by layer type (a detector's also by part: backbone, extras, "
                          "classification and regression heads); trailing KEY=VALUE arguments are "
                          "create_model keywords."),
        epilog=examples("mobilenets profile mobilenet_v1 --width-mult 0.5 --input-size 160",
                        "mobilenets profile mobilenet_v3_small small_input=true num_classes=10 --input-size 32",
                        "mobilenets profile mobilenet_v3_large --json",
                        "mobilenets profile ssdlite320_mobilenet_v3_large --input-size 320"),
    )
    p.add_argument("model", help="model name (see `mobilenets list`) or a table file (.yaml/.yml/.json)")
    add_overrides_argument(p, "create_model keyword")
    p.add_argument("--input-size", type=int, default=None, help="square input size (default: the model's)")
    p.add_argument("--width-mult", type=float, default=None, help="width multiplier α (same as width_mult=...)")
    p.add_argument("--json", action="store_true", help="print one JSON object (params, macs, rows, ...)")
    p.add_argument("--all-rows", action="store_true", help="do not truncate the per-layer table")
    p.set_defaults(func=_cmd_profile)


# --------------------------------------------------------------------------------- experiment/report
def _latency_text(row: dict[str, Any]) -> str:
    """The latency column of a results line: eager, and the best backend when it is another one."""
    eager, best, backend = row.get("latency_eager_ms"), row.get("latency_best_ms"), row.get("best_backend")
    if eager is None:
        return "latency —"
    if backend in (None, "eager") or best is None:
        return f"latency {eager:.2f} ms eager"
    return f"latency {eager:.2f} ms eager / {best:.2f} ms {backend}"


def best_backend_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """A line saying which extra adds a real runtime when every best backend is a PyTorch variant."""
    from ..analysis.latency import PYTORCH_ONLY_BACKENDS, missing_runtime_extras

    if not rows or any(r.get("best_backend") not in (None, *PYTORCH_ONLY_BACKENDS) for r in rows):
        return None
    missing = missing_runtime_extras()
    if not missing:
        return None
    backend, extra = missing[0]
    others = ", ".join(f"'mobilenets[{e}]'" for e in dict.fromkeys(e for _, e in missing[1:]) if e != extra)
    also = f" ({others} add the others)" if others else ""
    return (f"note: no runtime extra is installed, so the best-backend column is PyTorch only; "
            f"pip install 'mobilenets[{extra}]' adds {backend} to it{also}, then delete the runs' latency.json "
            "to re-measure")


def _dry_run(spec: Any, exp_dir: Path, overrides: Sequence[str]) -> None:
    """List the jobs with their state and estimate the time of those still to do.

    The estimate is the ``wall_time_s`` of the first finished job (its summary.json) for each job to
    do, scaled by the epochs left for a resumable one: rough when runs differ in model or size, but
    better than nothing before committing hours of CPU.
    """
    from ..engine.progress import format_duration
    from ..study.experiment import plan_jobs

    jobs = plan_jobs(spec, exp_dir)
    per_job: float | None = None
    source = None
    for job in jobs:
        if job.finished:
            try:
                wall = json.loads((job.run_dir / "summary.json").read_text()).get("wall_time_s")
            except (OSError, ValueError):
                continue
            if isinstance(wall, (int, float)) and wall > 0:
                per_job, source = float(wall), job.run_dir
                break
    remaining = 0.0
    todo = 0
    for job in jobs:
        state = "finished" if job.finished else "resume" if job.resumable else "todo"
        print(f"{state:8s} {job.run_dir}  {' '.join(job.run.overrides)}")
        if job.finished:
            continue
        todo += 1
        remaining += _fraction_left(spec, job, overrides)
    print(f"{len(jobs) - todo}/{len(jobs)} jobs finished, {todo} to do")
    if not todo:
        return
    if per_job is None:
        print("estimate: none yet (no finished job to time; the first finished job's wall_time_s sets it)")
        return
    print(f"estimate: ~{format_duration(per_job)} per job (wall_time_s of {source}); "
          f"~{format_duration(per_job * remaining)} for the {todo} jobs to do")


def _fraction_left(spec: Any, job: Any, overrides: Sequence[str]) -> float:
    """1 for a job to start; for a resumable one, the share of its epochs not yet in metrics.csv."""
    if not job.resumable:
        return 1.0
    try:
        epochs = spec.config_for(job.run, job.seed, job.run_dir, list(overrides)).epochs
        done = max(0, len((job.run_dir / "metrics.csv").read_text().splitlines()) - 1)
    except (OSError, ValueError):
        return 1.0
    return max(0.0, 1.0 - done / max(epochs, 1))


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run or continue an experiment grid; print where its results are."""
    from ..config import env_overrides
    from ..study.experiment import load_spec, run_experiment

    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"{item!r} is not a key=value override")
    args.overrides = [*args.overrides, *env_overrides()]  # $MOBILENETS_TRAIN_OVERRIDES: every run of the grid
    spec = load_spec(args.spec)
    exp_dir = Path(args.output or Path("runs") / "experiments" / spec.name)
    if args.seeds:
        try:
            spec.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--seeds {args.seeds!r} invalid; expected comma-separated integers, e.g. 0,1,2") from None
    if args.dry_run:
        _dry_run(spec, exp_dir, args.overrides)
        return 0
    results = run_experiment(spec, exp_dir, extra_overrides=list(args.overrides))
    for row in results["summary"]:
        detect = row.get("task") == "detect"
        key = "test_map" if detect else "test_acc1"
        acc, std = row.get(key), row.get(f"{key}_std")
        digits = 3 if detect else 2
        acc_txt = "—" if acc is None else f"{acc:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
        label = "mAP" if detect else "top-1"
        print(f"{row['name']:28s} params {row['params'] / 1e6:7.3f}M  MACs {row['macs'] / 1e6:9.2f}M  {label} {acc_txt:>14s}  "
              f"{_latency_text(row)}")
    note = best_backend_note(results["summary"])
    if note:
        print(note)
    print(f"results: {exp_dir / 'results.json'} ({results['finished']}/{results['total']} jobs)")
    if results["errors"]:
        print("failed: " + "; ".join(f"{k}: {v}" for k, v in results["errors"].items()), file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report (and its Markdown twin)."""
    from ..study.report import write_report

    paths = write_report(args.dirs, args.output, model=args.model, title=args.title, markdown=not args.no_markdown)
    for p in paths:
        print(p)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``experiment`` and ``report`` sub-commands to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser(
        "experiment", help="run a grid of training runs (resumable) and collect results.json",
        formatter_class=RAW,
        description="Run every (run, seed) job of an experiment spec; finished jobs are skipped and killed ones resume\n"
        "from their checkpoint, so re-running the same command continues a grid. Trailing key=value overrides\n"
        "apply to every run (e.g. data.root=~/data).",
        epilog=examples(
            "mobilenets experiment configs/experiments/v3_digits_study.yaml --dry-run   # jobs, state, time estimate",
            "mobilenets experiment configs/experiments/v3_digits_study.yaml --seeds 0,1,2",
            "mobilenets experiment configs/experiments/v3_digits_study.yaml epochs=2 -o runs/experiments/smoke"),
    )
    p.add_argument("spec", help="experiment YAML (see configs/experiments/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="TrainConfig override for every run")
    p.add_argument("-o", "--output", default=None, help="experiment directory (default runs/experiments/<name>)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, replacing the spec's (e.g. 0,1,2)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the jobs, their state and an estimated time for those to do; train nothing")
    p.set_defaults(func=cmd_experiment)

    p = subparsers.add_parser(
        "report", help="HTML + Markdown report of experiments or runs",
        formatter_class=RAW,
        description="One static HTML file (images embedded, no scripts) plus a Markdown twin beside it. Detection runs\n"
        "get a table of params, MACs, COCO box mAP / AP50 / AP75 and latency, their curves and a test scene with\n"
        "predicted boxes drawn; segmentation runs a table of params, MACs, mIoU / pixel accuracy and latency,\n"
        "their curves and a test image with its ground truth and predicted mask.",
        epilog=examples(
            "mobilenets report runs/experiments/v3_digits_study -o report.html",
            "mobilenets report runs/digits runs/v2 --title 'digits runs' --no-markdown"),
    )
    p.add_argument("dirs", nargs="+", metavar="RUN_OR_EXPERIMENT_DIR",
                   help="experiment directories (results.json) and/or training run directories (summary.json)")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--model", default=None,
                   help="run name for the per-layer bars and architecture diagram (a detection or segmentation "
                        "run: the one whose predicted boxes / mask are drawn)")
    p.add_argument("--title", default=None, help="report title (default: from the experiment names)")
    p.add_argument("--no-markdown", action="store_true", help="skip the Markdown twin")
    p.set_defaults(func=cmd_report)
