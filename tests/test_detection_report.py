"""Profile and report for detectors: the backbone / extras / heads breakdown of ``mobilenets profile``, the
report's detection table and predicted-image figure from a tiny detection run, and every shipped recipe
loading through ``mobilenets train CONFIG --show-config``.

The detection run is the tiny one of ``tests/test_detection_engine.py`` (a 0.35-wide V3-Small SSDLite on
64-px digit scenes, 2 epochs): its numbers are near zero, but every column and the figure are real.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mobilenets.cli import main
from mobilenets.config import TrainConfig, load_config
from mobilenets.cost import DETECTOR_PARTS, profile
from mobilenets.weights import create_model

ROOT = Path(__file__).parent.parent
TINY = [
    "data.name=digit_scenes", "data.image_size=64", "data.scene_sizes=[64,16,16]", "model.name=ssdlite",
    "model.kwargs={backbone: mobilenet_v3_small, backbone_kwargs: {width_mult: 0.35}, image_size: 64, "
    "extra_channels: [32, 32], min_ratio: 0.2, max_ratio: 0.8}",
    "batch_size=16", "eval_batch_size=16", "epochs=2", "sched.warmup_epochs=0.5", "quiet=true",
]
PARTS = ("backbone", "extras", "classification head", "regression head")


# ------------------------------------------------------------------------------------------- profile
def test_profile_ssdlite320_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    """The torchvision model's totals, split by part; the parts add up to the totals exactly."""
    assert main(["profile", "ssdlite320_mobilenet_v3_large", "--input-size", "320", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 3_440_060
    assert abs(data["macs"] / 0.583e9 - 1) < 0.015
    parts = data["by_part"]
    assert tuple(parts) == PARTS
    assert sum(p["params"] for p in parts.values()) == data["params"]
    assert sum(p["macs"] for p in parts.values()) == data["macs"]
    assert parts["classification head"]["modules"] == ["cls_head"]
    # torchvision's counts of the same parts (its backbone.features / backbone.extra / head modules).
    assert parts["backbone"]["params"] == 1_620_512 and parts["extras"]["params"] == 452_160
    assert parts["classification head"]["params"] == 1_286_604 and parts["regression head"]["params"] == 80_784
    assert sum(p["macs_fraction"] for p in parts.values()) == pytest.approx(1.0)


def test_profile_text_of_any_detector(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["profile", "ssdlite", "backbone=mobilenet_v1", "backbone_kwargs={width_mult: 0.25}", "num_classes=5",
            "image_size=96", "--input-size", "96"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "By part:" in out and "heads (classification + regression):" in out
    table = out[out.index("By part:"):out.index("By layer kind")]
    for label in (*PARTS, "total"):
        assert re.search(rf"^{label}\s", table, re.M), label
    model = create_model("ssdlite", backbone="mobilenet_v1", backbone_kwargs={"width_mult": 0.25}, num_classes=5,
                         image_size=96)
    result = profile(model, 96, parts=DETECTOR_PARTS)
    assert f"{result.params:,}" in table.splitlines()[-2]  # the total line carries the exact count


def test_classifier_profile_text_has_no_part_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "mobilenet_v3_small", "num_classes=10", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "By part:" not in out and "heads (" not in out


def test_list_shows_detectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "ssdlite*"]) == 0
    names = capsys.readouterr().out.split()
    assert "ssdlite320_mobilenet_v3_large" in names and "ssdlite_mobilenet_v2" in names and "ssdlite" in names


# -------------------------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def detection_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("pycocotools")
    from mobilenets.engine.train import train

    run = tmp_path_factory.mktemp("detreport") / "run"
    train(load_config(TrainConfig, None, [*TINY, f"output_dir={run}"]))
    # Latency as a results row records it (cached beside the summary): measuring is not under test here.
    (run / "latency.json").write_text(json.dumps({"eager_ms": 12.5, "best_ms": 9.25, "best_backend": "eager",
                                                  "note": ""}))
    return run


def test_results_row_of_a_detection_run(detection_run: Path) -> None:
    from mobilenets.study.experiment import load_results

    summary = json.loads((detection_run / "summary.json").read_text())
    data = load_results(detection_run)
    rec, row = data["runs"][0], data["summary"][0]
    assert rec["task"] == row["task"] == "detect"
    for key in ("test_map", "test_map50", "test_map75", "best_val_map"):
        assert rec[key] == summary[key] and row[key] == pytest.approx(summary[key]), key
    assert rec["test_acc1"] is None and rec["latency_eager_ms"] == 12.5


def test_report_of_a_detection_run(detection_run: Path, tmp_path: Path) -> None:
    from mobilenets.study.figures import DETECTION_FIGURE_IDS
    from mobilenets.study.tables import DETECTION_TABLE_IDS, TABLE_IDS

    summary = json.loads((detection_run / "summary.json").read_text())
    out = tmp_path / "report.html"
    assert main(["report", str(detection_run), "-o", str(out)]) == 0
    html = out.read_text()
    for fid in (*DETECTION_TABLE_IDS, *DETECTION_FIGURE_IDS):
        assert f'id="{fid}"' in html, fid
    for tid in TABLE_IDS:  # a report of detectors only has no top-1 tables
        assert f'id="{tid}"' not in html, tid
    md = out.with_suffix(".md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| run | ssdlite"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == f"{summary['params'] / 1e6:.3f}" and cells[6] == f"{summary['macs'] / 1e6:.1f}"
    assert cells[7] == f"{summary['test_map']:.3f}" and cells[8] == f"{summary['test_map50']:.3f}"
    assert cells[11] == "12.50" and cells[12] == "9.25"
    png = tmp_path / "report_files" / "plot-detection-predicted.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ground truth:" in md
    # The browser draws every figure (the classification report's own check, tests/test_report.py).
    from test_report import render

    dom, console = render(out)
    assert console == [], console
    for fid in DETECTION_FIGURE_IDS:
        tag = re.search(rf'<img\b[^>]*id="{fid}"[^>]*>', dom)
        assert tag is not None and 'data-decoded="yes"' in tag.group(0), fid


def test_predicted_scene_uses_the_predict_drawing(detection_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The figure is drawn by ``deploy.evaluate.draw_detections`` (one drawing function for predict and
    report), with the run's detections scaled onto the enlarged scene."""
    import io

    from PIL import Image

    import mobilenets.deploy.evaluate as ev
    from mobilenets.study.figures import predicted_scene

    calls: list[tuple[Any, list[dict[str, Any]]]] = []
    real = ev.draw_detections

    def spy(image: Any, detections: list[dict[str, Any]], path: Any) -> Path:
        calls.append((image, detections))
        return real(image, detections, path)

    monkeypatch.setattr(ev, "draw_detections", spy)
    png, caption = predicted_scene(detection_run, min_score=0.0, min_side=256)
    (image, dets), = calls
    assert image.size == (256, 256) and Image.open(io.BytesIO(png)).size == (256, 256)
    assert dets and all({"class", "label", "score", "box"} <= set(d) for d in dets)
    assert all(0 <= v <= 256 for d in dets for v in d["box"])
    assert "digit_scenes test scene 0" in caption and "shown 4x" in caption


def test_report_without_the_runs_data(detection_run: Path, tmp_path: Path) -> None:
    """A run whose dataset is not on this machine still gets its table; the scene figure is left out, with a note."""
    import shutil

    import yaml

    from mobilenets.study.report import build_report

    run = tmp_path / "moved"
    shutil.copytree(detection_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"].update(name="coco", root=str(tmp_path / "nowhere"))
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "config.json").write_text((run / "config.json").read_text().replace('"digit_scenes"', '"coco"'))
    rep = build_report([run])
    assert [t.id for t in rep.tables] == ["detection-table"]
    assert [f.id for f in rep.figures] == ["plot-detection-curves"]
    assert any("No predicted-boxes figure for moved" in line and "nowhere" in line for line in rep.intro)


def test_mixed_report_keeps_the_classification_tables(detection_run: Path, tmp_path: Path) -> None:
    from mobilenets.engine.train import train
    from mobilenets.study.tables import DETECTION_TABLE_IDS, TABLE_IDS

    cls_run = tmp_path / "cls"
    train(load_config(TrainConfig, None, [
        "data.name=synthetic", "data.synthetic_size=32", "data.image_size=16", "epochs=1", "sched.warmup_epochs=0",
        "batch_size=16", "quiet=true", "model.name=mobilenet_v3_small", "model.kwargs.width_mult=0.35",
        f"output_dir={cls_run}"]))
    (cls_run / "latency.json").write_text(json.dumps({"eager_ms": 1.0, "best_ms": 1.0, "best_backend": "eager"}))
    out = tmp_path / "mixed.html"
    assert main(["report", str(cls_run), str(detection_run), "-o", str(out), "--no-markdown"]) == 0
    html = out.read_text()
    for tid in (*TABLE_IDS, *DETECTION_TABLE_IDS):
        assert f'id="{tid}"' in html, tid
    results = html[html.index('id="results-table"'):html.index("</table>", html.index('id="results-table"'))]
    assert "<td>cls</td>" in results and "<td>run</td>" not in results  # the detector is not a top-1 row
    assert 'id="plot-architecture"' in html and 'id="plot-detection-predicted"' in html


# ------------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("recipe", sorted(ROOT.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_every_recipe_shows_its_config(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``mobilenets train CONFIG --show-config`` loads, validates and resolves every shipped recipe."""
    extra = [] if "digits" in recipe.name else ["data.root=/data"]
    assert main(["train", str(recipe), *extra, "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "model.name:" in out and "optim.lr:" in out


def test_coco_recipe_is_torchvisions() -> None:
    cfg = load_config(TrainConfig, ROOT / "configs" / "coco_ssdlite320_mobilenet_v3_large.yaml", ["data.root=/data"])
    assert cfg.model.name == "ssdlite320_mobilenet_v3_large" and cfg.data.name == "coco"
    assert cfg.data.image_size == 320 and cfg.epochs == 600 and cfg.task == "detect"
    o, s = cfg.optim, cfg.sched
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.nesterov) == ("sgd", 0.15, 0.9, 4e-5, False)
    assert s.name == "cosine" and s.warmup_epochs == 1 and s.warmup_lr_ratio == 0.001
    assert cfg.batch_size == 24  # per process: x 8 torchrun processes = torchvision's 192
    assert (cfg.aug.iou_crop, cfg.aug.hflip, cfg.aug.zoom_out, cfg.aug.photometric) == (1.0, 0.5, 0.0, 0.0)
    voc = load_config(TrainConfig, ROOT / "configs" / "voc_ssdlite_mobilenet_v2.yaml", ["data.root=/data"])
    assert voc.model.name == "ssdlite_mobilenet_v2" and voc.data.name == "voc" and voc.data.image_size == 320
    assert voc.model.kwargs["image_size"] == 320
