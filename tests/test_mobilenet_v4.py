"""MobileNetV4: timm's parameter counts and MACs, the four UIB forms, Mobile MQA, and the V4 head.

The generic checks every registered model gets (forward, gradients, torch.export, features_only) live in
test_models.py; timm checkpoint loading is covered by the timm_mobilenet_v4_* fixtures in test_weights.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobilenets
from mobilenets import create_model
from mobilenets.models import BlockSpec
from mobilenets.models.blocks import (
    FusedInvertedBottleneck,
    MobileAttentionBlock,
    MultiQueryAttention2d,
    UniversalInvertedBottleneck,
)
from mobilenets.models.layers import LayerScale2d

# Issue 9: timm's parameter counts, and its MACs as forward FLOPs / 2 at each model's training size.
V4 = [
    ("conv_small", 3_774_024, 224, 186.0e6),
    ("conv_medium", 9_715_512, 256, 1080.2e6),
    ("conv_large", 32_590_864, 384, 6376.2e6),
    ("hybrid_medium", 11_074_648, 256, 1271.2e6),
    ("hybrid_large", 37_764_624, 384, 7711.9e6),
]


@pytest.mark.parametrize(("variant", "params", "size", "macs"), V4, ids=[v[0] for v in V4])
def test_params_equal_timm_and_macs_within_1_5_percent(variant: str, params: int, size: int, macs: float) -> None:
    model = create_model(f"mobilenet_v4_{variant}").eval()
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.pretrained_cfg["input_size"] == (3, size, size)
    got = mobilenets.profile(model, size).macs
    assert abs(got - macs) / macs <= 0.015, f"{got / 1e6:.1f}M vs timm {macs / 1e6:.1f}M"


def _blocks(model: nn.Module, cls: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


def test_uib_forms_follow_the_table() -> None:
    """conv_small's third stage has one ExtraDW, four IR and one ConvNeXt-like row; medium has four FFN rows."""
    stage = create_model("mobilenet_v4_conv_small").blocks[2]
    forms = [(not isinstance(b.dw_start, nn.Identity), not isinstance(b.dw_mid, nn.Identity)) for b in stage]
    assert forms == [(True, True)] + [(False, True)] * 4 + [(True, False)]
    assert stage[0].dw_start.conv.kernel_size == (5, 5) and stage[0].dw_mid.conv.kernel_size == (5, 5)
    assert stage[-1].dw_start.conv.kernel_size == (3, 3)
    ffn = [b for b in _blocks(create_model("mobilenet_v4_conv_medium"), UniversalInvertedBottleneck)
           if isinstance(b.dw_start, nn.Identity) and isinstance(b.dw_mid, nn.Identity)]
    assert len(ffn) == 4  # one in stage 2, three in stage 3


@pytest.mark.parametrize(("start", "mid", "end", "where"), [
    (3, 5, 0, "dw_mid"), (3, 0, 0, "dw_start"), (0, 0, 3, "dw_end"), (0, 3, 3, "dw_mid"),
])
def test_uib_stride_goes_to_the_first_depthwise_present(start: int, mid: int, end: int, where: str) -> None:
    spec = BlockSpec("uib", 16, 24, mid, 2, mid_chs=64, kernel_start=start, kernel_end=end)
    block = UniversalInvertedBottleneck(spec, nn.BatchNorm2d)
    strided = [n for n in ("dw_start", "dw_mid", "dw_end")
               if not isinstance(getattr(block, n), nn.Identity) and getattr(block, n).conv.stride == (2, 2)]
    assert strided == [where]
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
    # start/end depthwise convs are linear, expansion and middle depthwise activated
    if start:
        assert isinstance(block.dw_start.act, nn.Identity)
    assert isinstance(block.pw_exp.act, nn.ReLU) and isinstance(block.pw_proj.act, nn.Identity)


def test_uib_spec_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="kernel_start=4"):
        BlockSpec("uib", 8, 8, 3, 1, kernel_start=4)
    with pytest.raises(ValueError, match="at least one depthwise"):
        BlockSpec("uib", 8, 8, 0, 2)
    with pytest.raises(ValueError, match="kernel=0"):
        BlockSpec("ir", 8, 8, 0, 1)  # only a UIB may drop its depthwise
    with pytest.raises(ValueError, match="mqa block needs"):
        BlockSpec("mqa", 8, 8, 3, 1, heads=0, key_dim=8)


def _reference_mqa(attn: MultiQueryAttention2d, x: torch.Tensor) -> torch.Tensor:
    """The same layer written independently: per-head loop over torch's fused attention."""
    b, _, h, w = x.shape
    q = attn.query(x).flatten(2)  # B, H*dk, L
    k = attn.key(x).flatten(2).transpose(1, 2)  # B, S, dk
    v = attn.value(x).flatten(2).transpose(1, 2)  # B, S, dv
    heads = []
    for i in range(attn.heads):
        qi = q[:, i * attn.key_dim:(i + 1) * attn.key_dim].transpose(1, 2)  # B, L, dk
        heads.append(F.scaled_dot_product_attention(qi, k, v))  # B, L, dv
    o = torch.cat(heads, dim=-1).transpose(1, 2).reshape(b, -1, h, w)  # channel = head * dv + d
    return attn.output(o)


