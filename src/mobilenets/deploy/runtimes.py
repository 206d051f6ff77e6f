"""Run any artefact: ``load_artifact(path)`` returns a :class:`Predictor` for every exported format.

A :class:`Predictor` takes a float32 NCHW batch that is already normalised (the same input the eager
model takes) and returns float32 logits. It hides each runtime's batch constraints: an artefact
exported for a fixed batch runs larger batches in chunks and pads the last one. The file type comes
from :data:`mobilenets.deploy.formats.FORMATS`, the preprocessing from the artefact's
:class:`~mobilenets.deploy.metadata.ArtifactMetadata`; each format's loader is its row in ``LOADERS``.
"""

from __future__ import annotations

import importlib.util
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .coreml import load_coreml
from .extras import quiet_imports, require, silence_native_stderr
from .formats import WEIGHTS_FORMAT, artifact_format
from .litert import load_litert
from .metadata import EXTRA_FILE, METADATA_KEY, ArtifactError, ArtifactMetadata, read_metadata
from .mnn import load_mnn
from .ncnn import load_ncnn
from .predictor import Predictor, check_declared_shape, check_file, default_threads, first_line

__all__ = [
    "LOADERS",
    "ExecuTorchPredictor",
    "OnnxPredictor",
    "OpenVINOPredictor",
    "Predictor",
    "TorchModulePredictor",
    "compile_module",
    "default_threads",
    "load_artifact",
    "program_batch_bound",
]


class TorchModulePredictor(Predictor):
    """Eager PyTorch (native weights, TorchScript, ``torch.export`` programs)."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, module: Callable[[torch.Tensor], torch.Tensor],
                 runtime: str, threads: int | None = None) -> None:
        super().__init__(path, metadata, runtime)
        self.module = module
        self.threads = threads

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.module(x).float()


class OnnxPredictor(Predictor):
    """ONNX Runtime on the CPU with all graph optimisations and ``threads`` intra-op threads."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, threads: int | None = None) -> None:
        super().__init__(path, metadata, "onnxruntime")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for every load failure
            raise ArtifactError(f"{path} could not be loaded by onnxruntime: {first_line(exc)}") from None
        self.input_name = self.session.get_inputs()[0].name
        check_declared_shape(path, metadata, self.session.get_inputs()[0].shape)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.numpy()})[0])


class OpenVINOPredictor(Predictor):
    """OpenVINO on the CPU with the f32 precision hint (its CPU default on bf16-capable CPUs is bf16, which
    loses ~1e-2), or the bf16 hint for a ``--precision bf16`` export (AVX512-BF16 / AMX-BF16 kernels where the
    CPU has them; OpenVINO falls back to f32 where it has not)."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, threads: int | None = None,
                 model: Any = None) -> None:
        super().__init__(path, metadata, "openvino" if metadata.precision != "bf16" else "openvino (bf16 hint)")
        import openvino as ov

        core = ov.Core()
        try:
            model = model if model is not None else core.read_model(str(path))
            self.compiled = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "bf16" if metadata.precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": int(threads or default_threads()),
                "PERFORMANCE_HINT": "LATENCY",
            })
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            raise ArtifactError(f"{path} could not be loaded by OpenVINO: {first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self._tensor = ov.Tensor
        check_declared_shape(path, metadata, list(self.compiled.input(0).get_partial_shape()))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        # The input is bound as a view of ``x`` and only output 0 is read back: ``infer({0: x})`` builds a
        # dict of every output on each call, 2% of int8 MobileNetV3-Large's 1.45 ms (same run, in turn).
        self.request.set_input_tensor(self._tensor(x.numpy(), shared_memory=True))
        self.request.infer()
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


class ExecuTorchPredictor(Predictor):
    """ExecuTorch's Python runtime (the XNNPACK delegate does the work for a lowered program)."""

    def __init__(self, path: Path, metadata: ArtifactMetadata, threads: int | None = None) -> None:
        super().__init__(path, metadata, "executorch")
        # The threadpool is created here (not lazily on the first run) so its cpuinfo probing, which
        # logs every /sys file it cannot open, happens while native stderr is muted.
        with quiet_imports(), silence_native_stderr():
            from executorch.runtime import Runtime

            runtime = Runtime.get()
            _set_executorch_threads(threads or default_threads())
            try:
                program = runtime.load_program(str(path))
                self.method = program.load_method("forward")
            except Exception as exc:  # the runtime raises RuntimeError/ValueError with status codes
                raise ArtifactError(f"{path} could not be loaded by ExecuTorch: {first_line(exc)}") from None
        if self.method is None:
            raise ArtifactError(f"{path} has no 'forward' method")
        planned = program_batch_bound(self.method)
        if metadata.batch is None and planned is not None:
            # The memory plan is the real limit of a dynamic batch (the XNNPACK partitioner can narrow
            # the exported range), so chunk by it whatever the metadata says.
            metadata.max_batch = planned

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.execute([x])[0].float().clone()


