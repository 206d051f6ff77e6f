"""Inference graph preparation: fold BatchNorm into the preceding convolution and drop dropout.

Every deployment path starts here. Folding BN removes a full read-modify-write pass over each
activation map (MobileNets have one BN per convolution, so roughly half of the element-wise work of a
plain eager forward), and removing dropout / stochastic depth makes the graph a pure function that
exporters can trace without training-mode branches. Runtimes such as ONNX Runtime fold BN themselves,
but ExecuTorch, TorchScript without freezing and the quantizers do not, so doing it once in PyTorch
gives every backend the same graph and the same numerics.

The folded model keeps every attribute evaluation and export read (``pretrained_cfg``,
``num_classes``, ``in_chans``, ``class_names``, ``model_name``) because it is a deep copy.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

__all__ = [
    "DetectionGraph",
    "InferenceModel",
    "SegmentationGraph",
    "fold_batchnorm",
    "fuse_for_inference",
    "is_detector",
    "is_segmenter",
    "max_abs_diff",
    "prepare_for_export",
    "reference_graph",
    "spell_out_gelu_tanh",
]


#: (layer, the norm that may follow it, torch's folding function, the layer's output-width attribute)
_FOLDABLE = (
    (nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval, "out_channels"),
    (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval, "out_features"),
)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every ``Conv2d -> BatchNorm2d`` and ``Linear -> BatchNorm1d`` pair in ``nn.Sequential``s, in place.

    Only sequential containers are searched because only there does child order equal data flow; our
    ``ConvNormAct`` (conv, bn, act) is one, as are the ResNet residual branches and MobileNetV4's
    normalised head (Linear, BatchNorm1d, act). A BatchNorm with no layer before it to absorb it (the
    pre-attention norm of MobileNetV4's hybrids) stays as it is. The BatchNorm is
    replaced by ``nn.Identity`` so state-dict names of the remaining layers stay unchanged. Returns
    the number of folded pairs. The module must be in eval mode (running statistics are used).
    """
    if module.training:
        raise ValueError("fold_batchnorm needs a module in eval mode (it folds the running statistics)")
    folded = 0
    for child in module.modules():
        if not isinstance(child, nn.Sequential):
            continue
        names = list(child._modules)
        for a, b in itertools.pairwise(names):
            layer, bn = child._modules[a], child._modules[b]
            for layer_type, norm_type, fuse, width in _FOLDABLE:
                if (isinstance(layer, layer_type) and isinstance(bn, norm_type) and bn.track_running_stats
                        and bn.running_mean is not None and getattr(layer, width) == bn.num_features):
                    child._modules[a] = fuse(layer, bn)
                    child._modules[b] = nn.Identity()
                    folded += 1
                    break
    return folded


