"""docs/architecture.md's "how to add" recipes, followed to the letter: a toy block type is one
``BLOCK_TYPES`` entry, a toy dataset one ``DatasetInfo``; each is then built, run, profiled and drawn by
the code that already exists, with nothing else edited."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import mobilenets
from mobilenets.data.loader import make_batches
from mobilenets.data.registry import (
    DATASET_INFO,
    DatasetInfo,
    TrainDefaults,
    build_datasets,
    register_dataset,
)
from mobilenets.data.tensor import TensorImageDataset
from mobilenets.models.blocks import BLOCK_TYPES, BlockSpec, BlockType, block_type_of
from mobilenets.models.mobilenet import MobileNet

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


class ToyBlock(nn.Module):
    """A 3x3 conv + BN + ReLU with a residual when shapes allow: the smallest block a table can name."""

    def __init__(self, spec: BlockSpec, *, norm_layer: Any, drop_path: float = 0.0, pad_type: str = "") -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.in_chs, spec.out_chs, 3, spec.stride, 1, bias=False)
        self.bn = norm_layer(spec.out_chs)
        self.residual = spec.stride == 1 and spec.in_chs == spec.out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return x + y if self.residual else y


def test_the_recipes_are_in_the_doc():
    text = DOC.read_text()
    for heading in ("### A model", "### A block type", "### A dataset", "### An export format"):
        assert heading in text
    assert "BLOCK_TYPES" in text and "DatasetInfo" in text and "FORMATS" in text


def test_a_block_type_is_one_entry(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(BLOCK_TYPES, "toy", BlockType("toy", ToyBlock, "toy", "#ffffff"))
    base = mobilenets.create_model("mobilenet_v1", num_classes=3, width_mult=0.25).arch
    width = base.stem.out_chs
    toy_stage = (BlockSpec("toy", width, width), BlockSpec("toy", width, 2 * width, stride=2))
    arch = replace(base, stages=(toy_stage, (replace(base.stages[1][0], in_chs=2 * width), *base.stages[1][1:]),
                                 *base.stages[2:]))
    model = MobileNet(arch, num_classes=3).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)
    toys = [m for m in model.modules() if isinstance(m, ToyBlock)]
    assert len(toys) == 2 and block_type_of(toys[0]) is BLOCK_TYPES["toy"]
    # the profiler counts it like any other block: a 3x3 conv at 32x32 costs 9 * cin * cout * 32 * 32 MACs
    result = mobilenets.profile(model, 64)
    assert result.params == sum(p.numel() for p in model.parameters())
    plain = mobilenets.profile(MobileNet(base, num_classes=3), 64)
    assert result.macs != plain.macs
    # the report's architecture figure describes it from its entry alone
    from mobilenets.study.figures import _block_color, _block_text

    assert _block_text(toy_stage[1])[0] == "toy k3" and _block_color(toy_stage[1]) == "#ffffff"


def _toy_splits(root: Any, image_size: int, **kw: Any) -> dict[str, TensorImageDataset]:
    g = torch.Generator().manual_seed(int(kw.get("seed", 0)))

    def split(n: int) -> TensorImageDataset:
        labels = torch.arange(n) % 2
        images = (torch.rand(n, 1, image_size, image_size, generator=g) * 80 + labels.view(-1, 1, 1, 1) * 150)
        return TensorImageDataset(images.to(torch.uint8), labels, classes=["dark", "light"])

    return {"train": split(40), "val": split(10), "test": split(10)}


def test_a_dataset_is_one_entry(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("mobilenets.data.registry.DATASET_INFO", dict(DATASET_INFO))
    register_dataset(DatasetInfo("toy", 2, 1, 16, (0.5,), (0.25,), True,
                                 TrainDefaults(16, "pad", 2, 0.0, True), _toy_splits))
    splits = build_datasets("toy", image_size=16)
    assert {k: len(v) for k, v in splits.items()} == {"train": 40, "val": 10, "test": 10}
    batches, steps = make_batches(splits["train"], 8, shuffle=True, seed=0, device=torch.device("cpu"),
                                  device_resident=True, num_workers=0)
    x, y = next(iter(batches))
    assert steps == 5
    assert x.shape == (8, 1, 16, 16) and set(y.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="did you mean 'toy'"):
        build_datasets("toys", image_size=16)


def test_a_model_is_a_table_and_an_entry_point(monkeypatch: pytest.MonkeyPatch):
    from mobilenets.models import registry, widths
    from mobilenets.models.resolve import resolve
    from mobilenets.models.rows import Bottleneck, Context, Conv, LastConv
    from mobilenets.models.tables import Table

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    tiny_v2 = Table(Conv(3, 16, 2), (  # five strides of 2, so the model has the C1..C5 feature levels
        (Bottleneck(1, 8, 1, 1),), (Bottleneck(6, 16, 2, 2),), (Bottleneck(6, 24, 1, 2),),
        (Bottleneck(6, 32, 1, 2),), (Bottleneck(6, 48, 1, 2),), (LastConv(64),)))

    @registry.register_model
    def tiny_v2_net(*, width_mult: float = 1.0, **kwargs: Any) -> MobileNet:
        ctx = Context("mobilenet_v2", widths.MOBILENET_V2, width_mult, lambda nl: "relu6")
        return MobileNet(resolve(tiny_v2, ctx), **kwargs)

    assert "tiny_v2_net" in mobilenets.list_models("tiny*")
    model = mobilenets.create_model("tiny_v2_net", num_classes=4).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)
    # the second row repeats with stride 1 after the first, as V2's Table 2 reads
    assert [b.stride for b in model.arch.blocks] == [1, 2, 1, 2, 2, 2, 1]
    assert model.arch.blocks[-1].out_chs == 64
