"""Evaluation and prediction from saved weights or any exported / quantized artefact.

Preprocessing is read from the weights' metadata (``config.json``) or the artefact's metadata
(:mod:`mobilenets.deploy.runtimes`), so an ONNX, TorchScript, ``.pt2``, ExecuTorch or OpenVINO file is
evaluated on exactly the inputs its PyTorch weights would see. The data comes from the training run's
``config.yaml`` when there is one beside the weights (dataset, its directory, the split sizes), so
``mobilenets eval RUN`` needs no ``--data-root`` for the data the run was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..weights import from_pretrained, read_config
from .stages import StageLog, as_stage_log
from .train import _device_batches, evaluate, make_batches, resolve_device

__all__ = ["RecordedData", "build_eval_datasets", "evaluate_weights", "predict_images", "recorded_data"]

DATA_ROOT_FLAG = "--data-root"
"""The option of ``eval`` and ``quantize`` that sets the dataset directory (named in their errors)."""


@dataclass(frozen=True)
class RecordedData:
    """The ``data`` section a training run recorded in its ``config.yaml``.

    Why: the run directory already knows where its dataset lives and how it was split (CIFAR's
    validation carve-out size, the synthetic split sizes); evaluating or quantizing it should reuse
    that instead of asking again, or silently use a different split.
    """

    config_path: Path
    name: str | None
    root: str | None
    val_size: int | None = None
    synthetic_size: int | None = None
    model_num_classes: int | None = None


def recorded_data(source: str | Path | None) -> RecordedData | None:
    """The data settings of the training run that produced ``source`` (a run directory, or a file in
    one), read from its ``config.yaml``; ``None`` when there is none or it cannot be read.

    The YAML is read as plain data, not as a :class:`~mobilenets.config.TrainConfig`: a run written by
    another version may hold keys this one does not know, and only the ``data`` section matters here.
    """
    if source is None:
        return None
    path = Path(source)
    if path.is_file():
        path = path.parent
    config = path / "config.yaml"
    if not config.is_file():
        return None
    try:
        raw = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return None
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}

    def _int(value: Any) -> int | None:
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    root = data.get("root")
    return RecordedData(
        config_path=config, name=str(data["name"]) if data.get("name") else None,
        root=str(root) if root not in (None, "") else None, val_size=_int(data.get("val_size")),
        synthetic_size=_int(data.get("synthetic_size")), model_num_classes=_int(model.get("num_classes")),
    )


def build_eval_datasets(
    source: str | Path | None,
    *,
    data: str | None,
    root: str | None,
    known_dataset: str | None,
    image_size: int,
    crop_pct: float,
    interpolation: str,
    num_classes: int | None = None,
) -> tuple[str, str | None, dict[str, Any]]:
    """The datasets to evaluate or calibrate a model on: ``(dataset name, root used, splits)``.

    ``data`` / ``root`` are what the user passed (``--data`` / ``--data-root``); unset, they come from
    the weights' metadata (``known_dataset``) and the run's ``config.yaml`` beside ``source``. A
    missing or unusable directory is a one-line ``ValueError`` naming ``--data-root DIR`` (and the
    config.yaml the directory was read from, when the user did not type it).
    """
    from ..data.registry import DataRootError, build_datasets

    recorded = recorded_data(source)
    dataset = data or known_dataset or (recorded.name if recorded else None)
    if dataset is None:
        raise ValueError(f"{source} names no dataset in its metadata; pass --data NAME (e.g. --data cifar10)")
    same = recorded is not None and recorded.name == dataset
    origin = None
    if root is None and same and recorded is not None and recorded.root:
        root, origin = recorded.root, f"{recorded.config_path} as data.root"
    options: dict[str, Any] = {}
    if same and recorded is not None:
        if recorded.val_size is not None:
            options["val_size"] = recorded.val_size
        if recorded.synthetic_size is not None:  # the sizes engine.train.build_data derives from it
            n = recorded.synthetic_size
            options["synthetic_sizes"] = (n, max(n // 4, 1), max(n // 4, 1))
    if dataset == "synthetic":  # as engine.train builds it: the model's class count, 3 channels
        options["num_classes"] = num_classes
    try:
        datasets = build_datasets(dataset, root, image_size, crop_pct=crop_pct, interpolation=interpolation,
                                  **options)
    except DataRootError as exc:
        raise ValueError(exc.message(DATA_ROOT_FLAG, origin=origin)) from None
    return dataset, root, datasets


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
            "or an exported artefact (.onnx, .pt, .pt2, .pte, .xml)"
        )
    return path


def _is_artifact(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() and path.name not in ("model.safetensors", "config.json")


class _Loaded:
    """A model to evaluate: PyTorch weights or an artefact's predictor, with its preprocessing."""

    def __init__(self, weights: str | Path, device: torch.device) -> None:
        if _is_artifact(weights) or (not Path(weights).exists() and Path(weights).suffix):
            from ..deploy.runtimes import load_artifact

            predictor = load_artifact(weights)
            meta = predictor.metadata
            self.source = Path(weights)
            self.model: nn.Module = predictor.as_module()
            self.device = torch.device("cpu")  # every artefact runtime here runs on the CPU
            self.cfg = {"input_size": meta.input_size, "mean": meta.mean, "std": meta.std,
                        "crop_pct": meta.crop_pct, "interpolation": meta.interpolation}
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
    """Top-1/top-5, per-class accuracy and a confusion-matrix PNG on a split.

    ``weights``: a weights / run directory, or an exported or quantized artefact (run on the CPU by its
    own runtime). ``data`` / ``root`` default to what the weights and the run's ``config.yaml`` record.
    ``plot=False`` skips the confusion-matrix PNG. ``log`` reports progress over the batches (stderr in
    the CLI), described as ``evaluating <label>``. The result's ``split`` says what the figure was
    measured on: ``"val (no test/ folder)"`` when an image folder's missing ``test/`` made ``"test"``
    the validation split.
    """
    from ..analysis.plots import plot_confusion_matrix
    from ..data.augment import BatchAugment
    from ..data.registry import test_split_label

    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} invalid; expected a positive integer")
    stages = as_stage_log(log)
    loaded = _Loaded(weights, resolve_device(device))
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
    result = evaluate(model, _counted(_device_batches(batches, dev, False), progress), pre,
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


def predict_images(
    images: list[str], weights: str | Path, *, topk: int = 5, device: str = "auto"
) -> list[dict[str, Any]]:
    """Top-k class names and probabilities for each image file (weights directory or any artefact)."""
    from ..data.augment import eval_preprocess
    from ..data.folder import eval_transform, load_rgb

    loaded = _Loaded(weights, resolve_device(device))
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
