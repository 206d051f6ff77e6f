"""The training configuration tree: every key, its type, its default and one line of help.

These dataclasses are the single source of truth for a training run: a YAML file, a command-line
override and the code that reads ``cfg.optim.lr`` all go through them, so they can never disagree about
a name. Defaults are those of the embedded-digits main job; each field's comment says why.

Range checks that may involve several fields live in each dataclass's ``validate()`` method and are run
by :func:`mobilenets.config.validate` (and therefore by :func:`mobilenets.config.load_config`), which
prefixes the section name to the key of the error (``lr`` -> ``optim.lr``). Reading YAML, overrides and
type checking are in :mod:`mobilenets.config.loader`, :mod:`~mobilenets.config.overrides` and
:mod:`~mobilenets.config.values`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "DATASET_DEFAULT",
    "AmpMode",
    "AugConfig",
    "AutoAugment",
    "CropMode",
    "DataConfig",
    "DatasetName",
    "ModelConfig",
    "OptimConfig",
    "OptimizerName",
    "SchedConfig",
    "SchedulerName",
    "TaskName",
    "TrainConfig",
    "field_help",
]


DatasetName = Literal["digits", "cifar10", "cifar100", "imagefolder", "synthetic", "digit_scenes", "coco", "voc",
                      "mask_folder"]
TaskName = Literal["auto", "classify", "detect", "segment"]
CropMode = Literal["none", "pad", "rrc"]
AutoAugment = Literal["none", "randaugment", "trivialaugment", "autoaugment-imagenet", "autoaugment-cifar10"]
OptimizerName = Literal["sgd", "rmsprop_tf", "adamw"]
SchedulerName = Literal["cosine", "step", "exponential", "onecycle", "constant", "poly"]
AmpMode = Literal["none", "bf16", "fp16"]

#: ``null`` in these fields means "the dataset's own default" (see ``mobilenets.data.registry.DATASET_INFO``),
#: resolved when a run starts and saved resolved in the run's config.yaml.
DATASET_DEFAULT = "null: the dataset's default"


def _help(text: str) -> dict[str, str]:
    """Field metadata with one line of help (shown by ``mobilenets train --show-config``)."""
    return {"help": text}


def field_help(cls: type, name: str) -> str:
    """The one-line help of field ``name`` of config dataclass ``cls`` ("" if it has none)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    return ""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise a range error naming key, value and allowed range unless ``ok``.

    Callers write the condition positively (``value > 0``) so that NaN, which compares false to
    everything, is rejected too.
    """
    if not ok:
        raise ConfigError(f"got {value!r}, but it must be {allowed}", key=key)


@dataclass
class ModelConfig:
    """Which network to build and how."""

    # The smallest V3 is the main job's target: it is the architecture the toolkit is about
    # (hardware-aware, SE + h-swish) and still trains in minutes on CPU.
    name: str = field(default="mobilenet_v3_small", metadata=_help("model name (`mobilenets list`)"))
    # None: train from scratch. Digits are far from ImageNet, so pretrained weights buy little
    # and would force the 224-px stem; a path or registry tag can be given for fine-tuning.
    pretrained: str | None = field(default=None, metadata=_help("weights to start from: registry tag, weights directory/file, hf-hub:ORG/REPO"))
    # None: a detector's or segmenter's backbone starts as the rest of it does. torchvision's detection and
    # segmentation references start from an ImageNet classifier (--weights-backbone): name its tag here.
    backbone_pretrained: str | None = field(default=None, metadata=_help("detector/segmenter: classifier weights for the backbone (tag, directory or file)"))
    # None: take the number of classes from the dataset, so one config serves digits (10) and
    # CIFAR-100 (100) without edits that are easy to forget.
    num_classes: int | None = field(default=None, metadata=_help("classifier outputs (null: the dataset's class count)"))
    # Free-form keyword arguments passed to create_model (width_mult, small_input, ...): the
    # architectures differ in what they accept, so this is deliberately not typed here. small_input
    # left unset takes the dataset's default (on for the 32-px datasets, off for image folders).
    kwargs: dict[str, Any] = field(default_factory=dict, metadata=_help("create_model keywords, e.g. {width_mult: 0.5, small_input: true}"))
    # None: keep each architecture's own classifier dropout (0.2 for V2/V3, as in the papers).
    dropout: float | None = field(default=None, metadata=_help("classifier dropout (null: the architecture's own)"))
    # Stochastic depth off: it helps large models on long ImageNet schedules (MobileNetV4 uses
    # it only for its biggest variants); tiny models on small data underfit rather than overfit.
    drop_path_rate: float = field(default=0.0, metadata=_help("stochastic-depth rate"))

    def validate(self) -> None:
        _require(bool(self.name.strip()), "name", self.name, "a non-empty model name")
        if self.num_classes is not None:
            _require(self.num_classes >= 1, "num_classes", self.num_classes, ">= 1 (or null)")
        if self.dropout is not None:
            _require(0.0 <= self.dropout < 1.0, "dropout", self.dropout, "in [0, 1) (or null)")
        _require(0.0 <= self.drop_path_rate < 1.0, "drop_path_rate", self.drop_path_rate, "in [0, 1)")


@dataclass
class DataConfig:
    """Where the images come from and how they are fed."""

    # sklearn's 8x8 digits ship with scikit-learn: no download, runs anywhere (CI included).
    name: DatasetName = field(default="digits", metadata=_help("dataset: digits, cifar10, cifar100, imagefolder (root/train, root/val), synthetic, digit_scenes, coco, voc, mask_folder (root/{train,val}/{images,masks})"))
    # None: the dataset's own default location (digits and synthetic need none at all).
    root: str | None = field(default=None, metadata=_help("dataset directory (cifar: the archive or its folder; imagefolder: holds train/ val/)"))
    # Off: a training run should never reach the network unless asked to (CI, air-gapped hosts).
    download: bool = field(default=False, metadata=_help("download CIFAR if it is missing"))
    # None: the dataset's default -- 32 for digits (8x8 upsampled) and CIFAR, the model's own input
    # size (224 for most MobileNets) for image folders.
    image_size: int | None = field(default=None, metadata=_help(f"square training/eval size in pixels ({DATASET_DEFAULT})"))
    # 0: the data is device-resident (below), so worker processes would only add start-up cost.
    num_workers: int = field(default=0, metadata=_help("DataLoader worker processes for file datasets"))
    # The whole digits set is < 10 MB as float tensors: keeping it on the device and augmenting
    # there removes the DataLoader overhead that otherwise dominates each tiny step.
    device_resident: bool = field(default=True, metadata=_help("keep in-memory datasets on the training device"))
    # Enough samples for a smoke run to exercise several batches and an eval, still instant.
    synthetic_size: int = field(default=2048, metadata=_help("training images of the synthetic dataset (val/test: a quarter each)"))
    # CIFAR has no official validation split: this many training images (stratified, fixed seed) are
    # held out so the best epoch is never chosen on the test set. 5000 = 10% of CIFAR's 50k.
    val_size: int = field(default=5000, metadata=_help("CIFAR training images held out as the validation split"))
    # None: the scenes module's own counts (8192 fresh training scenes per epoch, 512 val, 1024 test).
    scene_sizes: tuple[int, int, int] | None = field(default=None, metadata=_help("digit_scenes: scenes per split (train per epoch, val, test); null: 8192, 512, 1024"))
    # voc: the 20 VOC categories of COCO (torchvision's COCO-with-VOC-labels protocol, what its
    # published segmentation weights were trained and scored on).
    coco_classes: Literal["voc", "all"] = field(default="voc", metadata=_help("coco segmentation: voc (VOC's 20 classes + background) or all (every category + background)"))

    def validate(self) -> None:
        if self.image_size is not None:
            _require(self.image_size >= 1, "image_size", self.image_size, ">= 1 (or null for the dataset's default)")
        # More than 4 worker processes per CPU only adds memory and start-up cost (and a huge value
        # exhausts the process table before the first batch). At least 16, so that the ImageNet
        # recipes (8 workers) still load on a small machine.
        max_workers = max(16, 4 * (os.cpu_count() or 1))
        _require(0 <= self.num_workers <= max_workers, "num_workers", self.num_workers,
                 f">= 0 and <= {max_workers} (4 per CPU, at least 16)")
        _require(self.synthetic_size >= 1, "synthetic_size", self.synthetic_size, ">= 1")
        _require(self.val_size >= 1, "val_size", self.val_size, ">= 1")
        if self.scene_sizes is not None:
            _require(all(n >= 1 for n in self.scene_sizes), "scene_sizes", self.scene_sizes,
                     "three counts >= 1 (train per epoch, val, test), or null")
        if self.name in ("imagefolder", "mask_folder"):
            _require(bool(self.root), "root", self.root, f"set to a directory when name is {self.name!r}")
        _require(self.coco_classes in ("voc", "all"), "coco_classes", self.coco_classes, "voc or all")


@dataclass
class AugConfig:
    """Training-time augmentation (evaluation never augments)."""

    # None: the dataset's default -- pad-and-crop for digits and CIFAR (small translations always help;
    # random-resized-crop's zoom destroys 8-px strokes), random-resized-crop for image folders.
    crop: CropMode | None = field(default=None, metadata=_help(f"none, pad (pad-and-crop) or rrc (random-resized-crop) ({DATASET_DEFAULT})"))
    # None: the dataset's default -- 3 px of 32 for digits (centred strokes), CIFAR's classic 4 px.
    padding: int | None = field(default=None, metadata=_help(f"pixels of padding for crop=pad ({DATASET_DEFAULT})"))
    # Area range for crop='rrc' only: the Inception / torchvision default.
    scale: tuple[float, float] = field(default=(0.08, 1.0), metadata=_help("area range of crop=rrc (min, max)"))
    # None: the dataset's default -- 0 for digits (a flipped 2 or 7 is not a 2 or 7), 0.5 for photos.
    hflip: float | None = field(default=None, metadata=_help(f"horizontal-flip probability ({DATASET_DEFAULT})"))
    # Off: photometric policies tuned on ImageNet/CIFAR photos mostly add noise to binary-ish
    # strokes, and small models underfit rather than overfit.
    auto_augment: AutoAugment = field(default="none", metadata=_help("randaugment, trivialaugment, autoaugment-imagenet, autoaugment-cifar10"))
    # torchvision's RandAugment defaults (N=2, M=9), used only when auto_augment='randaugment'.
    ra_num_ops: int = field(default=2, metadata=_help("RandAugment: operations per image"))
    ra_magnitude: int = field(default=9, metadata=_help("RandAugment: magnitude 0..30"))
    # Off: erasing a quarter of a 32-px digit often erases the class evidence itself.
    random_erasing: float = field(default=0.0, metadata=_help("random-erasing probability"))
    # Mixup/CutMix off: they are regularisers for big models on long schedules; small
    # MobileNets need less regularisation (MobileNetV1 paper, section 4).
    mixup_alpha: float = field(default=0.0, metadata=_help("mixup Beta(alpha, alpha); 0 = off"))
    cutmix_alpha: float = field(default=0.0, metadata=_help("cutmix Beta(alpha, alpha); 0 = off"))
    # When mixing is enabled, mix every batch (the timm default).
    mix_prob: float = field(default=1.0, metadata=_help("probability that a batch is mixed (mixup/cutmix on)"))
    # 0.1: the Inception-v3 / MobileNetV2-V3 recipe value; cheap and calibrates the EMA model.
    label_smoothing: float = field(default=0.1, metadata=_help("label smoothing of the cross-entropy"))
    # Detection only (data.augment.boxes.BoxAugment); all off by default so a recipe says what it uses.
    # SSD's random IoU crop and zoom-out teach scale changes; digits need neither flips nor colour.
    iou_crop: float = field(default=0.0, metadata=_help("detection: probability of SSD's random IoU crop"))
    zoom_out: float = field(default=0.0, metadata=_help("detection: probability of zoom-out (image placed on a larger canvas)"))
    # 4: SSD's expansion ratio (the canvas up to 4x the image side).
    zoom_out_max: float = field(default=4.0, metadata=_help("detection: largest zoom-out canvas side, in image sides"))
    photometric: float = field(default=0.0, metadata=_help("detection: probability of photometric jitter"))
    # Segmentation only (data.augment.masks.MaskAugment); (1, 1): no rescaling, so a recipe says what it
    # uses. torchvision's VOC reference rescales by 0.5..2 before its crop.
    seg_scale: tuple[float, float] = field(default=(1.0, 1.0), metadata=_help("segmentation: random rescale range (min, max) before the crop, in image sides"))

    def validate(self) -> None:
        if self.padding is not None:
            _require(self.padding >= 0, "padding", self.padding, ">= 0 (or null for the dataset's default)")
        lo, hi = self.scale
        _require(0.0 < lo <= hi <= 1.0, "scale", self.scale, "(min, max) with 0 < min <= max <= 1")
        for name in ("hflip", "random_erasing", "mix_prob"):
            value = getattr(self, name)
            if value is not None:
                _require(0.0 <= value <= 1.0, name, value, "a probability in [0, 1]")
        _require(self.ra_num_ops >= 0, "ra_num_ops", self.ra_num_ops, ">= 0")
        # torchvision's RandAugment has 31 magnitude bins: 0..30.
        _require(0 <= self.ra_magnitude <= 30, "ra_magnitude", self.ra_magnitude, "in [0, 30]")
        _require(self.mixup_alpha >= 0.0, "mixup_alpha", self.mixup_alpha, ">= 0 (0 disables mixup)")
        _require(self.cutmix_alpha >= 0.0, "cutmix_alpha", self.cutmix_alpha, ">= 0 (0 disables cutmix)")
        _require(0.0 <= self.label_smoothing < 1.0, "label_smoothing", self.label_smoothing, "in [0, 1)")
        for name in ("iou_crop", "zoom_out", "photometric"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, name, value, "a probability in [0, 1]")
        _require(self.zoom_out_max >= 1.0, "zoom_out_max", self.zoom_out_max, ">= 1")
        lo, hi = self.seg_scale
        _require(0.0 < lo <= hi, "seg_scale", self.seg_scale, "(min, max) with 0 < min <= max")


@dataclass
class OptimConfig:
    """Optimizer. ``lr`` is the value actually used: any batch-size scaling is the caller's job."""

    # AdamW: converges robustly on a ~700-step run without the long schedule and careful
    # tuning that the papers' RMSpropTF needs (it remains available as 'rmsprop_tf').
    name: OptimizerName = field(default="adamw", metadata=_help("sgd, rmsprop_tf or adamw"))
    # 4e-3 at batch 64: tuned for AdamW on the digits job (warm-up absorbs the early spike).
    lr: float = field(default=0.004, metadata=_help("peak learning rate"))
    # SGD / RMSpropTF momentum: 0.9 is the value of every MobileNet paper.
    momentum: float = field(default=0.9, metadata=_help("SGD / RMSpropTF momentum"))
    # Nesterov for SGD: free and slightly better on short schedules (torchvision recipes).
    nesterov: bool = field(default=True, metadata=_help("Nesterov momentum for SGD"))
    # 0.05: a decoupled (AdamW) weight decay, as in the ConvNeXt/MobileNetV4 recipes. NB: for
    # sgd and rmsprop_tf the decay is the classic coupled L2 term, where sensible values are
    # ~100x smaller (1e-5 .. 4e-5 in the papers) -- set it explicitly when switching optimizer.
    weight_decay: float = field(default=0.05, metadata=_help("weight decay (decoupled for adamw, L2 for sgd/rmsprop_tf)"))
    # None: each optimizer's own default (AdamW 1e-8; RMSpropTF 1e-3, the papers' TF setting).
    eps: float | None = field(default=None, metadata=_help("optimizer epsilon (null: the optimizer's default)"))
    # AdamW betas: the standard (0.9, 0.999).
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=_help("AdamW betas"))
    # RMSpropTF square-average decay: 0.9, the MobileNet papers' TF value (PyTorch uses 0.99).
    alpha: float = field(default=0.9, metadata=_help("RMSpropTF square-average decay"))
    # No decay on norm weights and biases: decaying BN's scale only fights the normalisation.
    no_decay_norm_bias: bool = field(default=True, metadata=_help("no weight decay on norm weights and biases"))
    # None: no clipping; BN + warm-up keep gradients tame for these models.
    clip_grad: float | None = field(default=None, metadata=_help("clip the gradient norm to this value (null: off)"))
    # 1: the digits batch fits trivially; raise it to emulate big batches on small devices.
    grad_accum_steps: int = field(default=1, metadata=_help("micro-batches per optimizer step"))

    def validate(self) -> None:
        _require(self.lr > 0.0 and math.isfinite(self.lr), "lr", self.lr, "> 0 and finite")
        _require(0.0 <= self.momentum < 1.0, "momentum", self.momentum, "in [0, 1)")
        _require(self.weight_decay >= 0.0, "weight_decay", self.weight_decay, ">= 0")
        if self.eps is not None:
            _require(self.eps > 0.0, "eps", self.eps, "> 0 (or null for the optimizer default)")
        _require(all(0.0 <= b < 1.0 for b in self.betas), "betas", self.betas, "two values in [0, 1)")
        _require(0.0 <= self.alpha < 1.0, "alpha", self.alpha, "in [0, 1)")
        if self.clip_grad is not None:
            _require(self.clip_grad >= 0.0, "clip_grad", self.clip_grad, ">= 0 (or null to disable)")
        _require(self.grad_accum_steps >= 1, "grad_accum_steps", self.grad_accum_steps, ">= 1")


