"""COCO-format detection datasets in the official layout: ``root/annotations/instances_{split}{year}.json``
and the images in ``root/{split}{year}/`` (e.g. ``instances_val2017.json`` + ``val2017/``).

Every entry is checked once at load time, so a malformed file fails before training with one line naming
the file and the entry (a missing key, a box with negative size or outside its image, an annotation of an
unknown category or image). Category ids map to contiguous labels ``1..K`` (``label_to_category`` maps
back for the evaluator); ``contiguous=False`` keeps the ids as labels instead (``classes`` padded with
``"N/A"``), torchvision's convention for its 91-output COCO detectors.

``iscrowd`` annotations are not training targets (torchvision's reference drops them: a crowd box covers
many objects) but stay in :meth:`CocoDetection.coco_ground_truth` with ``iscrowd=1``, where COCOeval
ignores detections on them — the official protocol. Boxes of zero width or height carry no pixels and
are dropped from the training targets too (also kept in the ground truth, as the official file has them).

Segmentation (:class:`CocoSegmentation`): the same files; each image's instance masks (polygons, or RLE
for ``iscrowd`` regions, compressed or not) are rasterised with pycocotools when the item is read and
merged into one class-index mask, as torchvision's segmentation reference does: a pixel takes its
instance's class, pixels of two or more overlapping instances are ignored (255). Crowd regions are
ignored too (255) where no single instance covers them (``crowd="label"`` labels them with their class,
like the other instances). ``coco_classes="voc"`` keeps the 20 categories VOC shares with COCO, labelled
``1..20`` in VOC's order (:data:`COCO_TO_VOC`, torchvision's list), and drops the others (background);
``"all"`` labels every category ``1..K`` in id order.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .detection import AnnotationError, FileDetectionDataset, category_maps, ground_truth
from .segmentation import IGNORE_INDEX, FileSegmentationDataset

__all__ = ["BOX_TOLERANCE", "COCO_TO_VOC", "CocoDetection", "CocoSegmentation", "coco_paths"]

#: COCO category id of each VOC label (index = label; 0 = background), torchvision's reference list:
#: aeroplane = 5 (airplane), bicycle = 2, ..., tvmonitor = 72 (tv).
COCO_TO_VOC: tuple[int, ...] = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)

#: Pixels a box may stick out of its image before it is an error (then it is clipped): COCO's float
#: boxes overshoot the border by rounding in a few places.
BOX_TOLERANCE = 1.0


def coco_paths(root: str | Path, split: str, year: int | str = 2017) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of a split in the official layout."""
    root = Path(root).expanduser()
    return root / "annotations" / f"instances_{split}{year}.json", root / f"{split}{year}"


def _need(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise AnnotationError(f"{where}: missing key {key!r}")
    return entry[key]


def _read_images(path: Path, data: dict) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for k, im in enumerate(_need(data, "images", str(path))):
        where = f"{path}: images[{k}]"
        iid = int(_need(im, "id", where))
        where = f"{path}: images[{k}] (id {iid})"
        w, h, name = _need(im, "width", where), _need(im, "height", where), _need(im, "file_name", where)
        if not (isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0):
            raise AnnotationError(f"{where}: width/height {w}x{h} invalid; expected positive numbers")
        if iid in images:
            raise AnnotationError(f"{where}: duplicate image id {iid}")
        images[iid] = {"id": iid, "width": int(w), "height": int(h), "file_name": str(name)}
    return images


def _read_categories(path: Path, data: dict) -> list[tuple[int, str]]:
    cats: list[tuple[int, str]] = []
    for k, c in enumerate(_need(data, "categories", str(path))):
        where = f"{path}: categories[{k}]"
        cid, name = int(_need(c, "id", where)), str(_need(c, "name", where))
        if any(cid == i for i, _ in cats):
            raise AnnotationError(f"{where}: duplicate category id {cid}")
        cats.append((cid, name))
    if not cats:
        raise AnnotationError(f"{path}: 'categories' is empty; expected the dataset's categories")
    return cats


def _check_annotation(path: Path, k: int, ann: Any, images: dict[int, dict], category_ids: set[int],
                      tolerance: float) -> dict:
    """One annotation, validated; returns it with a clean ``bbox`` (floats) and ``iscrowd``."""
    where = f"{path}: annotations[{k}]"
    aid = _need(ann, "id", where)
    where = f"{path}: annotations[{k}] (id {aid})"
    iid, cid, bbox = _need(ann, "image_id", where), _need(ann, "category_id", where), _need(ann, "bbox", where)
    if iid not in images:
        raise AnnotationError(f"{where}: unknown image_id {iid}; not in 'images'")
    if cid not in category_ids:
        raise AnnotationError(f"{where}: unknown category_id {cid}; expected one of {sorted(category_ids)}")
    if (not isinstance(bbox, list | tuple) or len(bbox) != 4
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)):
        raise AnnotationError(f"{where}: bbox {bbox!r} invalid; expected [x, y, width, height] numbers")
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise AnnotationError(f"{where}: bbox {list(bbox)} has negative size {w}x{h}")
    im = images[iid]
    if x < -tolerance or y < -tolerance or x + w > im["width"] + tolerance or y + h > im["height"] + tolerance:
        raise AnnotationError(f"{where}: bbox {list(bbox)} lies outside the {im['width']}x{im['height']} "
                              f"image {iid} ({im['file_name']})")
    out = {key: v for key, v in ann.items() if key != "segmentation"}  # bbox evaluation never reads it
    out["bbox"] = [x, y, w, h]
    out["iscrowd"] = int(ann.get("iscrowd", 0))
    return out


