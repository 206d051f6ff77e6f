"""Segmentation models: torchvision's LR-ASPP and DeepLabV3 exactly, the heads on every backbone family,
output strides, keyword errors, the native format and torchvision's checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mobilenets
from mobilenets.cost import SEGMENTER_PARTS, profile
from mobilenets.models import ArchSpec, BlockSpec, MobileNet
from mobilenets.models.native import WeightsError
from mobilenets.models.registry import build_model, model_task
from mobilenets.models.segmentation import LOW_LEVELS, dilate_arch, is_segmenter
from mobilenets.weights import load_weights
from mobilenets.weights.registry import get_pretrained
from mobilenets.weights.sources import detect_source, torchvision_segmentation

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "weights"
SEG = json.loads((FIXTURES / "segmentation.json").read_text())
TOL = 1e-4
# One per family of the builder; small widths keep the backward passes fast.
FAMILIES = {
    "mobilenet_v1": {"width_mult": 0.25},
    "mobilenet_v2": {"width_mult": 0.35},
    "mobilenet_v3_small": {"width_mult": 0.5},
    "mobilenet_v4_conv_small": {"width_mult": 0.5},
}
SMALL_HEAD = {"lraspp": {"inter_channels": 16}, "deeplabv3": {"aspp_channels": 16, "atrous_rates": (1, 2)}}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------- torchvision's two models
@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("lraspp_mobilenet_v3_large", {}, 3_221_538),
    ("deeplabv3_mobilenet_v3_large", {"aux_loss": True}, 11_029_328),
    ("deeplabv3_mobilenet_v3_large", {}, 11_025_477),
])
def test_torchvision_parameter_counts_are_exact(name: str, kwargs: dict, expected: int) -> None:
    model = mobilenets.create_model(name, **kwargs)
    assert n_params(model) == expected
    # The generic entries on the same backbone are the same network.
    generic = mobilenets.create_model(name.split("_")[0], backbone="mobilenet_v3_large", **kwargs)
    assert n_params(generic) == expected
    assert model.low_channels == 40 and model.high_channels == 960 and model.output_stride == 16


@pytest.mark.parametrize(("name", "kwargs", "gmacs"), [
    ("lraspp_mobilenet_v3_large", {}, 2.086),
    ("deeplabv3_mobilenet_v3_large", {"aux_loss": True}, 10.452),
])
def test_torchvision_macs_within_one_and_a_half_percent(name: str, kwargs: dict, gmacs: float) -> None:
    model = mobilenets.create_model(name, **kwargs)
    result = profile(model, 520, parts=SEGMENTER_PARTS)
    assert abs(result.macs / 1e9 - gmacs) / gmacs <= 0.015
    parts = result.by_part()
    assert set(parts) == ({"backbone", "head", "aux head"} if kwargs else {"backbone", "head"})
    assert sum(p.macs for p in parts.values()) == result.macs
    assert sum(p.params for p in parts.values()) == n_params(model)
    # The V3-Large trunk at output stride 16 costs the same in both models.
    assert parts["backbone"].params == 2_971_952


def test_generic_dilation_equals_v3_dilated_option() -> None:
    """torchvision's ``dilated=True`` V3 and the generic output-stride rewrite build the same network."""
    ours = mobilenets.create_model("lraspp_mobilenet_v3_large").backbone.eval()
    ref = build_model("mobilenet_v3_large", features_only=True, dilated=True).eval()
    assert repr(ours) == repr(ref)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 72, 88, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x), strict=True):
            assert torch.equal(a, b)
    assert ours.feature_reductions == [2, 4, 8, 16, 16]
    # An already dilated table only gets the rest at output stride 8 (C4 dilation 2, C5 2 x 2).
    arch = dilate_arch(ref.arch, 8)
    assert [b.dilation for b in arch.blocks if b.kernel > 1][-4:] == [2, 4, 4, 4]


