"""Evaluation and prediction from saved weights, a run directory or any exported / quantized artefact.

What ``mobilenets eval`` and ``mobilenets predict`` call. Preprocessing is read from the weights'
metadata (``config.json``) or the artefact's metadata (:mod:`mobilenets.deploy.metadata`), so an ONNX,
TorchScript, ``.pt2``, ExecuTorch or OpenVINO file is evaluated on exactly the inputs its PyTorch
weights would see. The data comes from the training run's ``config.yaml`` when there is one beside the
weights (:func:`mobilenets.engine.evaluate.build_eval_datasets`); the loop is
:func:`mobilenets.engine.evaluate.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.loader import device_batches, make_batches
from ..engine.evaluate import build_eval_datasets, evaluate, evaluate_detection, recorded_data
from ..engine.runtime import resolve_device
from ..engine.stages import StageLog, as_stage_log
from ..weights import from_pretrained, read_config
from .fuse import is_segmenter

__all__ = ["draw_detections", "evaluate_weights", "predict_images"]


def _counted(batches: Any, progress: Any) -> Iterator[Any]:
    """Pass batches through, counting each on ``progress`` (images per step, for its img/s)."""
    for batch in batches:
        yield batch
        progress.update(int(batch[0].shape[0]))


def _weights_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in ("model.safetensors", "config.json"):
        path = path.parent
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} has no config.json: expected a training run directory, a save_pretrained directory "
            "or an exported artefact (.onnx, .pt, .pt2, .pte, .xml, .tflite, .ncnn.param, .mnn)"
        )
    return path


def _is_artifact(path: str | Path) -> bool:
    path = Path(path)
    if path.suffix.lower() == ".mlpackage":  # Core ML packages are directories
        return True
    return path.is_file() and path.name not in ("model.safetensors", "config.json")


class _Loaded:
    """A model to evaluate: PyTorch weights or an artefact's predictor, with its preprocessing."""

    def __init__(self, weights: str | Path, device: torch.device) -> None:
        if _is_artifact(weights) or (not Path(weights).exists() and Path(weights).suffix):
            from .runtimes import load_artifact

            predictor = load_artifact(weights)
            meta = predictor.metadata
            self.source = Path(weights)
            self.model: nn.Module = predictor.as_module()
            self.device = torch.device("cpu")  # every artefact runtime here runs on the CPU
            self.cfg = {"input_size": meta.input_size, "mean": meta.mean, "std": meta.std,
                        "crop_pct": meta.crop_pct, "interpolation": meta.interpolation, "task": meta.task}
            if meta.task == "detect":  # the artefact's graph, then the shared NMS: the eager model's interface
                from .detect import Detector

                self.model = Detector(predictor)
            elif meta.task == "segment":  # label maps at each image's size, like the eager segmenter's
                from .segment import Segmenter

                self.model = Segmenter(predictor)
            self.task = meta.task
            self.dataset = meta.dataset
            self.class_names = meta.class_names
            self.num_classes = meta.num_classes
            self.in_chans = meta.input_size[0]
            self.runtime = predictor.runtime
            # The weights directory it was exported from (its config.yaml says where the data is).
            self.run_source: Path | None = Path(meta.source) if meta.source else None
            return
        wdir = _weights_dir(weights)
        config = read_config(wdir)
        self.source = wdir
        self.device = device
        self.model = from_pretrained(wdir).to(device).eval()
        self.cfg = self.model.pretrained_cfg
        self.dataset = config.get("dataset")
        self.class_names = getattr(self.model, "class_names", None)
        self.num_classes = self.model.num_classes
        self.in_chans = self.model.in_chans
        self.runtime = "pytorch"
        self.run_source = wdir
        self.task = str(self.cfg.get("task") or "classify")
        if is_segmenter(self.model):
            from .segment import Segmenter

            self.task = "segment"
            self.model = Segmenter(self.model)

    @property
    def is_detector(self) -> bool:
        return self.task == "detect"

    @property
    def is_segmenter(self) -> bool:
        return self.task == "segment"


