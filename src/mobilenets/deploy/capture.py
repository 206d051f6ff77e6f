"""The graph every exporter starts from: ``torch.export`` of the inference model, and its options.

Apart from :mod:`mobilenets.deploy.export` so that runtime modules (:mod:`mobilenets.deploy.litert`, ...)
can capture a graph without importing the table of exporters that lists them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine.stages import StageLog
from .extras import quiet_loggers
from .metadata import ArtifactMetadata

__all__ = ["ExportOptions", "add_onnx_metadata", "dynamic_shapes", "export_onnx", "export_program", "quiet"]


@dataclass(frozen=True)
class ExportOptions:
    batch: int | None
    max_batch: int | None
    input_size: int
    channels_last_io: bool = False
    """The file takes NHWC input (what camera pipelines hand over) instead of NCHW."""
    precision: str = "fp32"
    """``fp32``, or a reduced float precision the format offers (``fp16``, ``bf16``): see ``ExportFormat.precisions``."""
    stages: StageLog = field(default_factory=lambda: StageLog(enabled=False), compare=False)
    """Where an exporter reports its sub-steps (e.g. ExecuTorch: capture, then lowering)."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the progress prints and deprecation chatter of the exporters (errors still raise)."""
    with warnings.catch_warnings(), quiet_loggers(
        "torch.onnx", "torch._dynamo", "torch.export", "torchao", "executorch", "torch._export", "onnxscript",
        "torch.utils._pytree",
    ):
        warnings.simplefilter("ignore")
        yield


def dynamic_shapes(opts: ExportOptions) -> tuple[dict[int, Any], ...] | None:
    if opts.batch is not None:
        return None
    return ({0: torch.export.Dim("batch", min=1, max=opts.max_batch or 4096)},)


def export_program(model: nn.Module, x: torch.Tensor, opts: ExportOptions) -> torch.export.ExportedProgram:
    """``torch.export`` of the inference graph; a dynamic batch is traced from a batch-2 example."""
    with quiet(), torch.no_grad():
        return torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes(opts), strict=False)


def export_onnx(model: nn.Module, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    """ONNX through the dynamo exporter, metadata embedded (also the input of MNN's converter and ORT's
    quantizer, hence here beside the capture rather than among the table's writers)."""
    with quiet(), torch.no_grad():
        torch.onnx.export(
            model, (x,), str(out), dynamo=True, dynamic_shapes=dynamic_shapes(opts), input_names=["input"],
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
