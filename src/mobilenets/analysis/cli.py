"""``mobilenets experiment`` and ``mobilenets report``: thin command-line wrappers.

``register(subparsers)`` adds both sub-commands to the main parser (the main CLI calls it); handlers raise
``ValueError`` / ``FileNotFoundError`` for bad input, which the main CLI prints as one line. The module also
runs on its own (``python -m mobilenets.analysis.cli experiment ...``) so it is usable before being wired in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cmd_experiment", "cmd_report", "main", "register"]


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run or continue an experiment grid; print where its results are."""
    from .experiment import load_spec, plan_jobs, run_experiment

    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"{item!r} is not a key=value override")
    spec = load_spec(args.spec)
    exp_dir = Path(args.output or Path("runs") / "experiments" / spec.name)
    if args.seeds:
        spec.seeds = [int(s) for s in args.seeds.split(",")]
    if args.dry_run:
        for job in plan_jobs(spec, exp_dir):
            state = "finished" if job.finished else "resume" if job.resumable else "todo"
            print(f"{state:8s} {job.run_dir}  {' '.join(job.run.overrides)}")
        return 0
    results = run_experiment(spec, exp_dir, extra_overrides=list(args.overrides))
    for row in results["summary"]:
        acc = row.get("test_acc1")
        std = row.get("test_acc1_std")
        acc_txt = "—" if acc is None else f"{acc:.2f}" + (f" ± {std:.2f}" if std is not None else "")
        print(f"{row['name']:28s} params {row['params'] / 1e6:7.3f}M  MACs {row['macs'] / 1e6:9.2f}M  top-1 {acc_txt:>14s}  "
              f"latency {row['latency_eager_ms']:.2f} ms eager / {row['latency_best_ms']:.2f} ms {row['best_backend']}")
    print(f"results: {exp_dir / 'results.json'} ({results['finished']}/{results['total']} jobs)")
    if results["errors"]:
        print("failed: " + "; ".join(f"{k}: {v}" for k, v in results["errors"].items()), file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report (and its Markdown twin)."""
    from .report import write_report

    paths = write_report(args.dirs, args.output, model=args.model, title=args.title, markdown=not args.no_markdown)
    for p in paths:
        print(p)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``experiment`` and ``report`` sub-commands to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser(
        "experiment", help="run a grid of training runs (resumable) and collect results.json",
        description="Run every (run, seed) job of an experiment spec; finished jobs are skipped and killed ones resume "
        "from their checkpoint, so re-running the same command continues a grid. Trailing key=value overrides apply "
        "to every run (e.g. data.root=~/data).",
    )
    p.add_argument("spec", help="experiment YAML (see configs/experiments/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="TrainConfig override for every run")
    p.add_argument("-o", "--output", default=None, help="experiment directory (default runs/experiments/<name>)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, replacing the spec's (e.g. 0,1,2)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their state, train nothing")
    p.set_defaults(func=cmd_experiment)

    p = subparsers.add_parser(
        "report", help="HTML + Markdown report of experiments or runs",
        description="One static HTML file (images embedded, no scripts) plus a Markdown twin beside it.",
    )
    p.add_argument("dirs", nargs="+", metavar="RUN_OR_EXPERIMENT_DIR")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--model", default=None, help="run name for the per-layer bars and architecture diagram")
    p.add_argument("--title", default=None)
    p.add_argument("--no-markdown", action="store_true", help="skip the Markdown twin")
    p.set_defaults(func=cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point with the same error handling as the main CLI."""
    parser = argparse.ArgumentParser(prog="mobilenets")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mobilenets {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