@dataclass
class SchedConfig:
    """Learning-rate schedule, expressed in (possibly fractional) epochs.

    With ``per_step`` the scheduler is stepped after every *optimizer* step (so warm-up and
    cosine are smooth even on a 17-step epoch); without it, once per epoch. Never both.
    """

    # Cosine: no milestones to tune and the best short-schedule choice in practice.
    name: SchedulerName = field(default="cosine", metadata=_help("cosine, step, exponential, onecycle, constant or poly"))
    # 1 epoch (5 % of 20): AdamW's early updates are large while BN statistics settle. A warm-up as
    # long as the run is clamped to a fifth of it when the run starts (a 1-epoch smoke run).
    warmup_epochs: float = field(default=1.0, metadata=_help("linear warm-up length in epochs (clamped to epochs/5 when >= epochs)"))
    # Warm-up starts at 1 % of lr: small enough to be safe, large enough to make progress.
    warmup_lr_ratio: float = field(default=0.01, metadata=_help("warm-up starts at this fraction of lr"))
    # Cosine decays to 0: on short runs the last low-lr epochs give the largest accuracy gain.
    min_lr_ratio: float = field(default=0.0, metadata=_help("final lr as a fraction of lr (cosine/onecycle)"))
    # Step decay every 2 epochs by 0.973: torchvision's MobileNetV3 recipe. ``gamma`` is also
    # the per-epoch factor of the 'exponential' schedule.
    step_size: float = field(default=2.0, metadata=_help("epochs between decays of the step schedule"))
    gamma: float = field(default=0.973, metadata=_help("decay factor (step: per step_size epochs; exponential: per epoch)"))
    # Per optimizer step: with ~17 steps per epoch, per-epoch warm-up would be a 2-step staircase.
    per_step: bool = field(default=True, metadata=_help("update the lr after every optimizer step (else once per epoch)"))
    # 0.9: DeepLab's "poly" exponent, torchvision's segmentation reference.
    power: float = field(default=0.9, metadata=_help("exponent of the poly schedule: (1 - t / epochs) ** power"))

    def validate(self) -> None:
        _require(self.warmup_epochs >= 0.0, "warmup_epochs", self.warmup_epochs, ">= 0")
        _require(0.0 <= self.warmup_lr_ratio <= 1.0, "warmup_lr_ratio", self.warmup_lr_ratio, "in [0, 1]")
        _require(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", self.min_lr_ratio, "in [0, 1]")
        _require(self.step_size > 0.0, "step_size", self.step_size, "> 0")
        _require(0.0 < self.gamma <= 1.0, "gamma", self.gamma, "in (0, 1]")
        _require(self.power > 0.0, "power", self.power, "> 0")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved next to its checkpoints so runs are reproducible."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata=_help("the network"))
    data: DataConfig = field(default_factory=DataConfig, metadata=_help("the dataset"))
    aug: AugConfig = field(default_factory=AugConfig, metadata=_help("training-time augmentation"))
    optim: OptimConfig = field(default_factory=OptimConfig, metadata=_help("the optimizer"))
    sched: SchedConfig = field(default_factory=SchedConfig, metadata=_help("the learning-rate schedule"))
    # 20 epochs x 19 steps: the small V3 plateaus (~99% val) on digits in about a CPU minute;
    # V3-Small at 32x32 trains at ~400 images/s on 2 cores, so each epoch costs ~3 s.
    # auto: the dataset's own task (DATASET_INFO[name].task): digits classify, digit_scenes detect.
    task: TaskName = field(default="auto", metadata=_help("auto (the dataset's), classify, detect or segment"))
    epochs: int = field(default=20, metadata=_help("training epochs (may be raised when resuming)"))
    # 0.5: torchvision's segmentation reference (DeepLab's FCN auxiliary head on C2/C3); used only by a
    # segmentation model built with aux_loss=True.
    aux_weight: float = field(default=0.5, metadata=_help("segmentation: weight of the auxiliary head's loss"))
    # None: 64 (~19 steps per epoch on the digits train split -- enough steps for BN and warm-up),
    # capped on a small dataset so that an epoch still has at least 16 optimizer steps: with 2 steps per
    # epoch BatchNorm statistics and the EMA never catch up with the weights.
    batch_size: int | None = field(default=None, metadata=_help("images per step (null: 64, capped so an epoch has >= 16 optimizer steps)"))
    # Evaluation has no backward pass, so a larger batch is free and faster.
    eval_batch_size: int = field(default=256, metadata=_help("images per evaluation batch"))
    seed: int = field(default=0, metadata=_help("random seed (weights, shuffling, augmentation)"))
    # Off: deterministic kernels are slower; seeds alone already make CPU runs repeatable.
    deterministic: bool = field(default=False, metadata=_help("deterministic kernels: bit-identical runs and resumes"))
    # 'auto': CUDA if available, else MPS, else CPU -- one config for laptops and GPU boxes.
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    # No mixed precision by default: on the main job (batch 64 of 1-channel 32x32) bf16 buys ~8%.
    # On CPU, bf16 trains V3-Small at batch 128 ~15% faster than fp32 (depthwise convs stay fp32).
    amp: AmpMode = field(default="none", metadata=_help("mixed precision: none, bf16 or fp16 (CUDA)"))
    # NHWC is the fast layout for depthwise convolutions on GPUs and oneDNN CPUs.
    channels_last: bool = field(default=True, metadata=_help("NHWC memory layout"))
    # Off: compile time exceeds the whole digits run; turn on for long GPU jobs.
    compile: bool = field(default=False, metadata=_help("torch.compile the model"))
    # CPU only: inductor-compiled weight gradients for 5x5+ depthwise convs (V3/V4), ~10% faster
    # steps. Off: compiling costs 3-7 s per layer shape once, more than a short run wins back.
    fast_depthwise_grad: bool = field(default=False, metadata=_help("CPU: compiled weight gradients for 5x5+ depthwise convs"))
    # Evaluate an EMA of the weights: it is consistently better at the end of short runs.
    ema: bool = field(default=True, metadata=_help("keep an EMA of the weights (used when it is better on val)"))
    # 0.998 is the ceiling. With ema_warmup the effective decay min(0.998, (1+t)/(10+t)) stays
    # below it for ~4,500 steps, i.e. for the whole ~700-step digits run; 0.998 matters only
    # for longer jobs, where its ~500-step horizon is a few epochs.
    ema_decay: float = field(default=0.998, metadata=_help("EMA decay per optimizer step"))
    # Warm-up the EMA decay so a short run's average is not dominated by the random init.
    ema_warmup: bool = field(default=True, metadata=_help("warm the EMA decay up as min(decay, (1+t)/(10+t))"))
    # BatchNorm momentum forced on every BN layer (None: keep the architecture's own). The V3
    # reference value 0.01 assumes thousands of steps per epoch; with ~17 it leaves the running
    # statistics epochs behind the weights, so evaluation is poor. 0.1 (PyTorch default) tracks.
    bn_momentum: float | None = field(default=0.1, metadata=_help("BatchNorm momentum for every BN layer (null: the architecture's)"))
    # None: the trainer picks runs/<dataset>, then runs/<dataset>-2, -3, ... (never reusing a directory).
    output_dir: str | None = field(default=None, metadata=_help("run directory (null: runs/<dataset>, runs/<dataset>-2, ...)"))
    # Off: start fresh; on: continue from output_dir's last checkpoint with its saved config.yaml.
    resume: bool = field(default=False, metadata=_help("continue the run in output_dir from its last checkpoint"))
    quiet: bool = field(default=False, metadata=_help("one line per epoch, no progress bar"))
    # 0: log once per epoch only (an epoch is a few seconds); N > 0: also every N steps.
    log_every: int = field(default=0, metadata=_help("also log every N steps (0: once per epoch)"))
    # Checkpoint every epoch: checkpoints are tiny, and a resume then loses at most one epoch.
    # 0: no periodic checkpoints (the final one is still written).
    save_every: int = field(default=1, metadata=_help("checkpoint every N epochs (0: only the final one)"))
    # None: PyTorch's default thread count.
    threads: int | None = field(default=None, metadata=_help("intra-op CPU threads (null: PyTorch's default)"))
    # Distributed (torchrun): synchronise BatchNorm statistics over all ranks. Needed when the
    # per-process batch is small; on CPU (gloo) mobilenets' own SyncBatchNormCPU is used.
    sync_bn: bool = field(default=False, metadata=_help("torchrun: synchronise BatchNorm statistics over ranks"))
    # Repeated augmentation (timm/torchvision RASampler, e.g. 3) for long ImageNet recipes; 0 = off.
    # Applies to file datasets (imagefolder) read through a DataLoader.
    repeated_aug: int = field(default=0, metadata=_help("repeated-augmentation copies per image for file datasets (0: off)"))

    def validate(self) -> None:
        _require(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        _require(self.aux_weight >= 0.0, "aux_weight", self.aux_weight, ">= 0")
        if self.batch_size is not None:
            _require(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1 (or null for the automatic size)")
        _require(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, ">= 1")
        # torch.manual_seed takes at most 64 bits; per-rank offsets are added, so stay well below.
        _require(0 <= self.seed < 2**32, "seed", self.seed, "in [0, 2**32)")
        _require(
            bool(self.device.strip()), "device", self.device, "'auto', 'cpu', 'cuda', 'cuda:N', 'mps', ..."
        )
        _require(0.0 < self.ema_decay < 1.0, "ema_decay", self.ema_decay, "in (0, 1)")
        if self.bn_momentum is not None:
            _require(0.0 < self.bn_momentum <= 1.0, "bn_momentum", self.bn_momentum, "in (0, 1] (or null)")
        _require(self.log_every >= 0, "log_every", self.log_every, ">= 0 (0 = once per epoch)")
        _require(self.save_every >= 0, "save_every", self.save_every, ">= 0 (0 = only the final checkpoint)")
        if self.threads is not None:
            _require(self.threads >= 1, "threads", self.threads, ">= 1 (or null for the default)")
        _require(self.repeated_aug >= 0, "repeated_aug", self.repeated_aug, ">= 0 (0 or 1 = off)")

