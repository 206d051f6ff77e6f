"""Datasets for the MobileNet toolkit.

Design: datasets that fit in memory (digits, CIFAR-10/100, synthetic) are held as one uint8 tensor
``N×C×H×W`` plus an int64 label tensor, so training can move them to the accelerator once and feed
whole batches to the batched augmentation in :mod:`mobilenets.data.augment` through
:class:`TensorLoader` — no DataLoader, no per-sample Python on the hot path.  ImageNet-style folders
don't fit, so :class:`ImageFolderDataset` decodes with PIL in DataLoader workers and only does the
per-sample work that must happen before batching (decode + crop/resize to a fixed size).

Splits are fixed and documented so that numbers are comparable between runs: the model is selected on
"val", never on "test".

No code here unpickles untrusted data with the default unpickler: the CIFAR files are pickles, and
they are read with :class:`RestrictedUnpickler`, which only allows numpy's array reconstruction.
"""

from __future__ import annotations

import copy
import io
import math
import os
import pickle
import tarfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import did_you_mean
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..fileio import DownloadError, download, file_digest

__all__ = [
    "CIFAR_VAL_SEED",
    "CIFAR_VAL_SIZE",
    "DATASETS",
    "DATASET_INFO",
    "DIGITS_TEST_SEED",
    "IMG_EXTENSIONS",
    "BadImageError",
    "BadImageWarning",
    "DataRootError",
    "DatasetInfo",
    "ImageFolderDataset",
    "RestrictedUnpickler",
    "SyntheticDataset",
    "TensorImageDataset",
    "TensorLoader",
    "TrainDefaults",
    "UnsafePickleError",
    "build_datasets",
    "collate",
    "download_cifar",
    "eval_transform",
    "load_cifar",
    "load_cifar_splits",
    "load_digits_splits",
    "load_rgb",
    "make_synthetic",
    "resize_images",
    "stratified_split",
    "test_split_label",
    "to_rgb",
    "train_transform",
]

# --------------------------------------------------------------------------------------------------
# in-memory tensor datasets
# --------------------------------------------------------------------------------------------------


