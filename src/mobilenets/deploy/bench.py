"""Latency benchmark of one model across inference backends, fp32 and int8.

Every backend in :data:`BACKENDS` turns the same model into a callable on a fixed input batch; the
timing loop is shared (:mod:`mobilenets.deploy.timing`), so numbers are comparable: a warm-up (which
also absorbs lazy compilation and allocator growth), then runs until both a minimum count and a minimum
time are reached so the median is stable, then the median, p90, images/s, the peak resident memory while
the backend was built and run, and the speed-up over plain eager PyTorch of the same model and batch.

Int8 backends quantize in-process (real calibration batches when the weights name a dataset, random
normal inputs otherwise: scales change accuracy, not speed) and run the artefact in its runtime.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import timing
from .extras import MissingExtraError, NeedsExtras, require
from .runtimes import default_threads, load_artifact
from .timing import (
    REDUCED_PRECISIONS,
    BenchResult,
    bench_runner,
    build_and_time,
    format_results,
    set_times,
    time_callable,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BenchResult",
    "best_backend",
    "best_latency",
    "format_results",
    "run_bench",
    "time_callable",
]

Runner = Callable[[torch.Tensor], Any]


@dataclass
class BuildContext:
    """What a backend builder gets: the model, the input shape, threads, calibration and a scratch dir."""

    model: nn.Module
    batch: int
    input_size: int
    threads: int
    workdir: Path
    calib: list[torch.Tensor]
    keep: list[Any] = field(default_factory=list)
    weights: Path | None = None
    """The weights directory the model came from: a reduced float precision is checked on its dataset."""
    checks: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """Accuracy check of each reduced-precision backend built (``None``: nothing to check it on)."""

    @property
    def example(self) -> torch.Tensor:
        c = int(getattr(self.model, "in_chans", 3))
        return torch.randn(self.batch, c, self.input_size, self.input_size, generator=torch.Generator().manual_seed(0))


@dataclass(frozen=True)
class Backend(NeedsExtras):
    """One way to run the model; ``build`` returns a callable taking the input batch."""

    key: str
    precision: str
    requires: tuple[tuple[str, str], ...]
    build: Callable[[BuildContext], Runner]
    description: str

    def check_installed(self) -> None:
        for module, extra in self.requires:
            require(module, extra, f"The {self.key} backend")


# ------------------------------------------------------------------------------------------ builders
def _torch_runner(module: Callable[[torch.Tensor], Any], channels_last: bool = False) -> Runner:
    def run(x: torch.Tensor) -> Any:
        with torch.inference_mode():
            return module(x.contiguous(memory_format=torch.channels_last) if channels_last else x)

    return run


def _build_eager(ctx: BuildContext) -> Runner:
    from .fuse import reference_graph

    # A detector: network + box decoding, the graph every other backend runs (NMS is the same after all);
    # a segmenter: its "out" logits (the auxiliary head, which no export computes, is not timed either).
    return _torch_runner(reference_graph(ctx.model))


def _graph(ctx: BuildContext) -> nn.Module:
    from .fuse import prepare_for_export

    return prepare_for_export(ctx.model)


def _build_channels_last(ctx: BuildContext) -> Runner:
    return _torch_runner(_graph(ctx).to(memory_format=torch.channels_last), channels_last=True)


def _build_compile(ctx: BuildContext) -> Runner:
    from .runtimes import compile_module

    module = compile_module(_graph(ctx).to(memory_format=torch.channels_last))
    return _torch_runner(module, channels_last=True)


def _export_file(ctx: BuildContext, fmt: str, precision: str = "fp32") -> Path:
    from .export import export_model
    from .formats import FORMATS

    batch = _file_batch(fmt, ctx.batch)
    out = ctx.workdir / f"model_{precision}_b{batch}{_file_suffix(fmt, FORMATS[fmt].suffix)}"
    if not out.exists():
        export_model(ctx.model, fmt, out, batch=batch, input_size=ctx.input_size, verify=False,
                     precision=precision)
    if precision != "fp32":
        from .export import reduced_precision_check

        key = f"{fmt}-{precision}"
        if key not in ctx.checks:
            ctx.checks[key] = reduced_precision_check(ctx.weights, out) if ctx.weights is not None else None
    return out


def _file_suffix(fmt: str, suffix: str) -> str:
    """The name ending of a file bench writes: ``.ncnn.param`` for ncnn (whose ``.bin`` then sits beside it
    as ``.ncnn.bin``, as pnnx names them), the format's or target's own suffix otherwise."""
    return ".ncnn.param" if fmt == "ncnn" else suffix


def _file_batch(fmt: str, batch: int) -> int:
    """ncnn runs one image at a time and MNN's offline int8 tool crashes on batched graphs (32: SIGSEGV /
    SIGABRT in 3.6.1): their files take batch 1 and the predictor runs a larger batch image by image."""
    return 1 if fmt in ("ncnn", "mnn-int8") else batch


def _predictor_runner(path: Path, ctx: BuildContext) -> Runner:
    predictor = load_artifact(path, threads=ctx.threads)
    ctx.keep.append(predictor)
    # A file of another batch runs through the predictor's chunking (one call per image for batch 1).
    return predictor._run if predictor.metadata.batch in (None, ctx.batch) else predictor


def _build_export(ctx: BuildContext, fmt: str, precision: str = "fp32") -> Runner:
    """Export to ``fmt`` (at ``precision``) and run the file in its runtime."""
    return _predictor_runner(_export_file(ctx, fmt, precision), ctx)


def _quantized_file(ctx: BuildContext, target: str) -> Path:
    from .quantize import QUANT_TARGETS, quantize_model

    batch = _file_batch("mnn-int8" if target == "mnn" else target, ctx.batch)
    out = ctx.workdir / f"int8_{target}_b{batch}{_file_suffix(target, QUANT_TARGETS[target].suffix)}"
    if not out.exists():
        quantize_model(ctx.model, "ptq", target, out, ctx.calib, batch=batch)
    return out


def _build_int8_x86(ctx: BuildContext) -> Runner:
    from .runtimes import compile_module

    path = _quantized_file(ctx, "x86")
    predictor = load_artifact(path, threads=ctx.threads)
    module = compile_module(predictor.module, int8=True)  # type: ignore[attr-defined]
    return _torch_runner(module)


def _build_int8_xnnpack(ctx: BuildContext) -> Runner:
    return _predictor_runner(_quantized_file(ctx, "xnnpack"), ctx)


def _build_int8_litert(ctx: BuildContext) -> Runner:
    return _predictor_runner(_quantized_file(ctx, "litert"), ctx)


def _build_int8_ncnn(ctx: BuildContext) -> Runner:
    return _predictor_runner(_quantized_file(ctx, "ncnn"), ctx)


def _build_int8_mnn(ctx: BuildContext) -> Runner:
    return _predictor_runner(_quantized_file(ctx, "mnn"), ctx)


def _build_int8_onnxruntime(ctx: BuildContext) -> Runner:
    return _predictor_runner(_quantized_file(ctx, "onnxruntime"), ctx)


def _build_int8_openvino(ctx: BuildContext) -> Runner:
    return _predictor_runner(_quantized_file(ctx, "openvino"), ctx)


_ONNX = (("onnx", "onnx"), ("onnxscript", "onnx"), ("onnxruntime", "onnx"))
_QUANT = (("torchao", "quant"),)
_LITERT = (("litert_torch", "litert"), ("ai_edge_litert", "litert"))
_NCNN = (("pnnx", "ncnn"), ("ncnn", "ncnn"))
_MNN = (*_ONNX, ("MNN", "mnn"))

BACKENDS: dict[str, Backend] = {
    b.key: b
    for b in (
        Backend("eager", "fp32", (), _build_eager, "plain PyTorch eval model (BatchNorm unfused), NCHW"),
        Backend("channels_last", "fp32", (), _build_channels_last, "BN folded, channels_last memory format"),
        Backend("compile", "fp32", (), _build_compile, "torch.compile (Inductor, freezing), channels_last"),
        Backend("onnxruntime", "fp32", _ONNX, partial(_build_export, fmt="onnx"), "ONNX Runtime CPU, all graph optimisations"),
        Backend("openvino", "fp32", (("openvino", "openvino"),), partial(_build_export, fmt="openvino"), "OpenVINO CPU, f32 hint"),
        Backend("executorch", "fp32", (("executorch", "executorch"),), partial(_build_export, fmt="executorch"),
                "ExecuTorch, XNNPACK delegate"),
        Backend("litert", "fp32", _LITERT, partial(_build_export, fmt="litert"), "LiteRT Interpreter, XNNPACK delegate"),
        Backend("ncnn", "fp32", _NCNN, partial(_build_export, fmt="ncnn"), "ncnn, fp16 storage/arithmetic off"),
        Backend("mnn", "fp32", _MNN, partial(_build_export, fmt="mnn"), "MNN CPU, normal precision"),
        Backend("openvino-bf16", "bf16", (("openvino", "openvino"),), partial(_build_export, fmt="openvino", precision="bf16"),
                "OpenVINO CPU, bf16 hint (AVX512-BF16/AMX kernels; f32 where the CPU has none)"),
        Backend("litert-fp16", "fp16", _LITERT, partial(_build_export, fmt="litert", precision="fp16"), "LiteRT with fp16 weights (XNNPACK)"),
        Backend("ncnn-fp16", "fp16", _NCNN, partial(_build_export, fmt="ncnn", precision="fp16"), "ncnn, fp16 weights, storage and arithmetic"),
        Backend("int8-x86", "int8", (*_QUANT,), _build_int8_x86, "PT2E x86 quantizer + torch.compile (oneDNN)"),
        Backend("int8-xnnpack", "int8", (*_QUANT, ("executorch", "executorch")), _build_int8_xnnpack,
                "PT2E XNNPACK quantizer, ExecuTorch"),
        Backend("int8-onnxruntime", "int8", _ONNX, _build_int8_onnxruntime, "ORT static QDQ (u8/s8 per-channel)"),
        Backend("int8-openvino", "int8", (("openvino", "openvino"), ("nncf", "openvino")), _build_int8_openvino,
                "NNCF int8 OpenVINO model (every conv/fc checked integer)"),
        Backend("int8-litert", "int8", (*_QUANT, *_LITERT), _build_int8_litert,
                "full-integer int8 .tflite, LiteRT Interpreter (XNNPACK)"),
        Backend("int8-ncnn", "int8", _NCNN, _build_int8_ncnn, "ncnn int8 file (every conv/fc checked int8)"),
        Backend("int8-mnn", "int8", _MNN, _build_int8_mnn, "MNN offline-quantized full int8"),
    )
}

# Preference order for install hints (``mobilenets.analysis.latency``): fastest first on the CPUs of
# docs/benchmarks.md. ``best`` itself measures (:func:`choose_best`); this order only breaks ties.
BEST_ORDER: dict[str, tuple[str, ...]] = {
    "single": ("onnxruntime", "executorch", "openvino", "litert", "mnn", "ncnn", "compile", "channels_last",
               "eager"),
    "batched": ("onnxruntime", "openvino", "executorch", "litert", "mnn", "ncnn", "compile", "channels_last",
                "eager"),
}

BEST = "best"
#: What ``best`` measures: every fp32 runtime except ``compile`` (minutes of Inductor build for a backend
#: that never won on the CPUs measured) and eager, plus the reduced float paths whose top-1 check passed.
BEST_CANDIDATES = ("channels_last", "onnxruntime", "openvino", "executorch", "litert", "ncnn", "mnn",
                   "openvino-bf16", "litert-fp16", "ncnn-fp16")


def best_backend(batch: int) -> str:
    """The first installed fp32 backend of the preference order (a hint; ``best`` measures instead)."""
    order = BEST_ORDER["single" if batch == 1 else "batched"]
    return next(k for k in order if BACKENDS[k].available())


def parse_backends(spec: str | list[str], batch: int) -> list[str]:
    """``"all"``, ``"fp32"``, ``"int8"``, ``"best"`` or a comma list; unknown names are refused.

    ``best`` stays in the list as :data:`BEST`: :func:`run_bench` resolves it by measuring on this machine.
    """
    from .._validate import did_you_mean

    items = spec.split(",") if isinstance(spec, str) else list(spec)
    keys: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "all":
            keys += [k for k, b in BACKENDS.items() if b.available()]
        elif item in ("fp32", "int8", *REDUCED_PRECISIONS):
            keys += [k for k, b in BACKENDS.items() if b.precision == item and b.available()]
        elif item == BEST:
            keys.append(BEST)
        elif item in BACKENDS:
            keys.append(item)
        else:
            raise ValueError(f"unknown backend {item!r}{did_you_mean(item, [*BACKENDS, 'all', 'best', 'fp32', 'int8'])}; "
                             f"expected all, best, fp32, int8, fp16, bf16 or one of {', '.join(BACKENDS)}")
    return list(dict.fromkeys(keys))


#: fp32 backends :func:`best_latency` tries (``compile`` is left out: minutes of Inductor builds per model in a
#: grid for a backend that never won on the CPUs we measured, see docs/benchmarks.md).
BEST_LATENCY_BACKENDS = ("channels_last", "onnxruntime", "openvino", "executorch")


def best_latency(model: nn.Module, input_shape: tuple[int, int, int], *, runs: int = 30, warmup: int = 5,
                 backends: tuple[str, ...] = BEST_LATENCY_BACKENDS) -> dict[str, Any]:
    """Batch-1 median latency of ``model`` on every installed fp32 backend; the fastest one wins.

    This is the contract :func:`mobilenets.analysis.latency.measure_latency` uses for an experiment's
    "best backend" column: ``{"backend": key, "ms": median, "all": {key: median, ...}}``. A backend that is
    not installed is skipped and one that fails to build is recorded under ``"failed"``, so one broken
    runtime never loses a whole grid's latency column.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape {input_shape!r} invalid; expected (C, H, W)")
    threads = torch.get_num_threads()
    medians: dict[str, float] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mobilenets-best-") as tmp:
        ctx = BuildContext(model, 1, int(input_shape[-1]), threads, Path(tmp), [])
        x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
        for key in backends:
            backend = BACKENDS[key]
            if not backend.available():
                continue
            try:
                fn = backend.build(ctx)
                times = time_callable(fn, x, warmup=warmup, warmup_s=0.2, min_runs=runs, min_time_s=0.5)
            except Exception as exc:  # a runtime that cannot take this model: report it, keep the others
                failed[key] = f"{type(exc).__name__}: {exc}"
                continue
            medians[key] = 1e3 * statistics.median(times)
        ctx.keep.clear()
    if not medians:
        raise RuntimeError(f"no fp32 backend could run the model: {failed}")
    best = min(medians, key=medians.__getitem__)
    return {"backend": best, "ms": medians[best], "all": medians, "failed": failed}


