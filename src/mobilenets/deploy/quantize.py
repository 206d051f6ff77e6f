"""Static int8 quantization: post-training (PTQ) and quantization-aware fine-tuning (QAT).

One target per int8 runtime:

* ``x86``: torchao's PT2E flow with the x86 Inductor quantizer (u8 activations, s8 per-channel
  weights); the artefact is a ``.pt2`` program that ``torch.compile`` lowers to oneDNN int8 kernels.
* ``xnnpack``: PT2E with ExecuTorch's XNNPACK quantizer (symmetric s8, per-channel weights), lowered
  to a ``.pte`` whose int8 ops run in XNNPACK.
* ``onnxruntime``: ONNX Runtime's static quantizer on the fp32 ONNX export (QDQ format, u8
  activations / s8 per-channel weights, which ORT fuses into QLinearConv on VNNI CPUs).
* ``openvino``: NNCF, OpenVINO's own post-training quantizer, on the OpenVINO model (the placement of
  FakeQuantize its CPU plugin fuses into int8 kernels, VNNI / AMX where the CPU has them); the compiled
  graph is checked to run every convolution and fully-connected layer in integer, from
  :mod:`mobilenets.deploy.openvino`. PTQ only.
* ``ncnn``: ncnn's int8 format written from the fp32 pnnx export (int8 per-channel weights, int8
  conv/fc inputs calibrated in ncnn itself, requantize between convolutions), from
  :mod:`mobilenets.deploy.ncnn`, because ncnn's own ``ncnn2table`` / ``ncnn2int8`` are not in its pip
  packages; the file is censused. PTQ only.
* ``mnn``: MNN's offline quantization tool on the fp32 ``.mnn`` (int8 activations with EMA ranges, int8
  per-channel weights), from :mod:`mobilenets.deploy.mnn`; PTQ only. Its weight-only int8
  (``quantize_mnn(..., mode="weight")``) shrinks the file without calibration.

``torch.ao.quantization.quantize_pt2e`` no longer exists in torch 2.13; the PT2E entry points live in
``torchao.quantization.pt2e``. Calibration always uses the training split (never the split the
accuracy is reported on). QAT fine-tunes the fake-quantized PT2E graph for a few epochs when PTQ loses
too much; for ``onnxruntime`` the fine-tuned graph is exported to ONNX as QDQ.

:mod:`mobilenets.deploy.quantize_run` quantizes a weights or run directory of any task (what
``mobilenets quantize`` does) on top of :func:`quantize_model`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.stages import StageLog, as_stage_log
from .capture import ExportOptions, add_onnx_metadata, dynamic_shapes, export_onnx, export_program, quiet
from .export import executorch_batch_bound, lower_to_executorch
from .extras import NeedsExtras, quiet_imports, require
from .formats import resolve_format
from .fuse import InferenceModel, is_detector, is_segmenter, prepare_for_export, spell_out_gelu_tanh
from .metadata import ArtifactMetadata, write_metadata

__all__ = ["METHODS", "QUANT_TARGETS", "QuantTarget", "QuantizeResult", "quantize_model", "quantize_pt2e"]


@dataclass(frozen=True)
class QuantTarget(NeedsExtras):
    """An int8 runtime: which artefact format it produces and what has to be installed."""

    key: str
    format: str
    suffix: str
    runtime: str
    requires: tuple[tuple[str, str], ...]
    """(module, pyproject extra) pairs."""
    description: str
    methods: tuple[str, ...] = ("ptq", "qat")
    fixed_batch: bool = False
    """The runtime takes one input shape: the file is written for batch 1 unless a batch is given."""

    def check_installed(self) -> None:
        for module, extra in self.requires:
            require(module, extra, f"int8 quantization for {self.key}")


QUANT_TARGETS: dict[str, QuantTarget] = {
    t.key: t
    for t in (
        QuantTarget("x86", "pt2", ".pt2", "inductor (oneDNN int8)", (("torchao", "quant"),),
                    "torchao PT2E + X86InductorQuantizer; run with torch.compile"),
        QuantTarget("xnnpack", "executorch", ".pte", "executorch (XNNPACK int8)",
                    (("torchao", "quant"), ("executorch", "executorch")),
                    "torchao PT2E + XNNPACKQuantizer, lowered to ExecuTorch"),
        QuantTarget("onnxruntime", "onnx", ".onnx", "onnxruntime (QDQ int8)",
                    (("onnx", "onnx"), ("onnxruntime", "onnx"), ("onnxscript", "onnx")),
                    "onnxruntime.quantization.quantize_static, QDQ, per-channel"),
        QuantTarget("litert", "litert", ".tflite", "ai_edge_litert (XNNPACK int8)",
                    (("torchao", "quant"), ("litert_torch", "litert"), ("ai_edge_litert", "litert")),
                    "full-integer int8 .tflite (s8 activations, s8 per-channel weights); proven integer from "
                    "the flatbuffer; --int8-io for int8 input/output", methods=("ptq",), fixed_batch=True),
        QuantTarget("openvino", "openvino", ".xml", "openvino (int8, VNNI / AMX kernels)",
                    (("openvino", "openvino"), ("nncf", "openvino")),
                    "NNCF post-training quantization of the OpenVINO model (symmetric s8 activations, per-channel "
                    "weights); the compiled graph is checked to run every conv/fc in integer", methods=("ptq",)),
        QuantTarget("ncnn", "ncnn", ".param", "ncnn (int8)", (("pnnx", "ncnn"), ("ncnn", "ncnn")),
                    "ncnn's int8 format (what ncnn2int8 writes): int8 per-channel weights and int8 conv/fc inputs "
                    "calibrated in ncnn; the file is censused, every conv/fc must be int8; + .bin", methods=("ptq",),
                    fixed_batch=True),
        QuantTarget("mnn", "mnn", ".mnn", "MNN (int8)", (("MNN", "mnn"),),
                    "MNN's offline quantization tool (EMA activations, per-channel weights)", methods=("ptq",),
                    fixed_batch=True),
        QuantTarget("mnn-weights", "mnn", ".mnn", "MNN (int8 weights, fp32 compute)", (("MNN", "mnn"),),
                    "MNN converter --weightQuantBits 8: 4x smaller file, float compute", methods=("ptq",),
                    fixed_batch=True),
    )
}

METHODS = ("ptq", "qat")
LARGE_DROP = 2.0
"""Top-1 points an int8 file may lose before its summary warns not to deploy it."""


def _pt2e_quantizer(target: str, *, is_qat: bool) -> Any:
    with quiet_imports():
        if target == "xnnpack":
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )

            quantizer = XNNPACKQuantizer()
            quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=is_qat))
            return quantizer
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        quantizer = X86InductorQuantizer()
        quantizer.set_global(get_default_x86_inductor_quantization_config(is_qat=is_qat))
        return quantizer


def _capture(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The ``torch.export`` graph module PT2E annotates (dynamic batch, so calibration batches may vary)."""
    ep = export_program(model, example, ExportOptions(batch=None, max_batch=None, input_size=example.shape[-1]))
    return ep.module()


