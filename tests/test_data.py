"""Tests for the datasets of mobilenets.data (tensor, cifar, folder, synthetic, registry): splits, CIFAR
parsing (fake archives in the official format, no network), the restricted unpickler, ImageFolder decoding
of awkward files, and TensorLoader."""

from __future__ import annotations

import io
import os
import pickle
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch

from datasets_on_disk import PER_FILE, SPEC, fake_members, write_dir, write_tar
from mobilenets.config import DatasetName
from mobilenets.data import cifar as D
from mobilenets.data import registry as R
from mobilenets.data.cifar import UnsafePickleError, download_cifar, load_cifar
from mobilenets.data.folder import (
    BadImageError,
    BadImageWarning,
    ImageFolderDataset,
    collate,
    eval_transform,
    train_transform,
)
from mobilenets.data.registry import build_datasets
from mobilenets.data.synthetic import make_synthetic
from mobilenets.data.tensor import TensorImageDataset, TensorLoader, load_digits_splits

# --------------------------------------------------------------------------------------------------
# TensorImageDataset
# --------------------------------------------------------------------------------------------------


def test_tensor_dataset_basics_and_validation():
    imgs = torch.zeros(4, 3, 8, 6, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 1])
    ds = TensorImageDataset(imgs, labels, ["a", "b", "c"])
    assert len(ds) == 4 and ds.num_channels == 3 and ds.image_size == (8, 6) and ds.num_classes == 3
    img, lab = ds[1]
    assert img.shape == (3, 8, 6) and img.dtype == torch.uint8 and lab == 1 and isinstance(lab, int)
    moved = ds.to("cpu")
    assert moved is not ds and moved.images.device.type == "cpu"
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(imgs.float(), labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match="int64"):
        TensorImageDataset(imgs, labels.int(), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"N×C×H×W.*\(3, 8, 6\)"):
        TensorImageDataset(imgs[0], labels, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\(4,\)"):
        TensorImageDataset(imgs, labels[:3], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        TensorImageDataset(imgs, labels, ["a", "b"])
    with pytest.raises(ValueError, match="channels"):
        TensorImageDataset(torch.zeros(4, 2, 8, 8, dtype=torch.uint8), labels, ["a", "b", "c"])


# --------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits(image_size=32, seed=0)


def test_digits_split_sizes_and_format(digits):
    assert {k: len(v) for k, v in digits.items()} == {"train": 1257, "val": 180, "test": 360}
    for ds in digits.values():
        assert ds.images.shape[1:] == (1, 32, 32) and ds.images.dtype == torch.uint8
        assert ds.classes == [str(i) for i in range(10)]
        assert int(ds.images.max()) == 255  # 16 maps to 255


def test_digits_stratified(digits):
    total = sum(len(d) for d in digits.values())
    overall = sum(torch.bincount(d.labels, minlength=10) for d in digits.values()).float() / total
    for name, ds in digits.items():
        counts = torch.bincount(ds.labels, minlength=10)
        assert bool((counts > 0).all()), f"{name} lacks a class"
        # stratified: each class count is within 1.5 of its expected share
        assert bool(((counts.float() - overall * len(ds)).abs() <= 1.5).all()), (name, counts)


def test_digits_disjoint_and_deterministic(digits):
    idx = [set(d.source_indices.tolist()) for d in digits.values()]
    assert sum(len(s) for s in idx) == 1797 and set().union(*idx) == set(range(1797))
    again = load_digits_splits(image_size=32, seed=0)
    for k in digits:
        assert torch.equal(digits[k].images, again[k].images) and torch.equal(
            digits[k].labels, again[k].labels
        )
    other = load_digits_splits(image_size=16, seed=1)
    # the test split never changes; seed only moves train/val
    assert torch.equal(other["test"].source_indices, digits["test"].source_indices)
    assert not torch.equal(other["val"].source_indices, digits["val"].source_indices)
    assert other["train"].image_size == (16, 16)


# --------------------------------------------------------------------------------------------------
# CIFAR: fake archives in the official format
# --------------------------------------------------------------------------------------------------

@pytest.fixture(params=["cifar10", "cifar100"])
def fake_cifar(request, tmp_path):
    name = request.param
    members = fake_members(name)
    tar_dir = tmp_path / "tar"
    tar_dir.mkdir()
    tar = write_tar(tar_dir / SPEC[name][1], members)
    ext_dir = tmp_path / "extracted"
    write_dir(ext_dir, members)
    return name, tar, ext_dir, members


def _check_cifar(ds: TensorImageDataset, name: str, split: str, members: dict[str, bytes]) -> None:
    folder, _, train, test, _, label_key, _, k = SPEC[name]
    files = train if split == "train" else test
    expected = [pickle.loads(members[f"{folder}/{m}"]) for m in files]
    data = np.concatenate([e[b"data"] for e in expected])
    labels = [lab for e in expected for lab in e[label_key]]
    assert ds.images.shape == (len(data), 3, 32, 32) and ds.images.dtype == torch.uint8
    # official layout: 1024 red, then 1024 green, then 1024 blue values, row-major
    assert torch.equal(ds.images.reshape(len(data), -1), torch.from_numpy(data))
    assert ds.labels.tolist() == labels
    assert ds.classes == [f"class{i}" for i in range(k)]


def test_cifar_from_all_root_forms(fake_cifar):
    name, tar, ext_dir, members = fake_cifar
    folder = SPEC[name][0]
    for root in (tar, tar.parent, ext_dir, ext_dir / folder, str(ext_dir / folder)):
        for split in ("train", "test"):
            _check_cifar(load_cifar(root, name, split), name, split, members)


def test_cifar_build_datasets_val_carved_from_train(fake_cifar):
    name, tar, *_ = fake_cifar
    k = SPEC[name][-1]
    val_size = 2 * k
    splits = build_datasets(name, tar.parent, 32, val_size=val_size)
    full = load_cifar(tar, name, "train")
    test = load_cifar(tar, name, "test")
    assert len(splits["val"]) == val_size and len(splits["train"]) == len(full) - val_size
    assert torch.equal(splits["test"].images, test.images)
    tr, va = set(splits["train"].source_indices.tolist()), set(splits["val"].source_indices.tolist())
    assert not tr & va and tr | va == set(range(len(full)))
    assert torch.bincount(splits["val"].labels, minlength=k).tolist() == [2] * k  # stratified
    assert torch.equal(splits["val"].images, full.images[splits["val"].source_indices])
    again = build_datasets(name, tar, 32, val_size=val_size, seed=123)  # seed does not move the carve-out
    assert torch.equal(again["val"].source_indices, splits["val"].source_indices)
    up = build_datasets(name, tar, 40, val_size=val_size)
    assert up["train"].image_size == (40, 40)


def test_cifar_wrong_arguments(tmp_path):
    with pytest.raises(ValueError, match="cifar1000"):
        load_cifar(tmp_path, "cifar1000", "train")
    with pytest.raises(ValueError, match="valid"):
        load_cifar(tmp_path, "cifar10", "valid")


def test_cifar_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar(tmp_path, "cifar10", "train")
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path / "cifar-10-python.tar.gz") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz"):
        build_datasets("cifar100", tmp_path, 32)


class _Evil:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_members(marker: Path) -> dict[str, bytes]:
    members = fake_members("cifar10")
    members["cifar-10-batches-py/data_batch_1"] = pickle.dumps(
        {b"data": _Evil(marker), b"labels": []}, protocol=2
    )
    return members


def test_restricted_unpickler_refuses_code_from_tarball(tmp_path):
    marker = tmp_path / "pwned"
    tar = write_tar(tmp_path / "cifar-10-python.tar.gz", _evil_members(marker))
    with pytest.raises(UnsafePickleError) as err:
        load_cifar(tar, "cifar10", "train")
    assert not marker.exists()
    msg = str(err.value)
    assert "data_batch_1" in msg and str(tar) in msg and "system" in msg


def test_restricted_unpickler_refuses_code_from_folder(tmp_path):
    marker = tmp_path / "pwned"
    write_dir(tmp_path, _evil_members(marker))
    with pytest.raises(UnsafePickleError, match=r"data_batch_1.*system"):
        load_cifar(tmp_path, "cifar10", "train")
    assert not marker.exists()
    # the payload is live: the default unpickler does create the file (a harmless `touch` in tmp_path)
    pickle.loads(_evil_members(marker)["cifar-10-batches-py/data_batch_1"])
    assert marker.exists()


def test_restricted_unpickler_other_globals():
    payload = pickle.dumps({b"x": eval}, protocol=2)  # a reference to builtins.eval
    with pytest.raises(UnsafePickleError, match=r"memfile.*builtin\w*\.eval"):
        D.restricted_loads(payload, "memfile")
    # _codecs.encode is allowed for latin-1 only
    import _codecs

    class Rot:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    with pytest.raises(UnsafePickleError, match="rot13"):
        D.restricted_loads(pickle.dumps(Rot(), protocol=2), "memfile")
    with pytest.raises(ValueError, match="not a valid CIFAR pickle"):
        D.restricted_loads(b"garbage", "memfile")


def test_download_offline_error_and_no_partial_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as err:
        download_cifar(tmp_path, "cifar10")
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(err.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz"):
        load_cifar(tmp_path, "cifar10", "train", download=True)


def test_download_verifies_checksum_and_is_atomic(tmp_path, monkeypatch):
    payload = write_tar(tmp_path / "src.tar.gz", fake_members("cifar10")).read_bytes()
    dest_dir = tmp_path / "data"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))
    with pytest.raises(RuntimeError, match="checksum"):
        download_cifar(dest_dir, "cifar10")
    assert list(dest_dir.iterdir()) == []
    import hashlib

    spec = D._CIFAR["cifar10"]
    fake_spec = D._CifarSpec(**{**spec.__dict__, "md5": hashlib.md5(payload).hexdigest()})
    monkeypatch.setitem(D._CIFAR, "cifar10", fake_spec)
    path = download_cifar(dest_dir, "cifar10")
    assert path == dest_dir / "cifar-10-python.tar.gz" and path.read_bytes() == payload
    assert [p.name for p in dest_dir.iterdir()] == ["cifar-10-python.tar.gz"]
    assert len(load_cifar(dest_dir, "cifar10", "test")) == PER_FILE


