"""Deployment of segmenters: the ``out`` logits in every format, Segmenter, mIoU, overlay, int8, bench, eval/predict.

The models here are a small stand-in with the segmentation interface (a normalised batch in, ``{"out":
[N, K, H, W], "aux": ...}`` at the input size out, ``task = "segment"``): two strided conv-BN-activation
stages, a 1x1 classifier and bilinear upsampling, with randomized BatchNorm statistics and fan-in
convolutions (``deploy_models.randomize``) so folding or conversion errors show in the logits. The
formats that take several seconds to convert (ExecuTorch lowering, LiteRT, MNN) are behind ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deploy_models import randomize
from mobilenets.deploy.export import FP32_TOLERANCE, export_model
from mobilenets.deploy.formats import FORMATS
from mobilenets.deploy.fuse import (
    SegmentationGraph,
    is_detector,
    is_segmenter,
    prepare_for_export,
    reference_graph,
)
from mobilenets.deploy.metadata import ArtifactError, ArtifactMetadata
from mobilenets.deploy.runtimes import load_artifact
from mobilenets.deploy.segment import (
    Segmenter,
    colorize,
    evaluate_segmenter,
    overlay,
    save_overlay,
    voc_palette,
)
from mobilenets.engine.seg_metrics import ConfusionMatrix

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["background", "one", "two", "three"]
SIZE = 32


class TinySegmenter(nn.Module):
    """The stand-in segmenter: torchvision's output structure, our attribute names."""

    task = "segment"

    def __init__(self, num_classes: int = 4, in_chans: int = 1, size: int = SIZE, aux_loss: bool = True) -> None:
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.pretrained_cfg = {"mean": (0.3,) * in_chans, "std": (0.25,) * in_chans, "input_size": (in_chans, size, size)}
        self.model_kwargs = {"num_classes": num_classes, "in_chans": in_chans}
        self.backbone = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish(),
        )
        self.classifier = nn.Conv2d(16, num_classes, 1)
        self.aux_classifier = nn.Conv2d(16, num_classes, 1) if aux_loss else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        size = x.shape[-2:]
        out = {"out": F.interpolate(self.classifier(f), size=size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            out["aux"] = F.interpolate(self.aux_classifier(f), size=size, mode="bilinear", align_corners=False)
        return out


def tiny_segmenter(seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    model = TinySegmenter(**kw)  # type: ignore[arg-type]
    model.class_names = NAMES if model.num_classes == len(NAMES) else None
    return randomize(model, seed)


class Split:
    """A segmentation split in memory with the data helpers' protocol (uint8 [C, S, S] image, uint8 [S, S] mask)."""

    ignore_index = 255

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, classes: list[str] = NAMES) -> None:
        self.images, self.masks, self.classes = images, masks, list(classes)
        self.num_classes, self.num_channels, self.image_size = len(classes), images.shape[1], images.shape[-1]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i]


def random_split(n: int, seed: int, size: int = SIZE, channels: int = 1) -> Split:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 4, (n, size, size), generator=g, dtype=torch.uint8)
    masks[:, :2] = 255  # an ignored border
    return Split(images, masks)


@pytest.fixture(scope="module")
def segmenter() -> nn.Module:
    return tiny_segmenter()


def _file(tmp: Path, fmt: str) -> Path:
    return tmp / f"seg{'.ncnn.param' if fmt == 'ncnn' else FORMATS[fmt].suffix}"


def _needs(fmt: str) -> None:
    for module in FORMATS[fmt].modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (mobilenets[{FORMATS[fmt].extra}])")


