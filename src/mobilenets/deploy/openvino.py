"""OpenVINO: the IR writer shared by export and int8, OpenVINO's own int8 (NNCF), and its proof.

Why NNCF rather than handing OpenVINO the ONNX Runtime QDQ file: OpenVINO reads that file, but ORT's
placement of quantize/dequantize pairs is not the one OpenVINO's low-precision transformations fuse, so
parts run in float with reorders between them (MobileNetV3-Large on a 2-core Zen 4 with VNNI: 9.5 ms
int8 against 5.3 ms fp32). NNCF places FakeQuantize where the CPU plugin folds it into its int8
convolution kernels; the same model then runs every convolution in u8/i8 (about 2 ms).

The proof is read from the *compiled* graph (:func:`inspect_openvino`): the plugin reports, per fused
layer, the precision it runs in, so a convolution left in float cannot hide behind a FakeQuantize in the IR.
NNCF keeps squeeze-excite blocks in float by design (an ignored pattern that no option turns off), which
would leave every trained MobileNetV3's SE convolutions float; :func:`squeeze_excite_quantized` lifts that
pattern for the call, so they run in int8 like on every other int8 target. One allowance remains, counted
and named, for an NNCF whose internals moved: a convolution on a 1×1 map (an SE's squeeze or excite) may run
in float. A float convolution anywhere else, or a float fully-connected layer, fails the command.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..engine.stages import StageLog, as_stage_log
from .capture import ExportOptions, export_program, quiet
from .extras import quiet_imports, require
from .metadata import ArtifactMetadata, refuse_float

__all__ = ["OpenVINOReport", "check_integer", "inspect_openvino", "quantize_openvino", "save_openvino",
           "to_openvino"]

#: Layers of the compiled graph that hold weights: each must run in an integer precision in an int8 file.
WEIGHTED_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "FullyConnectedCompressed")
#: Precisions the CPU plugin reports for integer execution.
INTEGER_PRECISIONS = ("u8", "i8", "i32")
#: Bookkeeping layers of the compiled graph that compute nothing.
_NOT_COMPUTE = ("Const", "Input", "Output", "Parameter", "Result", "Reshape", "Reorder")


def to_openvino(model: torch.nn.Module, x: torch.Tensor, opts: ExportOptions, meta: ArtifactMetadata) -> Any:
    """The ``openvino.Model`` of an inference graph (batch fixed or dynamic as ``opts`` says), with the
    metadata embedded in its runtime info so that the ``.xml`` alone runs in ``eval`` / ``predict``."""
    import openvino as ov

    ep = export_program(model, x, opts)
    with quiet():
        ov_model = ov.convert_model(ep)
    c, h, w = meta.input_size
    ov_model.reshape({ov_model.input(0): ov.PartialShape([-1 if opts.batch is None else opts.batch, c, h, w])})
    ov_model.set_rt_info(meta.to_json(), ["mobilenets", "metadata"])
    return ov_model


def save_openvino(ov_model: Any, out: Path, meta: ArtifactMetadata | None = None) -> None:
    """Write ``out`` (.xml + .bin); ``meta`` replaces the embedded metadata (an int8 file's census)."""
    import openvino as ov

    if meta is not None:
        ov_model.set_rt_info(meta.to_json(), ["mobilenets", "metadata"])
    # save_model compresses weights to fp16 by default: keep them as they are so the file matches eager.
    ov.save_model(ov_model, str(out), compress_to_fp16=False)


@dataclass
class OpenVINOReport:
    """What the CPU plugin compiled an IR into: layers by (type, runtime precision)."""

    layers: Counter[tuple[str, str]] = field(default_factory=Counter)
    float_weighted: list[str] = field(default_factory=list)
    """Weighted layers (convolution, fully-connected) the plugin runs in a float precision, except ..."""
    float_pooled: list[str] = field(default_factory=list)
    """... convolutions on a 1×1 map (squeeze-excite, float where NNCF's SE pattern could not be lifted)."""

    def summary(self) -> str:
        weighted = sum(v for (t, _), v in self.layers.items() if t in WEIGHTED_LAYERS)
        other_float = sum(v for (t, p), v in self.layers.items()
                          if t not in WEIGHTED_LAYERS and t not in _NOT_COMPUTE and p not in INTEGER_PRECISIONS)
        integer = sum(v for (t, p), v in self.layers.items() if t not in _NOT_COMPUTE and p in INTEGER_PRECISIONS)
        pooled = f", {len(self.float_pooled)} squeeze-excite convs on 1x1 maps float" if self.float_pooled else ""
        return (f"compiled layers: {integer} integer; {weighted} conv/fc layers, {len(self.float_weighted)} of "
                f"them float{pooled}; {other_float} other float layers")

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [[t, p, n] for (t, p), n in sorted(self.layers.items())],
                "float_weighted": self.float_weighted, "float_pooled": self.float_pooled}


def inspect_openvino(compiled: Any) -> OpenVINOReport:
    """Census a compiled model's runtime graph (``CompiledModel.get_runtime_model()``): each layer's type
    and the precision the plugin picked for it."""
    report = OpenVINOReport()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str)
        precision = info["runtimePrecision"].astype(str).lower()
        report.layers[(kind, precision)] += 1
        if kind in WEIGHTED_LAYERS and precision not in INTEGER_PRECISIONS:
            shape = op.input(0).get_partial_shape()
            spatial = [d.get_length() if d.is_static else -1 for d in list(shape)[2:]] if shape.rank.is_static else []
            on_1x1 = kind == "Convolution" and len(spatial) == 2 and spatial == [1, 1]
            (report.float_pooled if on_1x1 else report.float_weighted).append(
                f"{op.get_friendly_name()} ({kind}, {precision})")
    return report


