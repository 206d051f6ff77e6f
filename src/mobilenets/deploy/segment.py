"""Segmenters after any runtime: :class:`Segmenter`, mIoU of a split, the colour overlay.

A segmenter's artefact holds one graph output, the per-pixel logits at the input size
(:class:`~mobilenets.deploy.fuse.SegmentationGraph`); everything around it runs here, identically for the
eager model and every runtime: uint8 or float images are scaled to 0..1, normalised with the artefact's
mean / std, resized to its input size, and the logits are resized back to each image's own size before
the argmax. So an ONNX or int8 file is scored by the same steps as its PyTorch weights.

Scores come from :class:`mobilenets.engine.seg_metrics.ConfusionMatrix` (exact integer counts, pixels at
the split's ``ignore_index`` counted nowhere), the metrics the training engine reports.

A split is any object with the segmentation protocol: ``num_classes``, ``classes``, ``ignore_index``,
``__len__`` and ``__getitem__(i) -> (uint8 image [C, S, S], uint8 mask [S, S])``, with an optional fast
path ``batch(indices)``. :func:`segmentation_datasets` is the one place that builds splits from a
dataset name (the seam to the data registry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.seg_metrics import IGNORE_INDEX, ConfusionMatrix
from ..engine.stages import StageLog, as_stage_log
from .fuse import SegmentationGraph, is_segmenter
from .metadata import ArtifactError, ArtifactMetadata
from .predictor import Predictor

__all__ = [
    "Segmenter",
    "calibration_images",
    "colorize",
    "evaluate_segmenter",
    "iter_split",
    "overlay",
    "save_overlay",
    "segmentation_datasets",
    "segmentation_figures",
    "voc_palette",
]

Images = torch.Tensor | Sequence[torch.Tensor]


# ------------------------------------------------------------------------------------- the segmenter
def _as_float_batch(images: Images, in_chans: int) -> list[torch.Tensor]:
    """Images as float ``[C, H, W]`` in 0..1: uint8 is divided by 255, float is taken as 0..1 already."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            items = [images]
        elif images.ndim == 4:
            items = list(images.unbind(0))
        else:
            raise ValueError(f"expected images of shape ({in_chans}, H, W) or (N, {in_chans}, H, W), got "
                             f"{tuple(images.shape)}")
    else:
        items = list(images)
    if not items:
        raise ValueError("images is empty; expected a list of [C, H, W] tensors or an [N, C, H, W] tensor")
    out = []
    for img in items:
        if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != in_chans:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"expected images of shape ({in_chans}, H, W), got {shape}")
        if img.dtype == torch.uint8:
            img = img.float().div(255)
        elif not img.is_floating_point():
            raise TypeError(f"expected uint8 images or float images in 0..1, got dtype {img.dtype}")
        out.append(img.float())
    return out