@pytest.mark.parametrize("kv_stride", [1, 2])
def test_mobile_mqa_matches_an_independent_attention(kv_stride: int) -> None:
    torch.manual_seed(0)
    attn = MultiQueryAttention2d(32, 48, heads=4, key_dim=16, value_dim=16, kv_stride=kv_stride).eval()
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        got, ref = attn(x), _reference_mqa(attn, x)
    assert got.shape == (2, 48, 6, 6)
    assert (got - ref).abs().max().item() < 1e-5
    # one shared key and value head (multi-query), downsampled when kv_stride is 2
    assert attn.key.proj.out_channels == 16 and attn.query.proj.out_channels == 64
    assert ("down_conv" in dict(attn.key.named_children())) == (kv_stride == 2)


def test_hybrids_carry_layer_scale_and_attention_conv_models_do_not() -> None:
    hybrid = create_model("mobilenet_v4_hybrid_medium")
    assert len(_blocks(hybrid, MobileAttentionBlock)) == 8
    scales = _blocks(hybrid, LayerScale2d)
    assert scales and all(torch.all(s.gamma == 1e-5) for s in scales)
    large = create_model("mobilenet_v4_hybrid_large")
    assert isinstance(large.stem.act, nn.GELU) and isinstance(large.head_hidden[2], nn.GELU)
    conv = create_model("mobilenet_v4_conv_medium")
    assert not _blocks(conv, LayerScale2d) and not _blocks(conv, MobileAttentionBlock)
    assert isinstance(conv.blocks[0][0], FusedInvertedBottleneck)
    # attention projections get the reference code's Xavier init, not the conv default
    proj = _blocks(hybrid, MultiQueryAttention2d)[0].query.proj.weight
    bound = (6 / (proj.shape[0] + proj.shape[1])) ** 0.5
    assert proj.abs().max() <= bound and proj.abs().max() > 0.5 * bound


def test_head_is_linear_batchnorm_act() -> None:
    model = create_model("mobilenet_v4_conv_small", num_classes=10)
    linear, norm, act = model.head_hidden
    assert linear.bias is None and (linear.in_features, linear.out_features) == (960, 1280)
    assert isinstance(norm, nn.BatchNorm1d) and isinstance(act, nn.ReLU)
    feats = model.forward_head(model.forward_features(torch.randn(2, 3, 64, 64)), pre_logits=True)
    assert feats.shape == (2, 1280)


def test_width_multiplier_follows_timm() -> None:
    """Stem fixed below 1.0, widths and the 960 conv scaled, 1280 head fixed (timm's fix_stem rules)."""
    half = create_model("mobilenet_v4_conv_medium", width_mult=0.5)
    assert half.stem.conv.out_channels == 32
    assert half.blocks[-1][0].conv.out_channels == 480 and half.head_hidden[0].out_features == 1280
    wide = create_model("mobilenet_v4_conv_medium", width_mult=1.5)
    assert wide.stem.conv.out_channels == 48


def test_conv_small_trains_on_digits_shape() -> None:
    """The main job's input (1 channel, 32x32, small-input stem): loss goes down in a few steps."""
    torch.manual_seed(0)
    model = create_model("mobilenet_v4_conv_small", num_classes=10, in_chans=1, small_input=True)
    x, y = torch.randn(16, 1, 32, 32), torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7, losses


def test_training_pipeline_runs_v4_hybrid(tmp_path: Path) -> None:
    """The whole pipeline (augmentation, EMA, bf16 autocast, checkpoint, native weights) on a hybrid."""
    from mobilenets.config import TrainConfig, load_config
    from mobilenets.engine.train import train
    from mobilenets.weights import from_pretrained

    cfg = load_config(TrainConfig, None, [
        "data.name=synthetic", "data.synthetic_size=96", "data.image_size=16", "model.num_classes=4",
        "model.name=mobilenet_v4_hybrid_medium", "model.kwargs={small_input: true, width_mult: 0.25}",
        "batch_size=32", "epochs=1", "sched.warmup_epochs=0", "amp=bf16", "aug.crop=pad", "aug.hflip=0.5",
        "quiet=true", f"output_dir={tmp_path / 'run'}",
    ])
    summary = train(cfg)
    assert summary["model"] == "mobilenet_v4_hybrid_medium" and 0 <= summary["test_acc1"] <= 100
    model = from_pretrained(tmp_path / "run")
    assert isinstance(model.blocks[2][4], MobileAttentionBlock)  # the table's first attention row
    assert summary["params"] == sum(p.numel() for p in model.parameters())


def test_bench_runs_v4() -> None:
    from mobilenets.deploy.bench import run_bench

    rows = run_bench("mobilenet_v4_hybrid_medium", backends="eager,channels_last", input_size=32,
                     kwargs={"width_mult": 0.25, "small_input": True}, min_time_s=0.05, min_runs=3)
    assert [r.backend for r in rows] == ["eager", "channels_last"]
    assert all(r.median_ms > 0 and r.input_size == 32 for r in rows)
