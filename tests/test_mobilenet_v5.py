"""MobileNetV5: timm's parameter counts and MACs, RMSNorm2d and the MSFA neck against references written
here from their definitions, the encoder, and the V5 pieces of the tables.

The generic checks every registered model gets (forward, gradients, torch.export, features_only) live in
test_models.py; timm checkpoint loading is covered by the timm_mobilenet_v5_* fixtures in test_weights.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobilenets
from mobilenets import create_model
from mobilenets.models.blocks import (
    FusedInvertedBottleneck,
    MobileAttentionBlock,
    UniversalInvertedBottleneck,
)
from mobilenets.models.layers import GELUTanh, LayerScale2d, RMSNorm2d
from mobilenets.models.neck import MSFASpec, MultiScaleFusionAdapter
from mobilenets.weights.sources import timm as timm_source

# timm 1.0.31: parameters, default size, forward FLOPs / 2 (torch's FlopCounterMode) at that size.
V5 = [
    ("mobilenet_v5_300m_enc", 294_126_912, 768, 435_741_474_816),
    ("mobilenet_v5_300m", 294_126_912, 768, 435_741_474_816),
    ("mobilenet_v5_base", 82_647_976, 256, 20_051_804_160),
]


@pytest.mark.parametrize(("name", "params", "size", "macs"), V5, ids=[v[0] for v in V5])
def test_params_equal_timm_and_macs_within_half_a_percent(name: str, params: int, size: int, macs: int) -> None:
    # On the meta device: shapes only, so the 294M-parameter model builds and profiles in seconds.
    with torch.device("meta"):
        model = create_model(name).eval()
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.pretrained_cfg["input_size"] == (3, size, size)
    got = mobilenets.profile(model, size).macs
    assert abs(got - macs) / macs <= 0.005, f"{got / 1e9:.2f}G vs timm {macs / 1e9:.2f}G"


def _reference_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """torch's own RMSNorm over the last dim, applied to channels-last: an independent implementation."""
    return F.rms_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, eps).permute(0, 3, 1, 2)


def test_rms_norm_2d_equals_torch_rms_norm_over_channels() -> None:
    torch.manual_seed(0)
    norm = RMSNorm2d(12, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 12, 5, 7) * 4 + 1
    torch.testing.assert_close(norm(x), _reference_rms_norm(x, norm.weight, 1e-6), atol=1e-6, rtol=1e-5)
    # no batch statistics: one image normalises the same alone as in a batch, in train and eval mode
    torch.testing.assert_close(norm.train()(x[1:2]), norm.eval()(x)[1:2])
    assert [n for n, _ in norm.named_parameters()] == ["weight"]


def test_gelu_tanh_is_the_tanh_approximation() -> None:
    x = torch.linspace(-6, 6, 101)
    expected = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELUTanh()(x), expected, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(GELUTanh()(x), nn.GELU()(x), atol=1e-5)  # not the exact erf GELU