class TensorImageDataset(torch.utils.data.Dataset):
    """A whole image-classification dataset as tensors: ``images`` uint8 ``N×C×H×W``, ``labels`` int64
    ``N``, and the class names.  Cheap to index, to move to a device, and to batch by fancy indexing."""

    def __init__(self, images: Tensor, labels: Tensor, classes: Sequence[str]) -> None:
        if not isinstance(images, Tensor):
            raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise ValueError(f"images must have dtype torch.uint8, got {images.dtype}")
        if images.ndim != 4:
            raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have 1 or 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})"
            )
        if not isinstance(labels, Tensor):
            raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.dtype != torch.int64:
            raise ValueError(f"labels must have dtype torch.int64, got {labels.dtype}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got {tuple(labels.shape)}"
            )
        classes = [str(c) for c in classes]
        if not classes:
            raise ValueError("classes must not be empty")
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= len(classes):
                raise ValueError(f"labels must be in [0, {len(classes)}), got range [{lo}, {hi}]")
        self.images = images
        self.labels = labels
        self.classes = classes
        #: Row numbers in the original source (e.g. ``load_digits`` order) when this is a split of it;
        #: lets tests and reports prove that splits are disjoint without comparing pixels.
        self.source_indices: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])

    @property
    def num_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def _replace(self, images: Tensor, labels: Tensor) -> TensorImageDataset:
        new = copy.copy(self)  # keeps the subclass and any extra attributes
        new.images, new.labels = images, labels
        return new

    def to(self, device: torch.device | str) -> TensorImageDataset:
        """A copy with the tensors on ``device`` (no copy when they already are)."""
        return self._replace(self.images.to(device), self.labels.to(device))

    def subset(self, indices: Tensor | Sequence[int]) -> TensorImageDataset:
        """A new dataset with the given rows (copies the selected images)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        new = self._replace(self.images[idx], self.labels[idx])
        src = self.source_indices if self.source_indices is not None else torch.arange(len(self))
        new.source_indices = src[idx.cpu()]
        return new

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, channels={self.num_channels}, size={self.image_size}, "
            f"classes={len(self.classes)}, device={self.device})"
        )


def resize_images(images: Tensor, size: int, chunk: int = 2048) -> Tensor:
    """Resize a uint8 ``N×C×H×W`` tensor to ``size×size`` (bilinear, antialiased when shrinking), in
    chunks to bound the float32 working memory."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        res = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = res.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(
    labels: Tensor | np.ndarray, test_size: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` of a stratified split (scikit-learn's ``train_test_split``), sorted so
    the kept order is the original order."""
    from sklearn.model_selection import train_test_split

    y = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    n_classes = len(np.unique(y))
    if isinstance(test_size, int) and not n_classes <= test_size <= len(y) - n_classes:
        raise ValueError(
            f"cannot hold out {test_size} of {len(y)} samples stratified over {n_classes} classes; "
            f"expected {n_classes} <= size <= {len(y) - n_classes} (set data.val_size)"
        )
    idx = np.arange(len(y))
    keep, held = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed, shuffle=True)
    return np.sort(keep), np.sort(held)


#: The digits test split always uses this seed, so "test" is the same 360 images in every run.
DIGITS_TEST_SEED = 0


def load_digits_splits(image_size: int = 32, seed: int = 0) -> dict[str, TensorImageDataset]:
    """scikit-learn's 1797 real 8×8 handwritten digits, as fixed stratified splits.

    Split (stratified by class with ``sklearn.model_selection.train_test_split``):

    * ``"test"``: 360 images (20%), carved first from all 1797 with the constant seed
      :data:`DIGITS_TEST_SEED` = 0 — it never changes, whatever ``seed`` or ``image_size`` is;
    * ``"val"``: 180 images (10% of 1797), carved from the remaining 1437 with ``seed``;
    * ``"train"``: the other 1257 images (70%).

    Every class is present in every split in (almost exactly) its overall proportion.  Pixel values
    0..16 are mapped to uint8 with ``round(v * 255 / 16)`` and the images are upsampled bilinearly to
    ``image_size × image_size`` (1 channel), because MobileNets' five stride-2 stages need more than 8
    pixels.  Nothing is downloaded: the data ships inside the scikit-learn wheel.
    """
    from sklearn.datasets import load_digits

    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    bunch = load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32)).view(-1, 1, 8, 8)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    x = (x * (255.0 / 16.0)).round_().clamp_(0, 255)
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.round_().clamp_(0, 255)
    images = x.to(torch.uint8).contiguous()
    n = len(y)
    rest, test = stratified_split(y, test_size=0.2, seed=DIGITS_TEST_SEED)
    val_count = round(0.1 * n)
    train_rel, val_rel = stratified_split(y[rest], test_size=val_count, seed=seed)
    train, val = rest[train_rel], rest[val_rel]
    classes = [str(i) for i in range(10)]

    def make(idx: np.ndarray) -> TensorImageDataset:
        t = torch.from_numpy(idx)
        ds = TensorImageDataset(images[t].clone(), y[t].clone(), classes)
        ds.source_indices = t
        return ds

    return {"train": make(train), "val": make(val), "test": make(test)}


# --------------------------------------------------------------------------------------------------
# CIFAR in the official python format
# --------------------------------------------------------------------------------------------------


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the allow-list (possible code execution)."""


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Python 3 writes ``bytes`` in protocol-2 pickles as ``_codecs.encode(text, 'latin1')``; allow
    exactly that and nothing else of the codecs module."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dicts, lists, strings and numbers — nothing else.

    Why: ``pickle.load`` on a file from the internet executes whatever callable the file names
    (``os.system`` and friends).  The CIFAR python files only need numpy's array reconstruction
    (``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``,
    ``numpy.ndarray``, ``numpy.dtype``); pickles written by Python 3 with protocol 2 additionally encode
    bytes via ``_codecs.encode(..., 'latin1')``, which is allowed for the latin-1 codec only.  Any other
    global raises :class:`UnsafePickleError` naming the file and the refused global, before anything is
    called.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, source: str, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            return _numpy_reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafePickleError(
            f"{self.source}: refusing to unpickle global '{module}.{name}' — only numpy array "
            "reconstruction is allowed in CIFAR files (the file may be corrupt or malicious)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in CIFAR files")


def restricted_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` (a Python-2 era CIFAR pickle) with :class:`RestrictedUnpickler`;
    ``encoding='bytes'`` keeps the official bytes keys (``b"data"``)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source, encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated / not a pickle at all
        raise ValueError(f"{source}: not a valid CIFAR pickle ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class _CifarSpec:
    folder: str
    archive: str
    url: str
    md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int


_CIFAR: dict[str, _CifarSpec] = {
    "cifar10": _CifarSpec(
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key="labels",
        names_key="label_names",
        num_classes=10,
    ),
    "cifar100": _CifarSpec(
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        num_classes=100,
    ),
}


def _cifar_spec(name: str) -> _CifarSpec:
    if name not in _CIFAR:
        raise ValueError(f"unknown CIFAR variant {name!r}; allowed: {', '.join(_CIFAR)}")
    return _CIFAR[name]


def _missing_message(spec: _CifarSpec, root: Path) -> str:
    where = root if root.suffix != ".gz" else root.parent
    return (
        f"CIFAR data not found under {root}. Put the official archive '{spec.archive}' (from {spec.url}, "
        f"md5 {spec.md5}) at {where / spec.archive}, or its extracted folder at {where / spec.folder}/, "
        "or pass download=True on a machine with internet access."
    )


def download_cifar(root: str | Path, name: str, timeout: float = 60.0) -> Path:
    """Download the official CIFAR archive into directory ``root`` and verify its md5.

    An existing archive with the right checksum is reused.  The download is streamed into a temporary
    file next to the destination and moved into place with ``os.replace`` only after the checksum
    matched, so an interrupted or corrupted download never leaves a file that looks complete.  When the
    machine is offline, raises :class:`FileNotFoundError` telling exactly which file to put where.
    """
    spec = _cifar_spec(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    dest = root / spec.archive
    if dest.is_file() and file_digest(dest, "md5") == spec.md5:
        return dest

    def verify(tmp: Path) -> None:  # raising here discards the partial file; dest stays untouched
        got = file_digest(tmp, "md5")
        if got != spec.md5:
            raise RuntimeError(
                f"checksum mismatch for {spec.url}: got md5 {got}, expected {spec.md5}; nothing was written to {dest}"
            )

    try:
        download(spec.url, dest, verify=verify, timeout=timeout)
    except DownloadError as exc:
        raise FileNotFoundError(f"could not download {spec.url} ({exc.reason}). " + _missing_message(spec, root)) from exc
    return dest


def _locate_cifar(root: Path, spec: _CifarSpec) -> tuple[str, Path] | None:
    """Find the data: ``("dir", folder)`` for extracted files, ``("tar", archive)`` for the tarball."""
    if root.is_file():
        return ("tar", root)
    if not root.is_dir():
        return None
    if (root / spec.meta).is_file() and all((root / m).is_file() for m in spec.test):
        return ("dir", root)  # the extracted folder itself
    if (root / spec.folder / spec.meta).is_file():
        return ("dir", root / spec.folder)
    if (root / spec.archive).is_file():
        return ("tar", root / spec.archive)
    return None


def _read_members(kind: str, path: Path, spec: _CifarSpec, names: Sequence[str]) -> dict[str, Any]:
    """Unpickle the named members, from the folder or in one pass over the tarball (no extraction)."""
    out: dict[str, Any] = {}
    if kind == "dir":
        for name in names:
            file = path / name
            if not file.is_file():
                raise FileNotFoundError(f"{file} is missing (expected the official '{spec.folder}' layout)")
            out[name] = restricted_loads(file.read_bytes(), str(file))
        return out
    wanted = {f"{spec.folder}/{n}": n for n in names}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                key = member.name[2:] if member.name.startswith("./") else member.name
                if key in wanted and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    out[wanted[key]] = restricted_loads(f.read(), f"{path}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: cannot read the CIFAR archive ({exc})") from None
    missing = [f"{spec.folder}/{n}" for n in names if n not in out]
    if missing:
        raise FileNotFoundError(
            f"{path} lacks the member(s) {', '.join(missing)}; is it the official archive?"
        )
    return out


def _get(d: Any, key: str, source: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a dict, got {type(d).__name__}")
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise ValueError(f"{source}: missing key {key!r} (has {sorted(map(str, d))[:8]})")


def load_cifar(
    root: str | Path, name: str = "cifar10", split: str = "train", download: bool = False
) -> TensorImageDataset:
    """Load CIFAR-10 or CIFAR-100 (fine labels) in the official python format.

    ``root`` may be the tarball (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``), a directory
    containing it, a directory containing the extracted folder (``cifar-10-batches-py/`` /
    ``cifar-100-python/``), or the extracted folder itself.  Tarballs are read in memory, never
    extracted.  Every pickle goes through :class:`RestrictedUnpickler`.  ``split`` is ``"train"``
    (50000 images) or ``"test"`` (10000); images are uint8 ``N×3×32×32``.  With ``download=True`` a
    missing archive is fetched with :func:`download_cifar`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"unknown CIFAR split {split!r}; allowed: 'train', 'test'")
    return load_cifar_splits(root, name, (split,), download)[split]


def load_cifar_splits(
    root: str | Path, name: str = "cifar10", splits: Sequence[str] = ("train", "test"), download: bool = False
) -> dict[str, TensorImageDataset]:
    """Like :func:`load_cifar` for several splits, reading a tarball only once (it is gzip: every read
    decompresses the whole stream)."""
    spec = _cifar_spec(name)
    for split in splits:
        if split not in ("train", "test"):
            raise ValueError(f"unknown CIFAR split {split!r}; allowed: 'train', 'test'")
    root = Path(root).expanduser()
    found = _locate_cifar(root, spec)
    if found is None and download:
        download_cifar(root.parent if root.suffix == ".gz" else root, name)
        found = _locate_cifar(root, spec)
    if found is None:
        raise FileNotFoundError(_missing_message(spec, root))
    kind, path = found
    wanted = {split: spec.train if split == "train" else spec.test for split in splits}
    loaded = _read_members(kind, path, spec, (*[m for ms in wanted.values() for m in ms], spec.meta))
    names = [
        n.decode() if isinstance(n, bytes) else str(n)
        for n in _get(loaded[spec.meta], spec.names_key, f"{path}:{spec.meta}")
    ]
    if len(names) != spec.num_classes:
        raise ValueError(f"{path}: {spec.meta} lists {len(names)} classes, expected {spec.num_classes}")
    out = {}
    for split, members in wanted.items():
        images, labels = [], []
        for m in members:
            src = f"{path}:{m}"
            data = np.asarray(_get(loaded[m], "data", src))
            lab = np.asarray(_get(loaded[m], spec.label_key, src), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise ValueError(f"{src}: 'data' must be uint8 N×3072, got {data.dtype} {data.shape}")
            if lab.shape != (data.shape[0],):
                raise ValueError(f"{src}: {data.shape[0]} images but {lab.shape} labels")
            if lab.size and (lab.min() < 0 or lab.max() >= spec.num_classes):
                raise ValueError(f"{src}: labels outside [0, {spec.num_classes})")
            images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
            labels.append(torch.from_numpy(lab))
        out[split] = TensorImageDataset(torch.cat(images), torch.cat(labels), names)
    return out


#: CIFAR "val" = this many training images, carved stratified with :data:`CIFAR_VAL_SEED`.
CIFAR_VAL_SIZE = 5000
CIFAR_VAL_SEED = 0


# --------------------------------------------------------------------------------------------------
# ImageFolder (ImageNet layout)
# --------------------------------------------------------------------------------------------------

IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".pbm",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)


class BadImageError(ValueError):
    """An image file that PIL cannot decode; the message names the file."""


class BadImageWarning(UserWarning):
    """Emitted when an undecodable image is skipped."""


_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


def to_rgb(img: Any) -> Any:
    """Convert any PIL mode to 8-bit RGB.

    * transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparency key) is composited onto a
      **white** background — what a person sees in a viewer — instead of exposing whatever colour the
      fully-transparent pixels happen to store (often black);
    * 16-bit and 32-bit grey (``I;16*``, ``I``, ``F``) are scaled to 8 bit: ``I;16*`` by ``/257``; ``I``/``F``
      by ``/257`` when values exceed 255 (16-bit data in a 32-bit container), else clipped to 0..255;
    * ``CMYK``, ``YCbCr``, ``L``, ``1``, ``P``… use PIL's own conversion.
    """
    from PIL import Image

    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (arr.size and arr.max() > 255):
            arr = arr / 257.0
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Any:
    """Open, fully decode and convert an image to RGB; any failure becomes :class:`BadImageError`
    naming the file (never a raw PIL traceback).  EXIF orientation is *not* applied, matching the
    torchvision/timm ImageNet loaders that published accuracies were measured with."""
    from PIL import Image

    try:
        with open(path, "rb") as f, Image.open(f) as img:
            img.load()
            return to_rgb(img)
    except Exception as exc:  # PIL raises many types: UnidentifiedImageError, OSError, SyntaxError, ...
        raise BadImageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from None


def _pil_to_tensor(img: Any) -> Tensor:
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _tensor_resize(x: Tensor, size: tuple[int, int], interpolation: str) -> Tensor:
    xf = x.unsqueeze(0).float()
    if interpolation == "nearest":
        out = F.interpolate(xf, size=size, mode="nearest")
    else:
        out = F.interpolate(xf, size=size, mode=interpolation, align_corners=False, antialias=True)
    return out.squeeze(0).round_().clamp_(0, 255).to(torch.uint8)


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in _RESAMPLE:
        raise ValueError(f"unknown interpolation {interpolation!r}; allowed: {', '.join(_RESAMPLE)}")


def _image_hw(img: Any) -> tuple[int, int]:
    if isinstance(img, Tensor):
        return int(img.shape[-2]), int(img.shape[-1])
    return int(img.size[1]), int(img.size[0])


def _rrc_params(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (top, left, h, w) with torch RNG (DataLoader seeds it per
    worker, unlike numpy's global state)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            j = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, max(h, 1), max(w, 1)


def train_transform(
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    interpolation: str = "bilinear",
    generator: torch.Generator | None = None,
) -> Callable[[Any], Tensor]:
    """Per-sample training transform for ImageFolder: random-resized-crop to ``size×size``.

    Works on a PIL image (crop+resize in one antialiased PIL call) or a uint8 ``C×H×W`` tensor and
    returns a uint8 ``C×size×size`` tensor.  Flips, auto-augment, erasing and mixing are deliberately
    left to :class:`~mobilenets.data.augment.BatchAugment`, which does them on the batch on the device.
    """
    _check_interpolation(interpolation)

    def transform(img: Any) -> Tensor:
        h, w = _image_hw(img)
        i, j, ch, cw = _rrc_params(h, w, scale, ratio, generator)
        if isinstance(img, Tensor):
            return _tensor_resize(img[..., i : i + ch, j : j + cw], (size, size), interpolation)
        out = img.resize((size, size), resample=_RESAMPLE[interpolation], box=(j, i, j + cw, i + ch))
        return _pil_to_tensor(out)

    return transform


def eval_transform(
    size: int, crop_pct: float = 0.875, interpolation: str = "bilinear"
) -> Callable[[Any], Tensor]:
    """Per-sample evaluation transform: resize the shorter side to ``floor(size / crop_pct)`` (timm's
    rule) then centre-crop ``size×size``; PIL image or uint8 tensor in, uint8 ``C×size×size`` out."""
    _check_interpolation(interpolation)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    scale_size = math.floor(size / crop_pct)

    def transform(img: Any) -> Tensor:
        h, w = _image_hw(img)
        if h <= w:
            nh, nw = scale_size, max(1, int(scale_size * w / h))
        else:
            nw, nh = scale_size, max(1, int(scale_size * h / w))
        if isinstance(img, Tensor):
            x = _tensor_resize(img, (nh, nw), interpolation)
        else:
            x = _pil_to_tensor(img.resize((nw, nh), resample=_RESAMPLE[interpolation]))
        top = round((nh - size) / 2.0)
        left = round((nw - size) / 2.0)
        if top < 0 or left < 0:  # only when crop_pct == 1 and rounding left the image short
            x = _tensor_resize(x, (max(nh, size), max(nw, size)), interpolation)
            top, left = max(top, 0), max(left, 0)
        return x[:, top : top + size, left : left + size].contiguous()

    return transform


def collate(batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Stack ``(uint8 C×H×W, label)`` samples into a uint8 batch and an int64 label tensor (the batch
    stays uint8 — 4× less host→device traffic; conversion to float happens on the device)."""
    images = torch.stack([b[0] for b in batch])
    labels = torch.tensor([int(b[1]) for b in batch], dtype=torch.int64)
    return images, labels


class ImageFolderDataset(torch.utils.data.Dataset):
    """``root/<class>/**/<image>`` (the ImageNet layout, one split folder), decoded with PIL.

    Classes are the sorted sub-folder names (or the ``classes`` given, so val/test reuse the train
    mapping).  Files without an image extension are ignored at scan time and counted in
    :attr:`num_ignored`.  Undecodable files: with ``verify=True`` every file is fully decoded at scan
    time and bad ones are dropped (warning + :attr:`bad_files`) — exact, but it costs one decode per
    file, so it is meant for small or untrusted folders, not a 1.28M-image ImageNet.  Otherwise they
    are found on load, where ``on_bad_image="skip"`` warns, records the file and returns the next good
    sample, and ``"error"`` raises :class:`BadImageError` naming the file.  (With DataLoader workers the load-time record lives
    in the worker processes; use ``verify=True`` when an exact count matters.)

    ``transform`` maps an RGB PIL image to a uint8 ``C×H×W`` tensor (e.g. :func:`train_transform`);
    without one the full-size image is returned.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Any], Tensor] | None = None,
        *,
        on_bad_image: str = "skip",
        verify: bool = False,
        classes: Sequence[str] | None = None,
        extensions: Sequence[str] = IMG_EXTENSIONS,
    ) -> None:
        if on_bad_image not in ("skip", "error"):
            raise ValueError(f"unknown on_bad_image {on_bad_image!r}; allowed: 'skip', 'error'")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.transform = transform
        self.on_bad_image = on_bad_image
        if classes is None:
            classes = sorted(
                e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")
            )
        self.classes = list(classes)
        if not self.classes:
            raise FileNotFoundError(
                f"no class folders found in {self.root} (expected {self.root}/<class>/<images>)"
            )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        exts = tuple(e.lower() for e in extensions)
        self.samples: list[tuple[str, int]] = []
        self.num_ignored = 0
        self.bad_files: list[str] = []
        for cls in self.classes:
            cdir = self.root / cls
            if not cdir.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(cdir, followlinks=True):
                dirnames.sort()
                for fname in sorted(filenames):
                    if fname.startswith("."):
                        continue
                    if not fname.lower().endswith(exts):
                        self.num_ignored += 1
                        continue
                    self.samples.append((os.path.join(dirpath, fname), self.class_to_idx[cls]))
        if verify:
            good = []
            for path, label in self.samples:
                try:
                    load_rgb(path)
                except BadImageError as exc:
                    if on_bad_image == "error":
                        raise
                    self._record_bad(path, exc)
                    continue
                good.append((path, label))
            self.samples = good
        if not self.samples:
            raise FileNotFoundError(f"no readable images with extensions {exts} under {self.root}")
        self.targets = [label for _, label in self.samples]

    @property
    def num_bad(self) -> int:
        return len(self.bad_files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _record_bad(self, path: str, exc: Exception) -> None:
        if path not in self.bad_files:
            self.bad_files.append(path)
            warnings.warn(
                f"skipping {exc} ({len(self.bad_files)} bad file(s) so far)", BadImageWarning, stacklevel=3
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        n = len(self.samples)
        for attempt in range(n):
            path, label = self.samples[(index + attempt) % n]
            try:
                img = load_rgb(path)
            except BadImageError as exc:
                if self.on_bad_image == "error":
                    raise
                self._record_bad(path, exc)
                continue
            out = self.transform(img) if self.transform is not None else _pil_to_tensor(img)
            return out, label
        raise BadImageError(f"no decodable image left in {self.root}")

    def __repr__(self) -> str:
        return f"ImageFolderDataset(root={str(self.root)!r}, n={len(self)}, classes={len(self.classes)})"


# --------------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------------


class SyntheticDataset(TensorImageDataset):
    """Random images for benchmarks and smoke tests.

    ``learnable=False``: uniform noise (labels carry no information — pure throughput benchmarks).
    ``learnable=True``: each class has its own smooth random pattern (a random ``4×4`` grid per channel,
    bilinearly upsampled), drawn from ``pattern_seed``; each sample is its class pattern plus Gaussian
    noise, so a small network learns it in a few hundred steps.  Patterns depend only on
    ``pattern_seed`` (default 0), samples on ``seed``, so train/val/test made with different ``seed``
    share the same classes.
    """

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        seed: int = 0,
        learnable: bool = True,
        pattern_seed: int = 0,
        noise: float = 0.15,
    ) -> None:
        if n < 1 or num_classes < 1 or image_size < 1:
            raise ValueError(
                f"n, num_classes and image_size must be positive, got {n}, {num_classes}, {image_size}"
            )
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        g = torch.Generator().manual_seed(int(seed))
        labels = torch.arange(n, dtype=torch.int64) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        if not learnable:
            images = torch.randint(
                0, 256, (n, channels, image_size, image_size), generator=g, dtype=torch.uint8
            )
        else:
            pg = torch.Generator().manual_seed(int(pattern_seed))
            grid = torch.rand(num_classes, channels, 4, 4, generator=pg)
            patterns = F.interpolate(
                grid, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
            images = torch.empty((n, channels, image_size, image_size), dtype=torch.uint8)
            for start in range(0, n, 512):
                lab = labels[start : start + 512]
                x = 0.1 + 0.8 * patterns[lab]
                x = x + noise * torch.randn(x.shape, generator=g)
                images[start : start + 512] = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
        super().__init__(images, labels, [f"class_{i}" for i in range(num_classes)])
        self.learnable = learnable


def make_synthetic(
    n: int,
    num_classes: int = 10,
    image_size: int = 32,
    channels: int = 3,
    seed: int = 0,
    learnable: bool = True,
    pattern_seed: int = 0,
) -> SyntheticDataset:
    """Shorthand for :class:`SyntheticDataset`."""
    return SyntheticDataset(n, num_classes, image_size, channels, seed, learnable, pattern_seed)


# --------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainDefaults:
    """What a dataset's training run uses unless the config says otherwise.

    Why per dataset: the right crop, flip and resolution depend on the images. Digits are centred 8-px
    strokes (small shifts help, mirroring turns a 2 into a non-digit); CIFAR photos flip; an image folder
    holds photos at any size, trained like ImageNet at the model's own input size.
    """

    image_size: int | None  # None: the model's input size (pretrained_cfg), e.g. 224
    crop: str  # "pad" (pad-and-crop), "rrc" (random-resized-crop) or "none"
    padding: int  # pixels, for crop="pad"
    hflip: float
    small_input: bool  # stride-1 stem for 32-px images (models that accept it)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts a training config needs before loading anything."""

    name: str
    num_classes: int | None
    channels: int
    native_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_memory: bool
    defaults: TrainDefaults



_DIGITS_DEFAULTS = TrainDefaults(32, "pad", 3, 0.0, True)  # 8x8 upsampled to 32x32, +-3 px shifts
_CIFAR_DEFAULTS = TrainDefaults(32, "pad", 4, 0.5, True)  # the classic CIFAR recipe
_PHOTO_DEFAULTS = TrainDefaults(None, "rrc", 0, 0.5, False)  # ImageNet-style

DATASET_INFO: dict[str, DatasetInfo] = {
    # digits: statistics of the 32×32 upsampled train split
    "digits": DatasetInfo("digits", 10, 1, 8, (0.3051,), (0.3235,), True, _DIGITS_DEFAULTS),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                           _CIFAR_DEFAULTS),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                            _CIFAR_DEFAULTS),
    "imagefolder": DatasetInfo("imagefolder", None, 3, None, IMAGENET_MEAN, IMAGENET_STD, False, _PHOTO_DEFAULTS),
    # synthetic patterns are smooth 4x4 grids: trained like digits (no flip needed to learn them)
    "synthetic": DatasetInfo("synthetic", None, 3, None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True,
                             _DIGITS_DEFAULTS),
}


