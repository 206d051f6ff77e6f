"""NCNN: export through ``pnnx`` and run with the ``ncnn`` Python runtime.

An NCNN artefact is two files, ``NAME.ncnn.param`` (the graph, text) and ``NAME.ncnn.bin`` (the weights),
plus the ``NAME.ncnn.param.json`` sidecar (NCNN has no place for metadata). :func:`export_ncnn` traces the
inference graph to TorchScript and runs the ``pnnx`` converter binary of the pip package on it in a
temporary directory, because pnnx writes half a dozen side files (``.pnnx.param``, ``.pnnx.onnx``,
``_pnnx.py``, ``_ncnn.py``, ...) beside its input and prints hundreds of lines; only the two NCNN files
are kept. The binary is run directly rather than through ``pnnx.export``, which ignores the converter's
exit status, leaves its stderr on the console and imports the generated ``_pnnx.py`` afterwards.

The runtime (:class:`NcnnPredictor`) feeds one image at a time (ncnn's blobs are 3-D ``C×H×W``), so the
graph has batch 1 and :class:`~mobilenets.deploy.predictor.Predictor` chunks larger batches. ncnn turns on
fp16 storage and arithmetic by default where the CPU has them, which costs ~1e-3 in the logits, so an
fp32 artefact runs with every reduced-precision option off and reproduces eager PyTorch to ~1e-7.

The int8 section writes ncnn's int8 format itself (:func:`quantize_ncnn`; ncnn's C++ quantization tools
are not in its pip packages) and censuses it from the file (:func:`inspect_ncnn_int8`).

This module imports only the lower layers of the deploy package (``capture``, ``predictor``,
``metadata``, ``extras``, ``fuse``), never the ``EXPORTERS`` / ``LOADERS`` tables that list it; ``pnnx``
and ``ncnn`` are imported inside the functions so the package imports without the extra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine.stages import StageLog, as_stage_log
from ..fileio import file_digest
from .capture import ExportOptions, quiet
from .extras import require
from .fuse import InferenceModel
from .metadata import ArtifactError, ArtifactMetadata, read_metadata, refuse_float
from .predictor import Predictor, default_threads

__all__ = ["PARAM_MAGIC", "NcnnInt8Report", "NcnnPredictor", "bin_path", "export_ncnn", "inspect_ncnn_int8",
           "load_ncnn", "quantize_ncnn"]

PARAM_MAGIC = "7767517"
"""First line of every NCNN ``.param`` text file (ncnn refuses any other)."""

PNNX_TIMEOUT_S = 600
"""pnnx converts these models in seconds; a hung converter fails the export instead of blocking it."""

_BIN_DIGEST_KEY = "ncnn_bin_sha256"
_BIN_BYTES_KEY = "ncnn_bin_bytes"
# ncnn.Option flags that lower precision; ncnn enables the fp16 ones by default on CPUs that have them.
_FP16_OPTIONS = ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic")
_BF16_OPTIONS = ("use_bf16_storage", "use_bf16_packed")


def bin_path(param: Path) -> Path:
    """The weights file beside a ``.param``: ``x.ncnn.param`` -> ``x.ncnn.bin`` (what pnnx writes)."""
    return param.with_suffix(".bin")


# ------------------------------------------------------------------------------------------ export
def export_ncnn(graph: InferenceModel, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    """Write ``out`` (``.param``) and its ``.bin`` from the inference graph, via TorchScript and pnnx.

    fp32 stores fp32 weights (``fp16=0``: pnnx's default is fp16) so the fp32 runtime matches eager
    within 1e-4; ``opts.precision == "fp16"`` stores fp16 weights (half the file). The ``.bin``'s size
    and SHA-256 go into ``meta.extra`` (hence the sidecar): the sidecar's own digest covers the
    ``.param`` only, and a wrong ``.bin`` of the right size would otherwise load and answer garbage.
    """
    require("pnnx", "ncnn", "The NCNN format")
    import pnnx

    if opts.batch != 1:
        raise ValueError(f"--batch {opts.batch} invalid for ncnn: its runtime takes one image at a time; "
                         "export with --batch 1 (a predictor runs larger batches in chunks of it)")
    if opts.precision not in ("fp32", "fp16"):
        raise ValueError(f"--precision {opts.precision!r} invalid for ncnn; expected fp32 or fp16")
    example = x[:1].contiguous()
    shape = ",".join(str(d) for d in example.shape)
    with tempfile.TemporaryDirectory(prefix="mobilenets-ncnn-") as tmp:
        work = Path(tmp)
        script = work / "model.pt"
        opts.stages("tracing the graph to TorchScript")
        with quiet(), torch.no_grad():
            torch.jit.trace(graph.eval(), example, check_trace=False).save(str(script))
        param, weights = work / "model.ncnn.param", work / "model.ncnn.bin"
        command = [
            pnnx.EXEC_PATH, str(script), f"inputshape=[{shape}]f32", "device=cpu", "optlevel=2",
            f"fp16={1 if opts.precision == 'fp16' else 0}", f"ncnnparam={param}", f"ncnnbin={weights}",
            f"pnnxparam={work / 'model.pnnx.param'}", f"pnnxbin={work / 'model.pnnx.bin'}",
            f"pnnxpy={work / 'model_pnnx.py'}", f"pnnxonnx={work / 'model.pnnx.onnx'}",
            f"ncnnpy={work / 'model_ncnn.py'}",
        ]
        opts.stages("converting with pnnx")
        try:
            proc = subprocess.run(command, cwd=work, capture_output=True, text=True, errors="replace",
                                  timeout=PNNX_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"pnnx did not finish converting {out.name} within {PNNX_TIMEOUT_S} s") from None
        except OSError as exc:
            raise ArtifactError(f"pnnx could not be started ({pnnx.EXEC_PATH}): {exc}") from None
        if proc.returncode != 0 or not param.is_file() or not weights.is_file():
            status = f"exit status {proc.returncode}" if proc.returncode >= 0 else f"signal {-proc.returncode}"
            raise ArtifactError(f"pnnx failed to convert the graph to NCNN for {out.name} ({status}): "
                                f"{last_meaningful_line(proc.stderr + proc.stdout)}")
        _check_param_text(param, param.read_text(errors="replace"))
        target_bin = bin_path(out)
        shutil.move(str(param), str(out))
        shutil.move(str(weights), str(target_bin))
    meta.extra[_BIN_BYTES_KEY] = target_bin.stat().st_size
    meta.extra[_BIN_DIGEST_KEY] = file_digest(target_bin)


def last_meaningful_line(text: str) -> str:
    """The line of a converter's log that says why it failed: the last one naming an error, else the last one.

    pnnx logs its settings and pass banners (``############# pass_level1``) before any failure, and a
    libtorch abort ends with C++ frames; neither helps a user, the ``error`` / ``what():`` line does.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("#", "frame #", "Exception raised from"))]
    if not lines:
        return "(no output)"
    for ln in reversed(lines):
        low = ln.lower()
        if "error" in low or "what()" in low or "not supported" in low or "failed" in low:
            return ln[:300]
    return lines[-1][:300]