# --------------------------------------------------------------------------------------------------
# ImageFolder
# --------------------------------------------------------------------------------------------------


def _make_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    a, b = root / "train" / "cat", root / "train" / "dog"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(a / "rgb.jpg")
    Image.fromarray(rng.integers(0, 256, (17, 13), dtype=np.uint8), mode="L").save(a / "gray.png")
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    rgba[:5, :, :] = (255, 0, 0, 255)  # top half opaque red
    Image.fromarray(rgba, mode="RGBA").save(a / "rgba.png")
    pal = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).convert("P")
    pal.save(b / "palette.png")
    Image.new("CMYK", (9, 11), (0, 255, 255, 0)).save(b / "cmyk.jpg")
    arr16 = np.full((8, 8), 65535, dtype=np.uint16)
    arr16[:, :4] = 32896  # 128 * 257
    Image.fromarray(arr16).save(b / "deep16.png")
    Image.new("RGB", (1, 1), (10, 20, 30)).save(b / "tiny.png")
    (b / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(100))
    (b / "notes.txt").write_text("not an image")
    (b / ".DS_Store").write_bytes(b"\x00")
    v = root / "val" / "cat"
    v.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 24, 3), dtype=np.uint8)).save(v / "val.png")


@pytest.fixture
def folder(tmp_path):
    _make_folder(tmp_path)
    return tmp_path


