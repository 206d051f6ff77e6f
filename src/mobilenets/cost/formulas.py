"""How MACs are counted: analytic formulas for conv / linear / attention, the atomic-module registry, and
the flop formulas :class:`~torch.utils.flop_counter.FlopCounterMode` lacks.

FlopCounterMode (torch 2.13) has blind spots that would silently report 0 MACs: SDPA's CPU kernel
(``_scaled_dot_product_flash_attention_for_cpu``) and the eval-time "fast paths" of
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (``_native_multi_head_attention``,
``_transformer_encoder_layer_fwd``). We register flop formulas for those ops (:data:`GAP_FLOP_FORMULAS`) so
counts do not depend on the device or on which kernel PyTorch happened to pick; the formulas count the same
products the slow paths count, so conv/linear models are unaffected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from .result import KINDS

__all__ = ["GAP_FLOP_FORMULAS", "MacsFn", "register_atomic"]

#: ``macs_fn(module, args, kwargs, output) -> int``: MACs of one call for the *whole batch*.
MacsFn = Callable[[nn.Module, tuple[Any, ...], dict[str, Any], Any], int]


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
