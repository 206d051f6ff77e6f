"""Segmentation data: the VOC, COCO-mask and folder-pair readers on tiny trees in the official formats
(and their one-line errors naming the file), the digit scenes' masks, the loaders (determinism, DDP
evaluation shards) and the mask-aware batched augmentation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mobilenets.config import ConfigError
from mobilenets.config.schema import AugConfig
from mobilenets.data import (
    DATASET_INFO,
    AnnotationError,
    CocoSegmentation,
    DataRootError,
    MaskAugment,
    TensorSegmentationDataset,
    VOCSegmentation,
    build_datasets,
    make_segmentation_batches,
)
from mobilenets.data.coco import COCO_TO_VOC
from mobilenets.data.segmentation import FileSegmentationDataset, load_mask, segmentation_order
from mobilenets.data.voc import VOC_CLASSES

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


def _palette() -> list[int]:
    """VOC's colour map (the bit-interleaved one of the devkit), 256 RGB entries."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _save_palette(mask: np.ndarray, path: Path) -> None:
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(_palette())
    img.save(path)


def _image_for(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """A dark noisy RGB image, bright where the mask has a class (the 'ink' a test can follow)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 30, (*mask.shape, 3)).astype(np.uint8)
    img[(mask > 0) & (mask != 255)] = 220
    return img


def _rect_mask(h: int, w: int, rects: list[tuple[int, int, int, int, int]], border: bool = True) -> np.ndarray:
    """``rects`` of ``(x0, y0, x1, y1, class)``; with ``border`` a 1-px 255 outline, as VOC draws."""
    m = np.zeros((h, w), dtype=np.uint8)
    for x0, y0, x1, y1, k in rects:
        if border:
            m[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = 255
        m[y0:y1, x0:x1] = k
    return m


# --------------------------------------------------------------------------------------------------
# Pascal VOC
# --------------------------------------------------------------------------------------------------

#: (id, width, height, rectangles) of the tiny VOC tree; classes 15 = person, 12 = dog, 1 = aeroplane
VOC_ITEMS = {
    "train": [("2008_000001", 40, 30, [(8, 6, 24, 20, 15)]), ("2008_000002", 36, 36, [(4, 4, 14, 30, 12), (20, 10, 32, 20, 1)])],
    "val": [("2008_000003", 32, 32, [(10, 10, 22, 22, 15)])],
}


def make_voc_seg_tree(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "Annotations"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for split, items in VOC_ITEMS.items():
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{v}\n" for v, *_ in items))
        for k, (vid, w, h, rects) in enumerate(items):
            mask = _rect_mask(h, w, rects)
            _save_palette(mask, base / "SegmentationClass" / f"{vid}.png")
            Image.fromarray(_image_for(mask, k)).save(base / "JPEGImages" / f"{vid}.jpg", quality=95)
    return root


def test_voc_segmentation_reads_palette_indices_and_ignore_borders(tmp_path: Path):
    root = make_voc_seg_tree(tmp_path / "voc")
    raw = load_mask(root / "VOCdevkit/VOC2012/SegmentationClass/2008_000001.png")
    with Image.open(root / "VOCdevkit/VOC2012/SegmentationClass/2008_000001.png") as im:
        assert im.mode == "P" and im.getpalette()[15 * 3 : 15 * 3 + 3] == [192, 128, 128]  # person's colour
    assert raw.dtype == np.uint8 and set(np.unique(raw).tolist()) == {0, 15, 255}  # indices, not colours
    ds = VOCSegmentation(root, "train", image_size=40)
    assert len(ds) == 2 and ds.num_classes == 21 and ds.classes == ["__background__", *VOC_CLASSES]
    assert ds.ignore_index == 255 and ds.num_channels == 3 and ds.image_size == 40
    img, mask = ds[0]  # 40x30 -> 40x40: x unchanged, y stretched by 4/3
    assert img.shape == (3, 40, 40) and img.dtype == torch.uint8 and mask.shape == (40, 40) and mask.dtype == torch.uint8
    assert mask[18, 16] == 15 and mask[2, 2] == 0 and mask[36, 38] == 0
    assert (mask == 255).any() and set(mask.unique().tolist()) == {0, 15, 255}
    assert img[:, mask == 15].float().mean() > 180 and img[:, mask == 0].float().mean() < 60  # ink under the mask
    _, m1 = ds[1]
    assert set(m1.unique().tolist()) == {0, 1, 12, 255}
    sub = ds.subset([1])
    assert len(sub) == 1 and torch.equal(sub[0][1], m1)


def test_voc_segmentation_errors_name_the_file(tmp_path: Path):
    root = make_voc_seg_tree(tmp_path / "voc")
    seg = root / "VOCdevkit/VOC2012/SegmentationClass"
    _save_palette(np.zeros((20, 20), dtype=np.uint8), seg / "2008_000003.png")  # its image is 32x32
    ds = VOCSegmentation(root, "val", image_size=16)
    with pytest.raises(AnnotationError) as exc:
        ds[0]
    _one_line(exc, "2008_000003.png", "20x20", "32x32")
    bad = _rect_mask(32, 32, [(10, 10, 22, 22, 15)])
    bad[0, 0] = 30  # a palette index beyond VOC's 21 classes that is not 255
    _save_palette(bad, seg / "2008_000003.png")
    with pytest.raises(AnnotationError) as exc:
        ds.verify()
    _one_line(exc, "2008_000003.png", "30", "21 classes")
    (seg / "2008_000001.png").unlink()
    with pytest.raises(AnnotationError) as exc:
        VOCSegmentation(root, "train", image_size=16)
    _one_line(exc, "2008_000001.png", "train.txt")


def test_voc_registry_segment_splits_test_is_val(tmp_path: Path):
    root = make_voc_seg_tree(tmp_path / "voc")
    splits = build_datasets("voc", root, 24, task="segment")
    assert [len(splits[s]) for s in ("train", "val")] == [2, 1] and splits["test"] is splits["val"]
    assert isinstance(splits["train"], VOCSegmentation) and splits["train"].image_size == 24
    assert DATASET_INFO["voc"].tasks == ("detect", "segment") and DATASET_INFO["voc"].task == "detect"
    (root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DataRootError) as exc:
        build_datasets("voc", root, 24, task="segment")
    _one_line(exc, "ImageSets/Segmentation/val.txt")
    with pytest.raises(ValueError, match="no 'segment' splits"):
        build_datasets("digits", None, 8, task="segment")


# --------------------------------------------------------------------------------------------------
# COCO masks
# --------------------------------------------------------------------------------------------------


def _rect_poly(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def make_coco_seg_tree(root: Path) -> Path:
    """One 32x32 image with: a cat polygon (COCO 17), a crowd person as uncompressed RLE (COCO 1), a
    dog as compressed RLE (COCO 18) overlapping the cat, and a toothbrush (COCO 90, not a VOC class);
    a second image without annotations."""
    from pycocotools import mask as mask_utils

    h = w = 32
    dog = np.zeros((h, w), dtype=np.uint8, order="F")
    dog[4:12, 18:28] = 1
    dog_rle = mask_utils.encode(np.asfortranarray(dog))
    dog_rle["counts"] = dog_rle["counts"].decode("ascii")
    crowd = np.zeros((h, w), dtype=np.uint8)
    crowd[24:30, 2:14] = 1
    flat = crowd.flatten(order="F")  # uncompressed RLE: run lengths of 0s and 1s, column-major
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    cats = [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 17, "iscrowd": 0, "segmentation": [_rect_poly(4, 4, 20, 20)],
         "bbox": [4, 4, 16, 16], "area": 256},
        {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": {"counts": runs, "size": [h, w]},
         "bbox": [2, 24, 12, 6], "area": 72},
        {"id": 3, "image_id": 1, "category_id": 18, "iscrowd": 0, "segmentation": dog_rle, "bbox": [18, 4, 10, 8], "area": 80},
        {"id": 4, "image_id": 1, "category_id": 90, "iscrowd": 0, "segmentation": [_rect_poly(24, 22, 30, 30)],
         "bbox": [24, 22, 6, 8], "area": 48},
    ]
    data = {"images": [{"id": 1, "width": w, "height": h, "file_name": "a.jpg"},
                       {"id": 2, "width": 20, "height": 16, "file_name": "b.png"}],
            "annotations": anns, "categories": cats}
    for split in ("train", "val"):
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(root / f"{split}2017" / "a.jpg")
        Image.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(root / f"{split}2017" / "b.png")
    return root


def test_coco_masks_polygon_rle_crowd_and_voc_mapping(tmp_path: Path):
    root = make_coco_seg_tree(tmp_path / "coco")
    ds = CocoSegmentation(root, "train", image_size=32)  # coco_classes="voc"
    cat, dog, person = (COCO_TO_VOC.index(c) for c in (17, 18, 1))
    assert (VOC_CLASSES[cat - 1], VOC_CLASSES[dog - 1], VOC_CLASSES[person - 1]) == ("cat", "dog", "person")
    assert ds.num_classes == 21 and len(ds) == 2
    img, mask = ds[0]
    assert img.shape == (3, 32, 32) and mask.dtype == torch.uint8
    assert mask[10, 8] == cat  # polygon interior
    assert mask[6, 24] == dog  # compressed RLE
    assert (mask[4:12, 18:20] == 255).all()  # cat and dog overlap: ignored (torchvision's rule)
    assert (mask[25:29, 3:13] == 255).all()  # crowd region: ignored
    assert mask[26, 27] == 0  # toothbrush is no VOC class: background
    assert mask[30, 20] == 0 and mask[1, 1] == 0
    _, empty = ds[1]
    assert empty.shape == (32, 32) and (empty == 0).all()
    assert len(CocoSegmentation(root, "train", image_size=32, remove_empty=True)) == 1
    labelled = CocoSegmentation(root, "train", image_size=32, crowd="label")[0][1]
    assert (labelled[25:29, 3:13] == person).all()
    full = CocoSegmentation(root, "train", image_size=32, coco_classes="all")
    assert full.classes == ["__background__", "person", "cat", "dog", "toothbrush"]
    assert full[0][1][26, 27] == 4 and full[0][1][10, 8] == 2
    with pytest.raises(ValueError, match="coco_classes='vocc' invalid"):
        CocoSegmentation(root, "train", coco_classes="vocc")


def test_coco_segmentation_errors_and_registry(tmp_path: Path):
    root = make_coco_seg_tree(tmp_path / "coco")
    splits = build_datasets("coco", root, 16, task="segment", val_size=1)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [1, 1, 2]
    assert all(isinstance(d, CocoSegmentation) and d.num_classes == 21 for d in splits.values())
    path = root / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][2]["segmentation"]["size"] = [16, 16]
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as exc:
        CocoSegmentation(root, "val")
    _one_line(exc, "instances_val2017.json", "annotations[2] (id 3)", "RLE size")
    data["annotations"][2]["segmentation"] = [[1, 2, 3]]
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as exc:
        CocoSegmentation(root, "val")
    _one_line(exc, "instances_val2017.json", "(id 3)", "polygon")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "train2017" / "b.png")  # annotated as 20x16
    ds = CocoSegmentation(root, "train")
    with pytest.raises(AnnotationError) as exc:
        ds[1]
    _one_line(exc, "instances_train2017.json", "b.png", "10x10")


# --------------------------------------------------------------------------------------------------
# mask_folder
# --------------------------------------------------------------------------------------------------


def make_mask_folder(root: Path, classes: list[str] | None = None) -> Path:
    """train: a.png (grey 'L' mask) and b.jpg (palette mask), val: c.png; classes up to 3."""
    items = {"train": [("a", ".png", 24, 20, [(2, 2, 10, 10, 1), (12, 4, 20, 16, 2)], "L"),
                       ("b", ".jpg", 16, 16, [(4, 4, 12, 12, 3)], "P")],
             "val": [("c", ".png", 20, 20, [(5, 5, 15, 15, 2)], "L")]}
    for split, entries in items.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for k, (name, ext, w, h, rects, mode) in enumerate(entries):
            mask = _rect_mask(h, w, rects, border=False)
            Image.fromarray(_image_for(mask, k)).save(root / split / "images" / f"{name}{ext}")
            if mode == "P":
                _save_palette(mask, root / split / "masks" / f"{name}.png")
            else:
                Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{name}.png")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_mask_folder_pairs_classes_and_cache(tmp_path: Path):
    root = make_mask_folder(tmp_path / "f")
    splits = build_datasets("mask_folder", root, 16)
    train = splits["train"]
    assert isinstance(train, FileSegmentationDataset) and splits["test"] is splits["val"]
    assert train.classes == ["0", "1", "2", "3"] and train.num_classes == 4 and len(train) == 2
    img, mask = train[0]
    assert img.shape == (3, 16, 16) and set(mask.unique().tolist()) == {0, 1, 2}
    _, m_b = train[1]  # the palette mask of the jpg
    assert set(m_b.unique().tolist()) == {0, 3}
    named = make_mask_folder(tmp_path / "g", ["background", "road", "car", "tree", "sky"])
    got = build_datasets("mask_folder", named, 16, cache=True)
    assert isinstance(got["train"], TensorSegmentationDataset) and got["train"].classes[1] == "road"
    assert got["train"].num_classes == 5 and torch.equal(got["train"].masks[0], mask)
    images, masks = got["val"].batch(torch.tensor([0]))
    assert images.shape == (1, 3, 16, 16) and masks.shape == (1, 16, 16)
    assert DATASET_INFO["mask_folder"].tasks == ("segment",) and DATASET_INFO["mask_folder"].task == "segment"


def test_mask_folder_errors_name_the_file(tmp_path: Path):
    with pytest.raises(DataRootError) as exc:
        build_datasets("mask_folder", tmp_path / "none", 16)
    _one_line(exc, "does not exist")
    root = make_mask_folder(tmp_path / "f")
    (root / "train" / "masks" / "b.png").unlink()
    with pytest.raises(AnnotationError) as exc:
        build_datasets("mask_folder", root, 16)
    _one_line(exc, "b.jpg", "no mask", "b.png")
    root = make_mask_folder(tmp_path / "g")
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(root / "val" / "masks" / "c.png")
    with pytest.raises(AnnotationError) as exc:  # found while scanning for the class count
        build_datasets("mask_folder", root, 16)
    _one_line(exc, "c.png", "8x8", "20x20")
    root = make_mask_folder(tmp_path / "h", ["bg", "x", "y"])  # 3 classes, but b's mask holds class 3
    ds = build_datasets("mask_folder", root, 16)["train"]
    with pytest.raises(AnnotationError) as exc:
        ds[1]
    _one_line(exc, "b.png", "value(s) 3", "3 classes")
    with pytest.raises(AnnotationError) as exc:
        build_datasets("mask_folder", root, 16, verify_images=True)
    _one_line(exc, "b.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "train" / "masks" / "b.png")
    with pytest.raises(AnnotationError) as exc:
        load_mask(root / "train" / "masks" / "b.png")
    _one_line(exc, "b.png", "'RGB'", "class indices")


# --------------------------------------------------------------------------------------------------
# digit scenes
# --------------------------------------------------------------------------------------------------


def test_digit_scenes_serve_segmentation():
    splits = build_datasets("digit_scenes", None, 64, task="segment", scene_sizes=(16, 8, 8), scene_masks=False)
    train, val = splits["train"], splits["val"]
    assert train.num_classes == 11 and train.ignore_index == 255 and train.num_channels == 1 and train.image_size == 64
    img, mask = val[0]
    assert img.shape == (1, 64, 64) and mask.shape == (64, 64) and mask.dtype == torch.uint8
    assert int(mask.max()) <= 10 and (mask > 0).any()
    assert (img[0][mask > 0] >= 64).all() and (img[0][mask == 0] < 64).float().mean() > 0.99  # masks are the ink
    loader, steps = make_segmentation_batches(train, 8, shuffle=True, seed=0, device="cpu")
    loader.set_epoch(0)
    first = [m.clone() for _, m in loader]
    loader.set_epoch(1)
    second = [m for _, m in loader]
    assert steps == 2 and first[0].dtype == torch.int64 and first[0].shape == (8, 64, 64)
    assert not torch.equal(torch.cat(first), torch.cat(second))  # fresh training scenes per epoch
    sub = val.subset([2, 3])
    assert len(sub) == 2 and torch.equal(sub[0][1], val[2][1])
    detect = build_datasets("digit_scenes", None, 64, scene_sizes=(16, 8, 8), scene_masks=False)["val"]
    with pytest.raises(ValueError, match="masks=False"):
        detect.segmentation_batch(torch.tensor([0]))


# --------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------


def _tensor_split(n: int = 10, s: int = 8) -> TensorSegmentationDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # each image names itself
    masks = torch.randint(0, 4, (n, s, s), generator=g).to(torch.uint8)
    return TensorSegmentationDataset(images, masks, ["a", "b", "c", "d"])


def test_loader_deterministic_and_epochs_differ():
    ds = _tensor_split()
    runs = []
    for _ in range(2):
        loader, steps = make_segmentation_batches(ds, 4, shuffle=True, seed=3, device="cpu")
        loader.set_epoch(5)
        runs.append([x[:, 0, 0, 0].tolist() for x, _ in loader])
    assert runs[0] == runs[1] and steps == 3 and sorted(i for run in runs[0] for i in run) == list(range(10))
    loader.set_epoch(6)
    assert [x[:, 0, 0, 0].tolist() for x, _ in loader] != runs[0]
    x, m = next(iter(loader))
    assert x.dtype == torch.uint8 and m.dtype == torch.int64
    ids = x[:, 0, 0, 0].long()
    assert torch.equal(m, ds.masks[ids].long())  # images and masks stay paired
    dropped, n = make_segmentation_batches(ds, 4, shuffle=True, seed=3, device="cpu", drop_last=True)
    assert n == 2 and len(list(dropped)) == 2
    with pytest.raises(ConfigError):
        make_segmentation_batches(ds, 11, shuffle=True, seed=0, device="cpu", drop_last=True)


def test_eval_shards_cover_the_split_once_and_training_shards_pad():
    ds = _tensor_split(10)
    seen = []
    for rank in range(3):
        loader, steps = make_segmentation_batches(ds, 2, shuffle=False, seed=0, device="cpu", rank=rank, world_size=3)
        ids = [i for x, _ in loader for i in x[:, 0, 0, 0].tolist()]
        assert steps == len(list(loader)) == -(-len(ids) // 2)
        seen += ids
    assert sorted(seen) == list(range(10))  # every image on exactly one rank, no padding repeats
    from mobilenets.engine.seg_metrics import confusion_matrix

    def cm(rank: int, world: int):  # a fixed "prediction": the mask shifted by one class
        loader, _ = make_segmentation_batches(ds, 3, shuffle=False, seed=0, device="cpu", rank=rank, world_size=world)
        return sum(confusion_matrix((m + 1) % 4, m, 4, 255) for _, m in loader)

    assert torch.equal(sum(cm(r, 3) for r in range(3)), cm(0, 1))  # summed over ranks = one process
    lengths = [len(segmentation_order(10, shuffle=True, seed=0, epoch=0, rank=r, world_size=3)) for r in range(3)]
    assert lengths == [4, 4, 4]  # training shards in lock-step
    train = torch.cat([segmentation_order(10, shuffle=True, seed=0, epoch=0, rank=r, world_size=3) for r in range(3)])
    assert set(train.tolist()) == set(range(10))


def test_file_loader_matches_the_cached_fast_path(tmp_path: Path):
    root = make_mask_folder(tmp_path / "f")
    files = build_datasets("mask_folder", root, 16)["train"]
    cached = files.cache()
    for workers in (0, 1):
        a, _ = make_segmentation_batches(files, 1, shuffle=True, seed=7, device="cpu", num_workers=workers)
        b, _ = make_segmentation_batches(cached, 1, shuffle=True, seed=7, device="cpu")
        for (xa, ma), (xb, mb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ma, mb) and ma.dtype == torch.int64
    shards = [make_segmentation_batches(files, 1, shuffle=False, seed=0, device="cpu", rank=r, world_size=2)[0]
              for r in range(2)]
    masks = [m for loader in shards for _, m in loader]
    assert len(masks) == 2 and not torch.equal(masks[0], masks[1])


# --------------------------------------------------------------------------------------------------
# MaskAugment
# --------------------------------------------------------------------------------------------------


def _blocky(n: int = 4, s: int = 32, seed: int = 0, block: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of ``block``-px squares of classes 0..4 and images whose intensity is 50 * class."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 5, (n, s // block, s // block), generator=g)
    masks = blocks.repeat_interleave(block, 1).repeat_interleave(block, 2).to(torch.uint8)
    images = (masks.long() * 50).to(torch.uint8)[:, None].repeat(1, 3, 1, 1)
    return images, masks


def test_mask_augment_shapes_dtypes_and_ignore_padding():
    images, masks = _blocky()
    aug = MaskAugment(24, scale=(0.5, 2.0), hflip=0.5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                      generator=torch.Generator().manual_seed(0))
    x, m = aug(images, masks)
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.float32 and m.shape == (4, 24, 24) and m.dtype == torch.int64
    small = MaskAugment(24, scale=(0.25, 0.25), mean=0.5, std=0.25, generator=torch.Generator().manual_seed(0))
    x, m = small(images, masks)  # an 8-px image inside a 24-px crop: the rest is padding
    pad = m == 255
    assert pad.float().mean().item() == pytest.approx(1 - 64 / 576, abs=0.02)
    # image padding 0, normalised: (0 - 0.5) / 0.25 (pixels on the image's edge blend with it)
    assert (x[:, 0][pad] == -2.0).float().mean() > 0.9 and (x[:, 0][pad] <= x[:, 0][~pad].max()).all()
    assert set(m[~pad].unique().tolist()) <= set(range(5))


def test_mask_augment_flip_and_scale_keep_mask_on_the_ink():
    images, masks = _blocky()
    flip = MaskAugment(32, hflip=1.0, generator=torch.Generator().manual_seed(0))
    x, m = flip(images, masks)
    assert torch.equal(m, masks.flip(-1).long())
    assert torch.allclose(x * 255, images.flip(-1).float(), atol=1e-3)
    images, masks = _blocky(8, 32, block=8)
    ink = masks > 0
    images = torch.where(ink, 200, 20).to(torch.uint8)[:, None].expand(-1, 3, -1, -1)
    aug = MaskAugment(24, scale=(0.7, 1.6), hflip=0.5, generator=torch.Generator().manual_seed(1))
    x, m = aug(images, masks)
    keep = m != 255
    assert keep.float().mean() > 0.5
    # the mask still marks the image's ink; pixels on block edges blend (a shift or a flip of one
    # against the other would disagree on an eighth to a half of the pixels)
    assert ((x[:, 0] * 255 > 110)[keep] == (m > 0)[keep]).float().mean() > 0.97
    x2, m2 = MaskAugment(24, scale=(0.7, 1.6), hflip=0.5, generator=torch.Generator().manual_seed(1))(images, masks)
    assert torch.equal(m, m2) and torch.equal(x, x2)  # deterministic in the generator
    _, m3 = MaskAugment(24, scale=(0.7, 1.6), hflip=0.5, generator=torch.Generator().manual_seed(2))(images, masks)
    assert not torch.equal(m, m3)


def test_mask_augment_eval_is_normalisation_only():
    images, masks = _blocky(2, 16)
    aug = MaskAugment(16, scale=(0.5, 2.0), hflip=1.0, mean=0.2, std=0.5).eval()
    x, m = aug(images, masks)
    assert torch.allclose(x * 0.5 + 0.2, images.float() / 255, atol=1e-6) and torch.equal(m, masks.long())
    x, m = MaskAugment(8, mean=0.0, std=1.0).eval()(images, masks)
    assert x.shape == (2, 3, 8, 8) and set(m.unique().tolist()) <= set(masks.unique().tolist())


def test_mask_augment_from_config_and_validation():
    aug = MaskAugment.from_config(AugConfig(seg_scale=(0.5, 2.0)), size=32, mean=0.1, std=0.3)
    assert aug.scale == (0.5, 2.0) and aug.hflip == 0.0  # hflip None: off
    aug = MaskAugment.from_config(SimpleNamespace(hflip=0.5), size=32, mean=0.1, std=0.3)
    assert aug.scale == (1.0, 1.0) and aug.hflip == 0.5
    AugConfig(seg_scale=(0.5, 2.0)).validate()
    with pytest.raises(ConfigError, match="seg_scale"):
        AugConfig(seg_scale=(0.0, 1.0)).validate()
    with pytest.raises(ConfigError, match="seg_scale"):
        AugConfig(seg_scale=(2.0, 1.0)).validate()
    with pytest.raises(ValueError, match="scale="):
        MaskAugment(8, scale=(1.5, 1.0))
    with pytest.raises(ValueError, match="masks must be"):
        MaskAugment(8)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, 4, 4, dtype=torch.uint8))