def _reference_msfa(feats: list[torch.Tensor], msfa: MultiScaleFusionAdapter, grid: int) -> torch.Tensor:
    """The adapter from its definition with other ops: nearest upsampling as repeat_interleave, 1x1 convs as
    einsum, the norms and GELU from their formulas, average pooling as a reshape and mean."""
    h = feats[0].shape[-1]
    up = [f.repeat_interleave(h // f.shape[-1], -1).repeat_interleave(h // f.shape[-2], -2) for f in feats]
    x = torch.cat(up, 1)

    def rms(t: torch.Tensor, norm: RMSNorm2d) -> torch.Tensor:
        return t / (t.pow(2).mean(1, keepdim=True) + norm.eps).sqrt() * norm.weight[None, :, None, None]

    def gelu(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * t * (1 + torch.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3)))

    exp, proj = msfa.ffn.pw_exp, msfa.ffn.pw_proj
    x = gelu(rms(torch.einsum("oc,nchw->nohw", exp.conv.weight[:, :, 0, 0], x), exp.bn))
    x = rms(torch.einsum("oc,nchw->nohw", proj.conv.weight[:, :, 0, 0], x), proj.bn)
    n, c, hh, _ = x.shape
    k = hh // grid
    x = x.reshape(n, c, grid, k, grid, k).mean((3, 5))
    return rms(x, msfa.norm)


def test_msfa_equals_a_reference_from_its_definition() -> None:
    torch.manual_seed(0)
    msfa = MultiScaleFusionAdapter([16, 24], MSFASpec(out_chs=40, grid=4), RMSNorm2d, "gelu_tanh").eval()
    for m in msfa.modules():
        if isinstance(m, RMSNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    feats = [torch.randn(2, 16, 8, 8), torch.randn(2, 24, 4, 4)]  # C4 at 8x8 and C5 at 4x4: pooled 2x2 to 4x4
    with torch.no_grad():
        got = msfa(feats)
        torch.testing.assert_close(got, _reference_msfa(feats, msfa, 4), atol=1e-5, rtol=1e-4)
    assert got.shape == (2, 40, 4, 4)
    assert msfa.ffn.pw_exp.conv.out_channels == 80  # expansion 2 of the 40 concatenated channels
    assert not msfa.ffn.has_skip and isinstance(msfa.ffn.layer_scale, nn.Identity)
    # a grid that does not divide the map is resized (bilinear) rather than pooled
    odd = MultiScaleFusionAdapter([16, 24], MSFASpec(out_chs=40, grid=3), RMSNorm2d, "gelu_tanh").eval()
    with torch.no_grad():
        assert odd(feats).shape == (2, 40, 3, 3)


def _small(name: str, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, width_mult=0.1, msfa_chs=64, **kw).eval()


def test_encoder_returns_the_msfa_grid_and_has_no_head() -> None:
    enc = _small("mobilenet_v5_300m_enc", msfa_grid=2)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        grid = enc(x)
        assert grid.shape == (1, 64, 2, 2)
        torch.testing.assert_close(enc.forward_features(x), grid)
    assert enc.pad_type == "same" and enc.pretrained_cfg["mean"] == (0.0, 0.0, 0.0)
    assert enc.pretrained_cfg["std"] == (1.0, 1.0, 1.0) and enc.pretrained_cfg["input_size"] == (3, 768, 768)
    with pytest.raises(RuntimeError, match="encoder"):
        enc.forward_head(grid)
    with pytest.raises(ValueError, match="num_classes=10"):
        create_model("mobilenet_v5_300m_enc", width_mult=0.1, num_classes=10)
    with pytest.raises(ValueError, match="msfa_grid=0"):
        create_model("mobilenet_v5_base", msfa_grid=0)


def test_forward_intermediates_gives_the_grid_and_the_stage_outputs_in_one_pass() -> None:
    model = _small("mobilenet_v5_base", num_classes=3)
    feats_only = _small("mobilenet_v5_base", features_only=True)
    feats_only.load_state_dict({k: v for k, v in model.state_dict().items() if k in feats_only.state_dict()})
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        grid, maps = model.forward_intermediates(x, intermediates_only=False)
        torch.testing.assert_close(grid, model.forward_features(x))
        expected = feats_only(x)
        assert [m.shape[1] for m in maps] == feats_only.feature_channels == [64, 16, 24, 48, 104]
        for got, want in zip(maps, expected, strict=True):
            torch.testing.assert_close(got, want)
        last_two = model.forward_intermediates(x, indices=(-2, -1))
        torch.testing.assert_close(last_two[1], maps[4])
    assert grid.shape == (2, 64, 16, 16)  # 64 px: C4 is 4x4, resized up to the default 16x16 grid
    with pytest.raises(ValueError, match="indices"):
        model.forward_intermediates(x, indices=(7,))
    assert model.forward_head(grid).shape == (2, 3)


def test_v5_blocks_follow_the_tables() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v5_300m")
        base = create_model("mobilenet_v5_base")
    assert not any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in model.modules())
    acts = {type(m) for m in model.modules() if isinstance(m, nn.GELU | nn.ReLU | nn.Hardswish)}
    assert acts == {GELUTanh}
    assert model.stem.conv.bias is not None  # V5's stem conv has a bias
    stage_lengths = [len(s) for s in model.blocks]
    assert stage_lengths == [3, 5, 37, 39] and [len(s) for s in base.blocks] == [3, 5, 16, 15]
    fused = [m for m in model.modules() if isinstance(m, FusedInvertedBottleneck)]
    assert len(fused) == 3 and not any(isinstance(getattr(m, "layer_scale", None), LayerScale2d) for m in fused)
    attn = [m for m in model.modules() if isinstance(m, MobileAttentionBlock)]
    uib = [m for m in model.blocks.modules() if isinstance(m, UniversalInvertedBottleneck)]
    assert all(isinstance(m.layer_scale, LayerScale2d) and m.layer_scale.init_value == 1e-5 for m in attn + uib)
    # stage 2 attends with keys/values downsampled (a stride-2 depthwise conv), stage 3 at full resolution
    kv = [(hasattr(m.attn.key, "down_conv"), m.attn.heads, m.attn.key_dim) for m in attn]
    assert kv == [(True, 12, 64)] * 14 + [(False, 16, 96)] * 19
    # timm's "s2" on the base attention rows is dropped by its builder: stride 1, with the shortcut
    base_attn = [m for m in base.modules() if isinstance(m, MobileAttentionBlock)]
    assert len(base_attn) == 13 and all(m.has_skip for m in base_attn)
    assert model.msfa.ffn.pw_exp.conv.in_channels == 640 + 1280 and model.num_features == 2048


@pytest.mark.parametrize("layer_scale", [1.0, None])
def test_layer_scale_option_sets_or_removes_every_branch_scale(layer_scale: float | None) -> None:
    with torch.device("meta"):
        ref = create_model("mobilenet_v5_base")
        model = create_model("mobilenet_v5_base", layer_scale=layer_scale)
    scales = [m for m in model.modules() if isinstance(m, LayerScale2d)]
    n_ref = sum(isinstance(m, LayerScale2d) for m in ref.modules())
    # every UIB and attention block of the stages carries one (5 + 16 + 15 in base); the
    # edge-residual stem stage and the MSFA carry none
    branch_blocks = [b for stage in ref.blocks for b in stage if type(b).__name__ != "FusedInvertedBottleneck"]
    assert n_ref == len(branch_blocks) == 36
    gammas = sum(m.gamma.numel() for m in ref.modules() if isinstance(m, LayerScale2d))
    if layer_scale is None:
        assert not scales and sum(p.numel() for p in model.parameters()) == 82_647_976 - gammas
    else:
        assert len(scales) == n_ref and all(m.init_value == layer_scale for m in scales)
        assert sum(p.numel() for p in model.parameters()) == 82_647_976


@pytest.mark.parametrize("bad", [0, -1e-5, "small", True])
def test_layer_scale_option_rejects_non_positive_values(bad: object) -> None:
    with pytest.raises(ValueError, match=r"layer_scale=.*expected a number > 0"):
        create_model("mobilenet_v5_base", layer_scale=bad)


def test_timm_names_map_to_ours() -> None:
    assert timm_source.architecture("mobilenetv5_300m_enc") == ("mobilenet_v5_300m_enc", {}, "timm")
    assert timm_source.architecture("mobilenetv5_300m.gemma3n") == ("mobilenet_v5_300m", {}, "timm")
    assert timm_source.architecture("mobilenetv5_base") == ("mobilenet_v5_base", {}, "timm")
    with pytest.raises(ValueError, match="mobilenetv5_base"):
        timm_source.architecture("mobilenetv5_bse")


# ------------------------------------------------------------------------------ timm checkpoints
def _fixture_model(name: str, **overrides: object) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A V5 weights fixture (test_weights.py checks them all) built, loaded, and its input and expected output."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from mobilenets.weights import load_weights

    root = Path(__file__).parent / "fixtures" / "weights"
    fx = json.loads((root / "manifest.json").read_text())["fixtures"][name]
    kwargs = {k: v for k, v in fx["kwargs"].items() if k != "pad_type"}
    model = create_model(fx["arch"], **{**kwargs, **overrides})
    load_weights(model, root / fx["files"][0])
    x = load_file(str(root / "input.safetensors"))["x"]
    return model.eval(), x, load_file(str(root / "expected.safetensors"))[name]


def test_gemma3n_nesting_loads_and_symmetric_padding_would_not_match(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    from mobilenets.weights import load_weights

    model, x, expected = _fixture_model("timm_mobilenet_v5_300m_enc")
    with torch.no_grad():
        assert (model(x) - expected).abs().max() <= 1e-4
    # Gemma 3n's checkpoints hold the encoder under model.vision_tower.timm_model. (and other towers beside it)
    from pathlib import Path

    state = load_file(str(Path(__file__).parent / "fixtures" / "weights" / "timm_mobilenet_v5_300m_enc.safetensors"))
    nested = {f"model.vision_tower.timm_model.{k}": v for k, v in state.items()}
    nested["model.language_model.embed_tokens.weight"] = torch.zeros(4, 4)
    save_file(nested, tmp_path / "gemma.safetensors")
    again, _, _ = _fixture_model("timm_mobilenet_v5_300m_enc")
    result = load_weights(again, tmp_path / "gemma.safetensors")
    assert not result.missing and result.source == "timm"
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
        # the encoder's weights were trained with TF "same" padding: symmetric padding changes its output
        model.set_pad_type("")
        assert (model(x) - expected).abs().max() > 1e-3