class Segmenter(nn.Module):
    """Per-pixel labels from an eager segmenter or a loaded segmenter artefact, the same way for both.

    ``source``: a segmentation model (``is_segmenter``: output ``{"out": [N, K, H, W]}``), a
    :class:`~mobilenets.deploy.predictor.Predictor` of a segmenter artefact, or a path for
    :func:`~mobilenets.deploy.runtimes.load_artifact`. Images are uint8 (0..255) or float (0..1)
    ``[C, H, W]`` of any size, a list of them or an ``[N, C, H, W]`` batch; each is normalised with the
    model's / artefact's mean and std and resized (bilinear) to its input size, and the logits are
    resized back to the image's size. ``size``: the square side to run at (an eager model only; default
    the model's ``pretrained_cfg`` input size; ``0`` runs each image at its own size).
    """

    def __init__(self, source: nn.Module | Predictor | str | Path, *, size: int | None = None) -> None:
        super().__init__()
        if isinstance(source, str | Path):
            from .runtimes import load_artifact

            source = load_artifact(source)
        self.model: nn.Module | None = None
        self.predictor: Predictor | None = None
        if isinstance(source, Predictor):
            meta = source.metadata
            if meta.task != "segment":
                raise ArtifactError(f"{source.path} is a {meta.task} artefact, not a segmenter (metadata task "
                                    f"{meta.task!r}); export a segmentation model's weights")
            if size is not None:
                raise ValueError(f"size={size} invalid for an artefact: its graph takes {meta.input_size[1:]} only")
            self.predictor = source
            self.image_size: tuple[int, int] | None = (int(meta.input_size[1]), int(meta.input_size[2]))
            self.mean, self.std = tuple(meta.mean), tuple(meta.std)
            self.num_classes = int(meta.num_classes)
            self.in_chans = int(meta.input_size[0])
            self.class_names = meta.class_names
            self.runtime = source.runtime
            # A parameter so ``next(segmenter.parameters()).device`` works (every artefact runtime is the CPU).
            self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        elif isinstance(source, nn.Module):
            if isinstance(source, Segmenter):
                raise TypeError("source is already a Segmenter")
            if not is_segmenter(source):
                raise ValueError(f"{type(source).__name__} is not a segmenter (expected a model with task "
                                 "'segment' or a segmenter artefact)")
            cfg = dict(getattr(source, "pretrained_cfg", {}) or {})
            self.in_chans = int(getattr(source, "in_chans", 3))
            self.model = source if isinstance(source, SegmentationGraph) else SegmentationGraph(source)
            self.model.eval()
            side = int(size if size is not None else (cfg.get("input_size") or (0, 0, 0))[-1])
            if side < 0:
                raise ValueError(f"size={size} invalid; expected a positive side or 0 (each image's own size)")
            self.image_size = (side, side) if side else None
            self.mean = tuple(float(v) for v in cfg.get("mean", (0.0,) * self.in_chans))
            self.std = tuple(float(v) for v in cfg.get("std", (1.0,) * self.in_chans))
            self.num_classes = int(getattr(source, "num_classes", 0))
            inner = getattr(source, "model", source)
            self.class_names = getattr(source, "class_names", None) or getattr(inner, "class_names", None)
            self.runtime = "eager"
        else:
            raise TypeError(f"Segmenter takes a segmentation model, a Predictor or an artefact path, not "
                            f"{type(source).__name__}")
        # Eval mode from the start: evaluation loops restore the mode they found, which must not be training.
        self.eval()

    @property
    def device(self) -> torch.device:
        if self.model is not None:
            p = next(self.model.parameters(), None)
            return p.device if p is not None else torch.device("cpu")
        return torch.device("cpu")

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        if self.model is not None:
            return self.model(x.to(self.device)).float()
        assert self.predictor is not None
        return self.predictor(x)

    @torch.no_grad()
    def logits(self, images: Images) -> list[torch.Tensor]:
        """Per-pixel logits ``[K, H, W]`` of each image at its own size (one list entry per image)."""
        items = _as_float_batch(images, self.in_chans)
        m = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        s = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in items]
        prepared = []
        for img in items:
            img = (img.cpu() - m) / s
            if self.image_size is not None and tuple(img.shape[-2:]) != self.image_size:
                img = F.interpolate(img[None], size=self.image_size, mode="bilinear", align_corners=False)[0]
            prepared.append(img)
        same = len({tuple(p.shape) for p in prepared}) == 1
        if same:
            raw = list(self._network(torch.stack(prepared).contiguous()).cpu().unbind(0))
        else:  # an eager model at each image's own size: one call per size
            raw = [self._network(p[None].contiguous()).cpu()[0] for p in prepared]
        out = []
        for logit, hw in zip(raw, sizes):
            if tuple(logit.shape[-2:]) != hw:
                logit = F.interpolate(logit[None], size=hw, mode="bilinear", align_corners=False)[0]
            out.append(logit)
        return out

    @torch.no_grad()
    def predict(self, images: Images) -> tuple[torch.Tensor | list[torch.Tensor], list[torch.Tensor]]:
        """``(label maps, logits)``: int64 ``[N, H, W]`` when every image has one size (a list of ``[H, W]``
        otherwise), and the per-image logits ``[K, H, W]``."""
        logits = self.logits(images)
        labels = [lg.argmax(0) for lg in logits]
        if len({tuple(lb.shape) for lb in labels}) == 1:
            return torch.stack(labels), logits
        return labels, logits

    def forward(self, images: Images) -> torch.Tensor | list[torch.Tensor]:
        """Label maps (int64 class indices): ``[N, H, W]``, or a list for images of different sizes."""
        return self.predict(images)[0]


