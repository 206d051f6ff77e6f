"""``mobilenets export | quantize | bench``: the deployment sub-commands.

:func:`register` adds the three parsers to the main command line's sub-parsers; each handler calls one
library function and raises ``ValueError`` / ``FileNotFoundError`` for bad input, which the main
command line prints as one line. The export formats, quantization targets and benchmark backends
offered here (choices and ``--help`` tables) come from the same tables the library uses.

``export`` and ``quantize`` print their stages on stderr (loading, calibrating n/N, exporting, lowering,
verifying, evaluating n/N): the slowest take a minute and a half in compilers that print nothing.
stdout holds only the result, so ``--json`` output stays one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable

from ..engine.stages import StageLog
from .common import RAW, add_overrides_argument, examples, override_items, parse_set, wrap_description

__all__ = ["register"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers, e.g. 1,32")
    return values


# ------------------------------------------------------------------------------------------ handlers
def _name_in(keys: Iterable[str], what: str) -> Callable[[str], str]:
    """argparse ``type`` for a format or target: an alias resolved (``tflite`` -> ``litert``), an unknown
    name refused with the closest name, aliases included."""
    from ..deploy.formats import resolve_format

    def parse(name: str) -> str:
        try:
            return resolve_format(name, keys, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _int8_target(fmt: str) -> str:
    """The quantize target that writes ``fmt`` (``export --int8``), or a one-line error naming those that do."""
    from ..deploy.quantize import QUANT_TARGETS

    for target in QUANT_TARGETS.values():
        if target.format == fmt:
            return target.key
    offered = ", ".join(dict.fromkeys(t.format for t in QUANT_TARGETS.values()))
    raise ValueError(f"--int8 is not available for --format {fmt}; formats with an int8 file: {offered}")


def _cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.export import export_model

    if args.int8:
        # The same job as `quantize --target T`: one way to make an int8 file, reachable from either command.
        target = _int8_target(args.format)
        given = [flag for flag, on in (("--batch", args.batch != "1"), ("--input-size", args.input_size is not None),
                                       ("--precision", args.precision != "fp32"), ("--no-verify", args.no_verify),
                                       ("--threads", args.threads is not None)) if on]
        if given:
            raise ValueError(f"{', '.join(given)} cannot be combined with --int8; `mobilenets quantize {args.weights} "
                             f"--target {target} --out {args.out}` writes the int8 file with its own options")
        from ..deploy.quantize_run import quantize_weights

        result = quantize_weights(args.weights, target=target, out=args.out, channels_last_io=args.channels_last_io,
                                  log=StageLog())  # quantize's defaults: PTQ, 8 x 32 calibration images, test split
    else:
        result = export_model(args.weights, args.format, args.out, batch=args.batch, input_size=args.input_size,
                              verify=not args.no_verify, threads=args.threads, precision=args.precision,
                              channels_last_io=args.channels_last_io, log=StageLog())
    print(json.dumps(result.to_dict()) if args.json else result.summary())
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from ..deploy.quantize_run import quantize_weights

    result = quantize_weights(
        args.weights, method=args.method, target=args.target, out=args.out, calib_batches=args.calib_batches,
        calib_batch_size=args.calib_batch_size, data=args.data, root=args.data_root, split=args.split,
        qat_epochs=args.qat_epochs, qat_lr=args.qat_lr, int8_io=args.int8_io,
        channels_last_io=args.channels_last_io, log=StageLog(),
    )
    print(json.dumps(result.to_dict()) if args.json else result.summary())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from ..deploy.bench import format_results, run_bench

    results = run_bench(
        args.model, backends=args.backends, batches=args.batch, input_size=args.input_size, threads=args.threads,
        kwargs=parse_set(override_items(args)), min_time_s=args.min_time, min_runs=args.min_runs,
        log=None if args.json else _log, rounds=args.rounds,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    else:
        print(format_results(results))
    return 0


# ---------------------------------------------------------------------------------------- parsers
def _add_export(subparsers: argparse._SubParsersAction) -> None:
    """``export``: its formats table is the library's FORMATS."""
    from ..deploy.formats import FORMATS, format_table

    p = subparsers.add_parser(
        "export", help="export weights to ONNX/TorchScript/pt2/ExecuTorch/OpenVINO/LiteRT/NCNN/MNN/Core ML, "
                       "verified in its runtime",
        formatter_class=RAW,
        description=wrap_description(
            "Export a weights or run directory with BatchNorm folded and dropout removed, reload the file in its "
            "own runtime and compare with eager PyTorch (fails above 1e-4 max abs difference; a reduced "
            "--precision passes only with top-1 unchanged on the weights' evaluation split). Core ML is reported "
            "as not verified where it cannot predict (outside macOS). Stages are printed on stderr."),
        epilog="formats:\n" + format_table() + "\n\n" + examples(
            "mobilenets export runs/digits --format onnx --out model.onnx",
            "mobilenets export runs/digits --format executorch --out model.pte --batch dynamic",
            "mobilenets export runs/digits --format openvino --out model.xml --json",
            "mobilenets export runs/digits --format litert --out model.tflite --channels-last-io",
            "mobilenets export runs/digits --format ncnn --out model.ncnn.param --precision fp16",
            "mobilenets export runs/digits --format litert --out model_int8.tflite --int8"),
    )
    p.add_argument("weights", help="weights directory (model.safetensors + config.json) or training run directory")
    p.add_argument("--format", required=True, choices=list(FORMATS), type=_name_in(FORMATS, "export format"),
                   help="output format (table below; tflite is accepted for litert)")
    p.add_argument("--out", required=True, help="output file; its suffix must match the format")
    p.add_argument("--batch", default="1", help="fixed batch size, or 'dynamic' (default: 1)")
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads for verification (default: all cores)")
    p.add_argument("--precision", default="fp32", choices=sorted({q for f in FORMATS.values() for q in f.precisions}),
                   help="float precision of the file where the format offers it (table: notes; default: fp32)")
    p.add_argument("--channels-last-io", action="store_true",
                   help="NHWC model input, the layout camera pipelines hand over (litert)")
    p.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare check")
    p.add_argument("--int8", action="store_true",
                   help="write a full-integer int8 file instead: `mobilenets quantize` with the target that writes "
                        "this format (calibrated on the training split, float vs int8 top-1 reported)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (stages still go to stderr)")
    p.set_defaults(func=_cmd_export)