class CocoDetection(FileDetectionDataset):
    """One split of a COCO-format dataset (see the module docstring), items resized to ``image_size``.

    ``remove_empty`` drops images without a training box (torchvision's reference does for training);
    evaluation keeps them, since detections on them count as false positives.
    """

    def __init__(self, root: str | Path, split: str = "val", *, year: int | str = 2017, image_size: int = 320,
                 ann_file: str | Path | None = None, image_dir: str | Path | None = None,
                 contiguous: bool = True, remove_empty: bool = False, tolerance: float = BOX_TOLERANCE) -> None:
        default_ann, default_dir = coco_paths(root, split, year)
        self.ann_file = Path(ann_file) if ann_file is not None else default_ann
        self.image_dir = Path(image_dir) if image_dir is not None else default_dir
        path = self.ann_file
        data = _load_json(path)
        images = _read_images(path, data)
        cats = _read_categories(path, data)
        if contiguous:
            classes, label_to_category, cat_to_label = category_maps(cats)
        else:
            names = dict(cats)
            classes = ["__background__", *(names.get(i, "N/A") for i in range(1, max(names) + 1))]
            label_to_category, cat_to_label = list(range(len(classes))), {i: i for i in names}
        ids = set(cat_to_label)
        anns = [_check_annotation(path, k, a, images, ids, tolerance)
                for k, a in enumerate(_need(data, "annotations", str(path)))]
        self.category_names = dict(cats)
        self._images, self._annotations = images, anns
        per_image: dict[int, list[dict]] = {iid: [] for iid in images}
        for a in anns:
            per_image[a["image_id"]].append(a)
        records = []
        for iid, im in images.items():
            boxes, labels = _targets(per_image[iid], im, cat_to_label)
            if remove_empty and not len(labels):
                continue
            records.append((str(self.image_dir / im["file_name"]), iid, im["width"], im["height"], boxes, labels))
        super().__init__(records, image_size, classes, label_to_category)

    def coco_ground_truth(self) -> dict[str, Any]:
        """The COCO ``instances`` dict of this split's images: the file's own annotations (original pixels,
        its ``area``, ``iscrowd``), so COCOeval scores exactly as on the official file."""
        keep = {r[1] for r in self.records}
        images = [dict(self._images[i]) for i in self._images if i in keep]
        anns = [copy.deepcopy(a) for a in self._annotations if a["image_id"] in keep]
        gt = ground_truth(images, anns, self.classes, self.label_to_category)
        gt["categories"] = [{"id": i, "name": n} for i, n in sorted(self.category_names.items())]
        return gt


def _targets(anns: list[dict], im: dict, cat_to_label: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Training boxes (xyxy, clipped to the image) and labels: crowd and empty boxes left out."""
    boxes, labels = [], []
    for a in anns:
        x, y, w, h = a["bbox"]
        if a["iscrowd"] or w <= 0 or h <= 0:
            continue
        x1, y1 = min(max(x, 0.0), im["width"]), min(max(y, 0.0), im["height"])
        x2, y2 = min(max(x + w, 0.0), im["width"]), min(max(y + h, 0.0), im["height"])
        if x2 > x1 and y2 > y1:
            boxes.append((x1, y1, x2, y2))
            labels.append(cat_to_label[a["category_id"]])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def _check_segmentation(where: str, segm: Any, im: dict) -> None:
    """A polygon list (``[[x0, y0, x1, y1, ...], ...]``, at least 3 points each) or an RLE dict whose
    ``size`` is the image's ``[height, width]``."""
    if isinstance(segm, list):
        for poly in segm:
            if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                    or not all(isinstance(v, int | float) and math.isfinite(v) for v in poly)):
                raise AnnotationError(f"{where}: segmentation polygon {str(poly)[:60]} invalid; expected "
                                      "[x0, y0, x1, y1, x2, y2, ...] numbers (3 points or more)")
        return
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [im["height"], im["width"]]:
            raise AnnotationError(f"{where}: RLE size {segm['size']} differs from the image's [height, width] "
                                  f"[{im['height']}, {im['width']}]")
        if not isinstance(segm["counts"], list | str | bytes):
            raise AnnotationError(f"{where}: RLE counts {type(segm['counts']).__name__} invalid; expected a list "
                                  "or a compressed string")
        return
    raise AnnotationError(f"{where}: segmentation {str(segm)[:60]} invalid; expected polygons or an RLE dict")