def _calibration(model: nn.Module, batch: int, size: int, n: int = 4) -> list[torch.Tensor]:
    """Real training images when the weights name a dataset, random normal inputs otherwise."""
    dataset = getattr(model, "dataset_name", None)
    c = int(getattr(model, "in_chans", 3))
    if dataset:
        try:
            from .fuse import SegmentationGraph, is_segmenter
            from .metadata import ArtifactMetadata
            from .quantize import _load_data

            meta = ArtifactMetadata.from_model(model, "weights", input_size=size)
            if is_segmenter(model):
                from .segment import calibration_images as seg_calibration
                from .segment import segmentation_datasets

                meta = ArtifactMetadata.from_model(SegmentationGraph(model), "weights", input_size=size)
                train = segmentation_datasets(None, data=dataset, root=None, known_dataset=dataset,
                                              image_size=size)[2]["train"]
                return seg_calibration(meta, train, batches=n, batch_size=max(batch, 8))
            if meta.task == "detect":
                from .detect import calibration_images, detection_datasets

                train = detection_datasets(meta, data=dataset, root=None, source=None)[2]["train"]
                return calibration_images(meta, train, batches=n, batch_size=max(batch, 8))
            return _load_data(meta, dataset, None, calib_batches=n, batch_size=max(batch, 8), split="test").calib
        except (ValueError, FileNotFoundError):
            pass
    g = torch.Generator().manual_seed(0)
    return [torch.randn(max(batch, 8), c, size, size, generator=g) for _ in range(n)]