@torch.no_grad()
def quantize_pt2e(
    graph: nn.Module, calibration: list[torch.Tensor], target: str = "x86",
    log: StageLog | Callable[[str], None] | None = None,
) -> nn.Module:
    """PTQ of an inference graph with a PT2E quantizer; returns the converted (q/dq reference) module.

    ``log`` hears each stage (capture, calibration batch by batch, conversion).
    """
    stages = as_stage_log(log)
    with quiet_imports():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    stages("capturing the float graph (torch.export)")
    captured = _capture(graph, calibration[0][:2] if calibration[0].shape[0] > 1 else calibration[0].repeat(2, 1, 1, 1))
    with quiet():
        prepared = prepare_pt2e(captured, _pt2e_quantizer(target, is_qat=False))
        progress = stages.counted(len(calibration), "calibrating")
        for x in calibration:
            prepared(x)
            progress.update(int(x.shape[0]))
        progress.close(f"calibrated on {progress.images} images ({progress.step}/{len(calibration)} batches, "
                       f"{progress.elapsed:.1f}s)")
        stages("converting observers to int8 quantize/dequantize ops")
        return convert_pt2e(prepared)


def qat_pt2e(
    model: nn.Module,
    train_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    example: torch.Tensor,
    target: str,
    *,
    epochs: int = 2,
    lr: float = 1e-4,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Quantization-aware fine-tuning: fake-quantized training of the un-folded graph, then convert.

    The graph is captured in train mode with BatchNorm intact so PT2E can simulate the folded,
    quantized convolution while BN statistics still adapt; observers are frozen for the last epoch
    so the final quantization parameters match the weights the last steps produced.
    """
    with quiet_imports():
        from torchao.quantization.pt2e import (
            disable_observer,
            move_exported_model_to_eval,
            move_exported_model_to_train,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    import copy

    net = InferenceModel(copy.deepcopy(model)).train()
    with quiet():
        captured = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=2, max=4096)},),
                                       strict=False).module()
        prepared = prepare_qat_pt2e(captured, _pt2e_quantizer(target, is_qat=True))
    params = [p for p in prepared.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for epoch in range(epochs):
        move_exported_model_to_train(prepared)
        if epoch == epochs - 1 and epochs > 1:
            prepared.apply(disable_observer)
        total, n = 0.0, 0
        for x, y in train_batches():
            if x.shape[0] < 2:
                continue  # BatchNorm in training mode needs more than one sample
            with quiet():
                loss = F.cross_entropy(prepared(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * x.shape[0]
            n += x.shape[0]
        if log is not None:
            log(f"qat epoch {epoch + 1}/{epochs}: loss {total / max(n, 1):.4f}")
    move_exported_model_to_eval(prepared)
    with quiet(), torch.no_grad():
        return convert_pt2e(prepared)


# ------------------------------------------------------------------------------------------- writers
def _drop_unused_tensors(gm: nn.Module) -> nn.Module:
    """Remove the float parameters ``convert_pt2e`` left attached but no longer uses (int8 copies replace
    them); otherwise ``torch.export`` saves both and the int8 file is larger than the fp32 one."""
    graph = getattr(gm, "graph", None)
    if graph is None:
        return gm
    used = {str(n.target) for n in graph.nodes if n.op == "get_attr"}
    for name, _ in [*gm.named_parameters(), *gm.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
    return gm


def _write_pt2(converted: nn.Module, example: torch.Tensor, out: Path, meta: ArtifactMetadata,
               stages: StageLog) -> None:
    stages(f"exporting the int8 program to {out} (torch.export)")
    ep = export_program(_drop_unused_tensors(converted), example, ExportOptions(batch=meta.batch, max_batch=meta.max_batch,
                                                          input_size=meta.input_size[1]))
    torch.export.save(ep, str(out), extra_files={"mobilenets.json": meta.to_json()})


def _write_pte(converted: nn.Module, example: torch.Tensor, out: Path, meta: ArtifactMetadata,
               stages: StageLog) -> None:
    stages("exporting the int8 graph (torch.export)")
    ep = export_program(_drop_unused_tensors(converted), example, ExportOptions(batch=meta.batch, max_batch=meta.max_batch,
                                                          input_size=meta.input_size[1]))
    stages(f"lowering to ExecuTorch with the XNNPACK int8 delegate -> {out} (the longest step)")
    lower_to_executorch(ep, out)
    if meta.batch is None:
        meta.max_batch = executorch_batch_bound(out) or meta.max_batch


def _write_onnx_qdq(converted: nn.Module, example: torch.Tensor, out: Path, meta: ArtifactMetadata,
                    stages: StageLog) -> None:
    """A PT2E-converted graph as ONNX: its quantize/dequantize pairs become QuantizeLinear/DequantizeLinear."""
    stages(f"exporting the QDQ graph to ONNX -> {out}")
    opts = ExportOptions(batch=meta.batch, max_batch=meta.max_batch, input_size=meta.input_size[1])
    with quiet(), torch.no_grad():
        torch.onnx.export(converted, (example,), str(out), dynamo=True, dynamic_shapes=dynamic_shapes(opts),
                          input_names=["input"], output_names=["logits"], external_data=False, optimize=True,
                          verbose=False)
    add_onnx_metadata(out, meta)


def quantize_onnx_static(
    graph: InferenceModel, calibration: list[torch.Tensor], out: Path, meta: ArtifactMetadata,
    log: StageLog | Callable[[str], None] | None = None,
) -> None:
    """ONNX Runtime static quantization (QDQ) of the fp32 ONNX export of ``graph``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # A fixed-batch graph only accepts its batch: feed the calibration images in chunks of it.
    step = meta.batch
    chunks = [c for x in calibration for c in (x.split(step) if step else (x,)) if step is None or c.shape[0] == step]
    feed = chunks or calibration
    stages = as_stage_log(log)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feed)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.items, None)
            if x is not None:
                progress.update(int(x.shape[0]))
            return None if x is None else {"input": x.numpy()}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        opts = ExportOptions(batch=meta.batch, max_batch=meta.max_batch, input_size=meta.input_size[1])
        stages("exporting the float graph to ONNX")
        export_onnx(graph, calibration[0][: meta.batch or 2], opts, fp32, meta)
        progress = stages.counted(len(feed), "calibrating (onnxruntime)")
        with quiet():
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        progress.close(f"calibrated and wrote {out} ({progress.images} images, {progress.step}/{len(feed)} batches, "
                       f"{progress.elapsed:.1f}s)")
    add_onnx_metadata(out, meta)


