"""LiteRT (TFLite): export with ``litert-torch``, full-integer int8, and a predictor on ``ai_edge_litert``.

The ``.tflite`` is converted from the PyTorch graph directly (no TensorFlow). Three things peers get wrong
are checked here, not assumed:

* an "int8" file that is still float: :func:`inspect_tflite` reads the flatbuffer and counts its tensors by
  type and its operators by input type; :func:`check_integer` fails when any convolution or
  fully-connected layer computes in float;
* float islands: litert-torch's own PT2E quantizer leaves residual adds, hard-swish, the SE pooling and
  hard-sigmoid in float on our models (each island a DEQUANTIZE/QUANTIZE pair). :func:`int8_quantizer`
  annotates the aten ops of the captured graph directly (activation fused into the producer's output;
  hard-sigmoid and hard-swish rewritten as ``relu6(x + 3) * 1/6`` (times ``x``), whose ops have int8
  kernels in XNNPACK), so a MobileNetV3 is integer from its first convolution to its logits, in one
  XNNPACK partition;
* a transpose per convolution: the converter works in NHWC; the only TRANSPOSE allowed is the one on an
  NCHW graph input (none with ``channels_last_io``), checked by :func:`check_integer`.

The metadata is embedded as a flatbuffer ``metadata`` entry named ``mobilenets`` (as TFLite's own model
metadata is), so ``eval`` / ``predict`` / ``bench`` run the file alone.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..engine.stages import StageLog, as_stage_log
from ..fileio import atomic_write_bytes
from .capture import ExportOptions, quiet
from .extras import quiet_imports, silence_native_stderr
from .metadata import METADATA_KEY, ArtifactError, ArtifactMetadata, read_metadata, refuse_float
from .predictor import Predictor, default_threads, first_line

__all__ = [
        "LiteRTPredictor",
    "TFLiteReport",
    "check_integer",
    "export_litert",
    "inspect_tflite",
    "int8_quantizer",
    "load_litert",
    "quantize_litert",
]

_MAGIC = b"TFL3"
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL")
"""Operators whose compute is the model's cost: none may run in float in an int8 file."""


# ------------------------------------------------------------------------------------------ conversion
@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert-torch prints a progress tree on stdout and absl logs on fd 2; errors still raise."""
    with quiet(), quiet_imports(), contextlib.redirect_stdout(io.StringIO()), silence_native_stderr():
        yield


def _convert(module: nn.Module, example: torch.Tensor, quant_config: Any = None) -> bytes:
    import litert_torch

    with _quiet_converter():
        try:
            edge = litert_torch.convert(module, (example,), quant_config=quant_config)
        except Exception as exc:  # the converter raises many types with multi-page MLIR dumps
            raise RuntimeError(f"litert-torch could not convert the model: {first_line(exc)}") from None
        return bytes(edge.model_content())


def _nhwc(module: nn.Module) -> nn.Module:
    import litert_torch

    return litert_torch.to_channel_last_io(module, args=[0])


def _to_fp16_weights(model: bytes) -> bytes:
    """Store float weights as fp16 (DEQUANTIZE to fp32 at load): half the file; XNNPACK computes in fp32
    on x86 and in fp16 where the CPU has fp16 arithmetic (ARMv8.2+)."""
    from ai_edge_quantizer import quantizer as aeq
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    with _quiet_converter():
        q = aeq.Quantizer(bytearray(model))
        q.add_weight_only_config(".*", "*", 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
        return bytes(q.quantize().quantized_model)


def _embed_metadata(model: bytes, meta: ArtifactMetadata) -> bytes:
    """Add (or replace) the ``mobilenets`` metadata entry of the flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    obj = fbu.read_model_from_bytearray(bytearray(model))
    obj.metadata = [m for m in (obj.metadata or []) if _name(m.name) != METADATA_KEY]
    buf = schema.BufferT()
    buf.data = np.frombuffer(meta.to_json().encode(), dtype=np.uint8)
    obj.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(obj.buffers) - 1
    obj.metadata.append(entry)
    return bytes(fbu.convert_object_to_bytearray(obj))


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def export_litert(graph: nn.Module, x: torch.Tensor, opts: ExportOptions, out: Path, meta: ArtifactMetadata) -> None:
    """fp32 (or fp16-weight) ``.tflite`` of the inference graph at the example's fixed batch."""
    module, example = graph, x
    if opts.channels_last_io:
        module, example = _nhwc(graph), x.permute(0, 2, 3, 1).contiguous()
    opts.stages("converting with litert-torch (torch.export -> StableHLO -> TFLite)")
    model = _convert(module, example)
    if opts.precision == "fp16":
        opts.stages("storing the weights as fp16 (ai-edge-quantizer float casting)")
        model = _to_fp16_weights(model)
    atomic_write_bytes(out, _embed_metadata(model, meta))


