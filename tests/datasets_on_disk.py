"""Datasets written to disk in their official formats, for tests (nothing is downloaded).

* CIFAR-10/100: the python pickle archives (``cifar-10-python.tar.gz`` or its extracted folder), with
  random pixels and labels.
* An ImageFolder of photo-sized JPEGs that a small network can learn from 30 images per class.
* Detection: a COCO tree (``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/`` images)
  and a Pascal VOC tree (``VOC2007/{Annotations,JPEGImages,ImageSets/Main}``), tiny images with one
  bright rectangle per object so a test can see where a box's pixels went.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SPEC = {
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        b"labels",
        b"label_names",
        10,
    ),
    "cifar100": (
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        ["train"],
        ["test"],
        "meta",
        b"fine_labels",
        b"fine_label_names",
        100,
    ),
}
PER_FILE = 40  # images per fake batch file


def fake_batch(seed: int, n: int, num_classes: int, label_key: bytes) -> bytes:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[:, 0] = seed  # marks the file in the first red pixel
    labels = [int(v) for v in np.arange(n) % num_classes]
    d = {b"batch_label": b"fake", label_key: labels, b"data": data, b"filenames": [b"x.png"] * n}
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [lab // 5 for lab in labels]
    return pickle.dumps(d, protocol=2)


def fake_members(name: str) -> dict[str, bytes]:
    folder, _, train, test, meta, label_key, names_key, k = SPEC[name]
    members = {}
    for i, m in enumerate(train + test):
        n = PER_FILE if name == "cifar10" else PER_FILE * (5 if m == "train" else 1) * 3
        members[f"{folder}/{m}"] = fake_batch(i + 1, n, k, label_key)
    meta_d = {names_key: [f"class{i}".encode() for i in range(k)], b"num_cases_per_batch": PER_FILE}
    members[f"{folder}/{meta}"] = pickle.dumps(meta_d, protocol=2)
    return members


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for mname, data in members.items():
            info = tarfile.TarInfo(mname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_dir(root: Path, members: dict[str, bytes]) -> None:
    for mname, data in members.items():
        p = root / mname
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def make_texture_folder(root: Path, per_class: tuple[int, int] = (30, 20), seed: int = 1) -> Path:
    """An ImageFolder (``train/<class>/*.jpg``, ``val/<class>/*.jpg``, no ``test/``) of photo-sized JPEGs:
    horizontal stripes, vertical stripes or a checkerboard, in random colours, periods and phases, with noise."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val"), per_class):
        for cls in ("horizontal", "vertical", "checker"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(96, 161, 2))
                half = int(rng.integers(8, 14)) // 2
                yy, xx = np.mgrid[0:h, 0:w]
                dy, dx = rng.integers(0, 2 * half, 2)
                rows, cols = ((yy + dy) // half) % 2, ((xx + dx) // half) % 2
                mask = rows if cls == "horizontal" else cols if cls == "vertical" else rows ^ cols
                c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
                img = np.where(mask[..., None] == 1, c1, c2) + rng.normal(0, 10, (h, w, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg", quality=90)
    return root


# --------------------------------------------------------------------------------------------------
# detection trees
# --------------------------------------------------------------------------------------------------

#: COCO categories with gaps in the ids, as the real file has (ids 1..90 for 80 classes).
COCO_CATEGORIES = [{"id": 1, "name": "cat", "supercategory": "animal"},
                   {"id": 3, "name": "dog", "supercategory": "animal"},
                   {"id": 7, "name": "bird", "supercategory": "animal"}]


def draw_boxes(width: int, height: int, boxes: list[tuple[float, float, float, float]], seed: int = 0) -> np.ndarray:
    """A dark noisy RGB image with a bright rectangle filling each xyxy box (pixel edges)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (height, width, 3)).astype(np.uint8)
    for x1, y1, x2, y2 in boxes:
        img[round(y1) : round(y2), round(x1) : round(x2)] = 230
    return img


def coco_split(split: str, first_id: int) -> dict:
    """A COCO ``instances`` dict for a tiny split: 3 images (one without objects), a crowd box and a
    category-id gap. Image sizes differ (non-square) so resizing scales x and y differently."""
    sizes = [(40, 30), (48, 36), (32, 32)]
    images = [{"id": first_id + k, "width": w, "height": h, "file_name": f"{split}_{k:03d}.{'png' if k == 1 else 'jpg'}",
               "license": 1} for k, (w, h) in enumerate(sizes)]
    anns = [
        {"id": first_id * 10 + 1, "image_id": first_id, "category_id": 1, "bbox": [4, 6, 12, 10], "area": 120, "iscrowd": 0},
        {"id": first_id * 10 + 2, "image_id": first_id, "category_id": 7, "bbox": [20, 2, 16, 20], "area": 320, "iscrowd": 0},
        {"id": first_id * 10 + 3, "image_id": first_id + 1, "category_id": 3, "bbox": [10, 8, 24, 20], "area": 480, "iscrowd": 0},
        {"id": first_id * 10 + 4, "image_id": first_id + 1, "category_id": 1, "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 1,
         "segmentation": {"counts": [0, 64], "size": [36, 48]}},
    ]
    return {"info": {"description": "tiny"}, "licenses": [], "images": images, "annotations": anns,
            "categories": COCO_CATEGORIES}


def write_coco_split(root: Path, split: str, data: dict, year: int = 2017) -> Path:
    """Write ``data`` as ``annotations/instances_{split}{year}.json`` and draw its images."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    folder = root / f"{split}{year}"
    folder.mkdir(parents=True, exist_ok=True)
    for k, im in enumerate(data["images"]):
        boxes = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
                 for a in data["annotations"] if a["image_id"] == im["id"] and not a.get("iscrowd")]
        Image.fromarray(draw_boxes(im["width"], im["height"], boxes, k)).save(folder / im["file_name"], quality=95)
    path = root / "annotations" / f"instances_{split}{year}.json"
    path.write_text(json.dumps(data))
    return path


def make_coco_tree(root: Path) -> Path:
    """A COCO root with train2017 (ids 1..3) and val2017 (ids 101..103)."""
    write_coco_split(root, "train", coco_split("train", 1))
    write_coco_split(root, "val", coco_split("val", 101))
    return root


def voc_xml(filename: str, width: int, height: int, objects: list[tuple]) -> str:
    """A VOC annotation; ``objects`` are ``(name, xmin, ymin, xmax, ymax, difficult)`` (1-based, inclusive)."""
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2, d in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{filename}</filename><source><database>tiny"
            f"</database></source><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{objs}</annotation>")


VOC_IMAGES = {
    "000001": (40, 30, [("dog", 5, 7, 16, 16, 0), ("person", 21, 3, 36, 22, 0)]),
    "000002": (48, 36, [("cat", 11, 9, 34, 28, 0), ("car", 1, 1, 8, 8, 1)]),
    "000003": (32, 32, [("bird", 3, 3, 20, 12, 0)]),
    "000004": (36, 28, [("tvmonitor", 2, 2, 30, 26, 0)]),
}


def make_voc_tree(root: Path, year: str = "2007", splits: dict[str, list[str]] | None = None) -> Path:
    """``root/VOC<year>/`` with the annotations, JPEGs and the ImageSets/Main lists."""
    splits = splits or {"train": ["000001", "000002"], "val": ["000003"], "test": ["000004"]}
    splits = {**splits, "trainval": splits["train"] + splits["val"]}
    base = root / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for k, (vid, (w, h, objs)) in enumerate(VOC_IMAGES.items()):
        (base / "Annotations" / f"{vid}.xml").write_text(voc_xml(f"{vid}.jpg", w, h, objs))
        boxes = [(x1 - 1, y1 - 1, x2, y2) for _, x1, y1, x2, y2, _ in objs]
        Image.fromarray(draw_boxes(w, h, boxes, k)).save(base / "JPEGImages" / f"{vid}.jpg", quality=95)
    for name, ids in splits.items():
        (base / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root
