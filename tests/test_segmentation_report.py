"""The report of segmentation runs: their results rows (mIoU, pixel and mean accuracy, per-class IoU, means
over seeds), the segmentation table and curves of a run directory, the overlay figure's panels in the VOC
palette at the right pixels, the mask a segmenter predicts, and a report of classifier, detector and
segmenter runs together with all three sections.

The segmentation and detection run directories are written by the tests (``summary.json``, ``metrics.csv``,
``config.yaml`` and ``latency.json`` as training and the results rows write them, with made-up numbers):
what is under test is the report reading them, not training. They hold no weights, so the figures that
need a model (the overlay, the predicted boxes) are left out with a note, which the tests check too; one
test saves an untrained LR-ASPP into such a directory to draw the overlay figure for real.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from mobilenets.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["__background__", *(str(i) for i in range(10))]
SEG_FIELDS = ("epoch", "lr", "train_loss", "val_loss", "val_miou", "val_pixel_acc", "ema_val_loss", "ema_val_miou",
              "ema_val_pixel_acc", "images_per_s", "epoch_s")
# VOC palette colours, written out (not computed by the code under test): classes 1, 2, 3 and the ignore 255.
VOC = {1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 255: (224, 224, 192)}


def _per_class(seed: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {name: round(0.5 + 0.04 * i + 0.01 * seed, 4) for i, name in enumerate(CLASSES)}
    out["7"] = None  # a class the test split does not have
    out["4"] = 0.125 + 0.01 * seed  # the worst one
    return out


def write_seg_run(run: Path, *, seed: int = 0, ema: bool = True, epochs: int = 3) -> dict[str, Any]:
    """A finished segmentation run directory as the engine and the results rows leave it (no weights)."""
    run.mkdir(parents=True)
    summary = {"model": "lraspp", "dataset": "digit_scenes", "task": "segment", "params": 123_456 + seed,
               "macs": 7_654_321, "epochs": epochs, "best_epoch": epochs, "train_time_s": 40.0 + seed,
               "images_per_s": 55.0, "wall_time_s": 50.0, "best_val_miou": 0.61 + 0.01 * seed,
               "test_miou": 0.5731 + 0.02 * seed, "test_pixel_acc": 0.9412, "test_mean_acc": 0.6623 - 0.01 * seed,
               "test_loss": 0.31, "test_per_class_iou": _per_class(seed)}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(yaml.safe_dump({
        "model": {"name": "lraspp", "kwargs": {"backbone": "mobilenet_v3_small", "num_classes": 11, "in_chans": 1}},
        "data": {"name": "digit_scenes", "image_size": 64, "scene_sizes": [64, 16, 16]}}))
    with open(run / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SEG_FIELDS)
        writer.writeheader()
        for e in range(1, epochs + 1):
            writer.writerow({"epoch": e, "lr": 0.01, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_miou": 0.2 * e,
                             "val_pixel_acc": 0.3 * e, "ema_val_loss": 1.2 / e if ema else "",
                             "ema_val_miou": 0.19 * e if ema else "", "ema_val_pixel_acc": 0.29 * e if ema else "",
                             "images_per_s": 55.0, "epoch_s": 10.0})
    (run / "latency.json").write_text(json.dumps({"eager_ms": 21.5, "best_ms": 17.25, "best_backend": "eager",
                                                  "note": ""}))
    return summary


def write_det_run(run: Path) -> None:
    """A finished detection run directory (no weights)."""
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "model": "ssdlite", "dataset": "digit_scenes", "task": "detect", "params": 99_000, "macs": 5_000_000,
        "epochs": 2, "train_time_s": 9.0, "test_map": 0.25, "test_map50": 0.5, "test_map75": 0.2,
        "test_map_small": None, "test_map_medium": 0.3, "test_map_large": None, "best_val_map": 0.27}))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "ssdlite", "kwargs": {}},
                                                     "data": {"name": "digit_scenes", "image_size": 64}}))
    (run / "metrics.csv").write_text("epoch,lr,train_loss,val_map,val_map50\n1,0.1,2.0,0.1,0.3\n2,0.1,1.5,0.2,0.4\n")
    (run / "latency.json").write_text(json.dumps({"eager_ms": 5.0, "best_ms": 4.0, "best_backend": "eager"}))


def _md_row(md: str, name: str) -> list[str]:
    row = next(line for line in md.splitlines() if line.startswith(f"| {name} | lraspp"))
    return [c.strip() for c in row.strip("|").split("|")]


# ------------------------------------------------------------------------------------------ results rows
def test_results_row_of_a_segmentation_run(tmp_path: Path) -> None:
    from mobilenets.study.experiment import SEGMENTATION_FIELDS, load_results

    summary = write_seg_run(tmp_path / "run")
    data = load_results(tmp_path / "run")
    rec, row = data["runs"][0], data["summary"][0]
    assert rec["task"] == row["task"] == "segment"
    for key in SEGMENTATION_FIELDS:
        assert rec[key] == summary[key] and row[key] == pytest.approx(summary[key]), key
    assert rec["test_per_class_iou"] == summary["test_per_class_iou"]
    assert rec["test_acc1"] is None and rec["latency_eager_ms"] == 21.5
    assert "test_map" not in rec  # a segmenter's row carries no box figures


def test_seeds_of_a_segmentation_run_aggregate(tmp_path: Path) -> None:
    from mobilenets.study.experiment import aggregate, run_record

    recs = []
    for seed in (0, 1):
        write_seg_run(tmp_path / f"seed{seed}", seed=seed)
        recs.append(run_record(tmp_path / f"seed{seed}", "seg", seed))
    (row,) = aggregate(recs)
    assert row["task"] == "segment" and row["n"] == 2
    assert row["test_miou"] == pytest.approx(0.5831) and row["test_miou_std"] == pytest.approx(0.02 / 2 ** 0.5)
    assert row["test_mean_acc"] == pytest.approx(0.6573)
    assert row["test_per_class_iou"]["4"] == pytest.approx(0.13)
    assert row["test_per_class_iou"]["7"] is None  # no seed scored it: still no number
    assert list(row["test_per_class_iou"]) == CLASSES


# ------------------------------------------------------------------------------------------------ report
def test_report_of_a_segmentation_run(tmp_path: Path) -> None:
    from mobilenets.study.figures import DETECTION_FIGURE_IDS
    from mobilenets.study.tables import DETECTION_TABLE_IDS, SEGMENTATION_TABLE_IDS, TABLE_IDS

    summary = write_seg_run(tmp_path / "seg")
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "seg"), "-o", str(out)]) == 0
    html = out.read_text()
    for fid in (*SEGMENTATION_TABLE_IDS, "plot-segmentation-curves"):
        assert f'id="{fid}"' in html, fid
    for other in (*TABLE_IDS, *DETECTION_TABLE_IDS, *DETECTION_FIGURE_IDS):  # no top-1 or box sections
        assert f'id="{other}"' not in html, other
    md = out.with_suffix(".md").read_text()
    cells = _md_row(md, "seg")
    assert cells[3] == "digit_scenes" and cells[4] == "64px" and "backbone=mobilenet_v3_small" in cells[2]
    assert cells[5] == f"{summary['params'] / 1e6:.3f}" and cells[6] == f"{summary['macs'] / 1e6:.1f}"
    assert cells[7] == f"{summary['test_miou']:.3f}" and cells[8] == f"{summary['test_pixel_acc']:.3f}"
    assert cells[9] == f"{summary['test_mean_acc']:.3f}" and cells[10] == f"{summary['best_val_miou']:.3f}"
    assert cells[11] == "4: 0.125"  # the worst class scored, not the absent one
    assert cells[12] == "21.50" and cells[13] == "17.25" and cells[15] == "40.0"
    png = tmp_path / "report_files" / "plot-segmentation-curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # No weights in the directory: the overlay is left out, and the report says why.
    assert 'id="plot-segmentation-overlay"' not in html
    assert "No segmentation overlay figure for seg" in md and "config.json" in md
    # The browser draws the figure (the classification report's own check, tests/test_report.py).
    from test_report import render

    dom, console = render(out)
    assert console == [], console
    tag = re.search(r'<img\b[^>]*id="plot-segmentation-curves"[^>]*>', dom)
    assert tag is not None and 'data-decoded="yes"' in tag.group(0)


def test_segmentation_curves_plot_the_ema_series_where_kept(tmp_path: Path) -> None:
    """One val mIoU and one pixel-accuracy line per run: the EMA values of a run that kept an EMA, the raw
    ones of a run that did not."""
    from matplotlib.figure import Figure as MplFigure

    from mobilenets.study import figures
    from mobilenets.study.runs import _collect

    write_seg_run(tmp_path / "ema", ema=True)
    write_seg_run(tmp_path / "raw", ema=False, epochs=2)
    runs, _ = _collect([tmp_path / "ema", tmp_path / "raw"])
    kept: list[Any] = []
    real_png = figures._png
    try:
        figures._png = lambda fig: kept.append(fig) or real_png(fig)  # keep the figure to read its lines
        fig = figures._segmentation_curves(runs)
    finally:
        figures._png = real_png
    assert fig.id == "plot-segmentation-curves"
    (mpl,) = kept
    assert isinstance(mpl, MplFigure)
    val = {line.get_label(): list(line.get_ydata()) for line in mpl.axes[1].get_lines()}
    assert val["ema mIoU"] == pytest.approx([0.19, 0.38, 0.57])
    assert val["ema pixel acc"] == pytest.approx([0.29, 0.58, 0.87])
    assert val["raw mIoU"] == pytest.approx([0.2, 0.4])
    assert val["raw pixel acc"] == pytest.approx([0.3, 0.6])


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mobilenets.config import TrainConfig, load_config
    from mobilenets.engine.train import train

    run = tmp_path_factory.mktemp("segreport") / "cls"
    train(load_config(TrainConfig, None, [
        "data.name=synthetic", "data.synthetic_size=32", "data.image_size=16", "epochs=1", "sched.warmup_epochs=0",
        "batch_size=16", "quiet=true", "model.name=mobilenet_v3_small", "model.kwargs.width_mult=0.35",
        f"output_dir={run}"]))
    (run / "latency.json").write_text(json.dumps({"eager_ms": 1.0, "best_ms": 1.0, "best_backend": "eager"}))
    return run


def test_report_of_classify_detect_and_segment_runs(classifier_run: Path, tmp_path: Path) -> None:
    from mobilenets.study.report import build_report
    from mobilenets.study.tables import DETECTION_TABLE_IDS, SEGMENTATION_TABLE_IDS, TABLE_IDS

    write_det_run(tmp_path / "det")
    write_seg_run(tmp_path / "seg")
    rep = build_report([classifier_run, tmp_path / "det", tmp_path / "seg"])
    assert [t.id for t in rep.tables] == [*TABLE_IDS, *DETECTION_TABLE_IDS, *SEGMENTATION_TABLE_IDS]
    ids = [f.id for f in rep.figures]
    assert "plot-architecture" in ids and "plot-detection-curves" in ids and ids[-1] == "plot-segmentation-curves"
    tables = {t.id: t for t in rep.tables}
    # Each run is in its own section only.
    assert [row[0] for row in tables["results-table"].rows] == ["cls"]
    assert [row[0] for row in tables["detection-table"].rows] == ["det"]
    assert [row[0] for row in tables["segmentation-table"].rows] == ["seg"]
    assert any("No predicted-boxes figure for det" in line for line in rep.intro)
    assert any("No segmentation overlay figure for seg" in line for line in rep.intro)


def test_model_option_picks_the_overlay_run(tmp_path: Path) -> None:
    from mobilenets.study.report import build_report

    write_seg_run(tmp_path / "a")
    write_seg_run(tmp_path / "b")
    rep = build_report([tmp_path / "a", tmp_path / "b"], model="b")
    assert any("No segmentation overlay figure for b:" in line for line in rep.intro)
    with pytest.raises(ValueError, match="'c' is not a run of this report; runs: a, b"):
        build_report([tmp_path / "a", tmp_path / "b"], model="c")


# ------------------------------------------------------------------------------------------ overlay figure
def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_overlay_png_colours_the_masks_in_the_voc_palette() -> None:
    """Image, ground truth and prediction side by side, each pixel enlarged to a scale x scale block: the
    image grey, background pixels clear, class pixels blended half and half with their VOC colour."""
    from mobilenets.study.figures import _LEGEND_LINE, _PANEL_GAP, _overlay_png

    h, w, scale = 4, 6, 3
    grey = np.arange(h * w, dtype=np.uint8).reshape(h, w) * 7 + 40
    truth = np.zeros((h, w), dtype=np.uint8)
    truth[1, 1:4] = 1
    truth[3, 5] = 255
    predicted = np.zeros((h, w), dtype=np.int64)
    predicted[1, 1:3] = 1
    predicted[2:, 0] = 3
    png = _overlay_png(torch.from_numpy(grey)[None], torch.from_numpy(truth), torch.from_numpy(predicted),
                       CLASSES[:4], scale=scale)
    img = _decode(png).astype(int)
    legend = ["background", "1", "3", "ignored"]  # classes of either mask, then the ignored pixels
    assert img.shape == (h * scale + _PANEL_GAP + _LEGEND_LINE * len(legend), 3 * w * scale + 2 * _PANEL_GAP, 3)

    def expected(mask: np.ndarray) -> np.ndarray:
        out = np.repeat(grey[..., None], 3, axis=-1).astype(float)
        for label, colour in VOC.items():
            at = mask == label
            out[at] = np.round(0.5 * out[at] + 0.5 * np.array(colour, dtype=float))
        return out.astype(int)

    for i, want in enumerate((np.repeat(grey[..., None], 3, axis=-1).astype(int), expected(truth), expected(predicted))):
        x0 = i * (w * scale + _PANEL_GAP)
        panel = img[: h * scale, x0: x0 + w * scale]
        assert np.array_equal(panel, np.kron(want, np.ones((scale, scale, 1), dtype=int))), f"panel {i}"
    # The same, pixel by pixel: image pixel (1, 2) is 96, class 1 in both masks; (1, 3) is 103, class 1 in
    # the truth only.
    truth_x, pred_x = w * scale + _PANEL_GAP, 2 * (w * scale + _PANEL_GAP)
    assert img[4, truth_x + 2 * scale + 1].tolist() == img[4, pred_x + 2 * scale + 1].tolist() == [112, 48, 48]
    assert img[4, truth_x + 3 * scale].tolist() == [116, 52, 52] and img[4, pred_x + 3 * scale].tolist() == [103] * 3
    # The legend: a swatch of each class's colour, none for the background.
    y0 = h * scale + _PANEL_GAP
    assert img[y0 + 7, 7].tolist() == [255, 255, 255]
    for line, label in enumerate((1, 3, 255), 1):
        assert tuple(img[y0 + line * _LEGEND_LINE + 7, 7]) == VOC[label], label


def test_overlay_png_checks_its_input() -> None:
    from mobilenets.study.figures import _overlay_png

    mask = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"image of shape \(4, 4\) and dtype uint8 invalid; expected uint8"):
        _overlay_png(np.zeros((4, 4), dtype=np.uint8), mask, mask, CLASSES)
    with pytest.raises(ValueError, match="scale=0 invalid"):
        _overlay_png(np.zeros((1, 4, 4), dtype=np.uint8), mask, mask, CLASSES, scale=0)


class _NearestGrey(nn.Module):
    """A stand-in segmenter: class k wherever the normalised input is nearest ``centres[k]``."""

    def __init__(self, centres: list[float], mean: float, std: float) -> None:
        super().__init__()
        self.centres = torch.tensor(centres).view(1, -1, 1, 1)
        self.pretrained_cfg = {"mean": (mean,), "std": (std,), "input_size": (1, 2, 3)}
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(x)
        return {"out": -(x - self.centres) ** 2}


def test_predicted_mask_normalises_as_training_did() -> None:
    from mobilenets.study.figures import predicted_mask

    image = torch.tensor([[[0, 128, 255], [255, 0, 128]]], dtype=torch.uint8)
    model = _NearestGrey([-2.0, 0.0, 2.0], mean=0.5, std=0.25)  # 0 -> -2, 128 -> ~0, 255 -> 2
    mask = predicted_mask(model, image)
    assert mask.dtype == torch.int64 and mask.tolist() == [[0, 1, 2], [2, 0, 1]]
    (x,) = model.seen
    assert x.shape == (1, 1, 2, 3) and float(x.min()) == pytest.approx(-2.0) and float(x.max()) == pytest.approx(2.0)
    # Logits at another size than the image's are a clear error, not a silently misaligned mask.
    wrong = _NearestGrey([0.0, 1.0], mean=0.0, std=1.0)
    wrong.forward = lambda x: {"out": torch.zeros(1, 2, 1, 1)}  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=r"logits of shape \(1, 2, 1, 1\) invalid; expected \(1, K, 2, 3\)"):
        predicted_mask(wrong, image)


def test_segmentation_item_of_the_detection_scenes() -> None:
    """A split whose items are detection targets gives its kept masks; one without masks is a clear error."""
    from mobilenets.study.figures import _segmentation_item

    class Scenes:
        def __init__(self, masks: torch.Tensor | None) -> None:
            self.images = torch.arange(2 * 4, dtype=torch.uint8).view(2, 1, 2, 2)
            self.masks = masks

        def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return self.images[i], {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}

    masks = torch.tensor([[[0, 1], [2, 3]], [[4, 5], [6, 7]]], dtype=torch.uint8)
    image, mask = _segmentation_item(Scenes(masks), 1)
    assert image.tolist() == [[[4, 5], [6, 7]]] and mask.tolist() == [[4, 5], [6, 7]]
    with pytest.raises(ValueError, match="the Scenes split has no masks"):
        _segmentation_item(Scenes(None), 0)
    pairs = [(torch.zeros(1, 2, 2, dtype=torch.uint8), masks[0])]
    assert _segmentation_item(pairs, 0)[1].tolist() == [[0, 1], [2, 3]]


def test_report_draws_the_overlay_of_a_run_with_weights(tmp_path: Path) -> None:
    """A run directory holding a segmenter's weights (an untrained 0.35-wide LR-ASPP on V3-Small): the
    report's overlay figure shows its test image 0, with the predicted panel the model's own argmax."""
    from mobilenets.data.registry import build_datasets
    from mobilenets.deploy import segment
    from mobilenets.study.figures import _PANEL_GAP, _segmentation_item, predicted_mask
    from mobilenets.study.report import build_report
    from mobilenets.weights import create_model, from_pretrained

    torch.manual_seed(0)
    run = tmp_path / "seg"
    write_seg_run(run)
    model = create_model("lraspp", backbone="mobilenet_v3_small", backbone_kwargs={"width_mult": 0.35},
                         num_classes=11, in_chans=1)
    model.save_pretrained(str(run), CLASSES)
    rep = build_report([run])
    assert [f.id for f in rep.figures] == ["plot-segmentation-curves", "plot-segmentation-overlay"]
    fig = rep.figures[1]
    assert fig.note.startswith("digit_scenes test image 0 (64x64 px, shown 6x)")
    img = _decode(fig.png).astype(int)
    side = 64 * 6
    assert img.shape[1] == 3 * side + 2 * _PANEL_GAP
    ds = build_datasets("digit_scenes", None, 64, task="segment", scene_sizes=[64, 16, 16])["test"]
    image, _ = _segmentation_item(ds, 0)
    want = segment.overlay(image, predicted_mask(from_pretrained(run).eval(), image), len(CLASSES))
    panel = img[:side, 2 * (side + _PANEL_GAP):]
    assert np.array_equal(panel, np.kron(want.astype(int), np.ones((6, 6, 1), dtype=int)))
