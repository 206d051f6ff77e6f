"""Detection through the one training engine: a tiny SSDLite on 64-px digit scenes, end to end on CPU.

One short run (2 epochs, a 0.35-wide V3-Small backbone, 64 training scenes) is shared by the tests:
its run directory and summary, the resume of an interrupted copy (bit-identical weights and history),
``mobilenets eval RUN --json`` and ``mobilenets predict IMAGE --weights RUN --out FILE.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("pycocotools")

from interrupted import killed_then_resumed
from mobilenets.cli import main
from mobilenets.config import ConfigError, TrainConfig, load_config
from mobilenets.engine.plots import best_epoch, read_metrics
from mobilenets.engine.task import ClassificationTask, DetectionTask, get_task, resolve_task
from mobilenets.engine.train import train

TINY = [
    "data.name=digit_scenes", "data.image_size=64", "data.scene_sizes=[64,16,16]", "model.name=ssdlite",
    "model.kwargs={backbone: mobilenet_v3_small, backbone_kwargs: {width_mult: 0.35}, image_size: 64, "
    "extra_channels: [32, 32], min_ratio: 0.2, max_ratio: 0.8}",
    "batch_size=16", "eval_batch_size=16", "epochs=2", "sched.warmup_epochs=0.5", "quiet=true",
]
DETECT_KEYS = ("best_val_map", "test_map", "test_map50", "test_map75", "test_map_small", "test_map_medium",
               "test_map_large", "test_per_class")


def tiny_cfg(run: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*TINY, f"output_dir={run}", *extra])


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    run = tmp_path_factory.mktemp("det") / "run"
    return run, train(tiny_cfg(run))


def test_task_follows_the_dataset() -> None:
    assert resolve_task(load_config(TrainConfig, None, ["data.name=digit_scenes"])) == "detect"
    assert resolve_task(TrainConfig()) == "classify"
    assert resolve_task(load_config(TrainConfig, None, ["task=classify", "data.name=digit_scenes"])) == "classify"
    assert isinstance(get_task("detect"), DetectionTask) and isinstance(get_task("classify"), ClassificationTask)
    with pytest.raises(ConfigError, match="task"):
        get_task("track")
    with pytest.raises(ConfigError, match="task"):
        load_config(TrainConfig, None, ["task=track"])


def test_resume_of_a_run_saved_before_the_task_keys() -> None:
    """A run whose config.yaml predates ``task`` and the box-augmentation keys resumes (they read as
    their defaults); an actual change of task is refused."""
    from mobilenets.config import to_dict
    from mobilenets.engine.resume import check_resume_changes

    saved = to_dict(TrainConfig())
    del saved["task"], saved["aug"]["iou_crop"], saved["data"]["scene_sizes"]
    assert check_resume_changes(saved, TrainConfig()) == []
    with pytest.raises(ConfigError, match="task"):
        check_resume_changes(saved, load_config(TrainConfig, None, ["task=detect"]))


def test_run_directory_and_summary(detection_run: tuple[Path, dict[str, Any]]) -> None:
    run, summary = detection_run
    for name in ("config.yaml", "metrics.csv", "summary.json", "model.safetensors", "config.json",
                 "checkpoints/last.pt", "loss.png", "map.png", "lr.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["task"] == "detect" and summary["params"] > 0
    for key in DETECT_KEYS:
        assert key in summary, key
    assert "test_acc1" not in summary
    assert all(0.0 <= summary[k] <= 1.0 for k in ("test_map", "test_map50", "test_map75"))
    assert summary["test_map50"] >= summary["test_map"] - 1e-9
    assert set(summary["test_per_class"]) == {str(d) for d in range(10)}
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_map", "val_map50", "val_map75", "ema_val_map"} <= set(rows[0])
    # The weights kept are the best on val mAP, as the plots' rule reads it back.
    assert best_epoch(rows, "map") == (summary["best_epoch"], pytest.approx(summary["best_val_map"]),
                                       summary["best_weights"])
    assert "task: auto" in (run / "config.yaml").read_text()  # as given; summary.json names the task


def test_resume_is_exact(tmp_path: Path, detection_run: tuple[Path, dict[str, Any]],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    ref_run, _ = detection_run
    ref = torch.load(ref_run / "checkpoints" / "last.pt", weights_only=True)
    got = killed_then_resumed(monkeypatch, tiny_cfg, tmp_path / "run")
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    assert [r["val_map"] for r in ref["history"]] == [r["val_map"] for r in got["history"]]
    assert ref["best"] == got["best"] and "map" in got["best"]


def test_eval_json(detection_run: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    run, summary = detection_run
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("map", "map50", "map75", "map_small", "map_medium", "map_large", "per_class", "n", "split",
                "dataset"):
        assert key in result, key
    assert result["dataset"] == "digit_scenes" and result["split"] == "test" and result["n"] == 16
    assert result["map"] == pytest.approx(summary["test_map"], abs=1e-6)  # the run's recorded test scenes
    assert set(result["per_class"]) == {str(d) for d in range(10)}
    assert main(["eval", str(run)]) == 0
    assert "mAP" in capsys.readouterr().out


def test_predict_writes_png(tmp_path: Path, detection_run: tuple[Path, dict[str, Any]],
                            capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from mobilenets.data import build_datasets

    run, _ = detection_run
    image, _ = build_datasets("digit_scenes", None, 64, scene_sizes=(4, 4, 4))["test"][0]
    scene = tmp_path / "scene.png"
    Image.fromarray(image[0].numpy(), mode="L").save(scene)
    out = tmp_path / "boxes.png"
    assert main(["predict", str(scene), "--weights", str(run), "--min-score", "0", "--out", str(out), "--json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["out"] == str(out) and item["detections"]
    det = item["detections"][0]
    assert set(det) == {"class", "label", "score", "box"} and len(det["box"]) == 4
    assert det["class"] in {str(d) for d in range(10)}
    with Image.open(out) as drawn:
        assert drawn.format == "PNG" and drawn.size == (64, 64) and drawn.mode == "RGB"
    assert main(["predict", str(scene), "--weights", str(run)]) == 0
    assert "detections (score >= 0.3)" in capsys.readouterr().out


def test_eval_and_predict_take_a_detector_artefact(tmp_path: Path, detection_run: tuple[Path, dict[str, Any]],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An exported detector scores what its weights score (the graph in onnxruntime, then the shared NMS)
    and predicts the same boxes."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from mobilenets.data import build_datasets

    run, summary = detection_run
    onnx = tmp_path / "det.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(onnx)]) == 0
    capsys.readouterr()
    assert main(["eval", str(onnx), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runtime"] == "onnxruntime" and result["n"] == 16
    assert result["map"] == pytest.approx(summary["test_map"], abs=1e-4)
    image, _ = build_datasets("digit_scenes", None, 64, scene_sizes=(4, 4, 4))["test"][1]
    scene = tmp_path / "scene.png"
    Image.fromarray(image[0].numpy(), mode="L").save(scene)
    found = []
    for weights in (run, onnx):
        assert main(["predict", str(scene), "--weights", str(weights), "--min-score", "0.01", "--json"]) == 0
        found.append(json.loads(capsys.readouterr().out)[0]["detections"])
    # A barely trained model scores many boxes almost alike, so float rounding may swap two neighbours:
    # compare the detections as sets (label, box rounded to 0.1 px).
    def as_set(dets: list[dict[str, Any]]) -> set[tuple[int, ...]]:
        return {(d["label"], *(round(v * 10) for v in d["box"])) for d in dets}

    assert found[0] and len(found[0]) == len(found[1])
    assert len(as_set(found[0]) ^ as_set(found[1])) <= 2  # at most one box on a rounding edge