# ------------------------------------------------------------------------------------------- data
@dataclass
class _Data:
    calib: list[torch.Tensor]
    train: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    dataset: str
    split: str
    root: str | None  # the dataset directory used (typed, or recorded by the run)


def _load_data(meta: ArtifactMetadata, data: str | None, root: str | None, *,
               calib_batches: int, batch_size: int, split: str, source: str | Path | None = None) -> _Data:
    """Calibration batches from the training split; ``data`` / ``root`` default to what the weights and
    their run's ``config.yaml`` record (:func:`mobilenets.engine.evaluate.build_eval_datasets`)."""
    from ..data.augment import eval_preprocess
    from ..data.loader import make_batches
    from ..engine.evaluate import build_eval_datasets

    if data is None and meta.dataset is None and source is None:
        raise ValueError("the weights name no dataset (config.json has no 'dataset'); pass --data for calibration")
    size = meta.input_size[1]
    dataset, root, datasets = build_eval_datasets(
        source, data=data, root=root, known_dataset=meta.dataset, image_size=size, crop_pct=meta.crop_pct,
        interpolation=meta.interpolation, num_classes=meta.num_classes,
    )
    if split not in datasets:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(datasets)}")
    cpu = torch.device("cpu")
    loader, _ = make_batches(datasets["train"], batch_size, shuffle=True, seed=0, device=cpu,
                             device_resident=True, num_workers=0)
    calib = []
    for images, _labels in loader:
        calib.append(eval_preprocess(images, meta.mean, meta.std).contiguous())
        if len(calib) >= calib_batches:
            break
    if not calib:
        raise ValueError(f"{dataset} has an empty training split; nothing to calibrate on")

    def train_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in loader:
            yield eval_preprocess(images, meta.mean, meta.std).contiguous(), labels

    return _Data(calib, train_batches, dataset, split, root)


