"""Deployment of detectors: the decoded graph in every format, the shared post-processing, int8, bench.

A small SSDLite (V3-Small backbone at width 0.5, 64-96 px) with randomized BatchNorm statistics and
fan-in convolutions (``deploy_models.randomize``), so folding or conversion errors show in the outputs.
The formats that take tens of seconds to convert (ExecuTorch lowering, LiteRT, MNN, Core ML) and the two
full-size detectors are behind ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import mobilenets
from deploy_models import randomize
from mobilenets.deploy.detect import Detector, calibration_images, compare_detections, evaluate_detector
from mobilenets.deploy.export import FP32_TOLERANCE, export_model
from mobilenets.deploy.formats import FORMATS
from mobilenets.deploy.fuse import DetectionGraph, is_detector, prepare_for_export, reference_graph
from mobilenets.deploy.metadata import ArtifactError, ArtifactMetadata
from mobilenets.deploy.quantize import quantize_model
from mobilenets.deploy.runtimes import load_artifact

NAMES = ["__background__", "a", "b", "c", "d"]


def small_detector(size: int = 96, in_chans: int = 3, num_classes: int = 5, seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    model = mobilenets.create_model("ssdlite", backbone="mobilenet_v3_small", backbone_kwargs={"width_mult": 0.5},
                                    num_classes=num_classes, image_size=size, in_chans=in_chans, **kw)
    model.class_names = NAMES if num_classes == len(NAMES) else None
    return randomize(model, seed)


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    return small_detector()


def _file(tmp: Path, fmt: str) -> Path:
    return tmp / f"det{'.ncnn.param' if fmt == 'ncnn' else FORMATS[fmt].suffix}"


def _needs(fmt: str) -> None:
    for module in FORMATS[fmt].modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed (mobilenets[{FORMATS[fmt].extra}])")


# ------------------------------------------------------------------------------------ graph and eager
def test_graph_is_decoded_in_one_tensor(detector: nn.Module) -> None:
    assert is_detector(detector) and not is_detector(mobilenets.create_model("mobilenet_v3_small"))
    graph = prepare_for_export(detector)
    assert isinstance(graph, DetectionGraph)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = graph(x)
        boxes, scores = detector.decoded(x)
    assert out.shape == (2, boxes.shape[1], 4 + 5)
    # Boxes / input size then probabilities; BatchNorm folded to float rounding.
    want = torch.cat([boxes / 96, scores], -1)
    assert float((out - want).abs().max()) < 1e-5
    assert float((reference_graph(detector)(x) - want).abs().max()) == 0.0
    assert float(want.abs().max()) > 0.05 and float(boxes.std()) > 1  # not a degenerate model


def test_detector_eager_equals_model(detector: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 96, 96, generator=g), torch.rand(3, 120, 70, generator=g)]
    want = detector.eval()(images)
    got = Detector(detector)(images)
    assert len(got) == 2 and len(want[0]["boxes"]) > 0
    for a, b in zip(want, got):
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(a[key], b[key]), key
    batch = torch.rand(2, 3, 96, 96, generator=g)
    for a, b in zip(detector(batch), Detector(detector)(batch)):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])


def test_detector_settings_and_errors(detector: nn.Module) -> None:
    images = [torch.rand(3, 96, 96)]
    assert len(Detector(detector, detections_per_img=3)(images)[0]["boxes"]) <= 3
    with pytest.raises(ValueError, match="unknown post-processing settings"):
        Detector(detector, nms=0.5)
    with pytest.raises(ValueError, match="not a detector"):
        Detector(mobilenets.create_model("mobilenet_v3_small"))


def test_compare_detections_names_the_mismatch() -> None:
    a = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "labels": torch.tensor([1, 2]),
          "scores": torch.tensor([0.9, 0.8])}]
    swapped = [{k: v.flip(0) for k, v in a[0].items()}]
    assert compare_detections(a, swapped) == (0.0, None)  # order of score ties does not matter
    moved = [{**a[0], "boxes": a[0]["boxes"] + torch.tensor([0.0, 0, 0, 0.01])}]
    worst, problem = compare_detections(a, moved)
    assert problem is not None and "no match within" in problem and worst == pytest.approx(0.01, abs=1e-6)
    fewer = [{k: v[:1] for k, v in a[0].items()}]
    assert "1 detections instead of 2" in str(compare_detections(a, fewer)[1])
    # A full list whose last place went to another candidate tied in score (runtimes round differently):
    # forgiven at the cut, never above it.
    other = {"boxes": torch.tensor([[40.0, 40, 50, 50]]), "labels": torch.tensor([3])}
    tie = [{"boxes": torch.cat([a[0]["boxes"][:1], other["boxes"]]), "labels": torch.tensor([1, 3]),
            "scores": torch.tensor([0.9, 0.80002])}]
    assert compare_detections(a, tie) == (0.0, None)
    above = [{**tie[0], "scores": torch.tensor([0.9, 0.85])}]  # the replacement is no tie: a real difference
    assert "detection 1 (label 2" in str(compare_detections(a, above)[1])
    top = [{"boxes": torch.cat([other["boxes"], a[0]["boxes"][1:]]), "labels": torch.tensor([3, 2]),
            "scores": torch.tensor([0.9, 0.8])}]
    assert "detection 0 (label 1" in str(compare_detections(a, top)[1])  # the first place differs


# ------------------------------------------------------------------------------------ export
FAST_FORMATS = ["onnx", "torchscript", "pt2", "openvino", "ncnn"]
SLOW_FORMATS = ["executorch", "litert", "mnn"]


@pytest.mark.parametrize("fmt", [*FAST_FORMATS, *(pytest.param(f, marks=pytest.mark.slow) for f in SLOW_FORMATS)])
def test_export_small_detector_verified(detector: nn.Module, fmt: str, tmp_path: Path) -> None:
    _needs(fmt)
    result = export_model(detector, fmt, _file(tmp_path, fmt))
    assert result.verified and result.passed, result.summary()
    assert result.max_abs_diff <= FP32_TOLERANCE
    assert result.detection_max_px is not None and result.detection_max_px <= 1e-3
    assert "detections equal" in result.summary()
    # The artefact's own Detector matches the eager model's detections.
    predictor = load_artifact(result.path)
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 130)]
    worst, problem = compare_detections(detector(images), Detector(predictor)(images))
    assert problem is None and worst <= 1e-3


@pytest.mark.slow
def test_export_coreml_converts_not_verified(detector: nn.Module, tmp_path: Path) -> None:
    _needs("coreml")
    result = export_model(detector, "coreml", tmp_path / "det.mlpackage")
    assert not result.verified and "not verified on this platform" in result.status


def test_export_refuses_another_input_size(detector: nn.Module, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid for a detector built for"):
        export_model(detector, "torchscript", tmp_path / "d.pt", input_size=64)


# ------------------------------------------------------------------------------------ metadata
def test_detector_metadata_round_trip(detector: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "det.pt"
    export_model(detector, "torchscript", path, verify=False)
    meta = load_artifact(path).metadata
    assert meta.task == "detect" and meta.num_classes == 5 and meta.class_names == NAMES
    assert meta.postprocess == {"score_thresh": detector.score_thresh, "nms_thresh": detector.nms_thresh,
                                "topk_candidates": detector.topk_candidates,
                                "detections_per_img": detector.detections_per_img}
    side = json.loads((tmp_path / "det.pt.json").read_text())
    assert side["task"] == "detect" and side["postprocess"] == meta.postprocess
    again = ArtifactMetadata.from_json(meta.to_json(), "x")
    assert again == meta
    assert Detector(path).class_names == NAMES


def test_metadata_without_task_is_a_classifier(tmp_path: Path) -> None:
    old = {"format": "onnx", "input_size": [1, 32, 32], "mean": [0.3], "std": [0.3], "num_classes": 10,
           "batch": 1, "class_names": None}
    meta = ArtifactMetadata.from_dict(old, "old.onnx.json")
    assert meta.task == "classify" and meta.postprocess is None
    with pytest.raises(ArtifactError, match="postprocess"):
        ArtifactMetadata.from_dict({**old, "task": "detect"}, "d.json")
    with pytest.raises(ArtifactError, match="task 'pose' unknown"):
        ArtifactMetadata.from_dict({**old, "task": "pose"}, "d.json")


def test_old_classifier_artefact_still_loads(tmp_path: Path) -> None:
    from deploy_models import tiny

    model = tiny(size=32)
    path = tmp_path / "cls.pt"
    export_model(model, "torchscript", path, verify=False)
    # Rewrite the embedded copy and the sidecar as an artefact from before detectors: no task, no postprocess.
    from mobilenets.deploy.metadata import write_metadata

    module = torch.jit.load(str(path), _extra_files=(extra := {"mobilenets.json": ""}))
    data = json.loads(extra["mobilenets.json"])
    data.pop("task"), data.pop("postprocess")
    torch.jit.save(module, str(path), _extra_files={"mobilenets.json": json.dumps(data)})
    write_metadata(path, ArtifactMetadata.from_dict(data, "old"))
    predictor = load_artifact(path)
    assert predictor.metadata.task == "classify"
    x = torch.randn(2, 1, 32, 32)
    assert predictor(x).shape == (2, 10)
    with pytest.raises(ArtifactError, match="not a detector"):
        Detector(predictor)


# ------------------------------------------------------------------------------------ int8 and bench
def _scenes(size: int = 64) -> dict:
    from mobilenets.data.scenes import load_scene_splits

    return load_scene_splits(canvas=size, seed=0, sizes=(48, 16, 16), masks=False)


def test_quantize_weights_of_a_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``quantize_weights`` (the CLI's entry) on a detector's weights: calibration on the training split,
    AP50 (and mAP) of float and int8 on the evaluation split, through the shared evaluation."""
    import mobilenets.deploy.detect as detect
    from mobilenets.deploy.quantize_run import quantize_weights
    from mobilenets.weights import save_pretrained

    splits = _scenes()
    model = small_detector(size=64, in_chans=1, num_classes=11, score_thresh=0.05)
    save_pretrained(model, tmp_path / "w")
    monkeypatch.setattr(detect, "detection_datasets", lambda meta, **kw: ("digit_scenes", None, splits))
    res = quantize_weights(tmp_path / "w", target="x86", out=tmp_path / "q.pt2", calib_batches=2,
                           calib_batch_size=16)
    assert res.metric == "AP50" and res.dataset == "digit_scenes" and res.split == "test"
    assert res.metrics is not None and set(res.metrics) == {"float", "int8"}
    assert res.float_acc1 == pytest.approx(100 * res.metrics["float"]["map50"])
    assert "AP50 float" in res.summary() and "mAP float" in res.summary()
    assert load_artifact(res.path).metadata.postprocess["score_thresh"] == 0.05
    with pytest.raises(ValueError, match="not available for a detector"):
        quantize_weights(tmp_path / "w", method="qat", target="x86", out=tmp_path / "q2.pt2")