def _ncnn_log(text: str) -> str:
    """ncnn's few native log lines about a failure, as one line (``ModelBin read weight_data failed 61392;
    layer load_model 23 convrelu_11 failed``): the first says what, the last which layer."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines)[:400] if lines else "(ncnn gave no reason)"


# ------------------------------------------------------------------------------------------ int8
# ncnn's int8 file format, written here because ncnn's own tools for it (``ncnn2table``, ``ncnn2int8``) are
# C++ programs that no pip package ships. The format is the one ``ncnn2int8`` writes and ncnn's layers read
# (``Convolution::load_model`` and friends): a quantized layer carries ``8=int8_scale_term`` in the
# ``.param``, and in the ``.bin`` its weights as int8 behind the int8 tag, then its bias, then one weight
# scale per output channel (per group for a depthwise layer) and the scale of its input blob. A scale
# multiplies: ``q = round(x * scale)`` clamped to [-127, 127].

INT8_TAG = 0x000D4B38
"""Tag word before int8 weights in a ``.bin``."""
FP16_TAG = 0x01306B47
"""Tag word before fp16 weights."""
RAW_FP32_TAG = 0x0002C056
"""Tag word before fp32 weights that ncnn must not convert."""
QUANTIZABLE = {"Convolution": 2, "ConvolutionDepthWise": 1, "InnerProduct": 2}
"""Layer types ncnn runs in int8, with the ``int8_scale_term`` written for each: per-output-channel weight
scales (2 for Convolution / InnerProduct, 1 for ConvolutionDepthWise: one scale per group)."""
WEIGHTED_LAYERS = ("Convolution", "ConvolutionDepthWise", "InnerProduct", "Deconvolution", "DeconvolutionDepthWise")
"""Layers whose weights an int8 file must hold in int8 (a float one fails the command)."""


@dataclass
class NcnnLayer:
    """One line of a ``.param``: type, name, input and output blobs, and ``key=value`` parameters (kept as
    written, so an untouched layer is written back unchanged)."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, str]

    def get(self, key: int, default: int = 0) -> int:
        return int(float(self.params[str(key)])) if str(key) in self.params else default

    def line(self) -> str:
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        head = f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)}"
        return " ".join(x for x in (head, *self.bottoms, *self.tops, params) if x)