# ------------------------------------------------------------------------------------- data and mIoU
def iter_split(dataset: Any, batch_size: int, *, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(uint8 images [B, C, S, S], masks [B, S, S])`` batches of a split in order (its ``batch`` fast path
    when it has one); ``limit`` caps the number of images."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} invalid; expected a positive integer")
    n = len(dataset) if limit is None else min(len(dataset), int(limit))
    fast = getattr(dataset, "batch", None)
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        if callable(fast):
            images, masks = fast(idx)
        else:
            pairs = [dataset[i] for i in idx]
            images = torch.stack([torch.as_tensor(p[0]) for p in pairs])
            masks = torch.stack([torch.as_tensor(p[1]) for p in pairs])
        yield images, masks


def evaluate_segmenter(source: nn.Module | Predictor | str | Path, dataset: Any, *, batch_size: int = 32,
                       log: StageLog | Callable[[str], None] | None = None, label: str = "") -> dict[str, Any]:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU of a segmenter (or segmenter artefact, or
    a :class:`Segmenter`) on one split, from one exactly accumulated confusion matrix.

    The split's ``ignore_index`` (default 255) marks pixels that count nowhere; its ``classes`` name the
    per-class IoUs. Returns :func:`~mobilenets.engine.seg_metrics.segmentation_scores`' keys plus ``n``
    (images), ``task`` (``segment``), ``class_names`` and ``runtime``.
    """
    segmenter = source if isinstance(source, Segmenter) else Segmenter(source)
    k = int(getattr(dataset, "num_classes", len(getattr(dataset, "classes", []) or [])))
    if k != segmenter.num_classes:
        raise ValueError(f"the segmenter predicts {segmenter.num_classes} classes (background included) but the "
                         f"split has {k}")
    channels = int(getattr(dataset, "num_channels", segmenter.in_chans))
    if channels != segmenter.in_chans:
        raise ValueError(f"the segmenter expects {segmenter.in_chans}-channel images but the split has {channels}")
    names = list(getattr(dataset, "classes", None) or segmenter.class_names or [str(i) for i in range(k)])
    cm = ConfusionMatrix(k, int(getattr(dataset, "ignore_index", IGNORE_INDEX)))
    stages = as_stage_log(log)
    steps = -(-len(dataset) // batch_size) if batch_size > 0 else 0
    progress = stages.counted(steps, f"evaluating {label or segmenter.runtime}")
    n = 0
    for images, masks in iter_split(dataset, batch_size):
        labels = segmenter(images)
        preds = labels if isinstance(labels, torch.Tensor) else torch.cat([lb.reshape(-1) for lb in labels])
        cm.update(preds.reshape(-1), masks.reshape(-1).long())
        n += int(images.shape[0])
        progress.update(int(images.shape[0]))
    result = cm.scores(names)
    progress.close(f"evaluated {label or segmenter.runtime}: mIoU {result['miou']:.3f} pixel acc "
                   f"{result['pixel_acc']:.3f} ({progress.elapsed:.1f}s)")
    result.update(n=n, task="segment", class_names=names, runtime=segmenter.runtime)
    return result


def segmentation_figures(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline figures of an evaluation result (what a report keeps)."""
    if result is None:
        return None
    return {k: result.get(k) for k in ("miou", "pixel_acc", "mean_acc", "per_class_iou", "n")}


def calibration_images(meta: ArtifactMetadata, dataset: Any, *, batches: int, batch_size: int) -> list[torch.Tensor]:
    """Normalised calibration batches at the model's input size from a segmentation split (the training one):
    exactly what :class:`Segmenter` feeds the graph."""
    c, h, w = meta.input_size
    mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(meta.std, dtype=torch.float32).view(1, -1, 1, 1)
    out = []
    for images, _ in iter_split(dataset, batch_size, limit=batches * batch_size):
        if images.shape[1] != c:
            raise ValueError(f"calibration images have {images.shape[1]} channels; the model takes {c}")
        x = (images.float().div(255) - mean) / std
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        out.append(x.contiguous())
    if not out:
        raise ValueError("the segmentation training split is empty; nothing to calibrate on")
    return out