def _drop_regularizers(module: nn.Module) -> int:
    """Replace dropout and stochastic-depth modules by ``nn.Identity`` (they are identities in eval)."""
    from ..models.layers import DropPath

    dropped = 0
    for parent in module.modules():
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.modules.dropout._DropoutNd | DropPath):
                parent._modules[name] = nn.Identity()
                dropped += 1
    return dropped


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` with BatchNorm folded and dropout removed.

    Numerics match the unfused eval model to float32 rounding (≤1e-5 max abs difference on the logits
    of every MobileNet; checked in the tests). The original model is not modified.
    """
    fused = copy.deepcopy(model).eval()
    fold_batchnorm(fused)
    _drop_regularizers(fused)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


class _GELUTanhOps(nn.Module):
    """GELU's tanh approximation written as the elementwise ops it stands for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def spell_out_gelu_tanh(model: nn.Module) -> int:
    """Replace every tanh-approximated GELU (MobileNetV5's) by its formula in elementwise ops; returns the count.

    ExecuTorch's XNNPACK delegate lowers ``gelu(approximate="tanh")`` to its exact (erf) GELU, a
    4.7e-4 difference per activation that reaches 1e-3 on MobileNetV5's logits; tanh, mul and add it
    lowers faithfully. Eager numerics are unchanged to float32 rounding.
    """
    count = 0
    for parent in model.modules():
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.GELU) and child.approximate == "tanh":
                parent._modules[name] = _GELUTanhOps()
                count += 1
    return count


class InferenceModel(nn.Module):
    """A classification MobileNet as a plain ``stem -> blocks -> head`` graph for exporters.

    ``MobileNet.forward`` validates the input shape with Python control flow, which tracers either bake
    in (TorchScript) or warn about; the exported graph gets the check from the runtime's declared input
    shape instead. Metadata attributes of the wrapped model are mirrored for the exporters.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if getattr(model, "features_only", False):
            raise ValueError("a features_only model has no classifier; export a classification model")
        for attr in ("stem", "blocks", "forward_head"):
            if not hasattr(model, attr):
                raise ValueError(f"{type(model).__name__} is not a mobilenets model (no {attr})")
        self.model = model
        self.pretrained_cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}))
        self.num_classes = int(getattr(model, "num_classes", 0))
        self.in_chans = int(getattr(model, "in_chans", 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        trunk = getattr(m, "forward_trunk", None)  # MobileNet's includes the MSFA neck of V5
        features = trunk(x) if trunk is not None else m.blocks(m.stem(x))
        if getattr(getattr(m, "arch", None), "encoder", False):  # V5's encoder: the MSFA grid is the output
            return features
        return m.forward_head(features)


def is_detector(model: Any) -> bool:
    """Whether ``model`` is a detector (its ``pretrained_cfg`` says ``task: detect``, as SSDLite's does)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("task") == "detect" and hasattr(model, "decoded")


class DetectionGraph(nn.Module):
    """A detector's inference graph: ``decoded`` (network + box decoding) as ONE output ``[N, A, 4 + C]``.

    Columns 0..3 are the boxes (xyxy) divided by the model's input width / height (so 0..1 after
    clipping), the rest the softmaxed class probabilities. One tensor keeps every runtime's
    single-output predictor unchanged, and the normalised boxes put both halves on the same scale so
    the one fp32 tolerance of the exports covers both. NMS is not in the graph: its output size depends
    on the data, so it runs after any runtime in :func:`mobilenets.models.detection.boxes.postprocess`.

    The anchors of the model's input size are computed once here and cached on the model, so the
    exported graph holds them as a constant instead of re-deriving them from the feature sizes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not is_detector(model):
            raise ValueError(f"{type(model).__name__} is not a detector (no decoded() / task 'detect')")
        self.model = model
        self.pretrained_cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}))
        self.num_classes = int(getattr(model, "num_classes", 0))
        self.in_chans = int(getattr(model, "in_chans", 3))
        self.task = "detect"
        h, w = (int(v) for v in model.image_size)
        model.anchors_for(torch.zeros(1, self.in_chans, h, w))  # warm the cache (float32, CPU)
        self.register_buffer("box_scale", torch.tensor([w, h, w, h], dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``SSDLite.decoded`` step by step, except that the clip to the image is done after the division by
        # its size, as a clamp to [0, 1] (the same values: b <= w exactly when b / w <= 1): the ONNX
        # exporter cannot lower decoded's clamp(int 0, float w) (torch 2.13).
        m = self.model
        out = m.head_outputs(x)
        deltas = out["bbox_regression"]
        anchors = m.anchors_for(x).unsqueeze(0)  # broadcast over the batch (no traced size op)
        boxes = (m.box_coder.decode(deltas, anchors) / self.box_scale).clamp(0.0, 1.0)
        return torch.cat([boxes, torch.softmax(out["cls_logits"], dim=-1)], dim=-1)


def is_segmenter(model: Any) -> bool:
    """Whether ``model`` is a semantic segmenter: its ``task`` attribute (class or instance) is ``"segment"``,
    or its ``pretrained_cfg`` says ``task: segment``.

    Duck-typed so any model with the segmentation interface (a normalised ``[N, C, H, W]`` batch in, a
    dict with ``"out"`` logits ``[N, K, H, W]`` at the input size out) deploys without this module
    importing the model package.
    """
    if getattr(model, "task", None) == "segment":
        return True
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return isinstance(cfg, dict) and cfg.get("task") == "segment"


def _drop_aux_head(model: nn.Module) -> None:
    """Remove the auxiliary (training-only) head of a segmenter copy, in place.

    Its output is not exported, but ``torch.export`` keeps dead module calls, so an ExecuTorch or
    ``.pt2`` file would still compute it. Ours hold it as ``aux_head``, torchvision's as
    ``aux_classifier``; both forwards skip it when ``None``.
    """
    for name in ("aux_head", "aux_classifier"):
        if isinstance(getattr(model, name, None), nn.Module):
            setattr(model, name, None)


class SegmentationGraph(nn.Module):
    """A segmenter's inference graph: its ``"out"`` logits ``[N, K, H, W]`` as the ONE output.

    The auxiliary head's output (``"aux"``, a training loss only) is not returned, so exporters drop
    its branch as dead code and every runtime's single-output predictor holds; a dict output would also
    be flattened differently by each exporter. Softmax / argmax stay outside the graph: the logits are
    what the fp32 tolerance compares, and the label map is one argmax after any runtime
    (:class:`mobilenets.deploy.segment.Segmenter`).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not is_segmenter(model):
            raise ValueError(f"{type(model).__name__} is not a segmenter (no task 'segment' attribute or "
                             "pretrained_cfg entry)")
        self.model = model
        self.pretrained_cfg: dict[str, Any] = {**dict(getattr(model, "pretrained_cfg", {}) or {}), "task": "segment"}
        self.num_classes = int(getattr(model, "num_classes", 0))
        self.in_chans = int(getattr(model, "in_chans", 3))
        self.task = "segment"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else out


def prepare_for_export(model: nn.Module) -> InferenceModel | DetectionGraph | SegmentationGraph:
    """Fold, drop regularisers and wrap: the graph every exporter and quantizer starts from.

    A classifier becomes an :class:`InferenceModel` (logits), a detector a :class:`DetectionGraph`, a
    segmenter a :class:`SegmentationGraph` (the ``out`` logits).
    """
    fused = fuse_for_inference(model)
    if is_segmenter(model):
        _drop_aux_head(fused)
        return SegmentationGraph(fused).eval()
    return (DetectionGraph(fused) if is_detector(model) else InferenceModel(fused)).eval()


def reference_graph(model: nn.Module) -> nn.Module:
    """What an export of ``model`` is compared with (and eager is timed as): the unfolded eval model itself
    for a classifier, its :class:`DetectionGraph` / :class:`SegmentationGraph` (no folding, so folding
    errors show; a segmenter's aux head dropped, as every export drops it) for a detector / segmenter."""
    if is_detector(model):
        return DetectionGraph(copy.deepcopy(model).eval()).eval()
    if is_segmenter(model):
        graph = SegmentationGraph(copy.deepcopy(model).eval()).eval()
        _drop_aux_head(graph.model)
        return graph
    return model.eval()


@torch.no_grad()
def max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference of two modules' outputs on ``x`` (both run in eval mode)."""
    return float((a.eval()(x).float() - b.eval()(x).float()).abs().max())
