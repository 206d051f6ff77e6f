"""Regenerate the weight-conversion fixtures in ``tests/fixtures/weights/``.

Each fixture is a small model built by the *source* implementation (torchvision, timm or Keras) with
random weights and non-default BatchNorm running statistics, saved in that source's own file format,
plus the source's logits for one fixed input. ``tests/test_weights.py`` converts every file with
:func:`mobilenets.load_weights` and checks our logits against the source's within 1e-4, so the tests need
none of the three libraries.

How to run (from the repository root, CPU is enough, about a minute)::

    pip install --no-deps torchvision timm                # --no-deps: they must not pull another torch
    pip install keras h5py torch==2.13.0                  # torch pinned so pip never swaps it
    KERAS_BACKEND=torch python scripts/make_weight_fixtures.py

The detection fixtures (``--only det``: torchvision's SSDLite, raw head outputs and anchors in
``detection_expected.safetensors``, described by ``detection.json``) are checked by
``tests/test_detection_models.py``; the segmentation fixtures (``--only seg``: torchvision's LR-ASPP and
DeepLabV3, their outputs in ``segmentation_expected.safetensors``, described by ``segmentation.json``
with the full-size models' tensor names and shapes) by ``tests/test_segmentation_models.py``.

torchvision's compiled ops do not load against the CPU torch build used here; the model code does not
need them, so the script stubs ``torchvision._meta_registrations`` before importing torchvision (timm
imports torchvision too). Pass ``--only tv,timm,keras`` to rebuild one source.

The models are deliberately tiny (width multipliers 0.02-0.25, 5 classes, 64x64 input) so that all
fixtures together stay under 8 MB; every tensor is still random, so a mapping or layout mistake shows
up as a large logit difference. The V3 heads of timm and Keras keep their 1280/1024 hidden width at any
multiplier, which is why their multipliers are the smallest; Keras V1 rounds widths with int(c * alpha),
so only alpha = 0.25 and up (multiples of 8) match the paper's rounding, hence its larger file.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "weights"
NUM_CLASSES = 5
SIZE = 64  # even at every stride-2 layer, so Keras V1's explicit (0, 1) padding equals TF "same"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # MobileNetV5-300M: pixels in [0, 1], unnormalised


@dataclass
class Fixture:
    name: str
    source: str  # torchvision | timm | keras
    file: str  # file name, its suffix picks the format
    arch: str  # our registered architecture
    kwargs: dict[str, Any]  # create_model keywords that reproduce the source architecture
    build: Callable[[], Any]
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] = IMAGENET
    load: dict[str, Any] = field(default_factory=dict)  # extra load_weights keywords (e.g. source)
    also: tuple[str, ...] = ()  # further file names holding the same weights in another format


# ----------------------------------------------------------------------------------------- torch side
def _randomise_torch(model: torch.nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
    """Random affine BN parameters and running statistics taken from data, then perturbed.

    Statistics measured on real activations keep every layer's output at a sane scale (random
    statistics would blow the logits up to 1e4 or shrink them to nothing); the perturbation makes sure
    none of them equals a default or a batch statistic, so a loader that ignored them would fail.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                # 3/sqrt(fan_in): logits of order 1-10, so that 1e-4 is a tight tolerance
                torch.nn.init.normal_(m.weight, 0, 3 / m.in_features**0.5, generator=gen)
                torch.nn.init.normal_(m.bias, 0, 0.1, generator=gen)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:  # SE convs, timm's V3 head conv
                fan_in = m.weight[0].numel()
                torch.nn.init.normal_(m.weight, 0, 2 / fan_in**0.5, generator=gen)
                torch.nn.init.normal_(m.bias, 0, 0.1, generator=gen)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.empty_like(m.weight).uniform_(0.7, 1.3, generator=gen))
                m.bias.copy_(torch.empty_like(m.bias).normal_(0, 0.2, generator=gen))
                m.momentum = 1.0
            elif isinstance(getattr(m, "gamma", None), torch.nn.Parameter):  # V4 LayerScale: 1e-5 would hide a branch
                m.gamma.copy_(torch.empty_like(m.gamma).uniform_(0.3, 0.7, generator=gen))
            elif type(m).__name__.startswith("RmsNorm"):  # V5: weight-only RMSNorm, ones by default
                m.weight.copy_(torch.empty_like(m.weight).uniform_(0.7, 1.3, generator=gen))
    _measure_statistics(model, x, gen)


