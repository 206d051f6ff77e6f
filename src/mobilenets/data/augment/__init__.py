"""Batched, on-device data augmentation.

Why batched: for small in-memory datasets (digits, CIFAR) the classic "one PIL image at a time in a
DataLoader worker" pipeline is the bottleneck, not the network.  Every op here takes a whole batch
``B×C×H×W`` of float images in ``[0, 1]`` (on whatever device it lives), draws *per-sample* random
parameters as tensors, and applies them with batched kernels: ``affine_grid``/``grid_sample`` for
geometry, broadcasting and ``torch.where`` for colour, and a short Python loop over the ~14 op *types*
(never over samples) for the auto-augment family.

Semantics follow torchvision's definitions (``RandAugment``, ``TrivialAugmentWide``, ``AutoAugment``,
``RandomErasing``, ``RandomResizedCrop``) and timm's ``Mixup`` for mixing; magnitudes that torchvision
expresses on the 0..255 scale (the Solarize threshold) are expressed as fractions of 1 here because the
images are float in ``[0, 1]``.  Ops that quantise (Posterize, Equalize) work on the 256 uint8 levels,
so an image that came from uint8 is treated exactly as torchvision treats the uint8 tensor.

Randomness comes from an optional :class:`torch.Generator` (for reproducibility); random parameters are
drawn on the generator's device and moved to the batch's device, so a CPU generator can drive a CUDA
batch.  Without a generator the global torch RNG of the batch's device is used.

The ops live by concern: :mod:`.geometry` (affine warps, flips, crops, the crop box sampler, resize),
:mod:`.color`, :mod:`.policies` (RandAugment / TrivialAugment / AutoAugment), :mod:`.erasing`,
:mod:`.mixing` (mixup / cutmix, label smoothing), :mod:`.pipeline` (normalisation,
:func:`eval_preprocess`, :class:`BatchAugment`) and :mod:`.boxes` (:class:`BoxAugment`, detection:
boxes move with the pixels) and :mod:`.masks` (:class:`MaskAugment`, segmentation: masks move with the
pixels); this package re-exports all of them.
"""

from .base import to_float
from .boxes import BoxAugment
from .color import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_sharpness,
    autocontrast,
    equalize,
    identity,
    invert,
    posterize,
    solarize,
)
from .erasing import random_erasing
from .geometry import (
    affine,
    hflip,
    pad_crop,
    random_resized_crop,
    resize,
    rotate,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)
from .masks import MaskAugment
from .mixing import (
    mixup_cutmix,
    smooth_one_hot,
)
from .pipeline import (
    AUTO_AUGMENT_CHOICES,
    CROP_CHOICES,
    BatchAugment,
    eval_preprocess,
    normalize,
)
from .policies import (
    AA_OPS,
    AUTO_AUGMENT_POLICIES,
    OP_NAMES,
    RA_OPS,
    apply_op,
    auto_augment,
    rand_augment,
    trivial_augment_wide,
)

__all__ = [
    "AA_OPS",
    "AUTO_AUGMENT_CHOICES",
    "AUTO_AUGMENT_POLICIES",
    "CROP_CHOICES",
    "OP_NAMES",
    "RA_OPS",
    "BatchAugment",
    "BoxAugment",
    "MaskAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_sharpness",
    "affine",
    "apply_op",
    "auto_augment",
    "autocontrast",
    "equalize",
    "eval_preprocess",
    "hflip",
    "identity",
    "invert",
    "mixup_cutmix",
    "normalize",
    "pad_crop",
    "posterize",
    "rand_augment",
    "random_erasing",
    "random_resized_crop",
    "resize",
    "rotate",
    "shear_x",
    "shear_y",
    "smooth_one_hot",
    "solarize",
    "to_float",
    "translate_x",
    "translate_y",
    "trivial_augment_wide",
]