# ------------------------------------------------------------------------------------------- the job
@dataclass
class QuantizeResult:
    """An int8 artefact and what it cost in accuracy on the evaluation split."""

    path: str
    method: str
    target: str
    dataset: str
    split: str
    float_acc1: float
    int8_acc1: float
    size_bytes: int
    float_size_bytes: int
    quantize_s: float
    calib_images: int
    census: dict[str, Any] | None = None
    """LiteRT: the flatbuffer's tensors by type and ops by input/output type (proof it is integer)."""
    metric: str = "top-1"
    """What ``float_acc1`` / ``int8_acc1`` measure, in percent: ``top-1``, ``AP50`` for a detector, ``mIoU``
    for a segmenter."""
    metrics: dict[str, Any] | None = None
    """A detector: float and int8 COCO box metrics (``map``, ``map50``, ...); a segmenter: float and int8
    ``miou``, ``pixel_acc``, ``mean_acc``, ``per_class_iou``."""

    @property
    def drop(self) -> float:
        return self.float_acc1 - self.int8_acc1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "acc1_drop": self.drop, "large_drop": self.drop > LARGE_DROP}

    def summary(self) -> str:
        line = (f"{self.method} {self.target}: {self.path}  {self.size_bytes / 2**20:.2f} MiB "
                f"(fp32 weights {self.float_size_bytes / 2**20:.2f} MiB)  {self.quantize_s:.1f}s | "
                f"{self.dataset}/{self.split} {self.metric} float {self.float_acc1:.2f}%  int8 {self.int8_acc1:.2f}%  "
                f"drop {self.drop:+.2f} points")
        if self.metrics:
            f, q = self.metrics.get("float") or {}, self.metrics.get("int8") or {}
            if "map" in f or "map" in q:
                line += f"; mAP float {f.get('map', float('nan')):.3f}  int8 {q.get('map', float('nan')):.3f}"
            else:
                line += (f"; pixel acc float {100 * f.get('pixel_acc', float('nan')):.2f}%  int8 "
                         f"{100 * q.get('pixel_acc', float('nan')):.2f}%")
        if self.drop > LARGE_DROP:
            others = ", ".join(k for k in QUANT_TARGETS if k != self.target)
            line += (f"\nWARNING: int8 lost {self.drop:.1f} points of {self.metric} with target {self.target}; do not deploy "
                     f"this file: try another target ({others}) or --method qat")
        return line


