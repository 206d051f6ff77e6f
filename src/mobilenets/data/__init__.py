"""Data layer: in-memory tensor datasets with a device-side batch loader (:mod:`.tensor`), CIFAR on disk
(:mod:`.cifar`), ImageNet-style folders (:mod:`.folder`), synthetic data (:mod:`.synthetic`), the dataset
registry (:mod:`.registry`) and batched on-device augmentation (:mod:`.augment`)."""

from mobilenets.data.augment import (
    BatchAugment,
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
from mobilenets.data.folder import BadImageError, ImageFolderDataset, collate, eval_transform, train_transform
from mobilenets.data.registry import DATASET_INFO, DATASETS, DatasetInfo, build_datasets
from mobilenets.data.synthetic import SyntheticDataset, make_synthetic
from mobilenets.data.tensor import TensorImageDataset, TensorLoader, load_digits_splits

__all__ = [
    "DATASETS",
    "DATASET_INFO",
    "BadImageError",
    "BatchAugment",
    "DatasetInfo",
    "ImageFolderDataset",
    "SyntheticDataset",
    "TensorImageDataset",
    "TensorLoader",
    "UnsafePickleError",
    "auto_augment",
    "build_datasets",
    "collate",
    "download_cifar",
    "eval_preprocess",
    "eval_transform",
    "hflip",
    "load_cifar",
    "load_digits_splits",
    "make_synthetic",
    "mixup_cutmix",
    "normalize",
    "pad_crop",
    "rand_augment",
    "random_erasing",
    "random_resized_crop",
    "smooth_one_hot",
    "train_transform",
    "trivial_augment_wide",
]
