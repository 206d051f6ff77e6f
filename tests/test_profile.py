"""Tests for mobilenets.cost (the profiler) on toy models built from plain torch.nn.

The model builders are written separately, so every model here is assembled from nn.Sequential and small
custom modules. The reference for MACs is torch's own FlopCounterMode (total / 2), the convention behind
the published MobileNet and torchvision figures.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mobilenets.cost import (
    KINDS,
    ProfileResult,
    flop_counter_macs,
    infer_in_chans,
    profile,
    register_atomic,
)

# ---------------------------------------------------------------------------------------------------------
# Toy models
# ---------------------------------------------------------------------------------------------------------


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def dw_separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """MobileNetV1 block: 3x3 depthwise -> BN/ReLU -> 1x1 pointwise -> BN/ReLU."""
    return nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1))


def tiny_v1(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        conv_bn(3, 8, 3, 2),
        dw_separable(8, 16),
        dw_separable(16, 32, stride=2),
        dw_separable(32, 32),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid, then a channel-wise multiply."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand -> kxk depthwise -> SE -> 1x1 project, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int = 4, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = conv_bn(cin, hidden, 1)
        self.dw = conv_bn(hidden, hidden, k, stride, groups=hidden)
        self.se = SqueezeExcite(hidden, hidden // 4)
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_res else y


def tiny_v3() -> nn.Sequential:
    return nn.Sequential(
        conv_bn(3, 8, 3, 2),
        InvertedResidual(8, 8),
        InvertedResidual(8, 16, k=5, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(16, 32, 1),  # MobileNetV3's post-pool head conv: a 1x1 conv on a 1x1 map
        nn.Hardswish(),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def grouped_dilated() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 12, 3, stride=2, padding=1, bias=True),  # conv with bias, stride 2
        nn.Conv2d(12, 24, 3, padding=2, dilation=2, groups=3),  # grouped (not depthwise) + dilated
        nn.PReLU(),
        nn.Conv2d(24, 24, (3, 5), padding=(1, 2), groups=24),  # non-square depthwise
        nn.Conv2d(24, 16, 1),
        nn.ConvTranspose2d(16, 8, 2, stride=2),
        nn.Conv2d(8, 8, 3, groups=2),
    )


class ChannelAttention1d(nn.Module):
    """ECA-style: a Conv1d across pooled channels (exercises Conv1d inside a 2D model)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv(x.mean((2, 3)).unsqueeze(1)).squeeze(1)
        return x * s.sigmoid()[:, :, None, None]


class SharedTwice(nn.Module):
    """Reuses one conv twice and ties a head's weight, to check per-call MACs and once-only params."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.eca = ChannelAttention1d()
        self.a = nn.Linear(8, 8, bias=False)
        self.b = nn.Linear(8, 8, bias=False)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.eca(self.body(self.body(self.stem(x))))
        return self.b(self.a(x.mean((2, 3))))


class SelfAttention2d(nn.Module):
    """MobileNetV4-style attention over a feature map, calling F.scaled_dot_product_attention itself."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        o = F.scaled_dot_product_attention(q, k, v)  # 4D: the CPU flash kernel FlopCounterMode misses
        return self.proj(o.transpose(-1, -2).reshape(b, c, h, w))


class ManualAttention(nn.Module):
    """Same attention written with matmuls (the math path FlopCounterMode does count)."""

    def __init__(self, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)
        p = (t @ t.transpose(-1, -2)).softmax(-1)
        return (p @ t).transpose(-1, -2).reshape(b, c, h, w)


