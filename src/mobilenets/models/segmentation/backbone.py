"""A registered classifier as a segmentation backbone: features only, at output stride 8, 16 or 32.

Dense prediction wants feature maps finer than a classifier's 1/32: the strided convolutions past the
wanted output stride are turned into stride-1 convolutions, and every convolution from there on
dilates its kernel by the stride removed so that receptive fields (and pretrained weights) keep
their meaning (DeepLab's atrous trick). The rule follows torchvision's dilated MobileNetV3: the block
that was strided already has its own kxk convolutions dilated, and keeps no residual connection
(its input and output were at different resolutions when it was trained). Nothing is patched in
built modules: the architecture table (:class:`~mobilenets.models.mobilenet.ArchSpec`) is rewritten
and built by the one builder, so padding, TF "same" padding and feature levels come out right by
construction, and ``feature_info`` reports the strides actually built.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..._validate import did_you_mean
from ..blocks import BlockSpec
from ..mobilenet import ArchSpec, MobileNet
from ..registry import build_model, list_models

__all__ = ["LOW_LEVELS", "OUTPUT_STRIDES", "build_backbone", "dilate_arch", "output_stride_of", "tap_index"]

OUTPUT_STRIDES = (8, 16, 32)
#: Where a low-level branch may read the backbone: the first or the last block whose output is at
#: stride 8 (torchvision's LR-ASPP / DeepLabV3 auxiliary tap is the first: MobileNetV3-Large's 40-channel
#: strided block), or the same at stride 4.
LOW_LEVELS = ("first8", "last8", "first4", "last4")
# Block types whose modules take their spec's dilation; the ResNet blocks and max pool do not.
_DILATABLE = ("conv", "ds", "ir", "uib", "fused_ib", "mqa")
# Keywords of the builder the segmenter sets itself.
_RESERVED = ("num_classes", "in_chans", "features_only", "out_indices", "bn_eps", "bn_momentum")
_BUILDER_KWARGS = tuple(p.name for p in inspect.signature(MobileNet.__init__).parameters.values()
                        if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _has_kxk(spec: BlockSpec) -> bool:
    return max(spec.kernel, spec.kernel_start, spec.kernel_end) > 1


def output_stride_of(arch: ArchSpec) -> int:
    """The stride of the last feature map the architecture builds (32 for every classifier table)."""
    stride = 1
    for spec in (arch.stem, *arch.blocks):
        stride *= spec.stride
    return stride


def dilate_arch(arch: ArchSpec, output_stride: int) -> ArchSpec:
    """``arch`` with every stride-2 layer past ``output_stride`` made stride 1 and later kernels dilated.

    Dilations multiply: at output stride 8 the C4 blocks get dilation 2 and the C5 blocks 4, and an
    architecture that is already dilated (V3's ``dilated=True``) only gets the rest. Raises a
    ``ValueError`` when the architecture cannot reach ``output_stride`` (it is coarser than its own
    table allows, or its blocks take no dilation).
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride={output_stride!r} invalid; expected one of {OUTPUT_STRIDES}")
    specs: list[BlockSpec] = []
    stride, dilation = 1, 1
    for spec in (arch.stem, *arch.blocks):
        new = spec
        if spec.stride == 2 and stride >= output_stride:
            dilation *= 2
            new = replace(new, stride=1, skip=False)  # the formerly strided block keeps no shortcut
        elif spec.stride == 2:
            stride *= 2
        if dilation > 1 and _has_kxk(spec):
            if spec.type not in _DILATABLE:
                raise ValueError(f"{arch.family} cannot run at output_stride={output_stride}: its {spec.type!r} "
                                 f"blocks take no dilation; use output_stride={output_stride_of(arch)}")
            new = replace(new, dilation=spec.dilation * dilation)
        specs.append(new)
    if stride != output_stride:
        raise ValueError(f"{arch.family} reaches output stride {stride} (built as {output_stride_of(arch)}), "
                         f"not output_stride={output_stride}; a backbone with small_input or dilated=True "
                         "keeps its finer stride, so pick that or build it without")
    stem, rest = specs[0], iter(specs[1:])
    stages = tuple(tuple(next(rest) for _ in stage) for stage in arch.stages)
    return replace(arch, stem=stem, stages=stages)


def tap_index(backbone: MobileNet, low_level: str) -> int:
    """Flat index (stem = 0, then blocks in order, as ``feature_info``) of the low-level tap."""
    if low_level not in LOW_LEVELS:
        raise ValueError(f"low_level={low_level!r} invalid; expected one of {LOW_LEVELS}"
                         f"{did_you_mean(low_level, LOW_LEVELS)}")
    target = 8 if low_level.endswith("8") else 4
    nominal, hits = 1, []
    for i, spec in enumerate((backbone.arch.stem, *backbone.arch.blocks)):
        nominal *= spec.nominal_stride or spec.stride
        if nominal == target:
            hits.append(i)
    if not hits:
        raise ValueError(f"{backbone.arch.family} has no block at stride {target} for low_level={low_level!r}")
    return hits[0] if low_level.startswith("first") else hits[-1]


def build_backbone(
    name: str,
    *,
    output_stride: int,
    in_chans: int,
    bn_eps: float | None,
    bn_momentum: float | None,
    backbone_kwargs: Mapping[str, Any] | None,
) -> MobileNet:
    """A ``features_only`` model of the registered classifier ``name``, at ``output_stride``.

    ``backbone_kwargs`` are the classifier's own options (``width_mult``, ``pad_type``, ...). The
    classifier is built once to resolve its table (and check every keyword), then rebuilt from the
    dilated table when the output stride is finer than its own.
    """
    if output_stride not in OUTPUT_STRIDES or isinstance(output_stride, bool):
        raise ValueError(f"output_stride={output_stride!r} invalid; expected one of {OUTPUT_STRIDES}")
    classifiers = list_models()
    if not isinstance(name, str) or name not in classifiers:
        raise ValueError(f"backbone={name!r} invalid; expected a registered classifier "
                         f"(mobilenets.list_models()){did_you_mean(name, classifiers)}")
    if backbone_kwargs is not None and not isinstance(backbone_kwargs, Mapping):
        raise ValueError(f"backbone_kwargs={backbone_kwargs!r} invalid; expected a mapping of the backbone's keywords")
    extra = dict(backbone_kwargs or {})
    for key in _RESERVED:
        if key in extra:
            raise ValueError(f"backbone_kwargs may not set {key!r}: it is the segmenter's own keyword "
                             "(or fixed by it)")
    common = {"in_chans": in_chans, "bn_eps": bn_eps, "bn_momentum": bn_momentum}
    model = build_model(name, features_only=True, **common, **extra)
    if not isinstance(model, MobileNet):
        raise ValueError(f"backbone={name!r} builds a {type(model).__name__}, not a MobileNet network")
    if output_stride_of(model.arch) == output_stride:
        return model
    arch = dilate_arch(model.arch, output_stride)
    builder = {k: v for k, v in extra.items() if k in _BUILDER_KWARGS}
    return MobileNet(arch, features_only=True, **common, **builder)
