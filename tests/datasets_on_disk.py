"""Datasets written to disk in their official formats, for tests (nothing is downloaded).

* CIFAR-10/100: the python pickle archives (``cifar-10-python.tar.gz`` or its extracted folder), with
  random pixels and labels.
* An ImageFolder of photo-sized JPEGs that a small network can learn from 30 images per class.
"""

from __future__ import annotations

import io
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