def _measure_statistics(model: torch.nn.Module, x: torch.Tensor, gen: torch.Generator) -> None:
    """BatchNorm running statistics from one training pass on ``x``, then perturbed; eval mode after."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0
        model.train()
        model(x)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(torch.empty_like(m.running_mean).normal_(0, 0.05, generator=gen))
                m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25, generator=gen))
                m.momentum = 0.1
    model.eval()


def _tv(fn: str, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        import torchvision.models as tvm

        return getattr(tvm, fn)(num_classes=NUM_CLASSES, **kw)

    return build


def _timm(gen_name: str, variant: str, mult: float, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        from timm.models import efficientnet, mobilenetv3

        mod = mobilenetv3 if gen_name in ("_gen_mobilenet_v3", "_gen_mobilenet_v4") else efficientnet
        return getattr(mod, gen_name)(variant, mult, num_classes=NUM_CLASSES, pretrained=False, **kw)

    return build


# MobileNetV5 at full depth is 100+ blocks, and its attention widths do not follow the multiplier, so its
# fixtures are shortened tables built by timm's own constructor (``block_args``, decoded by timm's
# ``decode_arch_def`` from its row strings) at multiplier 0.02: every block type and quirk stays (edge residual,
# the four-kernel UIB forms, MQA with and without key/value stride 2, the base table's "s2" on an attention
# row that timm's builder ignores, the MSFA pooling to its grid (300m: 4x4 -> 2x2) or resizing to it (base:
# 4x4 -> 16x16 bilinear), TF "same" padding of the encoder). Our side reads the same rows as a table dict
# (family mobilenet_v5) through mobilenet_table. The encoder's MSFA is 2048 wide in timm whatever the
# multiplier, hence the smallest multiplier (every width rounds to 8-24) and a 16-wide stem.
V5_MULT = 0.02
V5_STEM = 16  # timm's stem_size: 64 (kept below multiplier 1) would make the first 3x3 expand conv most of the file


def _v5_timm_rows(big: int, huge: int, base: bool) -> list[list[str]]:
    return [
        ["er_r1_k3_s2_e4_c128", "er_r1_k3_s1_e4_c128"],
        ["uir_r1_a3_k5_s2_e6_c256", "uir_r1_a5_k0_s1_e4_c256"],
        [f"uir_r1_a5_k5_s2_e6_c{big}", f"uir_r1_a0_k0_s1_e1_c{big}",
         f"mqa_r1_k3_h2_s2_d16_c{big}" if base else f"mqa_r1_k3_h2_v2_s1_d16_c{big}", f"uir_r1_a0_k0_s1_e2_c{big}"],
        [f"uir_r1_a5_k5_s2_e6_c{huge}", f"mqa_r1_k3_h2_s1_d24_c{huge}", f"uir_r1_a0_k0_s1_e2_c{huge}"],
    ]


def _v5_table(big: int, huge: int, base: bool, options: dict[str, Any]) -> dict[str, Any]:
    return {"format": "mobilenets-table", "version": 1, "family": "mobilenet_v5", "options": options,
            "stem": f"Conv(3, {V5_STEM}, 2)", "head": None, "stages": [
                ["FusedIB(3, 4, 128, 2)", "FusedIB(3, 4, 128, 1)"],
                ["UIB(3, 5, 6, 256, 2)", "UIB(5, 0, 4, 256, 1)"],
                [f"UIB(5, 5, 6, {big}, 2)", f"UIB(0, 0, 1, {big}, 1)", f"MQA(2, 16, {1 if base else 2}, {big})",
                 f"UIB(0, 0, 2, {big}, 1)"],
                [f"UIB(5, 5, 6, {huge}, 2)", f"MQA(2, 24, 1, {huge})", f"UIB(0, 0, 2, {huge}, 1)"]]}


def _timm_v5(variant: str, base: bool, encoder: bool, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        from timm.models import mobilenetv5
        from timm.models._efficientnet_builder import decode_arch_def

        big, huge = (512, 1024) if base else (640, 1280)
        heads = {} if encoder else {"num_classes": NUM_CLASSES}
        return mobilenetv5._gen_mobilenet_v5(variant, V5_MULT, encoder=encoder, pretrained=False, stem_size=V5_STEM,
                                             block_args=decode_arch_def(_v5_timm_rows(big, huge, base)), **heads, **kw)

    return build


V5_FIXTURES = [
    Fixture("timm_mobilenet_v5_300m_enc", "timm", "timm_mobilenet_v5_300m_enc.safetensors", "mobilenet_table",
            {"table": _v5_table(640, 1280, False, {"variant": "300m", "encoder": True, "msfa_grid": 2}),
             "width_mult": V5_MULT, "num_classes": 0, "pad_type": "same"},
            _timm_v5("mobilenetv5_300m_enc", False, True, pad_type="same", msfa_output_resolution=2), mean_std=UNIT),
    Fixture("timm_mobilenet_v5_300m", "timm", "timm_mobilenet_v5_300m.safetensors", "mobilenet_table",
            {"table": _v5_table(640, 1280, False, {"variant": "300m", "msfa_chs": 64, "msfa_grid": 2}),
             "width_mult": V5_MULT},
            _timm_v5("mobilenetv5_300m", False, False, num_features=64, msfa_output_resolution=2), mean_std=UNIT),
    Fixture("timm_mobilenet_v5_base", "timm", "timm_mobilenet_v5_base.safetensors", "mobilenet_table",
            {"table": _v5_table(512, 1024, True, {"variant": "base", "msfa_chs": 64}), "width_mult": V5_MULT},
            _timm_v5("mobilenetv5_base", True, False, num_features=64), mean_std=INCEPTION),
]


# ----------------------------------------------------------------------------------------- keras side
def _keras(ctor: str, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        return getattr(keras.applications, ctor)(
            weights=None, classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 3), classifier_activation=None, **kw
        )

    return build


def _randomise_keras(model: Any, x01: np.ndarray, rng: np.random.Generator, keras_input: Callable) -> None:
    """The Keras counterpart of :func:`_randomise_torch` (moving statistics from one training pass)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.7, 1.3, gamma.shape).astype("float32"),
                               rng.normal(0, 0.2, beta.shape).astype("float32"), mean, var])
            layer.momentum = 0.0
        elif isinstance(layer, keras.layers.Conv2D | keras.layers.Dense) and layer.use_bias:
            w = layer.get_weights()
            layer.set_weights([w[0], rng.normal(0, 0.1, w[1].shape).astype("float32")])
    model(keras_input(x01), training=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, (mean + rng.normal(0, 0.05, mean.shape)).astype("float32"),
                               (var * rng.uniform(0.8, 1.25, var.shape)).astype("float32")])
            layer.momentum = 0.99


