"""Data layer: in-memory tensor datasets with a device-side batch loader (:mod:`.tensor`), CIFAR on disk
(:mod:`.cifar`), ImageNet-style folders (:mod:`.folder`), synthetic data (:mod:`.synthetic`), detection
data (:mod:`.detection` formats and loaders, :mod:`.coco`, :mod:`.voc`, the composed digit scenes of
:mod:`.scenes`), segmentation data (:mod:`.segmentation`: the split protocol, loaders and the mask
folder layout; the VOC, COCO and scene readers serve it too), the dataset registry (:mod:`.registry`) and
batched on-device augmentation (:mod:`.augment`, with :class:`BoxAugment` for boxes and
:class:`MaskAugment` for masks)."""

from mobilenets.data.augment import (
    BatchAugment,
    BoxAugment,
    MaskAugment,
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
from mobilenets.data.coco import CocoDetection, CocoSegmentation
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
from mobilenets.data.scenes import DigitScenes, SceneSegmentation, SceneSpec, load_scene_splits
from mobilenets.data.segmentation import (
    IGNORE_INDEX,
    FileSegmentationDataset,
    SegmentationLoader,
    TensorSegmentationDataset,
    make_segmentation_batches,
)
from mobilenets.data.synthetic import SyntheticDataset, make_synthetic
from mobilenets.data.tensor import TensorImageDataset, TensorLoader, load_digits_splits
from mobilenets.data.voc import VOC_CLASSES, VOCDetection, VOCSegmentation

__all__ = [
    "DATASETS",
    "DATASET_INFO",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "AnnotationError",
    "BadImageError",
    "BatchAugment",
    "BoxAugment",
    "CocoDetection",
    "CocoSegmentation",
    "DataRootError",
    "DatasetInfo",
    "DetectionLoader",
    "DigitScenes",
    "FileSegmentationDataset",
    "ImageFolderDataset",
    "MaskAugment",
    "SceneSegmentation",
    "SceneSpec",
    "SegmentationLoader",
    "SyntheticDataset",
    "TensorImageDataset",
    "TensorLoader",
    "TensorSegmentationDataset",
    "UnsafePickleError",
    "VOCDetection",
    "VOCSegmentation",
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
    "make_segmentation_batches",
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
