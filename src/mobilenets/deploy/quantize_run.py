"""``mobilenets quantize WEIGHTS``: int8 of a weights or run directory of any task, with its accuracy
before and after on the run's own data.

Why apart from :mod:`.quantize`: the int8 machinery there knows graphs and targets only; this module
knows what each task is scored by (a classifier's top-1, a detector's COCO AP50, a segmenter's mIoU) and
where its calibration images come from, through :mod:`.evaluate`, :mod:`.detect` and :mod:`.segment`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..engine.stages import StageLog, as_stage_log
from .export import artifact_size, load_model
from .formats import resolve_format
from .fuse import SegmentationGraph, is_detector, is_segmenter, prepare_for_export
from .metadata import ArtifactMetadata
from .quantize import METHODS, QUANT_TARGETS, QuantizeResult, _census, _load_data, quantize_model

__all__ = ["quantize_segmenter", "quantize_weights"]


def quantize_weights(
    weights: str | Path,
    *,
    method: str = "ptq",
    target: str = "x86",
    out: str | Path,
    calib_batches: int = 8,
    calib_batch_size: int = 32,
    data: str | None = None,
    root: str | None = None,
    split: str = "test",
    qat_epochs: int = 2,
    qat_lr: float = 1e-4,
    evaluate: bool = True,
    int8_io: bool = False,
    channels_last_io: bool = False,
    log: StageLog | Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize a weights / run directory and report float vs int8 top-1 on ``split`` of its dataset.

    ``data`` / ``root`` default to the dataset and directory the run's ``config.yaml`` records. ``log``
    hears every stage (loading, calibration n/N, export, lowering, evaluation n/N): the CLI prints them
    on stderr because the whole job takes minutes for some targets.
    """
    if calib_batches < 1:
        raise ValueError(f"--calib-batches {calib_batches} invalid; expected >= 1")
    if calib_batch_size < 1:
        raise ValueError(f"--calib-batch-size {calib_batch_size} invalid; expected >= 1")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    target = resolve_format(target, QUANT_TARGETS, "target")
    QUANT_TARGETS[target].check_installed()
    stages = as_stage_log(log)
    start = time.perf_counter()
    stages(f"loading weights {weights}")
    model = load_model(weights)
    if is_detector(model):
        return _quantize_detector(model, weights, method, target, out, data, root, split, calib_batches,
                                  calib_batch_size, evaluate, int8_io, channels_last_io, stages)
    if is_segmenter(model):
        return _quantize_segmenter(model, weights, method, target, out, data, root, split, calib_batches,
                                   calib_batch_size, evaluate, int8_io, channels_last_io, stages)
    graph = prepare_for_export(model)
    meta = ArtifactMetadata.from_model(graph, "weights", source=str(weights))
    d = _load_data(meta, data, root, calib_batches=calib_batches, batch_size=calib_batch_size, split=split,
                   source=weights)
    stages(f"loaded {len(d.calib)} calibration batches of up to {calib_batch_size} images from {d.dataset}/train")
    meta.dataset = d.dataset
    path = quantize_model(model, method, target, out, d.calib, meta=meta, train_batches=d.train,
                          int8_io=int8_io, channels_last_io=channels_last_io,
                          qat_epochs=qat_epochs, qat_lr=qat_lr, log=stages)
    seconds = time.perf_counter() - start
    stages(f"wrote {path} ({seconds:.1f}s)")
    float_acc = int8_acc = float("nan")
    if evaluate:
        from .evaluate import evaluate_weights

        float_acc = evaluate_weights(weights, data=d.dataset, root=d.root, split=split, plot=False, log=stages,
                                     label="float")["acc1"]
        int8_acc = evaluate_weights(path, data=d.dataset, root=d.root, split=split, plot=False, log=stages,
                                    label="int8")["acc1"]
    from ..weights import WEIGHTS_NAME

    wdir = Path(weights)
    float_size = (wdir / WEIGHTS_NAME).stat().st_size if (wdir / WEIGHTS_NAME).is_file() else 0
    return QuantizeResult(str(path), method, target, d.dataset, split, float_acc, int8_acc, artifact_size(path),
                          float_size, seconds, sum(int(x.shape[0]) for x in d.calib), _census(path))