class TokenMHA(nn.Module):
    def __init__(
        self, dim: int = 16, batch_first: bool = True, need_weights: bool = False, **kw: object
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 3, 2, 1)
        self.batch_first = batch_first
        self.need_weights = need_weights
        self.mha = nn.MultiheadAttention(dim, 4, batch_first=batch_first, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.stem(x).flatten(2).transpose(1, 2)  # (N, L, E)
        if not self.batch_first:
            t = t.transpose(0, 1)
        return self.mha(t, t, t, need_weights=self.need_weights)[0]


def reference_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Independent of the code under test: torch's FlopCounterMode total / 2 / batch."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2 // x.shape[0]


CONV_LINEAR_MODELS = {
    "v1_stack": (tiny_v1, (3, 32, 32)),
    "inverted_residual_se": (tiny_v3, (3, 32, 32)),
    "grouped_dilated_transposed": (grouped_dilated, (3, 24, 20)),
    "shared_and_conv1d": (SharedTwice, (3, 12, 12)),
    "non_square": (tiny_v1, (3, 40, 24)),
}


# ---------------------------------------------------------------------------------------------------------
# MACs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONV_LINEAR_MODELS))
@pytest.mark.parametrize("batch_size", [1, 2])
def test_macs_equal_flop_counter(name: str, batch_size: int) -> None:
    builder, chw = CONV_LINEAR_MODELS[name]
    torch.manual_seed(0)
    model = builder()
    result = profile(model, chw, batch_size=batch_size)
    expected = reference_macs(model, torch.randn(batch_size, *chw))
    assert result.macs == expected
    assert isinstance(result.macs, int)
    assert sum(row.macs for row in result.rows) == result.macs
    assert flop_counter_macs(model, chw, batch_size=batch_size, fill_gaps=False) == expected
    assert flop_counter_macs(model, chw, batch_size=batch_size) == expected  # gap formulas change nothing


def test_batch_size_reports_per_image() -> None:
    model = tiny_v3()
    one, two = profile(model, 32), profile(model, 32, batch_size=2)
    assert one.macs == two.macs
    assert [r.macs for r in one.rows] == [r.macs for r in two.rows]
    assert two.batch_size == 2


def test_analytic_conv_formula_by_hand() -> None:
    conv = nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=3)
    result = profile(conv, (6, 15, 9))
    h_out, w_out = 8, 5
    assert result.rows[0].output_shape == (12, h_out, w_out)
    assert result.macs == 12 * h_out * w_out * (6 // 3) * 3 * 3  # bias adds are free


def test_shared_module_counts_every_call_and_params_once() -> None:
    model = SharedTwice()
    result = profile(model, 12)
    body = next(r for r in result.rows if r.name == "body")
    assert body.calls == 2
    assert body.macs == 2 * 8 * 12 * 12 * 8 * 9
    assert result.params == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in result.rows) == result.params
    assert next(r for r in result.rows if r.name == "b").params == 0  # tied to a.weight, counted there


# ---------------------------------------------------------------------------------------------------------
# Attention: analytic MHA, functional SDPA, and FlopCounterMode's CPU/fast-path gaps
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"bias": False}, {"add_bias_kv": True}, {"add_zero_attn": True}, {"kdim": 16, "vdim": 16}],
)
def test_mha_slow_path_matches_plain_flop_counter(kwargs: dict[str, object]) -> None:
    # batch_first=False + need_weights=True takes the bmm path torch's counter sees without help.
    model = TokenMHA(batch_first=False, need_weights=True, **kwargs)
    result = profile(model, 16)
    assert result.macs == flop_counter_macs(model, 16, fill_gaps=False)
    mha = next(r for r in result.rows if r.name == "mha")
    assert (mha.kind, mha.output_shape) == ("attention", (64, 16))
    assert mha.params == sum(p.numel() for p in model.mha.parameters())  # atomic: out_proj included


def test_mha_fast_path_counted_analytically() -> None:
    model = TokenMHA(batch_first=True, need_weights=False)
    result = profile(model, 16, batch_size=2)
    n_tok, e = 64, 16
    stem = 16 * 8 * 8 * 3 * 9
    assert result.macs == stem + 4 * n_tok * e * e + 2 * n_tok * n_tok * e
    assert flop_counter_macs(model, 16, fill_gaps=False) == stem  # torch's counter misses the fast path
    assert flop_counter_macs(model, 16, batch_size=2) == result.macs


def test_functional_sdpa_attributed_to_calling_module() -> None:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), SelfAttention2d(), ManualAttention())
    result = profile(model, (12, 8))
    tokens, dim = 6 * 4, 16
    attn = {r.name: r for r in result.rows}
    assert attn["1"].macs == 2 * tokens * tokens * dim
    assert attn["1"].kind == attn["2"].kind == "attention"
    assert attn["2"].macs == attn["1"].macs  # gap formula == what the math path costs
    assert result.macs == flop_counter_macs(model, (12, 8))
    assert [r.name for r in result.rows] == ["0", "1.qkv", "1", "1.proj", "2"]


def test_transformer_encoder_fast_path() -> None:
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Conv2d(3, 16, 4, 4), nn.Flatten(2), TransposeTokens(), layer)
    result = profile(model, 16)
    tokens, e, hidden = 16, 16, 32
    expected = 16 * 16 * 3 * 16 + 4 * tokens * e * e + 2 * tokens * tokens * e + 2 * tokens * e * hidden
    assert result.macs == expected == flop_counter_macs(model, 16)


class TransposeTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


# ---------------------------------------------------------------------------------------------------------
# Params, kinds, rows
# ---------------------------------------------------------------------------------------------------------


