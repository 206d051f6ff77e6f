"""Box mAP with the official COCO evaluator (pycocotools' ``COCOeval``), quiet and in one call.

Why pycocotools and not our own: COCO's mAP has many details (101-point interpolated precision,
``iscrowd`` regions, the 100-detection cap, area ranges) that every published figure was computed
with; reusing the reference implementation makes our numbers comparable with torchvision's and the
papers'. It is an optional dependency (``pip install "mobilenets[detect]"``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["INSTALL_HINT", "coco_evaluate", "require_pycocotools"]

INSTALL_HINT = 'pip install "mobilenets[detect]"'

# COCOeval.stats order (iouType "bbox"): AP, AP50, AP75, AP small / medium / large, then the recalls.
_STAT_KEYS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


def require_pycocotools() -> Any:
    """The ``pycocotools`` modules (``COCO``, ``COCOeval``); a one-line ImportError naming the extra."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError(f"detection evaluation needs pycocotools: {INSTALL_HINT}") from None
    return COCO, COCOeval


def _ground_truth(gt: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``gt`` with the fields COCOeval reads but datasets may omit (area, iscrowd, id)."""
    data = copy.deepcopy(dict(gt))
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"COCO ground truth has no {key!r} list; expected a COCO instances dict")
    for i, ann in enumerate(data["annotations"]):
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    data.setdefault("info", {})
    return data


def _class_names(categories: list[dict[str, Any]], class_names: Sequence[str] | Mapping[int, str] | None
                 ) -> list[str]:
    if class_names is None:
        return [str(c.get("name", c["id"])) for c in categories]
    if isinstance(class_names, Mapping):
        return [str(class_names.get(c["id"], c.get("name", c["id"]))) for c in categories]
    names = list(class_names)
    if len(names) != len(categories):
        raise ValueError(f"got {len(names)} class names for {len(categories)} ground-truth categories; expected "
                         "one name per category, in the order of gt['categories']")
    return names


def coco_evaluate(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """COCO box metrics of ``detections`` against the ground truth ``gt`` (a COCO ``instances`` dict).

    ``detections``: ``{"image_id", "category_id", "bbox": [x, y, w, h] (original image pixels),
    "score"}`` each. ``class_names`` names the categories for ``per_class`` (a list in the order of
    ``gt["categories"]`` or a category-id mapping; default: the categories' own names). Returns
    ``map`` (AP@[.5:.95]), ``map50``, ``map75``, ``map_small`` / ``map_medium`` / ``map_large`` (-1 where
    the ground truth has no object of that size, as COCOeval reports it) and ``per_class`` (name ->
    AP@[.5:.95]; ``None`` for a category without ground truth). No detections at all score 0.
    """
    coco_cls, eval_cls = require_pycocotools()
    data = _ground_truth(gt)
    names = _class_names(data["categories"], class_names)
    cat_ids = [c["id"] for c in data["categories"]]
    has_gt = {c: any(a["category_id"] == c and not a.get("iscrowd") for a in data["annotations"]) for c in cat_ids}
    known = {img["id"] for img in data["images"]}
    dets = [dict(d) for d in detections if d["image_id"] in known]
    if not dets:
        per_class = {n: (0.0 if has_gt[c] else None) for n, c in zip(names, cat_ids)}
        return {**{k: 0.0 for k in _STAT_KEYS}, "per_class": per_class, "detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress and its table
        coco_gt = coco_cls()
        coco_gt.dataset = data
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = eval_cls(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out: dict[str, Any] = {k: float(v) for k, v in zip(_STAT_KEYS, ev.stats[: len(_STAT_KEYS)])}
    # precision: [IoU thresholds, recall points, categories, area ranges, max detections]; area "all"
    # is index 0 and maxDets 100 the last, as COCOeval's own AP uses.
    precision = ev.eval["precision"]
    index = {cat: k for k, cat in enumerate(ev.params.catIds)}  # COCOeval sorts the category ids
    per_class: dict[str, float | None] = {}
    for name, cat in zip(names, cat_ids):
        p = precision[:, :, index[cat], 0, -1]
        valid = p[p > -1]
        per_class[name] = float(valid.mean()) if has_gt[cat] and valid.size else None
    out["per_class"] = per_class
    out["detections"] = len(dets)
    return {k: (v if not (isinstance(v, float) and math.isnan(v)) else None) for k, v in out.items()}
