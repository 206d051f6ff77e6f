"""Per-layer parameter and multiply-accumulate (MAC) profiles of any ``nn.Module``.

Why this exists: the MobileNet papers argue in MACs ("mult-adds") and parameters, and their key tables are
*breakdowns* -- V1's Table 2 splits cost between 1×1 convs, depthwise convs, the stem conv and the FC layer,
and §3.1 derives that a depthwise-separable block costs ``1/N + 1/Dk²`` of a standard conv. A single total is
not enough to check a reimplementation against those tables, so :func:`profile` records one row per layer
and derives both breakdowns from the rows.

Counting convention (and why): published figures (the papers, torchvision's "GFLOPS") equal
``torch.utils.flop_counter.FlopCounterMode`` total / 2, which counts only matmul / conv / bmm / attention
products. So here bias adds, BatchNorm, activations, pooling and elementwise multiplies (squeeze-excite
scaling, residual adds) cost **zero** MACs. Conv, Linear and ``nn.MultiheadAttention`` MACs are computed
*analytically* from shapes; any other product (a functional ``matmul`` or
``F.scaled_dot_product_attention`` inside a custom module) is measured by running the forward under a
``FlopCounterMode`` and attributing each op to the innermost module executing it. The totals therefore agree
exactly with :func:`flop_counter_macs`.

The flop formulas for the ops ``FlopCounterMode`` misses are in :mod:`.formulas`.

Layout: :mod:`.result` (the rows and breakdowns), :mod:`.formulas` (how each op is counted, the atomic
registry), :mod:`.counter` (the hooks and the entry points). This package imports only the base layer:
training's summary, the report and the CLI all use it.
"""

from .counter import flop_counter_macs, infer_in_chans, profile
from .formulas import GAP_FLOP_FORMULAS, MacsFn, register_atomic
from .result import (
    DETECTOR_PARTS,
    KINDS,
    SEGMENTER_PARTS,
    ConvInfo,
    KindStats,
    LayerRow,
    PartStats,
    ProfileResult,
    SeparableBlock,
)

__all__ = [
    "DETECTOR_PARTS",
    "GAP_FLOP_FORMULAS",
    "KINDS",
    "SEGMENTER_PARTS",
    "ConvInfo",
    "KindStats",
    "LayerRow",
    "MacsFn",
    "PartStats",
    "ProfileResult",
    "SeparableBlock",
    "flop_counter_macs",
    "infer_in_chans",
    "profile",
    "register_atomic",
]
