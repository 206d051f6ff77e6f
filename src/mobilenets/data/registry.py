"""The dataset registry: one :class:`DatasetInfo` per name (static facts, training defaults and the
builder), :func:`build_datasets` and the error a dataset's missing directory raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._validate import did_you_mean
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from .cifar import _CIFAR, CIFAR_VAL_SEED, CIFAR_VAL_SIZE, load_cifar_splits
from .folder import ImageFolderDataset, eval_transform, train_transform
from .synthetic import SyntheticDataset, make_synthetic
from .tensor import TensorImageDataset, load_digits_splits, resize_images, stratified_split


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
    """One registered dataset: the static facts a training config needs before loading anything, and
    ``build(root, image_size, **options) -> {"train", "val", "test"}`` that loads it."""

    name: str
    num_classes: int | None
    channels: int
    native_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_memory: bool
    defaults: TrainDefaults
    build: Callable[..., dict[str, Any]] = field(repr=False, compare=False)
    #: "classify" (labels per image), "detect" (boxes: :mod:`.detection`'s item and batch formats) or
    #: "segment" (masks: :mod:`.segmentation`'s); a training config's ``task: auto`` follows it.
    task: str = "classify"
    #: Every task the builder can build splits for (its ``task`` option picks one); ``task`` is the first.
    #: Empty: just ``task``.
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        tasks = tuple(self.tasks) or (self.task,)
        if self.task not in tasks:
            raise ValueError(f"dataset {self.name!r}: task {self.task!r} is not among its tasks {tasks}")
        object.__setattr__(self, "tasks", tasks)


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


def _build_digit_scenes(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, Any]:
    """Detection: the :class:`~.scenes.DigitScenes` themselves; segmentation (``task="segment"``): their
    :meth:`~.scenes.DigitScenes.as_segmentation` views (masks always kept, whatever ``scene_masks`` says)."""
    from .scenes import SCENE_SIZES, load_scene_splits

    sizes = tuple(kw.get("scene_sizes") or SCENE_SIZES)
    segment = kw.get("task") == "segment"
    splits = load_scene_splits(canvas=image_size, seed=int(kw.get("seed", 0)), sizes=sizes,  # type: ignore[arg-type]
                               masks=segment or bool(kw.get("scene_masks", True)))
    return {k: v.as_segmentation() for k, v in splits.items()} if segment else splits


def _build_coco(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, Any]:
    """train2017 less a fixed ``val_size`` carve-out (seed 0) for model selection; "test" is the
    official val2017, the split COCO results are reported on (test-dev has no public labels)."""
    import numpy as np

    from .coco import CocoDetection, coco_paths

    year = kw.get("year") or 2017
    layout = (f"a COCO directory holding annotations/instances_train{year}.json, "
              f"annotations/instances_val{year}.json, train{year}/ and val{year}/")
    if root is None:
        raise DataRootError("coco", layout)
    if not Path(root).expanduser().is_dir():
        raise DataRootError("coco", layout, root, "does not exist")
    for split in ("train", "val"):
        ann, images = coco_paths(root, split, year)
        for p in (ann, images):
            if not p.exists():
                raise DataRootError("coco", layout, root, f"has no {p.relative_to(Path(root).expanduser())}")
    full: Any
    if kw.get("task") == "segment":
        from .coco import CocoSegmentation

        seg = {"year": year, "image_size": image_size, "coco_classes": str(kw.get("coco_classes") or "voc"),
               "crowd": str(kw.get("coco_crowd") or "ignore")}
        full = CocoSegmentation(root, "train", remove_empty=bool(kw.get("remove_empty", False)), **seg)
        test: Any = CocoSegmentation(root, "val", **seg)
    else:
        common = {"year": year, "image_size": image_size, "contiguous": bool(kw.get("contiguous", True))}
        full = CocoDetection(root, "train", remove_empty=bool(kw.get("remove_empty", False)), **common)
        test = CocoDetection(root, "val", **common)
    val_size = min(int(kw.get("val_size") or 5000), max(1, len(full) // 2))
    order = np.random.default_rng(0).permutation(len(full))
    train_idx, val_idx = np.sort(order[val_size:]), np.sort(order[:val_size])
    return {"train": full.subset(train_idx), "val": full.subset(val_idx), "test": test}


def _build_voc(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, Any]:
    """VOC2007 train (+ VOC2012 trainval when present) / VOC2007 val / VOC2007 test, the usual "07+12"
    protocol with the 07 val list held out for model selection (VOC2012 alone: its train / val / val)."""
    from .voc import VOCDetection, voc_year_dir

    if kw.get("task") == "segment":
        return _build_voc_segmentation(root, image_size, **kw)
    layout = ("a directory holding VOC2007/ (or VOCdevkit/VOC2007/) with Annotations/, JPEGImages/ and "
              "ImageSets/Main/{train,val,test}.txt; VOC2012/ is added to training when present")
    if root is None:
        raise DataRootError("voc", layout)
    if not Path(root).expanduser().is_dir():
        raise DataRootError("voc", layout, root, "does not exist")
    years = {y: d for y in ("2007", "2012") if (d := voc_year_dir(root, y)) is not None}
    if not years:
        raise DataRootError("voc", layout, root, "has no VOC2007/Annotations or VOC2012/Annotations folder")
    main = "2007" if "2007" in years else "2012"
    for name in ("train", "val"):
        if not (years[main] / "ImageSets" / "Main" / f"{name}.txt").is_file():
            raise DataRootError("voc", layout, root, f"has no VOC{main}/ImageSets/Main/{name}.txt")
    train_sets = [(main, "train")] + [(y, "trainval") for y in years if y != main]
    common = {"image_size": image_size, "keep_difficult": bool(kw.get("keep_difficult", False))}
    val = VOCDetection(root, [(main, "val")], **common)
    has_test = (years[main] / "ImageSets" / "Main" / "test.txt").is_file()
    return {"train": VOCDetection(root, train_sets, **common), "val": val,
            "test": VOCDetection(root, [(main, "test")], **common) if has_test else val}


def _build_voc_segmentation(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, Any]:
    """VOC2012 (else VOC2007; option ``year``) ``ImageSets/Segmentation`` train / val / test, where test is
    **the val split itself** when there is no ``test.txt`` (VOC2012's test labels are not public)."""
    from .voc import VOCSegmentation, voc_year_dir

    layout = ("a directory holding VOC2012/ (or VOCdevkit/VOC2012/, or VOC2007) with SegmentationClass/, "
              "JPEGImages/ and ImageSets/Segmentation/{train,val}.txt")
    if root is None:
        raise DataRootError("voc", layout)
    if not Path(root).expanduser().is_dir():
        raise DataRootError("voc", layout, root, "does not exist")
    years = [str(kw["year"])] if kw.get("year") else ["2012", "2007"]
    found = [(y, d) for y in years if (d := voc_year_dir(root, y, "SegmentationClass")) is not None]
    if not found:
        raise DataRootError("voc", layout, root, f"has no {' or '.join(f'VOC{y}/SegmentationClass' for y in years)} folder")
    year, base = found[0]
    for name in ("train", "val"):
        if not (base / "ImageSets" / "Segmentation" / f"{name}.txt").is_file():
            raise DataRootError("voc", layout, root, f"has no VOC{year}/ImageSets/Segmentation/{name}.txt")
    splits = {name: VOCSegmentation(root, name, year=year, image_size=image_size) for name in ("train", "val")}
    has_test = (base / "ImageSets" / "Segmentation" / "test.txt").is_file()
    splits["test"] = VOCSegmentation(root, "test", year=year, image_size=image_size) if has_test else splits["val"]
    if kw.get("verify_images"):
        for ds in {id(d): d for d in splits.values()}.values():
            ds.verify()
    return splits


def _build_mask_folder(root: str | Path | None, image_size: int, **kw: Any) -> dict[str, Any]:
    """``root/{train,val[,test]}/images`` + ``masks`` pairs (:func:`~.segmentation.mask_folder_splits`);
    test is **the val split itself** without a ``test/`` folder; ``cache: true`` decodes every split into
    memory once (the fast path), ``channels: 1`` reads the images as grey."""
    from .segmentation import mask_folder_splits

    layout = ("a directory holding train/ and val/ (test/ optional), each with images/NAME.(png|jpg) and "
              "masks/NAME.png (palette or grayscale class indices, 255 = ignore); classes.txt optional")
    if root is None:
        raise DataRootError("mask_folder", layout)
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataRootError("mask_folder", layout, root, "does not exist" if not path.exists() else "is not a directory")
    missing = [f"{s}/{sub}/" for s in ("train", "val") for sub in ("images", "masks") if not (path / s / sub).is_dir()]
    if missing:
        raise DataRootError("mask_folder", layout, root, f"has no {' or '.join(missing)} folder")
    splits: dict[str, Any] = dict(mask_folder_splits(path, image_size, num_channels=int(kw.get("channels") or 3),
                                                     verify=bool(kw.get("verify_images", False))))
    if kw.get("cache"):
        cached = {id(d): d.cache() for d in splits.values()}
        splits = {k: cached[id(d)] for k, d in splits.items()}
    return splits


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


_DIGITS_DEFAULTS = TrainDefaults(32, "pad", 3, 0.0, True)  # 8x8 upsampled to 32x32, +-3 px shifts
_CIFAR_DEFAULTS = TrainDefaults(32, "pad", 4, 0.5, True)  # the classic CIFAR recipe
_PHOTO_DEFAULTS = TrainDefaults(None, "rrc", 0, 0.5, False)  # ImageNet-style
# detection: the scenes at their 128-px canvas, never mirrored (a mirrored digit is not a digit);
# photos at the detector's own input size, flipped half the time (the SSD recipe)
_SCENES_DEFAULTS = TrainDefaults(128, "none", 0, 0.0, False)
_DETECT_PHOTO_DEFAULTS = TrainDefaults(None, "none", 0, 0.5, False)

#: The registry: name → :class:`DatasetInfo` (facts, defaults and builder).  Adding a dataset is one
#: entry here (or :func:`register_dataset`); :data:`DATASETS` is a view of it, and a test checks that the
#: config's ``DatasetName`` lists the same names.
DATASET_INFO: dict[str, DatasetInfo] = {
    # digits: statistics of the 32×32 upsampled train split
    "digits": DatasetInfo("digits", 10, 1, 8, (0.3051,), (0.3235,), True, _DIGITS_DEFAULTS,
                          _build_digits),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
                           _CIFAR_DEFAULTS, _build_cifar("cifar10")),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
                            _CIFAR_DEFAULTS, _build_cifar("cifar100")),
    "imagefolder": DatasetInfo("imagefolder", None, 3, None, IMAGENET_MEAN, IMAGENET_STD, False, _PHOTO_DEFAULTS,
                               _build_imagefolder),
    # synthetic patterns are smooth 4x4 grids: trained like digits (no flip needed to learn them)
    "synthetic": DatasetInfo("synthetic", None, 3, None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True,
                             _DIGITS_DEFAULTS, _build_synthetic),
    # detection (num_classes counts the background, label 0): scenes composed from the real digits
    # (statistics of the 128-px training scenes), COCO-format and Pascal VOC folders
    # (each also builds segmentation splits with task="segment": the scenes' masks, 11 classes; COCO's
    # masks, 21 classes with coco_classes=voc, the default; VOC's SegmentationClass, 21 classes)
    "digit_scenes": DatasetInfo("digit_scenes", 11, 1, 128, (0.0918,), (0.2086,), True, _SCENES_DEFAULTS,
                                _build_digit_scenes, task="detect", tasks=("detect", "segment")),
    "coco": DatasetInfo("coco", 81, 3, None, IMAGENET_MEAN, IMAGENET_STD, False, _DETECT_PHOTO_DEFAULTS,
                        _build_coco, task="detect", tasks=("detect", "segment")),
    "voc": DatasetInfo("voc", 21, 3, None, IMAGENET_MEAN, IMAGENET_STD, False, _DETECT_PHOTO_DEFAULTS,
                       _build_voc, task="detect", tasks=("detect", "segment")),
    # segmentation: image/mask folder pairs (classes from classes.txt or the masks; photos flip)
    "mask_folder": DatasetInfo("mask_folder", None, 3, None, IMAGENET_MEAN, IMAGENET_STD, False,
                               _DETECT_PHOTO_DEFAULTS, _build_mask_folder, task="segment"),
}


