"""Numbers shared by every layer: the input normalisations the published weights were trained with, and
the label of unlabelled pixels.

One table, so that a model's default preprocessing, a dataset's default and a weights source's recorded
mean/std can never drift apart (nor the ignore label of a mask reader, the augmentation and the metrics).
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_MEAN_STD", "IMAGENET_STD", "TF_MEAN_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_MEAN_STD = (IMAGENET_MEAN, IMAGENET_STD)
"""ImageNet's per-channel mean/std of [0, 1] pixels (torchvision and most timm weights)."""

TF_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
"""[0, 1] -> [-1, 1], the input range of the TensorFlow-trained models (Keras, timm ``tf_`` weights)."""

IGNORE_INDEX = 255
"""The mask label of pixels without a class (VOC's object borders, crop padding): no loss, no metric."""
