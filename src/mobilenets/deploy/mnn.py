"""MNN: export through MNN's own converter, int8 through its quantization tools, run in its Python runtime.

Everything comes from the ``MNN`` pip package (``pip install 'mobilenets[mnn]'``): the fp32 graph is the
fixed-batch ONNX export of the inference model, converted by the converter compiled into the package
(``_tools.mnnconvert``, what the ``mnnconvert`` console script calls); int8 is either the converter's
weight-only quantization (``--weightQuantBits 8``) or the offline quantization tool (``_tools.mnnquant``,
the ``mnnquant`` / ``quantized.out`` tool) calibrated on images written from the calibration tensors.

Both tools are run in a child process: they print progress on the native stdout, may ``abort()`` on bad
input (the offline tool's default KL calibration crashes with SIGSEGV in MNN 3.6.1, so EMA is used), and
their Python wrappers (``MNN.tools.mnnconvert`` / ``mnnquant``) import a telemetry logger that runs
``pip install`` when its SDK is missing; the compiled ``_tools`` entry points are called directly instead.

The metadata JSON is embedded in the model's ``bizCode`` string and read back by :func:`load_mnn`; the
``<artifact>.json`` sidecar is written as for every format.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..engine.stages import StageLog, as_stage_log
from .capture import ExportOptions, export_onnx
from .extras import require
from .fuse import InferenceModel
from .metadata import ArtifactError, ArtifactMetadata, read_metadata
from .predictor import Predictor, check_declared_shape, check_file, default_threads, first_line

__all__ = ["MNN_MODES", "MnnPredictor", "MnnToolError", "export_mnn", "load_mnn", "mnn_convert", "quantize_mnn"]

MNN_MODES = ("full", "weight")
"""int8 flavours of :func:`quantize_mnn`: int8 activations and weights, or int8 weights with fp32 compute."""

_CONVERT = "import sys, _tools; _tools.mnnconvert(sys.argv)"
_QUANT = "import sys, _tools; _tools.mnnquant(sys.argv)"
_NOISE = ("The device supports",)  # printed by the native library when it loads, on every run


class MnnToolError(ArtifactError):
    """MNN's converter or quantization tool failed; the message carries its last meaningful line."""


# ------------------------------------------------------------------------------------------ quiet native code
@contextlib.contextmanager
def _native_quiet() -> Iterator[None]:
    """Mute file descriptors 1 and 2 for the block: importing MNN prints its CPU features on the native stdout
    and a refused model prints ``Invalidate buffer ...`` there, neither through Python's ``sys.stdout``.
    Python exceptions still carry their messages."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    try:
        with open(os.devnull, "w") as devnull:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(devnull.fileno(), fd)
                except OSError:  # pragma: no cover - no such descriptor
                    pass
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


def _import_mnn() -> tuple[Any, Any]:
    """``MNN.nn`` and ``MNN.expr``, imported with the native banner muted."""
    require("MNN", "mnn", "Running MNN artefacts")
    with _native_quiet():
        import MNN.expr as mnn_expr
        import MNN.nn as mnn_nn
    return mnn_nn, mnn_expr


# ------------------------------------------------------------------------------------------ the tools
def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
    return lines[-1][:400] if lines else "(no output)"


def _run_tool(script: str, args: list[str], out: Path, what: str, ok_marker: str) -> str:
    """Run one of MNN's compiled tools in a child process; raise :class:`MnnToolError` in one line unless it
    wrote ``out`` and printed ``ok_marker`` (the tools return success even after ``Invalid json``)."""
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          errors="replace", check=False)
    text = proc.stdout + "\n" + proc.stderr
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0 or ok_marker not in text:
        how = f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else f"failed (exit {proc.returncode})"
        raise MnnToolError(f"{what} {how} writing {out.name}: {_last_line(text)}")
    return text


def mnn_convert(model_file: Path, out: Path, *, framework: str = "ONNX", biz_code: str | None = None,
                weight_bits: int = 0) -> None:
    """``model_file`` (ONNX, or an ``.mnn`` with ``framework="MNN"``) -> ``out`` with MNN's converter; fp32
    weights unless ``weight_bits`` (weight-only int8). ``biz_code`` replaces the model's ``bizCode``."""
    args = ["-f", framework, "--modelFile", str(model_file), "--MNNModel", str(out)]
    if biz_code is not None:
        args += ["--bizCode", biz_code]
    if weight_bits:
        args += ["--weightQuantBits", str(int(weight_bits))]
    _run_tool(_CONVERT, args, out, "MNN's converter", "Converted Success")