def evaluate_weights(
    weights: str | Path,
    *,
    data: str | None = None,
    root: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    device: str = "auto",
    out_dir: str | Path | None = None,
    plot: bool = True,
    log: StageLog | Callable[[str], None] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Top-1/top-5, per-class accuracy and a confusion-matrix PNG on a split; for a detector COCO box AP
    (``map``, ``map50``, ...), for a segmenter ``miou``, ``pixel_acc``, ``mean_acc`` and ``per_class_iou``
    (:func:`mobilenets.deploy.segment.evaluate_segmenter`).

    ``weights``: a weights / run directory, or an exported or quantized artefact (run on the CPU by its
    own runtime). ``data`` / ``root`` default to what the weights and the run's ``config.yaml`` record.
    ``plot=False`` skips the confusion-matrix PNG. ``log`` reports progress over the batches (stderr in
    the CLI), described as ``evaluating <label>``. The result's ``split`` says what the figure was
    measured on: ``"val (no test/ folder)"`` when an image folder's missing ``test/`` made ``"test"``
    the validation split.
    """
    from ..data.augment import BatchAugment
    from ..data.registry import test_split_label
    from ..engine.plots import plot_confusion_matrix

    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} invalid; expected a positive integer")
    stages = as_stage_log(log)
    loaded = _Loaded(weights, resolve_device(device))
    if loaded.is_detector:
        return _evaluate_detector(loaded, data=data, root=root, split=split, batch_size=batch_size, stages=stages,
                                  label=label)
    if loaded.is_segmenter:
        return _evaluate_segmenter(loaded, data=data, root=root, split=split, batch_size=batch_size, stages=stages,
                                   label=label)
    wdir, dev, model, cfg = loaded.source, loaded.device, loaded.model, loaded.cfg
    size = int(cfg["input_size"][-1])
    dataset, _, datasets = build_eval_datasets(
        loaded.run_source, data=data, root=root, known_dataset=loaded.dataset, image_size=size,
        crop_pct=float(cfg.get("crop_pct") or 1.0), interpolation=str(cfg.get("interpolation") or "bilinear"),
        num_classes=loaded.num_classes,
    )
    if split not in datasets:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(datasets)}")
    split_label = test_split_label(datasets) if split == "test" else split
    ds = datasets[split]
    classes = list(getattr(ds, "classes", []) or loaded.class_names or [])
    if loaded.num_classes != len(classes):
        raise ValueError(f"{wdir} predicts {loaded.num_classes} classes but {dataset} has {len(classes)}")
    channels = getattr(ds, "num_channels", 3)
    if channels != loaded.in_chans:
        raise ValueError(f"{wdir} expects {loaded.in_chans}-channel images but {dataset} has {channels}")
    batches, n_batches = make_batches(ds, batch_size, shuffle=False, seed=0, device=dev, device_resident=True,
                                      num_workers=0)
    pre = BatchAugment(mean=cfg["mean"], std=cfg["std"]).to(dev).eval()
    desc = f"evaluating {label or loaded.runtime} on {dataset}/{split_label}"
    progress = stages.counted(n_batches, desc)
    result = evaluate(model, _counted(device_batches(batches, dev), progress), pre,
                      num_classes=loaded.num_classes, confusion=True)
    progress.close(f"{desc}: {progress.step}/{n_batches} batches, top-1 {result['acc1']:.2f}% "
                   f"({progress.elapsed:.1f}s)")
    png = None
    if plot:
        # An artefact's PNG goes beside the file (its name included), a weights directory's inside it.
        default = wdir.parent / f"{wdir.name}.confusion_{split}.png" if wdir.is_file() else wdir / f"confusion_{split}.png"
        png = Path(out_dir) / f"confusion_{split}.png" if out_dir else default
        png.parent.mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(result["confusion"], classes, png,
                              title=f"{dataset} {split_label}: top-1 {result['acc1']:.2f}%")
    result.update(weights=str(wdir), dataset=dataset, split=split_label, class_names=classes,
                  confusion_png=str(png) if png else None, runtime=loaded.runtime)
    return result


def _evaluate_detector(loaded: _Loaded, *, data: str | None, root: str | None, split: str, batch_size: int,
                       stages: StageLog, label: str | None) -> dict[str, Any]:
    """COCO box metrics of a detector's weights on a split (at the pixel size its run trained on)."""
    from ..data.detection import make_detection_batches
    from ..data.registry import test_split_label
    from ..engine.task import detection_preprocess

    wdir, dev, model, cfg = loaded.source, loaded.device, loaded.model, loaded.cfg
    recorded = recorded_data(loaded.run_source)
    size = recorded.image_size if recorded and recorded.image_size else int(cfg["input_size"][-1])
    dataset, _, datasets = build_eval_datasets(loaded.run_source, data=data, root=root, known_dataset=loaded.dataset,
                                               image_size=size, crop_pct=1.0, interpolation="bilinear",
                                               num_classes=loaded.num_classes)
    if split not in datasets:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(datasets)}")
    split_label = test_split_label(datasets) if split == "test" else split
    ds = datasets[split]
    classes = list(ds.classes)
    if loaded.num_classes != len(classes):
        raise ValueError(f"{wdir} predicts {loaded.num_classes} classes (background included) but {dataset} has "
                         f"{len(classes)}")
    batches, n_batches = make_detection_batches(ds, batch_size, shuffle=False, seed=0, device=dev, drop_last=False,
                                                rank=0, world_size=1, num_workers=0)
    pre = detection_preprocess().to(dev)
    desc = f"evaluating {label or loaded.runtime} on {dataset}/{split_label}"
    progress = stages.counted(n_batches, desc)
    result = evaluate_detection(model, _counted(device_batches(batches, dev), progress), pre, dataset=ds)
    progress.close(f"{desc}: {progress.step}/{n_batches} batches, mAP {result['map']:.3f} AP50 {result['map50']:.3f} "
                   f"({progress.elapsed:.1f}s)")
    result.update(weights=str(wdir), dataset=dataset, split=split_label, class_names=classes, runtime=loaded.runtime,
                  task="detect")
    return result


