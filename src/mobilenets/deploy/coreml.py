"""Core ML: ``.mlpackage`` (ML program) through ``coremltools``, which converts on any platform but
predicts only on macOS.

Elsewhere the export is written and reported as *not verified on this platform* (the ``predicts_on`` of
its :data:`~mobilenets.deploy.formats.FORMATS` row), never as verified; loading it for inference there is
refused with one line saying why. The metadata is embedded in ``user_defined_metadata`` (readable
everywhere), so on a Mac ``eval`` / ``predict`` / ``bench`` run the package alone.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .capture import ExportOptions, export_program, quiet
from .extras import quiet_loggers, require
from .metadata import METADATA_KEY, ArtifactError, ArtifactMetadata, read_metadata
from .predictor import Predictor, first_line

__all__ = ["CoreMLPredictor", "export_coreml", "load_coreml"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """coremltools logs a warning per untested torch version and missing native proxy, and draws
    progress bars on stderr; errors still raise."""
    with quiet(), quiet_loggers("coremltools"), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.redirect_stdout(io.StringIO()):
        yield


def export_coreml(graph: nn.Module, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    """ML program at the example's fixed batch, fp32 compute (so that a Mac reproduces eager within 1e-4)."""
    with _quiet():
        import coremltools as ct

        def convert(program: Any) -> Any:
            return ct.convert(program, inputs=[ct.TensorType(name="input", shape=tuple(x.shape), dtype=np.float32)],
                              outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                              compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16)

        # coremltools' TorchScript frontend fails on traced aten::size -> int casts (a detector's head
        # flattening, MobileNetV5's attention reshapes); its torch.export frontend takes the decomposed
        # program. Detectors go there directly, a classifier falls back to it.
        errors = []
        for frontend in (["export"] if meta.task == "detect" else ["trace", "export"]):
            if frontend == "trace":
                opts.stages("tracing the graph (torch.jit.trace) for coremltools")
                with torch.no_grad():
                    program = torch.jit.trace(graph.eval(), x, check_trace=False)
            else:
                opts.stages("capturing the graph (torch.export) for coremltools")
                fixed = ExportOptions(batch=int(x.shape[0]), max_batch=None, input_size=opts.input_size)
                program = export_program(graph.eval(), x, fixed).run_decompositions({})
            opts.stages("converting to a Core ML ML program")
            try:
                model = convert(program)
                break
            except Exception as exc:  # coremltools raises many types with long op dumps
                errors.append(first_line(exc))
        else:
            raise RuntimeError(f"coremltools could not convert the model: {'; then '.join(errors)}")
        model.user_defined_metadata[METADATA_KEY] = meta.to_json()
        model.short_description = f"mobilenets {meta.architecture or 'model'} ({meta.dataset or 'no dataset'})"
        # Save beside the target and swap in, so an interrupted save never leaves half a package as ``out``.
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
            staged = Path(tmp) / out.name
            model.save(str(staged))
            if out.exists():
                shutil.rmtree(out)
            staged.rename(out)


class CoreMLPredictor(Predictor):
    """``coremltools.models.MLModel.predict`` on macOS (CPU only, so results compare with eager)."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, model: object) -> None:
        super().__init__(path, metadata, "coreml")
        self.model = model

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.predict({"input": x.numpy()})  # type: ignore[attr-defined]
        return torch.from_numpy(np.asarray(out["logits"], dtype=np.float32))


def load_coreml(path: Path, threads: int | None) -> Predictor:
    """Read the package's metadata anywhere; run it only where Core ML can (macOS)."""
    require("coremltools", "coreml", "Running Core ML artefacts")
    if not path.is_dir() or not (path / "Manifest.json").is_file():
        raise ArtifactError(f"{path} is not a Core ML package (a .mlpackage directory with Manifest.json)")
    with _quiet():
        import coremltools as ct

        try:
            spec_model = ct.models.MLModel(str(path), skip_model_load=True)
        except Exception as exc:
            raise ArtifactError(f"{path} could not be read by coremltools: {first_line(exc)}") from None
        embedded = spec_model.user_defined_metadata.get(METADATA_KEY)
        meta = read_metadata(path, embedded) if embedded else read_metadata(path)
        if sys.platform != "darwin":
            raise ArtifactError(
                f"{path}: Core ML predicts on macOS only (this is {sys.platform}); the package converts and its "
                "metadata reads here, but nothing can run it")
        model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return CoreMLPredictor(path, meta, model)
