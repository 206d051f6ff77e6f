"""Export to every deployment format, each verified in its own runtime against eager PyTorch.

:data:`mobilenets.deploy.formats.FORMATS` is the one table of formats: :func:`export_model` takes a
row's suffix and extras from it and its writer from :data:`EXPORTERS` (keyed like the table), then
verifies the file by reloading it with :func:`mobilenets.deploy.runtimes.load_artifact`.

Every export starts from the same inference graph (BatchNorm folded, dropout removed,
:func:`mobilenets.deploy.fuse.prepare_for_export`) and writes the preprocessing metadata the runtime
needs beside or inside the file. An fp32 export whose outputs differ from the eager model by more
than :data:`FP32_TOLERANCE` is reported as a failure, never silently kept as good.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.stages import StageLog, as_stage_log
from .capture import ExportOptions, export_onnx, export_program, quiet
from .coreml import export_coreml
from .extras import quiet_imports, silence_native_stderr
from .formats import FORMATS, resolve_format
from .fuse import (
    InferenceModel,
    is_detector,
    is_segmenter,
    prepare_for_export,
    reference_graph,
    spell_out_gelu_tanh,
)
from .litert import export_litert
from .metadata import ArtifactError, ArtifactMetadata, read_metadata, write_metadata
from .mnn import export_mnn
from .ncnn import export_ncnn
from .runtimes import load_artifact, program_batch_bound

__all__ = [
    "DEFAULT_EXECUTORCH_MAX_BATCH",
    "EXPORTERS",
    "FP32_TOLERANCE",
    "ExportResult",
    "ExportVerificationError",
    "export_model",
    "load_model",
    "parse_batch",
    "verify_artifact",
]

FP32_TOLERANCE = 1e-4
"""Max abs logit difference an fp32 export may show against eager PyTorch (float32 reassociation only)."""

DEFAULT_EXECUTORCH_MAX_BATCH = 32
"""ExecuTorch plans activation memory for the largest batch, so a dynamic batch needs an upper bound."""


class ExportVerificationError(ArtifactError):
    """The exported file loads but its outputs differ from eager PyTorch beyond the tolerance."""


# ------------------------------------------------------------------------------------------ exporters
def _export_torchscript(model: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path,
                        meta: ArtifactMetadata) -> None:
    with quiet(), torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        torch.jit.save(frozen, str(out), _extra_files={"mobilenets.json": meta.to_json()})


def _export_pt2(model: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    ep = export_program(model, x, opts)
    torch.export.save(ep, str(out), extra_files={"mobilenets.json": meta.to_json()})


def lower_to_executorch(ep: torch.export.ExportedProgram, out: Path) -> None:
    """Lower an exported program to a ``.pte`` with every supported op delegated to XNNPACK."""
    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
        from executorch.exir.passes.sym_shape_eval_pass import ConstraintBasedSymShapeEvalPass

        # Plan memory for the declared upper bound of a dynamic batch (the default plans for the
        # example's hint and fails on larger inputs at run time).
        config = ExecutorchBackendConfig(sym_shape_eval_pass=ConstraintBasedSymShapeEvalPass())
        program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch(config)
    out.write_bytes(program.buffer)


def _export_executorch(model: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path,
                       meta: ArtifactMetadata) -> None:
    spell_out_gelu_tanh(model)
    opts.stages("capturing the graph (torch.export)")
    ep = export_program(model, x, opts)
    opts.stages("lowering to ExecuTorch with the XNNPACK delegate (the longest step)")
    lower_to_executorch(ep, out)
    if meta.batch is None:
        meta.max_batch = executorch_batch_bound(out) or meta.max_batch


def executorch_batch_bound(path: Path) -> int | None:
    """The batch an ExecuTorch program's memory plan holds; XNNPACK partitioning may narrow the
    exported upper bound (to 15 for these models), so the metadata records what the file really takes."""
    with quiet_imports(), silence_native_stderr():
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(str(path)).load_method("forward")
    return program_batch_bound(method)


def _export_openvino(model: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path,
                     meta: ArtifactMetadata) -> None:
    from .openvino import save_openvino, to_openvino

    save_openvino(to_openvino(model, x, opts, meta), out)


Exporter = Callable[[InferenceModel, torch.Tensor, ExportOptions, Path, ArtifactMetadata], None]

#: The writer of each row of :data:`FORMATS`, keyed like the table.
EXPORTERS: dict[str, Exporter] = {
    "onnx": export_onnx,
    "torchscript": _export_torchscript,
    "pt2": _export_pt2,
    "executorch": _export_executorch,
    "openvino": _export_openvino,
    "litert": export_litert,
    "ncnn": export_ncnn,
    "mnn": export_mnn,
    "coreml": export_coreml,
}


# ------------------------------------------------------------------------------------------ the job
@dataclass
class ExportResult:
    """What an export produced and how well its runtime reproduced eager PyTorch."""

    format: str
    path: str
    size_bytes: int
    export_s: float
    verify_s: float
    max_abs_diff: float
    tolerance: float | None
    runtime: str
    batch: int | None
    precision: str = "fp32"
    layout: str = "NCHW"
    verified: bool = True
    """False when the file was not run: ``--no-verify``, or a runtime that cannot run on this platform."""
    note: str = ""
    """Why it was not verified, or the accuracy check of a reduced precision."""
    accuracy: dict[str, Any] | None = None
    """Reduced precision only: top-1 of fp32 eager and of the file on the weights' evaluation split."""
    detection_max_px: float | None = None
    """A detector: the largest box difference (px) of the final detections (after the shared NMS) to eager."""

    @property
    def passed(self) -> bool:
        if not self.verified:
            return True  # nothing failed; ``status`` says it was not checked
        if self.accuracy is not None:
            return bool(self.accuracy.get("top1_unchanged"))
        return self.tolerance is None or self.max_abs_diff <= self.tolerance

    @property
    def status(self) -> str:
        if not self.verified:
            return self.note or "not verified"
        return "OK" if self.passed else "FAILED"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "status": self.status}

    def summary(self) -> str:
        size = self.size_bytes / 2**20
        tol = f" (limit {self.tolerance:g})" if self.tolerance is not None else ""
        batch = "dynamic" if self.batch is None else str(self.batch)
        head = (f"{self.format:<11s} {self.path}  {size:.2f} MiB  {self.precision}  batch {batch}"
                f"{'  NHWC input' if self.layout == 'NHWC' else ''}  export {self.export_s:.1f}s")
        if not self.verified:
            return f"{head}  {self.status}"
        acc = ""
        if self.accuracy is not None:
            a = self.accuracy
            acc = (f"  top-1 fp32 {a['top1_fp32']:.2f}% -> {self.precision} {a['top1']:.2f}% on "
                   f"{a['dataset']}/{a['split']}")
        det = "" if self.detection_max_px is None else f", detections equal (boxes within {self.detection_max_px:.1e} px)"
        return (f"{head}  verify {self.verify_s:.1f}s  max abs diff {self.max_abs_diff:.2e}{tol} vs eager via "
                f"{self.runtime}{det}{acc}  {self.status}")


