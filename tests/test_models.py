"""Architecture tests: published parameter/MAC counts, and generic checks over every registered model."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mobilenets
from mobilenets import create_model, list_models


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flop_macs(model: torch.nn.Module, size: int = 224, in_chans: int = 3) -> float:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, in_chans, size, size))
    return counter.get_total_flops() / 2


# published parameter and MAC counts (the papers, torchvision and timm)
PARAMS = [
    ("mobilenet_v1", {}, 4_231_976),
    ("mobilenet_v2", {"width_mult": 0.35}, 1_677_128),
    ("mobilenet_v2", {"width_mult": 0.5}, 1_968_680),
    ("mobilenet_v2", {"width_mult": 0.75}, 2_636_424),
    ("mobilenet_v2", {}, 3_504_872),
    ("mobilenet_v2", {"width_mult": 1.4}, 6_108_776),
    ("mobilenet_v3_large", {}, 5_483_032),
    ("mobilenet_v3_small", {}, 2_542_856),
    ("mobilenet_v3_large", {"width_mult": 0.75}, 3_377_576),
    ("mobilenet_v3_large", {"width_mult": 0.75, "width_convention": "timm"}, 3_993_528),
    ("mobilenet_v3_large", {"reduced_tail": True}, 2_569_352),
    ("mobilenet_v3_large", {"minimalistic": True}, 3_924_288),
    ("mobilenet_v3_small", {"num_classes": 10}, 1_528_106),
    ("mobilenet_v3_large", {"num_classes": 10}, 4_214_842),
    ("resnet18", {}, 11_689_512),
    ("resnet50", {}, 25_557_032),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), PARAMS, ids=lambda v: str(v))
def test_published_parameter_counts(name: str, kwargs: dict, expected: int) -> None:
    assert n_params(create_model(name, **kwargs)) == expected


# MACs at 224 unless a size is given: V1 Tables 6/7, V2 Table 3, V3 Tables 3/4, V1 Table 4, ResNet-50.
MACS = [
    ("mobilenet_v1", {}, 224, 569e6, 0.015),
    ("mobilenet_v1", {"width_mult": 0.75}, 224, 325e6, 0.015),
    ("mobilenet_v1", {"width_mult": 0.5}, 224, 149e6, 0.015),
    ("mobilenet_v1", {"width_mult": 0.25}, 224, 41e6, 0.015),
    ("mobilenet_v1", {}, 192, 418e6, 0.015),
    ("mobilenet_v1", {}, 160, 290e6, 0.015),
    ("mobilenet_v1", {}, 128, 186e6, 0.015),
    ("mobilenet_v2", {}, 224, 300e6, 0.015),
    ("mobilenet_v3_large", {}, 224, 217e6, 0.015),
    ("mobilenet_v3_small", {}, 224, 56.5e6, 0.015),
    ("mobilenet_v1", {"separable": False}, 224, 4866e6, 0.02),
    ("resnet50", {}, 224, 4089e6, 0.02),
]


@pytest.mark.parametrize(("name", "kwargs", "size", "expected", "tol"), MACS, ids=lambda v: str(v))
def test_published_macs(name: str, kwargs: dict, size: int, expected: float, tol: float) -> None:
    model = create_model(name, **kwargs)
    macs = flop_macs(model, size)
    assert abs(macs - expected) / expected <= tol, f"{macs / 1e6:.1f}M vs {expected / 1e6:.1f}M"
    # The analytic profiler must agree with the FLOP counter exactly.
    assert mobilenets.profile(model, size).macs == int(macs)


def test_conv_mobilenet_params() -> None:
    assert abs(n_params(create_model("mobilenet_v1", separable=False)) - 29.3e6) / 29.3e6 < 0.02


def test_v3_ablation_switches_remove_se_and_hswish() -> None:
    base = create_model("mobilenet_v3_small", num_classes=10)
    no_se = create_model("mobilenet_v3_small", num_classes=10, use_se=False)
    no_hs = create_model("mobilenet_v3_small", num_classes=10, use_hswish=False)
    assert not any(type(m).__name__ == "SqueezeExcite" for m in no_se.modules())
    assert not any(isinstance(m, torch.nn.Hardswish) for m in no_hs.modules())
    assert any(isinstance(m, torch.nn.Hardswish) for m in base.modules())
    # h-swish -> ReLU changes no parameter; removing SE removes its convs (the V3 CIFAR-10 study: 1.48M -> 1.45M-ish).
    assert n_params(no_hs) == n_params(base)
    assert n_params(no_se) < n_params(base)


def test_minimalistic_has_only_3x3_relu_no_se() -> None:
    m = create_model("mobilenet_v3_large", minimalistic=True)
    kernels = {mod.kernel_size for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)}
    assert kernels <= {(1, 1), (3, 3)}
    assert not any(isinstance(mod, torch.nn.Hardswish) for mod in m.modules())
    assert not any(type(mod).__name__ == "SqueezeExcite" for mod in m.modules())


def test_dilated_output_stride_16() -> None:
    m = create_model("mobilenet_v3_large", dilated=True).eval()
    assert m.forward_features(torch.zeros(1, 3, 224, 224)).shape[-1] == 14
    assert n_params(m) == 5_483_032


# MobileNetV5-300M has 294M parameters: building it takes seconds and a forward at its 768x768 minutes of
# CPU, so its generic cases run with -m slow; MobileNetV5-Base at width 0.25 keeps the V5 blocks in the
# default run.
HEAVY_V5 = {"mobilenet_v5_300m", "mobilenet_v5_300m_enc"}
ENCODERS = {"mobilenet_v5_300m_enc"}


def _slow_if(heavy: bool) -> list[pytest.MarkDecorator]:
    return [pytest.mark.slow] if heavy else []


@pytest.mark.parametrize("name", [pytest.param(n, marks=_slow_if(n in HEAVY_V5)) for n in list_models()])
def test_small_input_keeps_4x4_map(name: str) -> None:
    m = create_model(name, small_input=True).eval()
    with torch.no_grad():
        assert m.forward_features(torch.zeros(1, 3, 32, 32)).shape[-1] == 4, name
    assert m.pretrained_cfg["input_size"] == (3, 32, 32)


def _classes(name: str, n: int) -> dict[str, int]:
    """``num_classes=n``, or nothing for an encoder (it has no head; ``forward`` returns its grid)."""
    return {} if name in ENCODERS else {"num_classes": n}


def _check_logits(name: str, model: torch.nn.Module, out: torch.Tensor, batch: int, classes: int) -> None:
    if name in ENCODERS:
        assert out.shape[:2] == (batch, model.num_features) and out.ndim == 4
    else:
        assert out.shape == (batch, classes)
    assert torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------ generic
VARIANTS = [(name, {}) for name in list_models()] + [
    ("mobilenet_v5_base", {"width_mult": 0.25}),
    ("mobilenet_v1", {"separable": False, "width_mult": 0.25}),
    ("mobilenet_v3_large", {"minimalistic": True}),
    ("mobilenet_v3_large", {"reduced_tail": True, "dilated": True}),
    ("mobilenet_v3_small", {"use_se": False, "use_hswish": False}),
    ("mobilenet_v3_large", {"width_mult": 0.75, "width_convention": "timm"}),
    ("mobilenet_v2", {"width_mult": 0.35}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in VARIANTS]
# the default-width V5-Base forward at 256 takes seconds; V5-Base at width 0.25 covers its blocks cheaply
GENERIC = [pytest.param(n, kw, id=i, marks=_slow_if(n in HEAVY_V5 or (n == "mobilenet_v5_base" and not kw)))
           for (n, kw), i in zip(VARIANTS, IDS, strict=True)]


@pytest.mark.parametrize(("name", "kwargs"), GENERIC)
def test_forward_default_and_small_input(name: str, kwargs: dict) -> None:
    model = create_model(name, **_classes(name, 7), **kwargs).eval()
    size = model.pretrained_cfg["input_size"][-1]
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    _check_logits(name, model, out, 2, 7)
    small = create_model(name, **_classes(name, 7), small_input=True, **kwargs).eval()
    with torch.no_grad():
        out = small(torch.randn(2, 3, 32, 32))
    _check_logits(name, small, out, 2, 7)


@pytest.mark.parametrize(("name", "kwargs"), GENERIC)
def test_every_parameter_gets_a_gradient(name: str, kwargs: dict) -> None:
    model = create_model(name, **_classes(name, 5), small_input=True, in_chans=1, drop_path_rate=0.1, **kwargs).train()
    model(torch.randn(2, 1, 32, 32)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


# torch.export of the three largest V4 models takes 10-16 s each on 2 cores: their round trip runs with -m slow
# (V4-Conv-Small/Medium keep the V4 blocks here, and test_deploy exports V4-Hybrid-Medium to pt2).
# mobilenet_table builds V3-Small's table by default: its export is mobilenet_v3_small's, already covered.
_HEAVY_EXPORT = {"mobilenet_v4_hybrid_large", "mobilenet_v4_hybrid_medium", "mobilenet_v4_conv_large", "mobilenet_table",
                 "mobilenet_v5_base", *HEAVY_V5}
EXPORT_VARIANTS = [pytest.param(n, kw, id=i, marks=[pytest.mark.slow] if n in _HEAVY_EXPORT and not kw else [])
                   for (n, kw), i in zip(VARIANTS, IDS, strict=True)]


@pytest.mark.parametrize(("name", "kwargs"), EXPORT_VARIANTS)
def test_torch_export_round_trip(name: str, kwargs: dict, tmp_path) -> None:
    model = create_model(name, **_classes(name, 10), small_input=True, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    ep = torch.export.export(model, (x,))
    path = tmp_path / "model.pt2"
    torch.export.save(ep, path)
    loaded = torch.export.load(path).module()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "kwargs"), GENERIC)
def test_features_only_channels_and_reductions(name: str, kwargs: dict) -> None:
    model = create_model(name, features_only=True, **kwargs).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 64))
    assert len(feats) == 5
    assert [f.shape[1] for f in feats] == model.feature_channels
    assert [64 // f.shape[-1] for f in feats] == model.feature_reductions
    sub = create_model(name, features_only=True, out_indices=(1, 3), **kwargs).eval()
    with torch.no_grad():
        feats2 = sub(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats2] == [model.feature_channels[1], model.feature_channels[3]]
    assert n_params(sub) < n_params(model)


@pytest.mark.parametrize("name", [pytest.param(n, marks=_slow_if(n in HEAVY_V5)) for n in list_models() if n not in ENCODERS])
def test_timm_surface(name: str) -> None:
    model = create_model(name, small_input=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.head_hidden_size)
        torch.testing.assert_close(model.forward_head(feats), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)
    cfg = model.pretrained_cfg
    assert {"input_size", "mean", "std", "interpolation", "crop_pct"} <= set(cfg)


def test_errors_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="mobilenet_v3_large"):
        create_model("mobilenet_v3_lrge")
    with pytest.raises(ValueError, match="width_mult"):
        create_model("mobilenet_v2", widht_mult=1.0)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match=f"width_mult={bad}"):
            create_model("mobilenet_v3_small", width_mult=bad)
    with pytest.raises(ValueError, match="width_convention='caffe'"):
        create_model("mobilenet_v3_small", width_convention="caffe")
    with pytest.raises(ValueError, match=r"dropout=1\.5"):
        create_model("mobilenet_v2", dropout=1.5)
    with pytest.raises(ValueError, match="num_classes=-1"):
        create_model("mobilenet_v2", num_classes=-1)
    with pytest.raises(ValueError, match="out_indices"):
        create_model("mobilenet_v2", features_only=True, out_indices=(7,))
    with pytest.raises(ValueError, match=r"\(1, 1, 32, 32\)"):
        create_model("mobilenet_v2")(torch.zeros(1, 1, 32, 32))
    from mobilenets.models.blocks import BlockSpec

    with pytest.raises(ValueError, match="illegal stride value 3"):
        BlockSpec("ir", 8, 8, 3, 3)


def test_list_models_pattern() -> None:
    assert list_models("mobilenet_v3*") == ["mobilenet_v3_large", "mobilenet_v3_small"]
    assert {"mobilenet_v1", "mobilenet_v2", "resnet18", "resnet50"} <= set(list_models())


def test_depthwise_convs_run_fp32_under_cpu_autocast_only() -> None:
    """CPU bf16 autocast keeps depthwise convs in fp32 (oneDNN's bf16 depthwise backward is slow);
    pointwise convs still run in bf16, and outside autocast the model is unchanged."""
    from mobilenets.models.layers import DepthwiseConv2d, DepthwiseConv2dSame

    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", num_classes=10, small_input=True)
    dw = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    assert len(dw) == 11 and all(m.groups == m.in_channels > 1 for m in dw)
    pw = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    seen: dict[str, set[torch.dtype]] = {"dw": set(), "pw": set()}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen[k].add(o.dtype)) for k, ms in (("dw", dw), ("pw", pw))
             for m in ms]
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert seen == {"dw": {torch.float32}, "pw": {torch.bfloat16}}
    assert all(m.weight.grad is not None and m.weight.grad.dtype == torch.float32 for m in dw)
    for h in hooks:
        h.remove()
    # Without autocast a DepthwiseConv2d is exactly nn.Conv2d with the same parameters.
    conv = dw[3]
    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            groups=conv.groups, bias=False)
    plain.load_state_dict(conv.state_dict())
    z = torch.randn(2, conv.in_channels, 9, 9)
    assert torch.equal(conv(z), plain(z))
    # TF-"same" padding keeps the policy, and switching padding modes keeps the depthwise class.
    same = create_model("mobilenet_v3_small", pad_type="same")
    assert any(isinstance(m, DepthwiseConv2dSame) for m in same.modules())
    same.set_pad_type("")
    assert not any(isinstance(m, DepthwiseConv2dSame) for m in same.modules())
    assert sum(isinstance(m, DepthwiseConv2d) for m in same.modules()) == 11