def program_batch_bound(method: Any) -> int | None:
    """The largest batch an ExecuTorch method's memory plan holds (its input 0's planned first dim)."""
    try:
        sizes = method.metadata.input_tensor_meta(0).sizes()
        return int(sizes[0]) if len(sizes) == 4 else None
    except (AttributeError, RuntimeError, IndexError, TypeError):
        return None


def _set_executorch_threads(threads: int) -> None:
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:  # pragma: no cover - depends on the ExecuTorch build
        return
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    get = getattr(portable_lib, "_threadpool_get_thread_count", None)
    if reset is not None and (get is None or get() != threads):
        reset(int(threads))


def _load_weights(path: Path, threads: int | None, fuse: bool = True) -> Predictor:
    from ..weights import from_pretrained, read_config
    from .fuse import prepare_for_export

    wdir = path.parent if path.is_file() else path
    model = from_pretrained(wdir).eval()
    config = read_config(wdir)
    model.dataset_name = config.get("dataset")
    module = prepare_for_export(model) if fuse else model
    meta = ArtifactMetadata.from_model(model, WEIGHTS_FORMAT, batch=None, source=str(wdir))
    return TorchModulePredictor(wdir, meta, module, "eager", threads)


def _load_torchscript(path: Path, threads: int | None) -> Predictor:
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"{path} is not a TorchScript archive (not a zip file: corrupt or truncated)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if not any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        raise ArtifactError(
            f"{path} is a PyTorch file but not a TorchScript module (a state dict or checkpoint?): "
            "for PyTorch weights pass their save_pretrained / run directory"
        )
    extra = {EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch.jit raises RuntimeError with C++ traces
        raise ArtifactError(f"{path} could not be loaded by torch.jit.load: {first_line(exc)}") from None
    meta = read_metadata(path, extra[EXTRA_FILE])
    return TorchModulePredictor(path, meta, module.eval(), "torchscript", threads)


def _load_pt2(path: Path, threads: int | None, compile: bool = False) -> Predictor:
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"{path} is not a torch.export archive (not a zip file: corrupt or truncated)")
    with zipfile.ZipFile(path) as zf:
        inner = next((n for n in zf.namelist() if n.endswith("/extra/" + EXTRA_FILE)), None)
        embedded = zf.read(inner) if inner else None
    meta = read_metadata(path, embedded)
    if meta.precision == "int8":
        _import_quant_ops()
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:  # deserialisation errors come in many types
        raise ArtifactError(f"{path} could not be loaded by torch.export.load: {first_line(exc)}") from None
    module = ep.module()
    runtime = "torch.export"
    if compile:
        # An int8 PT2E program is a reference graph (dequantize -> fp32 op -> quantize); Inductor with
        # freezing turns the patterns into oneDNN int8 kernels. Eager execution is exact but slow.
        module = compile_module(module, int8=meta.precision == "int8")
        runtime = "inductor"
    return TorchModulePredictor(path, meta, module, runtime, threads)


