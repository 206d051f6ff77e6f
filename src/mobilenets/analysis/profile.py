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

FlopCounterMode (torch 2.13) has blind spots that would silently report 0 MACs: SDPA's CPU kernel
(``_scaled_dot_product_flash_attention_for_cpu``) and the eval-time "fast paths" of
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (``_native_multi_head_attention``,
``_transformer_encoder_layer_fwd``). We register flop formulas for those ops (:data:`GAP_FLOP_FORMULAS`) so
counts do not depend on the device or on which kernel PyTorch happened to pick; the formulas count the same
products the slow paths count, so conv/linear models are unaffected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from mobilenets.tables import (
    format_count,
    format_macs,
    format_percent,
    format_shape,
    render_table,
)

__all__ = [
    "GAP_FLOP_FORMULAS",
    "KINDS",
    "ConvInfo",
    "KindStats",
    "LayerRow",
    "MacsFn",
    "ProfileResult",
    "SeparableBlock",
    "flop_counter_macs",
    "infer_in_chans",
    "profile",
    "register_atomic",
]

#: Layer kinds, in the order the V1 paper's Table 2 lists them, plus the ones MobileNetV4 and plain PyTorch
#: need. ``"fc"`` covers ``nn.Linear`` *and* 1×1 convs applied to a 1×1 map (squeeze-excite, MobileNetV3's
#: post-pool head conv): arithmetically those are fully connected layers, and the paper's "FC" row is about
#: arithmetic, not the module class.
KINDS: tuple[str, ...] = ("conv", "depthwise", "conv1x1", "fc", "attention", "norm", "other")

#: ``macs_fn(module, args, kwargs, output) -> int``: MACs of one call for the *whole batch*.
MacsFn = Callable[[nn.Module, tuple[Any, ...], dict[str, Any], Any], int]


# ----------------------------------------------------------------------------------------------------------
# FlopCounterMode gap formulas
# ----------------------------------------------------------------------------------------------------------


def _sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """Two batched matmuls, ``q @ kᵀ`` and ``p @ v``, exactly as FlopCounterMode counts fused SDPA on GPU."""
    *batch, s_q, d_q = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * s_q * s_k * (d_q + d_v)


