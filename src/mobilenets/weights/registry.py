"""The pretrained-weights registry: published ImageNet checkpoints by tag, fetched and verified.

A tag is ``<architecture>.<name>`` (``mobilenet_v3_large.tv_in1k``). Each entry records where the file
is published, how to verify it, which source format it is in, the ``create_model`` keywords that
reproduce the architecture it was trained with, its published ImageNet accuracy and its preprocessing.

Files live in the torch hub cache (``torch.hub.get_dir()/checkpoints``, i.e. ``$TORCH_HOME/hub/checkpoints``)
under the entry's ``filename``. A missing file is downloaded and verified before it is moved into place;
offline, the error names the URL, the file name and the directory to put it in.

Verification uses the strongest checksum the publisher gives: a full SHA-256 (Hugging Face LFS), the
SHA-256 prefix in the file name (torchvision and timm release files, the convention ``torch.hub``
checks), or Keras' published MD5. Files published without any checksum (Keras MobileNet V1/V2) are
refused unless ``MOBILENETS_ALLOW_UNVERIFIED=1`` is set (or ``allow_unverified=True`` is passed):
then the caller, not a checksum, vouches for the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from .._validate import did_you_mean
from ..constants import IMAGENET_MEAN_STD, TF_MEAN_STD
from ..fileio import DownloadError, download, file_digest, open_url
from ..models.native import WeightsError
from ..models.tables import MOBILENET_V4

__all__ = [
    "PretrainedEntry",
    "WeightsNotAvailable",
    "cache_dir",
    "fetch",
    "get_pretrained",
    "is_tag",
    "list_pretrained",
]

ALLOW_UNVERIFIED_ENV = "MOBILENETS_ALLOW_UNVERIFIED"


class WeightsNotAvailable(FileNotFoundError):
    """A registry file is neither cached nor downloadable (offline, or the server refused)."""


@dataclass(frozen=True)
class PretrainedEntry:
    """One published checkpoint."""

    tag: str
    arch: str
    source: str  # torchvision | timm | timm_tf | keras (see mobilenets.weights.sources)
    url: str
    filename: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    sha256_prefix: str | None = None
    md5: str | None = None
    num_classes: int = 1000
    top1: float | None = None
    top5: float | None = None
    box_map: float | None = None  # detectors: COCO val2017 box mAP@[.5:.95], in percent
    miou: float | None = None  # segmenters: mean IoU on their benchmark, in percent
    pixel_acc: float | None = None  # segmenters: pixel accuracy, in percent
    metrics_from: str = ""
    mean: tuple[float, ...] = IMAGENET_MEAN_STD[0]
    std: tuple[float, ...] = IMAGENET_MEAN_STD[1]
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    input_size: tuple[int, int, int] = (3, 224, 224)

    @property
    def verified(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix or self.md5)

    def apply_preprocessing(self, model: nn.Module) -> None:
        """Record the published preprocessing in ``model.pretrained_cfg`` (saved by save_pretrained)."""
        cfg = getattr(model, "pretrained_cfg", None)
        if not isinstance(cfg, dict):
            return
        cfg.update(tag=self.tag, source=self.source, interpolation=self.interpolation)
        if getattr(model, "in_chans", 3) == 3:
            cfg.update(mean=self.mean, std=self.std)
        if not getattr(getattr(model, "arch", None), "small_input", False):  # a 32x32 model keeps its size
            cfg.update(input_size=self.input_size, crop_pct=self.crop_pct)


def _tv(tag: str, arch: str, file: str, top1: float, top5: float, resize: int = 256) -> PretrainedEntry:
    return PretrainedEntry(
        tag, arch, "torchvision", f"https://download.pytorch.org/models/{file}", file,
        sha256_prefix=re.search(r"-([0-9a-f]{8})\.", file).group(1),  # type: ignore[union-attr]
        top1=top1, top5=top5, metrics_from="torchvision weights meta (ImageNet-1K val)",
        crop_pct=round(224 / resize, 4),
    )


_TIMM_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_TIMM_CSV = "timm results-imagenet.csv"
_TIMM_TF = {"width_convention": "timm", "pad_type": "same", "bn_eps": 1e-3}


def _timm_tf(tag: str, arch: str, file: str, top1: float, top5: float, **kwargs: Any) -> PretrainedEntry:
    return PretrainedEntry(
        tag, arch, "timm_tf", _TIMM_RELEASE + file, file, kwargs={**_TIMM_TF, **kwargs},
        sha256_prefix=re.search(r"-([0-9a-f]{8})\.", file).group(1),  # type: ignore[union-attr]
        top1=top1, top5=top5, metrics_from=_TIMM_CSV, mean=TF_MEAN_STD[0], std=TF_MEAN_STD[1],
    )


def _hf(repo: str, file: str = "model.safetensors") -> tuple[str, str]:
    return f"https://huggingface.co/timm/{repo}/resolve/main/{file}", f"{repo}{Path(file).suffix}"


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_KERAS_TF = {"pad_type": "same", "bn_eps": 1e-3}
_KERAS_V3_TABLE = "keras.applications MobileNetV3 docstring table"


def _keras(tag: str, arch: str, path: str, top1: float, top5: float | None, md5: str | None,
           metrics: str, **kwargs: Any) -> PretrainedEntry:
    return PretrainedEntry(
        tag, arch, "keras", _KERAS + path, Path(path).name, kwargs={**_KERAS_TF, **kwargs}, md5=md5,
        top1=top1, top5=top5, metrics_from=metrics, mean=TF_MEAN_STD[0], std=TF_MEAN_STD[1],
    )


_ENTRIES: tuple[PretrainedEntry, ...] = (
    # torchvision (IMAGENET1K_V1 / _V2 weights; the V2 recipe evaluates at resize 232, crop 224)
    _tv("mobilenet_v2.tv_in1k", "mobilenet_v2", "mobilenet_v2-b0353104.pth", 71.878, 90.286),
    _tv("mobilenet_v2.tv2_in1k", "mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", 72.154, 90.822, resize=232),
    _tv("mobilenet_v3_large.tv_in1k", "mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth", 74.042, 91.340),
    _tv("mobilenet_v3_large.tv2_in1k", "mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", 75.274, 92.566,
        resize=232),
    _tv("mobilenet_v3_small.tv_in1k", "mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668, 87.402),
    # torchvision's COCO detector (SSDLite320, MobileNetV3-Large with the reduced tail, inputs in [-1, 1]).
    # The full SHA-256 is the one projects pinning this file record; torchvision's file name carries its
    # first 8 digits, so a mistake here would show as a refused download, never as a wrong file accepted.
    PretrainedEntry("ssdlite320_mobilenet_v3_large.tv_coco", "ssdlite320_mobilenet_v3_large", "torchvision",
                    "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
                    "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
                    sha256="a79551df90c79834bcd3bb3845ef9d966b5449a3a9b2833ae8404778ca5d65d2",
                    sha256_prefix="a79551df", num_classes=91, box_map=21.3,
                    metrics_from="torchvision weights meta (COCO-val2017 box mAP)", mean=(0.5, 0.5, 0.5),
                    std=(0.5, 0.5, 0.5), crop_pct=1.0, input_size=(3, 320, 320)),
    # torchvision's segmenters (MobileNetV3-Large at output stride 16), trained on the COCO train2017 images
    # holding the 20 Pascal VOC categories and evaluated on COCO val2017 with VOC labels, at resize 520.
    *(PretrainedEntry(f"{arch}.tv_coco_voc", arch, "torchvision", f"https://download.pytorch.org/models/{file}", file,
                      kwargs=kwargs, sha256_prefix=file.rsplit("-", 1)[1][:8], num_classes=21, miou=miou,
                      pixel_acc=acc, metrics_from="torchvision weights meta (COCO-val2017-VOC-labels)",
                      crop_pct=1.0, input_size=(3, 520, 520))
      for arch, file, kwargs, miou, acc in (
          ("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large-d234d4ea.pth", {}, 57.9, 91.2),
          ("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth", {"aux_loss": True}, 60.3, 91.2),
      )),
    # timm, trained in PyTorch (Hugging Face files; SHA-256 from the hub's LFS pointers)
    PretrainedEntry("mobilenet_v3_large.timm_ra_in1k", "mobilenet_v3_large", "timm",
                    *_hf("mobilenetv3_large_100.ra_in1k"), kwargs={"width_convention": "timm", "bn_eps": 1e-5},
                    sha256="f425af34cc1cead2b5d6211f789a1f30b94835dc32f9c0fcc5a916e4fd2dde85",
                    top1=75.766, top5=92.538, metrics_from=_TIMM_CSV, interpolation="bicubic"),
    PretrainedEntry("mobilenet_v3_small.timm_lamb_in1k", "mobilenet_v3_small", "timm",
                    *_hf("mobilenetv3_small_100.lamb_in1k", "pytorch_model.bin"),
                    kwargs={"width_convention": "timm", "bn_eps": 1e-5},
                    sha256="c66054da8dbd3453fecb5c3c842faef8e4e1fcdc71d68208cb577388ae191c5f",
                    top1=67.656, top5=87.636, metrics_from=_TIMM_CSV, interpolation="bicubic"),
    PretrainedEntry("mobilenet_v3_small.timm_075_lamb_in1k", "mobilenet_v3_small", "timm",
                    *_hf("mobilenetv3_small_075.lamb_in1k"),
                    kwargs={"width_mult": 0.75, "width_convention": "timm", "bn_eps": 1e-5},
                    sha256="c56c9ffc148d94301a477d5678e6802d0251b22ff23376c396eacd737edad0b7",
                    top1=65.234, top5=85.446, metrics_from=_TIMM_CSV, interpolation="bicubic"),
    PretrainedEntry("mobilenet_v2.timm_ra_in1k", "mobilenet_v2", "timm", *_hf("mobilenetv2_100.ra_in1k"),
                    kwargs={"bn_eps": 1e-5},
                    sha256="55ea4fb3a96010b933710ebf44fc965b070d5cd054d3f35e44f2d1320b4a714e",
                    top1=72.976, top5=91.010, metrics_from=_TIMM_CSV, interpolation="bicubic"),
    PretrainedEntry("mobilenet_v1.timm_ra4_in1k", "mobilenet_v1", "timm",
                    *_hf("mobilenetv1_100.ra4_e3600_r224_in1k"), kwargs={"act": "relu6", "bn_eps": 1e-5},
                    metrics_from="no checksum or metric found; see the Hugging Face model card",
                    mean=TF_MEAN_STD[0], std=TF_MEAN_STD[1], interpolation="bicubic"),
    # timm's MobileNetV4 (the only published MNv4 weights; trained by timm, no checksum or metric recorded here)
    *(PretrainedEntry(f"mobilenet_v4_{variant}.timm_{recipe}", f"mobilenet_v4_{variant}", "timm",
                      *_hf(f"mobilenetv4_{variant}.{recipe}"),
                      metrics_from="no checksum or metric found; see the Hugging Face model card",
                      interpolation="bicubic", crop_pct=MOBILENET_V4[variant].crop_pct,
                      input_size=(3, MOBILENET_V4[variant].input_size, MOBILENET_V4[variant].input_size))
      for variant, recipe in (
          ("conv_small", "e2400_r224_in1k"),
          ("conv_medium", "e500_r256_in1k"),
          ("conv_large", "e600_r384_in1k"),
          ("hybrid_medium", "ix_e550_r256_in1k"),
          ("hybrid_large", "ix_e600_r384_in1k"),
      )),
    # Gemma 3n's vision encoder as timm republished it (Gemma license). One file for both architectures: the
    # encoder (forward returns the MSFA grid) and mobilenet_v5_300m (the grid pooled: 2048 features, no
    # classifier). Not a classifier, so no ImageNet metric; no checksum recorded here: flagged unverified.
    *(PretrainedEntry(f"{arch}.timm_gemma3n", arch, "timm", *_hf("mobilenetv5_300m.gemma3n"), num_classes=0,
                      metrics_from="no checksum or metric recorded; Gemma license, see the Hugging Face model card",
                      mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bicubic", crop_pct=1.0,
                      input_size=(3, 768, 768))
      for arch in ("mobilenet_v5_300m_enc", "mobilenet_v5_300m")),
    # timm's tf_ ports of the paper authors' TensorFlow weights
    _timm_tf("mobilenet_v3_large.timm_tf_in1k", "mobilenet_v3_large", "tf_mobilenetv3_large_100-427764d5.pth",
             75.516, 92.594),
    _timm_tf("mobilenet_v3_large.timm_tf_075_in1k", "mobilenet_v3_large", "tf_mobilenetv3_large_075-150ee8b0.pth",
             73.432, 91.352, width_mult=0.75),
    _timm_tf("mobilenet_v3_large.timm_tf_minimal_in1k", "mobilenet_v3_large",
             "tf_mobilenetv3_large_minimal_100-8596ae28.pth", 72.258, 90.638, minimalistic=True),
    _timm_tf("mobilenet_v3_small.timm_tf_in1k", "mobilenet_v3_small", "tf_mobilenetv3_small_100-37f49e2b.pth",
             67.918, 87.674),
    _timm_tf("mobilenet_v3_small.timm_tf_075_in1k", "mobilenet_v3_small", "tf_mobilenetv3_small_075-da427f52.pth",
             65.728, 86.126, width_mult=0.75),
    _timm_tf("mobilenet_v3_small.timm_tf_minimal_in1k", "mobilenet_v3_small",
             "tf_mobilenetv3_small_minimal_100-922a7843.pth", 62.890, 84.240, minimalistic=True),
    # Keras applications (MobileNet V1/V2 are published without a checksum; V3 with an MD5)
    _keras("mobilenet_v1.keras_in1k", "mobilenet_v1", "mobilenet/mobilenet_1_0_224_tf.h5", 70.4, 89.5, None,
           "keras.io applications table", act="relu6"),
    _keras("mobilenet_v2.keras_in1k", "mobilenet_v2",
           "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", 71.3, 90.1, None,
           "keras.io applications table"),
    _keras("mobilenet_v3_large.keras_in1k", "mobilenet_v3_large",
           "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float.h5", 75.6, None,
           "59e551e166be033d707958cf9e29a6a7", _KERAS_V3_TABLE, width_convention="keras"),
    _keras("mobilenet_v3_large.keras_minimalistic_in1k", "mobilenet_v3_large",
           "mobilenet_v3/weights_mobilenet_v3_large_minimalistic_224_1.0_float.h5", 72.3, None,
           "675e7b876c45c57e9e63e6d90a36599c", _KERAS_V3_TABLE, width_convention="keras", minimalistic=True),
    _keras("mobilenet_v3_small.keras_in1k", "mobilenet_v3_small",
           "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5", 68.1, None,
           "8768d4c2e7dee89b9d02b2d03d65d862", _KERAS_V3_TABLE, width_convention="keras"),
    _keras("mobilenet_v3_small.keras_minimalistic_in1k", "mobilenet_v3_small",
           "mobilenet_v3/weights_mobilenet_v3_small_minimalistic_224_1.0_float.h5", 61.9, None,
           "99cd97fb2fcdad2bf028eb838de69e37", _KERAS_V3_TABLE, width_convention="keras", minimalistic=True),
)
_REGISTRY: dict[str, PretrainedEntry] = {e.tag: e for e in _ENTRIES}


def list_pretrained(pattern: str = "*") -> list[str]:
    """Registered tags matching a shell-style pattern (``"mobilenet_v3_large.*"``), sorted."""
    import fnmatch

    return sorted(t for t in _REGISTRY if fnmatch.fnmatch(t, pattern))


def is_tag(name: str) -> bool:
    return isinstance(name, str) and name in _REGISTRY


def get_pretrained(tag: str) -> PretrainedEntry:
    if tag not in _REGISTRY:
        hint = did_you_mean(tag, _REGISTRY)
        raise ValueError(f"unknown pretrained tag {tag!r}{hint} (see mobilenets.list_pretrained())")
    return _REGISTRY[tag]


def cache_dir() -> Path:
    """Where registry files are kept: torch hub's checkpoint directory ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