def test_output_dict_in_train_and_eval() -> None:
    model = mobilenets.create_model("deeplabv3", backbone="mobilenet_v3_small", aux_loss=True, num_classes=4,
                                    backbone_kwargs={"width_mult": 0.5}, **SMALL_HEAD["deeplabv3"])
    x = torch.randn(2, 3, 50, 70)
    for train in (True, False):
        model.train(train)
        out = model(x)
        assert list(out) == ["out", "aux"] and all(v.shape == (2, 4, 50, 70) for v in out.values())
    plain = mobilenets.create_model("lraspp", backbone="mobilenet_v3_small", num_classes=4)
    assert list(plain(x)) == ["out"]
    assert is_segmenter(plain) and not is_segmenter(mobilenets.create_model("mobilenet_v2"))


# --------------------------------------------------------------------------- every backbone family
@pytest.mark.parametrize("head", ["lraspp", "deeplabv3"])
@pytest.mark.parametrize("backbone", sorted(FAMILIES))
def test_heads_on_every_family_forward_and_gradient(head: str, backbone: str) -> None:
    torch.manual_seed(0)
    model = mobilenets.create_model(head, backbone=backbone, backbone_kwargs=FAMILIES[backbone], num_classes=3,
                                    in_chans=1, aux_loss=True, **SMALL_HEAD[head])
    assert model.num_classes == 3 and model.in_chans == 1
    assert model.pretrained_cfg["input_size"][0] == 1 and len(model.pretrained_cfg["mean"]) == 1
    model.train()
    out = model(torch.randn(2, 1, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"out": (2, 3, 64, 64), "aux": (2, 3, 64, 64)}
    (out["out"].square().mean() + out["aux"].square().mean()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not no_grad


@pytest.mark.parametrize("head", ["lraspp", "deeplabv3"])
@pytest.mark.parametrize("backbone", sorted(FAMILIES))
def test_heads_on_every_family_export_verified(head: str, backbone: str, tmp_path: Path) -> None:
    """The deploy path's torch.export graph (BN folded, aux head dropped) reloads and matches eager's
    ``out`` logits within the fp32 limit, for each head on each family (trained BN statistics: not the
    identity, so the folding is exercised)."""
    from mobilenets.deploy.export import export_model

    torch.manual_seed(0)
    model = mobilenets.create_model(head, backbone=backbone, backbone_kwargs=FAMILIES[backbone], num_classes=3,
                                    in_chans=1, aux_loss=True, **SMALL_HEAD[head])
    model.pretrained_cfg["input_size"] = (1, 64, 64)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, 64, 64) * 2 + 0.5)  # running statistics away from 0 / 1
    result = export_model(model.eval(), "pt2", tmp_path / "seg.pt2")
    assert result.verified and result.passed, result.summary()
    assert result.max_abs_diff <= TOL


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v4_conv_small"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_stride_sets_the_feature_size(backbone: str, output_stride: int) -> None:
    model = mobilenets.create_model("lraspp", backbone=backbone, output_stride=output_stride,
                                    backbone_kwargs={"width_mult": 0.35}, **SMALL_HEAD["lraspp"]).eval()
    with torch.no_grad():
        low, high = model.features(torch.randn(1, 3, 96, 128))
    assert tuple(high.shape[-2:]) == (96 // output_stride, 128 // output_stride)
    assert tuple(low.shape[-2:]) == (12, 16) and model.low_reduction == 8
    assert model.backbone.feature_reductions == [2, 4, 8, min(16, output_stride), output_stride]
    # Same weights at every output stride: dilation changes no parameter.
    assert n_params(model) == n_params(mobilenets.create_model(
        "lraspp", backbone=backbone, backbone_kwargs={"width_mult": 0.35}, **SMALL_HEAD["lraspp"]))
    # A formerly strided block keeps no shortcut.
    blocks = [b for stage in model.backbone.blocks for b in stage]
    specs = model.backbone.arch.blocks
    for block, spec in zip(blocks, specs, strict=True):
        if spec.nominal_stride == 2 and spec.stride == 1:
            assert not getattr(block, "has_skip", False)


def test_formerly_strided_block_keeps_no_shortcut() -> None:
    """A stride-2 block with equal widths would gain a shortcut once stride 1, unless told otherwise."""
    stem = BlockSpec("conv", 3, 8, 3, 2)
    blocks = (BlockSpec("ir", 8, 8, 3, 2, mid_chs=16), BlockSpec("ir", 8, 8, 3, 2, mid_chs=16),
              BlockSpec("ir", 8, 8, 3, 1, mid_chs=16), BlockSpec("ir", 8, 8, 3, 2, mid_chs=16),
              BlockSpec("conv", 8, 8, 1, 1), BlockSpec("ir", 8, 8, 5, 2, mid_chs=16))
    arch = ArchSpec("toy", stem, (blocks,))
    dilated = dilate_arch(arch, 8)
    assert [(b.stride, b.dilation, b.has_skip if b.type == "ir" else None) for b in dilated.blocks] == [
        (2, 1, False), (2, 1, False), (1, 1, True), (1, 2, False), (1, 1, None), (1, 4, False)]
    model = MobileNet(dilated, features_only=True)
    assert model.feature_reductions == [2, 4, 8, 8, 8]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    assert [(c.dilation[0], c.padding[0]) for c in convs][-2:] == [(2, 2), (4, 8)]
    assert tuple(model(torch.randn(1, 3, 32, 32))[-1].shape[-2:]) == (4, 4)
    # TF "same" padding pads a dilated stride-1 kernel symmetrically by itself.
    same = MobileNet(dilated, features_only=True, pad_type="same")
    same.load_state_dict(model.state_dict())
    assert tuple(same(torch.randn(1, 3, 32, 32))[-1].shape[-2:]) == (4, 4)
    same_convs = [m for m in same.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    t = torch.randn(1, 16, 9, 7)
    with torch.no_grad():
        for a, b in zip(same_convs[-2:], convs[-2:], strict=True):
            assert torch.allclose(a(t), b(t), atol=1e-6)


def test_low_level_taps() -> None:
    chans = {}
    for level in LOW_LEVELS:
        model = mobilenets.create_model("lraspp", backbone="mobilenet_v3_large", low_level=level)
        chans[level] = (model.low_channels, model.low_reduction)
    assert chans == {"first8": (40, 8), "last8": (40, 8), "first4": (24, 4), "last4": (24, 4)}
    first = mobilenets.create_model("lraspp", backbone="mobilenet_v3_large").low_index
    last = mobilenets.create_model("lraspp", backbone="mobilenet_v3_large", low_level="last8").low_index
    assert (first, last) == (4, 6)  # torchvision's features[4]; C3 ends at features[6]


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"output_stride": 12}, r"output_stride=12 invalid; expected one of \(8, 16, 32\)"),
    ({"backbone": "mobilenet_v3_lage"}, r"backbone='mobilenet_v3_lage' invalid.*did you mean 'mobilenet_v3_large'"),
    ({"backbone": "ssdlite"}, r"backbone='ssdlite' invalid; expected a registered classifier"),
    ({"low_level": "first16"}, r"low_level='first16' invalid; expected one of"),
    ({"num_classes": 1}, r"num_classes=1 invalid; expected an integer >= 2"),
    ({"in_chans": 0}, r"in_chans=0 invalid"),
    ({"inter_channels": 0}, r"inter_channels=0 invalid"),
    ({"bn_momentum": 2.0}, r"bn_momentum=2.0 invalid"),
    ({"aux_loss": "yes"}, r"aux_loss='yes' invalid for model 'lraspp'; expected True or False"),
    ({"inter_chanels": 64}, r"unknown keyword 'inter_chanels' for model 'lraspp'; did you mean 'inter_channels'"),
    ({"atrous_rates": (6,)}, r"unknown keyword 'atrous_rates' for model 'lraspp'"),
    ({"backbone_kwargs": {"in_chans": 1}}, r"backbone_kwargs may not set 'in_chans'"),
    ({"backbone_kwargs": {"width_mul": 0.5}}, r"unknown keyword 'width_mul'.*did you mean 'width_mult'"),
    ({"backbone_kwargs": [("width_mult", 0.5)]}, r"backbone_kwargs=.* invalid; expected a mapping"),
    ({"backbone": "resnet18"}, r"resnet18 cannot run at output_stride=16: its 'basic' blocks take no dilation"),
    ({"backbone": "mobilenet_v2", "backbone_kwargs": {"small_input": True}, "output_stride": 32},
     r"reaches output stride 8 .*not output_stride=32"),
])
def test_bad_keywords_fail_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        mobilenets.create_model("lraspp", **{"backbone": "mobilenet_v3_small", **kwargs})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("rates", [(), (0, 6), "12", (1.5,)])
def test_bad_atrous_rates(rates: object) -> None:
    with pytest.raises(ValueError, match=r"atrous_rates=.* invalid; expected a non-empty sequence of integers >= 1"):
        mobilenets.create_model("deeplabv3", backbone="mobilenet_v3_small", atrous_rates=rates)