def parse_batch(value: str | int | None) -> int | None:
    """``"dynamic"`` → ``None`` (dynamic batch dimension), otherwise a positive integer."""
    if value is None or (isinstance(value, str) and value.lower() == "dynamic"):
        return None
    try:
        batch = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--batch {value!r} invalid; expected a positive integer or 'dynamic'") from None
    if batch < 1:
        raise ValueError(f"--batch {batch} invalid; expected a positive integer or 'dynamic'")
    return batch


def load_model(weights: str | Path | nn.Module) -> nn.Module:
    """An eval-mode model from a weights / run directory (with its dataset name), or the model itself."""
    if isinstance(weights, nn.Module):
        return weights.eval()
    from ..weights import from_pretrained, read_config

    path = Path(weights)
    if path.is_file() and path.name in ("model.safetensors", "config.json"):
        path = path.parent
    if not path.exists():
        raise FileNotFoundError(f"weights {path} not found")
    if not path.is_dir():
        raise ValueError(f"{path} is not a weights directory (model.safetensors + config.json); "
                         "exported artefacts cannot be re-exported")
    model = from_pretrained(path).eval()
    model.dataset_name = read_config(path).get("dataset")
    return model


def _example(meta: ArtifactMetadata, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *meta.input_size, generator=g)


@torch.no_grad()
def verify_artifact(
    path: str | Path,
    reference: nn.Module,
    *,
    tolerance: float | None = FP32_TOLERANCE,
    threads: int | None = None,
    batches: tuple[int, ...] | None = None,
) -> tuple[float, float, str]:
    """Load ``path`` in its own runtime, compare with ``reference`` (eager) on random inputs.

    Returns ``(max_abs_diff, seconds, runtime)``; raises :class:`ExportVerificationError` when the
    difference exceeds ``tolerance`` (``None``: report only, for int8 artefacts).
    """
    start = time.perf_counter()
    predictor = load_artifact(path, threads=threads)
    meta = predictor.metadata
    if batches is None:
        batches = (meta.batch,) if meta.batch is not None else (1, min(3, meta.max_batch or 3))
    reference = reference.eval()
    diff = 0.0
    for i, b in enumerate(batches):
        x = _example(meta, b, seed=i)
        got = predictor(x)
        want = reference(x).float()
        if got.shape != want.shape:
            raise ExportVerificationError(f"{path}: output shape {tuple(got.shape)} differs from eager {tuple(want.shape)}")
        diff = max(diff, float((got - want).abs().max()))
    seconds = time.perf_counter() - start
    if tolerance is not None and not diff <= tolerance:
        raise ExportVerificationError(
            f"{path}: max abs difference {diff:.3e} to eager PyTorch exceeds {tolerance:g} in {predictor.runtime} "
            "(the file was kept for inspection)"
        )
    return diff, seconds, predictor.runtime