def parse_param(path: Path, text: str) -> tuple[int, list[NcnnLayer]]:
    """``(blob_count, layers)`` of a ``.param`` (checked by :func:`_check_param_text` first)."""
    _check_param_text(path, text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    layers = []
    for ln in lines[2:]:
        parts = ln.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
            bottoms, tops = parts[4:4 + n_in], parts[4 + n_in:4 + n_in + n_out]
            params = dict(kv.split("=", 1) for kv in parts[4 + n_in + n_out:])
        except (IndexError, ValueError):
            raise ArtifactError(f"{path}: malformed NCNN layer line {ln[:80]!r}") from None
        layers.append(NcnnLayer(parts[0], parts[1], bottoms, tops, params))
    return int(lines[1].split()[1]), layers


def format_param(blob_count: int, layers: list[NcnnLayer]) -> str:
    return "\n".join([PARAM_MAGIC, f"{len(layers)} {blob_count}", *(layer.line() for layer in layers)]) + "\n"


def _loads(layer: NcnnLayer) -> list[tuple[int, int]]:
    """The ``(count, type)`` of each ``ModelBin::load`` the layer's ``load_model`` makes, in order (type 0:
    tagged weights, type 1: raw fp32), for the layers pnnx writes with data; others load nothing."""
    t, g = layer.type, layer.get
    if t in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise"):
        if g(19 if t.startswith("Convolution") else 28):  # dynamic weight: an input, not a file blob
            return []
        loads = [(g(6), 0)] + ([(g(0), 1)] if g(5) else [])
        term = g(8) if t in QUANTIZABLE else 0  # deconvolutions have no int8 form in ncnn
        if term:
            # Weight scales: per output channel; depthwise per group (term 1 / 101) or one for all (2 / 102).
            per = g(0) if t == "Convolution" else (g(7, 1) if term in (1, 101) else 1)
            loads += [(per, 1), (1, 1)] + ([(1, 1)] if term > 100 else [])
        return loads
    if t == "InnerProduct":
        return [(g(2), 0)] + ([(g(0), 1)] if g(1) else []) + ([(g(0), 1), (1, 1)] if g(8) else [])
    if t == "MemoryData":
        dims = [d for d in (g(0), g(1), g(11), g(2)) if d]
        return [(int(np.prod(dims)), g(21, 1))] if dims else []
    if t == "BatchNorm":
        return [(g(0), 1)] * 4
    if t == "Scale":
        return [] if g(0) == -233 else [(g(0), 1)] + ([(g(0), 1)] if g(1) else [])
    if t == "PReLU":
        return [(g(0), 1)]
    if t in _NORMS:
        size_key, affine_key, blobs = _NORMS[t]
        return [(g(size_key), 1)] * blobs if g(affine_key, 1) else []
    return []


#: Normalisation layers: (parameter key of the affine size, key of the affine flag, blobs loaded).
_NORMS = {"LayerNorm": (0, 2, 2), "RMSNorm": (0, 2, 1), "InstanceNorm": (0, 2, 2), "GroupNorm": (1, 3, 2)}


def _chunk_size(data: bytes, offset: int, count: int, kind: int) -> int:
    """Bytes one load of ``count`` values takes at ``offset`` (a type-0 load starts with a tag word)."""
    if kind == 1:
        return 4 * count
    tag = int.from_bytes(data[offset:offset + 4], "little")
    if tag == FP16_TAG:
        return 4 + _align4(2 * count)
    if tag == INT8_TAG:
        return 4 + _align4(count)
    if tag in (0, RAW_FP32_TAG):
        return 4 + 4 * count
    return 4 + 256 * 4 + _align4(count)  # 8-bit indices into a 256-entry table


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def split_bin(path: Path, layers: list[NcnnLayer], data: bytes) -> list[list[bytes]]:
    """Each layer's blobs of the ``.bin``, in order; fails when the layers do not account for every byte
    (a layer type whose data this reader does not know, or a ``.bin`` of another graph)."""
    chunks: list[list[bytes]] = []
    offset = 0
    for layer in layers:
        mine = []
        for count, kind in _loads(layer):
            size = _chunk_size(data, offset, count, kind)
            if offset + size > len(data):
                raise ArtifactError(f"{bin_path(path)}: ends inside the weights of {layer.name} ({layer.type}); "
                                    "truncated, or the weights of another graph")
            mine.append(data[offset:offset + size])
            offset += size
        chunks.append(mine)
    if offset != len(data):
        raise ArtifactError(f"{bin_path(path)}: {len(data) - offset} bytes left after the weights of every layer "
                            "(a layer type this reader does not know holds data, or the file belongs to another graph)")
    return chunks


def _fp32_values(blob: bytes, name: str) -> np.ndarray:
    if int.from_bytes(blob[:4], "little") not in (0, RAW_FP32_TAG):
        raise ArtifactError(f"the weights of {name} are not stored in fp32 (export the fp32 graph first)")
    return np.frombuffer(blob[4:], dtype="<f4")


def _int8_weights(weights: np.ndarray, rows: int) -> tuple[bytes, np.ndarray]:
    """Symmetric per-row int8 of ``weights`` (``rows`` = output channels, or groups): the tagged blob and the
    scales ncnn multiplies by (127 / max |w| of the row)."""
    w = weights.reshape(rows, -1).astype(np.float64)
    peak = np.abs(w).max(axis=1)
    scales = 127.0 / np.where(peak > 0, peak, 127.0)  # an all-zero row keeps scale 1
    q = np.clip(np.rint(w * scales[:, None]), -127, 127).astype(np.int8).tobytes()
    blob = INT8_TAG.to_bytes(4, "little") + q + b"\0" * (_align4(len(q)) - len(q))
    return blob, scales.astype("<f4")


@dataclass
class NcnnInt8Report:
    """What an int8 ncnn file computes in, read from the file: weighted layers by (type, storage)."""

    layers: Counter[tuple[str, str]] = field(default_factory=Counter)
    float_weighted: list[str] = field(default_factory=list)
    requantized: int = 0
    """Layers that hand int8 straight to the next convolution (no dequantize/quantize between them)."""

    def summary(self) -> str:
        weighted = sum(v for (t, _), v in self.layers.items() if t in WEIGHTED_LAYERS)
        return (f"{weighted} conv/fc layers, {len(self.float_weighted)} of them float; {self.requantized} hand int8 "
                "straight to the next convolution")

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [[*k, v] for k, v in sorted(self.layers.items())], "float_weighted": self.float_weighted,
                "requantized": self.requantized}