def load_bench_model(spec: str, kwargs: dict[str, Any] | None = None) -> tuple[str, nn.Module | None, Path | None]:
    """``spec`` is a registered model name or a table file (random weights), a weights directory, or an artefact file."""
    from ..models.registry import is_model_name

    path = Path(spec)
    if is_model_name(spec):
        from ..weights import create_model

        # Seeded, so every run times the same weights (fp32 kernels slow down on denormals, and the int8
        # files' calibrated scales follow the weights); the caller's random state is left as it was.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return spec, create_model(spec, **(kwargs or {})).eval(), None
    if path.is_dir():
        from .export import load_model

        if kwargs:
            raise ValueError("--set applies to a model name, not to saved weights")
        model = load_model(path)
        return getattr(model, "model_name", path.name), model, None
    if path.is_file():
        return path.name, None, path
    raise FileNotFoundError(f"{spec} is neither a model name (see `mobilenets list`), a table file, a weights directory "
                            "nor an artefact")


def run_bench(
    spec: str,
    *,
    backends: str | list[str] = "eager",
    batches: tuple[int, ...] = (1,),
    input_size: int | None = None,
    threads: int | None = None,
    kwargs: dict[str, Any] | None = None,
    min_time_s: float = 2.0,
    min_runs: int = 20,
    log: Callable[[str], None] | None = None,
    strict: bool = True,
    rounds: int = 1,
) -> list[BenchResult]:
    """Benchmark ``spec`` on each backend and batch; eager is always measured for the speed-up.

    ``strict=False`` logs a backend that fails to build or run and continues with the others.
    ``rounds > 1`` splits each backend's ``min_time_s`` / ``min_runs`` into that many slices taken in turn
    (every backend built and timed once, then each timed again, round after round): a slow phase of a
    shared machine then lands on every backend instead of on the one that happened to run in it, so the
    ratios between rows hold from run to run. Every runner stays alive until the batch is done.
    """
    if rounds < 1:
        raise ValueError(f"--rounds {rounds} invalid; expected >= 1")
    threads = int(threads or default_threads())
    if threads < 1:
        raise ValueError(f"--threads {threads} invalid; expected >= 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_bench(spec, backends, batches, input_size, threads, kwargs, min_time_s, min_runs, log, strict,
                          rounds)
    finally:
        torch.set_num_threads(previous)


