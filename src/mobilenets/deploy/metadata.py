"""What an artefact carries besides its graph: :class:`ArtifactMetadata` and its ``<artifact>.json`` sidecar.

Evaluation and prediction run an exported or quantized model exactly as they run the PyTorch weights,
with the same preprocessing, so every artefact carries its metadata (input size, mean/std, class names,
dataset, batch), embedded where the format has a place for it (ONNX ``metadata_props``, TorchScript /
``.pt2`` extra files, OpenVINO ``rt_info``) and always in a ``<artifact>.json`` sidecar, which is the only
copy for ``.pte``. The sidecar records the artefact's SHA-256 so a sidecar that belongs to another file is
refused instead of silently preprocessing with the wrong statistics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import nn

from ..fileio import file_digest

__all__ = ["POSTPROCESS_KEYS", "TASKS", "ArtifactError", "ArtifactMetadata", "read_metadata", "sidecar_path", "write_metadata"]

METADATA_KEY = "mobilenets"
SIDECAR_SUFFIX = ".json"
EXTRA_FILE = "mobilenets.json"


TASKS = ("classify", "detect", "segment")
POSTPROCESS_KEYS = ("score_thresh", "nms_thresh", "topk_candidates", "detections_per_img")
"""The detector attributes (``SSDLite``'s options) a detector artefact's metadata records."""


class ArtifactError(ValueError):
    """An artefact that cannot be used: corrupt, truncated, of an unknown kind, or not matching its metadata."""


def refuse_float(path: str | Path, float_layers: list[str], what: str) -> None:
    """Fail an "int8" artefact whose census (LiteRT's flatbuffer, OpenVINO's compiled graph, ncnn's file)
    names weighted layers computing in float; ``what`` says what they are and how the runtime reports them."""
    if float_layers:
        raise ArtifactError(f"{path}: not an integer model, {len(float_layers)} {what}: {', '.join(float_layers[:4])}")


@dataclass
class ArtifactMetadata:
    """What evaluation, prediction and benchmarking need to know about an artefact besides its graph."""

    format: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    class_names: list[str] | None = None
    dataset: str | None = None
    architecture: str | None = None
    batch: int | None = 1
    """Fixed batch size of the graph; ``None`` when the batch dimension is dynamic."""
    max_batch: int | None = None
    """Upper bound of a dynamic batch (ExecuTorch plans memory for it); ``None`` if unbounded."""
    precision: str = "fp32"
    layout: str = "NCHW"
    """Input layout of the graph: ``NCHW`` or ``NHWC``; a predictor always takes NCHW and transposes for NHWC."""
    quantization: dict[str, Any] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"
    """``classify`` (the graph gives logits), ``detect`` (``[N, A, 4 + C]``: boxes / input size, then class
    probabilities) or ``segment`` (per-pixel logits ``[N, K, H, W]`` at the input size); artefacts written
    before detectors existed have no entry and are classifiers."""
    postprocess: dict[str, Any] | None = None
    """A detector's post-processing settings (``score_thresh``, ``nms_thresh``, ``topk_candidates``,
    ``detections_per_img``), applied after the runtime by :mod:`mobilenets.deploy.detect`."""

    def to_json(self) -> str:
        return json.dumps({"format_version": 1, **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> ArtifactMetadata:
        names = {f.name for f in fields(cls)}
        required = ("format", "input_size", "mean", "std", "num_classes")
        missing = [k for k in required if k not in data]
        if missing:
            raise ArtifactError(f"{source}: metadata lacks {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            kwargs["input_size"] = tuple(int(v) for v in data["input_size"])
            kwargs["mean"] = tuple(float(v) for v in data["mean"])
            kwargs["std"] = tuple(float(v) for v in data["std"])
            kwargs["num_classes"] = int(data["num_classes"])
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{source}: malformed metadata ({exc})") from None
        if len(kwargs["input_size"]) != 3:
            raise ArtifactError(f"{source}: input_size must be (C, H, W), got {kwargs['input_size']}")
        kwargs["task"] = str(data.get("task") or "classify")
        if kwargs["task"] not in TASKS:
            raise ArtifactError(f"{source}: task {kwargs['task']!r} unknown; expected one of {', '.join(TASKS)}")
        if kwargs["task"] == "detect":
            post = data.get("postprocess")
            if not isinstance(post, dict) or any(k not in post for k in POSTPROCESS_KEYS):
                raise ArtifactError(f"{source}: a detector's metadata needs postprocess with "
                                    f"{', '.join(POSTPROCESS_KEYS)}, got {post!r}")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> ArtifactMetadata:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{source}: metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ArtifactError(f"{source}: metadata is not a JSON object")
        return cls.from_dict(data, source)

    @classmethod
    def from_model(cls, model: nn.Module, fmt: str, *, input_size: int | None = None, **kw: Any) -> ArtifactMetadata:
        """Metadata of a mobilenets model (its ``pretrained_cfg``), for an export at ``input_size``."""
        cfg = dict(getattr(model, "pretrained_cfg", {}))
        inner = getattr(model, "model", model)
        c, h, w = (tuple(cfg.get("input_size") or (getattr(model, "in_chans", 3), 224, 224)))
        if input_size is not None:
            h = w = int(input_size)
        names = getattr(inner, "class_names", None)
        task = str(cfg.get("task") or "classify")
        if task == "detect" and "postprocess" not in kw:
            kw["postprocess"] = {k: getattr(inner, k) for k in POSTPROCESS_KEYS}
        return cls(
            task=task,
            format=fmt,
            input_size=(int(c), int(h), int(w)),
            mean=tuple(float(v) for v in cfg.get("mean", (0.0,) * int(c))),
            std=tuple(float(v) for v in cfg.get("std", (1.0,) * int(c))),
            num_classes=int(getattr(model, "num_classes", cfg.get("num_classes", 0))),
            interpolation=str(cfg.get("interpolation") or "bilinear"),
            crop_pct=float(cfg.get("crop_pct") or 1.0),
            class_names=list(names) if names else None,
            dataset=getattr(inner, "dataset_name", None),
            architecture=getattr(inner, "model_name", None),
            **kw,
        )


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_metadata(path: str | Path, meta: ArtifactMetadata) -> Path:
    """Write the ``<artifact>.json`` sidecar (with the artefact's SHA-256); call after the artefact exists."""
    path = Path(path)
    data = json.loads(meta.to_json())
    data["artifact_sha256"] = file_digest(path)
    side = sidecar_path(path)
    side.write_text(json.dumps(data, indent=2))
    return side


def _read_sidecar(path: Path) -> ArtifactMetadata | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{side} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{side} is not a metadata object")
    digest = data.get("artifact_sha256")
    if digest and digest != file_digest(path):
        raise ArtifactError(
            f"{side} describes a different file than {path.name} (SHA-256 mismatch): the artefact was replaced "
            "or the sidecar copied from another export; re-export, or delete the stale sidecar"
        )
    return ArtifactMetadata.from_dict(data, str(side))


def read_metadata(path: str | Path, embedded: str | bytes | None = None) -> ArtifactMetadata:
    """The artefact's metadata: the embedded copy if given, otherwise the verified sidecar."""
    path = Path(path)
    if embedded:
        return ArtifactMetadata.from_json(embedded, f"{path} (embedded metadata)")
    meta = _read_sidecar(path)
    if meta is None:
        raise ArtifactError(
            f"{path} carries no mobilenets metadata and {sidecar_path(path).name} is missing: "
            "export it with `mobilenets export` (the sidecar records input size and normalisation)"
        )
    return meta
