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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..fileio import file_digest
from .capture import ExportOptions, quiet
from .extras import require
from .fuse import InferenceModel
from .metadata import ArtifactError, ArtifactMetadata, read_metadata
from .predictor import Predictor, default_threads

__all__ = ["PARAM_MAGIC", "NcnnPredictor", "bin_path", "export_ncnn", "load_ncnn"]

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

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        ncnn = self._ncnn
        rows = []
        for image in x.numpy():
            c, h, w = image.shape
            # A Mat of ncnn's own (channel-aligned) allocation, filled through its buffer view: a Mat made
            # from a numpy array only borrows the array's memory, which must then outlive the extractor.
            mat = ncnn.Mat(w, h, c)
            np.asarray(mat)[...] = image
            ex = self.net.create_extractor()
            if ex.input(self.input_name, mat) != 0:
                raise ArtifactError(f"{self.path}: ncnn refused the input blob {self.input_name!r}")
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