# ------------------------------------------------------------------------------------------ int8
# aten ops by role in the int8 graph (``opname.overload``).
_FUSE = ("relu.default", "relu_.default", "hardtanh.default", "hardtanh_.default")
_WEIGHTED = ("conv2d.default", "linear.default")
_ELEMENTWISE = ("add.Tensor", "mul.Tensor")
_OWN_RANGE = ("hardswish.default", "hardswish_.default", "mean.dim", "adaptive_avg_pool2d.default",
              "cat.default", "avg_pool2d.default")
_SHARED = ("flatten.using_ints", "view.default", "reshape.default", "max_pool2d.default", "squeeze.dims",
           "permute.default", "clone.default", "dropout.default")


def _int8_specs() -> tuple[Any, Any, Any]:
    """Activation (histogram-calibrated, per tensor), constant (min/max) and per-channel weight specs."""
    with quiet_imports():
        from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
        from torchao.quantization.pt2e.quantizer import QuantizationSpec

    eps = {"eps": 2**-12}
    act = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                           observer_or_fake_quant_ctr=HistogramObserver.with_args(**eps))
    const = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                             observer_or_fake_quant_ctr=MinMaxObserver.with_args(**eps))
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_channel_symmetric,
                              ch_axis=0, observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(**eps))
    return act, const, weight


_SOFTMAX = ("softmax.int", "_softmax.default")


def _aten_name(n: Any) -> str:
    """``opname.overload`` of an fx node's aten target ('' for anything that is not a call)."""
    t = getattr(n, "target", None)
    if t is None:
        return ""
    return f"{getattr(t, '__name__', t)}" if not hasattr(t, "_overloadname") else f"{t._opname}.{t._overloadname}"


def int8_quantizer() -> Any:
    """PT2E quantizer for LiteRT's int8 kernels: s8 activations (per tensor), s8 symmetric per-channel
    weights, float bias (the converter makes it int32 with scale = input scale x weight scale).

    It annotates aten ops by target, so it sees what the graph computes whatever module or functional
    call produced it; unsupported ops (attention's matmuls) are left in float. Built on call: torchao is
    imported only when int8 is asked for."""
    with quiet_imports():
        from torchao.quantization.pt2e.quantizer import (
            FixedQParamsQuantizationSpec,
            QuantizationAnnotation,
            Quantizer,
            SharedQuantizationSpec,
        )

    act, const, weight = _int8_specs()
    # TFLite's int8 SOFTMAX only takes output scale 1/256, zero point -128 (a detector's probabilities).
    probs = FixedQParamsQuantizationSpec(torch.int8, 1 / 256, -128, -128, 127, torch.per_tensor_affine)
    target = _aten_name

    def annotated(n: torch.fx.Node) -> bool:
        return "quantization_annotation" in n.meta

    def mark(n: torch.fx.Node, inputs: dict[torch.fx.Node, Any], output: Any) -> None:
        n.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, output_qspec=output,
                                                                   _annotated=True)

    def fused_activation(n: torch.fx.Node) -> torch.fx.Node | None:
        users = list(n.users)
        if len(users) == 1 and users[0].op == "call_function" and target(users[0]) in _FUSE:
            return users[0]
        return None

    class _Quantizer(Quantizer):
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            _decompose_hard_activations(model)
            _scalars_to_constants(model)
            return model

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            for n in model.graph.nodes:
                if n.op != "call_function" or annotated(n):
                    continue
                kind = target(n)
                if kind in _WEIGHTED:
                    inputs = {n.args[0]: act, n.args[1]: weight}
                    self._with_output(n, inputs)
                elif kind in _ELEMENTWISE:
                    args = [a for a in n.args[:2] if isinstance(a, torch.fx.Node)]
                    if len(args) != 2:
                        continue
                    inputs = {a: (const if a.op == "get_attr" else act) for a in args}
                    self._with_output(n, inputs)
                elif kind in _OWN_RANGE:
                    srcs = n.args[0] if kind == "cat.default" else [n.args[0]]
                    # CONCATENATION wants one scale: a detector's boxes (0..1) join its probabilities at 1/256.
                    spec = probs if kind == "cat.default" and any(target(x) in _SOFTMAX for x in srcs) else act
                    mark(n, {s: spec for s in srcs if isinstance(s, torch.fx.Node)}, spec)
                elif kind in _SHARED and isinstance(n.args[0], torch.fx.Node):
                    src = n.args[0]
                    mark(n, {src: act}, SharedQuantizationSpec((src, n)))
                elif kind in _SOFTMAX and isinstance(n.args[0], torch.fx.Node):
                    mark(n, {n.args[0]: act}, probs)
                elif kind in _FUSE and isinstance(n.args[0], torch.fx.Node):
                    mark(n, {n.args[0]: act}, act)  # an activation with no producer to fuse into
            return model

        @staticmethod
        def _with_output(n: torch.fx.Node, inputs: dict[torch.fx.Node, Any]) -> None:
            relu = fused_activation(n)
            if relu is None:
                mark(n, inputs, act)
            else:  # quantize after the activation, so the converter fuses it into the op
                mark(n, inputs, None)
                mark(relu, {}, act)

        def validate(self, model: torch.fx.GraphModule) -> None:
            pass

    return _Quantizer()


