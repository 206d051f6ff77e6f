"""``mobilenets list | train | eval | predict``: the model catalogue, training and evaluating weights.

:func:`register` adds the four parsers to the main command line's sub-parsers; each handler calls one
library function and raises ``ValueError`` / ``FileNotFoundError`` for bad input, which the main
command line prints as one line. ``train --show-config`` prints every key with its resolved value.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from .common import RAW, examples, wrap_description

__all__ = ["register"]


# ------------------------------------------------------------------------------------------- list
def _cmd_list(args: argparse.Namespace) -> int:
    from ..models import get_model_kwargs, list_models
    from ..models.registry import model_task

    if args.pretrained:
        from ..weights.registry import get_pretrained, list_pretrained

        tags = list_pretrained(args.pattern)
        if not tags and args.pattern != "*":
            raise ValueError(f"no pretrained tag matches {args.pattern!r}; `mobilenets list --pretrained` lists all")
        for tag in tags:
            entry = get_pretrained(tag)
            top1 = f", top-1 {entry.top1:.2f}%" if entry.top1 is not None else ""
            print(f"{tag}  ({entry.arch}, {entry.source}{top1})" if args.verbose else tag)
        return 0
    names = list_models(args.pattern, task=None)  # classifiers, detectors and segmenters alike
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; `mobilenets list` lists all")
    for name in names:
        if args.verbose:
            opts = ", ".join(f"{k}={v!r}" for k, v in get_model_kwargs(name).items())
            kind = {"detect": " [detector]", "segment": " [segmenter]"}.get(model_task(name), "")
            print(f"{name}{kind}: {opts}")
        else:
            print(name)
    return 0


# -------------------------------------------------------------------------------------------- train
def _train_config(items: list[str]) -> tuple[Any, str | None]:
    """The config ``mobilenets train [CONFIG.yaml] [KEY=VALUE ...]`` means, and the YAML path if one was given.

    With ``resume=true`` the run directory's saved config.yaml is the base and only the values given now
    are applied on top (:func:`mobilenets.engine.resume.load_resume_config`).
    """
    from ..config import TrainConfig, apply_overrides, env_overrides, load_config
    from ..engine.resume import load_resume_config

    items = list(items)
    path = None
    if items and "=" not in items[0]:
        path = items.pop(0)
        if not path.endswith((".yaml", ".yml")):
            raise ValueError(f"{path!r} is neither a YAML config (.yaml/.yml) nor a key=value override")
    items += env_overrides()
    resume = apply_overrides(TrainConfig(), [i for i in items if i.split("=", 1)[0].strip() == "resume"]).resume
    if resume:
        return load_resume_config(items, path), path
    return load_config(TrainConfig, path, items), path


def _show_config(cfg: Any) -> int:
    """Print every key with its resolved value and one line of help (``train --show-config``)."""
    from ..config import describe
    from ..engine.defaults import resolve_config

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


def _print_summary(summary: dict[str, Any]) -> None:
    """The two lines ``mobilenets train`` ends with: the figures, then the run directory."""
    split = summary.get("test_split", "test")
    where = "test" if split == "test" else f"val ({split}: not a held-out figure)"
    task = summary.get("task")
    if task == "detect":
        figures = (f"{where} mAP {summary['test_map']:.3f} (AP50 {summary['test_map50']:.3f}, AP75 "
                   f"{summary['test_map75']:.3f}) | best val mAP {summary['best_val_map']:.3f}")
    elif task == "segment":
        figures = (f"{where} mIoU {summary['test_miou']:.3f} (pixel acc {summary['test_pixel_acc']:.3f}) | best val "
                   f"mIoU {summary['best_val_miou']:.3f}")
    else:
        figures = (f"{where} top-1 {summary['test_acc1']:.2f}% (top-5 {summary['test_acc5']:.2f}%) | best val top-1 "
                   f"{summary['best_val_acc1']:.2f}%")
    print(f"{figures} at epoch {summary['best_epoch']} ({summary['best_weights']} weights) | "
          f"{summary['train_time_s']:.1f}s training, {summary['wall_time_s']:.1f}s wall")
    print(f"run directory: {summary['run_dir']}  (summary.json, metrics.csv, config.yaml, model.safetensors, "
          "checkpoints/, tb/, *.png)")


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine.train import TrainingDiverged, TrainingInterrupted, train

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
    if "rank" in summary:  # a non-zero rank of a distributed run: rank 0 reports
        return 0
    _print_summary(summary)
    return 0


# --------------------------------------------------------------------------------------- eval/predict
def _cmd_eval(args: argparse.Namespace) -> int:
    from ..deploy.evaluate import evaluate_weights

    result = evaluate_weights(
        args.weights, data=args.data, root=args.data_root, split=args.split, batch_size=args.batch_size,
        device=args.device, out_dir=args.out,
    )
    if result["split"] != args.split:  # e.g. "val (no test/ folder)": say it where the figure is read
        print(f"mobilenets eval: note: --split {args.split} is measured on {result['split']}, which also chose "
              "the best epoch: not a held-out figure", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "confusion"}))
        return 0
    print(f"{result['weights']} on {result['dataset']}/{result['split']} ({result['n']} images)")
    if result.get("task") == "detect":
        print(f"mAP {result['map']:.3f}  AP50 {result['map50']:.3f}  AP75 {result['map75']:.3f}  "
              f"small/medium/large {result['map_small']:.3f}/{result['map_medium']:.3f}/{result['map_large']:.3f}")
        for name, ap in result["per_class"].items():
            print(f"  {name:>12s}  " + ("   n/a" if ap is None else f"{ap:6.3f}"))
        return 0
    if result.get("task") == "segment":
        print(f"mIoU {result['miou']:.3f}  pixel acc {result['pixel_acc']:.3f}  mean class acc {result['mean_acc']:.3f}")
        for name, iou in result["per_class_iou"].items():
            print(f"  {name:>12s}  " + ("   n/a" if iou is None else f"{iou:6.3f}"))
        return 0
    print(f"top-1 {result['acc1']:.2f}%  top-5 {result['acc5']:.2f}%  loss {result['loss']:.4f}")
    names = result["class_names"]
    for name, acc in zip(names, result["per_class_acc1"]):
        print(f"  {name:>12s}  {acc:6.2f}%")
    if result.get("confusion_png"):
        print(f"confusion matrix: {result['confusion_png']}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..deploy.evaluate import predict_images

    if args.topk < 1:
        raise ValueError(f"--topk {args.topk} invalid; expected a positive integer")
    results = predict_images(args.images, args.weights, topk=args.topk, device=args.device,
                             min_score=args.min_score, out=args.out)
    if args.json:
        print(json.dumps(results))
        return 0
    for item in results:
        if "detections" in item:  # a detector
            print(f"{item['image']}: {len(item['detections'])} detections (score >= {args.min_score:g})"
                  + (f", drawn to {item['out']}" if item.get("out") else ""))
            for d in item["detections"]:
                x0, y0, x1, y1 = d["box"]
                print(f"  {d['class']:>12s} {d['score']:.3f}  [{x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}]")
            continue
        if "classes" in item:  # a segmenter
            found = ", ".join(f"{name} {100 * frac:.1f}%" for name, frac in item["classes"].items())
            print(f"{item['image']}: {found}" + (f"; overlay {item['out']}" if item.get("out") else ""))
            continue
        preds = ", ".join(f"{p['class']} {100 * p['prob']:.1f}%" for p in item["top"])
        print(f"{item['image']}: {preds}")
    return 0


# ---------------------------------------------------------------------------------------- parsers
def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list", help="registered model names (or pretrained weight tags)", formatter_class=RAW,
        description="List the registered model names, or with --pretrained the registry tags of published weights.",
        epilog=examples("mobilenets list 'mobilenet_v3*' -v", "mobilenets list --pretrained 'mobilenet_v4*'"),
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'mobilenet_v3*' (default: all)")
    p.add_argument("--pretrained", action="store_true",
                   help="list pretrained weight tags (for model.pretrained=, convert, create_model) instead")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show each model's keywords and defaults (with --pretrained: architecture, source, top-1)")
    p.set_defaults(func=_cmd_list)


def _add_train(sub: argparse._SubParsersAction) -> None:
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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate weights or an exported/quantized artifact on a dataset split", formatter_class=RAW,
        description=wrap_description("Top-1, top-5, per-class accuracy and a confusion-matrix PNG (a detector: COCO "
                          "box mAP, AP50, AP75, by size and per class). A training run "
                          "directory brings its dataset and data.root from its config.yaml, so --data and "
                          "--data-root are only needed for other data."),
        epilog=examples("mobilenets eval runs/digits", "mobilenets eval model_int8.pte --json",
                        "mobilenets eval runs/cifar10 --split val --data-root ~/data"),
    )
    p.add_argument("weights", help="run directory, save_pretrained directory, or an exported file "
                                   "(.onnx, .pt, .pt2, .pte, .xml, .tflite, .ncnn.param, .mnn)")
    p.add_argument("--data", default=None, help="dataset name (default: the one the weights were trained on)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="dataset directory for cifar10/cifar100/imagefolder (default: the run's data.root)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="which split to measure (default: test; an image folder without test/ uses val)")
    p.add_argument("--batch-size", type=int, default=256, help="images per evaluation batch (default: 256)")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto; artifacts always run on the CPU)")
    p.add_argument("--out", default=None, help="where to write confusion_<split>.png (default: the weights directory)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with acc1 and acc5 in percent (a detector: map, map50, map75, per_class)")
    p.set_defaults(func=_cmd_eval)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="top-k classes (or a detector's boxes) of image files", formatter_class=RAW,
        description="Classify image files with weights or any exported/quantized artifact, using its own "
        "preprocessing; a detector's weights print each image's boxes and draw them with --out.",
        epilog=examples("mobilenets predict docs/digit_7.png --weights runs/digits",
                        "mobilenets predict a.jpg b.jpg --weights model.onnx --topk 3 --json",
                        "mobilenets predict scene.png --weights runs/digit_scenes --out scene_boxes.png"),
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--weights", required=True, help="run/weights directory or an exported/quantized artifact")
    p.add_argument("--topk", type=int, default=5, help="how many classes to show per image (default: 5)")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto; artifacts always run on the CPU)")
    p.add_argument("--min-score", type=float, default=0.3,
                   help="detectors: show boxes scoring at least this (default: 0.3)")
    p.add_argument("--out", default=None, metavar="FILE.png",
                   help="detectors: write the image with boxes and labels drawn (several images: a directory)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list: per image its top classes with index and probability (a detector: boxes)")
    p.set_defaults(func=_cmd_predict)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``list``, ``train``, ``eval`` and ``predict`` parsers (handlers in ``func``)."""
    _add_list(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_predict(sub)