def _check_options(fmt: str, batch: int | None, precision: str, channels_last_io: bool) -> None:
    """Refuse options the format does not offer, naming what it (or another format) does."""
    spec = FORMATS[fmt]
    if precision not in spec.precisions:
        raise ValueError(f"--precision {precision!r} invalid for {fmt}; expected one of {', '.join(spec.precisions)}")
    if channels_last_io and not spec.channels_last_io:
        offer = ", ".join(k for k, f in FORMATS.items() if f.channels_last_io)
        raise ValueError(f"--channels-last-io is not available for {fmt}; formats that offer it: {offer}")
    if batch is None and not spec.dynamic_batch:
        raise ValueError(f"--batch dynamic invalid for {fmt}: its runtime takes a fixed batch; give a number "
                         "(a predictor runs larger batches in chunks of it)")


def export_model(
    weights: str | Path | nn.Module,
    fmt: str,
    out: str | Path,
    *,
    batch: int | str | None = 1,
    input_size: int | None = None,
    max_batch: int | None = None,
    verify: bool = True,
    threads: int | None = None,
    precision: str = "fp32",
    channels_last_io: bool = False,
    log: StageLog | Callable[[str], None] | None = None,
) -> ExportResult:
    """Export weights (a directory, or a mobilenets model) to ``fmt`` at ``out`` and verify the file.

    ``batch``: a fixed batch size, or ``None`` / ``"dynamic"`` for a dynamic batch dimension.
    ``input_size``: square input side (default: the model's ``pretrained_cfg``). ``precision``: ``fp32``
    or a reduced float precision of the format (``FORMATS[fmt].precisions``); a reduced one is verified
    by top-1 on the weights' evaluation split, which must be unchanged, since its logits differ from
    fp32 by design. ``channels_last_io``: an NHWC input, for formats that offer it. ``log`` hears each
    stage (loading, exporting, lowering, verifying): an ExecuTorch export runs half a minute in
    compilers that print nothing, so the CLI prints the stages on stderr.
    """
    stages = as_stage_log(log)
    fmt = resolve_format(fmt, FORMATS)
    spec = FORMATS[fmt]
    spec.check_installed()
    out = Path(out)
    if out.suffix.lower() not in spec.suffixes:
        raise ValueError(f"output {out} for format {fmt} must end in {' or '.join(spec.suffixes)}")
    batch = parse_batch(batch)
    _check_options(fmt, batch, precision, channels_last_io)
    if batch is None and fmt == "executorch":
        max_batch = max_batch or DEFAULT_EXECUTORCH_MAX_BATCH
    if not isinstance(weights, nn.Module):
        stages(f"loading weights {weights}")
    model = load_model(weights)
    graph = prepare_for_export(model)
    meta = ArtifactMetadata.from_model(
        graph, fmt, input_size=input_size, batch=batch, max_batch=max_batch if batch is None else None,
        source=None if isinstance(weights, nn.Module) else str(weights),
        precision=precision, layout="NHWC" if channels_last_io else "NCHW",
    )
    if meta.input_size[1] < 8:
        raise ValueError(f"--input-size {meta.input_size[1]} too small; expected at least 8")
    if is_detector(model) and tuple(meta.input_size[1:]) != tuple(model.image_size):
        raise ValueError(f"--input-size {meta.input_size[1]} invalid for a detector built for {tuple(model.image_size)}: "
                         "its anchors belong to that size; create the model with image_size=N instead")
    x = _example(meta, batch or 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stages(f"exporting to {spec.name} -> {out}")
    opts = ExportOptions(batch, meta.max_batch, meta.input_size[1], channels_last_io, precision, stages)
    EXPORTERS[fmt](graph, x, opts, out, meta)
    export_s = time.perf_counter() - start
    write_metadata(out, meta)
    result = ExportResult(fmt, str(out), artifact_size(out), export_s, 0.0, float("nan"), None, spec.runtime, batch,
                          precision, meta.layout, verified=False, note="not verified (--no-verify)")
    if not verify:
        return result
    if spec.predicts_on is not None and sys.platform not in spec.predicts_on:
        result.note = (f"not verified on this platform: {spec.runtime} runs on {', '.join(spec.predicts_on)}, "
                       f"this is {sys.platform}")
        return result
    exact = precision == spec.precisions[0]
    stages(f"verifying: reloading {out.name} in {spec.runtime} and comparing with eager PyTorch")
    result.max_abs_diff, result.verify_s, result.runtime = verify_artifact(
        out, reference_graph(model), threads=threads, tolerance=FP32_TOLERANCE if exact else None)
    result.verified, result.note, result.tolerance = True, "", FP32_TOLERANCE if exact else None
    return _check_by_task(result, weights, out, model, exact, precision, threads, stages)


def _check_by_task(result: ExportResult, weights: str | Path | nn.Module, out: Path, model: nn.Module, exact: bool,
                   precision: str, threads: int | None, stages: StageLog) -> ExportResult:
    """What an export's logits check leaves to the model's task: a detector's final detections, a
    reduced-precision classifier's top-1 on its split (a segmenter's is not checked here)."""
    if is_detector(model):
        return _verify_detector(result, out, model, exact, threads, stages)
    if is_segmenter(model) and not exact:
        # Top-1 is no criterion for per-pixel logits; the mIoU check of a reduced precision needs a split,
        # which `mobilenets quantize`-style evaluation (deploy.segment.evaluate_segmenter) provides.
        result.verified = False
        result.note = (f"{precision}: max abs diff {result.max_abs_diff:.2e} to eager; a reduced-precision "
                       "segmenter is not checked on a split here, so not verified")
        return result
    if not exact:
        result.accuracy = reduced_precision_check(weights, out, log=stages)
        if result.accuracy is None:
            result.verified = False
            result.note = (f"{precision}: max abs diff {result.max_abs_diff:.2e} to eager; top-1 not checked (the "
                           "weights name no dataset), so not verified")
    return result


def _verify_detector(result: ExportResult, out: Path, model: nn.Module, exact: bool, threads: int | None,
                     stages: StageLog) -> ExportResult:
    """A detector's second check: the final detections after the shared post-processing equal eager's."""
    from .detect import verify_detections

    if not exact:
        result.verified = False
        result.note = (f"{result.precision}: max abs diff {result.max_abs_diff:.2e} to eager; a reduced-precision "
                       "detector is not checked on detections here, so not verified")
        return result
    stages("verifying: detections after the shared NMS against eager PyTorch")
    start = time.perf_counter()
    worst, problem, runtime = verify_detections(out, model, threads=threads)
    result.verify_s += time.perf_counter() - start
    if problem is not None:
        raise ExportVerificationError(f"{out}: detections after the shared NMS differ from eager PyTorch in {runtime}: "
                                      f"{problem} (the file was kept for inspection)")
    result.detection_max_px = worst
    return result


def artifact_size(path: Path) -> int:
    """Bytes on disk of an artefact with its companion files (or of a directory such as ``.mlpackage``)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    from .formats import artifact_format

    spec = FORMATS.get(artifact_format(path))
    extra = [path.with_suffix(s) for s in (spec.companions if spec else ())]
    return path.stat().st_size + sum(p.stat().st_size for p in extra if p.is_file())


def reduced_precision_check(weights: str | Path | nn.Module, path: Path,
                            log: StageLog | Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Top-1 of the fp32 weights and of the reduced-precision file on the weights' evaluation split.

    ``top1_unchanged`` is the pass criterion of a reduced float precision (fp16 / bf16): its logits differ
    from fp32 by ~1e-3 by design, so the logit tolerance of fp32 cannot judge it. ``None`` when the weights
    name no dataset to evaluate on.
    """
    from .evaluate import evaluate_weights

    if isinstance(weights, nn.Module):
        return None
    from ..weights import read_config

    wdir = Path(weights)
    if not (wdir.is_dir() and read_config(wdir).get("dataset")):
        return None
    if is_segmenter(load_model(wdir)):
        return None  # top-1 does not judge per-pixel logits: a segmenter's reduced precision is left unchecked
    stages = as_stage_log(log)
    ref = evaluate_weights(wdir, plot=False, log=stages, label="fp32")
    got = evaluate_weights(path, plot=False, log=stages, label=f"{path.name} ({read_metadata(path).precision})")
    return {"dataset": ref.get("dataset"), "split": ref.get("split"), "top1_fp32": ref["acc1"], "top1": got["acc1"],
            "top1_unchanged": abs(ref["acc1"] - got["acc1"]) < 1e-9}


def result_json(results: list[ExportResult]) -> str:
    return json.dumps([r.to_dict() for r in results])