def _eager_labels(model: nn.Module, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager argmax by hand (normalise, forward, argmax) and the top-2 logit margin per pixel."""
    cfg = model.pretrained_cfg
    m = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    s = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = model.eval()((images_u8.float() / 255 - m) / s)["out"]
    top2 = logits.topk(2, dim=1).values
    return logits.argmax(1), top2[:, 0] - top2[:, 1]


# ------------------------------------------------------------------------------------ graph
def test_graph_is_the_out_logits_with_bn_folded(segmenter: nn.Module) -> None:
    assert is_segmenter(segmenter) and not is_detector(segmenter)
    graph = prepare_for_export(segmenter)
    assert isinstance(graph, SegmentationGraph) and graph.pretrained_cfg["task"] == "segment"
    # Folded: no BatchNorm left; the auxiliary head is gone from the copy, kept on the model.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in graph.modules())
    assert graph.model.aux_classifier is None and segmenter.aux_classifier is not None
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        want = segmenter(x)["out"]
        out = graph(x)
        ref = reference_graph(segmenter)(x)
    assert out.shape == (2, 4, SIZE, SIZE)
    assert float((out - want).abs().max()) < 1e-5
    assert float((ref - want).abs().max()) == 0.0
    assert float(want.std()) > 0.1  # not a degenerate model


def test_is_segmenter_reads_the_task_attribute_or_cfg() -> None:
    plain = nn.Conv2d(1, 1, 1)
    assert not is_segmenter(plain)
    plain.pretrained_cfg = {"task": "segment"}
    assert is_segmenter(plain)
    other = nn.Conv2d(1, 1, 1)
    other.task = "segment"
    assert is_segmenter(other)
    with pytest.raises(ValueError, match="not a segmenter"):
        SegmentationGraph(nn.Conv2d(1, 1, 1))


# ------------------------------------------------------------------------------------ export
FAST_FORMATS = ["onnx", "torchscript", "pt2", "openvino", "ncnn"]
SLOW_FORMATS = ["executorch", "litert", "mnn"]


@pytest.mark.parametrize("fmt", [*FAST_FORMATS, *(pytest.param(f, marks=pytest.mark.slow) for f in SLOW_FORMATS)])
def test_export_segmenter_verified_on_logits(segmenter: nn.Module, fmt: str, tmp_path: Path) -> None:
    _needs(fmt)
    result = export_model(segmenter, fmt, _file(tmp_path, fmt))
    assert result.verified and result.passed, result.summary()
    assert result.max_abs_diff <= FP32_TOLERANCE
    predictor = load_artifact(result.path)
    assert predictor.metadata.task == "segment"
    images = torch.randint(0, 256, (3, 1, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    got = Segmenter(predictor)(images)
    want, margin = _eager_labels(segmenter, images)
    assert got.shape == (3, SIZE, SIZE) and got.dtype == torch.int64
    sure = margin > 1e-3  # pixels whose top two logits differ by far more than the export's error
    assert float(sure.float().mean()) > 0.9
    assert torch.equal(got[sure], want[sure])
    assert len(torch.unique(want)) > 1  # several classes predicted: the comparison means something


def test_reduced_precision_segmenter_is_not_claimed_verified(segmenter: nn.Module, tmp_path: Path) -> None:
    _needs("openvino")
    result = export_model(segmenter, "openvino", tmp_path / "seg.xml", precision="bf16")
    assert not result.verified and "segmenter is not checked" in result.note


# ------------------------------------------------------------------------------------ metadata
def test_segmenter_metadata_round_trip(segmenter: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "seg.pt"
    export_model(segmenter, "torchscript", path, verify=False)
    predictor = load_artifact(path)
    meta = predictor.metadata
    assert meta.task == "segment" and meta.num_classes == 4 and meta.class_names == NAMES
    assert meta.input_size == (1, SIZE, SIZE) and meta.mean == (0.3,) and meta.std == (0.25,)
    assert meta.postprocess is None
    side = json.loads((tmp_path / "seg.pt.json").read_text())
    assert side["task"] == "segment" and side["class_names"] == NAMES
    assert ArtifactMetadata.from_json(meta.to_json(), "x") == meta
    assert predictor(torch.randn(2, 1, SIZE, SIZE)).shape == (2, 4, SIZE, SIZE)
    from mobilenets.deploy.detect import Detector

    with pytest.raises(ArtifactError, match="not a detector"):
        Detector(predictor)


def test_segmenter_refuses_a_classifier_artefact(tmp_path: Path) -> None:
    from deploy_models import tiny

    path = tmp_path / "cls.pt"
    export_model(tiny(size=32), "torchscript", path, verify=False)
    with pytest.raises(ArtifactError, match="not a segmenter"):
        Segmenter(path)
    with pytest.raises(ValueError, match="not a segmenter"):
        Segmenter(tiny(size=32))


# ------------------------------------------------------------------------------------ Segmenter
def test_segmenter_labels_equal_eager_argmax(segmenter: nn.Module) -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (2, 1, SIZE, SIZE), dtype=torch.uint8, generator=g)
    want, _ = _eager_labels(segmenter, images)
    seg = Segmenter(segmenter)
    labels, logits = seg.predict(images)
    assert torch.equal(labels, want)
    assert torch.equal(seg(images.float() / 255), want)  # float 0..1 input: the same maps
    assert len(logits) == 2 and logits[0].shape == (4, SIZE, SIZE)
    # Another size: resized to the model's input, the logits resized back, the labels at the image's size.
    big = torch.randint(0, 256, (1, 48, 40), dtype=torch.uint8, generator=g)
    cfg = segmenter.pretrained_cfg
    x = F.interpolate(((big.float() / 255 - cfg["mean"][0]) / cfg["std"][0])[None], size=(SIZE, SIZE),
                      mode="bilinear", align_corners=False)
    with torch.no_grad():
        manual = F.interpolate(segmenter(x)["out"], size=(48, 40), mode="bilinear", align_corners=False).argmax(1)
    got = seg([big])
    assert got.shape == (1, 48, 40) and torch.equal(got, manual)
    with pytest.raises(ValueError, match=r"expected images of shape \(1, H, W\)"):
        seg(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))


# ------------------------------------------------------------------------------------ mIoU
class _Oracle(nn.Module):
    """A 'segmenter' that predicts the class written in the image (pixel value 60 * k): known predictions."""

    task = "segment"

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.num_classes, self.in_chans = num_classes, 1
        self.pretrained_cfg = {"mean": (0.0,), "std": (1.0,), "input_size": (1, 4, 4)}
        self.register_buffer("k", torch.arange(num_classes, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": -(x * 255 / 60 - self.k).abs()}


def test_evaluate_segmenter_on_hand_made_masks() -> None:
    # Predictions P (written into the images) and targets T for two 4x4 images; 255 is ignored.
    p = torch.tensor([[[0, 0, 1, 1]] * 4, [[2, 2, 3, 3]] * 4], dtype=torch.uint8)
    t = p.clone()
    t[0, 0, 0] = 1    # a background pixel predicted as 0 but labelled 1
    t[1, :, 3] = 255  # one ignored column
    t[1, 0, 2] = 2    # a 3 predicted where 2 is true
    split = Split((p * 60)[:, None], t)
    res = evaluate_segmenter(_Oracle(), split, batch_size=1)
    cm = ConfusionMatrix(4)
    cm.update(p, t)
    want = cm.scores(NAMES)
    assert res["miou"] == want["miou"] and res["per_class_iou"] == want["per_class_iou"]
    assert res["pixel_acc"] == want["pixel_acc"] and res["mean_acc"] == want["mean_acc"]
    assert res["n"] == 2 and res["task"] == "segment" and res["class_names"] == NAMES
    # By hand: 28 counted pixels, 26 right; IoU background 7/8, one 8/9, two 8/9, three 3/4.
    assert res["pixels"] == 28 and res["pixel_acc"] == pytest.approx(26 / 28)
    assert res["per_class_iou"] == pytest.approx({"background": 7 / 8, "one": 8 / 9, "two": 8 / 9, "three": 3 / 4})
    assert res["miou"] == pytest.approx((7 / 8 + 8 / 9 + 8 / 9 + 3 / 4) / 4)


def test_evaluate_segmenter_checks_the_split(segmenter: nn.Module) -> None:
    with pytest.raises(ValueError, match="predicts 4 classes"):
        evaluate_segmenter(segmenter, Split(torch.zeros(1, 1, SIZE, SIZE, dtype=torch.uint8),
                                            torch.zeros(1, SIZE, SIZE, dtype=torch.uint8), ["a", "b"]))


# ------------------------------------------------------------------------------------ overlay
def test_overlay_colours_classes_and_keeps_background(tmp_path: Path) -> None:
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette[255].tolist() == [224, 224, 192]
    image = torch.full((1, 4, 5), 100, dtype=torch.uint8)  # grey: becomes RGB
    mask = torch.zeros(4, 5, dtype=torch.int64)
    mask[1, 2], mask[3, 4] = 1, 3
    out = overlay(image, mask, 4, alpha=0.5)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [100, 100, 100]  # background transparent
    assert out[1, 2].tolist() == [114, 50, 50]    # (100 + 128) / 2, 100 / 2
    assert out[3, 4].tolist() == [114, 114, 50]
    assert colorize(mask, 4)[1, 2].tolist() == [128, 0, 0]
    path = save_overlay(tmp_path / "o.png", image, mask, 4)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path)), out)
    with pytest.raises(ValueError, match="mask value 7 invalid"):
        overlay(image, torch.full((4, 5), 7), 4)
    with pytest.raises(ValueError, match="differs from image size"):
        overlay(image, torch.zeros(3, 5, dtype=torch.int64), 4)


# ------------------------------------------------------------------------------------ int8
@pytest.mark.parametrize("target", ["x86", "openvino", "ncnn",
                                    *(pytest.param(t, marks=pytest.mark.slow) for t in ("xnnpack", "litert"))])
def test_ptq_reports_miou_before_and_after(segmenter: nn.Module, target: str, tmp_path: Path) -> None:
    from mobilenets.deploy.quantize import QUANT_TARGETS
    from mobilenets.deploy.quantize_run import quantize_segmenter

    train, test = random_split(16, 0), random_split(8, 1)
    out = tmp_path / f"q{QUANT_TARGETS[target].suffix}"
    res = quantize_segmenter(segmenter, target, out, train, test, calib_batches=2, calib_batch_size=8)
    assert res.metric == "mIoU" and res.calib_images == 16
    assert set(res.metrics) == {"float", "int8"}
    assert res.float_acc1 == pytest.approx(100 * res.metrics["float"]["miou"])
    assert res.int8_acc1 == pytest.approx(100 * evaluate_segmenter(out, test)["miou"])
    assert res.float_acc1 == pytest.approx(100 * evaluate_segmenter(segmenter, test)["miou"])
    assert res.drop == pytest.approx(res.float_acc1 - res.int8_acc1)
    assert "mIoU float" in res.summary() and "pixel acc float" in res.summary()
    meta = load_artifact(out).metadata
    assert meta.task == "segment" and meta.precision == "int8" and meta.quantization["calib_images"] == 16
    assert abs(res.drop) < 5  # int8 of this model keeps its label maps (random masks: mIoU near chance)


def test_qat_is_refused_for_a_segmenter(segmenter: nn.Module, tmp_path: Path) -> None:
    from mobilenets.deploy.quantize import quantize_model

    with pytest.raises(ValueError, match="not available for a segmenter"):
        quantize_model(segmenter, "qat", "x86", tmp_path / "q.pt2", [torch.randn(2, 1, SIZE, SIZE)])


# ------------------------------------------------------------------------------------ registered: bench, eval, predict
def _entry(*, num_classes: int = 4, in_chans: int = 1, size: int = SIZE) -> nn.Module:
    return tiny_segmenter(num_classes=num_classes, in_chans=in_chans, size=size)


_entry.task = "segment"  # type: ignore[attr-defined]


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> str:
    """The stand-in registered as a segmentation model, for the paths that take a model name or weights."""
    from mobilenets.models import registry

    monkeypatch.setitem(registry._MODELS, "tiny_segmenter_standin", _entry)
    return "tiny_segmenter_standin"


def test_bench_accepts_a_segmenter_name_and_artefact(registered: str, segmenter: nn.Module, tmp_path: Path) -> None:
    from mobilenets.deploy.bench import run_bench

    results = run_bench(registered, backends="eager,channels_last", input_size=48, kwargs={"size": 48},
                        min_time_s=0.0, min_runs=2)
    assert [r.backend for r in results] == ["eager", "channels_last"]
    assert all(r.input_size == 48 and r.median_ms > 0 for r in results)
    path = export_model(segmenter, "onnx", tmp_path / "seg.onnx", verify=False).path
    rows = run_bench(path, min_time_s=0.0, min_runs=2)
    assert len(rows) == 1 and rows[0].backend == "artifact:onnxruntime" and rows[0].input_size == SIZE


def test_eval_and_predict_of_an_exported_segmenter(segmenter: nn.Module, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import mobilenets.deploy.segment as segment
    from mobilenets.cli import main
    from mobilenets.deploy.evaluate import evaluate_weights, predict_images

    splits = {"train": random_split(8, 0), "val": random_split(4, 2), "test": random_split(6, 3)}
    seen: dict[str, object] = {}

    def datasets(source, **kw):  # the seam to the data registry
        seen.update(kw)
        return "digit_scenes", None, splits

    monkeypatch.setattr(segment, "segmentation_datasets", datasets)
    path = Path(export_model(segmenter, "onnx", tmp_path / "seg.onnx", verify=False).path)
    want = evaluate_segmenter(segmenter, splits["test"])
    got = evaluate_weights(path, data="digit_scenes", batch_size=4)
    assert got["task"] == "segment" and got["dataset"] == "digit_scenes" and got["runtime"] == "onnxruntime"
    assert got["miou"] == pytest.approx(want["miou"], abs=1e-3) and seen["image_size"] == SIZE
    assert main(["eval", str(path), "--data", "digit_scenes", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {"miou", "pixel_acc", "per_class_iou", "mean_acc"}
    assert list(printed["per_class_iou"]) == NAMES
    # predict: the overlay of the artefact's label map on the image, at the image's size.
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 256, (40, 36), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "img.png")
    items = predict_images([str(tmp_path / "img.png")], path, out=tmp_path / "overlay.png")
    assert items[0]["size"] == [40, 36] and abs(sum(items[0]["classes"].values()) - 1) < 1e-9
    drawn = np.asarray(Image.open(tmp_path / "overlay.png"))
    labels = Segmenter(path)([torch.from_numpy(image)[None]])[0]
    assert drawn.shape == (40, 36, 3)
    assert np.array_equal(drawn, overlay(image, labels, 4))
    assert main(["eval", str(path), "--data", "digit_scenes"]) == 0
    text = capsys.readouterr().out
    assert "mIoU" in text and "pixel acc" in text and "three" in text
    assert main(["predict", str(tmp_path / "img.png"), "--weights", str(path), "--out", str(tmp_path / "o2.png")]) == 0
    assert "overlay" in capsys.readouterr().out and (tmp_path / "o2.png").is_file()


def test_weights_directory_of_a_segmenter(registered: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A segmenter's save_pretrained directory (what a training run writes): export, eval and quantize take
    it like an artefact, through the same Segmenter and evaluate_segmenter."""
    import mobilenets.deploy.segment as segment
    from mobilenets.deploy.evaluate import evaluate_weights
    from mobilenets.deploy.quantize_run import quantize_weights
    from mobilenets.models.native import save_pretrained
    from mobilenets.models.registry import build_model

    model = build_model(registered)
    save_pretrained(model, tmp_path / "w", class_names=NAMES, extra={"dataset": "digit_scenes"})
    splits = {"train": random_split(16, 0), "val": random_split(4, 2), "test": random_split(6, 3)}
    monkeypatch.setattr(segment, "segmentation_datasets", lambda source, **kw: ("digit_scenes", None, splits))
    result = export_model(tmp_path / "w", "onnx", tmp_path / "w.onnx")
    assert result.passed and result.verified and load_artifact(result.path).metadata.dataset == "digit_scenes"
    want = evaluate_segmenter(model, splits["test"])
    got = evaluate_weights(tmp_path / "w")
    assert got["task"] == "segment" and got["runtime"] == "pytorch" and got["miou"] == want["miou"]
    res = quantize_weights(tmp_path / "w", target="x86", out=tmp_path / "q.pt2", calib_batches=2, calib_batch_size=8)
    assert res.metric == "mIoU" and res.dataset == "digit_scenes" and res.split == "test"
    assert res.float_acc1 == pytest.approx(100 * want["miou"]) and res.float_size_bytes > 0
    with pytest.raises(ValueError, match="not available for a segmenter"):
        quantize_weights(tmp_path / "w", method="qat", target="x86", out=tmp_path / "q2.pt2")


# ------------------------------------------------------------------------------------ full size (slow)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
@pytest.mark.parametrize("fmt", [*FAST_FORMATS, *SLOW_FORMATS])
def test_full_size_segmenters_export_verified(name: str, fmt: str, tmp_path: Path) -> None:
    """The registered segmenters (V3-Large LR-ASPP / DeepLabV3) in every format, at the digit scenes' 128 px."""
    import mobilenets

    _needs(fmt)
    if name not in mobilenets.list_models(task=None):
        pytest.skip(f"{name} is not registered in this checkout")
    model = randomize(mobilenets.create_model(name, num_classes=11, in_chans=1))
    assert is_segmenter(model)
    result = export_model(model, fmt, _file(tmp_path, fmt), input_size=128)
    assert result.passed and result.verified, result.summary()


def test_latency_script_has_segmentation_rows_at_both_sizes() -> None:
    import importlib.util as iu

    spec = iu.spec_from_file_location("latency_script", Path(__file__).resolve().parent.parent / "benchmarks" / "latency.py")
    assert spec is not None and spec.loader is not None
    latency = iu.module_from_spec(spec)
    spec.loader.exec_module(latency)
    plan = latency.runs("mobilenet_v2", None, segmentation=True)
    assert {(name, size) for name, size, _, _ in plan} == {
        (n, s) for n in ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large") for s in (520, 128)}
    assert all(label == f"{name}@{size}" for name, size, _, label in plan)
    assert all(kw == {"num_classes": 11, "in_chans": 1} for _, size, kw, _ in plan if size == 128)
    assert latency.runs("mobilenet_v2,mobilenet_v1", 96, segmentation=False) == [
        ("mobilenet_v2", 96, {}, "mobilenet_v2"), ("mobilenet_v1", 96, {}, "mobilenet_v1")]
