"""The graph every exporter starts from: ``torch.export`` of the inference model, and its options.

Apart from :mod:`mobilenets.deploy.export` so that runtime modules (:mod:`mobilenets.deploy.litert`, ...)
can capture a graph without importing the table of exporters that lists them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..engine.stages import StageLog
from .extras import quiet_loggers

__all__ = ["ExportOptions", "dynamic_shapes", "export_program", "quiet"]


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