def test_imagefolder_verify_at_scan(folder):
    with pytest.warns(BadImageWarning, match=r"corrupt\.jpg"):
        ds = ImageFolderDataset(folder / "train", train_transform(16), verify=True)
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 7 and ds.num_bad == 1 and ds.num_ignored == 1
    assert ds.bad_files[0].endswith("corrupt.jpg")
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and label in (0, 1)


def test_imagefolder_mode_conversions(folder):
    by_name = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        plain = ImageFolderDataset(folder / "train", None, verify=True)
    for i, (path, _) in enumerate(plain.samples):
        by_name[Path(path).name] = plain[i][0]
    rgba = by_name["rgba.png"]
    assert rgba[:, 0, 0].tolist() == [255, 0, 0] and rgba[:, -1, 0].tolist() == [255, 255, 255]  # white bg
    deep = by_name["deep16.png"]
    assert deep[:, 0, 0].tolist() == [128] * 3 and deep[:, 0, -1].tolist() == [255] * 3
    gray = by_name["gray.png"]
    assert gray.shape == (3, 17, 13) and torch.equal(gray[0], gray[1])
    cmyk = by_name["cmyk.jpg"]
    assert cmyk.shape == (3, 11, 9) and cmyk[0].float().mean() > 200 and cmyk[1].float().mean() < 60
    assert by_name["tiny.png"].shape == (3, 1, 1)
    assert by_name["palette.png"].shape == (3, 12, 12)