def _rasterise(segm: Any, height: int, width: int) -> np.ndarray:
    """One instance's uint8 0/1 mask [H, W] (polygons merged; uncompressed RLE compressed first)."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, height, width)
    else:
        rle = segm
    return np.asarray(mask_utils.decode(rle), dtype=np.uint8).reshape(height, width)


class CocoSegmentation(FileSegmentationDataset):
    """One split of a COCO-format dataset as class-index masks (see the module docstring), items resized
    to ``image_size``. ``coco_classes`` is ``"voc"`` (21 classes) or ``"all"`` (every category + the
    background); ``remove_empty`` drops images without an instance of a kept category (torchvision's
    reference does for training); ``crowd`` is ``"ignore"`` or ``"label"``."""

    def __init__(self, root: str | Path, split: str = "val", *, year: int | str = 2017, image_size: int = 520,
                 ann_file: str | Path | None = None, image_dir: str | Path | None = None,
                 coco_classes: str = "voc", remove_empty: bool = False, crowd: str = "ignore") -> None:
        from .._validate import check_choice

        check_choice("coco_classes", coco_classes, ("voc", "all"))
        check_choice("crowd", crowd, ("ignore", "label"))
        default_ann, default_dir = coco_paths(root, split, year)
        self.ann_file = Path(ann_file) if ann_file is not None else default_ann
        self.image_dir = Path(image_dir) if image_dir is not None else default_dir
        path = self.ann_file
        data = _load_json(path)
        images = _read_images(path, data)
        cats = _read_categories(path, data)
        if coco_classes == "voc":
            from .voc import VOC_CLASSES

            classes = ["__background__", *VOC_CLASSES]
            cat_to_label = {cid: k for k, cid in enumerate(COCO_TO_VOC) if k}
        else:
            classes, _, cat_to_label = category_maps(cats)
        known = {cid for cid, _ in cats}
        per_image: dict[int, list[tuple[int, bool, Any]]] = {iid: [] for iid in images}
        for k, ann in enumerate(_need(data, "annotations", str(path))):
            where = f"{path}: annotations[{k}]"
            aid = _need(ann, "id", where)
            where = f"{path}: annotations[{k}] (id {aid})"
            iid, cid = _need(ann, "image_id", where), _need(ann, "category_id", where)
            if iid not in images:
                raise AnnotationError(f"{where}: unknown image_id {iid}; not in 'images'")
            if cid not in known:
                raise AnnotationError(f"{where}: unknown category_id {cid}; expected one of {sorted(known)}")
            segm = _need(ann, "segmentation", where)
            _check_segmentation(where, segm, images[iid])
            if cid in cat_to_label:
                per_image[iid].append((cat_to_label[cid], bool(ann.get("iscrowd", 0)), segm))
        records, self._instances, self._sizes = [], [], []
        for iid, im in images.items():
            instances = per_image[iid]
            if remove_empty and not any(not crowd_ for _, crowd_, _ in instances):
                continue
            records.append((str(self.image_dir / im["file_name"]), f"{path} (image {iid}, {im['file_name']})"))
            self._instances.append(instances)
            self._sizes.append((im["height"], im["width"]))
        self.coco_classes, self.crowd = coco_classes, crowd
        super().__init__(records, image_size, classes)

    def subset(self, indices: Any) -> CocoSegmentation:
        new = super().subset(indices)
        assert isinstance(new, CocoSegmentation)
        new._instances = [self._instances[int(i)] for i in indices]
        new._sizes = [self._sizes[int(i)] for i in indices]
        return new

    def _mask(self, index: int) -> np.ndarray:
        """The merged class-index mask of image ``index`` at its annotated size."""
        h, w = self._sizes[index]
        target = np.zeros((h, w), dtype=np.uint8)
        count = np.zeros((h, w), dtype=np.uint16)
        crowd = np.zeros((h, w), dtype=bool)
        for label, is_crowd, segm in self._instances[index]:
            m = _rasterise(segm, h, w)
            if is_crowd and self.crowd == "ignore":
                crowd |= m.astype(bool)
                continue
            target = np.maximum(target, m * np.uint8(label))
            count += m
        target[count > 1] = IGNORE_INDEX
        target[crowd & (count == 0)] = IGNORE_INDEX
        return target
