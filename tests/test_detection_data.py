"""Detection data: the COCO and VOC readers on tiny trees in the official formats (and their one-line
errors), the composed digit scenes, the batch format and loaders, and the box-aware augmentation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from datasets_on_disk import coco_split, make_coco_tree, make_voc_tree, voc_xml, write_coco_split
from mobilenets.data import (
    DATASET_INFO,
    AnnotationError,
    BoxAugment,
    CocoDetection,
    DataRootError,
    VOCDetection,
    build_datasets,
    collate_detection,
    load_scene_splits,
    make_detection_batches,
    targets_to,
    unpad_targets,
)
from mobilenets.data.folder import BadImageError
from mobilenets.data.scenes import SceneSpec, compose_scenes, digit_bank
from mobilenets.data.tensor import load_digits_splits
from mobilenets.data.voc import VOC_CLASSES

SMALL = (48, 24, 24)  # scenes per split in these tests


@pytest.fixture(scope="module")
def scenes() -> dict:
    return load_scene_splits(canvas=128, seed=0, sizes=SMALL)


def _one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


# --------------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------------


def test_coco_reader_items_labels_and_ground_truth(tmp_path: Path):
    root = make_coco_tree(tmp_path / "coco")
    ds = CocoDetection(root, "train", image_size=64)
    assert ds.classes == ["__background__", "cat", "dog", "bird"] and ds.label_to_category == [0, 1, 3, 7]
    assert len(ds) == 3 and ds.num_channels == 3 and ds.num_classes == 4
    img, t = ds[0]
    assert img.shape == (3, 64, 64) and img.dtype == torch.uint8
    sx, sy = 64 / 40, 64 / 30
    expected = torch.tensor([[4 * sx, 6 * sy, 16 * sx, 16 * sy], [20 * sx, 2 * sy, 36 * sx, 22 * sy]])
    assert torch.allclose(t["boxes"], expected) and t["labels"].tolist() == [1, 3]
    assert t["image_id"] == 1 and t["orig_size"] == (30, 40)
    for x1, y1, x2, y2 in t["boxes"].round().long().tolist():  # the drawn rectangle moved with its box
        assert img[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].float().mean() > 180
    _, t1 = ds[1]  # a png; its crowd box is no training target
    assert t1["labels"].tolist() == [2]
    _, t2 = ds[2]
    assert t2["boxes"].shape == (0, 4) and t2["labels"].shape == (0,)
    gt = ds.coco_ground_truth()
    assert [im["id"] for im in gt["images"]] == [1, 2, 3] and gt["images"][0]["width"] == 40
    assert [c["id"] for c in gt["categories"]] == [1, 3, 7]
    assert len(gt["annotations"]) == 4 and sum(a["iscrowd"] for a in gt["annotations"]) == 1
    assert gt["annotations"][0]["bbox"] == [4.0, 6.0, 12.0, 10.0] and gt["annotations"][0]["area"] == 120
    assert all("segmentation" not in a for a in gt["annotations"])
    assert len(CocoDetection(root, "train", image_size=64, remove_empty=True)) == 2
    raw = CocoDetection(root, "train", image_size=64, contiguous=False)  # torchvision's 91-class convention
    assert len(raw.classes) == 8 and raw.classes[2] == "N/A" and raw[0][1]["labels"].tolist() == [1, 7]
    sub = ds.subset([2, 0])
    assert [r[1] for r in sub.records] == [3, 1] and len(sub.coco_ground_truth()["annotations"]) == 2


def _mutated(root: Path, change) -> Path:
    path = write_coco_split(root, "train", coco_split("train", 1))  # the images, then the broken file
    data = coco_split("train", 1)
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change, parts",
    [
        (lambda d: d["annotations"][1].pop("bbox"), ["annotations[1] (id 12)", "missing key 'bbox'"]),
        (lambda d: d["annotations"][0].pop("category_id"), ["annotations[0] (id 11)", "missing key 'category_id'"]),
        (lambda d: d["images"][0].pop("width"), ["images[0] (id 1)", "missing key 'width'"]),
        (lambda d: d["annotations"][0].update(bbox=[30, 6, 20, 10]), ["annotations[0] (id 11)", "outside the 40x30 image 1"]),
        (lambda d: d["annotations"][2].update(bbox=[10, 8, -4, 20]), ["annotations[2] (id 13)", "negative size"]),
        (lambda d: d["annotations"][0].update(category_id=5), ["annotations[0] (id 11)", "unknown category_id 5"]),
        (lambda d: d["annotations"][0].update(image_id=99), ["annotations[0] (id 11)", "unknown image_id 99"]),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), ["annotations[0] (id 11)", "bbox [1, 2, 3] invalid"]),
    ],
)
def test_coco_malformed_annotation_names_file_and_entry(tmp_path: Path, change, parts):
    path = _mutated(tmp_path, change)
    with pytest.raises(AnnotationError) as exc:
        CocoDetection(tmp_path, "train")
    _one_line(exc, str(path), *parts)


def test_coco_bad_json_undecodable_image_and_size_mismatch(tmp_path: Path):
    root = make_coco_tree(tmp_path)
    (root / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(AnnotationError) as exc:
        CocoDetection(root, "val")
    _one_line(exc, "instances_val2017.json", "not valid JSON")
    bad = root / "train2017" / "train_000.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    ds = CocoDetection(root, "train", image_size=32)
    with pytest.raises(BadImageError) as exc:
        ds[0]
    _one_line(exc, str(bad))
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    data["images"][2]["width"] = 33
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as exc:
        CocoDetection(root, "train")[2]
    _one_line(exc, "train_002.jpg", "32x32", "33x32")


def test_coco_registry_splits_and_root_errors(tmp_path: Path):
    with pytest.raises(DataRootError, match=re.escape("coco needs data.root=DIR: a COCO directory holding annotations")):
        build_datasets("coco", None, 64)
    with pytest.raises(DataRootError, match="does not exist"):
        build_datasets("coco", tmp_path / "nowhere", 64)
    root = tmp_path / "coco"
    write_coco_split(root, "train", coco_split("train", 1))
    with pytest.raises(DataRootError, match=r"has no annotations/instances_val2017\.json"):
        build_datasets("coco", root, 64)
    write_coco_split(root, "val", coco_split("val", 101))
    splits = build_datasets("coco", root, 64, val_size=1)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [2, 1, 3]
    train_ids = {r[1] for r in splits["train"].records}
    assert train_ids.isdisjoint(r[1] for r in splits["val"].records)
    assert {r[1] for r in splits["test"].records} == {101, 102, 103}
    assert DATASET_INFO["coco"].task == "detect" and DATASET_INFO["coco"].num_classes == 81


# --------------------------------------------------------------------------------------------------
# VOC
# --------------------------------------------------------------------------------------------------


def test_voc_reader_items_difficult_and_ground_truth(tmp_path: Path):
    root = make_voc_tree(tmp_path)
    ds = VOCDetection(root, [("2007", "train")], image_size=50)
    assert len(ds) == 2 and ds.classes[0] == "__background__" and ds.classes[1:] == list(VOC_CLASSES)
    img, t = ds[0]
    assert img.shape == (3, 50, 50) and t["orig_size"] == (30, 40)
    sx, sy = 50 / 40, 50 / 30
    # 1-based inclusive (5, 7, 16, 16) covers 0-based pixels 4..15: xyxy (4, 6, 16, 16)
    assert torch.allclose(t["boxes"][0], torch.tensor([4 * sx, 6 * sy, 16 * sx, 16 * sy]))
    assert t["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("person") + 1]
    x1, y1, x2, y2 = t["boxes"][1].round().long().tolist()
    assert img[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].float().mean() > 180
    assert ds[1][1]["labels"].tolist() == [VOC_CLASSES.index("cat") + 1]  # the difficult car is left out
    assert len(VOCDetection(root, [("2007", "train")], keep_difficult=True)[1][1]["labels"]) == 2
    gt = ds.coco_ground_truth()
    assert len(gt["images"]) == 2 and len(gt["annotations"]) == 4 and len(gt["categories"]) == 20
    crowd = [a for a in gt["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and crowd[0]["category_id"] == VOC_CLASSES.index("car") + 1
    assert crowd[0]["bbox"] == [0.0, 0.0, 8.0, 8.0]
    assert ds.subset([1]).coco_ground_truth()["images"][0]["file_name"] == "000002.jpg"


def test_voc_registry_07_plus_12_and_root_errors(tmp_path: Path):
    with pytest.raises(DataRootError, match=re.escape("voc needs data.root=DIR")):
        build_datasets("voc", None, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataRootError, match="has no VOC2007/Annotations"):
        build_datasets("voc", tmp_path / "empty", 32)
    root = tmp_path / "VOCdevkit"
    make_voc_tree(root)  # under VOCdevkit/ as the tarball extracts
    make_voc_tree(root, "2012", {"train": ["000001", "000003"], "val": ["000002"], "test": []})
    splits = build_datasets("voc", tmp_path, 32)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [2 + 3, 1, 1]
    assert DATASET_INFO["voc"].task == "detect" and DATASET_INFO["voc"].num_classes == 21


@pytest.mark.parametrize(
    "objects, size, parts",
    [
        ([("dog", 5, 7, None, 16, 0)], (40, 30), ["object 0 (dog)", "missing <bndbox/xmax>"]),
        ([("dog", 5, 7, 16, 16, 0), ("cat", 20, 9, 12, 28, 0)], (40, 30), ["object 1 (cat)", "negative size"]),
        ([("dog", 5, 7, 80, 16, 0)], (40, 30), ["object 0 (dog)", "outside the 40x30 image"]),
        ([("dragon", 5, 7, 16, 16, 0)], (40, 30), ["object 0 (dragon)", "unknown class 'dragon'"]),
        ([("dog", 5, 7, 16, 16, 0)], (None, 30), ["missing <size/width>"]),
    ],
)
def test_voc_malformed_annotation_names_file_and_entry(tmp_path: Path, objects, size, parts):
    root = make_voc_tree(tmp_path)
    xml = voc_xml("000001.jpg", 40, 30, objects)
    xml = xml.replace("<xmax>None</xmax>", "").replace("<width>40</width>", "" if size[0] is None else "<width>40</width>")
    path = root / "VOC2007" / "Annotations" / "000001.xml"
    path.write_text(xml)
    with pytest.raises(AnnotationError) as exc:
        VOCDetection(root, [("2007", "train")])
    _one_line(exc, str(path), *parts)


def test_voc_undecodable_image_names_the_file(tmp_path: Path):
    root = make_voc_tree(tmp_path)
    bad = root / "VOC2007" / "JPEGImages" / "000003.jpg"
    bad.write_bytes(b"GIF89a broken")
    with pytest.raises(BadImageError) as exc:
        VOCDetection(root, [("2007", "val")])[0]
    _one_line(exc, str(bad))


# --------------------------------------------------------------------------------------------------
# digit scenes
# --------------------------------------------------------------------------------------------------


def test_scenes_are_deterministic_and_test_scenes_fixed(scenes):
    again = load_scene_splits(canvas=128, seed=0, sizes=SMALL)
    for split in ("train", "val", "test"):
        for key in ("images", "masks", "boxes", "labels", "source_rows"):
            assert torch.equal(getattr(scenes[split], key), getattr(again[split], key)), (split, key)
    other = load_scene_splits(canvas=128, seed=1, sizes=SMALL)
    assert torch.equal(other["test"].images, scenes["test"].images)  # the same test scenes in every run
    assert not torch.equal(other["val"].images, scenes["val"].images)
    assert not torch.equal(other["train"].images, scenes["train"].images)


def test_scene_digits_come_only_from_the_matching_split(scenes):
    digits = load_digits_splits(image_size=8, seed=0)
    used = {}
    for split in ("train", "val", "test"):
        rows = scenes[split].source_rows
        rows = rows[rows >= 0]
        assert set(rows.tolist()) <= set(digits[split].source_indices.tolist()), split
        used[split] = set(rows.tolist())
    assert used["train"].isdisjoint(used["val"]) and used["train"].isdisjoint(used["test"])
    assert used["val"].isdisjoint(used["test"])
    for split in ("train", "val", "test"):  # labels are the digits' own (+1)
        ds, src = scenes[split], digits[split]
        row_to_label = dict(zip(src.source_indices.tolist(), src.labels.tolist()))
        k = ds.source_rows >= 0
        assert [row_to_label[r] + 1 for r in ds.source_rows[k].tolist()] == ds.labels[k].tolist()


def test_scene_boxes_are_tight_on_the_ink_and_masks_agree():
    digits = load_digits_splits(image_size=8, seed=0)["val"]
    spec = SceneSpec(noise=0.0)
    out = compose_scenes(digits.images, digits.labels, 40, spec, seed=3)
    ink = out["images"][:, 0] >= spec.ink
    assert torch.equal(out["masks"] > 0, ink)  # with no noise the mask is exactly the ink
    for i in range(40):
        covered = torch.zeros_like(ink[i])
        for (x1, y1, x2, y2), lab in zip(out["boxes"][i].long().tolist(), out["labels"][i].tolist()):
            if lab < 0:
                continue
            region = ink[i, y1:y2, x1:x2]
            # tight: ink on every edge row and column of the box
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
            assert (out["masks"][i, y1:y2, x1:x2] == lab).any()
            covered[y1:y2, x1:x2] |= out["masks"][i, y1:y2, x1:x2] == lab
        assert torch.equal(covered, ink[i])  # every ink pixel lies in a box of its own label
    noisy = compose_scenes(digits.images, digits.labels, 40, SceneSpec(), seed=3)
    assert torch.equal(noisy["boxes"], out["boxes"]) and torch.equal(noisy["masks"], out["masks"])
    banked = compose_scenes(digits.images, digits.labels, 40, SceneSpec(), seed=3, bank=digit_bank(digits.images, SceneSpec()))
    assert all(torch.equal(banked[k], noisy[k]) for k in ("images", "masks", "boxes", "labels"))  # same scenes either way
    background = noisy["images"][:, 0][noisy["masks"] == 0].float()
    assert 0 < background.mean() < 12 and background.std() > 2  # a little noise


def test_scene_counts_and_sizes_in_range(scenes):
    spec = scenes["train"].spec
    for split in ("train", "val", "test"):
        ds = scenes[split]
        assert ds.images.shape == (SMALL[("train", "val", "test").index(split)], 1, 128, 128)
        assert ds.counts.min() >= 1 and ds.counts.max() <= 6
        real = ds.labels >= 0
        assert torch.equal(real.sum(1), ds.counts) and (real[:, :-1] >= real[:, 1:]).all()  # padding last
        b = ds.boxes[real]
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        assert (h >= spec.min_size).all() and (h <= spec.max_size).all() and (w >= 1).all() and (w <= spec.max_size).all()
        assert (b >= 0).all() and (b <= 128).all()
    assert set(torch.cat([scenes[s].counts for s in scenes]).tolist()) == set(range(1, 7))


def test_training_scenes_fresh_each_epoch_and_reproducible(scenes):
    train = scenes["train"]
    train.set_epoch(0)
    first = train.images.clone(), train.boxes.clone()
    train.set_epoch(1)
    assert not torch.equal(train.images, first[0])
    second = train.images.clone()
    train.set_epoch(0)
    assert torch.equal(train.images, first[0]) and torch.equal(train.boxes, first[1])
    resumed = load_scene_splits(canvas=128, seed=0, sizes=SMALL)["train"]
    resumed.set_epoch(1)  # a resumed run regenerates exactly the scenes of its epoch
    assert torch.equal(resumed.images, second)
    val = scenes["val"]
    before = val.images.clone()
    val.set_epoch(5)
    assert torch.equal(val.images, before)  # val and test are fixed
    train.set_epoch(0)


def test_scenes_ground_truth_and_registry(scenes):
    val = scenes["val"]
    gt = val.coco_ground_truth()
    assert len(gt["images"]) == len(val) and len(gt["annotations"]) == int(val.counts.sum())
    assert [c["name"] for c in gt["categories"]] == [str(i) for i in range(10)]
    a = gt["annotations"][0]
    x1, y1, x2, y2 = val.boxes[0, 0].tolist()
    assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1] and a["category_id"] == int(val.labels[0, 0])
    info = DATASET_INFO["digit_scenes"]
    assert info.task == "detect" and info.channels == 1 and info.num_classes == 11
    assert info.defaults.hflip == 0.0 and DATASET_INFO["digits"].task == "classify"
    built = build_datasets("digit_scenes", None, 64, scene_sizes=(8, 4, 4))
    assert built["train"].images.shape == (8, 1, 64, 64) and built["test"].classes[1] == "0"
    assert built["val"][0][0].shape == (1, 64, 64)


# --------------------------------------------------------------------------------------------------
# batches and loaders
# --------------------------------------------------------------------------------------------------


def test_collate_unpad_and_targets_to():
    items = [
        (torch.zeros(1, 8, 8, dtype=torch.uint8), {"boxes": torch.tensor([[0.0, 0, 2, 2], [1, 1, 3, 3]]),
                                                  "labels": torch.tensor([1, 2]), "image_id": 5, "orig_size": (8, 8)}),
        (torch.ones(1, 8, 8, dtype=torch.uint8), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                                                 "image_id": 6, "orig_size": (16, 12)}),
    ]
    images, t = collate_detection(items)
    assert images.shape == (2, 1, 8, 8) and images.dtype == torch.uint8
    assert t["boxes"].shape == (2, 2, 4) and t["labels"].tolist() == [[1, 2], [-1, -1]]
    assert t["image_id"].tolist() == [5, 6] and t["orig_size"].tolist() == [[8, 8], [16, 12]]
    per = unpad_targets(t)
    assert per[0]["boxes"].shape == (2, 4) and per[1]["boxes"].shape == (0, 4) and per[1]["labels"].numel() == 0
    empty = collate_detection(items[1:])[1]
    assert empty["boxes"].shape == (1, 1, 4) and empty["labels"].tolist() == [[-1]]  # M >= 1
    assert targets_to(t, "cpu")["boxes"].device.type == "cpu"
    with pytest.raises(ValueError, match="batch_size: got 9, larger than the 2-image"):
        make_detection_batches(items, 9, shuffle=False, seed=0, device="cpu", drop_last=True)
    with pytest.raises(ValueError, match="share a size"):
        collate_detection([items[0], (torch.zeros(1, 4, 4, dtype=torch.uint8), items[1][1])])


def test_scene_loader_batches_epochs_and_shards(scenes):
    train = scenes["train"]
    loader, steps = make_detection_batches(train, 16, shuffle=True, seed=0, device="cpu", drop_last=True)
    assert steps == 3 == len(loader)
    loader.set_epoch(0)
    batches = list(loader)
    images, t = batches[0]
    assert images.shape == (16, 1, 128, 128) and images.dtype == torch.uint8
    m = int(train.counts[t["image_id"]].max())
    assert t["boxes"].shape == (16, m, 4) and t["labels"].shape == (16, m) and t["orig_size"].tolist()[0] == [128, 128]
    i0 = int(t["image_id"][0])
    assert torch.equal(images[0], train.images[i0])
    seen = torch.cat([b[1]["image_id"] for b in batches])
    assert sorted(seen.tolist()) == list(range(48))
    loader.set_epoch(1)
    images1, _ = next(iter(loader))
    assert not torch.equal(images1, images)  # new order and new scenes
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], images)  # resume: the same epoch, the same batches
    shards = [make_detection_batches(scenes["val"], 5, shuffle=False, seed=0, device="cpu", rank=r, world_size=2)[0]
              for r in (0, 1)]
    ids = [torch.cat([b[1]["image_id"] for b in s]).tolist() for s in shards]
    assert len(ids[0]) == len(ids[1]) == 12 and sorted(ids[0] + ids[1]) == list(range(24))
    train.set_epoch(0)


def test_file_loader_pads_and_keeps_order(tmp_path: Path):
    ds = CocoDetection(make_coco_tree(tmp_path), "train", image_size=32)
    loader, steps = make_detection_batches(ds, 2, shuffle=False, seed=0, device="cpu")
    assert steps == 2
    (im0, t0), (_, t1) = list(loader)
    assert im0.shape == (2, 3, 32, 32) and t0["labels"].tolist() == [[1, 3], [2, -1]] and t0["image_id"].tolist() == [1, 2]
    assert t1["labels"].tolist() == [[-1]] and t1["orig_size"].tolist() == [[32, 32]]
    shuffled, _ = make_detection_batches(ds, 3, shuffle=True, seed=4, device="cpu")
    shuffled.set_epoch(2)
    a = next(iter(shuffled))[1]["image_id"]
    shuffled.set_epoch(2)
    assert torch.equal(next(iter(shuffled))[1]["image_id"], a)


# --------------------------------------------------------------------------------------------------
# BoxAugment
# --------------------------------------------------------------------------------------------------


def _square_batch(n: int = 8, size: int = 64) -> tuple[torch.Tensor, dict]:
    x = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    x[:, :, 12:36, 20:44] = 255
    t = {"boxes": torch.tensor([[[20.0, 12, 44, 36], [0, 0, 0, 0]]]).repeat(n, 1, 1),
         "labels": torch.tensor([[1, -1]]).repeat(n, 1), "image_id": torch.arange(n),
         "orig_size": torch.full((n, 2), size)}
    return x, t


@pytest.mark.parametrize(
    "options",
    [{"hflip": 1.0}, {"zoom_out": 1.0}, {"iou_crop": 1.0}, {"iou_crop": 1.0, "zoom_out": 1.0, "hflip": 0.5, "size": 48}],
)
def test_box_augment_boxes_follow_the_pixels(options):
    x, t = _square_batch(16)
    aug = BoxAugment(seed=1, **options)
    y, out = aug(x, t)
    s = options.get("size", 64)
    assert y.shape == (16, 3, s, s) and y.dtype == torch.float32
    kept = 0
    for i in range(16):
        if out["labels"][i, 0] < 0:
            continue
        kept += 1
        ys, xs = (y[i, 0] > 0.5).nonzero(as_tuple=True)
        seen = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
        assert (seen - out["boxes"][i, 0]).abs().max() <= 1.0, (i, seen, out["boxes"][i, 0])
    assert kept >= 8
    assert (out["labels"][:, 1] == -1).all()


def test_box_augment_flip_is_exact_and_deterministic():
    x, t = _square_batch(4)
    y, out = BoxAugment(hflip=1.0, seed=0)(x, t)
    assert torch.allclose(y, x.float().div(255).flip(-1), atol=1e-5)
    assert out["boxes"][0, 0].tolist() == [20.0, 12.0, 44.0, 36.0]  # symmetric about the centre: 64 - 44 = 20
    a = BoxAugment(iou_crop=1.0, zoom_out=0.5, photometric=1.0, seed=7)
    b = BoxAugment(iou_crop=1.0, zoom_out=0.5, photometric=1.0, generator=torch.Generator().manual_seed(7))
    ya, oa = a(x, t)
    yb, ob = b(x, t)
    assert torch.equal(ya, yb) and torch.equal(oa["boxes"], ob["boxes"])


def test_box_augment_drops_boxes_outside_and_keeps_padding_last():
    n = 32
    x, t = _square_batch(n)
    t["boxes"][:, 1] = torch.tensor([0.0, 0, 6, 6])  # a small box in the corner: crops often cut it away
    t["labels"][:, 1] = 2
    _, out = BoxAugment(iou_crop=1.0, seed=3)(x, t)
    real = out["labels"] >= 0
    assert (real[:, :-1] >= real[:, 1:]).all() and (~real).any()
    assert (out["boxes"][~real] == 0).all()
    b = out["boxes"][real]
    assert ((b[:, 2] - b[:, 0]) >= 1).all() and (b >= 0).all() and (b <= 64).all()


def test_box_augment_eval_is_float_conversion_and_config():
    x, t = _square_batch(2)
    aug = BoxAugment(iou_crop=1.0, zoom_out=1.0, hflip=1.0, photometric=1.0, seed=0).eval()
    y, out = aug(x, t)
    assert torch.equal(y, x.float() / 255) and out is t
    old = SimpleNamespace(hflip=0.0)  # a config from before the detection fields
    assert BoxAugment.from_config(old, size=32).iou_crop == 0.0
    new = SimpleNamespace(hflip=0.5, iou_crop=0.8, zoom_out=0.5, zoom_out_max=3.0, photometric=0.5)
    built = BoxAugment.from_config(new, size=96, seed=0)
    assert (built.iou_crop, built.zoom_out, built.zoom_out_max, built.hflip, built.size) == (0.8, 0.5, 3.0, 0.5, 96)
    with pytest.raises(ValueError, match=re.escape("aug.hflip is None")):
        BoxAugment.from_config(SimpleNamespace(hflip=None))
    with pytest.raises(ValueError, match=re.escape("iou_crop=1.5 invalid")):
        BoxAugment(iou_crop=1.5)


def test_box_augment_photometric_keeps_boxes_and_fill():
    x, t = _square_batch(4)
    x[:, 1] //= 2
    y, out = BoxAugment(photometric=1.0, seed=2)(x, t)
    assert torch.equal(out["boxes"], t["boxes"]) and not torch.equal(y, x.float() / 255)
    z, _ = BoxAugment(zoom_out=1.0, zoom_out_max=2.0, fill=(0.5, 0.25, 0.0), seed=0)(x, t)
    corners = z[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]  # at least one corner of a zoomed-out image is canvas
    assert ((corners - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1)).abs().amax(1) < 1e-3).any()