def _keras_v3_input(x01: np.ndarray) -> np.ndarray:
    return x01 * 255.0  # MobileNetV3 has Rescaling(1/127.5, offset=-1) inside the model


def _keras_tf_input(x01: np.ndarray) -> np.ndarray:
    return x01 * 2.0 - 1.0  # keras.applications.mobilenet(_v2).preprocess_input, "tf" mode


def _save_keras(model: Any, path: Path) -> None:
    """Write with Keras itself, then repack with HDF5's newer object headers to shrink the file.

    Keras writes a group for every layer (activations included) in HDF5's oldest format, several hundred
    KB of metadata for a tiny model. Copying every group, dataset and attribute into a ``libver="latest"``
    file keeps the logical layout exactly as Keras wrote it (names, nesting, attributes, dtypes) and
    halves the size; :func:`_check_keras_reload` proves Keras still reads it to the same logits.
    """
    import h5py

    raw = path.with_name(path.name + ".raw")
    if path.name.endswith(".weights.h5"):
        # Keras 3 layout: layers/<class name>[_<n>]/vars/<i>; Keras insists on the suffix.
        raw = path.with_name("raw_" + path.name)
        model.save_weights(str(raw))
    else:
        from keras.src.legacy.saving import legacy_h5_format

        # The layout keras.applications publishes: one group per layer name, weight_names attributes.
        with h5py.File(raw, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)

    def copy(src: Any, dst: Any) -> None:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for k, obj in src.items():
            if isinstance(obj, h5py.Group):
                copy(obj, dst.create_group(k))
            else:
                d = dst.create_dataset(k, data=obj[()])
                for a, b in obj.attrs.items():
                    d.attrs[a] = b

    with h5py.File(raw, "r") as f, h5py.File(path, "w", libver="latest") as g:
        copy(f, g)
    raw.unlink()