class DataRootError(ValueError):
    """A dataset that needs a directory got none, or one that does not exist or lacks the expected layout.

    Why its own type: the directory is set differently by each command (``data.root=DIR`` for ``train``,
    ``--data-root DIR`` for ``eval`` and ``quantize``), so the builders record *what* is wrong (the
    dataset, the directory, the layout expected) and each caller words the fix with its own flag through
    :meth:`message`. ``str(exc)`` uses the training config's ``data.root=DIR``.
    """

    def __init__(self, dataset: str, layout: str, root: str | Path | None = None, problem: str | None = None) -> None:
        self.dataset = dataset
        self.layout = layout
        self.root = None if root is None else str(root)
        self.problem = problem
        super().__init__(self.message("data.root"))

    def message(self, flag: str, *, origin: str | None = None) -> str:
        """The error in one line, naming ``flag`` as the way to set the directory.

        ``flag`` is a command-line option (``--data-root``: written ``--data-root DIR``) or a config key
        (``data.root``: written ``data.root=DIR``); ``origin`` says where the directory came from (e.g.
        a run's config.yaml) when the user did not type it.
        """
        syntax = f"{flag} DIR" if flag.startswith("-") else f"{flag}=DIR"
        if self.root is None:
            return f"{self.dataset} needs {syntax}: {self.layout}"
        where = f" (recorded in {origin})" if origin else ""
        return f"{self.dataset} data root {self.root}{where} {self.problem or 'is unusable'}; set {syntax}: {self.layout}"


