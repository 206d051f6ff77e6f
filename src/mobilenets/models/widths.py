"""Width rules: how one reference implementation scales a table's widths by the multiplier α.

Every row's output width is ``make_divisible(out · α)`` everywhere; the implementations disagree on four
other widths, and each :class:`WidthRules` object states its choice for each, in one place:

* ``stem``: scaled from ``stem_scales_from`` on, the table's width below it;
* ``expansion``: the expansion width of a block, from the table's expansion (or ratio) and input width;
* ``last_conv``: the 1x1 conv before pooling (V2's 1280, V3's 960 / 576);
* ``head``: the post-pool hidden layer (V3's 1280 / 1024).

MobileNetV3 has three published conventions (:data:`V3_CONVENTIONS`); V1, V2, V4 and ResNet one each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .layers import make_divisible

__all__ = ["MOBILENET_V1", "MOBILENET_V2", "MOBILENET_V4", "MOBILENET_V5", "RESNET", "V3_CONVENTIONS", "WidthRules"]


def scaled(width: float, alpha: float) -> int:
    """A table width times α, rounded to a multiple of 8 (the rule for every row's output)."""
    return make_divisible(width * alpha)


# expansion(table expansion, table input width, rounded input width, α)
ExpansionRule = Callable[[float, float, int, float], int]
# last_conv(table width, rounded input width, table input width, α)
LastConvRule = Callable[[int, int, int, float], int]
# head(table width, α, reduced-tail divider)
HeadRule = Callable[[int, float, int], int]


def ratio_of_rounded_input(exp: float, in_table: float, in_chs: int, alpha: float) -> int:
    """Expansion as a ratio of the *rounded* input width (timm, Keras; V2, V4: ``in_table`` is 1)."""
    return make_divisible(in_chs * exp / in_table)


def scaled_table_size(exp: float, in_table: float, in_chs: int, alpha: float) -> int:
    """Expansion as the table's size times α (torchvision's V3: ``exp · α`` rounded)."""
    return scaled(exp, alpha)


def _fixed_head(width: int, alpha: float, divider: int) -> int:
    return width


@dataclass(frozen=True)
class WidthRules:
    """One convention's answer for the widths that do not simply follow ``make_divisible(out · α)``."""

    name: str
    stem_scales_from: float
    expansion: ExpansionRule
    last_conv: LastConvRule
    head: HeadRule = _fixed_head

    def stem(self, width: int, alpha: float) -> int:
        return scaled(width, alpha) if alpha >= self.stem_scales_from else width

    def out(self, width: float, alpha: float) -> int:
        return scaled(width, alpha)


def _times_input(width: int, in_chs: int, in_table: int, alpha: float) -> int:
    # the table's 6x-the-last-width, applied to the rounded last width and not rounded again
    return in_chs * width // in_table


def _times_input_rounded(width: int, in_chs: int, in_table: int, alpha: float) -> int:
    return make_divisible(in_chs * width // in_table)


def _scaled_last_conv(width: int, in_chs: int, in_table: int, alpha: float) -> int:
    return scaled(width, alpha)


def _never_below_table(width: int, in_chs: int, in_table: int, alpha: float) -> int:
    # V2 paper, Sec. 6.1: "for multipliers less than one, we apply width multiplier to all layers except
    # the very last convolutional layer" (torchvision and timm agree)
    return make_divisible(width * max(1.0, alpha))


V3_CONVENTIONS: dict[str, WidthRules] = {
    # every width is scaled: the expansion sizes, the pre-pool conv (6x the rounded last width) and the
    # hidden head layer (1280·α, halved with reduced_tail)
    "torchvision": WidthRules("torchvision", 0.0, scaled_table_size, _times_input,
                              lambda width, alpha, divider: scaled(width // divider, alpha)),
    # expansions are ratios of the rounded input width, the stem stays 16 below α = 0.75, the pre-pool
    # conv is 960·α rounded and the hidden head layer stays 1280 / 1024
    "timm": WidthRules("timm", 0.75, ratio_of_rounded_input, _scaled_last_conv),
    # keras.applications: as timm, except that the stem is always 16, the pre-pool conv is 6x the rounded
    # last width (rounded) and the hidden head layer grows with α > 1; equals timm at α = 0.75 / 1.0
    "keras": WidthRules("keras", math.inf, ratio_of_rounded_input, _times_input_rounded,
                        lambda width, alpha, divider: scaled(width, alpha) if alpha > 1 else width),
}
# V1 has no expansion and no last conv: everything follows α.
MOBILENET_V1 = WidthRules("mobilenet_v1", 0.0, ratio_of_rounded_input, _scaled_last_conv)
MOBILENET_V2 = WidthRules("mobilenet_v2", 0.0, ratio_of_rounded_input, _never_below_table)
# timm's mobilenetv4_*: the stem scales only for α >= 1 (fix_stem), the 1280 head never (num_features).
MOBILENET_V4 = WidthRules("mobilenet_v4", 1.0, ratio_of_rounded_input, _scaled_last_conv)
# timm's mobilenetv5_*: the same builder rules (fix_stem below α = 1); the MSFA's 2048 never scales.
MOBILENET_V5 = WidthRules("mobilenet_v5", 1.0, ratio_of_rounded_input, _scaled_last_conv)
# ResNet has no width multiplier (α = 1): every width is the table's.
RESNET = WidthRules("resnet", 0.0, ratio_of_rounded_input, _scaled_last_conv)