def test_registry_lists_segmenters_apart() -> None:
    names = mobilenets.list_models(task="segment")
    assert names == ["deeplabv3", "deeplabv3_mobilenet_v3_large", "lraspp", "lraspp_mobilenet_v3_large"]
    assert not set(names) & set(mobilenets.list_models())  # classifier code never meets a segmenter
    assert all(model_task(n) == "segment" for n in names)
    assert "backbone" not in mobilenets.get_model_kwargs("lraspp_mobilenet_v3_large")
    assert mobilenets.get_model_kwargs("deeplabv3")["atrous_rates"] == (12, 24, 36)


# ---------------------------------------------------------------------------------- native format
def _small(name: str = "lraspp", **kwargs: object) -> torch.nn.Module:
    return mobilenets.create_model(name, backbone="mobilenet_v3_small", backbone_kwargs={"width_mult": 0.5},
                                   num_classes=4, in_chans=1, output_stride=8, **{**SMALL_HEAD[name], **kwargs})


@pytest.mark.parametrize("name", ["lraspp", "deeplabv3"])
def test_native_round_trip(tmp_path: Path, name: str) -> None:
    model = _small(name, aux_loss=True, bn_momentum=0.05).eval()
    with torch.no_grad():  # non-default statistics, so a reload that dropped buffers would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    model.save_pretrained(str(tmp_path), class_names=["bg", "a", "b", "c"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == name and config["kwargs"]["output_stride"] == 8
    back = mobilenets.create_model(name, pretrained=str(tmp_path)).eval()
    assert back.output_stride == 8 and back.aux_loss and back.in_chans == 1
    x = torch.randn(2, 1, 40, 48)
    with torch.no_grad():
        a, b = model(x), back(x)
    assert all(torch.equal(a[k], b[k]) for k in ("out", "aux"))
    assert mobilenets.from_pretrained(str(tmp_path)).class_names == ["bg", "a", "b", "c"]
    # Another class count fine-tunes: everything but the class convolutions is loaded.
    tuned = mobilenets.create_model(name, pretrained=str(tmp_path), num_classes=6).eval()
    assert tuned.num_classes == 6
    with torch.no_grad():
        assert tuned(x)["out"].shape == (2, 6, 40, 48)
        assert torch.equal(tuned.features(x)[1], back.features(x)[1])


