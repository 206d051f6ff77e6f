"""Pascal VOC detection in the official layout: ``root/VOC2007/{Annotations,JPEGImages,ImageSets/Main}``
(also VOC2012, and either under ``root/VOCdevkit/`` as the tarballs extract).

One XML file per image (``Annotations/<id>.xml``: ``<size>`` and ``<object>``s with ``<name>``,
``<difficult>`` and a ``<bndbox>`` of 1-based inclusive pixel indices), the split lists in
``ImageSets/Main/{train,val,trainval,test}.txt``. A box ``xmin..xmax`` covers pixels ``xmin - 1 ..
xmax - 1`` in 0-based indices, i.e. ``[xmin - 1, xmax)`` in the continuous xyxy convention used here.

Labels are the 20 classes in the devkit's order, ``1..20`` (0 background); the category ids of
:meth:`VOCDetection.coco_ground_truth` are the labels. Objects marked ``difficult`` are left out of the
training targets (as the SSD reference does) and kept in the ground truth with ``iscrowd=1``: VOC's own
evaluation ignores detections matched to a difficult object, and ``iscrowd`` is how COCOeval ignores a
ground-truth box (any number of detections on it count neither as true nor as false positives).

Segmentation (:class:`VOCSegmentation`): ``SegmentationClass/<id>.png`` palette PNGs (mode ``P``) whose
palette *indices* are the labels (0 background, 1..20 the classes in the same order, 255 the "void"
borders and hard regions, ignored), ``JPEGImages/<id>.jpg`` and the lists
``ImageSets/Segmentation/{train,val[,test]}.txt``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .detection import AnnotationError, FileDetectionDataset, ground_truth
from .segmentation import FileSegmentationDataset

__all__ = ["VOC_CLASSES", "VOCDetection", "VOCSegmentation", "voc_year_dir"]

#: The devkit's class order; label = index + 1.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_year_dir(root: str | Path, year: str | int, holds: str = "Annotations") -> Path | None:
    """``root/VOC<year>`` or ``root/VOCdevkit/VOC<year>`` (or ``root`` itself when it is that folder),
    whichever holds ``holds/`` (``Annotations`` for boxes, ``SegmentationClass`` for masks); None when
    none does."""
    root = Path(root).expanduser()
    for cand in (root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}", root):
        if (cand / holds).is_dir() and (root != cand or cand.name == f"VOC{year}"):
            return cand
    return None


def _text(node: ET.Element, path: str, where: str) -> str:
    child = node.find(path)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{where}: missing <{path}>")
    return child.text.strip()


def _number(node: ET.Element, path: str, where: str) -> float:
    text = _text(node, path, where)
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: <{path}> is {text!r}; expected a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: <{path}> is {text!r}; expected a finite number")
    return value


def parse_voc_xml(path: Path, class_index: dict[str, int], tolerance: float = 1.0) -> dict[str, Any]:
    """One annotation file: ``{"width", "height", "objects": [(label, x1, y1, x2, y2, difficult)]}`` with
    boxes in continuous 0-based pixels; a malformed entry raises :class:`AnnotationError` naming the file
    and the object."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise AnnotationError(f"{path}: not valid XML ({exc})") from None
    root = tree.getroot()
    width, height = _number(root, "size/width", str(path)), _number(root, "size/height", str(path))
    if width <= 0 or height <= 0:
        raise AnnotationError(f"{path}: <size> {width}x{height} invalid; expected positive numbers")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"{path}: object {k}"
        name = _text(obj, "name", where)
        where = f"{path}: object {k} ({name})"
        if name not in class_index:
            raise AnnotationError(f"{where}: unknown class {name!r}; expected one of the VOC classes")
        xmin, ymin = _number(obj, "bndbox/xmin", where), _number(obj, "bndbox/ymin", where)
        xmax, ymax = _number(obj, "bndbox/xmax", where), _number(obj, "bndbox/ymax", where)
        if xmax < xmin or ymax < ymin:
            raise AnnotationError(f"{where}: bndbox ({xmin}, {ymin}, {xmax}, {ymax}) has negative size")
        x1, y1, x2, y2 = xmin - 1.0, ymin - 1.0, xmax, ymax
        if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            raise AnnotationError(f"{where}: bndbox ({xmin}, {ymin}, {xmax}, {ymax}) lies outside the "
                                  f"{int(width)}x{int(height)} image")
        diff = obj.find("difficult")
        difficult = diff is not None and (diff.text or "0").strip() not in ("", "0")
        objects.append((class_index[name], max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height), difficult))
    return {"width": int(width), "height": int(height), "objects": objects}


