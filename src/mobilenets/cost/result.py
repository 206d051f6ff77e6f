"""What :func:`mobilenets.profile` returns: per-layer rows and the breakdowns derived from them.

V1's Table 2 splits cost between 1×1 convs, depthwise convs, the stem conv and the FC layer
(:meth:`ProfileResult.by_kind`), and §3.1 derives that a depthwise-separable block costs ``1/N + 1/Dk²`` of
a standard conv (:meth:`ProfileResult.separable_blocks`). A detector's cost is argued by *part* instead
(how much the backbone, the extra feature layers and the prediction heads take: :meth:`ProfileResult.by_part`,
with :data:`DETECTOR_PARTS` naming an SSDLite's parts). All are computed from the rows alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

from ..tables import format_count, format_macs, format_percent, format_shape, render_table

__all__ = ["DETECTOR_PARTS", "KINDS", "SEGMENTER_PARTS", "ConvInfo", "KindStats", "LayerRow", "PartStats",
           "ProfileResult", "SeparableBlock"]

#: Layer kinds, in the order the V1 paper's Table 2 lists them, plus the ones MobileNetV4 and plain PyTorch
#: need. ``"fc"`` covers ``nn.Linear`` *and* 1×1 convs applied to a 1×1 map (squeeze-excite, MobileNetV3's
#: post-pool head conv): arithmetically those are fully connected layers, and the paper's "FC" row is about
#: arithmetic, not the module class.
KINDS: tuple[str, ...] = ("conv", "depthwise", "conv1x1", "fc", "attention", "norm", "other")


#: The parts of a detector built as :class:`mobilenets.models.detection.SSDLite` (its top-level modules):
#: label -> module-name prefixes. The two heads are kept apart because they cost very differently (the
#: classification head predicts ``num_classes`` scores per anchor, the regression head 4 offsets).
DETECTOR_PARTS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "extras": ("extras",),
    "classification head": ("cls_head",),
    "regression head": ("box_head",),
}

#: The parts of a segmenter (:class:`mobilenets.models.segmentation.Segmenter`): the dilated backbone, the
#: head (LR-ASPP or DeepLabV3's ASPP head) and the auxiliary FCN head (absent without ``aux_loss``).
SEGMENTER_PARTS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",),
    "head": ("head",),
    "aux head": ("aux_head",),
}


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


class PartStats(NamedTuple):
    """One part of a model (e.g. a detector's backbone): totals, shares of the whole model, the modules."""

    macs: int
    params: int
    macs_fraction: float
    params_fraction: float
    modules: tuple[str, ...]


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
    #: part label -> module-name prefixes (``profile(parts=...)``); ``None``: one part per top-level module.
    parts: dict[str, tuple[str, ...]] | None = None

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

    def by_part(self, parts: dict[str, tuple[str, ...]] | None = None) -> dict[str, PartStats]:
        """MACs/params per part of the model, fractions of the model totals, in execution order.

        ``parts`` (default: the ones given to :func:`profile`) maps a label to module-name prefixes
        (``"backbone"`` takes ``backbone`` and every ``backbone.*`` row; the longest matching prefix wins).
        Rows no prefix matches form one part per top-level module (the root module's own row: ``(root)``),
        so the parts always add up to the rows' totals. Parts with no row are left out.
        """
        spec = self.parts if parts is None else parts
        prefixes = sorted(((p, label) for label, ps in (spec or {}).items() for p in ps), key=lambda t: -len(t[0]))
        macs: dict[str, int] = {}
        params: dict[str, int] = {}
        modules: dict[str, dict[str, None]] = {}
        for label in spec or {}:  # declared parts keep their declared order
            macs[label], params[label], modules[label] = 0, 0, {}
        for row in self.rows:
            top = row.name.split(".")[0] if row.name else "(root)"
            label = next((lb for p, lb in prefixes if row.name == p or row.name.startswith(p + ".")), top)
            macs[label] = macs.get(label, 0) + row.macs
            params[label] = params.get(label, 0) + row.params
            modules.setdefault(label, {})[top] = None
        return {
            label: PartStats(
                macs[label],
                params[label],
                macs[label] / self.macs if self.macs else 0.0,
                params[label] / self.params if self.params else 0.0,
                tuple(modules[label]),
            )
            for label in macs
            if modules[label]
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
            "by_part": {part: {**stats._asdict(), "modules": list(stats.modules)}
                        for part, stats in self.by_part().items()},
            "separable_blocks": [block.to_dict() for block in self.separable_blocks()],
        }

    def to_json(self, **kwargs: Any) -> str:
        """``json.dumps(self.to_dict(), **kwargs)``."""
        return json.dumps(self.to_dict(), **kwargs)

    def format_table(self, max_rows: int | None = None) -> str:
        """Plain-text report: layer rows, totals, the by-part breakdown (when :func:`profile` was given
        ``parts``), the by-kind breakdown and the separable-cost table.

        ``max_rows`` truncates only the per-layer listing (a note says how many rows were left out); the
        totals and breakdowns always cover every row.
        """
        rows = self.rows if max_rows is None else self.rows[: max(0, max_rows)]
        parts = [_layer_table(rows)]
        if len(rows) < len(self.rows):
            parts.append(f"... {len(self.rows) - len(rows)} more rows not shown (max_rows={max_rows})")
        c, h, w = self.input_size
        parts.append("")
        parts.append(f"Input: {c}x{h}x{w} (MACs per image, batch {self.batch_size})")
        parts.append(
            f"Total params: {format_count(self.params)} (trainable: {format_count(self.trainable_params)})"
        )
        parts.append(f"Total MACs: {format_macs(self.macs)} ({format_count(self.macs)})")

        if self.parts:
            parts.append("")
            parts.append("By part:")
            parts.append(self.part_table())

        kinds = self.by_kind()
        if kinds:
            parts.append("")
            parts.append("By layer kind (MobileNet V1 Table 2):")
            parts.append(_kind_table(kinds))

        blocks = self.separable_blocks()
        if blocks:
            parts.append("")
            parts.append("Depthwise-separable cost vs standard conv (MobileNet V1 §3.1):")
            parts.append(_separable_table(blocks))
        return "\n".join(parts)

    def part_table(self, parts: dict[str, tuple[str, ...]] | None = None) -> str:
        """The :meth:`by_part` breakdown as a text table, with a total line."""
        stats = self.by_part(parts)
        cells = [
            (label, ", ".join(s.modules), format_count(s.params), format_percent(s.params_fraction),
             format_macs(s.macs, digits=3), format_count(s.macs), format_percent(s.macs_fraction))
            for label, s in stats.items()
        ]
        p, m = sum(s.params for s in stats.values()), sum(s.macs for s in stats.values())
        cells.append(("total", "", format_count(p), format_percent(p / self.params if self.params else 0.0),
                      format_macs(m, digits=3), format_count(m), format_percent(m / self.macs if self.macs else 0.0)))
        return render_table(("part", "modules", "params", "params %", "MACs", "MACs (exact)", "MACs %"), cells,
                            align="llrrrrr")

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


def _layer_table(rows: list[LayerRow]) -> str:
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
    return render_table(("layer", "type", "kind", "output", "params", "MACs"), layer_cells, align="llllrr")


def _kind_table(kinds: dict[str, KindStats]) -> str:
    return render_table(
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


def _separable_table(blocks: list[SeparableBlock]) -> str:
    return render_table(
        ("block", "M", "N", "Dk", "1/N+1/Dk²", "counted"),
        [
            (
                f"{b.depthwise_name} + {b.pointwise_name}",
                b.in_channels,
                b.out_channels,
                "x".join(map(str, b.kernel_size)) if len(set(b.kernel_size)) > 1 else b.kernel_size[0],
                f"{b.formula_ratio:.4f}",
                f"{b.counted_ratio:.4f}",
            )
            for b in blocks
        ],
    )