def _census(path: Path) -> dict[str, Any] | None:
    """The int8 census recorded in a LiteRT, OpenVINO or ncnn artefact's sidecar by :func:`quantize_model`."""
    import json

    from .metadata import sidecar_path

    side = sidecar_path(path)
    if not side.is_file():
        return None
    return json.loads(side.read_text()).get("extra", {}).get("int8_census")


def _check_target(method: str, target: str, out: Path, int8_io: bool, channels_last_io: bool) -> QuantTarget:
    """The target's row, once method, suffix and options are known to be ones it offers."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    target = resolve_format(target, QUANT_TARGETS, "target")
    spec = QUANT_TARGETS[target]
    spec.check_installed()
    if out.suffix.lower() != spec.suffix:
        raise ValueError(f"output {out} for target {target} must end in {spec.suffix}")
    if method not in spec.methods:
        others = ", ".join(k for k, t in QUANT_TARGETS.items() if method in t.methods)
        raise ValueError(f"--method {method} is not available for target {target} (it offers "
                         f"{', '.join(spec.methods)}); targets with {method}: {others}")
    for flag, on in (("--int8-io", int8_io), ("--channels-last-io", channels_last_io)):
        if on and target != "litert":
            raise ValueError(f"{flag} is available for target litert, not {target}")
    return spec


def _example(calib: list[torch.Tensor], n: int) -> torch.Tensor:
    """``n`` calibration images (repeated when the first batch holds fewer): the writers' example input."""
    example = calib[0][:n]
    return example.repeat(math.ceil(n / example.shape[0]), 1, 1, 1)[:n] if example.shape[0] < n else example


