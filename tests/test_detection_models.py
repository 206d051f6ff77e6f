"""SSDLite: torchvision's SSDLite320 exactly (parameters, MACs, its checkpoints and outputs), every registered
backbone through one builder (training, evaluation, gradients, ``torch.export`` of the decoded graph), the
options recorded for the native format, and the errors a wrong checkpoint gives.

The torchvision fixture (``tests/fixtures/weights/tv_ssdlite320_mobilenet_v3_large.pth`` with its raw
outputs, anchors and training losses) is made by ``scripts/make_weight_fixtures.py --only det`` with
torchvision's own model code; torchvision is not imported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import mobilenets
from mobilenets import create_model, from_pretrained, load_weights, profile
from mobilenets.models.detection import SSDLite, postprocess
from mobilenets.models.registry import model_task
from mobilenets.weights import WeightsError, pretrained_defaults
from mobilenets.weights.registry import get_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "weights"
DETECTORS = [n for n in mobilenets.list_models(task="detect") if n != "ssdlite"]
ANY_BACKBONE = ["resnet18", "mobilenet_v4_hybrid_medium", "mobilenet_v3_large"]
SMALL = {"num_classes": 3, "image_size": 64, "extra_channels": (32, 32, 16, 16)}


def _small(name: str, **kwargs) -> nn.Module:
    if name.startswith("ssdlite"):
        return create_model(name, **{**SMALL, **kwargs})
    return create_model("ssdlite", backbone=name, **{**SMALL, **kwargs})


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [50.0, 10.0, 70.0, 50.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


# ------------------------------------------------------------------------------ torchvision exactly
def test_ssdlite320_mobilenet_v3_large_params_and_macs():
    model = create_model("ssdlite320_mobilenet_v3_large")
    assert sum(p.numel() for p in model.parameters()) == 3_440_060
    assert model.level_channels == [672, 480, 512, 256, 256, 128]
    assert model.level_reductions == [16, 32, 64, 128, 256, 512]
    prof = profile(model, (3, 320, 320))  # the network only: profile_forward (no resize, no NMS)
    assert prof.params == 3_440_060
    assert abs(prof.macs / 0.583e9 - 1) < 0.015, prof.macs
    parts = {p: sum(r.macs for r in prof.rows if r.name.startswith(p + ".")) for p in ("backbone", "extras", "cls_head", "box_head")}
    assert sum(parts.values()) == prof.macs and all(v > 0 for v in parts.values())


def _fixture():
    manifest = json.loads((FIXTURES / "detection.json").read_text())
    arrays = load_file(str(FIXTURES / "detection_expected.safetensors"))
    images = [arrays[k].float() / 255 for k in manifest["images"]]
    return manifest, arrays, images


def test_torchvision_fixture_raw_outputs_and_losses():
    manifest, arrays, images = _fixture()
    assert images[0].shape != images[1].shape  # the resize to image_size is compared too
    for name, fx in manifest["fixtures"].items():
        path = FIXTURES / fx["file"]
        model = create_model(fx["arch"], pretrained=str(path), **fx["kwargs"]).eval()
        assert model.num_classes == fx["num_classes"] and model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
        with torch.no_grad():
            raw = model.raw_outputs(images)
        for key in ("cls_logits", "bbox_regression", "anchors"):
            torch.testing.assert_close(raw[key], arrays[f"{name}.{key}"], atol=1e-4, rtol=0)
        targets = [{"boxes": arrays[f"{name}.target{j}.boxes"], "labels": arrays[f"{name}.target{j}.labels"]}
                   for j in range(2)]
        losses = model.train()(images, targets)
        for key in ("bbox_regression", "classification"):
            torch.testing.assert_close(losses[key].reshape(1), arrays[f"{name}.loss.{key}"], atol=1e-4, rtol=1e-5)


def test_torchvision_file_without_its_class_count_names_file_and_mismatch():
    manifest, _, _ = _fixture()
    fx = manifest["fixtures"]["tv_ssdlite320_mobilenet_v3_large"]
    path = FIXTURES / fx["file"]
    model = create_model(fx["arch"], **{**fx["kwargs"], "num_classes": 7})
    with pytest.raises(WeightsError) as err:
        load_weights(model, path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "has 5 classes but the model has 7" in msg
    # create_model with another class count fine-tunes: the class heads stay fresh, the rest loads
    tuned = create_model(fx["arch"], pretrained=str(path), **{**fx["kwargs"], "num_classes": 7})
    assert tuned.cls_head[0][1].weight.shape[0] == 7 * 6


@pytest.mark.parametrize("arch", ["ssdlite_mobilenet_v2", "mobilenet_v3_large"])
def test_torchvision_file_into_another_architecture(arch):
    path = FIXTURES / "tv_ssdlite320_mobilenet_v3_large.pth"
    model = create_model(arch, num_classes=5)
    with pytest.raises(WeightsError) as err:
        load_weights(model, path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "does not match the model" in msg
    assert "torchvision SSDLite with 5 classes" in msg


def test_registry_tag_for_the_coco_weights():
    entry = get_pretrained("ssdlite320_mobilenet_v3_large.tv_coco")
    assert entry.arch == "ssdlite320_mobilenet_v3_large" and entry.source == "torchvision"
    assert entry.url.endswith(entry.filename) and entry.sha256 and entry.sha256.startswith(entry.sha256_prefix)
    assert entry.sha256_prefix in entry.filename and entry.box_map == 21.3 and entry.num_classes == 91
    assert entry.mean == entry.std == (0.5, 0.5, 0.5) and entry.input_size == (3, 320, 320)
    # what the tag implies for create_model, known without the file
    assert pretrained_defaults(entry.arch, entry.tag) == {"num_classes": 91, "bn_eps": 1e-3}


# ------------------------------------------------------------------------------ every backbone
CASES = DETECTORS + ANY_BACKBONE


def test_registered_detectors():
    # classifier code (list_models() with its default task) never meets a detector by accident
    assert not mobilenets.list_models("ssdlite*") and mobilenets.list_models("ssdlite", task=None) == ["ssdlite"]
    assert model_task("ssdlite_mobilenet_v2") == "detect" and model_task("mobilenet_v2") == "classify"
    assert set(DETECTORS) == {"ssdlite320_mobilenet_v3_large", "ssdlite_mobilenet_v1", "ssdlite_mobilenet_v2",
                              "ssdlite_mobilenet_v3_small", "ssdlite_mobilenet_v4_conv_small",
                              "ssdlite_mobilenet_v4_conv_medium"}


@pytest.mark.parametrize("name", CASES)
def test_train_eval_and_gradients(name):
    torch.manual_seed(0)
    model = _small(name)
    images = torch.rand(2, 3, 48, 80)  # resized to 64x64 inside, boxes back in 48x80 pixels
    losses = model.train()(images, _targets())
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing

    model.eval()
    with torch.no_grad():
        dets = model(images)
    assert len(dets) == 2
    for det in dets:
        assert det["boxes"].shape[1:] == (4,) and det["labels"].dtype == torch.int64
        assert (det["labels"] >= 1).all() and (det["labels"] < 3).all()
        assert (det["boxes"][:, 2] <= 80 + 1e-4).all() and (det["boxes"][:, 3] <= 48 + 1e-4).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


# torch.export of a V4-Medium graph takes ~10 s here; V4-Small covers the same block types by default.
EXPORTED = [pytest.param(n, marks=pytest.mark.slow) if n == "ssdlite_mobilenet_v4_conv_medium" else n
            for n in DETECTORS]


@pytest.mark.parametrize("name", EXPORTED)
def test_decoded_exports_with_static_shapes(name, tmp_path):
    torch.manual_seed(0)
    model = _small(name).eval()
    x, _ = model.transform(torch.rand(2, 3, 48, 80))

    class Decoded(nn.Module):
        def __init__(self, m: SSDLite) -> None:
            super().__init__()
            self.m = m

        def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.m.decoded(t)

    wrapper = Decoded(model).eval()
    torch.export.save(torch.export.export(wrapper, (x,)), tmp_path / "decoded.pt2")
    with torch.no_grad():
        want = wrapper(x)
        got = torch.export.load(tmp_path / "decoded.pt2").module()(x)
    a = model.anchors_for(x).shape[0]
    assert want[0].shape == (2, a, 4) and want[1].shape == (2, a, 3)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_eval_boxes_are_in_input_pixels():
    torch.manual_seed(1)
    model = _small("ssdlite_mobilenet_v3_small", score_thresh=0.2).eval()
    images = [torch.rand(3, 32, 96), torch.rand(3, 64, 64)]
    with torch.no_grad():
        dets = model(images)
        x, sizes = model.transform(images)
        boxes, scores = model.decoded(x)
        ref = postprocess(boxes, scores, score_thresh=0.2, nms_thresh=model.nms_thresh,
                          topk_candidates=model.topk_candidates, detections_per_img=model.detections_per_img)
    assert sizes == [(32, 96), (64, 64)]
    torch.testing.assert_close(dets[0]["boxes"], ref[0]["boxes"] * torch.tensor([96 / 64, 32 / 64, 96 / 64, 32 / 64]))
    torch.testing.assert_close(dets[1]["boxes"], ref[1]["boxes"])
    with pytest.raises(TypeError, match="uint8"):
        model([torch.zeros(3, 64, 64, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="targets are needed"):
        model.train()(images)


def test_padded_batch_targets_equal_the_list():
    torch.manual_seed(3)
    model = _small("ssdlite_mobilenet_v3_small").train()
    images = torch.rand(2, 3, 64, 64)
    padded = {"boxes": torch.tensor([[[4.0, 6.0, 40.0, 30.0], [50.0, 10.0, 70.0, 50.0]], [[0.0] * 4] * 2]),
              "labels": torch.tensor([[1, 2], [-1, -1]])}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = model(images, _targets())
    model.load_state_dict(state)  # the same BatchNorm statistics for the second pass
    b = model(images, padded)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    with pytest.raises(ValueError, match="positive width and height"):
        model(images, [{"boxes": torch.tensor([[5.0, 5.0, 5.0, 9.0]]), "labels": torch.tensor([1])}] * 2)


def test_levels_follow_the_architecture():
    # V2: the 576-wide expansion of the first stride-32 block (the paper's layer 15) and the 1280 conv
    assert create_model("ssdlite_mobilenet_v2").level_channels[:2] == [576, 1280]
    # V1 has no expansion: the ends of C4 and C5
    assert create_model("ssdlite_mobilenet_v1").level_channels[:2] == [512, 1024]
    v4 = create_model("ssdlite_mobilenet_v4_conv_small")
    assert v4.level_channels[:2] == [576, 960] and v4.level_reductions[:2] == [16, 32]
    c3 = _small("mobilenet_v2", first_level="c3")
    assert c3.level_channels[:3] == [32, 576, 1280] and c3.level_reductions[:3] == [8, 16, 32]
    raw = c3.eval().raw_outputs(torch.rand(1, 3, 64, 64))
    assert raw["cls_logits"].shape[1] == raw["anchors"].shape[0] == 6 * (64 + 16 + 4 + 1 + 1 + 1 + 1)


def test_options_are_checked():
    with pytest.raises(ValueError, match="aspect_ratios has 2 entries"):
        _small("mobilenet_v2", aspect_ratios=[[2], [2]])
    with pytest.raises(ValueError, match="first_level"):
        _small("mobilenet_v2", first_level="c2")
    with pytest.raises(ValueError, match="dropout"):  # classifier options are not detector options
        create_model("ssdlite_mobilenet_v2", dropout=0.1)
    with pytest.raises(ValueError, match="num_classes"):
        _small("mobilenet_v2", num_classes=1)


# ------------------------------------------------------------------------------ native format
def test_native_round_trip_keeps_options(tmp_path):
    torch.manual_seed(2)
    options = {"first_level": "c3", "anchor_scales": [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0],
               "score_thresh": 0.05, "nms_thresh": 0.4, "detections_per_img": 50, "topk_candidates": 100,
               "backbone_kwargs": {"width_mult": 0.5}}
    model = create_model("ssdlite_mobilenet_v3_small", **{**SMALL, **options}).eval()
    with torch.no_grad():
        for m in model.modules():  # non-default statistics, so a lost buffer shows
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    model.save_pretrained(str(tmp_path / "det"), class_names=["__background__", "a", "b"])
    config = json.loads((tmp_path / "det" / "config.json").read_text())
    assert config["architecture"] == "ssdlite_mobilenet_v3_small" and config["kwargs"]["first_level"] == "c3"
    images = torch.rand(1, 3, 64, 64)
    for again in (from_pretrained(tmp_path / "det"),
                  create_model("ssdlite_mobilenet_v3_small", pretrained=str(tmp_path / "det"))):
        again.eval()
        assert again.score_thresh == 0.05 and again.detections_per_img == 50 and again.nms_thresh == 0.4
        assert again.anchor_generator.scales == options["anchor_scales"]
        assert again.pretrained_cfg["task"] == "detect" and again.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
        with torch.no_grad():
            a, b = model.raw_outputs(images), again.raw_outputs(images)
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    assert from_pretrained(tmp_path / "det").class_names == ["__background__", "a", "b"]


def test_an_imagenet_backbone_loads_into_the_detector_backbone():
    # the backbone is a features_only classifier: classifier checkpoints load into it (head skipped)
    path = FIXTURES / "tv_mobilenet_v3_large.safetensors"
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, image_size=64,
                         backbone_kwargs={"width_mult": 0.1, "reduced_tail": False})
    result = load_weights(model.backbone, path)
    assert not result.missing and model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    reference = create_model("mobilenet_v3_large", width_mult=0.1, num_classes=5, pretrained=str(path))
    torch.testing.assert_close(model.backbone.blocks[-1][-1].conv.weight, reference.blocks[-1][-1].conv.weight)