@pytest.mark.slow  # capture, calibration, conversion and lowering: 30-60 s per target here
@pytest.mark.parametrize("target", ["x86", "xnnpack", "litert", "openvino", "ncnn"])
def test_quantized_small_detector_reports_float_and_int8(target: str, tmp_path: Path) -> None:
    splits = _scenes()
    model = small_detector(size=64, in_chans=1, num_classes=11, score_thresh=0.05)
    meta = ArtifactMetadata.from_model(model, "weights")
    calib = calibration_images(meta, splits["train"], batches=2, batch_size=16)
    assert [tuple(x.shape) for x in calib] == [(16, 1, 64, 64)] * 2
    suffix = {"x86": ".pt2", "xnnpack": ".pte", "litert": ".tflite", "openvino": ".xml", "ncnn": ".ncnn.param"}[target]
    path = quantize_model(model, "ptq", target, tmp_path / f"q{suffix}", calib)
    meta = load_artifact(path).metadata
    assert meta.task == "detect" and meta.precision == "int8" and meta.postprocess is not None
    for source in (model, path):
        res = evaluate_detector(source, splits["test"], batch_size=16)
        assert 0.0 <= res["map"] <= 1.0 and 0.0 <= res["map50"] <= 1.0


def test_evaluate_detector_reuses_the_engine_evaluation(tmp_path: Path) -> None:
    from mobilenets.data.detection import make_detection_batches
    from mobilenets.engine.evaluate import evaluate_detection
    from mobilenets.engine.task import detection_preprocess

    test = _scenes()["test"]
    model = small_detector(size=64, in_chans=1, num_classes=11)
    loader, _ = make_detection_batches(test, 8, shuffle=False, seed=0, device="cpu")
    want = evaluate_detection(model, loader, detection_preprocess(), dataset=test)
    got = evaluate_detector(model, test, batch_size=8)
    assert got["map"] == want["map"] and got["map50"] == want["map50"]
    assert not model.training  # the evaluation restores eval mode, never leaves the model training


def test_bench_runs_a_detector_at_its_input_size() -> None:
    from mobilenets.deploy.bench import run_bench

    kwargs = {"backbone": "mobilenet_v3_small", "backbone_kwargs": {"width_mult": 0.35}, "num_classes": 3,
              "image_size": 64}
    # channels_last runs the folded detector graph; an exported backend takes the export path tested above.
    results = run_bench("ssdlite", backends="eager,channels_last", kwargs=kwargs, min_time_s=0.0, min_runs=2)
    assert [r.backend for r in results] == ["eager", "channels_last"]
    assert all(r.input_size == 64 and r.batch == 1 and r.median_ms > 0 for r in results)


# ------------------------------------------------------------------------------------ full size (slow)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssdlite320_mobilenet_v3_large", "ssdlite_mobilenet_v2"])
@pytest.mark.parametrize("fmt", [*FAST_FORMATS, *SLOW_FORMATS])
def test_full_size_detectors_export_verified(name: str, fmt: str, tmp_path: Path) -> None:
    _needs(fmt)
    model = randomize(mobilenets.create_model(name, image_size=320))
    result = export_model(model, fmt, _file(tmp_path, fmt))
    assert result.passed and result.verified, result.summary()