def inspect_ncnn_int8(path: Path) -> NcnnInt8Report:
    """Census of a ``.param`` + ``.bin``: each weighted layer is int8 when it carries an ``int8_scale_term``
    and its weights behind the int8 tag."""
    path = Path(path)
    _, layers = parse_param(path, path.read_text())
    chunks = split_bin(path, layers, bin_path(path).read_bytes())
    report = NcnnInt8Report()
    for layer, mine in zip(layers, chunks, strict=True):
        if layer.type not in WEIGHTED_LAYERS or not mine:
            continue
        integer = layer.get(8) != 0 and int.from_bytes(mine[0][:4], "little") == INT8_TAG
        report.layers[(layer.type, "int8" if integer else "float")] += 1
        report.requantized += layer.get(8) > 100
        if not integer:
            report.float_weighted.append(f"{layer.name} ({layer.type})")
    return report


def _calibrate(fp32: NcnnPredictor, layers: list[NcnnLayer], calib: list[torch.Tensor],
               progress: Any) -> dict[str, float]:
    """max |x| of every quantized layer's input blob over the calibration images, from the fp32 file run in
    ncnn itself (so the ranges are those of the graph that will run, fusions included)."""
    fp32.net.opt.lightmode = False  # keep the intermediate blobs: several are read per image
    blobs = sorted({layer.bottoms[0] for layer in layers if layer.type in QUANTIZABLE and layer.bottoms})
    peaks = dict.fromkeys(blobs, 0.0)
    for batch in calib:
        for image in batch.float().numpy():
            ex = fp32.extractor(image)
            for blob in blobs:
                status, out = ex.extract(blob)
                if status != 0:
                    raise ArtifactError(f"{fp32.path}: ncnn failed to compute blob {blob!r} while calibrating")
                peaks[blob] = max(peaks[blob], float(np.abs(np.array(out)).max()))
        progress.update(1)
    return peaks