def _decompose_hard_activations(gm: torch.fx.GraphModule) -> None:
    """``hardsigmoid(x)`` -> ``hardtanh(x + 3, 0, 6) * (1/6)`` and ``hardswish(x)`` -> ``x * hardsigmoid(x)``
    written the same way.

    LiteRT has no int8 hard-sigmoid but has int8 ADD (with the ReLU6 fused) and MUL, so the SE gate stays
    integer. It has an int8 HARD_SWISH, but its XNNPACK delegate does not take it: each one splits the
    delegated graph and runs in the reference kernel. MobileNetV3-Large measured 13.3-16.2 ms with HARD_SWISH
    (22 XNNPACK partitions) against 5.9-6.8 ms decomposed (one partition), same CPU, same run.
    """
    aten = torch.ops.aten
    sigmoid = (aten.hardsigmoid.default, aten.hardsigmoid_.default)
    swish = (aten.hardswish.default, aten.hardswish_.default)
    for n in list(gm.graph.nodes):
        if n.op != "call_function" or n.target not in (*sigmoid, *swish):
            continue
        x = n.args[0]
        with gm.graph.inserting_before(n):
            add = gm.graph.call_function(aten.add.Tensor, (x, 3.0))
            clamp = gm.graph.call_function(aten.hardtanh.default, (add, 0.0, 6.0))
            out = gate = gm.graph.call_function(aten.mul.Tensor, (clamp, 1.0 / 6.0))
            if n.target in swish:
                out = gm.graph.call_function(aten.mul.Tensor, (x, gate))
        for new in {add, clamp, gate, out}:
            new.meta["val"] = n.meta.get("val")
        n.replace_all_uses_with(out)
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()


def _scalars_to_constants(gm: torch.fx.GraphModule) -> None:
    """Scalar operands of add/mul become buffers, so the quantizer can give them int8 parameters."""
    aten = torch.ops.aten
    count = 0
    for n in list(gm.graph.nodes):
        if n.op != "call_function" or n.target not in (aten.add.Tensor, aten.mul.Tensor):
            continue
        args = list(n.args)
        val = n.meta.get("val")
        # Shaped like the tensor operand's rank (all ones): a 0-d constant makes the converter add a RESHAPE.
        rank = val.dim() if isinstance(val, torch.Tensor) else 0
        for i, a in enumerate(args[:2]):
            if isinstance(a, (int, float)):
                name = f"_int8_scalar_{count}"
                count += 1
                const = torch.full((1,) * rank, float(a))
                gm.register_buffer(name, const)
                with gm.graph.inserting_before(n):
                    attr = gm.graph.get_attr(name)
                if val is not None and hasattr(val, "fake_mode"):
                    attr.meta["val"] = val.fake_mode.from_tensor(const, static_shapes=True)
                args[i] = attr
        n.args = tuple(args)
    gm.graph.lint()
    gm.recompile()