def _check_keras_reload(build: Callable[[], Any], path: Path, x: np.ndarray, expected: np.ndarray) -> None:
    """Load the written file into a fresh Keras model and require the same logits."""
    import h5py
    import keras

    fresh = build()
    if path.name.endswith(".weights.h5"):
        fresh.load_weights(str(path))
    else:
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "r") as f:
            legacy_h5_format.load_weights_from_hdf5_group(f, fresh)
    got = np.asarray(keras.ops.convert_to_numpy(fresh(x, training=False)))
    if not np.allclose(got, expected, atol=1e-6, rtol=0):
        raise SystemExit(f"{path.name}: Keras does not reload its own file to the same logits")


FIXTURES = [
    # torchvision: V2, V3-Large, V3-Small with reduced tail; .safetensors and one torch.save .pth
    Fixture("tv_mobilenet_v2", "torchvision", "tv_mobilenet_v2.safetensors", "mobilenet_v2",
            {"width_mult": 0.05}, _tv("mobilenet_v2", width_mult=0.05)),
    Fixture("tv_mobilenet_v3_large", "torchvision", "tv_mobilenet_v3_large.safetensors", "mobilenet_v3_large",
            {"width_mult": 0.1}, _tv("mobilenet_v3_large", width_mult=0.1)),
    Fixture("tv_mobilenet_v3_small_reduced_tail", "torchvision", "tv_mobilenet_v3_small_reduced_tail.pth",
            "mobilenet_v3_small", {"width_mult": 0.1, "reduced_tail": True},
            _tv("mobilenet_v3_small", width_mult=0.1, reduced_tail=True)),
    # timm: V1 (ReLU6), V2, V3 with timm's width convention, a tf_ minimalistic port ("same" padding,
    # BN eps 1e-3); .safetensors, a Hugging Face style pytorch_model .bin
    Fixture("timm_mobilenet_v1", "timm", "timm_mobilenet_v1.bin", "mobilenet_v1",
            {"width_mult": 0.1, "act": "relu6"}, _timm("_gen_mobilenet_v1", "mobilenetv1_010", 0.1)),
    Fixture("timm_mobilenet_v2", "timm", "timm_mobilenet_v2.safetensors", "mobilenet_v2", {"width_mult": 0.05},
            _timm("_gen_mobilenet_v2", "mobilenetv2_005", 0.05)),
    Fixture("timm_mobilenet_v3_large", "timm", "timm_mobilenet_v3_large.safetensors", "mobilenet_v3_large",
            {"width_mult": 0.02, "width_convention": "timm"},
            _timm("_gen_mobilenet_v3", "mobilenetv3_large_002", 0.02)),
    Fixture("timm_tf_mobilenet_v3_small_minimal", "timm", "timm_tf_mobilenet_v3_small_minimal.safetensors",
            "mobilenet_v3_small", {"width_mult": 0.02, "width_convention": "timm", "minimalistic": True,
                                   "pad_type": "same"},
            _timm("_gen_mobilenet_v3", "tf_mobilenetv3_small_minimal_002", 0.02, bn_eps=1e-3, pad_type="same"),
            mean_std=INCEPTION, load={"source": "timm_tf"}),
    # timm MobileNetV4: every variant (Conv rows, fused IB, all four UIB forms, Mobile MQA with and without
    # key/value downsampling, GELU, LayerScale, the normalised head)
    *(Fixture(f"timm_mobilenet_v4_{v}", "timm", f"timm_mobilenet_v4_{v}.safetensors", f"mobilenet_v4_{v}",
              {"width_mult": mult}, _timm("_gen_mobilenet_v4", f"mobilenetv4_{v}", mult))
      for v, mult in (("conv_small", 0.1), ("conv_medium", 0.05), ("conv_large", 0.03), ("hybrid_medium", 0.05),
                      ("hybrid_large", 0.03))),
    # Keras: V1, V2, V3-Large (minimalistic) and V3-Small; legacy .h5 (the layout keras.applications
    # publishes) and the Keras 3 .weights.h5 layout
    Fixture("keras_mobilenet_v1", "keras", "keras_mobilenet_v1.h5", "mobilenet_v1",
            {"width_mult": 0.25, "act": "relu6", "pad_type": "same"}, _keras("MobileNet", alpha=0.25),
            mean_std=INCEPTION),
    Fixture("keras_mobilenet_v2", "keras", "keras_mobilenet_v2.weights.h5", "mobilenet_v2",
            {"width_mult": 0.05, "pad_type": "same"}, _keras("MobileNetV2", alpha=0.05), mean_std=INCEPTION),
    Fixture("keras_mobilenet_v3_large_minimalistic", "keras", "keras_mobilenet_v3_large_minimalistic.h5",
            "mobilenet_v3_large", {"width_mult": 0.02, "width_convention": "keras", "minimalistic": True,
                                   "pad_type": "same"},
            _keras("MobileNetV3Large", alpha=0.02, minimalistic=True), mean_std=INCEPTION),
    Fixture("keras_mobilenet_v3_small", "keras", "keras_mobilenet_v3_small.weights.h5", "mobilenet_v3_small",
            {"width_mult": 0.02, "width_convention": "keras", "pad_type": "same"},
            _keras("MobileNetV3Small", alpha=0.02), mean_std=INCEPTION),
    *V5_FIXTURES,  # last, so that the fixtures above keep their seeds (100 + their index)
]