def quantize_ncnn(graph: InferenceModel, calib: list[torch.Tensor], out: Path, meta: ArtifactMetadata,
                  stages: StageLog | Callable[[str], None] | None = None) -> NcnnInt8Report:
    """int8 ``.ncnn.param`` + ``.ncnn.bin`` of ``graph``, in the format ncnn's ``ncnn2int8`` writes.

    Every Convolution, ConvolutionDepthWise and InnerProduct gets int8 weights (per output channel, per
    group for depthwise) and an int8 input (symmetric, max |x| over ``calib``, normalised float32 NCHW
    batches of the training split); a convolution feeding only another convolution hands it int8 directly
    (ncnn's requantize fusion). Other layers stay fp32. The written file is read back and censused; a
    weighted layer left in float fails the command.
    """
    require("pnnx", "ncnn", "int8 quantization for ncnn")
    log = as_stage_log(stages)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="mobilenets-ncnn-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.ncnn.param"
        fp32_meta = ArtifactMetadata(**{**meta.__dict__, "precision": "fp32", "extra": {}})
        log("exporting the fp32 graph through pnnx (the quantizer's input)")
        export_ncnn(graph, calib[0][:1].float(), ExportOptions(1, None, meta.input_size[1], stages=log), fp32,
                    fp32_meta)
        blob_count, layers = parse_param(fp32, fp32.read_text())
        chunks = split_bin(fp32, layers, bin_path(fp32).read_bytes())
        images = sum(int(b.shape[0]) for b in calib)
        progress = log.counted(len(calib), "calibrating int8 ranges in ncnn")
        peaks = _calibrate(NcnnPredictor(fp32, fp32_meta, default_threads()), layers, calib, progress)
        progress.close(f"calibrated on {images} images ({progress.elapsed:.1f}s)")
    input_scale: dict[str, float] = {}
    for i, layer in enumerate(layers):
        term = QUANTIZABLE.get(layer.type)
        if term is None or not chunks[i] or len(layer.bottoms) != 1:
            continue
        rows = layer.get(7, 1) if layer.type == "ConvolutionDepthWise" else layer.get(0)
        blob, scales = _int8_weights(_fp32_values(chunks[i][0], layer.name), rows)
        peak = peaks[layer.bottoms[0]]
        input_scale[layer.name] = 127.0 / peak if peak > 0 else 1.0
        chunks[i] = [blob, *chunks[i][1:], scales.tobytes(), np.float32(input_scale[layer.name]).tobytes()]
        layer.params["8"] = str(term)
    _fuse_requantize(layers, chunks, input_scale)
    log(f"writing {out} (+ {bin_path(out).name})")
    out.write_text(format_param(blob_count, layers))
    target_bin = bin_path(out)
    target_bin.write_bytes(b"".join(b for mine in chunks for b in mine))
    meta.extra[_BIN_BYTES_KEY] = target_bin.stat().st_size
    meta.extra[_BIN_DIGEST_KEY] = file_digest(target_bin)
    report = inspect_ncnn_int8(out)
    refuse_float(out, report.float_weighted, "conv/fc layers stay float")
    return report