def _build_digits(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, TensorImageDataset]:
    return load_digits_splits(image_size=image_size, seed=int(kw.get("seed", 0)))


def _build_cifar(name: str) -> Callable[..., dict[str, TensorImageDataset]]:
    def build(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, TensorImageDataset]:
        spec = _CIFAR[name]
        layout = f"a directory holding {spec.archive} or its extracted {spec.folder}/ (or the archive itself)"
        if root is None:
            raise DataRootError(name, layout)
        if not Path(root).expanduser().exists() and not kw.get("download", False):
            raise DataRootError(name, layout, root, "does not exist")
        loaded = load_cifar_splits(root, name, ("train", "test"), download=bool(kw.get("download", False)))
        full, test = loaded["train"], loaded["test"]
        val_size = int(kw.get("val_size", CIFAR_VAL_SIZE))
        train_idx, val_idx = stratified_split(full.labels, val_size, CIFAR_VAL_SEED)
        splits = {
            "train": full.subset(train_idx),
            "val": full.subset(val_idx),
            "test": test,
        }
        if image_size != 32:
            max_bytes = int(kw.get("max_bytes", 4 << 30))
            total = sum(len(d) for d in splits.values()) * 3 * image_size * image_size
            if total > max_bytes:
                raise ValueError(
                    f"{name} at {image_size}px needs {total / 2**30:.1f} GiB of uint8 memory (> max_bytes); "
                    "keep image_size=32 and resize on the device (BatchAugment(size=...), "
                    "eval_preprocess(size=...)) instead"
                )
            for k, d in splits.items():
                splits[k] = d._replace(resize_images(d.images, image_size), d.labels)
        return splits

    return build


