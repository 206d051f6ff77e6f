"""The auto-augment family: the op table, torchvision's magnitude spaces, one batched dispatcher that
loops over op types (never over samples), RandAugment, TrivialAugmentWide and the published
AutoAugment policies."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .base import _check_batch, _move, _param_device, _rand_params, _randint_params
from .color import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_sharpness,
    autocontrast,
    equalize,
    invert,
    posterize,
    solarize,
)
from .geometry import (
    _rotate_mats,
    _shear_x_mats,
    _shear_y_mats,
    _translate_mats,
    affine,
    rotate,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)

OP_NAMES: tuple[str, ...] = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
_OP_ID = {name: i for i, name in enumerate(OP_NAMES)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
_SIGNED = {*_GEOMETRIC, "Brightness", "Color", "Contrast", "Sharpness"}
#: RandAugment and TrivialAugmentWide draw uniformly from these 14 ops (no Invert), as torchvision does.
RA_OPS: tuple[str, ...] = OP_NAMES[:14]
#: AutoAugment's op set (all but Identity).
AA_OPS: tuple[str, ...] = OP_NAMES[1:]


def apply_op(
    x: Tensor,
    op: str,
    magnitude: float | Tensor = 0.0,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """Apply one auto-augment op by name with torchvision's ``_apply_op`` magnitude semantics:
    shear factor, translation in pixels, rotation in degrees, ``1 + magnitude`` as the factor of the
    four enhance ops, bits for Posterize, a ``[0, 1]`` threshold for Solarize.  ``magnitude`` may be a
    per-sample tensor."""
    if op not in _OP_ID:
        raise ValueError(f"unknown augmentation op {op!r}; allowed: {', '.join(OP_NAMES)}")
    if op == "Identity":
        return x
    if op == "ShearX":
        return shear_x(x, magnitude, interpolation, fill)
    if op == "ShearY":
        return shear_y(x, magnitude, interpolation, fill)
    if op == "TranslateX":
        return translate_x(x, magnitude, interpolation, fill)
    if op == "TranslateY":
        return translate_y(x, magnitude, interpolation, fill)
    if op == "Rotate":
        return rotate(x, magnitude, interpolation, fill)
    if op == "Brightness":
        return adjust_brightness(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Color":
        return adjust_saturation(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Contrast":
        return adjust_contrast(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Sharpness":
        return adjust_sharpness(x, 1.0 + torch.as_tensor(magnitude))
    if op == "Posterize":
        return posterize(x, magnitude)
    if op == "Solarize":
        return solarize(x, magnitude)
    if op == "AutoContrast":
        return autocontrast(x)
    if op == "Equalize":
        return equalize(x)
    return invert(x)


def _magnitude_table(
    kind: str, num_bins: int, height: int, width: int, device: torch.device | str = "cpu"
) -> Tensor:
    """Physical magnitudes per (op id, bin), following torchvision's ``_augmentation_space`` for
    RandAugment (``"ra"``), TrivialAugmentWide (``"ta"``) and AutoAugment (``"aa"``).  Cached per
    configuration and device, since it would otherwise be rebuilt for every batch."""
    return _magnitude_table_cached(kind, num_bins, height, width, str(device))


@functools.lru_cache(maxsize=64)
def _magnitude_table_cached(kind: str, num_bins: int, height: int, width: int, device: str) -> Tensor:
    table = torch.zeros(len(OP_NAMES), num_bins)
    denom = max(num_bins - 1, 1)
    bins = torch.arange(num_bins, dtype=torch.float32)

    def lin(hi: float, lo: float = 0.0) -> Tensor:
        return torch.linspace(lo, hi, num_bins) if num_bins > 1 else torch.tensor([lo])

    if kind == "ta":
        shear, tx, ty, rot, enh, post_div = 0.99, 32.0, 32.0, 135.0, 0.99, 6.0
    else:
        shear, tx, ty, rot, enh, post_div = 0.3, 150.0 / 331.0 * width, 150.0 / 331.0 * height, 30.0, 0.9, 4.0
    table[_OP_ID["ShearX"]] = lin(shear)
    table[_OP_ID["ShearY"]] = lin(shear)
    table[_OP_ID["TranslateX"]] = lin(tx)
    table[_OP_ID["TranslateY"]] = lin(ty)
    table[_OP_ID["Rotate"]] = lin(rot)
    for name in ("Brightness", "Color", "Contrast", "Sharpness"):
        table[_OP_ID[name]] = lin(enh)
    table[_OP_ID["Posterize"]] = 8.0 - torch.round(bins / (denom / post_div))
    table[_OP_ID["Solarize"]] = torch.linspace(1.0, 0.0, num_bins) if num_bins > 1 else torch.tensor([1.0])
    return table.to(device)


_SIGNED_MASK = torch.tensor([name in _SIGNED for name in OP_NAMES])


def _apply_ops_batched(
    x: Tensor, op_ids: Tensor, mags: Tensor, interpolation: str = "nearest", fill: float = 0.0
) -> Tensor:
    """Apply op ``op_ids[i]`` with magnitude ``mags[i]`` to sample ``i`` (``op_ids == -1``: skip).

    All geometric samples share one ``grid_sample``; each colour op runs once on the subset of samples
    that drew it, so the loop is over op types only.  ``op_ids``/``mags`` live on the parameter device
    (normally the CPU), so the grouping needs no device→host sync; only index tensors are copied over.
    """
    b, _, h, w = x.shape
    dev = x.device
    num = len(OP_NAMES)
    shifted = op_ids.long() + 1  # 0 = skip
    counts = torch.bincount(shifted, minlength=num + 1).tolist()
    if counts[0] + counts[1] == b:  # everything is skip / Identity
        return x
    order = torch.argsort(shifted, stable=True)
    groups = dict(zip(range(-1, num), order.split(counts)))
    out = x.clone()

    geo_ids = [_OP_ID[name] for name in _GEOMETRIC]
    geo_idx = [groups[i] for i in geo_ids if counts[i + 1] > 0]
    if geo_idx:
        idx = torch.cat(geo_idx)
        ids, m = op_ids[idx], mags[idx].float()
        zeros = torch.zeros_like(m)
        mats = torch.where(
            (ids == _OP_ID["ShearX"]).view(-1, 1, 1),
            _shear_x_mats(m),
            torch.where(
                (ids == _OP_ID["ShearY"]).view(-1, 1, 1),
                _shear_y_mats(m),
                torch.where(
                    (ids == _OP_ID["Rotate"]).view(-1, 1, 1),
                    _rotate_mats(m, h, w),
                    _translate_mats(
                        torch.where(ids == _OP_ID["TranslateX"], m, zeros),
                        torch.where(ids == _OP_ID["TranslateY"], m, zeros),
                    ),
                ),
            ),
        )
        idx_d = _move(idx, dev)
        out.index_copy_(0, idx_d, affine(x.index_select(0, idx_d), mats, interpolation, fill))

    mags_d = _move(mags.to(torch.float32), dev).to(x.dtype)
    for name in OP_NAMES:
        op = _OP_ID[name]
        if name == "Identity" or name in _GEOMETRIC or counts[op + 1] == 0:
            continue
        idx_d = _move(groups[op], dev)
        out.index_copy_(0, idx_d, apply_op(x.index_select(0, idx_d), name, mags_d.index_select(0, idx_d)))
    return out


def _signs(ops: Tensor, generator: torch.Generator | None) -> Tensor:
    """±1 per sample: negative with probability 1/2 for signed ops (torchvision's coin flip)."""
    flip = _randint_params(2, ops.shape[0], generator).bool() & _SIGNED_MASK.to(ops.device)[ops.clamp_min(0)]
    return torch.where(flip, -1.0, 1.0)


def rand_augment(
    x: Tensor,
    num_ops: int = 2,
    magnitude: int = 9,
    num_magnitude_bins: int = 31,
    generator: torch.Generator | None = None,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """RandAugment (Cubuk et al. 2019) as in torchvision: ``num_ops`` rounds, each sample draws one of 14
    ops uniformly, fixed magnitude bin, random sign for signed ops — independently per sample."""
    _check_batch(x)
    if not 0 <= magnitude < num_magnitude_bins:
        raise ValueError(f"magnitude {magnitude} must be in [0, num_magnitude_bins={num_magnitude_bins})")
    if num_ops < 0:
        raise ValueError(f"num_ops must be >= 0, got {num_ops}")
    b, _, h, w = x.shape
    table = _magnitude_table("ra", num_magnitude_bins, h, w, _param_device(generator))
    for _ in range(num_ops):
        ops = _randint_params(len(RA_OPS), b, generator)
        mags = table[ops, magnitude] * _signs(ops, generator)
        x = _apply_ops_batched(x, ops, mags, interpolation, fill)
    return x


def trivial_augment_wide(
    x: Tensor,
    num_magnitude_bins: int = 31,
    generator: torch.Generator | None = None,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """TrivialAugmentWide (Müller & Hutter 2021) as in torchvision: one op per sample, uniformly random
    op, uniformly random magnitude bin from the "wide" ranges, random sign."""
    _check_batch(x)
    b, _, h, w = x.shape
    table = _magnitude_table("ta", num_magnitude_bins, h, w, _param_device(generator))
    ops = _randint_params(len(RA_OPS), b, generator)
    bins = _randint_params(num_magnitude_bins, b, generator)
    mags = table[ops, bins] * _signs(ops, generator)
    return _apply_ops_batched(x, ops, mags, interpolation, fill)


#: The published AutoAugment sub-policies (Cubuk et al. 2018), as torchvision lists them:
#: ``(op, probability, magnitude bin out of 10 or None)`` pairs.
AUTO_AUGMENT_POLICIES: dict[str, tuple[tuple[tuple[str, float, int | None], ...], ...]] = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
}


@functools.lru_cache(maxsize=16)
def _policy_tensors(policy: str, device: str) -> tuple[Tensor, Tensor, Tensor]:
    """A policy table as (op ids, probabilities, magnitude bins), each 25×2, cached per device."""
    table = AUTO_AUGMENT_POLICIES[policy]
    ops = torch.tensor([[_OP_ID[op] for op, _, _ in sub] for sub in table], device=device)
    probs = torch.tensor([[p for _, p, _ in sub] for sub in table], device=device)
    bins = torch.tensor([[m if m is not None else 0 for _, _, m in sub] for sub in table], device=device)
    return ops, probs, bins


def auto_augment(
    x: Tensor,
    policy: str = "imagenet",
    generator: torch.Generator | None = None,
    interpolation: str = "nearest",
    fill: float = 0.0,
) -> Tensor:
    """AutoAugment with a published policy: each sample draws one of the 25 sub-policies and applies
    its two ops, each with its own probability, magnitude bin (of 10) and a random sign."""
    _check_batch(x)
    if policy not in AUTO_AUGMENT_POLICIES:
        raise ValueError(
            f"unknown AutoAugment policy {policy!r}; allowed: {', '.join(AUTO_AUGMENT_POLICIES)}"
        )
    b, _, h, w = x.shape
    pdev = _param_device(generator)
    ops_t, probs_t, bins_t = _policy_tensors(policy, str(pdev))
    table = _magnitude_table("aa", 10, h, w, pdev)
    choice = _randint_params(ops_t.shape[0], b, generator)
    for k in range(2):
        ops = ops_t[choice, k]
        apply = _rand_params(b, generator) < probs_t[choice, k]
        mags = table[ops, bins_t[choice, k]] * _signs(ops, generator)
        x = _apply_ops_batched(
            x, torch.where(apply, ops, torch.full_like(ops, -1)), mags, interpolation, fill
        )
    return x