def _evaluate_segmenter(loaded: _Loaded, *, data: str | None, root: str | None, split: str, batch_size: int,
                        stages: StageLog, label: str | None) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU of segmenter weights or a segmenter artefact on a split
    (:func:`mobilenets.deploy.segment.evaluate_segmenter`, at the pixel size its run trained on)."""
    from ..data.registry import test_split_label
    from .segment import evaluate_segmenter, segmentation_datasets

    dataset, _, datasets = segmentation_datasets(loaded.run_source, data=data, root=root, known_dataset=loaded.dataset,
                                                 image_size=int(loaded.cfg["input_size"][-1]))
    if split not in datasets:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(datasets)}")
    split_label = test_split_label(datasets) if split == "test" else split
    result = evaluate_segmenter(loaded.model, datasets[split], batch_size=batch_size, log=stages,
                                label=f"{label or loaded.runtime} on {dataset}/{split_label}")
    result.update(weights=str(loaded.source), dataset=dataset, split=split_label, runtime=loaded.runtime)
    return result


def _predict_segmentation(loaded: _Loaded, images: list[str], *, out: str | Path | None) -> list[dict[str, Any]]:
    """Per image: the fraction of its pixels given to each class found; the colour overlay written to ``out``."""
    from .segment import save_overlay

    names = loaded.class_names or [str(i) for i in range(loaded.num_classes)]
    results = []
    for path in images:
        img, x = _read_image(path, loaded.in_chans)
        labels = loaded.model([x])[0]
        counts = torch.bincount(labels.reshape(-1), minlength=loaded.num_classes)
        total = int(counts.sum())
        found = {names[i]: float(c) / total for i, c in enumerate(counts.tolist()) if c}
        item: dict[str, Any] = {"image": str(path), "classes": found, "size": [int(labels.shape[0]), int(labels.shape[1])]}
        if out is not None:
            item["out"] = str(save_overlay(_out_path(out, path, len(images) > 1), img, labels, loaded.num_classes))
        results.append(item)
    return results


def draw_detections(image: Any, detections: list[dict[str, Any]], path: str | Path) -> Path:
    """Write ``image`` (PIL) with each detection's box and ``class score`` label drawn on it (PNG)."""
    from PIL import ImageDraw

    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    palette = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
               (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))
    for det in detections:
        colour = palette[det["label"] % len(palette)]
        x0, y0, x1, y1 = det["box"]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=max(1, round(min(canvas.size) / 200)))
        text = f"{det['class']} {det['score']:.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text)
        ty = y0 - (bottom - top) - 2 if y0 - (bottom - top) - 2 >= 0 else y0 + 1
        draw.rectangle((x0, ty, x0 + right - left + 2, ty + bottom - top + 2), fill=colour)
        draw.text((x0 + 1, ty), text, fill=(255, 255, 255))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _out_path(out: str | Path, image: str | Path, several: bool) -> Path:
    """``--out``: the file itself for one image; for several, a directory holding ``<stem>.png`` each."""
    return Path(out) / f"{Path(image).stem}.png" if several else Path(out)