class _Builders(Mapping[str, Callable[..., dict[str, Any]]]):
    """name → builder, read from :data:`DATASET_INFO` (a view, never a second list to keep in sync)."""

    def __getitem__(self, name: str) -> Callable[..., dict[str, Any]]:
        return DATASET_INFO[name].build

    def __iter__(self) -> Iterator[str]:
        return iter(DATASET_INFO)

    def __len__(self) -> int:
        return len(DATASET_INFO)

    def __repr__(self) -> str:
        return f"DATASETS({', '.join(DATASET_INFO)})"


#: name → builder ``(root, image_size, **options) -> {"train", "val", "test"}``, a view of :data:`DATASET_INFO`.
DATASETS: Mapping[str, Callable[..., dict[str, Any]]] = _Builders()


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add (or replace) a dataset in the registry; :func:`build_datasets` and :data:`DATASETS` see it."""
    DATASET_INFO[info.name] = info
    return info


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
    **options: Any,
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
    * ``digit_scenes`` (detection): :func:`~.scenes.load_scene_splits` on an ``image_size`` canvas,
      composed from the digits' matching splits; options ``scene_sizes`` (train per epoch, val, test)
      and ``scene_masks``.
    * ``coco`` (detection): train2017 less a ``val_size`` carve-out (fixed seed 0) / that carve-out /
      the official val2017 as "test"; options ``year``, ``contiguous``, ``remove_empty``.
    * ``voc`` (detection): VOC2007 train (+ VOC2012 trainval) / VOC2007 val / VOC2007 test; option
      ``keep_difficult``.
    * segmentation (option ``task="segment"``; :mod:`.segmentation`'s split protocol): ``digit_scenes``
      (the same scenes with their masks, 11 classes); ``voc``: VOC2012 (else VOC2007; option ``year``)
      ``ImageSets/Segmentation`` train / val / test, **test = val** when there is no ``test.txt``
      (VOC2012's); ``coco``: the detection splits' images with rasterised instance masks, options
      ``coco_classes`` (``voc``: VOC's 20 classes, the default; ``all``) and ``coco_crowd`` (``ignore``:
      crowd pixels 255, the default; ``label``); ``mask_folder``: ``root/{train,val[,test]}/{images,
      masks}`` pairs, test = val without ``test/``, options ``cache`` and ``channels``.

    ``task`` (None: the dataset's own) must be one of the dataset's ``tasks``. ``options`` go to the
    builder as they are (builders read the ones they know).

    Unknown names raise ValueError with the closest registered name.
    """
    if name not in DATASETS:
        hint = did_you_mean(name, DATASETS)
        raise ValueError(f"unknown dataset {name!r}{hint} (available: {', '.join(DATASETS)})")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    task = options.get("task")
    tasks = getattr(DATASET_INFO.get(name), "tasks", None) or ("classify",)
    if task in (None, "auto"):
        options.pop("task", None)
    elif task not in tasks:
        raise ValueError(f"dataset {name!r} has no {task!r} splits; its tasks: {', '.join(tasks)}")
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
        **options,
    )


def test_split_label(datasets: dict[str, Any]) -> str:
    """What the ``"test"`` split of :func:`build_datasets` really is: ``"test"``, or
    ``"val (no test/ folder)"`` when an image folder has no ``test/`` and the validation split stands in.

    Callers print it and record it (``summary.json``), so a figure measured on the split that also chose
    the best epoch is never reported as a held-out test result.
    """
    return "val (no test/ folder)" if datasets.get("test") is datasets.get("val") else "test"