def _run_bench(spec: str, backends: str | list[str], batches: tuple[int, ...], input_size: int | None, threads: int,
               kwargs: dict[str, Any] | None, min_time_s: float, min_runs: int,
               log: Callable[[str], None] | None, strict: bool, rounds: int = 1) -> list[BenchResult]:
    name, model, artifact = load_bench_model(spec, kwargs)
    weights_dir = Path(spec) if Path(spec).is_dir() else None
    whole = {"min_time_s": min_time_s, "min_runs": min_runs}
    # One slice per round; the first also warms up, later ones only shake off the previous backend.
    slice_timing = {"min_time_s": min_time_s / rounds, "min_runs": max(1, math.ceil(min_runs / rounds))}
    results: list[BenchResult] = []
    if artifact is not None:
        predictor = load_artifact(artifact, threads=threads)
        meta = predictor.metadata
        for batch in batches:
            if meta.batch is not None and batch != meta.batch:
                raise ValueError(f"{artifact.name} was exported for batch {meta.batch}; use --batch {meta.batch}")
            x = torch.randn(batch, *meta.input_size)
            results.append(bench_runner(name, f"artifact:{predictor.runtime}", meta.precision,
                                        lambda p=predictor: p, x, threads, **whole))
        return results
    assert model is not None
    size = int(input_size or model.pretrained_cfg["input_size"][-1])
    if input_size is not None:
        # Every file written below (an int8 one's metadata, too) records the size it is benched at.
        chans = int(model.pretrained_cfg["input_size"][0])
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (chans, size, size)}
    with tempfile.TemporaryDirectory(prefix="mobilenets-bench-") as tmp:
        for batch in batches:
            if batch < 1:
                raise ValueError(f"--batch {batch} invalid; expected positive integers")
            keys = parse_backends(backends, batch)
            for key in keys:
                if key != BEST:
                    BACKENDS[key].check_installed()
            if "eager" not in keys:
                keys.insert(0, "eager")
            calib = _calibration(model, batch, size) if any(BACKENDS[k].precision == "int8" for k in keys
                                                            if k != BEST) else []
            ctx = BuildContext(model, batch, size, threads, Path(tmp), calib, weights=weights_dir)
            x = ctx.example
            if BEST in keys:
                if log:
                    log(f"{name} batch {batch}: measuring the candidates of 'best' on this machine ...")
                from .best import choose_best

                chosen = choose_best(ctx, name, x, BACKENDS, BEST_CANDIDATES, REDUCED_PRECISIONS, time_callable, log)
                keys = list(dict.fromkeys(chosen if k == BEST else k for k in keys))
            rows: list[tuple[BenchResult, Runner | None, list[float]]] = []
            for key in keys:
                backend = BACKENDS[key]
                if log:
                    log(f"{name} batch {batch}: {key} ...")
                try:
                    row = build_and_time(name, key, backend.precision, lambda b=backend, c=ctx: b.build(c), x,
                                          threads, **(slice_timing if rounds > 1 else whole))
                except MissingExtraError:
                    raise
                except Exception as exc:
                    if strict or key == "eager":
                        raise
                    # A survey over many backends reports the failure and goes on with the others.
                    if log:
                        log(f"  {key} failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
                    continue
                finally:
                    if rounds == 1:
                        ctx.keep.clear()
                    torch.set_num_threads(threads)
                res = row[0]
                if backend.precision in REDUCED_PRECISIONS:
                    res.accuracy_check = ctx.checks.get(key)
                # One round: the runner is dropped now, freeing its model before the next backend is built.
                rows.append(row if rounds > 1 else (res, None, []))
                del row
                if log:
                    log(f"  {res.median_ms:.3f} ms median, {res.images_per_s:.1f} img/s")
            results += _later_rounds(rows, x, rounds, slice_timing, log, f"{name} batch {batch}")
            ctx.keep.clear()
    return results


def _later_rounds(rows: list[tuple[BenchResult, Runner | None, list[float]]], x: torch.Tensor, rounds: int,
                  slice_timing: dict[str, Any], log: Callable[[str], None] | None, label: str) -> list[BenchResult]:
    """Rounds 2..``rounds`` over the built runners (each slice pooled into its row), then the speed-ups."""
    for r in range(1, rounds):
        if log:
            log(f"{label}: round {r + 1}/{rounds} over {len(rows)} backends ...")
        for res, fn, times in rows:
            assert fn is not None  # kept when rounds > 1
            times += timing.time_callable(fn, x, warmup=1, warmup_s=0.05, **slice_timing)
            set_times(res, times)
    eager_ms = next(res.median_ms for res, _, _ in rows if res.backend == "eager")
    for res, _, _ in rows:
        res.speedup_vs_eager = eager_ms / res.median_ms
    return [res for res, _, _ in rows]
