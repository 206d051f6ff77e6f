"""The one table of deployment formats: :data:`FORMATS`.

Its rows drive :func:`mobilenets.deploy.export.export_model` (which exporter, which file suffix, what must
be installed), the verification that reloads each file in its runtime, the file-type detection of
:func:`mobilenets.deploy.runtimes.load_artifact` (:func:`artifact_format`), the bench backends that export
first, and the ``--help`` of ``mobilenets export`` (:func:`format_table`).

Adding a format: a row here, its writer in ``mobilenets.deploy.export.EXPORTERS`` and its reader in
``mobilenets.deploy.runtimes.LOADERS``, both keyed by the row's ``key`` (a test checks the three agree).
The rows hold data only, so this module sits below the exporters and the runtimes that use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..tables import render_table
from .extras import NeedsExtras, require
from .metadata import ArtifactError

__all__ = ["FORMATS", "FORMAT_ALIASES", "WEIGHTS_FORMAT", "ExportFormat", "artifact_format", "format_table",
           "resolve_format"]

WEIGHTS_FORMAT = "weights"
"""The format key of a ``save_pretrained`` / run directory (PyTorch weights, not an export)."""


@dataclass(frozen=True)
class ExportFormat(NeedsExtras):
    """One deployment format: its files, which runtime verifies it, what it needs installed."""

    key: str
    name: str
    suffixes: tuple[str, ...]
    runtime: str
    extra: str | None
    modules: tuple[str, ...]
    dynamic_batch: bool
    embeds_metadata: bool
    notes: str = ""
    companions: tuple[str, ...] = ()
    """Files written beside the main one, as the suffix that replaces its last one (OpenVINO's ``.bin``)."""
    precisions: tuple[str, ...] = ("fp32",)
    """Float precisions the exporter can write (``--precision``); the first is the exact, default one."""
    channels_last_io: bool = False
    """The exporter can give the file an NHWC input (``--channels-last-io``)."""
    predicts_on: tuple[str, ...] | None = None
    """``sys.platform`` values where the runtime can run the file (``None``: everywhere the extra installs);
    elsewhere the export is written and reported as not verified on this platform, never as verified."""

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    def check_installed(self) -> None:
        """Raise :class:`MissingExtraError` naming ``pip install mobilenets[extra]`` if a module is missing."""
        for module in self.modules:
            require(module, self.extra or "onnx", f"The {self.name} format")


FORMATS: dict[str, ExportFormat] = {
    f.key: f
    for f in (
        ExportFormat("onnx", "ONNX", (".onnx",), "onnxruntime", "onnx", ("onnx", "onnxscript", "onnxruntime"),
                     True, True, "torch.onnx dynamo exporter; metadata in metadata_props"),
        ExportFormat("torchscript", "TorchScript", (".pt", ".torchscript"), "torch.jit.load", None, (), True, True,
                     "traced and frozen; metadata as an extra file"),
        ExportFormat("pt2", "torch.export", (".pt2",), "torch.export.load", None, (), True, True,
                     "ExportedProgram archive; metadata as an extra file"),
        ExportFormat("executorch", "ExecuTorch (XNNPACK)", (".pte",), "executorch.runtime", "executorch",
                     ("executorch",), True, False,
                     "XNNPACK delegate; a dynamic batch is bounded by the memory plan; metadata in the sidecar"),
        ExportFormat("openvino", "OpenVINO IR", (".xml",), "openvino (f32 hint)", "openvino", ("openvino",), True,
                     True, "fp32 weights (.xml + .bin); metadata in rt_info; --precision bf16 runs with the bf16 hint",
                     companions=(".bin",), precisions=("fp32", "bf16")),
        ExportFormat("litert", "LiteRT (TFLite)", (".tflite",), "ai_edge_litert Interpreter (XNNPACK)", "litert",
                     ("litert_torch", "ai_edge_litert"), False, True,
                     "litert-torch, no TensorFlow; fixed batch; metadata in the flatbuffer; --precision fp16 stores "
                     "fp16 weights", precisions=("fp32", "fp16"), channels_last_io=True),
        ExportFormat("ncnn", "NCNN", (".param",), "ncnn (Python runtime)", "ncnn", ("pnnx", "ncnn"), False, False,
                     "pnnx; .ncnn.param + .ncnn.bin; fixed batch 1; --precision fp16 stores fp16 weights and runs "
                     "fp16 storage/arithmetic", companions=(".bin",), precisions=("fp32", "fp16")),
        ExportFormat("mnn", "MNN", (".mnn",), "MNN (Python runtime)", "mnn", ("MNN",), False, True,
                     "MNN's converter from the pip package (via ONNX); fp32 weights; fixed batch; metadata in "
                     "bizCode"),
        ExportFormat("coreml", "Core ML", (".mlpackage",), "coremltools (macOS only)", "coreml", ("coremltools",),
                     False, True, "ML program; metadata in user_defined_metadata; predicts on macOS only",
                     predicts_on=("darwin",)),
    )
}


FORMAT_ALIASES: dict[str, str] = {"tflite": "litert"}
"""Other names users type for a format: ``tflite`` is what TFLite's own docs and ultralytics call LiteRT's
file. Accepted by ``export`` and ``quantize`` (``--format tflite``, ``--target tflite``) and resolved to
the key before anything else reads it."""


def resolve_format(name: str, keys: Iterable[str], what: str = "export format") -> str:
    """``name`` as one of ``keys`` (an alias of :data:`FORMAT_ALIASES` resolved), or a one-line error
    naming the closest key."""
    from .._validate import did_you_mean

    keys = list(keys)
    key = FORMAT_ALIASES.get(str(name).lower(), str(name).lower())
    if key in keys:
        return key
    raise ValueError(f"unknown {what} {name!r}{did_you_mean(name, [*keys, *FORMAT_ALIASES])}; "
                     f"expected one of {', '.join(keys)}")


def artifact_format(path: str | Path) -> str:
    """The format key of ``path``: a row of :data:`FORMATS` or :data:`WEIGHTS_FORMAT`."""
    path = Path(path)
    if path.suffix.lower() == ".mlpackage":
        return "coreml"
    if path.is_dir() or path.name in ("model.safetensors", "config.json"):
        return WEIGHTS_FORMAT
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt.key
    known = ", ".join(f"{s} ({f.key})" for f in FORMATS.values() for s in f.suffixes)
    raise ArtifactError(f"{path}: unknown artefact type {suffix or '(no suffix)'!r}; expected a weights directory or {known}")


def format_table() -> str:
    """The format table as text, for ``--help`` and the docs."""
    rows = [(f.key, "/".join(f.suffixes), f.runtime, f"mobilenets[{f.extra}]" if f.extra else "-", f.notes)
            for f in FORMATS.values()]
    return render_table(("format", "file", "verified with", "pip extra", "notes"), rows, align="lllll", rule=False)