def quantize_model(
    model: nn.Module,
    method: str,
    target: str,
    out: str | Path,
    calib: list[torch.Tensor],
    *,
    meta: ArtifactMetadata | None = None,
    train_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None = None,
    qat_epochs: int = 2,
    qat_lr: float = 1e-4,
    batch: int | None = None,
    int8_io: bool = False,
    channels_last_io: bool = False,
    log: StageLog | Callable[[str], None] | None = None,
) -> Path:
    """Quantize an in-memory model with given calibration batches and write the int8 artefact.

    ``batch``: fixed batch of the artefact, ``None`` for dynamic (ExecuTorch: up to 32). ``log`` hears
    each stage (a :class:`~mobilenets.engine.stages.StageLog` also gets progress bars).
    """
    stages = as_stage_log(log)
    out = Path(out)
    spec = _check_target(method, target, out, int8_io, channels_last_io)
    target = spec.key
    if method == "qat" and (is_detector(model) or is_segmenter(model)):
        kind = "detector" if is_detector(model) else "segmenter"
        raise ValueError(f"--method qat is not available for a {kind} (QAT fine-tunes a classification loss); "
                         "use --method ptq")
    if spec.fixed_batch and batch is None:
        batch = 1  # the runtime takes one input shape; a predictor runs other batches in chunks of it
    graph = prepare_for_export(model)
    if spec.format == "executorch":
        spell_out_gelu_tanh(graph)  # XNNPACK would run the exact GELU
    from .export import DEFAULT_EXECUTORCH_MAX_BATCH

    max_batch = DEFAULT_EXECUTORCH_MAX_BATCH if batch is None and spec.format == "executorch" else None
    base = meta or ArtifactMetadata.from_model(graph, spec.format)
    meta = ArtifactMetadata(**{**asdict(base), "format": spec.format, "batch": batch, "max_batch": max_batch,
                               "precision": "int8", "layout": "NHWC" if channels_last_io else "NCHW",
                               "quantization": {"method": method, "target": target,
                                                "calib_images": sum(int(x.shape[0]) for x in calib)}})
    example = _example(calib, batch or 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: Any = None  # a runtime's census of the written file (OpenVINO, LiteRT, ncnn): proof that it is integer
    if method == "ptq" and target == "onnxruntime":
        quantize_onnx_static(graph, calib, out, meta, log=stages)
    elif target in ("mnn", "mnn-weights"):
        from .mnn import quantize_mnn

        quantize_mnn(graph, calib, out, meta, stages, mode="full" if target == "mnn" else "weight")
    elif target == "ncnn":
        from .ncnn import quantize_ncnn

        report = quantize_ncnn(graph, calib, out, meta, stages)
    elif target == "openvino":
        from .openvino import quantize_openvino

        report = quantize_openvino(graph, calib, out, meta, stages)
    elif target == "litert":
        from .litert import quantize_litert

        meta.quantization["int8_io"] = int8_io
        report = quantize_litert(graph, calib, out, meta, stages, int8_io=int8_io)
    else:
        if method == "qat":
            if train_batches is None:
                raise ValueError("qat needs training batches")
            converted = qat_pt2e(model, train_batches, example if example.shape[0] > 1 else example.repeat(2, 1, 1, 1),
                                 "x86" if target == "onnxruntime" else target, epochs=qat_epochs, lr=qat_lr,
                                 log=stages)
        else:
            converted = quantize_pt2e(graph, calib, target, log=stages)
        writer = {"pt2": _write_pt2, "executorch": _write_pte, "onnx": _write_onnx_qdq}[spec.format]
        writer(converted, example, out, meta, stages)
    if report is not None:
        stages(f"int8 census of {out.name}: {report.summary()}")
        meta.extra["int8_census"] = report.to_dict()
    write_metadata(out, meta)
    return out