def test_reset_classifier_keeps_the_rest() -> None:
    model = _small("deeplabv3", aux_loss=True).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(7)
    after = model.state_dict()
    changed = {k for k in before if k not in after or before[k].shape != after[k].shape}
    assert changed == {"head.classifier.weight", "head.classifier.bias", "aux_head.classifier.weight",
                       "aux_head.classifier.bias"}
    assert model(torch.randn(2, 1, 32, 32))["aux"].shape[1] == 7 and model.pretrained_cfg["num_classes"] == 7


# ---------------------------------------------------------------------------- torchvision weights
@pytest.mark.parametrize("name", sorted(SEG["fixtures"]))
def test_torchvision_fixture_outputs_match(name: str) -> None:
    fx = SEG["fixtures"][name]
    expected = load_file(str(FIXTURES / "segmentation_expected.safetensors"))
    file = FIXTURES / fx["file"]
    assert detect_source(torch.load(file, weights_only=True)) == "torchvision"
    # The file alone (its class count, its auxiliary head) builds the right model.
    kwargs = {k: v for k, v in fx["kwargs"].items() if k not in ("num_classes", "aux_loss")}
    model = mobilenets.create_model(fx["arch"], pretrained=str(file), **kwargs).eval()
    assert model.pretrained_cfg["source"] == "torchvision"
    with torch.no_grad():
        out = model(expected["input"])
    assert sorted(out) == fx["outputs"]
    for key in fx["outputs"]:
        ref = expected[f"{name}.{key}"]
        assert float(ref.abs().max()) > 1.0  # the outputs carry signal
        assert float((out[key] - ref).abs().max()) <= TOL
    # BatchNorm: V3's 1e-3 in the backbone, PyTorch's 1e-5 in the heads, as torchvision.
    eps: dict[str, set[float]] = {}
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            eps.setdefault(n.split(".")[0], set()).add(m.eps)
    assert eps == {"backbone": {1e-3}, "head": {1e-5}, **({"aux_head": {1e-5}} if model.aux_loss else {})}


