"""Random erasing (Zhong et al. 2017) per sample, with torchvision's box sampler."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import _check_batch, _move, _rand_params, _randint_below, _seed_from


def random_erasing(
    x: Tensor,
    p: float = 0.25,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: str | float = "random",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random erasing (Zhong et al. 2017) per sample with torchvision's box sampler (10 attempts).

    ``value="random"`` fills with per-pixel standard-normal noise — the right statistics *after*
    normalisation, which is where :class:`BatchAugment` applies it (as timm and torchvision recipes do).
    A number fills with that constant (``0`` = the mean colour after normalisation).
    """
    _check_batch(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_erasing probability must be in [0, 1], got {p}")
    if isinstance(value, str) and value != "random":
        raise ValueError(f"random_erasing value {value!r} must be 'random' or a number")
    if p == 0.0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    attempts = 10
    area = float(h * w)
    # boxes on the parameter device (CPU), then four small vectors go to the batch's device
    erase_area = area * _rand_params((b, attempts), generator, scale[0], scale[1])
    aspect = torch.exp(_rand_params((b, attempts), generator, math.log(ratio[0]), math.log(ratio[1])))
    eh = torch.round(torch.sqrt(erase_area * aspect))
    ew = torch.round(torch.sqrt(erase_area / aspect))
    valid = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    first = valid.float().argmax(dim=1, keepdim=True)
    eh = eh.gather(1, first).squeeze(1)
    ew = ew.gather(1, first).squeeze(1)
    apply = valid.any(dim=1) & (_rand_params(b, generator) < p)
    top = _randint_below((h - eh + 1).clamp_min(1), generator).float()
    left = _randint_below((w - ew + 1).clamp_min(1), generator).float()
    # only the selected samples are touched: noise and masks cost ∝ p, not ∝ batch size
    sel = apply.nonzero().squeeze(1)
    k = int(sel.numel())
    if k == 0:
        return x
    box = _move(torch.stack([top, top + eh, left, left + ew], dim=1)[sel], dev)  # top, bottom, left, right
    ys = torch.arange(h, device=dev, dtype=box.dtype).view(1, h, 1)
    xs = torch.arange(w, device=dev, dtype=box.dtype).view(1, 1, w)
    edge = [box[:, i].view(k, 1, 1) for i in range(4)]
    mask = ((ys >= edge[0]) & (ys < edge[1]) & (xs >= edge[2]) & (xs < edge[3])).unsqueeze(1)
    shape = (k, *x.shape[1:])
    if value == "random":
        if generator is None or generator.device == dev:
            fill = torch.randn(shape, generator=generator, device=dev, dtype=x.dtype)
        else:  # a CPU generator driving a CUDA batch: seed a device generator from it (no big copy)
            noise_gen = torch.Generator(device=dev).manual_seed(_seed_from(generator))
            fill = torch.randn(shape, generator=noise_gen, device=dev, dtype=x.dtype)
    else:
        fill = torch.full((), float(value), device=dev, dtype=x.dtype)
    sel_d = _move(sel, dev)
    out = x.clone()
    out.index_copy_(0, sel_d, torch.where(mask, fill, x.index_select(0, sel_d)))
    return out
