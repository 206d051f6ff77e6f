"""Evaluation and prediction from saved weights, with preprocessing read from the weights' metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..weights import from_pretrained, read_config
from .train import _device_batches, evaluate, make_batches, resolve_device

__all__ = ["evaluate_weights", "predict_images"]


def _weights_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in ("model.safetensors", "config.json"):
        path = path.parent
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} has no config.json: expected a training run directory or a save_pretrained directory"
        )
    return path


def evaluate_weights(
    weights: str | Path,
    *,
    data: str | None = None,
    root: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    device: str = "auto",
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Top-1/top-5, per-class accuracy and a confusion-matrix PNG for a weights directory on a split."""
    from ..analysis.plots import plot_confusion_matrix
    from ..data.augment import BatchAugment
    from ..data.datasets import build_datasets

    wdir = _weights_dir(weights)
    config = read_config(wdir)
    dev = resolve_device(device)
    model = from_pretrained(wdir).to(dev).eval()
    dataset = data or config.get("dataset")
    if dataset is None:
        raise ValueError(f"{wdir}/config.json names no dataset; pass --data")
    cfg = model.pretrained_cfg
    size = int(cfg["input_size"][-1])
    datasets = build_datasets(dataset, root, size, crop_pct=float(cfg.get("crop_pct") or 1.0),
                              interpolation=str(cfg.get("interpolation") or "bilinear"))
    if split not in datasets:
        raise ValueError(f"split {split!r} not available for {dataset}; expected one of {sorted(datasets)}")
    ds = datasets[split]
    classes = list(getattr(ds, "classes", []) or getattr(model, "class_names", []) or [])
    if model.num_classes != len(classes):
        raise ValueError(f"{wdir} predicts {model.num_classes} classes but {dataset} has {len(classes)}")
    channels = getattr(ds, "num_channels", 3)
    if channels != model.in_chans:
        raise ValueError(f"{wdir} expects {model.in_chans}-channel images but {dataset} has {channels}")
    batches, _ = make_batches(ds, batch_size, shuffle=False, seed=0, device=dev, device_resident=True, num_workers=0)
    pre = BatchAugment(mean=cfg["mean"], std=cfg["std"]).to(dev).eval()
    result = evaluate(model, _device_batches(batches, dev, False), pre, num_classes=model.num_classes, confusion=True)
    png = Path(out_dir or wdir) / f"confusion_{split}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(result["confusion"], classes, png, title=f"{dataset} {split}: top-1 {result['acc1']:.2f}%")
    result.update(weights=str(wdir), dataset=dataset, split=split, class_names=classes, confusion_png=str(png))
    return result


def predict_images(
    images: list[str], weights: str | Path, *, topk: int = 5, device: str = "auto"
) -> list[dict[str, Any]]:
    """Top-k class names and probabilities for each image file."""
    from ..data.augment import eval_preprocess
    from ..data.datasets import eval_transform, load_rgb

    wdir = _weights_dir(weights)
    dev = resolve_device(device)
    model = from_pretrained(wdir).to(dev).eval()
    cfg = model.pretrained_cfg
    size = int(cfg["input_size"][-1])
    transform = eval_transform(size, float(cfg.get("crop_pct") or 1.0), str(cfg.get("interpolation") or "bilinear"))
    names = getattr(model, "class_names", None) or [str(i) for i in range(model.num_classes)]
    k = max(1, min(topk, model.num_classes))
    out = []
    for path in images:
        img = load_rgb(path)
        if model.in_chans == 1:
            img = img.convert("L")
        x = transform(img).unsqueeze(0).to(dev)
        with torch.no_grad():
            probs = model(eval_preprocess(x, cfg["mean"], cfg["std"])).softmax(-1)[0]
        p, idx = probs.topk(k)
        out.append({"image": str(path), "top": [{"class": names[i], "index": int(i), "prob": float(q)}
                                                for q, i in zip(p.tolist(), idx.tolist())]})
    return out
