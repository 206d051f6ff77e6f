"""The profiler: forward hooks on every module plus a running ``FlopCounterMode`` total, one row per layer.

Conv, Linear and ``nn.MultiheadAttention`` MACs are computed analytically from shapes
(:mod:`.formulas`); any other product (a functional ``matmul`` or ``F.scaled_dot_product_attention``
inside a custom module) is measured by the counter and attributed to the innermost module executing it.
The totals therefore agree exactly with :func:`flop_counter_macs`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .formulas import (
    _ATOMIC,
    _ATTENTION_OPS,
    _LEAF_FORMULAS,
    GAP_FLOP_FORMULAS,
    MacsFn,
    _AtomicSpec,
    _first_tensor,
    _lookup,
)
from .result import ConvInfo, LayerRow, ProfileResult

__all__ = ["flop_counter_macs", "infer_in_chans", "profile"]

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


def _run_hooked(model: nn.Module, x: torch.Tensor) -> _Profiler:
    """One eval-mode forward of ``x`` with the profiler's hooks on every module; no side effects remain."""
    counter = FlopCounterMode(display=False, custom_mapping=dict(GAP_FLOP_FORMULAS))
    prof = _Profiler(model, counter)
    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(prof.pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(prof.post_hook, with_kwargs=True))
        _counted_forward(model, x, counter)
    finally:
        for handle in handles:
            handle.remove()
    return prof


def _counted_forward(model: nn.Module, x: torch.Tensor, counter: FlopCounterMode) -> None:
    """One eval-mode, no-grad forward of ``x`` under ``counter``; every module's training flag is restored."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        try:
            # A model whose forward does more than its network (a detector resizes and runs NMS) names
            # the pass to count; every module hook still fires inside it.
            run = getattr(model, "profile_forward", None) or model
            with torch.no_grad(), counter:
                run(x)
        except Exception as error:
            raise _forward_error(x, error) from error
    finally:
        for module, training in modes.items():
            module.training = training


def _rows(prof: _Profiler, batch_size: int) -> list[LayerRow]:
    """The profile's rows in execution order; each parameter counted once, by the first row that owns it."""
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
    return rows


def profile(
    model: nn.Module,
    input_size: int | tuple[int, int] | tuple[int, int, int] = 224,
    *,
    in_chans: int | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    parts: Mapping[str, Sequence[str]] | None = None,
) -> ProfileResult:
    """Profile ``model`` with one forward pass on a random ``(batch_size, C, H, W)`` input.

    The pass runs in eval mode (BatchNorm uses running stats, dropout is off: what deployment and the
    papers measure) under ``torch.no_grad``; every module's training flag is restored and every hook is
    removed afterwards, even on error, so profiling has no side effects on the model. ``in_chans`` defaults
    to :func:`infer_in_chans`. ``device`` is where the input is created (default: where the model's first
    parameter lives); the model is not moved. MACs are reported per image. ``parts`` (label -> module-name
    prefixes, e.g. :data:`~.result.DETECTOR_PARTS`) names the parts :meth:`ProfileResult.by_part` and the
    text table break the cost down by.

    Raises ``ValueError`` for a malformed ``input_size``/``in_chans``/``batch_size`` or when the model's
    forward fails on the input (the message carries the original error).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected an nn.Module")
    chw = _resolve_input(model, input_size, in_chans, batch_size)
    part_spec = _part_spec(parts)
    x = _example_input(model, chw, batch_size, device)

    prof = _run_hooked(model, x)

    # Parameters are counted after the forward so lazy modules are materialised.
    rows = _rows(prof, batch_size)
    all_params = list(model.parameters())
    total_flops = sum(rec.flops for rec in prof.records.values())
    return ProfileResult(
        params=sum(p.numel() for p in all_params),
        trainable_params=sum(p.numel() for p in all_params if p.requires_grad),
        macs=total_flops // 2 // batch_size,
        input_size=chw,
        rows=rows,
        batch_size=batch_size,
        parts=part_spec,
    )


def _part_spec(parts: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]] | None:
    """``parts`` as label -> tuple of prefixes, checked (a bare string would be read letter by letter)."""
    if parts is None:
        return None
    if not isinstance(parts, Mapping):
        raise ValueError(f"parts={parts!r}: expected a mapping of part label -> module-name prefixes")
    out: dict[str, tuple[str, ...]] = {}
    for label, prefixes in parts.items():
        if isinstance(prefixes, str) or not all(isinstance(p, str) and p for p in prefixes):
            raise ValueError(f"parts[{label!r}]={prefixes!r}: expected a list of non-empty module-name prefixes")
        out[str(label)] = tuple(prefixes)
    return out


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
    counter = FlopCounterMode(display=False, custom_mapping=dict(GAP_FLOP_FORMULAS) if fill_gaps else None)
    _counted_forward(model, x, counter)
    return counter.get_total_flops() // 2 // batch_size