def check_integer(report: OpenVINOReport, path: str | Path) -> None:
    """Fail when the "int8" file runs a convolution / fully-connected layer in float."""
    refuse_float(path, report.float_weighted, "conv/fc layers run in float")


def float_tail(ov_model: Any) -> list[str]:
    """Names of the operations between the last weighted layers and the outputs (a detector's box decoding,
    softmax and concatenation), which NNCF is told to leave in float: quantized, OpenVINO's low-precision
    transformations gave the decoding's int8 ``Unsqueeze`` a wrong shape (OpenVINO 2026.4), and decoding
    costs nothing next to the convolutions."""
    stop = ("Convolution", "GroupConvolution", "MatMul", "Parameter", "Constant")
    names: list[str] = []
    seen: set[str] = set()
    stack = [r.input_value(0).get_node() for r in ov_model.get_results()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() in stop:
            continue
        seen.add(name)
        names.append(name)
        stack.extend(node.input_value(i).get_node() for i in range(node.get_input_size()))
    return names


def _compile(ov_model: Any, threads: int) -> Any:
    import openvino as ov

    return ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": threads})


@contextlib.contextmanager
def squeeze_excite_quantized() -> Iterator[bool]:
    """Lift NNCF's squeeze-excite ignored pattern for the block; yields whether it could.

    NNCF keeps a squeeze-excite block in float whenever its convolutions carry a bias (every trained
    MobileNetV3's do), through an ignored pattern that no option of ``nncf.quantize`` turns off. The other
    int8 targets (LiteRT, XNNPACK, ONNX Runtime) quantize the same convolutions and lose nothing on the main
    job, and so does OpenVINO with the pattern lifted (99.72% -> 99.72%), while its file shrinks from 3.17
    to 1.93 MiB and MobileNetV3-Large with SE biases runs 2% faster (1.548 against 1.585 ms, Zen 4, 2
    threads). The pattern is dropped from the table NNCF reads
    (``PatternsManager._get_backend_ignored_patterns_map``) and put back afterwards; where a future NNCF
    has moved that table, nothing is changed and the SE stays float, counted by the census as its one
    allowance.
    """
    try:
        from nncf.common.graph.patterns.manager import PatternsManager
        from nncf.common.graph.patterns.patterns import IgnoredPatternNames

        original = PatternsManager.__dict__["_get_backend_ignored_patterns_map"]
        se_block = IgnoredPatternNames.SE_BLOCK
    except (ImportError, KeyError, AttributeError):
        yield False
        return

    def without_se(backend: Any) -> dict[Any, Any]:
        return {k: v for k, v in original.__func__(backend).items() if k != se_block}

    PatternsManager._get_backend_ignored_patterns_map = staticmethod(without_se)
    try:
        yield True
    finally:
        PatternsManager._get_backend_ignored_patterns_map = original


def quantize_openvino(graph: torch.nn.Module, calib: list[torch.Tensor], out: Path, meta: ArtifactMetadata,
                      stages: StageLog | Callable[[str], None] | None = None) -> OpenVINOReport:
    """int8 ``.xml`` of ``graph`` through NNCF's post-training quantization on the OpenVINO model.

    NNCF's performance preset: symmetric int8 activations and per-channel int8 weights, ranges from
    ``calib`` (normalised float32 NCHW batches of the training split), then fast bias correction. The file
    is compiled once here and its census is embedded; a conv/fc layer left in float fails the command.
    """
    require("nncf", "openvino", "int8 quantization for openvino")
    log = as_stage_log(stages)
    out = Path(out)
    example = torch.cat(calib)[: meta.batch or 2].float()  # batch 2 keeps a dynamic batch dynamic in capture
    opts = ExportOptions(meta.batch, None, meta.input_size[1])
    log("converting the float graph to OpenVINO (torch.export -> openvino.convert_model)")
    ov_model = to_openvino(graph, example, opts, meta)
    per_call = meta.batch or 1
    items = [b[i:i + per_call].float().contiguous().numpy() for b in calib for i in range(0, b.shape[0], per_call)]
    items = [a for a in items if a.shape[0] == per_call]
    if not items:
        raise ValueError(f"no calibration batch holds {per_call} images (the file's fixed batch)")
    progress = log.counted(len(items), "calibrating int8 ranges (NNCF)")

    def feed(a: Any) -> Any:
        progress.update(a.shape[0])
        return a

    with quiet_imports(), quiet():
        import logging

        import nncf

        nncf.set_log_level(logging.ERROR)
        ignored = nncf.IgnoredScope(names=float_tail(ov_model), validate=False) if meta.task == "detect" else None
        with squeeze_excite_quantized():
            quantized = nncf.quantize(ov_model, nncf.Dataset(items, feed), subset_size=len(items),
                                      preset=nncf.QuantizationPreset.PERFORMANCE,
                                      target_device=nncf.TargetDevice.CPU, ignored_scope=ignored)
    progress.close(f"calibrated on {len(items) * per_call} images ({progress.elapsed:.1f}s)")
    log("compiling the int8 model to check that every convolution runs in integer")
    report = inspect_openvino(_compile(quantized, 1))
    check_integer(report, out)
    meta.extra["int8_census"] = report.to_dict()
    log(f"writing {out} (+ {out.with_suffix('.bin').name})")
    save_openvino(quantized, out, meta)
    return report