# ------------------------------------------------------------------------------------ detection side
# torchvision's SSDLite320 (reduced-tail MobileNetV3-Large, extras 512/256/256/128) at width 0.25 and 5
# classes, run at 128x128 (its transform's fixed size changed) on two images of different sizes, so the
# resize, the backbone cut, extras, heads and anchors are all compared. Raw outputs, not detections:
# torchvision's NMS is a compiled op that does not load here.
DET_SIZE = 128
DET_FIXTURES = {
    "tv_ssdlite320_mobilenet_v3_large": {
        "file": "tv_ssdlite320_mobilenet_v3_large.pth", "arch": "ssdlite320_mobilenet_v3_large",
        "kwargs": {"num_classes": NUM_CLASSES, "image_size": DET_SIZE, "backbone_kwargs": {"width_mult": 0.25}},
        "build": {"num_classes": NUM_CLASSES, "width_mult": 0.25},
    },
}


class _SSDNet(torch.nn.Module):
    """torchvision SSD's network alone (backbone + head), for statistics and raw outputs."""

    def __init__(self, ssd: Any) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(x).values()))


def make_detection_fixtures() -> None:
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large
    from torchvision.models.detection.image_list import ImageList

    gen = torch.Generator().manual_seed(4321)
    # Images as uint8 (the tests divide by 255 too) and weights stored in float16 after rounding the
    # model's own to float16 values, so the outputs are exact for what the file holds at half the size.
    raw = [torch.randint(0, 256, (3, 100, 120), generator=gen, dtype=torch.uint8),
           torch.randint(0, 256, (3, DET_SIZE, DET_SIZE), generator=gen, dtype=torch.uint8)]
    images = [r.float() / 255 for r in raw]
    arrays: dict[str, torch.Tensor] = {"image0": raw[0], "image1": raw[1]}
    manifest: dict[str, Any] = {"size": DET_SIZE, "images": ["image0", "image1"], "fixtures": {}}
    for i, (name, fx) in enumerate(DET_FIXTURES.items()):
        torch.manual_seed(200 + i)
        ssd = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, **fx["build"])
        ssd.transform.fixed_size = (DET_SIZE, DET_SIZE)
        ssd.transform.min_size, ssd.transform.max_size = (DET_SIZE,), DET_SIZE
        net = _SSDNet(ssd)
        stats_x = torch.rand(16, 3, DET_SIZE, DET_SIZE, generator=gen) * 2 - 1
        _randomise_torch(net, stats_x, gen)
        # Random residual branches add up to activations near 1e3 by C5, where float32 rounding alone
        # (one thread or two) moves the outputs by 1e-3; quieter branches keep them near 10.
        with torch.no_grad():
            for m in ssd.backbone.modules():
                if getattr(m, "use_res_connect", False):
                    m.block[-1][1].weight.mul_(0.1)
                    m.block[-1][1].bias.mul_(0.1)
        _measure_statistics(net, stats_x, gen)
        ssd.eval()
        with torch.no_grad():
            for t in ssd.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
            batch, _ = ssd.transform(images)
            out = net(batch.tensors)
            # Outputs within +-5: float32 rounding (one thread or two) then stays well under the 1e-4
            # the tests pin (see the classifiers' note above).
            for key, head in (("cls_logits", ssd.head.classification_head),
                              ("bbox_regression", ssd.head.regression_head)):
                peak = float(out[key].abs().max())
                for block in head.module_list:
                    for t in (block[1].weight, block[1].bias):
                        t.copy_((t * (5 / peak)).half().float())
            out = net(batch.tensors)
            feats = list(ssd.backbone(batch.tensors).values())
            anchors = ssd.anchor_generator(ImageList(batch.tensors, batch.image_sizes), feats)[0]
            # torchvision's training losses for two hand-made targets (train-mode BatchNorm on a copy)
            targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 5.0, 115.0, 40.0]]),
                        "labels": torch.tensor([1, 3])},
                       {"boxes": torch.tensor([[30.0, 30.0, 100.0, 90.0]]), "labels": torch.tensor([4])}]
            losses = copy.deepcopy(ssd).train()(images, targets)
        for j, t in enumerate(targets):
            arrays[f"{name}.target{j}.boxes"], arrays[f"{name}.target{j}.labels"] = t["boxes"], t["labels"]
        for key, value in losses.items():
            arrays[f"{name}.loss.{key}"] = value.detach().reshape(1)
        state = {k: (v.half() if v.is_floating_point() else v).detach().clone().contiguous()
                 for k, v in ssd.state_dict().items()}
        torch.save(state, OUT / fx["file"])
        for key in ("cls_logits", "bbox_regression"):
            arrays[f"{name}.{key}"] = out[key].contiguous()
        arrays[f"{name}.anchors"] = anchors.contiguous()
        manifest["fixtures"][name] = {"file": fx["file"], "arch": fx["arch"], "kwargs": fx["kwargs"],
                                      "num_classes": NUM_CLASSES, "anchors": int(anchors.shape[0])}
        print(f"{name:40s} {(OUT / fx['file']).stat().st_size / 1024:8.1f} KiB  "
              f"logits in [{out['cls_logits'].min():.2f}, {out['cls_logits'].max():.2f}]")
    save_file(arrays, OUT / "detection_expected.safetensors")
    manifest["generated_with"] = _versions()
    (OUT / "detection.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------- segmentation side
# torchvision's LR-ASPP and DeepLabV3 (MobileNetV3-Large, dilated, output stride 16) at width 0.25 and 5
# classes, built by torchvision's own model functions, on two 72x88 images (not multiples of 16, so the
# upsampling to odd map sizes is compared too). DeepLabHead hard-codes 256 channels, so the DeepLabV3
# fixture replaces torchvision's head by the same Sequential with torchvision's ASPP at 32 channels and
# rates 1, 2, 3 (large rates on a 5x6 map would leave every off-centre weight in the padding, untested).
# The full-size models' state-dict names and shapes go in segmentation.json, so the tests check the
# published files' layout without a 40 MB fixture.
SEG_SIZE = (72, 88)
SEG_FIXTURES = {
    "tv_lraspp_mobilenet_v3_large": {
        "file": "tv_lraspp_mobilenet_v3_large.pth", "arch": "lraspp_mobilenet_v3_large",
        "kwargs": {"num_classes": NUM_CLASSES, "backbone_kwargs": {"width_mult": 0.25}},
    },
    "tv_deeplabv3_mobilenet_v3_large": {
        "file": "tv_deeplabv3_mobilenet_v3_large.pth", "arch": "deeplabv3_mobilenet_v3_large",
        "kwargs": {"num_classes": NUM_CLASSES, "backbone_kwargs": {"width_mult": 0.25}, "aux_loss": True,
                   "aspp_channels": 32, "atrous_rates": [1, 2, 3]},
    },
}


def _tv_segmenter(name: str) -> Any:
    from torch import nn
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.segmentation.deeplabv3 import ASPP, _deeplabv3_mobilenetv3
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    backbone = mobilenet_v3_large(weights=None, width_mult=0.25, dilated=True)
    if name == "tv_lraspp_mobilenet_v3_large":
        return _lraspp_mobilenetv3(backbone, NUM_CLASSES)
    model = _deeplabv3_mobilenetv3(backbone, NUM_CLASSES, True)
    high = model.classifier[0].convs[0][0].in_channels
    model.classifier = nn.Sequential(ASPP(high, (1, 2, 3), 32), nn.Conv2d(32, 32, 3, padding=1, bias=False),
                                     nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, NUM_CLASSES, 1))
    return model