def _add_quantize(subparsers: argparse._SubParsersAction) -> None:
    """``quantize``: its targets come from QUANT_TARGETS."""
    from ..deploy.quantize import QUANT_TARGETS

    targets = "\n".join(f"  {t.key:<12s} -> {t.suffix:<5s} {t.description}" for t in QUANT_TARGETS.values())
    p = subparsers.add_parser(
        "quantize", help="int8 quantization (PTQ or QAT) with float vs int8 accuracy",
        formatter_class=RAW,
        description=wrap_description(
            "Static int8 quantization calibrated on the training split of the weights' dataset (a run "
            "directory brings its data.root from config.yaml); reports top-1 (AP50 for a detector, mIoU for a "
            "segmenter) of the float and the int8 model on the evaluation split. Stages (calibrating n/N, lowering, evaluating n/N) are printed on stderr."),
        epilog="targets:\n" + targets + "\n\n" + examples(
            "mobilenets quantize runs/digits --out model_int8.pt2",
            "mobilenets quantize runs/digits --target xnnpack --out model_int8.pte",
            "mobilenets quantize runs/digits --method qat --target onnxruntime --out model_int8.onnx --json",
            "mobilenets quantize runs/digits --target litert --out model_int8.tflite --int8-io"),
    )
    p.add_argument("weights", help="weights directory or training run directory")
    p.add_argument("--method", choices=("ptq", "qat"), default="ptq",
                   help="ptq: post-training; qat: quantization-aware fine-tuning (default: ptq)")
    p.add_argument("--target", choices=list(QUANT_TARGETS), default="x86", type=_name_in(QUANT_TARGETS, "target"),
                   help="int8 runtime (default: x86; tflite is accepted for litert)")
    p.add_argument("--out", required=True, help="output artefact, with the target's suffix (table below)")
    p.add_argument("--calib-batches", type=int, default=8,
                   help="calibration batches from the training split (default: 8)")
    p.add_argument("--calib-batch-size", type=int, default=32, help="images per calibration batch (default: 32)")
    p.add_argument("--data", default=None, help="dataset (default: the one the weights were trained on)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="dataset directory for cifar10/cifar100/imagefolder (default: the run's data.root)")
    p.add_argument("--split", default="test", choices=("val", "test"), help="evaluation split (default: test)")
    p.add_argument("--qat-epochs", type=int, default=2, help="fine-tuning epochs for --method qat (default: 2)")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="AdamW learning rate for --method qat (default: 1e-4)")
    p.add_argument("--int8-io", action="store_true",
                   help="litert: int8 input and output tensors (default: float32 with QUANTIZE/DEQUANTIZE inside)")
    p.add_argument("--channels-last-io", action="store_true", help="litert: NHWC model input")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (stages still go to stderr)")
    p.set_defaults(func=_cmd_quantize)


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    """``bench``: its backends come from BACKENDS."""
    from ..deploy.bench import BACKENDS

    backends = "\n".join(f"  {b.key:<17s} {b.precision}  {b.description}" for b in BACKENDS.values())
    p = subparsers.add_parser(
        "bench", help="latency of a model across fp32 and int8 backends",
        formatter_class=RAW,
        description=wrap_description(
            "Median/p90 latency, images/s, peak memory and speed-up over eager for each backend and batch. "
            "MODEL is a model name or a table file (random weights), a weights directory, or an exported artefact; trailing "
            "KEY=VALUE arguments are create_model keywords for a model name."),
        epilog="backends (also: all, fp32, int8, best = the fastest installed fp32 backend):\n" + backends
        + "\n\n" + examples(
            "mobilenets bench mobilenet_v3_large --backends best --batch 1,32",
            "mobilenets bench mobilenet_v3_small small_input=true num_classes=10 --input-size 32 --backends fp32",
            "mobilenets bench model.onnx --json"),
    )
    p.add_argument("model", metavar="MODEL_OR_WEIGHTS",
                   help="model name or table file (random weights), weights/run directory, or an exported artefact")
    add_overrides_argument(p, "create_model keyword for a model name")
    p.add_argument("--backends", default="eager", help="comma list of backends, or all/fp32/int8/best (default: eager)")
    p.add_argument("--batch", type=_int_list, default=(1,), help="comma list of batch sizes (default: 1)")
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--min-time", type=float, default=2.0, help="minimum measured seconds per row (default: 2)")
    p.add_argument("--min-runs", type=int, default=20, help="minimum measured runs per row (default: 20)")
    p.add_argument("--rounds", type=int, default=1,
                   help="time the backends in turn this many times, each for its share of --min-time, so a slow "
                        "phase of the machine hits every row alike (default: 1, one after the other)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of objects (backend, batch, median_ms, p90_ms, images_per_s, ...)")
    p.set_defaults(func=_cmd_bench)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export``, ``quantize`` and ``bench`` parsers (handlers in ``func``)."""
    _add_export(subparsers)
    _add_quantize(subparsers)
    _add_bench(subparsers)
