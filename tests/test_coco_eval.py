"""COCO box mAP through pycocotools on hand-made cases whose answers follow from the definition.

COCOeval averages precision over IoU thresholds 0.50:0.05:0.95 and 101 recall points, so: perfect
boxes give 1.0; one box at IoU 2/3 matches at the four thresholds 0.50..0.65 and no higher (mAP 0.4,
AP50 1, AP75 0); one object of two found (precision 1 up to recall 0.5) gives 51/101.
"""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("pycocotools")

from mobilenets.engine.coco_eval import coco_evaluate
from mobilenets.engine.evaluate import coco_detections


def _gt(boxes: list[tuple[int, int, list[float]]]) -> dict:
    """A COCO instances dict: ``(image_id, category_id, xywh)`` per object, images 100x100."""
    images = sorted({i for i, _, _ in boxes})
    return {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in images],
        "annotations": [{"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for n, (i, c, b) in enumerate(boxes)],
        "categories": [{"id": 3, "name": "three"}, {"id": 7, "name": "seven"}],
    }


def _det(image_id: int, cat: int, bbox: list[float], score: float = 0.9) -> dict:
    return {"image_id": image_id, "category_id": cat, "bbox": bbox, "score": score}


OBJECTS = [(1, 3, [10.0, 10.0, 40.0, 40.0]), (1, 7, [50.0, 50.0, 30.0, 20.0]), (2, 3, [0.0, 0.0, 10.0, 10.0])]


def test_perfect_predictions_score_one() -> None:
    out = coco_evaluate(_gt(OBJECTS), [_det(i, c, b) for i, c, b in OBJECTS])
    for key in ("map", "map50", "map75"):
        assert out[key] == pytest.approx(1.0), key
    assert out["per_class"] == {"three": pytest.approx(1.0), "seven": pytest.approx(1.0)}
    assert out["map_large"] == -1.0  # no object above 96x96 pixels: COCOeval's "no data"


def test_shifted_box_scores_what_its_iou_determines() -> None:
    gt = _gt([(1, 3, [0.0, 0.0, 10.0, 10.0])])
    out = coco_evaluate(gt, [_det(1, 3, [2.0, 0.0, 10.0, 10.0])])  # IoU 80 / 120 = 2/3
    assert out["map"] == pytest.approx(0.4)  # matched at 0.50, 0.55, 0.60, 0.65 of ten thresholds
    assert out["map50"] == pytest.approx(1.0) and out["map75"] == pytest.approx(0.0)
    assert out["map_small"] == pytest.approx(0.4)  # a 10x10 box is "small" (< 32^2)
    assert out["map_medium"] == -1.0
    assert out["per_class"] == {"three": pytest.approx(0.4), "seven": None}  # no ground truth for "seven"


def test_missed_object_halves_recall() -> None:
    gt = _gt([(1, 3, [0.0, 0.0, 20.0, 20.0]), (1, 3, [50.0, 50.0, 20.0, 20.0])])
    out = coco_evaluate(gt, [_det(1, 3, [0.0, 0.0, 20.0, 20.0])])
    assert out["map"] == pytest.approx(51 / 101) and out["map50"] == pytest.approx(51 / 101)


def test_per_class_and_names() -> None:
    gt = _gt([(1, 3, [0.0, 0.0, 10.0, 10.0]), (1, 7, [50.0, 50.0, 10.0, 10.0])])
    dets = [_det(1, 3, [0.0, 0.0, 10.0, 10.0]), _det(1, 7, [52.0, 50.0, 10.0, 10.0])]
    out = coco_evaluate(gt, dets, ["3", "7"])
    assert out["per_class"] == {"3": pytest.approx(1.0), "7": pytest.approx(0.4)}
    assert out["map"] == pytest.approx(0.7)  # the mean over categories
    by_id = coco_evaluate(gt, dets, {7: "sept"})
    assert set(by_id["per_class"]) == {"three", "sept"}
    with pytest.raises(ValueError, match="one name per category"):
        coco_evaluate(gt, dets, ["only one"])


def test_wrong_class_and_no_detections_score_zero() -> None:
    gt = _gt([(1, 3, [0.0, 0.0, 10.0, 10.0])])
    assert coco_evaluate(gt, [_det(1, 7, [0.0, 0.0, 10.0, 10.0])])["map"] == pytest.approx(0.0)
    empty = coco_evaluate(gt, [])
    assert empty["map"] == 0.0 and empty["per_class"] == {"three": 0.0, "seven": None}


def test_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    coco_evaluate(_gt(OBJECTS), [_det(i, c, b) for i, c, b in OBJECTS])
    assert capsys.readouterr().out == ""


def test_missing_pycocotools_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "mobilenets\[detect\]"'):
        coco_evaluate(_gt(OBJECTS), [])


def test_detections_scaled_to_the_original_image() -> None:
    """Boxes in the 64-px batch go back to a 128 x 256 (H x W) original, as xywh with category ids."""
    outputs = [{"boxes": torch.tensor([[8.0, 16.0, 24.0, 32.0]]), "scores": torch.tensor([0.5]),
                "labels": torch.tensor([2])}]
    targets = {"image_id": torch.tensor([42]), "orig_size": torch.tensor([[128, 256]])}
    got = coco_detections(outputs, targets, (64, 64), [0, 3, 7])
    assert got == {42: [{"image_id": 42, "category_id": 7, "bbox": [32.0, 32.0, 64.0, 32.0], "score": 0.5}]}