def _read_image(path: str | Path, in_chans: int) -> tuple[Any, torch.Tensor]:
    """An image file as the PIL image (grey for a 1-channel model) and its uint8 [C, H, W] tensor."""
    import numpy as np

    from ..data.folder import load_rgb

    img = load_rgb(path)
    if in_chans == 1:
        img = img.convert("L")
    arr = torch.from_numpy(np.array(img, dtype=np.uint8))
    return img, arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)


def _predict_detections(loaded: _Loaded, images: list[str], *, min_score: float,
                        out: str | Path | None) -> list[dict[str, Any]]:
    """Detections (boxes in the image's own pixels) above ``min_score`` per image; drawn to ``out``."""
    names = loaded.class_names or [str(i) for i in range(loaded.num_classes)]
    results = []
    for path in images:
        img, arr = _read_image(path, loaded.in_chans)
        x = arr.float().div(255).to(loaded.device)
        with torch.no_grad():
            det = loaded.model([x])[0]
        dets = [{"class": names[int(lab)], "label": int(lab), "score": float(sc), "box": [float(v) for v in box]}
                for box, sc, lab in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist())
                if sc >= min_score]
        item: dict[str, Any] = {"image": str(path), "detections": dets}
        if out is not None:
            item["out"] = str(draw_detections(img, dets, _out_path(out, path, len(images) > 1)))
        results.append(item)
    return results


def predict_images(
    images: list[str], weights: str | Path, *, topk: int = 5, device: str = "auto", min_score: float = 0.3,
    out: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Top-k class names and probabilities for each image file (weights directory or any artefact).

    A detector's weights give each image's ``detections`` instead (class, label, score, box xyxy in the
    image's pixels; those scoring at least ``min_score``), drawn onto a PNG at ``out`` when given. A
    segmenter's give ``classes`` (each class found: its fraction of the pixels) and, with ``out``, the
    VOC-colour overlay of the label map (:func:`mobilenets.deploy.segment.save_overlay`).
    """
    from ..data.augment import eval_preprocess
    from ..data.folder import eval_transform, load_rgb

    loaded = _Loaded(weights, resolve_device(device))
    if loaded.is_detector:
        return _predict_detections(loaded, images, min_score=min_score, out=out)
    if loaded.is_segmenter:
        return _predict_segmentation(loaded, images, out=out)
    dev, model, cfg = loaded.device, loaded.model, loaded.cfg
    size = int(cfg["input_size"][-1])
    transform = eval_transform(size, float(cfg.get("crop_pct") or 1.0), str(cfg.get("interpolation") or "bilinear"))
    names = loaded.class_names or [str(i) for i in range(loaded.num_classes)]
    k = max(1, min(topk, loaded.num_classes))
    out = []
    for path in images:
        img = load_rgb(path)
        if loaded.in_chans == 1:
            img = img.convert("L")
        x = transform(img).unsqueeze(0).to(dev)
        with torch.no_grad():
            probs = model(eval_preprocess(x, cfg["mean"], cfg["std"])).softmax(-1)[0]
        p, idx = probs.topk(k)
        out.append({"image": str(path), "top": [{"class": names[i], "index": int(i), "prob": float(q)}
                                                for q, i in zip(p.tolist(), idx.tolist())]})
    return out
