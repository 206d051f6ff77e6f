"""The ``mobilenets`` command line: a thin layer over the importable API.

Each sub-command parses its arguments and calls one library function; nothing here is needed to use
the library from Python. Errors that come from bad input (``ValueError``, ``FileNotFoundError``) are
printed as one line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["main", "parse_set"]


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values parsed as YAML scalars (``true``, ``0.5``, ``[1, 2]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r} invalid; expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


# ------------------------------------------------------------------------------------------ profile
def _cmd_profile(args: argparse.Namespace) -> int:
    from .analysis.profile import profile
    from .models import create_model

    kwargs = parse_set(args.set)
    if args.width_mult is not None:
        kwargs["width_mult"] = args.width_mult
    model = create_model(args.model, **kwargs)
    size = args.input_size or model.pretrained_cfg["input_size"][-1]
    result = profile(model, size)
    if args.json:
        data = result.to_dict()
        data["model"] = args.model
        data["kwargs"] = kwargs
        print(json.dumps(data))
    else:
        print(f"{args.model} {kwargs or ''} @ {size}x{size}")
        print(result.format_table(max_rows=None if args.all_rows else 400))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .models import get_model_kwargs, list_models

    for name in list_models(args.pattern):
        if args.verbose:
            opts = ", ".join(f"{k}={v!r}" for k, v in get_model_kwargs(name).items())
            print(f"{name}: {opts}")
        else:
            print(name)
    return 0


# -------------------------------------------------------------------------------------------- train
def _train_config(items: list[str]) -> tuple[Any, str | None]:
    """The config ``mobilenets train [CONFIG.yaml] [KEY=VALUE ...]`` means, and the YAML path if one was given.

    With ``resume=true`` the run directory's saved config.yaml is the base and only the values given now
    are applied on top (:func:`mobilenets.engine.resume.load_resume_config`).
    """
    from .config import TrainConfig, apply_overrides, load_config
    from .engine.resume import load_resume_config

    items = list(items)
    path = None
    if items and "=" not in items[0]:
        path = items.pop(0)
        if not path.endswith((".yaml", ".yml")):
            raise ValueError(f"{path!r} is neither a YAML config (.yaml/.yml) nor a key=value override")
    resume = apply_overrides(TrainConfig(), [i for i in items if i.split("=", 1)[0].strip() == "resume"]).resume
    if resume:
        return load_resume_config(items, path), path
    return load_config(TrainConfig, path, items), path


def _show_config(cfg: Any) -> int:
    """Print every key with its resolved value and one line of help (``train --show-config``)."""
    from .config import describe
    from .engine.defaults import resolve_config

    resolved, notes = resolve_config(cfg)
    rows = describe(resolved, cfg)
    width = max(len(f"{k}: {yaml.safe_dump(v, default_flow_style=True).strip()}") for k, v, _ in rows)
    for key, value, help_text in rows:
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        left = f"{key}: {text}"
        print(f"{left:<{min(width, 60)}}  # {help_text}" if help_text else left)
    for note in notes:
        print(f"# {note}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine.train import TrainingDiverged, TrainingInterrupted, train

    cfg, _ = _train_config(args.items)
    if args.show_config:
        return _show_config(cfg)
    try:
        summary = train(cfg)
    except TrainingInterrupted as exc:
        print(f"mobilenets train: {exc}", file=sys.stderr)
        return 130
    except TrainingDiverged as exc:
        print(f"mobilenets train: error: {exc}", file=sys.stderr)
        return 3
    if "test_acc1" not in summary:  # a non-zero rank of a distributed run: rank 0 reports
        return 0
    split = summary.get("test_split", "test")
    held_out = split == "test"
    first = (f"test top-1 {summary['test_acc1']:.2f}% (top-5 {summary['test_acc5']:.2f}%)" if held_out else
             f"val top-1 {summary['test_acc1']:.2f}% (top-5 {summary['test_acc5']:.2f}%; {split}: not a held-out figure)")
    print(
        f"{first} | best val top-1 "
        f"{summary['best_val_acc1']:.2f}% at epoch {summary['best_epoch']} ({summary['best_weights']} weights) | "
        f"{summary['train_time_s']:.1f}s training, {summary['wall_time_s']:.1f}s wall"
    )
    run = summary["run_dir"]
    print(f"run directory: {run}  (summary.json, metrics.csv, config.yaml, model.safetensors, checkpoints/, tb/, *.png)")
    return 0


# --------------------------------------------------------------------------------------- eval/predict
def _cmd_eval(args: argparse.Namespace) -> int:
    from .engine.evaluate import evaluate_weights

    result = evaluate_weights(
        args.weights, data=args.data, root=args.data_root, split=args.split, batch_size=args.batch_size,
        device=args.device, out_dir=args.out,
    )
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}))
        return 0
    print(f"{result['weights']} on {result['dataset']}/{result['split']} ({result['n']} images)")
    print(f"top-1 {result['acc1']:.2f}%  top-5 {result['acc5']:.2f}%  loss {result['loss']:.4f}")
    names = result["class_names"]
    for name, acc in zip(names, result["per_class_acc1"]):
        print(f"  {name:>12s}  {acc:6.2f}%")
    if result.get("confusion_png"):
        print(f"confusion matrix: {result['confusion_png']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .engine.evaluate import predict_images

    results = predict_images(args.images, args.weights, topk=args.topk, device=args.device)
    if args.json:
        print(json.dumps(results))
        return 0
    for item in results:
        preds = ", ".join(f"{p['class']} {100 * p['prob']:.1f}%" for p in item["top"])
        print(f"{item['image']}: {preds}")
    return 0


# ---------------------------------------------------------------------------------------- plumbing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenets", description="The MobileNet family: models, training, deployment.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("profile", help="parameters, MACs and per-layer cost of a model")
    p.add_argument("model", help="model name (see `mobilenets list`)")
    p.add_argument("--input-size", type=int, default=None, help="square input size (default: the model's)")
    p.add_argument("--width-mult", type=float, default=None, help="width multiplier α")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any create_model keyword, repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON object (params, macs, rows, ...)")
    p.add_argument("--all-rows", action="store_true", help="do not truncate the per-layer table")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("list", help="registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'mobilenet_v3*'")
    p.add_argument("-v", "--verbose", action="store_true", help="show each model's keywords and defaults")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "train", help="train a model (no arguments: the digits main job)",
        description="Train from a YAML recipe and/or dotted key=value overrides, e.g. "
        "`mobilenets train configs/cifar10_v3_small.yaml data.root=~/data epochs=200 optim.lr=0.1`. "
        "output_dir=PATH sets the run directory; resume=true continues the run found there.",
    )
    p.add_argument("items", nargs="*", metavar="[CONFIG.yaml] [KEY=VALUE ...]",
                   help="a YAML recipe (configs/*.yaml) and/or dotted overrides such as optim.lr=0.01")
    p.add_argument("--show-config", action="store_true",
                   help="print every key with its resolved value and help, then exit (train nothing)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate weights or an exported/quantized artifact")
    p.add_argument("weights", help="run directory, save_pretrained directory, or an artifact (.onnx, .pt, .pt2, .pte, .xml)")
    p.add_argument("--data", default=None, help="dataset name (default: the one the weights were trained on)")
    p.add_argument("--data-root", default=None, help="dataset root for cifar10/cifar100/imagefolder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="where to write confusion_<split>.png (default: the weights directory)")
    p.add_argument("--json", action="store_true", help="print one JSON object with acc1 and acc5 in percent")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="top-k classes of image files")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--weights", required=True, help="run/weights directory or an exported/quantized artifact")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)

    # Sub-commands that live beside the code they drive (each module adds its own parsers).
    from .analysis.cli import register as register_analysis
    from .convert_cli import register as register_convert
    from .deploy.cli import register as register_deploy

    register_convert(sub)
    register_deploy(sub)
    register_analysis(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input: one clear line, no traceback (the message names the value and what was expected).
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mobilenets {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
