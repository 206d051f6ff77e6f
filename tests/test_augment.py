"""Tests for mobilenets.data.augment: every batched op keeps shape/dtype/device/range, is reproducible
under a seeded generator, works for 1 and 3 channels, and matches its reference definition where one
is available offline (PIL for the colour ops)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mobilenets.data import augment as A
from mobilenets.data.augment import BatchAugment
from mobilenets.data.augment import policies as P

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _batch(
    channels: int, b: int = 12, h: int = 20, w: int = 24, device: str = "cpu", seed: int = 0
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (b, channels, h, w), generator=g, dtype=torch.uint8).float() / 255).to(
        device
    )


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check(out: torch.Tensor, x: torch.Tensor, shape=None) -> None:
    assert out.shape == (shape or x.shape)
    assert out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


# --------------------------------------------------------------------------------------------------
# single ops
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", A.OP_NAMES)
def test_each_op_with_per_sample_magnitudes(op, channels, device):
    x = _batch(channels, device=device)
    b = x.shape[0]
    mags = {
        "Posterize": torch.randint(1, 9, (b,)).float(),
        "Solarize": torch.rand(b),
        "TranslateX": torch.linspace(-8, 8, b),
        "TranslateY": torch.linspace(-8, 8, b),
        "Rotate": torch.linspace(-30, 30, b),
    }.get(op, torch.linspace(-0.9, 0.9, b))
    out = A.apply_op(x, op, mags)
    _check(out, x)
    again = A.apply_op(x, op, mags)
    assert torch.equal(out, again)  # ops are deterministic given magnitudes
    if (op == "Color" and channels == 1) or op == "Identity":
        assert torch.equal(out, x)


def test_zero_magnitudes_are_identity():
    x = _batch(3)
    for op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        assert torch.allclose(A.apply_op(x, op, 0.0), x), op
    for op in ("Brightness", "Color", "Contrast", "Sharpness"):
        assert torch.allclose(A.apply_op(x, op, 0.0), x, atol=1e-6), op
    assert torch.allclose(A.posterize(x, 8), x, atol=1e-6)
    assert torch.equal(A.solarize(x, 1.01), x)
    assert torch.allclose(A.invert(A.invert(x)), x)


def test_translate_moves_content():
    x = _batch(1)
    out = A.translate_x(x, 3.0)
    assert torch.equal(out[..., 3:], x[..., :-3]) and float(out[..., :3].abs().max()) == 0.0
    out = A.translate_y(x, -2.0)
    assert torch.equal(out[..., :-2, :], x[..., 2:, :])
    # per-sample: sample 0 shifts by 1, sample 1 by 2
    out = A.translate_x(x[:2], torch.tensor([1.0, 2.0]))
    assert torch.equal(out[0, ..., 1:], x[0, ..., :-1]) and torch.equal(out[1, ..., 2:], x[1, ..., :-2])


def test_rotate_90_matches_rot90():
    x = _batch(3, h=16, w=16)
    assert torch.equal(A.rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)))  # counter-clockwise
    assert torch.equal(A.rotate(x, -90.0), torch.rot90(x, -1, dims=(-2, -1)))


def test_colour_ops_match_pil():
    from PIL import Image, ImageEnhance, ImageOps

    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((31, 23), Image.BILINEAR)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255

    def close(ours: torch.Tensor, ref, tol: int) -> None:
        a = (ours[0].permute(1, 2, 0) * 255).round().to(torch.int32).numpy()
        assert np.abs(a - np.array(ref).astype(np.int32)).max() <= tol

    close(A.equalize(x), ImageOps.equalize(img), 0)
    close(A.posterize(x, 3), ImageOps.posterize(img, 3), 0)
    close(A.solarize(x, 100 / 255), ImageOps.solarize(img, 100), 0)
    close(A.autocontrast(x), ImageOps.autocontrast(img), 1)
    for factor in (0.2, 1.8):
        close(A.adjust_brightness(x, factor), ImageEnhance.Brightness(img).enhance(factor), 1)
        close(A.adjust_saturation(x, factor), ImageEnhance.Color(img).enhance(factor), 1)
        close(A.adjust_contrast(x, factor), ImageEnhance.Contrast(img).enhance(factor), 1)
        close(A.adjust_sharpness(x, factor), ImageEnhance.Sharpness(img).enhance(factor), 1)
    close(A.shear_x(x, 0.27), img.transform(img.size, Image.AFFINE, (1, 0.27, 0, 0, 1, 0), Image.NEAREST), 0)


def test_equalize_and_autocontrast_constant_images():
    x = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(A.equalize(x), x) and torch.allclose(A.autocontrast(x), x)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_hflip_extremes(p):
    x = _batch(3)
    out = A.hflip(x, p)
    assert torch.equal(out, torch.flip(x, dims=[-1]) if p == 1.0 else x)


def test_hflip_per_sample():
    x = _batch(3, b=64)
    out = A.hflip(x, 0.5, generator=_gen(3))
    flipped = [bool(torch.equal(o, xi.flip(-1))) for o, xi in zip(out, x)]
    same = [bool(torch.equal(o, xi)) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same)) and 10 < sum(flipped) < 54
    assert torch.equal(out, A.hflip(x, 0.5, generator=_gen(3)))


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_pad_crop(mode):
    x = _batch(3)
    assert torch.equal(A.pad_crop(x, 0, mode), x)
    out = A.pad_crop(x, 4, mode, generator=_gen(1))
    _check(out, x)
    assert torch.equal(out, A.pad_crop(x, 4, mode, generator=_gen(1)))
    # every output is a window of the padded image
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode=mode)
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        windows = [padded[i, :, dy : dy + h, dx : dx + w] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], win) for win in windows)
    with pytest.raises(ValueError, match="'wrap'"):
        A.pad_crop(x, 4, "wrap")


def test_random_resized_crop():
    x = _batch(3, h=32, w=32)
    out = A.random_resized_crop(x, 24, generator=_gen(0))
    _check(out, x, shape=(x.shape[0], 3, 24, 24))
    assert torch.equal(out, A.random_resized_crop(x, 24, generator=_gen(0)))
    assert not torch.equal(out, A.random_resized_crop(x, 24, generator=_gen(1)))
    full = A.random_resized_crop(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(full, x, atol=1e-5)  # the whole image at the same size is the identity
    rect = A.random_resized_crop(_batch(1, h=10, w=40), (16, 8), generator=_gen(0))
    assert rect.shape == (12, 1, 16, 8)


# --------------------------------------------------------------------------------------------------
# auto-augment family
# --------------------------------------------------------------------------------------------------

POLICIES = {
    "randaugment": lambda x, g: A.rand_augment(x, 2, 9, generator=g),
    "randaugment-m30": lambda x, g: A.rand_augment(x, 3, 30, generator=g),
    "trivialaugment": lambda x, g: A.trivial_augment_wide(x, generator=g),
    "autoaugment-imagenet": lambda x, g: A.auto_augment(x, "imagenet", generator=g),
    "autoaugment-cifar10": lambda x, g: A.auto_augment(x, "cifar10", generator=g),
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(POLICIES))
def test_auto_augment_family(name, channels):
    x = _batch(channels, b=64)
    fn = POLICIES[name]
    out = fn(x, _gen(5))
    _check(out, x)
    assert torch.equal(out, fn(x, _gen(5)))
    assert not torch.equal(out, fn(x, _gen(6)))
    changed = (out != x).flatten(1).any(1).float().mean()
    assert changed > 0.3  # most samples are actually augmented


def test_policies_are_the_published_ones():
    for name, table in A.AUTO_AUGMENT_POLICIES.items():
        assert len(table) == 25, name
        for sub in table:
            assert len(sub) == 2
            for op, prob, mag in sub:
                assert op in A.AA_OPS and 0.0 <= prob <= 1.0 and (mag is None or 0 <= mag < 10)
    assert A.AUTO_AUGMENT_POLICIES["imagenet"][0] == (("Posterize", 0.4, 8), ("Rotate", 0.6, 9))
    assert A.AUTO_AUGMENT_POLICIES["cifar10"][-1] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None))


def test_magnitude_tables_follow_torchvision():
    ra = P._magnitude_table("ra", 31, 32, 32)
    op = {n: i for i, n in enumerate(A.OP_NAMES)}
    assert ra[op["ShearX"], 30] == pytest.approx(0.3) and ra[op["Rotate"], 30] == pytest.approx(30.0)
    assert ra[op["TranslateX"], 30] == pytest.approx(150 / 331 * 32)
    assert ra[op["Posterize"], 9] == 7 and ra[op["Posterize"], 30] == 4
    assert ra[op["Solarize"], 0] == 1.0 and ra[op["Solarize"], 30] == 0.0
    ta = P._magnitude_table("ta", 31, 32, 32)
    assert ta[op["Rotate"], 30] == pytest.approx(135.0) and ta[op["TranslateY"], 30] == pytest.approx(32.0)
    assert ta[op["Posterize"], 30] == 2 and ta[op["Brightness"], 30] == pytest.approx(0.99)


def test_auto_augment_rejects_unknown():
    x = _batch(3)
    with pytest.raises(ValueError, match="'svhn2'"):
        A.auto_augment(x, "svhn2")
    with pytest.raises(ValueError, match="'Blur'"):
        A.apply_op(x, "Blur", 1.0)
    with pytest.raises(ValueError, match="magnitude 31"):
        A.rand_augment(x, magnitude=31)


# --------------------------------------------------------------------------------------------------
# erasing, mixing, targets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_random_erasing(channels):
    x = _batch(channels, b=64)
    out = A.random_erasing(x, p=1.0, value=0, generator=_gen(2))
    _check(out, x)
    erased = (out != x).flatten(1).any(1)
    assert erased.float().mean() > 0.9
    frac = ((out == 0) & (x != 0)).flatten(1).float().mean(1)
    assert float(frac.max()) <= 0.34  # never more than the max scale
    assert torch.equal(out, A.random_erasing(x, p=1.0, value=0, generator=_gen(2)))
    noisy = A.random_erasing(x, p=1.0, value="random", generator=_gen(2))
    assert noisy.shape == x.shape and torch.isfinite(noisy).all()
    assert torch.equal(A.random_erasing(x, p=0.0), x)
    with pytest.raises(ValueError, match="'noise'"):
        A.random_erasing(x, value="noise")


def test_smooth_one_hot_values():
    y = torch.tensor([0, 3, 1])
    t = A.smooth_one_hot(y, 4, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert t[0, 0] == pytest.approx(1 - 0.1 + 0.1 / 4) and t[0, 1] == pytest.approx(0.1 / 4)
    assert torch.equal(A.smooth_one_hot(y, 4, 0.0), torch.nn.functional.one_hot(y, 4).float())
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        A.smooth_one_hot(torch.tensor([4]), 4)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixup_cutmix_soft_targets(mixup, cutmix):
    x = _batch(3, b=16)
    y = torch.arange(16) % 10
    for seed in range(6):
        out, t = A.mixup_cutmix(x, y, 10, mixup, cutmix, label_smoothing=0.1, generator=_gen(seed))
        _check(out, x)
        assert t.shape == (16, 10) and torch.allclose(t.sum(1), torch.ones(16), atol=1e-6)
        assert float(t.min()) >= 0.1 / 10 - 1e-6
    out2, t2 = A.mixup_cutmix(x, y, 10, mixup, cutmix, label_smoothing=0.1, generator=_gen(5))
    assert torch.equal(out, out2) and torch.equal(t, t2)


def test_cutmix_lambda_matches_pasted_area():
    x = torch.cat([torch.zeros(4, 1, 16, 16), torch.ones(4, 1, 16, 16)])  # partner of a 0-image is a 1-image
    y = torch.tensor([0] * 4 + [1] * 4)
    for seed in range(5):
        out, t = A.mixup_cutmix(x, y, 2, mixup_alpha=0.0, cutmix_alpha=1.0, generator=_gen(seed))
        pasted = out[0].mean()  # fraction of pixels taken from the partner
        assert float(t[0, 1]) == pytest.approx(float(pasted), abs=1e-6)


def test_mixup_prob_zero_is_identity_with_soft_targets():
    x = _batch(3, b=8)
    y = torch.arange(8) % 4
    out, t = A.mixup_cutmix(x, y, 4, prob=0.0)
    assert torch.equal(out, x) and torch.equal(t, torch.nn.functional.one_hot(y, 4).float())


def test_normalize_and_eval_preprocess():
    u8 = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = A.eval_preprocess(u8, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    assert torch.allclose(out, (u8.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2)
    assert torch.allclose(A.eval_preprocess(u8), u8.float() / 255)
    assert A.eval_preprocess(u8, 0.5, 0.5, size=16).shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match="2 values"):
        A.normalize(u8.float(), (0.5, 0.5), (0.2, 0.2))


# --------------------------------------------------------------------------------------------------
# BatchAugment
# --------------------------------------------------------------------------------------------------

CROPS = [("none", None), ("pad", None), ("rrc", 24), ("none", 24)]
AUTOS = [None, "randaugment", "trivialaugment", "autoaugment-imagenet", "autoaugment-cifar10"]
MIXES = [(0.0, 0.0), (0.8, 0.0), (0.8, 1.0)]


def test_batch_augment_all_combinations():
    """Every combination of the options (480); 1 and 3 channels alternate so both see every stage."""
    b, k = 6, 5
    labels = torch.arange(b) % k
    combos = itertools.product(CROPS, AUTOS, [0.0, 0.5], MIXES, [0.0, 0.1], [0.0, 0.5])
    for i, ((crop, size), auto, erase, (mix, cut), smooth, flip) in enumerate(combos):
        channels = 1 if i % 2 else 3
        images = torch.randint(0, 256, (b, channels, 16, 16), dtype=torch.uint8)
        aug = BatchAugment(
            crop=crop, size=size, hflip=flip, auto_augment=auto, random_erasing=erase, mixup_alpha=mix,
            cutmix_alpha=cut, label_smoothing=smooth, num_classes=k, mean=(0.5,) * channels,
            std=(0.25,) * channels, seed=i,
        )  # fmt: skip
        out, targets = aug(images, labels)
        side = size or 16
        assert out.shape == (b, channels, side, side) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        if aug.soft_targets:
            assert targets.shape == (b, k) and targets.dtype == torch.float32
            assert torch.allclose(targets.sum(1), torch.ones(b), atol=1e-5)
        else:
            assert targets.dtype == torch.int64 and torch.equal(targets, labels)


def test_batch_augment_reproducible_and_eval_mode():
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(8) % 4
    kw = dict(crop="pad", hflip=0.5, auto_augment="randaugment", random_erasing=0.25, mixup_alpha=0.2,
              num_classes=4, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))  # fmt: skip
    a, b = BatchAugment(**kw, seed=3), BatchAugment(**kw, seed=3)
    for _ in range(3):
        (xa, ta), (xb, tb) = a(images, labels), b(images, labels)
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    a.eval()
    x, t = a(images, labels)
    assert torch.equal(t, labels)
    assert torch.allclose(x, A.eval_preprocess(images, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)))
    # float input in [0, 1] is accepted too
    plain = BatchAugment(crop="pad", hflip=1.0, seed=0)
    xf, _ = plain(images.float() / 255, labels)
    xu, _ = BatchAugment(crop="pad", hflip=1.0, seed=0)(images, labels)
    assert torch.allclose(xf, xu)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"crop": "random"}, "'random'"),
        ({"auto_augment": "randaug"}, "'randaug'"),
        ({"auto_augment": "autoaugment-svhn"}, "'autoaugment-svhn'"),
        ({"pad_mode": "edge"}, "'edge'"),
        ({"erasing_value": "noise"}, "'noise'"),
        ({"crop": "rrc"}, "size"),
        ({"hflip": 1.5}, "1.5"),
        ({"mixup_alpha": 0.2}, "num_classes"),
        ({"label_smoothing": 1.0}, "1.0"),
        ({"mean": (0.5,)}, "both"),
    ],
)
def test_batch_augment_rejects_bad_options(kwargs, needle):
    with pytest.raises(ValueError) as err:
        BatchAugment(**kwargs)
    assert needle in str(err.value)
    if "crop" in kwargs and kwargs["crop"] == "random":
        assert "'pad'" in str(err.value) and "'rrc'" in str(err.value)  # lists the allowed values


def test_batch_augment_channel_mismatch():
    aug = BatchAugment(mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="3 values but the images have 1 channels"):
        aug(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))


def test_batch_augment_from_config_maps_every_field():
    from mobilenets.config import AugConfig

    aug = AugConfig(crop="rrc", padding=0, scale=(0.25, 1.0), hflip=0.5, auto_augment="randaugment",
                    ra_num_ops=3, ra_magnitude=7, random_erasing=0.25, mixup_alpha=0.2, cutmix_alpha=1.0,
                    mix_prob=0.5, label_smoothing=0.1)
    built = BatchAugment.from_config(aug, size=24, num_classes=10, mean=(0.5,), std=(0.25,), seed=3)
    by_hand = BatchAugment(crop="rrc", padding=0, size=24, rrc_scale=(0.25, 1.0), hflip=0.5,
                           auto_augment="randaugment", ra_num_ops=3, ra_magnitude=7, random_erasing=0.25,
                           mixup_alpha=0.2, cutmix_alpha=1.0, mix_prob=0.5, label_smoothing=0.1,
                           num_classes=10, mean=(0.5,), std=(0.25,), seed=3)
    assert repr(built) == repr(by_hand) and built.rrc_scale == by_hand.rrc_scale
    assert (built.ra_num_ops, built.ra_magnitude, built.mix_prob) == (3, 7, 0.5)
    images, labels = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8), torch.arange(4) % 10
    for a, b in zip(built(images, labels), by_hand(images, labels)):
        assert torch.equal(a, b)
    # only crop='rrc' resizes in training; a pad crop keeps the batch's size
    pad = BatchAugment.from_config(AugConfig(crop="pad", padding=2, hflip=0.0), size=24, num_classes=10)
    assert pad.size is None and pad.padding == 2
    with pytest.raises(ValueError, match=r"aug\.crop"):
        BatchAugment.from_config(AugConfig(), size=24, num_classes=10)  # dataset defaults not resolved
    with pytest.raises(ValueError, match=r"hflip=1\.5"):
        BatchAugment.from_config(AugConfig(crop="none", padding=0, hflip=1.5), num_classes=10)
