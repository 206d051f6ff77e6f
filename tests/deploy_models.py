"""Small models the deployment tests share: random-statistics models whose logits are far from zero, and a
tiny MobileNetV3-Small trained on digits for the int8 accuracy checks.

At initialisation the logits of our models are ~1e-6 (zero-init LayerScale and BatchNorm), where any export
passes a 1e-4 tolerance; :func:`randomize` makes folding or conversion errors show. A random-weight model
answers 10% whatever the precision, so int8 accuracy is measured on :func:`digits_model`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mobilenets
from mobilenets.models.layers import RMSNorm2d

MEAN, STD = 0.3051, 0.3235


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics, LayerScale and classifier weights; returns the model in eval mode.

    Convolutions are re-drawn with fan-in scaling: the models' own fan-out init shrinks the signal layer by
    layer until the logits hardly depend on the input (1e-6 here), which would let a wrong layer hide.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear", generator=g)
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
        elif isinstance(getattr(m, "gamma", None), nn.Parameter):  # MobileNetV4 LayerScale (1e-5 hides branches)
            m.gamma.data.copy_(torch.rand(m.gamma.shape, generator=g) * 0.5 + 0.25)
        elif isinstance(m, RMSNorm2d):  # MobileNetV5's norm: a weight only, ones at init
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        nn.init.normal_(classifier.weight, 0, 0.3, generator=g)
    return model.eval()


def tiny(name: str = "mobilenet_v3_small", width: float = 0.35, size: int | None = None) -> nn.Module:
    """A 1-channel, 10-class model with the small-input stem and digits' mean/std, randomized."""
    kwargs = {} if name.startswith("resnet") else {"width_mult": width}
    model = mobilenets.create_model(name, num_classes=10, small_input=True, in_chans=1, **kwargs)
    model.pretrained_cfg.update(mean=(MEAN,), std=(STD,))
    if size is not None:
        model.pretrained_cfg.update(input_size=(1, size, size))
    return randomize(model)


# A shortened MobileNetV5 table: every V5 piece (edge residual, UIB forms, MQA with and without key/value
# stride 2, RMSNorm2d, GELU-tanh, LayerScale, the MSFA neck) in 10 blocks, so that an export takes seconds
# where the 39-block base takes 10+ s per format.
V5_SHORT = {"format": "mobilenets-table", "version": 1, "family": "mobilenet_v5", "options": {"msfa_chs": 32},
            "stem": "Conv(3, 16, 2)", "stages": [
                ["FusedIB(3, 4, 16, 2)", "FusedIB(3, 4, 16, 1)"], ["UIB(3, 5, 4, 24, 2)", "UIB(5, 0, 4, 24, 1)"],
                ["UIB(5, 5, 4, 32, 2)", "MQA(2, 16, 2, 32)", "UIB(0, 0, 2, 32, 1)"],
                ["UIB(5, 5, 4, 48, 2)", "MQA(2, 16, 1, 48)", "UIB(0, 0, 2, 48, 1)"]]}


def tiny_v5() -> nn.Module:
    """:data:`V5_SHORT` as a 1-channel, 10-class digits model with the small-input stem, randomized."""
    model = mobilenets.create_model("mobilenet_table", table=V5_SHORT, num_classes=10, small_input=True, in_chans=1)
    model.pretrained_cfg.update(mean=(MEAN,), std=(STD,))
    return randomize(model)


def digits_model(size: int = 16, epochs: int = 2) -> nn.Module:
    """A tiny MobileNetV3-Small trained on digits (about 90% top-1 in ~10 s on one core): AdamW, then
    BatchNorm statistics recomputed over the training split (40 steps of running averages lag the weights)."""
    from mobilenets.data.tensor import load_digits_splits

    torch.manual_seed(0)
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.35, small_input=True, in_chans=1,
                                    num_classes=10)
    model.pretrained_cfg.update(mean=(MEAN,), std=(STD,), input_size=(1, size, size))
    train = load_digits_splits(size)["train"]
    x = (train.images.float() / 255 - MEAN) / STD
    y = train.labels
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass below
    with torch.no_grad():
        for i in range(0, len(y), 256):
            model(x[i:i + 256])
    return model.eval()


def digits_batch(n: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` normalised digits test images (1×size×size) and labels: in-distribution inputs, whose logits
    differ from image to image (random normal inputs average out in the global pool)."""
    from mobilenets.data.tensor import load_digits_splits

    test = load_digits_splits(size)["test"]
    return (test.images[:n].float() / 255 - MEAN) / STD, test.labels[:n]


def save_digits_model(path: Path, size: int = 16) -> Path:
    """:func:`digits_model` saved like a training run (class names, ``dataset: digits`` in config.json)."""
    from mobilenets.weights import save_pretrained

    save_pretrained(digits_model(size), path, class_names=[str(i) for i in range(10)], extra={"dataset": "digits"})
    return path