def test_params_and_trainable_params() -> None:
    model = tiny_v3()
    for p in model[0].parameters():
        p.requires_grad_(False)
    result = profile(model, 32)
    assert result.params == sum(p.numel() for p in model.parameters())
    frozen = sum(p.numel() for p in model[0].parameters())
    assert result.trainable_params == result.params - frozen
    assert sum(r.params for r in result.rows) == result.params
    assert all(isinstance(v, int) for v in (result.params, result.trainable_params))


def test_kinds_of_v3_like_model() -> None:
    result = profile(tiny_v3(), 32)
    kinds = {r.name: r.kind for r in result.rows}
    assert kinds["0.0"] == "conv"  # 3x3 stem
    assert kinds["1.expand.0"] == "conv1x1"
    assert kinds["1.dw.0"] == "depthwise"
    assert kinds["2.dw.0"] == "depthwise"  # 5x5 depthwise
    assert kinds["1.se.reduce"] == kinds["1.se.expand"] == "fc"  # 1x1 conv on a pooled 1x1 map
    assert kinds["1.project.0"] == "conv1x1"
    assert kinds["1.project.1"] == "norm"
    assert kinds["4"] == "fc"  # post-pool head conv
    assert kinds["7"] == "fc"
    assert set(kinds.values()) <= set(KINDS)
    assert not {r.type for r in result.rows} & {"ReLU", "Hardswish", "AdaptiveAvgPool2d", "Flatten"}


def test_kinds_grouped_dilated_transposed() -> None:
    result = profile(grouped_dilated(), (3, 24, 20))
    assert [(r.type, r.kind) for r in result.rows] == [
        ("Conv2d", "conv"),
        ("Conv2d", "conv"),  # grouped, not depthwise
        ("PReLU", "other"),
        ("Conv2d", "depthwise"),
        ("Conv2d", "conv1x1"),
        ("ConvTranspose2d", "conv"),
        ("Conv2d", "conv"),
    ]
    assert result.rows[1].conv is not None and result.rows[1].conv.dilation == (2, 2)
    assert result.rows[0].output_shape == (12, 12, 10)


def test_rows_are_in_execution_order() -> None:
    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.stem = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.stem(x).mean((2, 3)))

    assert [r.name for r in profile(Reversed(), 8).rows] == ["stem", "head"]


def test_by_kind_breakdown() -> None:
    result = profile(tiny_v1(), 32)
    kinds = result.by_kind()
    assert list(kinds) == [k for k in KINDS if k in kinds]
    assert sum(s.macs for s in kinds.values()) == result.macs
    assert sum(s.params for s in kinds.values()) == result.params
    assert sum(s.macs_fraction for s in kinds.values()) == pytest.approx(1.0)
    assert kinds["norm"].macs == 0
    macs, params, macs_fraction, params_fraction = kinds["conv1x1"]  # plain tuple unpacking works
    assert macs_fraction == pytest.approx(macs / result.macs)
    assert params_fraction == pytest.approx(params / result.params)


# ---------------------------------------------------------------------------------------------------------
# Depthwise-separable blocks
# ---------------------------------------------------------------------------------------------------------


def test_separable_blocks_of_v1_stack() -> None:
    result = profile(tiny_v1(), 32)
    blocks = result.separable_blocks()
    assert [(b.depthwise_name, b.pointwise_name) for b in blocks] == [
        ("1.0.0", "1.1.0"),
        ("2.0.0", "2.1.0"),
        ("3.0.0", "3.1.0"),
    ]
    for block, n in zip(blocks, (16, 32, 32)):
        assert (block.kernel_size, block.out_channels) == ((3, 3), n)
        assert block.formula_ratio == pytest.approx(1 / n + 1 / 9, rel=1e-15)
        assert block.formula_ratio == float(Fraction(1, n) + Fraction(1, 9))
        assert block.counted_ratio == block.formula_ratio  # stride-1/same padding and stride 2 alike


def mobilenet_v1_224() -> nn.Sequential:
    """Full-width MobileNetV1 (paper Table 1), built locally so this file does not depend on the builders."""
    widths = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        *[(512, 1)] * 5,
        (1024, 2),
        (1024, 1),
    ]
    layers, cin = [conv_bn(3, 32, 3, 2)], 32
    for cout, stride in widths:
        layers.append(dw_separable(cin, cout, stride))
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))


def test_mobilenet_v1_reproduces_paper_table_2() -> None:
    result = profile(mobilenet_v1_224(), 224)
    assert round(result.macs / 1e6) == 569  # paper: 569M mult-adds
    assert result.params == 4_231_976  # paper: 4.2M
    kinds = result.by_kind()
    # Table 2 mult-add shares (the paper's 1.19% for the stem is known not to match its own Table 1).
    assert round(100 * kinds["conv1x1"].macs_fraction, 2) == 94.86
    assert round(100 * kinds["depthwise"].macs_fraction, 2) == 3.06
    assert round(100 * kinds["fc"].macs_fraction, 2) == 0.18
    assert len(result.separable_blocks()) == 13


