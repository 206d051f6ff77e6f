"""``mobilenets adapt``: fit a MobileNet to a latency budget measured here, on the runtime it will ship on."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from .common import RAW, add_overrides_argument, examples, override_items, wrap_description

__all__ = ["register"]


def _cmd_adapt(args: argparse.Namespace) -> int:
    from ..adapt import AdaptOptions, adapt
    from ..analysis.lut import LUT_BACKENDS
    from ..deploy.predictor import default_threads

    if args.backend not in LUT_BACKENDS:
        from .._validate import did_you_mean

        raise ValueError(f"--backend {args.backend!r} invalid{did_you_mean(args.backend, list(LUT_BACKENDS))}; "
                         f"expected one of {', '.join(LUT_BACKENDS)}")
    overrides = list(override_items(args))
    if args.data:
        overrides.insert(0, f"data.name={args.data}")
    opts = AdaptOptions(
        budget_ms=args.budget_ms, budget_fraction=args.budget_fraction, backend=args.backend,
        threads=args.threads or default_threads(), batch=args.batch, input_size=args.input_size,
        iterations=args.steps, finetune_steps=args.finetune_steps, kernels=not args.no_kernel,
        se=not args.no_se, seed=args.seed, lut_dir=args.lut_dir, statistic=args.statistic,
    )
    print(f"mobilenets adapt: resume after a kill with: mobilenets {shlex.join(sys.argv[1:]) if sys.argv[1:] else 'adapt ...'}",
          file=sys.stderr)
    record = adapt(args.base, opts, out=args.out, config=args.config, overrides=overrides,
                   long_term=args.long_term, log=lambda m: print(m, file=sys.stderr))
    result: dict[str, Any] = record.get("result") or {}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"table {result.get('table')}  weights {result.get('weights')}  {result.get('measured_ms', float('nan')):.3f} ms "
              f"(budget {record['budget_ms']:.3f})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``adapt`` parser."""
    p = subparsers.add_parser(
        "adapt", help="fit a MobileNet to a latency budget measured on this machine (NetAdapt)", formatter_class=RAW,
        description=wrap_description(
            "NetAdapt (Yang et al. 2018): shrink a trained MobileNetV3 step by step until its latency, measured "
            "through --backend on this machine, meets the budget. Each block is timed alone once (a lookup "
            "table cached by backend, version, threads and CPU); each iteration proposes, per channel group, "
            "kernel and squeeze-excite, the simplest change that meets its latency target, keeps the "
            "highest-norm filters, fine-tunes every proposal a few steps and keeps the best on val. The result "
            "is a table file (OUT/model.yaml) any command takes as a model name, with its weights; OUT/adapt.json "
            "records every iteration. Re-running the same command resumes it. BASE is a trained run / weights "
            "directory or a model name (trained first with the run config). KEY=VALUE override the training "
            "config of the fine-tunes (and of the base when it is trained here)."),
        epilog=examples(
            "mobilenets adapt runs/digits --budget-fraction 0.5 --backend onnxruntime --out runs/adapt",
            "mobilenets adapt mobilenet_v3_small --budget-ms 0.5 --backend litert --threads 1 --out runs/adapt-litert",
            "mobilenets eval runs/adapt/finetune    # the adapted network, like any run"),
    )
    p.add_argument("base", metavar="BASE", help="trained run / weights directory, or a model name")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ms", type=float, default=None, help="latency budget in milliseconds")
    budget.add_argument("--budget-fraction", type=float, default=None,
                        help="latency budget as a fraction of BASE's measured latency (e.g. 0.5)")
    p.add_argument("--backend", default="onnxruntime", help="runtime the latency is measured on (default: onnxruntime)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--batch", type=int, default=1, help="batch size the latency is measured at (default: 1)")
    p.add_argument("--input-size", type=int, default=32, help="square input side (default: 32, the digits')")
    p.add_argument("--data", default=None, help="dataset of the fine-tunes (default: BASE's run, else digits)")
    p.add_argument("--config", default=None, help="training config YAML (default: BASE's config.yaml, else the main job's)")
    p.add_argument("--steps", type=int, default=6, help="NetAdapt iterations that reach the budget (default: 6)")
    p.add_argument("--finetune-steps", type=int, default=30, help="short-term fine-tune steps per proposal (default: 30)")
    p.add_argument("--long-term", choices=("finetune", "retrain", "none"), default="finetune",
                   help="after the last iteration: fine-tune with the run's recipe, retrain from scratch, or nothing")
    p.add_argument("--no-kernel", action="store_true", help="no 5x5 -> 3x3 kernel proposals")
    p.add_argument("--no-se", action="store_true", help="no squeeze-excite removal proposals")
    p.add_argument("--seed", type=int, default=0, help="seed of the fine-tunes (default: 0)")
    p.add_argument("--statistic", choices=("min", "median"), default="min",
                   help="per-call times to one latency: the least call (default; steady on shared machines) or the median")
    p.add_argument("--lut-dir", default=None, help="where the latency lookup tables are cached (default: the user cache)")
    p.add_argument("--out", required=True, help="output directory (re-run the command to resume it)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_overrides_argument(p, "training config override")
    p.set_defaults(func=_cmd_adapt)