def compile_module(module: Callable[..., Any], *, int8: bool = False) -> Callable[..., Any]:
    """``torch.compile`` with Inductor freezing (weights become constants; int8 patterns fuse)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    if int8:
        inductor_config.cpp_wrapper = False
    return torch.compile(module, dynamic=False)


def _import_quant_ops() -> None:
    """Register the quantize/dequantize ops an int8 program references before deserialising it."""
    for mod in ("torch.ao.quantization.fx._decomposed", "torchao.quantization.pt2e"):
        try:
            with quiet_imports():
                importlib.import_module(mod)
        except ImportError:
            pass


def _load_onnx(path: Path, threads: int | None) -> Predictor:
    require("onnxruntime", "onnx", "Running ONNX artefacts")
    embedded = None
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        embedded = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    except ImportError:
        pass
    except Exception as exc:  # protobuf DecodeError and friends
        raise ArtifactError(f"{path} is not a valid ONNX model: {first_line(exc)}") from None
    return OnnxPredictor(path, read_metadata(path, embedded), threads)


def _load_openvino(path: Path, threads: int | None) -> Predictor:
    require("openvino", "openvino", "Running OpenVINO artefacts")
    import openvino as ov

    if not path.with_suffix(".bin").is_file():
        raise ArtifactError(f"{path}: the weights file {path.with_suffix('.bin').name} is missing beside it")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO's exceptions carry multi-line C++ context
        raise ArtifactError(f"{path} is not a readable OpenVINO IR: {first_line(exc)}") from None
    embedded = None
    if model.has_rt_info([METADATA_KEY, "metadata"]):
        embedded = str(model.get_rt_info([METADATA_KEY, "metadata"]).astype(str))
    return OpenVINOPredictor(path, read_metadata(path, embedded), threads, model=model)


def _load_executorch(path: Path, threads: int | None) -> Predictor:
    require("executorch", "executorch", "Running ExecuTorch artefacts")
    meta = read_metadata(path)
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[4:6] != b"ET":
        raise ArtifactError(f"{path} is not an ExecuTorch program (no ET flatbuffer identifier)")
    return ExecuTorchPredictor(path, meta, threads)


#: The loader of each format of :data:`FORMATS` (and of a weights directory), keyed like the table.
LOADERS: dict[str, Callable[..., Predictor]] = {
    WEIGHTS_FORMAT: _load_weights,
    "torchscript": _load_torchscript,
    "pt2": _load_pt2,
    "onnx": _load_onnx,
    "openvino": _load_openvino,
    "executorch": _load_executorch,
    "litert": load_litert,
    "ncnn": load_ncnn,
    "mnn": load_mnn,
    "coreml": load_coreml,
}


def load_artifact(path: str | Path, *, threads: int | None = None, compile: bool = False) -> Predictor:
    """Load a weights directory or any exported / quantized artefact for inference on the CPU.

    ``threads`` sets the runtime's intra-op threads (default: all cores). ``compile`` runs ``.pt2``
    programs through ``torch.compile`` (needed for int8 x86 speed; exact but slow without it).
    Raises :class:`FileNotFoundError` for a missing path, :class:`ArtifactError` for a corrupt or
    mismatched artefact and :class:`MissingExtraError` when the runtime is not installed.
    """
    path = Path(path)
    check_file(path)
    fmt = artifact_format(path)
    predictor = _load_pt2(path, threads, compile=compile) if fmt == "pt2" else LOADERS[fmt](path, threads)
    if predictor.metadata.format not in (fmt, WEIGHTS_FORMAT) and fmt != WEIGHTS_FORMAT:
        raise ArtifactError(
            f"{path}: metadata says format {predictor.metadata.format!r} but the file is {fmt!r}; "
            "the metadata belongs to another artefact"
        )
    return predictor