def test_separable_blocks_skip_squeeze_excite() -> None:
    result = profile(tiny_v3(), 32)
    blocks = result.separable_blocks()
    assert [(b.depthwise_name, b.pointwise_name) for b in blocks] == [
        ("1.dw.0", "1.project.0"),
        ("2.dw.0", "2.project.0"),
    ]
    assert blocks[0].in_channels == 32 and blocks[0].out_channels == 8
    assert blocks[1].kernel_size == (5, 5)
    assert blocks[1].formula_ratio == float(Fraction(1, 16) + Fraction(1, 25))
    paired = {b.pointwise_name for b in blocks}
    assert not paired & {r.name for r in result.rows if ".se." in r.name}


def test_depthwise_without_pointwise_is_not_paired_across_blocks() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # lone depthwise
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 16, 1),
    )
    blocks = profile(model, (8, 10, 10)).separable_blocks()
    assert [(b.depthwise_name, b.pointwise_name) for b in blocks] == [("1", "2")]


# ---------------------------------------------------------------------------------------------------------
# Serialisation and rendering
# ---------------------------------------------------------------------------------------------------------


def test_to_dict_is_json_serialisable() -> None:
    result = profile(tiny_v3(), (3, 32, 24))
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert isinstance(data["params"], int) and isinstance(data["macs"], int)
    assert data["input_size"] == [3, 32, 24]
    assert all(isinstance(row["macs"], int) and isinstance(row["params"], int) for row in data["rows"])
    assert set(data["by_kind"]) <= set(KINDS)
    assert len(data["separable_blocks"]) == 2
    assert json.loads(result.to_json()) == data


def test_format_table_contains_totals() -> None:
    result = profile(tiny_v1(), 32)
    text = result.format_table()
    assert f"{result.params:,}" in text
    assert f"{result.macs / 1e6:.2f} M" in text
    assert "depthwise" in text and "conv1x1" in text
    assert "1.0.0 + 1.1.0" in text
    assert f"{1 / 16 + 1 / 9:.4f}" in text
    short = result.format_table(max_rows=3)
    assert "more rows not shown" in short and f"{result.params:,}" in short
    assert str(result) == text


# ---------------------------------------------------------------------------------------------------------
# Model state, registry, inference of in_chans
# ---------------------------------------------------------------------------------------------------------


def test_training_mode_and_hooks_restored() -> None:
    model = tiny_v3().train()
    model[1].dw[1].eval()  # mixed modes must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    profile(model, 32)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError):
        profile(model, 32, in_chans=5)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_register_atomic() -> None:
    class Fused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    class Counted(Fused):
        pass

    register_atomic(Fused, kind="conv1x1")
    model = nn.Sequential(Fused(), nn.ReLU())
    result = profile(model, 4)
    assert [(r.name, r.kind, r.params) for r in result.rows] == [("0", "conv1x1", 16 + 20)]
    assert result.macs == 16 * (3 * 4 + 4 * 4) == flop_counter_macs(model, 4)

    register_atomic(Counted, kind="other", macs_fn=lambda m, args, kwargs, out: 7 * args[0].shape[0])
    assert profile(Counted(), 4, batch_size=3).macs == 7
    with pytest.raises(ValueError, match="kind"):
        register_atomic(Fused, kind="bogus")


def test_in_chans_inference() -> None:
    gray = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    assert infer_in_chans(gray) == 1
    assert profile(gray, 8).input_size == (1, 8, 8)
    gray.pretrained_cfg = {"input_size": (1, 16, 16)}
    assert infer_in_chans(gray) == 1
    assert infer_in_chans(nn.Sequential(nn.ReLU())) == 3
    assert profile(nn.Conv2d(5, 2, 1), (7, 9)).input_size == (5, 7, 9)


