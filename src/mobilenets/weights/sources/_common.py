"""What every source mapping shares: our model's layer layout, and the result of a mapping.

A source checkpoint names its tensors after its own module tree. Rather than a name table per
architecture, each mapping walks *our* model (the one the weights are loaded into) and asks, for every
source tensor, which of our layers sits at the same place. Our layout is enumerated here once:
``flat_blocks`` lists every block of every stage in order (V2's final 1280 conv and V3's 960/576 conv
are the last entries), and ``block_units`` lists the conv/BN units inside one block in forward order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ...models.blocks import block_type_of
from ...models.layers import SqueezeExcite

__all__ = ["BN_PARAMS", "MappedState", "block_units", "family", "flat_blocks"]

# BatchNorm tensors in PyTorch naming (num_batches_tracked is a counter, not needed for inference).
BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass
class MappedState:
    """A source checkpoint translated to our names.

    ``tensors`` maps our state-dict keys to tensors already in our layout; ``origin`` remembers the
    source name of each, so that errors can name the tensor as the user's file spells it;
    ``unexpected`` lists source tensors that have no place in the model.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    description: str = ""

    def put(self, key: str, value: torch.Tensor, source_key: str) -> None:
        self.tensors[key] = value
        self.origin[key] = source_key


def family(model: nn.Module) -> str:
    """The architecture family of one of our models (``mobilenet_v1``, ``mobilenet_v3_large``, ...)."""
    arch = getattr(model, "arch", None)
    return getattr(arch, "family", type(model).__name__)


def flat_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every block of every stage, in forward order, with its state-dict prefix (``blocks.3.1``)."""
    out: list[tuple[str, nn.Module]] = []
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return out
    for s, stage in enumerate(blocks):
        for i, block in enumerate(stage):
            out.append((f"blocks.{s}.{i}", block))
    return out


def block_units(prefix: str, block: nn.Module) -> list[tuple[str, str]]:
    """The layers of one block in forward order as ``(state-dict prefix, kind)``.

    ``kind`` is ``"conv"`` (a ConvNormAct: ``.conv`` + ``.bn``) or ``"se"`` (squeeze-excite), as the
    block type lists them (:attr:`~mobilenets.models.blocks.BlockType.units`); a unit the block was built
    without (an expansion that would not widen, no SE) is left out. A ConvBlock is itself a ConvNormAct
    and has one unit named by the block prefix.
    """
    block_type = block_type_of(block)
    units: list[tuple[str, str]] = []
    for attr, kind in block_type.units if block_type else ():
        if not attr:
            units.append((prefix, kind))
        elif (kind == "se" and isinstance(getattr(block, attr), SqueezeExcite)) or (kind == "conv" and not isinstance(getattr(block, attr), nn.Identity)):
            units.append((f"{prefix}.{attr}", kind))
    return units


def has_head_hidden(model: nn.Module) -> bool:
    """V3's post-pool 1280/1024 layer (a Linear here; a 1x1 conv with bias in timm and Keras)."""
    head = getattr(model, "head_hidden", None)
    return isinstance(head, nn.Sequential) and isinstance(head[0], nn.Linear)