def _build_imagefolder(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, ImageFolderDataset]:
    layout = "a directory holding train/<class>/<images> and val/<class>/<images> (test/ optional)"
    if root is None:
        raise DataRootError("imagefolder", layout)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataRootError("imagefolder", layout, root, "does not exist" if not root.exists() else "is not a directory")
    missing = [split for split in ("train", "val") if not (root / split).is_dir()]
    if missing:
        raise DataRootError("imagefolder", layout, root, f"has no {' or '.join(f'{m}/' for m in missing)} folder")
    crop_pct = float(kw.get("crop_pct", 0.875))
    interpolation = str(kw.get("interpolation", "bilinear"))
    common = {"on_bad_image": kw.get("on_bad_image", "skip"), "verify": bool(kw.get("verify_images", False))}
    train = ImageFolderDataset(
        root / "train", train_transform(image_size, interpolation=interpolation), **common
    )
    ev = eval_transform(image_size, crop_pct, interpolation)
    val = ImageFolderDataset(root / "val", ev, classes=train.classes, **common)
    test = (
        ImageFolderDataset(root / "test", ev, classes=train.classes, **common)
        if (root / "test").is_dir()
        else val
    )
    return {"train": train, "val": val, "test": test}


def _build_synthetic(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, SyntheticDataset]:
    seed = int(kw.get("seed", 0))
    sizes = tuple(kw.get("synthetic_sizes", (2048, 512, 512)))
    num_classes = int(kw.get("num_classes") or 10)
    channels = int(kw.get("channels") or 3)
    learnable = bool(kw.get("learnable", True))
    return {
        split: make_synthetic(
            n, num_classes, image_size, channels, seed * 3 + k + 1, learnable, pattern_seed=seed
        )
        for k, (split, n) in enumerate(zip(("train", "val", "test"), sizes))
    }


