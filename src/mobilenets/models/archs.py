"""The registered entry points: what :func:`mobilenets.create_model` calls, one per model name.

Each resolves its family's table (:mod:`.tables`, :mod:`.resolve`) and hands it to the one builder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from .mobilenet import MobileNet
from .registry import register_model
from .resolve import (
    V4Variant,
    resolve_mobilenet_v1,
    resolve_mobilenet_v2,
    resolve_mobilenet_v3,
    resolve_mobilenet_v4,
    resolve_resnet,
)
from .tables import MOBILENET_V4

__all__ = ["MOBILENET_V4", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
           "mobilenet_v4_conv_large", "mobilenet_v4_conv_medium", "mobilenet_v4_conv_small", "mobilenet_v4_hybrid_large",
           "mobilenet_v4_hybrid_medium", "resnet18", "resnet50"]


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
def resnet18(*, small_input: bool = False, **kwargs) -> MobileNet:
    """ResNet-18, the light baseline."""
    return MobileNet(resolve_resnet("resnet18", small_input), **kwargs)


@register_model
def resnet50(*, small_input: bool = False, **kwargs) -> MobileNet:
    """ResNet-50, the baseline of the V3 CIFAR-10 study's comparison table."""
    return MobileNet(resolve_resnet("resnet50", small_input), **kwargs)