def _fuse_requantize(layers: list[NcnnLayer], chunks: list[list[bytes]], input_scale: dict[str, float]) -> None:
    """A quantized convolution whose output feeds one quantized convolution and nothing else writes int8 in
    that layer's input scale (``int8_scale_term + 100`` and the scale appended), as ``ncnn2int8`` does:
    the pair then skips a dequantize and a quantize."""
    consumers: dict[str, list[NcnnLayer]] = {}
    for layer in layers:
        for blob in layer.bottoms:
            consumers.setdefault(blob, []).append(layer)
    for i, layer in enumerate(layers):
        if layer.type not in ("Convolution", "ConvolutionDepthWise") or layer.name not in input_scale:
            continue
        users = consumers.get(layer.tops[0], [])
        if len(users) != 1 or users[0].type not in ("Convolution", "ConvolutionDepthWise"):
            continue
        scale = input_scale.get(users[0].name)
        if scale is None:
            continue
        layer.params["8"] = str(layer.get(8) + 100)
        chunks[i].append(np.float32(scale).tobytes())


# ------------------------------------------------------------------------------------------ runtime
class NcnnPredictor(Predictor):
    """``ncnn.Net`` on the CPU: fp32 metadata runs with every fp16/bf16 option off (exact), fp16 with
    fp16 storage and arithmetic on; ``threads`` threads (default: all cores this process may use)."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, threads: int | None = None) -> None:
        super().__init__(path, metadata, "ncnn")
        import ncnn

        self._ncnn = ncnn
        net = ncnn.Net()
        net.opt.num_threads = int(threads or default_threads())
        reduced = metadata.precision == "fp16"
        for name in _FP16_OPTIONS:
            setattr(net.opt, name, reduced)
        for name in _BF16_OPTIONS:
            setattr(net.opt, name, False)
        weights = bin_path(path)
        with native_stderr() as log:
            status = net.load_param(str(path))
        if status != 0:
            raise ArtifactError(f"{path} could not be loaded by ncnn: {_ncnn_log(log())}")
        with native_stderr() as log:
            status = net.load_model(str(weights))
        if status != 0:
            raise ArtifactError(f"{weights} could not be loaded by ncnn for {path.name} (truncated or not this "
                                f"graph's weights): {_ncnn_log(log())}")
        inputs, outputs = list(net.input_names()), list(net.output_names())
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{path}: expected one input and one output blob, the graph has inputs {inputs} "
                                f"and outputs {outputs}")
        self.net = net
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.metadata.batch = 1  # one 3-D blob per call: the base class chunks larger batches

    def extractor(self, image: np.ndarray) -> Any:
        """An ``ncnn.Extractor`` of the net with ``image`` (C×H×W float32) as its input blob."""
        c, h, w = image.shape
        # A Mat of ncnn's own (channel-aligned) allocation, filled through its buffer view: a Mat made from a
        # numpy array only borrows the array's memory, which must then outlive the extractor.
        mat = self._ncnn.Mat(w, h, c)
        np.asarray(mat)[...] = image
        ex = self.net.create_extractor()
        if ex.input(self.input_name, mat) != 0:
            raise ArtifactError(f"{self.path}: ncnn refused the input blob {self.input_name!r}")
        return ex

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        rows = []
        for image in x.numpy():
            _, h, w = image.shape
            ex = self.extractor(image)
            with native_stderr() as log:
                status, out = ex.extract(self.output_name)
            if status != 0:
                raise ArtifactError(f"{self.path}: ncnn failed to compute {self.output_name!r}: "
                                    f"{_ncnn_log(log())}")
            logits = np.array(out, dtype=np.float32).reshape(-1)
            detect = self.metadata.task == "detect"  # [A, 4 + C] per image: a multiple of 4 + C values
            width = self.metadata.num_classes + (4 if detect else 0)
            if self.metadata.task == "segment":  # [K, H, W] per image
                width *= h * w
            if (logits.size % width != 0) if detect else (logits.size != width):
                raise ArtifactError(f"{self.path}: the graph outputs {logits.size} values per image but its "
                                    f"metadata says {self.metadata.num_classes} classes; the metadata belongs "
                                    "to another artefact")
            rows.append(torch.from_numpy(logits))
        return torch.stack(rows)


def load_ncnn(path: Path, threads: int | None) -> Predictor:
    """An :class:`NcnnPredictor` for ``path`` (``.param``) after checking both files and the sidecar.

    The checks come before ncnn sees the files because ncnn reports a bad file as a bare ``-1`` with a
    message on native stderr, and loads a ``.bin`` of the right size whatever its contents.
    """
    require("ncnn", "ncnn", "Running NCNN artefacts")
    path = Path(path)
    weights = bin_path(path)
    if not weights.is_file():
        raise ArtifactError(f"{path}: the weights file {weights.name} is missing beside it")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ArtifactError(f"{path} is not an NCNN .param file (binary, not text)") from None
    _check_param_text(path, text)
    meta = read_metadata(path)
    want_bytes, want_digest = meta.extra.get(_BIN_BYTES_KEY), meta.extra.get(_BIN_DIGEST_KEY)
    got_bytes = weights.stat().st_size
    if want_bytes is not None and got_bytes != int(want_bytes):
        raise ArtifactError(f"{weights} is {got_bytes} bytes but the export of {path.name} wrote {want_bytes}: "
                            "truncated, or the weights of another graph")
    if want_digest and file_digest(weights) != want_digest:
        raise ArtifactError(f"{weights} differs from the weights exported with {path.name} (SHA-256 mismatch): "
                            "the file was replaced or corrupted; re-export")
    return NcnnPredictor(path, meta, threads)


def _check_param_text(path: Path, text: str) -> None:
    """The structure ncnn expects: the magic line, ``layer_count blob_count``, then that many layer lines.

    Catches a truncated file that ends on a line boundary, which ncnn would report only as ``-1``.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != PARAM_MAGIC:
        raise ArtifactError(f"{path} is not an NCNN .param file (its first line is not the magic {PARAM_MAGIC})")
    try:
        layers, _blobs = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise ArtifactError(f"{path}: malformed NCNN .param (no 'layer_count blob_count' line)") from None
    if len(lines) - 2 != layers:
        raise ArtifactError(f"{path}: NCNN .param declares {layers} layers but holds {len(lines) - 2} "
                            "(truncated or edited)")


@contextlib.contextmanager
def native_stderr() -> Iterator[Callable[[], str]]:
    """Capture what native code writes to file descriptor 2 (ncnn logs load errors there, and only there);
    yields a function that returns the captured text, readable after the block."""
    captured = {"text": ""}
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr at all
        yield lambda: ""
        return
    with tempfile.TemporaryFile(mode="w+b") as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield lambda: captured["text"]
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            captured["text"] = buf.read().decode(errors="replace")
