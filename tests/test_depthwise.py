"""The fast CPU depthwise backward (models/depthwise.py): same gradients as oneDNN, only where it applies."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mobilenets import create_model
from mobilenets.models import depthwise
from mobilenets.models.depthwise import depthwise_weight_grad, use_fast_depthwise_backward
from mobilenets.models.layers import DepthwiseConv2d


def _reference_grads(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, stride: int, pad: int):
    return torch.ops.aten.convolution_backward(grad_out, x, weight, None, [stride, stride], [pad, pad], [1, 1], False,
                                               [0, 0], weight.shape[0], [True, True, False])[:2]


@pytest.mark.parametrize(("kernel", "stride", "size"), [(5, 1, 8), (5, 2, 9), (3, 2, 8), (7, 1, 6)])
def test_eager_weight_grad_formula(kernel: int, stride: int, size: int) -> None:
    """The tap formulation (what inductor compiles) equals ATen's weight gradient, odd sizes included."""
    torch.manual_seed(0)
    x = torch.randn(3, 6, size, size)
    w = torch.randn(6, 1, kernel, kernel)
    out = F.conv2d(x, w, None, stride, kernel // 2, 1, 6)
    g = torch.randn_like(out)
    _, ref_w = _reference_grads(x, w, g, stride, kernel // 2)
    torch.testing.assert_close(depthwise_weight_grad(x, g, kernel, stride, kernel // 2), ref_w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("stride", "size", "channels_last", "bias"), [(1, 8, True, False), (2, 9, True, True),
                                                                     (2, 8, False, False)])
def test_layer_gradients_match_onednn(stride: int, size: int, channels_last: bool, bias: bool) -> None:
    torch.manual_seed(0)
    plain = DepthwiseConv2d(16, 16, 5, stride, 2, groups=16, bias=bias)
    fast = copy.deepcopy(plain)
    assert use_fast_depthwise_backward(fast) == 1
    x = torch.randn(4, 16, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grads = []
    for conv in (plain, fast):
        xi = x.clone().requires_grad_()
        y = conv(xi)
        y.backward(torch.ones_like(y) * torch.linspace(-1, 1, y.numel()).view_as(y))
        grads.append((y.detach(), xi.grad, conv.weight.grad, conv.bias.grad if bias else None))
    grad_fn = fast(x).grad_fn
    assert grad_fn is not None and "Fast" in type(grad_fn).__name__
    assert torch.equal(grads[0][0], grads[1][0])  # the forward is the same convolution
    for a, b in zip(grads[0][1:], grads[1][1:]):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_fast_path_only_in_cpu_training() -> None:
    conv = DepthwiseConv2d(8, 8, 5, 1, 2, groups=8, bias=False)
    use_fast_depthwise_backward(conv)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    assert "Fast" in type(conv(x).grad_fn).__name__
    with torch.no_grad():
        assert conv(x).grad_fn is None
    conv.eval()
    assert "Fast" not in type(conv(x).grad_fn).__name__
    conv.train()
    three = DepthwiseConv2d(8, 8, 3, 1, 1, groups=8, bias=False)  # 3x3: oneDNN's own backward is faster
    three.fast_cpu_backward = True
    assert "Fast" not in type(three(x).grad_fn).__name__
    # Under CPU bf16 autocast the layer runs fp32, so the fast path still applies.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.bfloat16())
    assert y.dtype == torch.float32 and "Fast" in type(y.grad_fn).__name__


def test_model_switch_counts_5x5_layers_and_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", num_classes=10, small_input=True)
    assert use_fast_depthwise_backward(copy.deepcopy(model)) == 8  # V3-Small: eight 5x5 depthwise convs
    assert use_fast_depthwise_backward(create_model("mobilenet_v2")) == 0  # 3x3 only
    fast = copy.deepcopy(model)
    use_fast_depthwise_backward(fast)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    b = fast(x)
    assert torch.equal(a, b)


def test_compiler_failure_falls_back_to_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(depthwise, "_compiled", broken)
    monkeypatch.setattr(depthwise, "_broken", False)
    conv = DepthwiseConv2d(4, 4, 5, 1, 2, groups=4, bias=False)
    use_fast_depthwise_backward(conv)
    x = torch.randn(2, 4, 6, 6)
    y = conv(x)
    with pytest.warns(RuntimeWarning, match="fast depthwise backward disabled"):
        y.sum().backward()
    _, ref_w = _reference_grads(x, conv.weight.detach(), torch.ones_like(y), 1, 2)
    torch.testing.assert_close(conv.weight.grad, ref_w)
    assert depthwise._broken and "Fast" not in type(conv(x).grad_fn).__name__


@pytest.mark.slow
def test_more_layer_shapes_than_dynamos_default_limit_stay_compiled() -> None:
    """A V3-Large at 224 has nine 5x5 shapes; past dynamo's default 8 it would silently run eagerly."""
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    for size in range(4, 14):  # ten distinct shapes
        x = torch.randn(2, 8, size, size)
        g = torch.randn(2, 8, size, size)
        got = depthwise._weight_grad(x, g, 5, 1, 2)
        assert got is not None
        torch.testing.assert_close(got, depthwise_weight_grad(x, g, 5, 1, 2), rtol=1e-4, atol=1e-4)
    assert counters["stats"]["unique_graphs"] - before >= 10