def read_split_list(path: Path) -> list[str]:
    """Image ids of an ``ImageSets/Main`` list (first token of each non-empty line)."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


class VOCDetection(FileDetectionDataset):
    """VOC ``sets`` (``[(year, image_set), ...]``, e.g. ``[("2007", "trainval"), ("2012", "trainval")]``,
    the usual "07+12") under ``root``, items resized to ``image_size``. ``image_id`` is the position in
    the combined list; ``file_name`` keeps the VOC id."""

    def __init__(self, root: str | Path, sets: Sequence[tuple[str | int, str]] = (("2007", "test"),), *,
                 image_size: int = 300, keep_difficult: bool = False, classes: Sequence[str] = VOC_CLASSES) -> None:
        class_index = {c: k + 1 for k, c in enumerate(classes)}
        records, self._objects = [], []
        for year, image_set in sets:
            base = voc_year_dir(root, year)
            if base is None:
                raise FileNotFoundError(f"no VOC{year}/Annotations folder under {root}")
            for vid in read_split_list(base / "ImageSets" / "Main" / f"{image_set}.txt"):
                ann = parse_voc_xml(base / "Annotations" / f"{vid}.xml", class_index)
                objs = [o for o in ann["objects"] if keep_difficult or not o[5]]
                boxes = np.asarray([o[1:5] for o in objs], dtype=np.float32).reshape(-1, 4)
                labels = np.asarray([o[0] for o in objs], dtype=np.int64)
                records.append((str(base / "JPEGImages" / f"{vid}.jpg"), len(records), ann["width"], ann["height"],
                                boxes, labels))
                self._objects.append(ann["objects"])
        super().__init__(records, image_size, ["__background__", *classes], list(range(len(classes) + 1)))

    def subset(self, indices: Sequence[int] | Any) -> VOCDetection:
        new = super().subset(indices)
        assert isinstance(new, VOCDetection)
        new._objects = [self._objects[int(i)] for i in indices]
        return new

    def coco_ground_truth(self) -> dict[str, Any]:
        """COCO ``instances`` dict of the split: every object in original pixels, difficult ones with
        ``iscrowd=1`` (ignored by COCOeval, as VOC's evaluation ignores them)."""
        anns = []
        for rec, objs in zip(self.records, self._objects):
            for label, x1, y1, x2, y2, difficult in objs:
                anns.append({"image_id": int(rec[1]), "category_id": int(label),
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": int(difficult)})
        return ground_truth(self._images_gt(), anns, self.classes, self.label_to_category)


class VOCSegmentation(FileSegmentationDataset):
    """VOC semantic segmentation: the ids of ``ImageSets/Segmentation/<image_set>.txt`` under
    ``VOC<year>`` (2012 is the benchmark: 1464 train, 1449 val), items resized to ``image_size``. 21 classes
    (background first, the devkit's order), 255 ignored. A listed id without its JPEG or PNG is an error
    naming the missing file."""

    def __init__(self, root: str | Path, image_set: str = "val", *, year: str | int = 2012, image_size: int = 520,
                 classes: Sequence[str] = VOC_CLASSES) -> None:
        base = voc_year_dir(root, year, "SegmentationClass")
        if base is None:
            raise FileNotFoundError(f"no VOC{year}/SegmentationClass folder under {root}")
        listing = base / "ImageSets" / "Segmentation" / f"{image_set}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"{listing}: no such split list")
        records = []
        for vid in read_split_list(listing):
            image, mask = base / "JPEGImages" / f"{vid}.jpg", base / "SegmentationClass" / f"{vid}.png"
            for path in (image, mask):
                if not path.is_file():
                    raise AnnotationError(f"{listing}: {vid} has no {path}")
            records.append((str(image), str(mask)))
        self.year, self.image_set = str(year), image_set
        super().__init__(records, image_size, ["__background__", *classes])