def make_segmentation_fixtures() -> None:
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large

    gen = torch.Generator().manual_seed(5678)
    x = torch.rand(2, 3, *SEG_SIZE, generator=gen)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    x = (x - mean) / std
    arrays: dict[str, torch.Tensor] = {"input": x.contiguous()}
    manifest: dict[str, Any] = {"input": "input", "fixtures": {}, "full_size": {}}
    for i, (name, fx) in enumerate(SEG_FIXTURES.items()):
        torch.manual_seed(300 + i)
        model = _tv_segmenter(name)
        stats_x = torch.randn(8, 3, *SEG_SIZE, generator=gen)
        _randomise_torch(model, stats_x, gen)
        with torch.no_grad():
            for m in model.backbone.modules():  # quieter residual branches, as the detection fixture
                if getattr(m, "use_res_connect", False):
                    m.block[-1][1].weight.mul_(0.1)
                    m.block[-1][1].bias.mul_(0.1)
        _measure_statistics(model, stats_x, gen)
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
            out = model(x)
            # Logits within +-5 (class convs rescaled, in float16 values): 1e-4 stays a tight tolerance.
            heads = {"out": [model.classifier.low_classifier, model.classifier.high_classifier]
                     if hasattr(model.classifier, "low_classifier") else [model.classifier[4]]}
            if getattr(model, "aux_classifier", None) is not None:
                heads["aux"] = [model.aux_classifier[4]]
            for key, convs in heads.items():
                peak = float(out[key].abs().max())
                for conv in convs:
                    for t in (conv.weight, conv.bias):
                        t.copy_((t * (5 / peak)).half().float())
            out = model(x)
        state = {k: (v.half() if v.is_floating_point() else v).detach().clone().contiguous()
                 for k, v in model.state_dict().items()}
        torch.save(state, OUT / fx["file"])
        for key, value in out.items():
            arrays[f"{name}.{key}"] = value.contiguous()
        manifest["fixtures"][name] = {"file": fx["file"], "arch": fx["arch"], "kwargs": fx["kwargs"],
                                      "outputs": sorted(out)}
        print(f"{name:40s} {(OUT / fx['file']).stat().st_size / 1024:8.1f} KiB  "
              f"out in [{out['out'].min():.2f}, {out['out'].max():.2f}]")
    for arch, build, kwargs in (("lraspp_mobilenet_v3_large", lraspp_mobilenet_v3_large, {}),
                                ("deeplabv3_mobilenet_v3_large", deeplabv3_mobilenet_v3_large, {"aux_loss": True})):
        full = build(weights=None, weights_backbone=None, num_classes=21, **kwargs)
        manifest["full_size"][arch] = {"kwargs": kwargs,
                                       "shapes": {k: list(v.shape) for k, v in full.state_dict().items()}}
    save_file(arrays, OUT / "segmentation_expected.safetensors")
    manifest["generated_with"] = _versions()
    (OUT / "segmentation.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for mod in ("torchvision", "timm", "keras", "h5py"):
        with contextlib.suppress(ImportError):
            out[mod] = __import__(mod).__version__
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="tv,timm,keras,det,seg", help="comma-separated sources to rebuild")
    parser.add_argument("--names", default="", help="comma-separated fixture names: rebuild only these")
    args = parser.parse_args()
    names_only = {n.strip() for n in args.names.split(",") if n.strip()}
    wanted = {"tv": "torchvision", "timm": "timm", "keras": "keras", "det": "detection", "seg": "segmentation"}
    only = {wanted[s.strip()] for s in args.only.split(",") if s.strip()}
    if "detection" in only:
        OUT.mkdir(parents=True, exist_ok=True)
        make_detection_fixtures()
    if "segmentation" in only:
        OUT.mkdir(parents=True, exist_ok=True)
        make_segmentation_fixtures()
    if not only - {"detection", "segmentation"}:
        return

    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    x01 = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1234))
    save_file({"x": x01.contiguous()}, OUT / "input.safetensors")

    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"fixtures": {}}
    expected_path = OUT / "expected.safetensors"
    from safetensors.torch import load_file

    expected = load_file(str(expected_path)) if expected_path.exists() else {}
    # Keep what --only did not rebuild, forget fixtures no longer in the list.
    names = {fx.name for fx in FIXTURES}
    manifest["fixtures"] = {k: v for k, v in manifest["fixtures"].items() if k in names}
    expected = {k: v for k, v in expected.items() if k in names}

    for i, fx in enumerate(FIXTURES):
        if fx.source not in only or (names_only and fx.name not in names_only):
            continue
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in fx.mean_std)
        path = OUT / fx.file
        if fx.source == "keras":
            import keras

            keras.utils.set_random_seed(100 + i)
            model = fx.build()
            to_input = _keras_v3_input if fx.arch.startswith("mobilenet_v3") else _keras_tf_input
            x_nhwc = x01.permute(0, 2, 3, 1).numpy()
            stats_x = np.random.default_rng(i).uniform(0, 1, (4, SIZE, SIZE, 3)).astype("float32")
            _randomise_keras(model, stats_x, np.random.default_rng(100 + i), to_input)
            logits = torch.as_tensor(np.asarray(keras.ops.convert_to_numpy(model(to_input(x_nhwc), training=False))))
            for out in (path, *(OUT / other for other in fx.also)):
                _save_keras(model, out)
                _check_keras_reload(fx.build, out, to_input(x_nhwc), logits.numpy())
        else:
            torch.manual_seed(100 + i)
            model = fx.build()
            gen = torch.Generator().manual_seed(100 + i)
            stats_x = (torch.rand(4, 3, SIZE, SIZE, generator=gen) - mean) / std
            _randomise_torch(model, stats_x, gen)
            with torch.no_grad():
                logits = model((x01 - mean) / std)
                # Keep the logits within +-10: at +-100 float32 rounding alone (different conv
                # algorithms or thread counts) reaches the 1e-4 tolerance the tests pin.
                peak = float(logits.abs().max())
                if peak > 10:
                    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
                    head.weight.mul_(10 / peak)
                    head.bias.mul_(10 / peak)
                    logits = model((x01 - mean) / std)
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            if path.suffix == ".safetensors":
                save_file(state, path)
            else:
                torch.save(state, path)
        expected[fx.name] = logits.detach().float().contiguous()
        manifest["fixtures"][fx.name] = {
            "source": fx.source, "files": [fx.file, *fx.also], "arch": fx.arch, "kwargs": fx.kwargs,
            "num_classes": NUM_CLASSES, "mean": list(fx.mean_std[0]), "std": list(fx.mean_std[1]), "load": fx.load,
            "logit_range": [float(logits.min()), float(logits.max())],
        }
        sizes = sum((OUT / f).stat().st_size for f in [fx.file, *fx.also])
        print(f"{fx.name:40s} {sizes / 1024:8.1f} KiB  logits in [{logits.min():.2f}, {logits.max():.2f}]")

    manifest["input"] = {"file": "input.safetensors", "shape": list(x01.shape), "range": [0, 1]}
    manifest["generated_with"] = _versions()
    save_file(expected, expected_path)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"total {total / 1024**2:.2f} MiB in {OUT}")


if __name__ == "__main__":
    main()