def test_imagefolder_bad_file_on_load_skip_and_error(folder):
    ds = ImageFolderDataset(folder / "train", eval_transform(8))
    assert len(ds) == 8  # corrupt file not detected yet
    with pytest.warns(BadImageWarning, match=r"corrupt\.jpg"):
        items = [ds[i] for i in range(len(ds))]
    assert ds.num_bad == 1 and all(img.shape == (3, 8, 8) for img, _ in items)
    strict = ImageFolderDataset(folder / "train", eval_transform(8), on_bad_image="error")
    bad = next(i for i, (p, _) in enumerate(strict.samples) if p.endswith("corrupt.jpg"))
    with pytest.raises(BadImageError, match=r"corrupt\.jpg") as err:
        strict[bad]
    assert err.value.__cause__ is None and err.value.__suppress_context__
    with pytest.raises(ValueError, match="ignore"):
        ImageFolderDataset(folder / "train", on_bad_image="ignore")
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(folder / "nope")


def test_imagefolder_build_and_collate(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        splits = build_datasets("imagefolder", folder, 16, verify_images=True)
    assert splits["test"] is splits["val"]  # no test/ folder
    assert splits["val"].classes == splits["train"].classes
    loader = torch.utils.data.DataLoader(splits["train"], batch_size=4, collate_fn=collate)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8 and labels.dtype == torch.int64


def test_transforms_on_pil_and_tensor():
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    pil = Image.fromarray(t.permute(1, 2, 0).numpy())
    tr = train_transform(24, generator=g)
    for img in (t, pil):
        out = tr(img)
        assert out.shape == (3, 24, 24) and out.dtype == torch.uint8
    ev = eval_transform(32, crop_pct=0.8)
    a, b = ev(t), ev(pil)
    assert a.shape == b.shape == (3, 32, 32)
    assert (a.int() - b.int()).abs().float().mean() < 8  # PIL and torch resamplers agree roughly
    # crop_pct=1 on an image already at size: identity
    sq = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert torch.equal(eval_transform(32, 1.0)(sq), sq)
    # centre crop: a 1-pixel marker in the centre survives
    big = torch.zeros(1, 64, 80, dtype=torch.uint8)
    big[:, 32, 40] = 255
    out = eval_transform(64, 1.0, "nearest")(big)
    assert out.shape == (1, 64, 64) and out[0, 32, 32] == 255
    with pytest.raises(ValueError, match="lanczos"):
        train_transform(8, interpolation="lanczos")


# --------------------------------------------------------------------------------------------------
# synthetic + registry
# --------------------------------------------------------------------------------------------------


def test_synthetic_learnable_and_deterministic():
    a = make_synthetic(200, num_classes=5, image_size=16, channels=3, seed=1, learnable=True)
    b = make_synthetic(200, num_classes=5, image_size=16, channels=3, seed=1, learnable=True)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (200, 3, 16, 16) and torch.bincount(a.labels).tolist() == [40] * 5
    # nearest class-mean classifier from one split is near-perfect on another split: learnable
    other = make_synthetic(100, num_classes=5, image_size=16, channels=3, seed=2, learnable=True)
    means = torch.stack([a.images[a.labels == k].float().mean(0) for k in range(5)])
    d = ((other.images.float()[:, None] - means[None]) ** 2).flatten(2).sum(-1)
    assert (d.argmin(1) == other.labels).float().mean() > 0.95
    noise = make_synthetic(64, num_classes=3, image_size=8, channels=1, seed=0, learnable=False)
    assert noise.images.shape == (64, 1, 8, 8)


def test_build_datasets_registry():
    with pytest.raises(ValueError, match=r"'cifar-10'.*did you mean 'cifar10'"):
        build_datasets("cifar-10", None, 32)
    with pytest.raises(ValueError, match="root"):
        build_datasets("cifar10", None, 32)
    with pytest.raises(ValueError, match="root"):
        build_datasets("imagefolder", None, 32)
    digits = build_datasets("digits", None, 16)
    assert set(digits) == {"train", "val", "test"} and digits["train"].image_size == (16, 16)
    syn = build_datasets("synthetic", None, 8, synthetic_sizes=(30, 10, 10), num_classes=3, channels=1)
    assert [len(syn[k]) for k in ("train", "val", "test")] == [30, 10, 10]
    assert syn["train"].images.shape[1:] == (1, 8, 8) and syn["val"].num_classes == 3
    assert set(R.DATASETS) == {"digits", "cifar10", "cifar100", "imagefolder", "synthetic", "digit_scenes", "coco", "voc",
                              "mask_folder"}


def test_config_dataset_names_are_the_registry():
    """The config's ``DatasetName`` choices and the data registry name the same datasets, in order."""
    assert get_args(DatasetName) == tuple(R.DATASET_INFO) == tuple(R.DATASETS)
    assert all(info.name == name for name, info in R.DATASET_INFO.items())


# --------------------------------------------------------------------------------------------------
# TensorLoader
# --------------------------------------------------------------------------------------------------


def _indexed_dataset(n: int) -> TensorImageDataset:
    """Image i stores i in its first two pixels, so batches reveal which samples they hold."""
    imgs = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    imgs[:, 0, 0, 0] = torch.arange(n) % 256
    imgs[:, 0, 0, 1] = torch.arange(n) // 256
    return TensorImageDataset(imgs, torch.arange(n) % 3, ["a", "b", "c"])


def _ids(batches) -> list[int]:
    out = []
    for images, labels in batches:
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        ids = images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()
        assert torch.equal(labels, ids % 3)
        out += ids.tolist()
    return out


def test_tensor_loader_epochs():
    ds = _indexed_dataset(103)
    loader = TensorLoader(ds, batch_size=10, shuffle=True, seed=7, device="cpu")
    assert len(loader) == 11
    e0 = _ids(loader)
    e1 = _ids(loader)  # iterating again advances the epoch
    assert sorted(e0) == sorted(e1) == list(range(103))
    assert e0 != e1
    loader.set_epoch(0)
    assert _ids(loader) == e0
    assert _ids(TensorLoader(ds, 10, shuffle=True, seed=7)) == e0
    assert _ids(TensorLoader(ds, 10, shuffle=True, seed=8)) != e0
    assert _ids(TensorLoader(ds, 10, shuffle=False)) == list(range(103))
    dl = TensorLoader(ds, 10, drop_last=True)
    assert len(dl) == 10 and len(_ids(dl)) == 100


@pytest.mark.parametrize("n", [96, 101])
def test_tensor_loader_sharding(n):
    ds = _indexed_dataset(n)
    world = 4
    shards = [_ids(TensorLoader(ds, 8, shuffle=True, seed=3, rank=r, world_size=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal length on every rank (DDP needs it)
    assert set().union(*map(set, shards)) == set(range(n))
    if n % world == 0:
        assert sorted(i for s in shards for i in s) == list(range(n))  # an exact partition
    else:
        assert sum(map(len, shards)) == n + (world - n % world)  # only the wrap-around padding repeats
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(ds, 8, rank=4, world_size=4)