def _quantize_detector(model: nn.Module, weights: str | Path, method: str, target: str, out: str | Path,
                       data: str | None, root: str | None, split: str, calib_batches: int, calib_batch_size: int,
                       evaluate: bool, int8_io: bool, channels_last_io: bool, stages: StageLog) -> QuantizeResult:
    """A detector's weights: calibrated on its dataset's training split; float vs int8 COCO AP50 (the
    result's figures, with mAP in ``metrics``) on ``split`` through :mod:`mobilenets.deploy.detect`."""
    from ..weights import WEIGHTS_NAME
    from .detect import calibration_images, coco_figures, detection_datasets, evaluate_detector

    if method != "ptq":
        raise ValueError(f"--method {method} is not available for a detector (QAT fine-tunes a classification "
                         "loss); use --method ptq")
    start = time.perf_counter()
    meta = ArtifactMetadata.from_model(model, "weights", source=str(weights))
    dataset, _, splits = detection_datasets(meta, data=data, root=root, source=weights)
    if split not in splits:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(splits)}")
    meta.dataset = dataset
    calib = calibration_images(meta, splits["train"], batches=calib_batches, batch_size=calib_batch_size)
    stages(f"loaded {len(calib)} calibration batches of up to {calib_batch_size} images from {dataset}/train")
    path = quantize_model(model, "ptq", target, out, calib, meta=meta, int8_io=int8_io,
                          channels_last_io=channels_last_io, log=stages)
    seconds = time.perf_counter() - start
    figures = {k: coco_figures(evaluate_detector(src, splits[split], log=stages, label=k) if evaluate else None)
               for k, src in (("float", model), ("int8", path))}
    ap50 = [100 * float(f["map50"]) if f else float("nan") for f in figures.values()]
    wfile = Path(weights) / WEIGHTS_NAME
    return QuantizeResult(str(path), "ptq", target, dataset, split, ap50[0], ap50[1], artifact_size(path),
                          wfile.stat().st_size if wfile.is_file() else 0, seconds, sum(int(x.shape[0]) for x in calib),
                          _census(path), metric="AP50", metrics=figures)


def _quantize_segmenter(model: nn.Module, weights: str | Path, method: str, target: str, out: str | Path,
                        data: str | None, root: str | None, split: str, calib_batches: int, calib_batch_size: int,
                        evaluate: bool, int8_io: bool, channels_last_io: bool, stages: StageLog) -> QuantizeResult:
    """A segmenter's weights: calibrated on its dataset's training split; float vs int8 mIoU (points, the
    result's figures, with pixel accuracy and per-class IoU in ``metrics``) on ``split`` through
    :mod:`mobilenets.deploy.segment`."""
    from ..weights import WEIGHTS_NAME
    from .segment import segmentation_datasets

    if method != "ptq":
        raise ValueError(f"--method {method} is not available for a segmenter (QAT fine-tunes a classification "
                         "loss); use --method ptq")
    meta = ArtifactMetadata.from_model(SegmentationGraph(model), "weights", source=str(weights))
    dataset, _, splits = segmentation_datasets(weights, data=data, root=root, known_dataset=meta.dataset,
                                               image_size=meta.input_size[-1])
    if split not in splits:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(splits)}")
    meta.dataset = dataset
    result = quantize_segmenter(model, target, out, splits["train"], splits[split] if evaluate else None,
                                meta=meta, calib_batches=calib_batches, calib_batch_size=calib_batch_size,
                                int8_io=int8_io, channels_last_io=channels_last_io, log=stages)
    wfile = Path(weights) / WEIGHTS_NAME
    result.dataset, result.split = dataset, split
    result.float_size_bytes = wfile.stat().st_size if wfile.is_file() else 0
    return result


def quantize_segmenter(
    model: nn.Module, target: str, out: str | Path, train: Any, test: Any | None, *,
    meta: ArtifactMetadata | None = None, calib_batches: int = 8, calib_batch_size: int = 32,
    int8_io: bool = False, channels_last_io: bool = False, eval_batch_size: int = 32,
    log: StageLog | Callable[[str], None] | None = None,
) -> QuantizeResult:
    """int8 PTQ of an in-memory segmenter calibrated on ``train``'s images, with float and int8 mIoU on
    ``test`` (any splits with the segmentation protocol; ``test=None`` skips the evaluation).

    The figures are mIoU in points (``float_acc1`` / ``int8_acc1``; ``drop`` is the loss), the full scores
    of both in ``metrics``, so the target's cost is read in the unit segmentation reports.
    """
    from .segment import calibration_images, evaluate_segmenter, segmentation_figures

    stages = as_stage_log(log)
    start = time.perf_counter()
    base = meta or ArtifactMetadata.from_model(SegmentationGraph(model), "weights")
    calib = calibration_images(base, train, batches=calib_batches, batch_size=calib_batch_size)
    stages(f"loaded {len(calib)} calibration batches of up to {calib_batch_size} images from the training split")
    path = quantize_model(model, "ptq", target, out, calib, meta=base, int8_io=int8_io,
                          channels_last_io=channels_last_io, log=stages)
    seconds = time.perf_counter() - start
    figures = {k: segmentation_figures(evaluate_segmenter(src, test, batch_size=eval_batch_size, log=stages, label=k)
                                       if test is not None else None)
               for k, src in (("float", model), ("int8", path))}
    miou = [100 * float(f["miou"]) if f else float("nan") for f in figures.values()]
    return QuantizeResult(str(path), "ptq", target, base.dataset or "", "test", miou[0], miou[1], artifact_size(path),
                          0, seconds, sum(int(x.shape[0]) for x in calib), _census(path), metric="mIoU",
                          metrics=figures)
