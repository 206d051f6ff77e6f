"""ImageNet-style folders (``root/<class>/<images>``): they don't fit in memory, so
:class:`ImageFolderDataset` decodes with PIL in DataLoader workers and only does the per-sample work
that must happen before batching (decode + crop/resize to a fixed size)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .augment.geometry import rrc_box

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
        i, j, ch, cw = rrc_box(h, w, scale, ratio, generator)
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
