"""Detectors after any runtime: :class:`Detector`, the export check on final detections, int8 of a detector.

A detector's artefact holds the network and the box decoding with static shapes
(:class:`~mobilenets.deploy.fuse.DetectionGraph`: one ``[N, A, 4 + C]`` output); what depends on the
data (score threshold, top-k, NMS per class) runs here, after the runtime, in
:func:`mobilenets.models.detection.boxes.postprocess`, the very function the eager ``SSDLite.forward``
uses. So eager PyTorch and every runtime share one NMS, and an export is judged both on the graph's
outputs (1e-4) and on the detections they lead to (same labels and count, boxes within 1e-3 px).

Evaluation reuses the engine's pieces (:func:`mobilenets.engine.evaluate.evaluate_detection`, which
scores with :func:`mobilenets.engine.coco_eval.coco_evaluate`): :func:`evaluate_detector` only feeds it
a :class:`Detector`, so an int8 file and its float weights are measured by the same loop as training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.stages import StageLog, as_stage_log
from ..models.detection.boxes import postprocess
from .fuse import is_detector
from .metadata import POSTPROCESS_KEYS, ArtifactError, ArtifactMetadata
from .predictor import Predictor

__all__ = [
    "BOX_TOLERANCE_PX",
    "Detector",
    "calibration_images",
    "coco_figures",
    "compare_detections",
    "detection_datasets",
    "evaluate_detector",
    "transform_images",
    "verify_detections",
]

BOX_TOLERANCE_PX = 1e-3
"""Largest box-corner difference (pixels of the images given) an fp32 export's detections may show."""
SCORE_TIE = 1e-4
"""Scores this close to the lowest kept one are ties at the cut (:func:`compare_detections`)."""

Images = torch.Tensor | Sequence[torch.Tensor]


