"""What every batched op shares: random parameters drawn on the generator's device (the CPU unless a
device generator is given) and copied to the batch without a stream sync, the batch checks, and
uint8 -> float conversion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def _param_device(generator: torch.Generator | None) -> torch.device:
    """Where per-sample random parameters are drawn: on the generator's device (torch requires it), or
    on the CPU.  Drawing the few per-sample numbers on the CPU means Python-side decisions (grouping
    samples by op, box sizes) never need a device→host sync that would stall a CUDA stream."""
    return generator.device if generator is not None else torch.device("cpu")


def _move(t: Tensor, device: torch.device) -> Tensor:
    """Host→device copy without a stream sync (pageable memory is staged by the driver at once, so the
    source may be freed immediately; only device→host copies need blocking)."""
    return t if t.device == device else t.to(device, non_blocking=True)


def _rand_params(
    shape: Sequence[int] | int, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0
) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    u = torch.rand(shape, generator=generator, device=_param_device(generator))
    if low != 0.0 or high != 1.0:
        u = u * (high - low) + low
    return u


def _randint_params(high: int, shape: Sequence[int] | int, generator: torch.Generator | None) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.randint(0, high, shape, generator=generator, device=_param_device(generator))


def _uniform(
    shape: Sequence[int] | int,
    generator: torch.Generator | None,
    device: torch.device,
    low: float = 0.0,
    high: float = 1.0,
) -> Tensor:
    return _move(_rand_params(shape, generator, low, high), device)


def _randint(
    high: int, shape: Sequence[int] | int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    return _move(_randint_params(high, shape, generator), device)


def _randint_below(high: Tensor, generator: torch.Generator | None) -> Tensor:
    """Per-element integer in ``[0, high)`` for a tensor of (positive) upper bounds (on the
    parameter device)."""
    u = _rand_params(high.shape, generator).to(high.device)
    return torch.minimum((u * high).floor().long(), (high - 1).long().clamp_min(0))


def _seed_from(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=_param_device(generator)).item())


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy RNG seeded from the torch RNG, for the few scalar draws torch cannot do with a generator
    (Beta samples).  Seeding from torch keeps everything reproducible from one torch seed."""
    return np.random.default_rng(_seed_from(generator))


def _check_batch(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be a batch B×C×H×W, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor in [0, 1] (got dtype {x.dtype}); convert uint8 with to_float()"
        )


def _per_sample(value: float | Tensor, n: int, x: Tensor) -> Tensor:
    """Broadcast a scalar or a length-``n`` tensor of per-sample magnitudes to shape ``(n, 1, 1, 1)``."""
    if not isinstance(value, Tensor):  # a fill kernel, not a host→device copy
        return torch.full((n, 1, 1, 1), float(value), dtype=x.dtype, device=x.device)
    t = _move(value, x.device).to(x.dtype)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"per-sample magnitude must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    return t.view(n, 1, 1, 1)


def to_float(images: Tensor) -> Tensor:
    """uint8 ``0..255`` → float32 ``[0, 1]``; float input is returned unchanged (assumed in ``[0, 1]``)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}")
    return images
