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

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.stages import StageLog, as_stage_log
from .extras import quiet_imports, quiet_loggers, silence_native_stderr
from .formats import FORMATS
from .fuse import InferenceModel, prepare_for_export
from .metadata import ArtifactError, ArtifactMetadata, write_metadata
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


@dataclass(frozen=True)
class ExportOptions:
    batch: int | None
    max_batch: int | None
    input_size: int
    stages: StageLog = field(default_factory=lambda: StageLog(enabled=False), compare=False)
    """Where an exporter reports its sub-steps (e.g. ExecuTorch: capture, then lowering)."""


# ------------------------------------------------------------------------------------------ exporters
@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the progress prints and deprecation chatter of the exporters (errors still raise)."""
    with warnings.catch_warnings(), quiet_loggers(
        "torch.onnx", "torch._dynamo", "torch.export", "torchao", "executorch", "torch._export", "onnxscript",
        "torch.utils._pytree",
    ):
        warnings.simplefilter("ignore")
        yield


def _dynamic_shapes(opts: ExportOptions) -> tuple[dict[int, Any], ...] | None:
    if opts.batch is not None:
        return None
    return ({0: torch.export.Dim("batch", min=1, max=opts.max_batch or 4096)},)


def export_program(model: nn.Module, x: torch.Tensor, opts: ExportOptions) -> torch.export.ExportedProgram:
    """``torch.export`` of the inference graph; a dynamic batch is traced from a batch-2 example."""
    with quiet(), torch.no_grad():
        return torch.export.export(model, (x,), dynamic_shapes=_dynamic_shapes(opts), strict=False)


def _export_onnx(model: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    with quiet(), torch.no_grad():
        torch.onnx.export(
            model, (x,), str(out), dynamo=True, dynamic_shapes=_dynamic_shapes(opts), input_names=["input"],
            output_names=["logits"], external_data=False, optimize=True, verbose=False,
        )
    add_onnx_metadata(out, meta)


def add_onnx_metadata(path: Path, meta: ArtifactMetadata) -> None:
    """Embed the metadata as an ONNX ``metadata_props`` entry (readable by any ONNX tool)."""
    import onnx

    proto = onnx.load(str(path))
    for prop in list(proto.metadata_props):
        if prop.key == "mobilenets":
            proto.metadata_props.remove(prop)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mobilenets", meta.to_json()
    proto.producer_name = "mobilenets"
    onnx.save(proto, str(path))


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
    import openvino as ov

    ep = export_program(model, x, opts)
    with quiet():
        ov_model = ov.convert_model(ep)
    c, h, w = meta.input_size
    ov_model.reshape({ov_model.input(0): ov.PartialShape([-1 if opts.batch is None else opts.batch, c, h, w])})
    ov_model.set_rt_info(meta.to_json(), ["mobilenets", "metadata"])
    # save_model compresses weights to fp16 by default: keep fp32 so the export matches eager.
    ov.save_model(ov_model, str(out), compress_to_fp16=False)


Exporter = Callable[[InferenceModel, torch.Tensor, ExportOptions, Path, ArtifactMetadata], None]

#: The writer of each row of :data:`FORMATS`, keyed like the table.
EXPORTERS: dict[str, Exporter] = {
    "onnx": _export_onnx,
    "torchscript": _export_torchscript,
    "pt2": _export_pt2,
    "executorch": _export_executorch,
    "openvino": _export_openvino,
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

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        size = self.size_bytes / 2**20
        tol = f" (limit {self.tolerance:g})" if self.tolerance is not None else ""
        status = "OK" if self.passed else "FAILED"
        batch = "dynamic" if self.batch is None else str(self.batch)
        return (f"{self.format:<11s} {self.path}  {size:.2f} MiB  batch {batch}  export {self.export_s:.1f}s  "
                f"verify {self.verify_s:.1f}s  max abs diff {self.max_abs_diff:.2e}{tol} vs eager via "
                f"{self.runtime}  {status}")


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
    log: StageLog | Callable[[str], None] | None = None,
) -> ExportResult:
    """Export weights (a directory, or a mobilenets model) to ``fmt`` at ``out`` and verify the file.

    ``batch``: a fixed batch size, or ``None`` / ``"dynamic"`` for a dynamic batch dimension.
    ``input_size``: square input side (default: the model's ``pretrained_cfg``). ``log`` hears each
    stage (loading, exporting, lowering, verifying): an ExecuTorch export runs half a minute in
    compilers that print nothing, so the CLI prints the stages on stderr.
    """
    stages = as_stage_log(log)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    spec.check_installed()
    out = Path(out)
    if out.suffix.lower() not in spec.suffixes:
        raise ValueError(f"output {out} for format {fmt} must end in {' or '.join(spec.suffixes)}")
    batch = parse_batch(batch)
    if batch is None and fmt == "executorch":
        max_batch = max_batch or DEFAULT_EXECUTORCH_MAX_BATCH
    if not isinstance(weights, nn.Module):
        stages(f"loading weights {weights}")
    model = load_model(weights)
    graph = prepare_for_export(model)
    meta = ArtifactMetadata.from_model(
        graph, fmt, input_size=input_size, batch=batch, max_batch=max_batch if batch is None else None,
        source=None if isinstance(weights, nn.Module) else str(weights),
    )
    if meta.input_size[1] < 8:
        raise ValueError(f"--input-size {meta.input_size[1]} too small; expected at least 8")
    x = _example(meta, batch or 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stages(f"exporting to {spec.name} -> {out}")
    EXPORTERS[fmt](graph, x, ExportOptions(batch, meta.max_batch, meta.input_size[1], stages), out, meta)
    export_s = time.perf_counter() - start
    write_metadata(out, meta)
    size = out.stat().st_size + (out.with_suffix(".bin").stat().st_size if fmt == "openvino" else 0)
    diff, verify_s, runtime = (float("nan"), 0.0, spec.runtime)
    if verify:
        stages(f"verifying: reloading {out.name} in {spec.runtime} and comparing with eager PyTorch")
        diff, verify_s, runtime = verify_artifact(out, model, threads=threads)
    return ExportResult(fmt, str(out), size, export_s, verify_s, diff, FP32_TOLERANCE if verify else None,
                        runtime, batch)


def result_json(results: list[ExportResult]) -> str:
    return json.dumps([r.to_dict() for r in results])