@pytest.mark.parametrize("arch", sorted(SEG["full_size"]))
def test_full_size_torchvision_layout_maps_completely(arch: str) -> None:
    """Every tensor of torchvision's full-size model has its place, with its shape, and none is missing."""
    full = SEG["full_size"][arch]
    with torch.device("meta"):
        model = mobilenets.create_model(arch, **full["kwargs"])
        state = {k: torch.empty(shape) for k, shape in full["shapes"].items()}
    assert torchvision_segmentation.looks_like(state) and torchvision_segmentation.num_classes(state) == 21
    mapped = torchvision_segmentation.to_native(state, model)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert not mapped.unexpected
    assert {k: tuple(v.shape) for k, v in mapped.tensors.items()} == own


def test_torchvision_wrong_class_count_is_explained() -> None:
    fx = SEG["fixtures"]["tv_lraspp_mobilenet_v3_large"]
    model = mobilenets.create_model(fx["arch"], num_classes=3, backbone_kwargs={"width_mult": 0.25})
    with pytest.raises(WeightsError, match=r"has 5 classes but the model has 3"):
        load_weights(model, FIXTURES / fx["file"])
    result = load_weights(model, FIXTURES / fx["file"], skip_classifier=True)
    assert set(result.skipped) == {"classifier.low_classifier.weight", "classifier.low_classifier.bias",
                                   "classifier.high_classifier.weight", "classifier.high_classifier.bias"}


def test_registry_tags() -> None:
    lr = get_pretrained("lraspp_mobilenet_v3_large.tv_coco_voc")
    dl = get_pretrained("deeplabv3_mobilenet_v3_large.tv_coco_voc")
    assert (lr.miou, lr.pixel_acc, dl.miou, dl.pixel_acc) == (57.9, 91.2, 60.3, 91.2)
    assert lr.url == "https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth"
    assert dl.url == "https://download.pytorch.org/models/deeplabv3_mobilenet_v3_large-fc3c493d.pth"
    assert (lr.sha256_prefix, dl.sha256_prefix) == ("d234d4ea", "fc3c493d")
    assert dl.kwargs == {"aux_loss": True} and lr.num_classes == dl.num_classes == 21
    assert lr.input_size == (3, 520, 520)