@torch.no_grad()
def quantize_litert(graph: nn.Module, calib: list[torch.Tensor], out: Path, meta: ArtifactMetadata,
                    log: StageLog | Callable[[str], None] | None = None, *, int8_io: bool = False) -> TFLiteReport:
    """Full-integer int8 ``.tflite`` calibrated on ``calib`` (normalised NCHW batches of the training split).

    ``int8_io``: int8 input and output tensors (the caller quantizes with the file's scale and zero point);
    otherwise float32 ones with a QUANTIZE / DEQUANTIZE at the boundary. Raises if the result is not
    integer where it matters (:func:`check_integer`), and returns the flatbuffer's census.
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    with quiet_imports():
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    stages = as_stage_log(log)
    batch = meta.batch or 1
    nhwc = meta.layout == "NHWC"
    module = _nhwc(graph) if nhwc else graph

    def layout(t: torch.Tensor) -> torch.Tensor:
        return t.permute(0, 2, 3, 1).contiguous() if nhwc else t

    example = layout(calib[0][:1].expand(batch, *calib[0].shape[1:]).contiguous())
    stages("capturing the float graph (torch.export)")
    with quiet():
        dyn = ({0: torch.export.Dim("batch", min=1, max=4096)},)
        captured = torch.export.export(module, (layout(calib[0][:2]) if calib[0].shape[0] > 1 else
                                                torch.cat([example[:1]] * 2),), dynamic_shapes=dyn,
                                       strict=False).module()
        prepared = prepare_pt2e(captured, int8_quantizer())
    progress = stages.counted(len(calib), "calibrating")
    for x in calib:
        prepared(layout(x))
        progress.update(int(x.shape[0]))
    progress.close(f"calibrated on {progress.images} images ({progress.step}/{len(calib)} batches, "
                   f"{progress.elapsed:.1f}s)")
    with quiet():
        converted = convert_pt2e(prepared, fold_quantize=False)
        move_exported_model_to_eval(converted)  # litert-torch warns about (and keeps) train-mode graphs
    stages("converting the int8 graph with litert-torch")
    # litert-torch reads only "static PT2E" from the config: the q/dq pairs come from our quantizer.
    config = QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)))
    model = _convert(converted, example, quant_config=config)
    if not int8_io:
        model = _float_io(model)
    model = _embed_metadata(model, meta)
    report = inspect_tflite(model)
    heads = len(getattr(getattr(graph, "model", None), "cls_head", ())) if meta.task == "detect" else 0
    # 2 per detector head output, 2 heads per level; a segmenter's logits go back to NCHW once at the end.
    # An attention block (MobileNetV4 hybrid, V5) moves data by design: its own four transposes of the
    # heads plus one each where the query and value convolutions' NHWC maps are flattened to tokens
    # (measured: 78 in V5-Base's 13 blocks, against ~100 convolutions a transpose-per-conv defect would hit).
    from ..models.blocks import MultiQueryAttention2d

    attention = sum(isinstance(m, MultiQueryAttention2d) for m in graph.modules())
    check_integer(report, out, nhwc=nhwc,
                  head_transposes=4 * heads + (meta.task == "segment") + ATTENTION_TRANSPOSES * attention)
    atomic_write_bytes(out, model)
    return report


def _float_io(model: bytes) -> bytes:
    """Give an int8-io model float32 input/output: a QUANTIZE before the first op, a DEQUANTIZE after the
    last, with the tensors' own scale and zero point (what TFLite's converter does for float io)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    obj = fbu.read_model_from_bytearray(bytearray(model))
    sg = obj.subgraphs[0]

    def opcode(code: int) -> int:
        for i, oc in enumerate(obj.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                return i
        oc = schema.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        obj.operatorCodes.append(oc)
        return len(obj.operatorCodes) - 1

    def float_twin(index: int, suffix: str) -> int:
        src = sg.tensors[index]
        t = schema.TensorT()
        t.shape, t.shapeSignature = src.shape, src.shapeSignature
        t.type = schema.TensorType.FLOAT32
        t.name = _name(src.name) + suffix
        buf = schema.BufferT()
        obj.buffers.append(buf)
        t.buffer = len(obj.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    remap: dict[int, int] = {}
    for pos, index in enumerate(list(sg.inputs)):
        if sg.tensors[index].type != schema.TensorType.INT8:
            continue
        new = float_twin(index, "_float")
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(schema.BuiltinOperator.QUANTIZE), [new], [index]
        sg.operators.insert(0, op)
        sg.inputs[pos] = remap[index] = new
    for pos, index in enumerate(list(sg.outputs)):
        if sg.tensors[index].type != schema.TensorType.INT8:
            continue
        new = float_twin(index, "_float")
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(schema.BuiltinOperator.DEQUANTIZE), [index], [new]
        sg.operators.append(op)
        sg.outputs[pos] = remap[index] = new
    for sig in obj.signatureDefs or []:
        for item in [*(sig.inputs or []), *(sig.outputs or [])]:
            item.tensorIndex = remap.get(item.tensorIndex, item.tensorIndex)
    return bytes(fbu.convert_object_to_bytearray(obj))


# ------------------------------------------------------------------------------------------ inspection
@dataclass
class TFLiteReport:
    """What a ``.tflite`` computes in: tensors by type, operators by (name, input type, output type)."""

    tensors: Counter[str] = field(default_factory=Counter)
    ops: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    float_weighted: list[str] = field(default_factory=list)
    """Weighted operators (conv, depthwise, fully-connected, ...) whose input or weights are float."""
    transposes: list[str] = field(default_factory=list)
    """TRANSPOSE operators, named by where their input comes from (``graph input`` or the producing op)."""
    input_types: list[str] = field(default_factory=list)
    output_types: list[str] = field(default_factory=list)

    def summary(self) -> str:
        tensors = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.tensors.items()))
        weighted = sum(v for (op, _, _), v in self.ops.items() if op in WEIGHTED_OPS)
        float_ops = sum(v for (op, i, o), v in self.ops.items() if "FLOAT32" in (i, o) and op not in
                        ("QUANTIZE", "DEQUANTIZE"))
        return (f"tensors: {tensors}; {weighted} conv/fc ops, {len(self.float_weighted)} of them float; "
                f"{float_ops} other float ops; {len(self.transposes)} transpose; io "
                f"{'/'.join(self.input_types)} -> {'/'.join(self.output_types)}")

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": dict(self.tensors), "ops": [[*k, v] for k, v in sorted(self.ops.items())],
                "float_weighted": self.float_weighted, "transposes": self.transposes,
                "input_types": self.input_types, "output_types": self.output_types}


