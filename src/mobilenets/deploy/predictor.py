"""What every loaded artefact is: a :class:`Predictor`, and the checks all loaders share.

Kept apart from :mod:`mobilenets.deploy.runtimes` (the ``LOADERS`` table) so that a runtime module such as
:mod:`mobilenets.deploy.litert` can define its predictor and loader without importing the table that lists it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .metadata import ArtifactError, ArtifactMetadata

__all__ = ["Predictor", "check_declared_shape", "check_file", "default_threads", "first_line"]


def default_threads() -> int:
    """All cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class Predictor:
    """A loaded artefact: ``predictor(x)`` maps a normalised float32 NCHW batch to float32 logits."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, runtime: str) -> None:
        self.path = path
        self.metadata = metadata
        self.runtime = runtime

    # Subclasses implement one call at a batch the graph accepts.
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> None:
        c, h, w = self.metadata.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise ValueError(
                f"{self.path.name} expects input of shape (N, {c}, {h}, {w}), got {tuple(x.shape)}"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``, or for a detector (``metadata.task == "detect"``) its graph's one
        output ``[N, A, 4 + num_classes]``, or for a segmenter (``"segment"``) per-pixel logits
        ``[N, num_classes, H, W]`` at the input size (whatever shape the runtime hands them back in)."""
        out = self._call(x)
        if self.metadata.task == "detect":
            out = out.reshape(x.shape[0], -1, 4 + self.metadata.num_classes)
        elif self.metadata.task == "segment":
            out = out.reshape(x.shape[0], self.metadata.num_classes, *x.shape[2:])
        return out

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        x = x.detach().to("cpu", torch.float32).contiguous()
        n = x.shape[0]
        chunk = self.metadata.batch or self.metadata.max_batch
        if chunk is None or n == chunk or (self.metadata.batch is None and n <= chunk):
            return self._run(x)
        outs = []
        for start in range(0, n, chunk):
            part = x[start:start + chunk]
            k = part.shape[0]
            if self.metadata.batch is not None and k < chunk:
                part = torch.cat([part, part[-1:].expand(chunk - k, *part.shape[1:])]).contiguous()
            outs.append(self._run(part)[:k])
        return torch.cat(outs)

    def as_module(self) -> nn.Module:
        """This predictor as an ``nn.Module`` (on the CPU) for code written against PyTorch models."""
        return _PredictorModule(self)

    def __repr__(self) -> str:
        m = self.metadata
        return f"{type(self).__name__}({self.path}, {m.format}/{m.precision}, input {m.input_size}, batch {m.batch})"


class _PredictorModule(nn.Module):
    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor
        # A parameter so that ``next(module.parameters()).device`` works (the CPU: every runtime here is).
        self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self.num_classes = predictor.metadata.num_classes
        self.in_chans = predictor.metadata.input_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(x)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:400]


def check_declared_shape(path: Path, meta: ArtifactMetadata, shape: list[Any]) -> None:
    """The runtime's declared input shape must agree with the metadata (a mismatched sidecar otherwise)."""
    dims: list[int | None] = []
    for d in shape:
        if hasattr(d, "is_static"):  # an OpenVINO Dimension
            dims.append(int(d.get_length()) if d.is_static else None)
            continue
        try:
            dims.append(int(d))
        except (TypeError, ValueError):
            dims.append(None)  # symbolic ('batch') or dynamic
    if len(dims) != 4:
        raise ArtifactError(f"{path.name}: expected a 4-D image input, the graph declares {shape}")
    for got, want, what in zip(dims[1:], meta.input_size, ("channels", "height", "width")):
        if got is not None and got != want:
            raise ArtifactError(
                f"{path.name}: graph input {what} is {got} but its metadata says {want} "
                f"(input_size {meta.input_size}); the metadata belongs to another artefact"
            )


def check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"artefact {path} not found")
    if path.is_file() and path.stat().st_size == 0:
        raise ArtifactError(f"{path} is empty (an interrupted export?)")