def _biz_code(meta: ArtifactMetadata) -> str:
    """The metadata as one compact JSON line (the converter stores the ``bizCode`` string as given)."""
    return json.dumps(json.loads(meta.to_json()), separators=(",", ":"))


def _fixed_batch_onnx(graph: InferenceModel, x: torch.Tensor, opts: ExportOptions, path: Path,
                      meta: ArtifactMetadata) -> None:

    batch = opts.batch or meta.batch or 1
    if x.shape[0] != batch:
        x = x[:1].expand(batch, *x.shape[1:]).contiguous()
    export_onnx(graph, x, ExportOptions(batch, None, opts.input_size, stages=opts.stages), path, meta)


def export_mnn(graph: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    """The fixed-batch ONNX export of ``graph`` converted to ``out`` with fp32 weights and the metadata in
    ``bizCode``; MNN's runtime takes a fixed input shape (a predictor chunks other batches)."""
    require("MNN", "mnn", "The MNN format")
    with tempfile.TemporaryDirectory(prefix="mobilenets-mnn-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        opts.stages("exporting the fixed-batch ONNX graph for MNN's converter")
        _fixed_batch_onnx(graph, x, opts, onnx_path, meta)
        opts.stages("converting ONNX -> MNN (fp32 weights)")
        mnn_convert(onnx_path, out, biz_code=_biz_code(meta))


# ------------------------------------------------------------------------------------------ int8
def _write_calibration_images(calib: list[torch.Tensor], meta: ArtifactMetadata, folder: Path) -> int:
    """The offline tool reads calibration *images* (it normalises them itself with ``mean``/``normal``), so
    the normalised tensors are mapped back to 8-bit pixels: at most half a grey level off, far below what
    the activation ranges it measures are sensitive to."""
    from PIL import Image

    c = meta.input_size[0]
    if c not in (1, 3):
        raise ValueError(f"MNN's offline quantization reads GRAY or RGB images; this model has {c} channels")
    mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(meta.std, dtype=torch.float32).view(1, c, 1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for batch in calib:
        pixels = ((batch.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        for img in pixels:
            array = img[0].numpy() if c == 1 else img.permute(1, 2, 0).contiguous().numpy()
            Image.fromarray(array, mode="L" if c == 1 else "RGB").save(folder / f"{n:06d}.png")
            n += 1
    return n


def quantize_mnn(graph: InferenceModel, calib: list[torch.Tensor], out: Path, meta: ArtifactMetadata,
                 stages: StageLog | Callable[[str], None] | None = None, *, mode: str = "full") -> None:
    """int8 ``.mnn`` of ``graph``: ``mode="full"`` int8 activations and weights calibrated on ``calib``
    (MNN's offline quantization tool, EMA activation ranges, max-abs per-channel weights); ``"weight"``
    int8 weights only (the converter's ``--weightQuantBits 8``; compute stays fp32, the file shrinks 4x).
    ``calib`` holds normalised float32 NCHW batches; ``meta.batch`` is the file's fixed batch."""
    if mode not in MNN_MODES:
        raise ValueError(f"unknown MNN int8 mode {mode!r}; expected one of {', '.join(MNN_MODES)}")
    require("MNN", "mnn", "int8 quantization for mnn")
    log = as_stage_log(stages)
    out = Path(out)
    example = calib[0][:1].float()
    opts = ExportOptions(meta.batch or 1, None, meta.input_size[1], stages=log)
    with tempfile.TemporaryDirectory(prefix="mobilenets-mnn-") as tmp:
        root = Path(tmp)
        onnx_path = root / "model.onnx"
        log("exporting the fixed-batch ONNX graph for MNN's converter")
        _fixed_batch_onnx(graph, example, opts, onnx_path, meta)
        if mode == "weight":
            log(f"converting ONNX -> MNN with int8 weights -> {out}")
            mnn_convert(onnx_path, out, biz_code=_biz_code(meta), weight_bits=8)
            return
        fp32 = root / "fp32.mnn"
        log("converting ONNX -> MNN (fp32, the offline tool's input)")
        mnn_convert(onnx_path, fp32, biz_code=_biz_code(meta))
        images = _write_calibration_images(calib, meta, root / "calib")
        c, h, w = meta.input_size
        config = {
            "format": "GRAY" if c == 1 else "RGB",
            "mean": [m * 255.0 for m in meta.mean],
            "normal": [1.0 / (s * 255.0) for s in meta.std],
            "width": w, "height": h,
            "path": str(root / "calib") + os.sep,
            "used_image_num": images,
            # KL (the tool's default) dies with SIGSEGV in MNN 3.6.1 right after "fake quant weights done".
            "feature_quantize_method": "EMA",
            "weight_quantize_method": "MAX_ABS",
            "batch_size": 1,
        }
        (root / "quant.json").write_text(json.dumps(config))
        log(f"calibrating int8 activations on {images} images (MNN's offline quantization tool) -> {out}")
        _run_tool(_QUANT, [str(fp32), str(out), str(root / "quant.json")], out, "MNN's offline quantization tool",
                  "Quantize model done")


# ------------------------------------------------------------------------------------------ runtime
class MnnPredictor(Predictor):
    """MNN's Python runtime: an ``MNN.nn`` module on the CPU backend with ``threads`` threads.

    The module API (``nn.load_module_from_file`` with a runtime manager) is used over the legacy
    ``Interpreter``/session one: on MobileNetV3-Large both ran equally fast, and only the module exposes the
    ``bizCode`` that holds the metadata. ``precision="normal"`` is fp32 on x86 (``low`` would choose fp16 or
    bf16 kernels where the CPU has them) and matched eager PyTorch to ~1e-7, like ``high``, at less cost.
    """

    def __init__(self, path: Path, metadata: ArtifactMetadata, module: Any, expr: Any, threads: int) -> None:
        super().__init__(path, metadata, "mnn")
        self.module = module
        self.expr = expr
        self.threads = threads

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        F = self.expr
        inp = F.const(x.numpy(), list(x.shape), F.NCHW)
        out = F.convert(self.module.forward(inp), F.NCHW)
        return torch.from_numpy(out.read().astype("float32", copy=True)).reshape(x.shape[0], -1)


def _embedded_metadata(info: dict[str, Any]) -> str | None:
    text = str(info.get("bizCode") or "")
    return text if text.startswith("{") and '"format_version"' in text else None


def _declared_input_shape(expr: Any, path: Path, name: str) -> list[Any] | None:
    """The input shape the file declares (its Input op), or ``None`` when MNN does not say."""
    try:
        with _native_quiet():
            var = expr.load_as_dict(str(path)).get(name)
        return list(var.shape) if var is not None else None
    except Exception:  # pragma: no cover - depends on the MNN build
        return None


def load_mnn(path: Path, threads: int | None = None) -> Predictor:
    """A :class:`MnnPredictor` for ``path``; one-line :class:`ArtifactError` for a truncated or foreign
    file, missing metadata, or metadata whose input shape disagrees with the file's."""
    path = Path(path)
    check_file(path)
    mnn_nn, expr = _import_mnn()
    threads = int(threads or default_threads())
    try:
        with _native_quiet():
            runtime = mnn_nn.create_runtime_manager(({"backend": "CPU", "precision": "normal", "numThread": threads},))
            module = mnn_nn.load_module_from_file(str(path), [], [], runtime_manager=runtime)
    except Exception as exc:  # MNN raises SystemError/Exception after printing the reason natively
        raise ArtifactError(f"{path} could not be loaded by MNN (not a valid .mnn model: corrupt or truncated?): "
                            f"{first_line(exc)}") from None
    if module is None:
        raise ArtifactError(f"{path} could not be loaded by MNN (not a valid .mnn model: corrupt or truncated?)")
    info = module.get_info()
    meta = read_metadata(path, _embedded_metadata(info))
    names = list(info.get("inputNames") or [])
    if len(names) != 1:
        raise ArtifactError(f"{path.name}: expected one image input, the MNN model declares {names}")
    shape = _declared_input_shape(expr, path, names[0])
    if shape is not None:
        check_declared_shape(path, meta, shape)
        if meta.batch is not None and shape and int(shape[0]) not in (meta.batch, -1, 0):
            raise ArtifactError(f"{path.name}: graph input batch is {shape[0]} but its metadata says {meta.batch}; "
                                "the metadata belongs to another artefact")
    return MnnPredictor(path, meta, module, expr, threads)
