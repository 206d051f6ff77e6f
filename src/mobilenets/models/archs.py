"""The registered entry points: what :func:`mobilenets.create_model` calls, one per model name.

Each resolves its family's table (:mod:`.tables`, :mod:`.resolve`) and hands it to the one builder;
``mobilenet_table`` resolves a table given as data (a table file, :mod:`.table_file`) the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from .mobilenet import MobileNet
from .registry import register_model
from .resolve import (
    V4Variant,
    resolve_mobilenet_v1,
    resolve_mobilenet_v2,
    resolve_mobilenet_v3,
    resolve_mobilenet_v4,
    resolve_mobilenet_v5,
    resolve_resnet,
)
from .table_file import load_table, resolve_table_file
from .tables import MOBILENET_V4

__all__ = ["MOBILENET_V4", "mobilenet_table", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
           "mobilenet_v3_small", "mobilenet_v4_conv_large", "mobilenet_v4_conv_medium", "mobilenet_v4_conv_small", "mobilenet_v4_hybrid_large",
           "mobilenet_v4_hybrid_medium", "mobilenet_v5_300m", "mobilenet_v5_300m_enc", "mobilenet_v5_base", "resnet18",
           "resnet50"]


# --------------------------------------------------------------------------------------------------
# Entry points (registered names). Common builder keywords (num_classes, in_chans, dropout, ...) pass
# through **kwargs to MobileNet; create_model validates them.
# --------------------------------------------------------------------------------------------------
@register_model
def mobilenet_v1(
    *, width_mult: float = 1.0, separable: bool = True, act: Literal["relu", "relu6"] = "relu",
    small_input: bool = False, **kwargs,
) -> MobileNet:
    """MobileNetV1 (Howard et al. 2017); ``separable=False`` is the paper's "Conv MobileNet" (Table 4).

    ``act="relu6"`` matches the published Keras/TF-slim and timm weights (the paper says ReLU).
    """
    return MobileNet(resolve_mobilenet_v1(width_mult, separable, small_input, act), **kwargs)


@register_model
def mobilenet_v2(*, width_mult: float = 1.0, small_input: bool = False, **kwargs) -> MobileNet:
    """MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, ReLU6."""
    return MobileNet(resolve_mobilenet_v2(width_mult, small_input), **kwargs)


def _v3(variant: Literal["large", "small"], width_mult: float, reduced_tail: bool, dilated: bool,
        minimalistic: bool, use_se: bool, use_hswish: bool, width_convention: Literal["torchvision", "timm", "keras"],
        small_input: bool, **kwargs) -> MobileNet:
    arch = resolve_mobilenet_v3(
        variant, width_mult, reduced_tail=reduced_tail, dilated=dilated, minimalistic=minimalistic, use_se=use_se,
        use_hswish=use_hswish, width_convention=width_convention, small_input=small_input,
    )
    return MobileNet(arch, **kwargs)


@register_model
def mobilenet_v3_large(
    *, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False, minimalistic: bool = False,
    use_se: bool = True, use_hswish: bool = True, width_convention: Literal["torchvision", "timm", "keras"] = "torchvision",
    small_input: bool = False, **kwargs,
) -> MobileNet:
    """MobileNetV3-Large (Howard et al. 2019, Table 1)."""
    return _v3("large", width_mult, reduced_tail, dilated, minimalistic, use_se, use_hswish, width_convention,
               small_input, **kwargs)


@register_model
def mobilenet_v3_small(
    *, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False, minimalistic: bool = False,
    use_se: bool = True, use_hswish: bool = True, width_convention: Literal["torchvision", "timm", "keras"] = "torchvision",
    small_input: bool = False, **kwargs,
) -> MobileNet:
    """MobileNetV3-Small (Howard et al. 2019, Table 2)."""
    return _v3("small", width_mult, reduced_tail, dilated, minimalistic, use_se, use_hswish, width_convention,
               small_input, **kwargs)


@register_model
def mobilenet_table(
    *, table: str | Mapping[str, Any] | None = None, width_mult: float = 1.0, small_input: bool | None = None,
    width_convention: Literal["torchvision", "timm", "keras"] | None = None, reduced_tail: bool | None = None,
    dilated: bool | None = None, minimalistic: bool | None = None, use_se: bool | None = None,
    use_hswish: bool | None = None, separable: bool | None = None, act: Literal["relu", "relu6"] | None = None,
    **kwargs,
) -> MobileNet:
    """A network from an architecture table given as data: a table file's path or its dict (``table_to_dict``).

    Why: a table made by a program (NetAdapt) or written by hand builds, trains and exports like a built-in
    one. Its family's resolver reads the rows (same loop, same width rules); the family's keywords come from
    the file's ``options``, and one given here (not ``None``) overrides it. ``width_mult`` scales the table
    as it scales a built-in one. Without ``table``: MobileNetV3-Small's own table (the usual start).
    """
    overrides = {"small_input": small_input, "width_convention": width_convention, "reduced_tail": reduced_tail,
                 "dilated": dilated, "minimalistic": minimalistic, "use_se": use_se, "use_hswish": use_hswish,
                 "separable": separable, "act": act}
    arch = resolve_table_file(load_table(table), width_mult, **overrides)
    if arch.encoder:  # an encoder table (MobileNetV5's) has no head to size
        kwargs.setdefault("num_classes", 0)
    return MobileNet(arch, **kwargs)


def _v4_entry(variant: V4Variant, doc: str) -> Callable[..., MobileNet]:
    """One registered entry point per MNv4 variant (same keywords for all five)."""

    def entry(*, width_mult: float = 1.0, small_input: bool = False, **kwargs) -> MobileNet:
        return MobileNet(resolve_mobilenet_v4(variant, width_mult, small_input), **kwargs)

    entry.__name__ = entry.__qualname__ = f"mobilenet_v4_{variant}"
    entry.__doc__ = doc
    return register_model(entry)


mobilenet_v4_conv_small = _v4_entry("conv_small", "MobileNetV4-Conv-Small (Qin et al. 2024): 3.77M params, 0.19 GMACs at 224.")
mobilenet_v4_conv_medium = _v4_entry("conv_medium", "MobileNetV4-Conv-Medium: 9.72M params, 1.08 GMACs at 256.")
mobilenet_v4_conv_large = _v4_entry("conv_large", "MobileNetV4-Conv-Large: 32.6M params, 6.38 GMACs at 384.")
mobilenet_v4_hybrid_medium = _v4_entry(
    "hybrid_medium", "MobileNetV4-Hybrid-Medium: Conv-Medium with Mobile MQA; 11.1M params, 1.27 GMACs at 256.")
mobilenet_v4_hybrid_large = _v4_entry(
    "hybrid_large", "MobileNetV4-Hybrid-Large: Mobile MQA, GELU; 37.8M params, 7.71 GMACs at 384.")


@register_model
def mobilenet_v5_300m_enc(
    *, width_mult: float = 1.0, small_input: bool = False, msfa_chs: int | None = None, msfa_grid: int | None = None,
    layer_scale: float | None = 1e-5, num_classes: int = 0, **kwargs,
) -> MobileNet:
    """MobileNetV5-300M as Gemma 3n's vision encoder: 294,126,912 params, 435.7 GMACs at 768; ``forward``
    returns the MSFA grid (N, 2048, 16, 16), no head; TF "same" padding as its weights (timm
    ``mobilenetv5_300m_enc``)."""
    arch = resolve_mobilenet_v5("300m", width_mult, small_input, encoder=True, msfa_chs=msfa_chs, msfa_grid=msfa_grid,
                                layer_scale=layer_scale)
    return MobileNet(arch, num_classes=num_classes, **kwargs)


@register_model
def mobilenet_v5_300m(
    *, width_mult: float = 1.0, small_input: bool = False, msfa_chs: int | None = None, msfa_grid: int | None = None,
    layer_scale: float | None = 1e-5, num_classes: int = 0, **kwargs,
) -> MobileNet:
    """MobileNetV5-300M with timm's head: the MSFA grid average-pooled, then a classifier when
    ``num_classes`` > 0 (0 by default, as timm's ``mobilenetv5_300m``: the 2048 pooled features)."""
    arch = resolve_mobilenet_v5("300m", width_mult, small_input, msfa_chs=msfa_chs, msfa_grid=msfa_grid,
                                layer_scale=layer_scale)
    return MobileNet(arch, num_classes=num_classes, **kwargs)


@register_model
def mobilenet_v5_base(
    *, width_mult: float = 1.0, small_input: bool = False, msfa_chs: int | None = None, msfa_grid: int | None = None,
    layer_scale: float | None = 1e-5, **kwargs,
) -> MobileNet:
    """MobileNetV5-Base (timm ``mobilenetv5_base``): 82,647,976 params with 1000 classes, 20.05 GMACs at 256."""
    arch = resolve_mobilenet_v5("base", width_mult, small_input, msfa_chs=msfa_chs, msfa_grid=msfa_grid,
                                layer_scale=layer_scale)
    return MobileNet(arch, **kwargs)


@register_model
def resnet18(*, small_input: bool = False, **kwargs) -> MobileNet:
    """ResNet-18, the light baseline."""
    return MobileNet(resolve_resnet("resnet18", small_input), **kwargs)


@register_model
def resnet50(*, small_input: bool = False, **kwargs) -> MobileNet:
    """ResNet-50, the baseline of the V3 CIFAR-10 study's comparison table."""
    return MobileNet(resolve_resnet("resnet50", small_input), **kwargs)