def inspect_tflite(model: bytes | str | Path) -> TFLiteReport:
    """Read the flatbuffer itself (not the interpreter, whose delegate hides ops) and census it."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    m = schema.Model.GetRootAsModel(buf, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    report = TFLiteReport()
    for s in range(m.SubgraphsLength()):
        sg = m.Subgraphs(s)
        types = [type_names.get(sg.Tensors(i).Type(), "?") for i in range(sg.TensorsLength())]
        report.tensors.update(types)
        producer: dict[int, str] = {}
        if s == 0:
            report.input_types = [types[sg.Inputs(i)] for i in range(sg.InputsLength())]
            report.output_types = [types[sg.Outputs(i)] for i in range(sg.OutputsLength())]
        graph_inputs = {sg.Inputs(i) for i in range(sg.InputsLength())}
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            code = m.OperatorCodes(op.OpcodeIndex())
            name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            ins = [op.Inputs(j) for j in range(op.InputsLength()) if op.Inputs(j) >= 0]
            outs = [op.Outputs(j) for j in range(op.OutputsLength())]
            in_t = types[ins[0]] if ins else "-"
            out_t = types[outs[0]] if outs else "-"
            report.ops[(name, in_t, out_t)] += 1
            if name in WEIGHTED_OPS and any(types[t] in ("FLOAT32", "FLOAT16") for t in ins[:2]):
                report.float_weighted.append(f"{name} #{i} ({in_t} input, {types[ins[1]]} weights)")
            if name == "TRANSPOSE":
                src = ins[0] if ins else -1
                report.transposes.append("graph input" if src in graph_inputs else producer.get(src, "?"))
            for t in outs:
                producer[t] = name
                if name in ("QUANTIZE", "DEQUANTIZE") and ins and ins[0] in graph_inputs:
                    graph_inputs.add(t)  # the input's type conversion still is the input
    return report


#: TRANSPOSE ops one multi-query attention block needs in a LiteRT graph (see :func:`quantize_litert`).
ATTENTION_TRANSPOSES = 6


def check_integer(report: TFLiteReport, path: str | Path, *, nhwc: bool, head_transposes: int = 0) -> None:
    """Fail when the "int8" file computes a convolution / fully-connected layer in float, or transposes
    anything but an NCHW graph input (the transpose-per-convolution defect). ``head_transposes``: how many
    more a detector may have (each head output is reordered to (row, column, anchor) by TRANSPOSE, RESHAPE,
    TRANSPOSE: data movement at the end, not a transpose per backbone convolution)."""
    refuse_float(path, report.float_weighted, "weighted ops run in float")
    allowed = (0 if nhwc else 1) + head_transposes
    inner = [t for t in report.transposes if t != "graph input"]
    if len(inner) > head_transposes or len(report.transposes) > allowed:
        raise ArtifactError(f"{path}: {len(report.transposes)} TRANSPOSE ops in the int8 graph (after "
                            f"{', '.join(report.transposes[:8])}); expected {allowed}")


# ------------------------------------------------------------------------------------------ runtime
class LiteRTPredictor(Predictor):
    """``ai_edge_litert``'s Interpreter with the XNNPACK delegate and ``threads`` threads.

    Takes normalised float32 NCHW like every predictor: an NHWC file gets the batch transposed, an int8-io
    file gets it quantized with the input tensor's scale and zero point (and its output dequantized).
    """

    def __init__(self, path: Path, metadata: ArtifactMetadata, threads: int | None = None) -> None:
        super().__init__(path, metadata, "litert")
        from ai_edge_litert.interpreter import Interpreter

        try:
            with silence_native_stderr():
                self.interpreter = Interpreter(model_path=str(path), num_threads=int(threads or default_threads()))
                self.interpreter.allocate_tensors()
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError with C++ context
            raise ArtifactError(f"{path} could not be loaded by LiteRT: {first_line(exc)}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        shape = [int(d) for d in self.input["shape"]]
        c, h, w = metadata.input_size
        want = [shape[0], h, w, c] if metadata.layout == "NHWC" else [shape[0], c, h, w]
        if shape != want:
            raise ArtifactError(f"{path.name}: graph input is {shape} but its metadata says {metadata.layout} "
                                f"{want}; the metadata belongs to another artefact")
        if metadata.batch is not None and shape[0] != metadata.batch:
            raise ArtifactError(f"{path.name}: graph batch {shape[0]} but metadata batch {metadata.batch}")

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.numpy()
        if self.metadata.layout == "NHWC":
            arr = np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
        dtype = self.input["dtype"]
        if dtype != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            arr = np.clip(np.round(arr / scale) + zero, info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self.input["index"], arr)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if out.dtype != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return torch.from_numpy(np.array(out, dtype=np.float32))


def _embedded_metadata(path: Path, data: bytes) -> str | None:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAsModel(data, 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if _name(entry.Name()) == METADATA_KEY:
            buf = m.Buffers(entry.Buffer())
            if buf.Offset() > 1:  # stored outside the flatbuffer (models over 2 GB)
                return data[buf.Offset():buf.Offset() + buf.Size()].decode()
            return buf.DataAsNumpy().tobytes().decode()
    return None


def load_litert(path: Path, threads: int | None) -> Predictor:
    """Load a ``.tflite``: check the flatbuffer identifier, read the embedded metadata (sidecar otherwise)."""
    from .extras import require

    require("ai_edge_litert", "litert", "Running LiteRT artefacts")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != _MAGIC:
        raise ArtifactError(f"{path} is not a LiteRT flatbuffer (no TFL3 identifier: corrupt or truncated)")
    try:
        embedded = _embedded_metadata(path, data)
    except Exception as exc:  # flatbuffers raises struct/index errors on a truncated file
        raise ArtifactError(f"{path} is a truncated or corrupt LiteRT flatbuffer: {first_line(exc)}") from None
    return LiteRTPredictor(path, read_metadata(path, embedded), threads)