def _sdpa_cpu_formula(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return _sdpa_flops(query_shape, key_shape, value_shape)


def _native_mha_formula(
    query_shape: Any,
    key_shape: Any,
    value_shape: Any,
    embed_dim: int,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """``nn.MultiheadAttention`` fast path: q/k/v projections, the two attention matmuls, out projection."""
    *batch, s_q, _ = query_shape
    s_k = key_shape[-2]
    b, e = math.prod(batch), int(embed_dim)
    macs = b * s_q * e * e + 2 * b * s_k * e * e + 2 * b * s_q * s_k * e + b * s_q * e * e
    return 2 * macs


def _transformer_layer_formula(
    src_shape: Any, embed_dim: int, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    """``nn.TransformerEncoderLayer`` fast path: self-attention (as above) plus the two FFN linears."""
    *batch, s, _ = src_shape
    b, e = math.prod(batch), int(embed_dim)
    ffn_weight_1 = args[12] if len(args) > 12 else kwargs["ffn_weight_1"]
    hidden = ffn_weight_1[0]
    macs = 4 * b * s * e * e + 2 * b * s * s * e + 2 * b * s * e * hidden
    return 2 * macs


def _gap_formulas() -> dict[Any, Callable[..., int]]:
    wanted = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_formula,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_cpu_formula,
        "_native_multi_head_attention": _native_mha_formula,
        "_transformer_encoder_layer_fwd": _transformer_layer_formula,
    }
    formulas: dict[Any, Callable[..., int]] = {}
    for name, formula in wanted.items():
        op = getattr(torch.ops.aten, name, None)
        # Respect upstream if a later torch learns to count one of these itself.
        if op is not None and op not in flop_registry:
            formulas[op] = formula
    return formulas


#: Extra ``FlopCounterMode(custom_mapping=...)`` entries for ops torch's counter misses (see module doc).
GAP_FLOP_FORMULAS: Mapping[Any, Callable[..., int]] = _gap_formulas()

#: Ops whose products we classify as attention when a container module performs them itself.
_ATTENTION_OPS = ("attention", "transformer", "bmm")


# ----------------------------------------------------------------------------------------------------------
# Result types
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvInfo:
    """Hyper-parameters of a convolution row, kept so breakdowns can be derived from rows alone."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    transposed: bool = False


@dataclass(frozen=True)
class LayerRow:
    """One profiled layer.

    ``name`` is the module's qualified name (``""`` for the root model), ``type`` its class name, ``kind``
    one of :data:`KINDS`. Shapes are of the first call and exclude the batch dimension. ``params`` counts
    each parameter once across the whole profile (a tied parameter belongs to the first row that uses it);
    ``macs`` is per image, summed over ``calls`` (a module reused twice costs twice).
    """

    name: str
    type: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    input_shape: tuple[int, ...] = ()
    calls: int = 1
    conv: ConvInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        out["output_shape"] = list(self.output_shape)
        out["input_shape"] = list(self.input_shape)
        if self.conv is not None:
            out["conv"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["conv"].items()}
        return out


class KindStats(NamedTuple):
    """A V1-paper Table 2 line: totals and shares (fractions of the whole model) for one layer kind."""

    macs: int
    params: int
    macs_fraction: float
    params_fraction: float


@dataclass(frozen=True)
class SeparableBlock:
    """A depthwise conv and the pointwise conv it feeds: one depthwise-separable convolution (V1 §3.1).

    ``formula_ratio`` is the paper's cost relative to a standard ``Dk×Dk`` conv from M to N channels,
    ``1/N + 1/Dk²`` (``Dk²`` = ``kh·kw`` for non-square kernels). ``counted_ratio`` is what the profile
    actually counted, ``(dw_macs + pw_macs) / (Dk·Dk·M·N·Hout·Wout)`` with ``Hout×Wout`` the depthwise
    output. Both are computed with exact fractions, so they are equal floats whenever the arithmetic agrees
    (stride-1 depthwise, channel multiplier 1); they differ when the depthwise conv has a channel
    multiplier or is applied at a different resolution from the pointwise conv.
    """

    depthwise_name: str
    pointwise_name: str
    kernel_size: tuple[int, ...]
    in_channels: int
    out_channels: int
    formula_ratio: float
    counted_ratio: float
    depthwise_macs: int
    pointwise_macs: int
    standard_macs: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kernel_size"] = list(self.kernel_size)
        return out


@dataclass
class ProfileResult:
    """Output of :func:`profile`: totals, per-layer rows, and the two MobileNet V1 breakdowns.

    ``macs`` is per image. ``params`` is the model's parameter count (shared parameters once, unused ones
    included); rows only cover layers that ran, so their ``params`` sum to ``params`` exactly when every
    parameter takes part in the forward pass.
    """

    params: int
    trainable_params: int
    macs: int
    input_size: tuple[int, int, int]
    rows: list[LayerRow] = field(default_factory=list)
    batch_size: int = 1

    def by_kind(self) -> dict[str, KindStats]:
        """MACs/params per layer kind as in V1 Table 2, fractions of the model totals, in :data:`KINDS` order."""
        macs: dict[str, int] = {}
        params: dict[str, int] = {}
        for row in self.rows:
            macs[row.kind] = macs.get(row.kind, 0) + row.macs
            params[row.kind] = params.get(row.kind, 0) + row.params
        return {
            kind: KindStats(
                macs[kind],
                params[kind],
                macs[kind] / self.macs if self.macs else 0.0,
                params[kind] / self.params if self.params else 0.0,
            )
            for kind in KINDS
            if kind in macs
        }

    def separable_blocks(self) -> list[SeparableBlock]:
        """Depthwise-separable convolutions found in the rows, in execution order.

        Each depthwise conv with a kernel larger than 1 is paired with the next (execution-order) ungrouped
        1×1 conv whose input channels equal the depthwise output channels and whose input spatial size
        equals the depthwise output spatial size. The spatial test is what skips squeeze-excite convs (they
        see a 1×1 pooled map); the search stops at the next depthwise conv, so a depthwise conv without its
        own pointwise partner (e.g. MobileNetV4's "extra DW" at a block start followed by another DW) is not
        paired across blocks. Each pointwise conv is paired at most once.
        """
        blocks: list[SeparableBlock] = []
        used: set[int] = set()
        for i, dw in enumerate(self.rows):
            if not _is_spatial_depthwise(dw):
                continue
            assert dw.conv is not None
            for j in range(i + 1, len(self.rows)):
                pw = self.rows[j]
                if _is_spatial_depthwise(pw):
                    break
                pc = pw.conv
                if (
                    j in used
                    or pc is None
                    or pc.transposed
                    or pc.groups != 1
                    or any(k != 1 for k in pc.kernel_size)
                    or pc.in_channels != dw.conv.out_channels
                    or tuple(pw.input_shape[1:]) != tuple(dw.output_shape[1:])
                ):
                    continue
                used.add(j)
                blocks.append(_separable_block(dw, pw))
                break
        return blocks

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (``json.dumps`` works on it directly); params/MACs stay exact ints."""
        return {
            "params": int(self.params),
            "trainable_params": int(self.trainable_params),
            "macs": int(self.macs),
            "input_size": list(self.input_size),
            "batch_size": int(self.batch_size),
            "rows": [row.to_dict() for row in self.rows],
            "by_kind": {kind: stats._asdict() for kind, stats in self.by_kind().items()},
            "separable_blocks": [block.to_dict() for block in self.separable_blocks()],
        }

    def to_json(self, **kwargs: Any) -> str:
        """``json.dumps(self.to_dict(), **kwargs)``."""
        return json.dumps(self.to_dict(), **kwargs)

    def format_table(self, max_rows: int | None = None) -> str:
        """Plain-text report: layer rows, totals, the by-kind breakdown and the separable-cost table.

        ``max_rows`` truncates only the per-layer listing (a note says how many rows were left out); the
        totals and breakdowns always cover every row.
        """
        rows = self.rows if max_rows is None else self.rows[: max(0, max_rows)]
        layer_cells = [
            (
                r.name or "(root)",
                r.type,
                r.kind,
                format_shape(r.output_shape),
                format_count(r.params),
                format_count(r.macs),
            )
            for r in rows
        ]
        parts = [
            render_table(("layer", "type", "kind", "output", "params", "MACs"), layer_cells, align="llllrr")
        ]
        if len(rows) < len(self.rows):
            parts.append(f"... {len(self.rows) - len(rows)} more rows not shown (max_rows={max_rows})")
        c, h, w = self.input_size
        parts.append("")
        parts.append(f"Input: {c}x{h}x{w} (MACs per image, batch {self.batch_size})")
        parts.append(
            f"Total params: {format_count(self.params)} (trainable: {format_count(self.trainable_params)})"
        )
        parts.append(f"Total MACs: {format_macs(self.macs)} ({format_count(self.macs)})")

        kinds = self.by_kind()
        if kinds:
            parts.append("")
            parts.append("By layer kind (MobileNet V1 Table 2):")
            parts.append(
                render_table(
                    ("kind", "MACs", "MACs %", "params", "params %"),
                    [
                        (
                            k,
                            format_macs(s.macs, digits=3),
                            format_percent(s.macs_fraction),
                            format_count(s.params),
                            format_percent(s.params_fraction),
                        )
                        for k, s in kinds.items()
                    ],
                )
            )

        blocks = self.separable_blocks()
        if blocks:
            parts.append("")
            parts.append("Depthwise-separable cost vs standard conv (MobileNet V1 §3.1):")
            parts.append(
                render_table(
                    ("block", "M", "N", "Dk", "1/N+1/Dk²", "counted"),
                    [
                        (
                            f"{b.depthwise_name} + {b.pointwise_name}",
                            b.in_channels,
                            b.out_channels,
                            "x".join(map(str, b.kernel_size))
                            if len(set(b.kernel_size)) > 1
                            else b.kernel_size[0],
                            f"{b.formula_ratio:.4f}",
                            f"{b.counted_ratio:.4f}",
                        )
                        for b in blocks
                    ],
                )
            )
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.format_table()


def _is_spatial_depthwise(row: LayerRow) -> bool:
    return row.kind == "depthwise" and row.conv is not None and any(k > 1 for k in row.conv.kernel_size)


def _separable_block(dw: LayerRow, pw: LayerRow) -> SeparableBlock:
    assert dw.conv is not None and pw.conv is not None
    k2 = math.prod(dw.conv.kernel_size)
    m, n = dw.conv.in_channels, pw.conv.out_channels
    spatial = math.prod(dw.output_shape[1:])
    standard = k2 * m * n * spatial
    formula = Fraction(1, n) + Fraction(1, k2)
    counted = Fraction(dw.macs + pw.macs, standard) if standard else Fraction(0)
    return SeparableBlock(
        depthwise_name=dw.name,
        pointwise_name=pw.name,
        kernel_size=tuple(dw.conv.kernel_size),
        in_channels=m,
        out_channels=n,
        formula_ratio=float(formula),
        counted_ratio=float(counted),
        depthwise_macs=dw.macs,
        pointwise_macs=pw.macs,
        standard_macs=standard,
    )


# ----------------------------------------------------------------------------------------------------------
# Analytic MAC formulas and the atomic-module registry
# ----------------------------------------------------------------------------------------------------------


def _first_tensor(value: Any) -> torch.Tensor | None:
    leaves, _ = tree_flatten(value)
    return next((leaf for leaf in leaves if isinstance(leaf, torch.Tensor)), None)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _conv_macs(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> int:
    """Every output element of a conv is a dot product over ``Cin/groups · prod(kernel)`` inputs.

    For a transposed conv it is every *input* element that is scattered through the kernel into
    ``Cout/groups`` channels -- the same convention FlopCounterMode uses.
    """
    assert isinstance(module, nn.modules.conv._ConvNd)
    taps = math.prod(module.kernel_size)
    if module.transposed:
        x = _first_tensor(_arg(args, kwargs, 0, "input"))
        assert x is not None
        return x.numel() * (module.out_channels // module.groups) * taps
    out = _first_tensor(output)
    assert out is not None
    return out.numel() * (module.in_channels // module.groups) * taps


def _linear_macs(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> int:
    assert isinstance(module, nn.Linear)
    out = _first_tensor(output)
    assert out is not None
    return out.numel() * module.in_features


def _mha_macs(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> int:
    """Q/K/V input projections, ``q @ kᵀ`` and ``p @ v`` over all heads, and the output projection.

    Counted from shapes so that the eval-mode fast path (which FlopCounterMode cannot see) and the slow path
    give the same answer. ``bias_k`` and ``add_zero_attn`` each add one key position after projection.
    """
    assert isinstance(module, nn.MultiheadAttention)
    query = _arg(args, kwargs, 0, "query")
    key = _arg(args, kwargs, 1, "key")
    assert isinstance(query, torch.Tensor) and isinstance(key, torch.Tensor)
    if query.dim() == 3:
        n = query.shape[0] if module.batch_first else query.shape[1]
        l_q = query.shape[1] if module.batch_first else query.shape[0]
        s_k = key.shape[1] if module.batch_first else key.shape[0]
    else:  # unbatched (L, E)
        n, l_q, s_k = 1, query.shape[0], key.shape[0]
    e = module.embed_dim
    s_attn = s_k + int(module.bias_k is not None) + int(module.add_zero_attn)
    projections = n * l_q * e * e + n * s_k * module.kdim * e + n * s_k * module.vdim * e + n * l_q * e * e
    return projections + 2 * n * l_q * s_attn * e


@dataclass(frozen=True)
class _AtomicSpec:
    kind: str
    macs_fn: MacsFn | None


_LEAF_FORMULAS: dict[type[nn.Module], MacsFn] = {
    nn.modules.conv._ConvNd: _conv_macs,
    nn.Linear: _linear_macs,
}
_ATOMIC: dict[type[nn.Module], _AtomicSpec] = {
    nn.MultiheadAttention: _AtomicSpec("attention", _mha_macs),
}


def register_atomic(
    module_type: type[nn.Module], *, kind: str = "other", macs_fn: MacsFn | None = None
) -> None:
    """Profile every ``module_type`` instance as one row, with ``kind``, instead of row-per-child.

    Why: some blocks are the unit a paper reports (an attention block, a fused op) or have children that
    their ``forward`` never calls (``nn.MultiheadAttention.out_proj``). With ``macs_fn`` the block's MACs are
    ``macs_fn(module, args, kwargs, output)`` for the whole batch and nothing inside it is counted again;
    without it the block's MACs are everything counted inside it. Registration is global and applies to
    subclasses; re-registering a type replaces its entry.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type={module_type!r}: expected an nn.Module subclass")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    _ATOMIC[module_type] = _AtomicSpec(kind, macs_fn)


def _lookup(table: Mapping[type[nn.Module], Any], module: nn.Module) -> Any:
    for cls in type(module).__mro__:
        if cls in table:
            return table[cls]
    return None


_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _conv_kind(conv: ConvInfo, input_shape: tuple[int, ...]) -> str:
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return "depthwise"
    if all(k == 1 for k in conv.kernel_size):
        spatial = input_shape[1:]
        return "fc" if spatial and all(d == 1 for d in spatial) else "conv1x1"
    return "conv"


# ----------------------------------------------------------------------------------------------------------
# The profiler
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Record:
    module: nn.Module
    name: str
    order: int
    atomic: _AtomicSpec | None
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    flops: int = 0  # 2 × MACs for the whole batch
    calls: int = 0
    ops: set[str] = field(default_factory=set)


@dataclass
class _Frame:
    module: nn.Module
    owner: _Record | None  # where MACs measured in this frame go (None: lazily this module's own record)
    counted_formula: MacsFn | None  # analytic formula that counts this call (outermost formula only)
    has_formula: bool
    entered_atomic: bool


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _strip_batch(module: nn.Module, tensor: torch.Tensor | None) -> tuple[int, ...]:
    if tensor is None or tensor.dim() == 0:
        return ()
    shape = tuple(int(d) for d in tensor.shape)
    if isinstance(module, nn.MultiheadAttention) and not module.batch_first and len(shape) == 3:
        return (shape[0], shape[2])  # (L, N, E): the batch is dim 1
    return shape[1:]


class _Profiler:
    """Hook state for one forward pass: a module stack plus a running FlopCounterMode total.

    At every hook event the flops counted since the previous event are attributed to the module on top of
    the stack (the innermost one executing), unless an analytically counted module is active, in which case
    they are already included in its formula and dropped.
    """

    def __init__(self, model: nn.Module, counter: FlopCounterMode) -> None:
        self.names = {id(m): name for name, m in model.named_modules()}
        self.counter = counter
        self.records: dict[int, _Record] = {}
        self.stack: list[_Frame] = []
        self.suppress = 0
        self.atomic_record: _Record | None = None
        self.last_total = 0
        self.last_counts: dict[Any, int] = {}

    def _record(self, module: nn.Module) -> _Record:
        rec = self.records.get(id(module))
        if rec is None:
            rec = _Record(
                module,
                self.names.get(id(module), type(module).__name__),
                len(self.records),
                _lookup(_ATOMIC, module),
            )
            self.records[id(module)] = rec
        return rec

    def _flush(self) -> None:
        total = self.counter.get_total_flops()
        delta = total - self.last_total
        if delta == 0:
            return
        counts = dict(self.counter.flop_counts.get("Global", {}))
        changed = {str(op) for op, v in counts.items() if v != self.last_counts.get(op, 0)}
        self.last_total, self.last_counts = total, counts
        if self.suppress or not self.stack:
            return
        frame = self.stack[-1]
        if frame.owner is None:
            frame.owner = self._record(frame.module)
        frame.owner.flops += delta
        frame.owner.ops |= changed

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._flush()
        formula = _lookup(_LEAF_FORMULAS, module)
        atomic: _AtomicSpec | None = _lookup(_ATOMIC, module)
        if atomic is not None and atomic.macs_fn is not None:
            formula = atomic.macs_fn
        owner: _Record | None = self.atomic_record
        entered_atomic = False
        if owner is None and (atomic is not None or _is_leaf(module)):
            owner = self._record(module)
            if owner.input_shape is None:
                owner.input_shape = _strip_batch(module, _first_tensor((args, kwargs)))
            if atomic is not None:
                self.atomic_record, entered_atomic = owner, True
        counted = formula if formula is not None and self.suppress == 0 else None
        if formula is not None:
            self.suppress += 1
        self.stack.append(_Frame(module, owner, counted, formula is not None, entered_atomic))

    def post_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        self._flush()
        if not any(f.module is module for f in self.stack):
            return
        # Pop to this module's frame (a child that raised inside a try/except never ran its post hook).
        while True:
            frame = self.stack.pop()
            if frame.has_formula:
                self.suppress -= 1
            if frame.entered_atomic:
                self.atomic_record = None
            if frame.module is module:
                break
        inside_atomic = self.atomic_record is not None
        rec = frame.owner if inside_atomic else (frame.owner or self._record(module))
        assert rec is not None
        if frame.counted_formula is not None:
            rec.flops += 2 * int(frame.counted_formula(module, args, kwargs, output))
        if not inside_atomic:
            rec.calls += 1
            if rec.input_shape is None:
                rec.input_shape = _strip_batch(module, _first_tensor((args, kwargs)))
            if rec.output_shape is None:
                rec.output_shape = _strip_batch(module, _first_tensor(output))


def _row_for(rec: _Record, params: int, batch_size: int) -> LayerRow:
    module = rec.module
    input_shape = rec.input_shape or ()
    conv: ConvInfo | None = None
    if isinstance(module, nn.modules.conv._ConvNd):
        conv = ConvInfo(
            in_channels=int(module.in_channels),
            out_channels=int(module.out_channels),
            kernel_size=tuple(int(k) for k in module.kernel_size),
            stride=tuple(int(s) for s in module.stride),
            dilation=tuple(int(d) for d in module.dilation),
            groups=int(module.groups),
            transposed=bool(module.transposed),
        )
    if rec.atomic is not None:
        kind = rec.atomic.kind
    elif conv is not None:
        kind = _conv_kind(conv, input_shape)
    elif isinstance(module, nn.Linear):
        kind = "fc"
    elif isinstance(module, _NORM_TYPES) or "Norm" in type(module).__name__:
        kind = "norm"
    elif any(tag in op for op in rec.ops for tag in _ATTENTION_OPS):
        kind = "attention"
    else:
        kind = "other"
    return LayerRow(
        name=rec.name,
        type=type(module).__name__,
        kind=kind,
        output_shape=rec.output_shape or (),
        params=params,
        macs=rec.flops // 2 // batch_size,
        input_shape=input_shape,
        calls=max(rec.calls, 1),
        conv=conv,
    )


# ----------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------


def infer_in_chans(model: nn.Module) -> int:
    """Input channels a model expects.

    ``pretrained_cfg["input_size"][0]`` if the model carries one (explicit metadata wins); else the
    ``in_channels`` of its first ``Conv2d`` in registration order; else the ``in_features`` of its first
    ``Linear``; else 3 (RGB). Convs are preferred over Linears because a head registered before the stem
    (legal, and it happens) would otherwise be mistaken for the input layer.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, Mapping):
        size = cfg.get("input_size")
        if isinstance(size, Sequence) and len(size) == 3 and _is_pos_int(size[0]):
            return int(size[0])
    for kind in (nn.Conv2d, nn.Linear):
        module = next((m for m in model.modules() if isinstance(m, kind)), None)
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
        if isinstance(module, nn.Linear):
            return int(module.in_features)
    return 3


def _is_pos_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _resolve_input(
    model: nn.Module, input_size: Any, in_chans: int | None, batch_size: int
) -> tuple[int, int, int]:
    expected = "a positive int S (SxS), (H, W) or (C, H, W) of positive ints"
    if _is_pos_int(input_size):
        chw: tuple[int | None, int, int] = (None, input_size, input_size)
    elif (
        isinstance(input_size, (tuple, list))
        and len(input_size) in (2, 3)
        and all(_is_pos_int(v) for v in input_size)
    ):
        chw = (None, *input_size) if len(input_size) == 2 else tuple(input_size)  # type: ignore[assignment]
    else:
        raise ValueError(f"input_size={input_size!r}: expected {expected}")
    if in_chans is not None and not _is_pos_int(in_chans):
        raise ValueError(f"in_chans={in_chans!r}: expected a positive int")
    if not _is_pos_int(batch_size):
        raise ValueError(f"batch_size={batch_size!r}: expected a positive int")
    c = chw[0]
    if c is not None and in_chans is not None and c != in_chans:
        raise ValueError(f"in_chans={in_chans!r} contradicts input_size={input_size!r} (C={c})")
    c = c or in_chans or infer_in_chans(model)
    return (c, chw[1], chw[2])


def _example_input(model: nn.Module, chw: tuple[int, int, int], batch_size: int, device: Any) -> torch.Tensor:
    tensors: Iterator[torch.Tensor] = (t for t in (*model.parameters(), *model.buffers()))
    first = next(tensors, None)
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
    generator = torch.Generator().manual_seed(0)  # deterministic without touching the global RNG
    x = torch.randn((batch_size, *chw), generator=generator)
    return x.to(device=device, dtype=dtype)


def _forward_error(x: torch.Tensor, error: Exception) -> ValueError:
    return ValueError(
        f"model forward failed on an input of shape {tuple(x.shape)} (N, C, H, W); expected the model to "
        f"accept it -- check input_size/in_chans. Original error: {type(error).__name__}: {error}"
    )


def profile(
    model: nn.Module,
    input_size: int | tuple[int, int] | tuple[int, int, int] = 224,
    *,
    in_chans: int | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
) -> ProfileResult:
    """Profile ``model`` with one forward pass on a random ``(batch_size, C, H, W)`` input.

    The pass runs in eval mode (BatchNorm uses running stats, dropout is off: what deployment and the
    papers measure) under ``torch.no_grad``; every module's training flag is restored and every hook is
    removed afterwards, even on error, so profiling has no side effects on the model. ``in_chans`` defaults
    to :func:`infer_in_chans`. ``device`` is where the input is created (default: where the model's first
    parameter lives); the model is not moved. MACs are reported per image.

    Raises ``ValueError`` for a malformed ``input_size``/``in_chans``/``batch_size`` or when the model's
    forward fails on the input (the message carries the original error).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected an nn.Module")
    chw = _resolve_input(model, input_size, in_chans, batch_size)
    x = _example_input(model, chw, batch_size, device)

    modes = {m: m.training for m in model.modules()}
    counter = FlopCounterMode(display=False, custom_mapping=dict(GAP_FLOP_FORMULAS))
    prof = _Profiler(model, counter)
    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(prof.pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(prof.post_hook, with_kwargs=True))
        model.eval()
        try:
            with torch.no_grad(), counter:
                model(x)
        except Exception as error:
            raise _forward_error(x, error) from error
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    # Parameters are counted after the forward so lazy modules are materialised.
    seen: set[int] = set()
    rows: list[LayerRow] = []
    for rec in sorted(prof.records.values(), key=lambda r: r.order):
        recurse = rec.atomic is not None
        own = 0
        for p in rec.module.parameters(recurse=recurse):
            if id(p) not in seen:
                seen.add(id(p))
                own += p.numel()
        if rec.atomic is None and not _is_leaf(rec.module) and own == 0 and rec.flops == 0:
            continue  # a pure container
        if rec.atomic is None and own == 0 and rec.flops == 0:
            continue  # parameter-free, MAC-free leaf (activation, pooling, dropout, ...)
        rows.append(_row_for(rec, own, batch_size))

    all_params = list(model.parameters())
    total_flops = sum(rec.flops for rec in prof.records.values())
    return ProfileResult(
        params=sum(p.numel() for p in all_params),
        trainable_params=sum(p.numel() for p in all_params if p.requires_grad),
        macs=total_flops // 2 // batch_size,
        input_size=chw,
        rows=rows,
        batch_size=batch_size,
    )


def flop_counter_macs(
    model: nn.Module,
    input_size: int | tuple[int, int] | tuple[int, int, int] = 224,
    in_chans: int | None = None,
    *,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    fill_gaps: bool = True,
) -> int:
    """Reference MACs per image: ``FlopCounterMode`` total flops / 2 / batch, same input as :func:`profile`.

    This is the independent check on :func:`profile` (and how torchvision derives its published "GFLOPS").
    With ``fill_gaps`` (default) the counter also gets :data:`GAP_FLOP_FORMULAS`, so CPU SDPA and the
    attention fast paths are counted as they are on GPU; for conv/linear models that changes nothing, and
    ``fill_gaps=False`` gives torch's counter untouched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected an nn.Module")
    chw = _resolve_input(model, input_size, in_chans, batch_size)
    x = _example_input(model, chw, batch_size, device)
    modes = {m: m.training for m in model.modules()}
    counter = FlopCounterMode(display=False, custom_mapping=dict(GAP_FLOP_FORMULAS) if fill_gaps else None)
    try:
        model.eval()
        try:
            with torch.no_grad(), counter:
                model(x)
        except Exception as error:
            raise _forward_error(x, error) from error
    finally:
        for module, training in modes.items():
            module.training = training
    return counter.get_total_flops() // 2 // batch_size