# ---------------------------------------------------------------------------------------- fetching
def _open_url(url: str) -> BinaryIO:
    """The one network call (tests replace it); a generous timeout so a dead link fails rather than hangs."""
    return open_url(url, 60)  # https URLs from the registry (file:// in tests)


def _check(entry: PretrainedEntry, path: Path, allow_unverified: bool) -> None:
    """Compare ``path`` with the entry's checksum; refuse an entry that has none unless allowed."""
    if not entry.verified:
        if allow_unverified or os.environ.get(ALLOW_UNVERIFIED_ENV) == "1":
            return
        raise WeightsError(
            f"{entry.tag}: {entry.url} is published without a checksum, so {path.name} cannot be verified. "
            f"Set {ALLOW_UNVERIFIED_ENV}=1 (or pass allow_unverified=True) to trust it, or pass "
            "pretrained=PATH to a copy you trust"
        )
    expected = entry.sha256 or entry.sha256_prefix or entry.md5 or ""
    got = file_digest(path, "md5" if not (entry.sha256 or entry.sha256_prefix) else "sha256")
    if entry.sha256_prefix and not entry.sha256:
        got = got[: len(entry.sha256_prefix)]
    kind = "sha256" if entry.sha256 else "sha256 prefix" if entry.sha256_prefix else "md5"
    if got != expected:
        raise WeightsError(
            f"{path} failed its checksum ({kind} {got}, expected {expected} for {entry.url}): the download is "
            "corrupted or the file changed upstream; it was not used"
        )


def fetch(entry: PretrainedEntry, *, allow_unverified: bool = False, progress: bool = False) -> Path:
    """Path of the entry's file in the cache, downloading and verifying it first if needed.

    A download goes to a temporary file next to the target and is moved into place only after the
    checksum matched, so an interrupted or corrupted transfer never leaves a file that looks valid.
    """
    target = cache_dir() / entry.filename
    if target.is_file() and target.stat().st_size > 0:
        try:
            _check(entry, target, allow_unverified)
        except WeightsError as exc:
            raise WeightsError(f"{exc}. Delete {target} to download it again") from None
        return target
    try:
        download(entry.url, target, verify=lambda tmp: _check(entry, tmp, allow_unverified), opener=_open_url)
    except DownloadError as exc:
        raise WeightsNotAvailable(
            f"pretrained weights {entry.tag!r} are not in the cache and could not be downloaded ({exc.reason}). "
            f"Fetch {entry.url} and save it as {target} (directory {target.parent}, file name "
            f"{entry.filename}), or pass pretrained=PATH to a local copy"
        ) from None
    if progress:
        print(f"downloaded {entry.url} -> {target}")
    return target
