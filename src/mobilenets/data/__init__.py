"""Data layer: in-memory tensor datasets with a device-side batch loader (:mod:`.tensor`), CIFAR on disk
(:mod:`.cifar`), ImageNet-style folders (:mod:`.folder`), synthetic data (:mod:`.synthetic`), detection
data (:mod:`.detection` formats and loaders, :mod:`.coco`, :mod:`.voc`, the composed digit scenes of
:mod:`.scenes`), the dataset registry (:mod:`.registry`) and batched on-device augmentation
(:mod:`.augment`, with :class:`BoxAugment` for boxes)."""

from mobilenets.data.augment import (
    BatchAugment,
    BoxAugment,
    auto_augment,
    eval_preprocess,
    hflip,
    mixup_cutmix,
    normalize,
    pad_crop,
    rand_augment,
    random_erasing,
    random_resized_crop,
    smooth_one_hot,
    trivial_augment_wide,
)
from mobilenets.data.cifar import UnsafePickleError, download_cifar, load_cifar
from mobilenets.data.coco import CocoDetection
from mobilenets.data.detection import (
    AnnotationError,
    DetectionLoader,
    collate_detection,
    make_detection_batches,
    targets_to,
    unpad_targets,
)
from mobilenets.data.folder import BadImageError, ImageFolderDataset, collate, eval_transform, train_transform
from mobilenets.data.registry import DATASET_INFO, DATASETS, DataRootError, DatasetInfo, build_datasets
from mobilenets.data.scenes import DigitScenes, SceneSpec, load_scene_splits
from mobilenets.data.synthetic import SyntheticDataset, make_synthetic
from mobilenets.data.tensor import TensorImageDataset, TensorLoader, load_digits_splits
from mobilenets.data.voc import VOC_CLASSES, VOCDetection

__all__ = [
    "DATASETS",
    "DATASET_INFO",
    "VOC_CLASSES",
    "AnnotationError",
    "BadImageError",
    "BatchAugment",
    "BoxAugment",
    "CocoDetection",
    "DataRootError",
    "DatasetInfo",
    "DetectionLoader",
    "DigitScenes",
    "ImageFolderDataset",
    "SceneSpec",
    "SyntheticDataset",
    "TensorImageDataset",
    "TensorLoader",
    "UnsafePickleError",
    "VOCDetection",
    "auto_augment",
    "build_datasets",
    "collate",
    "collate_detection",
    "download_cifar",
    "eval_preprocess",
    "eval_transform",
    "hflip",
    "load_cifar",
    "load_digits_splits",
    "load_scene_splits",
    "make_detection_batches",
    "make_synthetic",
    "mixup_cutmix",
    "normalize",
    "pad_crop",
    "rand_augment",
    "random_erasing",
    "random_resized_crop",
    "smooth_one_hot",
    "targets_to",
    "train_transform",
    "trivial_augment_wide",
    "unpad_targets",
]