def segmentation_datasets(source: str | Path | None, *, data: str | None, root: str | None,
                          known_dataset: str | None, image_size: int) -> tuple[str, str | None, dict[str, Any]]:
    """A segmenter's splits (``train``/``val``/``test``, each with the segmentation protocol): ``data``, or
    the dataset the weights / artefact (``known_dataset``) or the run's ``config.yaml`` beside ``source``
    record, built by the data registry with ``task="segment"`` at the pixel size the run trained on
    (else ``image_size``, the model's input side).

    The one seam between deployment and the data registry: tests (and callers with their own split
    objects) pass splits to :func:`evaluate_segmenter` directly instead.
    """
    from ..engine.evaluate import build_eval_datasets, recorded_data

    recorded = recorded_data(source)
    same = recorded is not None and recorded.name == (data or known_dataset or recorded.name)
    size = recorded.image_size if same and recorded is not None and recorded.image_size else int(image_size)
    return build_eval_datasets(source, data=data, root=root, known_dataset=known_dataset, image_size=int(size),
                               crop_pct=1.0, interpolation="bilinear", task="segment")


# ------------------------------------------------------------------------------------- overlay
def voc_palette(n: int = 256) -> np.ndarray:
    """Pascal VOC's colour map, ``[n, 3]`` uint8: class 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..., 255
    (224, 224, 192) for VOC's ignore border; each class index's bits spread over the three channels."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def _mask_array(mask: Any, num_classes: int) -> np.ndarray:
    arr = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if arr.ndim != 2:
        raise ValueError(f"mask shape {arr.shape} invalid; expected (H, W) class indices")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"mask dtype {arr.dtype} invalid; expected integer class indices")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | ((arr >= num_classes) & (arr != IGNORE_INDEX))
    if bad.any():
        raise ValueError(f"mask value {int(arr[bad][0])} invalid; expected 0..{num_classes - 1} or "
                         f"{IGNORE_INDEX} (ignore)")
    return arr


def colorize(mask: Any, num_classes: int) -> np.ndarray:
    """A label map ``[H, W]`` as a VOC-palette RGB image ``[H, W, 3]`` uint8 (255, ignore, in VOC's border colour)."""
    return voc_palette()[_mask_array(mask, num_classes)]


def _image_array(image: Any) -> np.ndarray:
    """An image as ``[H, W, 3]`` uint8: PIL, uint8 / float (0..1) tensors or arrays, CHW or HWC, 1 or 3 channels."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3) and t.shape[-1] not in (1, 3):
            t = t.permute(1, 2, 0)
        arr = t.numpy()
    else:
        arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"image shape {arr.shape} invalid; expected (H, W), (H, W, 1|3) or (1|3, H, W)")
    if arr.dtype != np.uint8:
        if arr.dtype.kind != "f":
            raise ValueError(f"image dtype {arr.dtype} invalid; expected uint8 or float in 0..1")
        arr = np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def overlay(image: Any, mask: Any, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """``image`` with ``mask``'s classes blended in their VOC colours: uint8 RGB ``[H, W, 3]``.

    Background (class 0) is transparent, so the image shows where nothing was found; every other class
    (and the ignore value 255) is blended as ``(1 - alpha) * image + alpha * colour``. A grey image
    becomes RGB. The mask must have the image's height and width.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha={alpha} invalid; expected 0..1")
    img = _image_array(image)
    labels = _mask_array(mask, num_classes)
    if labels.shape != img.shape[:2]:
        raise ValueError(f"mask size {labels.shape} differs from image size {img.shape[:2]}")
    colours = voc_palette()[labels].astype(np.float32)
    blended = (1.0 - alpha) * img.astype(np.float32) + alpha * colours
    out = np.where((labels != 0)[..., None], np.round(blended), img.astype(np.float32))
    return out.clip(0, 255).astype(np.uint8)


def save_overlay(path: str | Path, image: Any, mask: Any, num_classes: int, alpha: float = 0.5) -> Path:
    """Write :func:`overlay` as an image file (PNG unless the suffix says otherwise); returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, mask, num_classes, alpha)).save(path)
    return path