#: name → builder ``(root, image_size, **options) -> {"train", "val", "test"}``.
DATASETS: dict[str, Callable[..., dict[str, Any]]] = {
    "digits": _build_digits,
    "cifar10": _build_cifar("cifar10"),
    "cifar100": _build_cifar("cifar100"),
    "imagefolder": _build_imagefolder,
    "synthetic": _build_synthetic,
}


def build_datasets(
    name: str,
    root: str | Path | None = None,
    image_size: int = 32,
    *,
    seed: int = 0,
    download: bool = False,
    val_size: int = CIFAR_VAL_SIZE,
    num_classes: int | None = None,
    channels: int | None = None,
    synthetic_sizes: tuple[int, int, int] = (2048, 512, 512),
    learnable: bool = True,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
    on_bad_image: str = "skip",
    verify_images: bool = False,
) -> dict[str, Any]:
    """Build the ``"train"``, ``"val"`` and ``"test"`` datasets for ``name``.

    * ``digits``: :func:`load_digits_splits` (1257/180/360), upsampled to ``image_size``; no root.
    * ``cifar10`` / ``cifar100``: "test" is the official 10000-image test set; "val" is a stratified
      ``val_size`` (default 5000) carve-out of the official train set with the fixed seed
      :data:`CIFAR_VAL_SEED` = 0 (independent of ``seed``), "train" the other 45000 — so model
      selection never sees the test set.  ``image_size != 32`` resizes the tensors once (bounded by a
      memory check); prefer resizing on the device.
    * ``imagefolder``: ``root/train`` and ``root/val`` (ImageNet layout); "test" is ``root/test`` when
      it exists, otherwise **the same dataset as "val"** (ImageNet has no public labelled test set).
    * ``synthetic``: :class:`SyntheticDataset` splits of ``synthetic_sizes`` sharing class patterns.

    Unknown names raise ValueError with the closest registered name.
    """
    if name not in DATASETS:
        hint = did_you_mean(name, DATASETS)
        raise ValueError(f"unknown dataset {name!r}{hint} (available: {', '.join(DATASETS)})")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return DATASETS[name](
        root,
        int(image_size),
        seed=seed,
        download=download,
        val_size=val_size,
        num_classes=num_classes,
        channels=channels,
        synthetic_sizes=synthetic_sizes,
        learnable=learnable,
        crop_pct=crop_pct,
        interpolation=interpolation,
        on_bad_image=on_bad_image,
        verify_images=verify_images,
    )