def test_lazy_modules_counted_after_forward() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    result = profile(model, 6)
    assert result.params == 3 * 4 * 9 + 4 + 4 * 16 * 5 + 5


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -3, (0, 5), (3, 4, 5, 6), (7,), "224", 2.5, True, (3, -1, 4)])
def test_bad_input_size(bad: object) -> None:
    with pytest.raises(ValueError, match="input_size") as info:
        profile(tiny_v1(), bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


def test_bad_keyword_values() -> None:
    with pytest.raises(ValueError, match=r"in_chans=0"):
        profile(tiny_v1(), 32, in_chans=0)
    with pytest.raises(ValueError, match=r"batch_size=0"):
        profile(tiny_v1(), 32, batch_size=0)
    with pytest.raises(ValueError, match=r"in_chans=4 contradicts"):
        profile(tiny_v1(), (3, 32, 32), in_chans=4)


def test_forward_failure_is_a_value_error_with_the_cause() -> None:
    with pytest.raises(ValueError, match=r"\(1, 4, 32, 32\)") as info:
        profile(tiny_v1(), 32, in_chans=4)
    assert "expected input" in str(info.value) and "RuntimeError" in str(info.value)
    mlp = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ValueError, match=r"Original error: RuntimeError: .*shapes cannot be multiplied"):
        flop_counter_macs(mlp, 4)
    assert isinstance(profile(mlp, (5, 1)), ProfileResult)  # 2*5*1 = 10 features: fine


def test_child_that_raises_inside_a_caught_try_does_not_corrupt_attribution() -> None:
    class Fails(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("unsupported")

    class Fallback(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fast = Fails()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                return self.fast(x)
            except RuntimeError:
                return self.conv(x)

    model = nn.Sequential(Fallback(), nn.Conv2d(4, 4, 1))
    result = profile(model, 4)
    assert [r.name for r in result.rows] == ["0.conv", "1"]
    assert result.macs == 16 * (3 * 4 + 4 * 4) == flop_counter_macs(model, 4)


# ---------------------------------------------------------------------------------------------------------
# Breakdown by part (a detector's backbone / extras / heads)
# ---------------------------------------------------------------------------------------------------------


class TwoHeads(nn.Module):
    """A detector-shaped toy: a backbone, an extra layer, and two heads fed from both levels."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(conv_bn(3, 8, 3, 2), dw_separable(8, 16, stride=2))
        self.extras = nn.ModuleList([conv_bn(16, 16, 3, 2)])
        self.cls_head = nn.ModuleList([nn.Conv2d(16, 6, 3, padding=1), nn.Conv2d(16, 6, 3, padding=1)])
        self.box_head = nn.ModuleList([nn.Conv2d(16, 4, 1), nn.Conv2d(16, 4, 1)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.backbone(x)]
        feats.append(self.extras[0](feats[0]))
        return [h(f) for heads in (self.cls_head, self.box_head) for h, f in zip(heads, feats)]


def test_by_part_adds_up_and_follows_the_declared_parts() -> None:
    from mobilenets.cost import DETECTOR_PARTS

    model = TwoHeads()
    result = profile(model, 32, parts=DETECTOR_PARTS)
    parts = result.by_part()
    assert tuple(parts) == ("backbone", "extras", "classification head", "regression head")
    assert sum(p.params for p in parts.values()) == result.params == sum(p.numel() for p in model.parameters())
    assert sum(p.macs for p in parts.values()) == result.macs
    assert parts["regression head"].params == sum(p.numel() for p in model.box_head.parameters())
    assert parts["regression head"].macs == 16 * 4 * (8 * 8 + 4 * 4)  # 1x1 convs on the 8x8 and 4x4 maps
    assert parts["backbone"].macs_fraction == pytest.approx(parts["backbone"].macs / result.macs)
    text = result.format_table()
    assert "By part:" in text and "classification head" in text
    assert json.loads(result.to_json())["by_part"]["extras"]["modules"] == ["extras"]


def test_by_part_defaults_and_prefixes() -> None:
    model = TwoHeads()
    result = profile(model, 32)  # no parts given: one per top-level module, and no text section
    assert tuple(result.by_part()) == ("backbone", "extras", "cls_head", "box_head")
    assert "By part:" not in result.format_table()
    # The longest prefix wins; rows no prefix takes keep their top-level module as their part.
    parts = result.by_part({"stem": ("backbone.0",), "body": ("backbone",), "heads": ("cls_head", "box_head")})
    assert tuple(parts) == ("stem", "body", "heads", "extras")
    assert parts["stem"].params == sum(p.numel() for p in model.backbone[0].parameters())
    assert parts["heads"].modules == ("cls_head", "box_head")
    assert sum(p.params for p in parts.values()) == result.params
    # A declared part that matches no row is left out rather than shown as zeros.
    assert "neck" not in result.by_part({"neck": ("fpn",)})


@pytest.mark.parametrize("bad", [{"backbone": "backbone"}, {"x": [""]}, ["backbone"]])
def test_bad_parts(bad: object) -> None:
    with pytest.raises(ValueError, match="parts"):
        profile(TwoHeads(), 32, parts=bad)  # type: ignore[arg-type]