def transform_images(images: Images, size_hw: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                     in_chans: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Normalise, then resize images in 0..1 to ``size_hw`` (bilinear): ``SSDLite.transform``'s steps, from
    an artefact's metadata. Returns the batch and each image's original ``(h, w)``."""
    items = list(images.unbind(0)) if isinstance(images, torch.Tensor) and images.ndim == 4 else list(images)
    if not items:
        raise ValueError("images is empty; expected a list of [C, H, W] tensors or an [N, C, H, W] tensor")
    for img in items:
        if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != in_chans:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"expected images of shape ({in_chans}, H, W), got {shape}")
        if not img.is_floating_point():
            raise TypeError(f"expected float images in 0..1, got dtype {img.dtype}; divide uint8 images by 255")
    ref = items[0]
    m = torch.tensor(mean, dtype=ref.dtype, device=ref.device)[:, None, None]
    s = torch.tensor(std, dtype=ref.dtype, device=ref.device)[:, None, None]
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in items]
    out = []
    for img in items:
        img = (img - m) / s
        if tuple(img.shape[-2:]) != tuple(size_hw):
            img = F.interpolate(img[None], size=tuple(size_hw), mode="bilinear", align_corners=False)[0]
        out.append(img)
    return torch.stack(out), sizes


class Detector(nn.Module):
    """Detections from an eager detector or a loaded detector artefact, the same way for both.

    ``source``: an ``SSDLite`` (any model with ``transform`` / ``decoded`` and ``task: detect``), a
    :class:`~mobilenets.deploy.predictor.Predictor` of a detector artefact, or a path for
    :func:`~mobilenets.deploy.runtimes.load_artifact`. ``detector(images)`` takes a list of float
    ``[C, H, W]`` images in 0..1 (any sizes) or an ``[N, C, H, W]`` tensor and returns one
    ``{"boxes" (xyxy, the image's own pixels), "scores", "labels"}`` per image. Post-processing
    settings default to what the model / metadata records; keywords override them.
    """

    def __init__(self, source: nn.Module | Predictor | str | Path, **settings: Any) -> None:
        super().__init__()
        if isinstance(source, str | Path):
            from .runtimes import load_artifact

            source = load_artifact(source)
        unknown = sorted(set(settings) - set(POSTPROCESS_KEYS))
        if unknown:
            raise ValueError(f"unknown post-processing settings {unknown}; expected {', '.join(POSTPROCESS_KEYS)}")
        self.model: nn.Module | None = None
        self.predictor: Predictor | None = None
        if isinstance(source, Predictor):
            meta = source.metadata
            if meta.task != "detect":
                raise ArtifactError(f"{source.path} is a {meta.task} artefact, not a detector (metadata task "
                                    f"{meta.task!r}); export a detector's weights")
            self.predictor = source
            self.settings = {**(meta.postprocess or {}), **settings}
            self.image_size = (int(meta.input_size[1]), int(meta.input_size[2]))
            self.class_names = meta.class_names
            self.runtime = source.runtime
            # A parameter so ``next(detector.parameters()).device`` works (every artefact runtime is the CPU).
            self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        elif isinstance(source, nn.Module):
            if not is_detector(source):
                raise ValueError(f"{type(source).__name__} is not a detector (expected an SSDLite or a detector "
                                 "artefact)")
            self.model = source.eval()
            self.settings = {**{k: getattr(source, k) for k in POSTPROCESS_KEYS}, **settings}
            self.image_size = tuple(int(v) for v in source.image_size)  # type: ignore[assignment]
            self.class_names = getattr(source, "class_names", None)
            self.runtime = "eager"
        else:
            raise TypeError(f"Detector takes a detector model, a Predictor or an artefact path, not "
                            f"{type(source).__name__}")
        # Eval mode from the start: evaluation loops restore the mode they found, which must not be training.
        self.eval()

    def raw(self, images: Images) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Decoded boxes ``[N, A, 4]`` (model-input pixels), probabilities ``[N, A, C]`` and the image sizes."""
        if self.model is not None:
            x, sizes = self.model.transform(images)
            boxes, scores = self.model.decoded(x)
            return boxes, scores, sizes
        assert self.predictor is not None
        meta = self.predictor.metadata
        x, sizes = transform_images(images, self.image_size, meta.mean, meta.std, meta.input_size[0])
        out = self.predictor(x)
        h, w = self.image_size
        boxes = out[..., :4] * out.new_tensor([w, h, w, h])
        return boxes, out[..., 4:], sizes

    @torch.no_grad()
    def forward(self, images: Images) -> list[dict[str, torch.Tensor]]:
        boxes, scores, sizes = self.raw(images)
        detections = postprocess(boxes, scores, **self.settings)
        s_h, s_w = self.image_size
        for det, (h, w) in zip(detections, sizes):
            if (h, w) != (s_h, s_w):  # exactly SSDLite.forward's rescaling
                det["boxes"] = det["boxes"] * det["boxes"].new_tensor([w / s_w, h / s_h, w / s_w, h / s_h])
        return detections


# ------------------------------------------------------------------------------------- verification
def compare_detections(want: list[dict[str, torch.Tensor]], got: list[dict[str, torch.Tensor]],
                       tolerance: float = BOX_TOLERANCE_PX) -> tuple[float, str | None]:
    """``(max box difference in px, the first mismatch or None)`` of two detection lists.

    Per image: the same number of detections, and each detection of ``want`` paired with one of ``got``
    of the same label whose box is within ``tolerance`` (paired by best match, so two detections whose
    scores tie to float rounding may come in either order). A detection may go unpaired only at the cut of
    the ranking: when its score and those of the other list's unpaired ones are within
    :data:`SCORE_TIE` of the lowest score either list kept, two runtimes' rounding decided which of the
    candidates tied for the last places (the 300th of 300, or the score threshold) was kept.
    """
    worst = 0.0
    if len(want) != len(got):
        return float("inf"), f"{len(got)} images' detections for {len(want)}"
    for i, (a, b) in enumerate(zip(want, got)):
        na, nb = len(a["labels"]), len(b["labels"])
        if na != nb:
            return float("inf"), f"image {i}: {nb} detections instead of {na}"
        if na == 0:
            continue
        diff = (a["boxes"].float()[:, None, :] - b["boxes"].float()[None, :, :]).abs().amax(-1)
        diff = diff.masked_fill(a["labels"][:, None] != b["labels"][None, :], float("inf"))
        used = torch.zeros(nb, dtype=torch.bool)
        unpaired: list[tuple[int, float]] = []
        for j in range(na):
            row = diff[j].masked_fill(used, float("inf"))
            k = int(row.argmin())
            if not float(row[k]) <= tolerance:
                unpaired.append((j, float(row[k])))
                continue
            used[k] = True
            worst = max(worst, float(row[k]))
        if not unpaired:
            continue
        cut = min(float(a["scores"].min()), float(b["scores"].min())) + SCORE_TIE
        at_cut = all(float(a["scores"][j]) <= cut for j, _ in unpaired) and bool((b["scores"][~used] <= cut).all())
        if not at_cut:
            j, dist = unpaired[0]
            return dist, (f"image {i}: detection {j} (label {int(a['labels'][j])}, box "
                          f"{[round(v, 2) for v in a['boxes'][j].tolist()]}) has no match within {tolerance:g} px")
    return worst, None


def _check_images(in_chans: int, size_hw: tuple[int, int], seed: int = 0) -> list[torch.Tensor]:
    """Two images in 0..1: one at the model's input size, one of another size (the rescaling path)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size_hw
    return [torch.rand(in_chans, h, w, generator=g), torch.rand(in_chans, h + h // 3, max(8, w - w // 4), generator=g)]


@torch.no_grad()
def verify_detections(path: str | Path, model: nn.Module, *, threads: int | None = None,
                      tolerance: float = BOX_TOLERANCE_PX) -> tuple[float, str | None, str]:
    """Final detections of the artefact at ``path`` vs the eager ``model`` through the shared post-processing,
    on two random images (one at the input size, one rescaled).

    Returns ``(largest box difference in px, the first mismatch or None, the runtime)``; ``export_model``
    reports a mismatch as a failed verification.
    """
    from .runtimes import load_artifact

    predictor = load_artifact(path, threads=threads)
    eager, exported = Detector(model), Detector(predictor)
    images = _check_images(predictor.metadata.input_size[0], exported.image_size)
    worst, problem = compare_detections(eager(images), exported(images), tolerance)
    return worst, problem, predictor.runtime


# ------------------------------------------------------------------------------------- data and mAP
def detection_datasets(meta: ArtifactMetadata, *, data: str | None, root: str | None,
                       source: str | Path | None) -> tuple[str, str | None, dict[str, Any]]:
    """A detector's dataset splits, as evaluation builds them: at the pixel size its run trained on
    (its ``config.yaml``), else at the model's input size."""
    from ..engine.evaluate import build_eval_datasets, recorded_data

    recorded = recorded_data(source)
    size = recorded.image_size if recorded and recorded.image_size else int(meta.input_size[-1])
    return build_eval_datasets(source, data=data, root=root, known_dataset=meta.dataset, image_size=int(size),
                               crop_pct=1.0, interpolation="bilinear", num_classes=meta.num_classes)


def _batches(dataset: Any, batch_size: int, *, shuffle: bool) -> Any:
    from ..data.detection import make_detection_batches

    return make_detection_batches(dataset, batch_size, shuffle=shuffle, seed=0, device="cpu", drop_last=False,
                                  rank=0, world_size=1, num_workers=0)


def calibration_images(meta: ArtifactMetadata, dataset: Any, *, batches: int, batch_size: int) -> list[torch.Tensor]:
    """Normalised calibration batches at the model's input size from a detection split (the training one)."""
    from ..engine.task import detection_preprocess

    loader, _ = _batches(dataset, batch_size, shuffle=True)
    pre = detection_preprocess()
    size_hw = (int(meta.input_size[1]), int(meta.input_size[2]))
    out = []
    for images, targets in loader:
        x, _ = pre(images, targets)
        out.append(transform_images(x, size_hw, meta.mean, meta.std, meta.input_size[0])[0].contiguous())
        if len(out) >= batches:
            break
    if not out:
        raise ValueError("the detection training split is empty; nothing to calibrate on")
    return out


def evaluate_detector(source: nn.Module | Predictor | str | Path, dataset: Any, *, batch_size: int = 32,
                      log: StageLog | Callable[[str], None] | None = None, label: str = "") -> dict[str, Any]:
    """COCO box metrics (``map``, ``map50``, ...) of a detector or detector artefact on one split, through
    the engine's :func:`~mobilenets.engine.evaluate.evaluate_detection` (the training loop's evaluation)."""
    from ..engine.evaluate import evaluate_detection
    from ..engine.task import detection_preprocess

    detector = source if isinstance(source, Detector) else Detector(source)
    loader, steps = _batches(dataset, batch_size, shuffle=False)
    stages = as_stage_log(log)
    progress = stages.counted(steps, f"evaluating {label or detector.runtime}")

    def counted() -> Any:
        for item in loader:
            progress.update(int(item[0].shape[0]))
            yield item

    result = evaluate_detection(detector, counted(), detection_preprocess(), dataset=dataset)
    progress.close(f"evaluated {label or detector.runtime}: mAP {result['map']:.3f} AP50 {result['map50']:.3f} "
                   f"({progress.elapsed:.1f}s)")
    result["runtime"] = detector.runtime
    return result


def coco_figures(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline COCO figures of an evaluation result (what a report keeps; per-class AP dropped)."""
    if result is None:
        return None
    return {k: result.get(k) for k in ("map", "map50", "map75", "map_small", "map_medium", "map_large", "n")}