def test_split_label(datasets: dict[str, Any]) -> str:
    """What the ``"test"`` split of :func:`build_datasets` really is: ``"test"``, or
    ``"val (no test/ folder)"`` when an image folder has no ``test/`` and the validation split stands in.

    Callers print it and record it (``summary.json``), so a figure measured on the split that also chose
    the best epoch is never reported as a held-out test result.
    """
    return "val (no test/ folder)" if datasets.get("test") is datasets.get("val") else "test"


# --------------------------------------------------------------------------------------------------
# the hot-path loader for tensor datasets
# --------------------------------------------------------------------------------------------------


class TensorLoader:
    """Batches straight out of an in-memory :class:`TensorImageDataset` on ``device``.

    Each epoch indexes the (device-resident) tensors with a permutation drawn from a
    ``torch.Generator`` seeded with ``seed + epoch`` — reproducible, and different every epoch.  Like
    ``DistributedSampler``, :meth:`set_epoch` selects the epoch; if it is never called, every
    ``iter()`` advances the epoch by one.  With ``world_size > 1`` the permutation (the same on every
    rank) is padded by wrapping around to a multiple of ``world_size`` and rank ``r`` takes every
    ``world_size``-th index from ``r``, so all ranks see the same number of batches (a requirement of
    DDP) and together cover the dataset.  Yields ``(uint8 images, int64 labels)`` on ``device``.
    """

    def __init__(
        self,
        dataset: TensorImageDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(dataset, TensorImageDataset):
            raise ValueError(f"TensorLoader needs a TensorImageDataset, got {type(dataset).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.dataset = dataset.to(device) if device is not None else dataset
        self.device = self.dataset.device
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        return math.ceil(len(self.dataset) / self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self, epoch: int | None = None) -> Tensor:
        """This rank's sample order for ``epoch`` (default: the next one)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            total = self.num_samples * self.world_size
            if total > n:
                order = torch.cat([order, order[: total - n]])
            order = order[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.indices().to(self.device)
        self.epoch += 1
        images, labels = self.dataset.images, self.dataset.labels
        n = order.numel()
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield images.index_select(0, idx), labels.index_select(0, idx)
