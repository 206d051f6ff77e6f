"""The one builder: turns a resolved architecture (stem, stages of block specs, head) into a network.

Every family (MobileNetV1/V2/V3, the ResNet baselines, and later V4) is a table in ``archs.py``; none
has a model class of its own. The module surface follows timm (``forward_features``, ``forward_head``,
``reset_classifier``, ``num_features``, ``pretrained_cfg``) so evaluation, export and weight conversion
can treat every model the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .._validate import check_number, check_prob
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from .blocks import BlockSpec, build_block
from .layers import Conv2dSame, conv2d_class, create_act, get_act_layer, is_depthwise, norm_layer_for
from .native import save_pretrained as write_native
from .neck import MSFASpec, MultiScaleFusionAdapter

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ArchSpec", "MobileNet"]



@dataclass(frozen=True)
class ArchSpec:
    """A fully resolved architecture: what the builder needs, with concrete channel counts.

    ``stem`` is a ``conv`` spec whose ``in_chs`` is replaced by the model's ``in_chans``.
    ``head_hidden`` is MobileNetV3's post-pool 1x1 layer (1280 / 1024 wide, no BatchNorm: "NBN" in the
    V3 paper's tables); ``None`` for families whose classifier follows the pooling directly.
    MobileNetV4 normalises that layer instead (``head_norm``: Linear without bias -> BatchNorm -> act).
    MobileNetV5 fields: ``norm`` (``"rmsnorm"``: RMSNorm2d everywhere, ``bn_eps`` its eps), ``neck`` (the
    MSFA that fuses the last stages into ``forward_features``' grid), ``encoder`` (no head: ``forward``
    returns that grid, as Gemma 3n consumes it) and the input normalisation its weights expect
    (``mean`` / ``std``; ``None``: ImageNet's).
    """

    family: str
    stem: BlockSpec
    stages: tuple[tuple[BlockSpec, ...], ...]
    head_hidden: int | None = None
    head_act: str = "hswish"
    head_norm: bool = False
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    default_dropout: float = 0.2
    pad_type: str = ""
    interpolation: str = "bilinear"
    input_size: int = 224
    crop_pct: float = 0.875
    small_input: bool = False
    norm: str = "batchnorm"
    neck: MSFASpec | None = None
    encoder: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> list[BlockSpec]:
        return [b for stage in self.stages for b in stage]


class MobileNet(nn.Module):
    """A network assembled from an :class:`ArchSpec`.

    Args:
        arch: the resolved architecture.
        num_classes: classifier outputs; 0 keeps the pooled features (no classifier).
        in_chans: input channels (1 for grayscale data such as digits).
        dropout: dropout before the classifier; ``None`` takes the family's default (0.2 for V2/V3).
        drop_path_rate: stochastic depth, rising linearly with block depth to this value (timm).
        features_only: return the C1..C5 feature maps (strides 2..32 nominal) instead of logits.
        out_indices: which of the five levels to return when ``features_only``.
        bn_eps, bn_momentum: override the family's BatchNorm settings (e.g. a source checkpoint's eps).
        pad_type: ``""`` (PyTorch, symmetric) or ``"same"`` (TensorFlow, asymmetric at stride 2), which
            Keras and timm ``tf_`` weights need for their outputs to match; ``None`` keeps the family's.
    """

    def __init__(
        self,
        arch: ArchSpec,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        dropout: float | None = None,
        drop_path_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3, 4),
        bn_eps: float | None = None,
        bn_momentum: float | None = None,
        pad_type: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} invalid; expected an integer >= 0")
        if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
            raise ValueError(f"in_chans={in_chans!r} invalid; expected an integer >= 1")
        dropout = check_prob("dropout", arch.default_dropout if dropout is None else dropout, inclusive=False)
        drop_path_rate = check_prob("drop_path_rate", drop_path_rate, inclusive=False)
        eps = arch.bn_eps if bn_eps is None else check_number(
            "bn_eps", bn_eps, lambda v: 0.0 < v < math.inf, "a finite number > 0 (or None for the family default)")
        momentum = arch.bn_momentum if bn_momentum is None else check_number(
            "bn_momentum", bn_momentum, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1] (or None for the family default)")
        norm_layer = norm_layer_for(eps, momentum, arch.norm)
        if arch.encoder and num_classes:
            raise ValueError(f"num_classes={num_classes} invalid for {arch.family}, an encoder whose forward returns "
                             "the MSFA grid; expected 0 (for a classifier use the same family without the encoder)")
        if pad_type is not None:
            if pad_type not in ("", "same"):
                raise ValueError(f"pad_type={pad_type!r} invalid; expected '' (PyTorch) or 'same' (TensorFlow)")
            arch = replace(arch, pad_type=pad_type)

        self.arch = arch
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = dropout
        self.features_only = features_only

        stem_spec = arch.stem.with_(in_chs=in_chans)
        self.stem = build_block(stem_spec, norm_layer, pad_type=arch.pad_type)

        total = len(arch.blocks)
        stages: list[nn.Sequential] = []
        idx = 0
        for stage in arch.stages:
            mods = []
            for spec in stage:
                mods.append(build_block(spec, norm_layer, drop_path_rate * idx / max(total - 1, 1), arch.pad_type))
                idx += 1
            stages.append(nn.Sequential(*mods))
        self.blocks = nn.Sequential(*stages)

        self._compute_feature_info()
        self.num_features = arch.blocks[-1].out_chs if arch.blocks else stem_spec.out_chs
        self.msfa: MultiScaleFusionAdapter | None = None
        self._neck_points: tuple[int, ...] = ()
        if arch.neck is not None and not features_only:
            self._build_neck(arch.neck, norm_layer)
        self.head_hidden_size = arch.head_hidden or self.num_features

        if features_only or arch.encoder:
            if features_only:
                self._make_features_only(out_indices)
            else:
                self.out_indices = ()
            self.global_pool = self.head_hidden = self.dropout = self.classifier = None
        else:
            self._build_head(dropout, eps, momentum)

        self.pretrained_cfg = self._default_cfg()
        self._init_weights()

    def _build_neck(self, neck: MSFASpec, norm_layer: Any) -> None:
        """MobileNetV5's MSFA on the feature levels it names; its grid becomes ``forward_features``' output."""
        taps = [self.feature_info[level] for level in neck.levels]
        self._neck_points = tuple(f["index"] for f in taps)
        act = (self.arch.blocks[-1] if self.arch.blocks else self.arch.stem).act
        self.msfa = MultiScaleFusionAdapter([f["num_chs"] for f in taps], neck, norm_layer, act)
        self.num_features = neck.out_chs

    def _build_head(self, dropout: float, eps: float, momentum: float) -> None:
        """Pooling, the hidden head layer (V3: Linear + act; V4: Linear + BatchNorm + act), dropout, classifier."""
        arch, num_classes = self.arch, self.num_classes
        self.out_indices: tuple[int, ...] = ()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        if arch.head_hidden and arch.head_norm:
            # MobileNetV4: timm's conv_head (1x1, no bias) + norm_head on the pooled 1x1 map, as 1-D layers.
            self.head_hidden = nn.Sequential(
                nn.Linear(self.num_features, arch.head_hidden, bias=False),
                nn.BatchNorm1d(arch.head_hidden, eps=eps, momentum=momentum),
                create_act(get_act_layer(arch.head_act)),
            )
        elif arch.head_hidden:
            # Written as Linear like torchvision; timm and Keras use a 1x1 conv with bias: same arithmetic.
            self.head_hidden = nn.Sequential(
                nn.Linear(self.num_features, arch.head_hidden), create_act(get_act_layer(arch.head_act))
            )
        else:
            self.head_hidden = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()

    # ----------------------------------------------------------------------------------------- metadata
    def _default_cfg(self) -> dict[str, Any]:
        size = 32 if self.arch.small_input else self.arch.input_size
        mean, std = self.arch.mean or IMAGENET_MEAN, self.arch.std or IMAGENET_STD
        if self.in_chans != 3:
            # Grayscale or extra channels: repeat the average statistic so normalisation stays sensible.
            mean = (sum(mean) / 3,) * self.in_chans
            std = (sum(std) / 3,) * self.in_chans
        return {
            "input_size": (self.in_chans, size, size),
            "mean": mean,
            "std": std,
            "interpolation": self.arch.interpolation,
            "crop_pct": 1.0 if self.arch.small_input else self.arch.crop_pct,
            "num_classes": self.num_classes,
            "classifier": "classifier",
            "first_conv": "stem.conv",
        }

    @property
    def default_cfg(self) -> dict[str, Any]:
        return self.pretrained_cfg

    def _compute_feature_info(self) -> None:
        """Find C1..C5: the last module at each nominal reduction 2, 4, 8, 16, 32."""
        specs = [self.arch.stem, *self.arch.blocks]
        nominal, actual = 1, 1
        last_at: dict[int, tuple[int, int, int]] = {}
        for i, spec in enumerate(specs):
            nominal *= spec.nominal_stride or spec.stride
            actual *= spec.stride
            last_at[nominal] = (i, spec.out_chs, actual)
        info = []
        for level, red in enumerate((2, 4, 8, 16, 32)):
            if red not in last_at:
                raise ValueError(f"architecture {self.arch.family} has no layer at reduction {red}")
            i, chs, act_red = last_at[red]
            info.append({"num_chs": chs, "reduction": act_red, "module": self._module_name(i), "index": i, "level": level})
        self.feature_info = info

    def _module_name(self, flat_index: int) -> str:
        if flat_index == 0:
            return "stem"
        i = flat_index - 1
        for s, stage in enumerate(self.arch.stages):
            if i < len(stage):
                return f"blocks.{s}.{i}"
            i -= len(stage)
        raise IndexError(flat_index)

    def _make_features_only(self, out_indices: Sequence[int]) -> None:
        items = None if isinstance(out_indices, str | bytes) else out_indices
        try:
            items = list(items)  # type: ignore[arg-type]
        except TypeError:
            items = None
        if not items or any(isinstance(i, bool) or not isinstance(i, int) or not -5 <= i <= 4 for i in items):
            raise ValueError(f"out_indices={out_indices!r} invalid; expected a non-empty sequence of integers in 0..4")
        idx = tuple(sorted({i % 5 for i in items}))
        self.out_indices = idx
        self.feature_info = [self.feature_info[i] for i in idx]
        last = max(f["index"] for f in self.feature_info)
        # Drop the blocks after the deepest requested level so every parameter gets a gradient.
        stages, flat = [], 1
        for stage in self.blocks:
            keep = [b for j, b in enumerate(stage) if flat + j <= last]
            flat += len(stage)
            if keep:
                stages.append(nn.Sequential(*keep))
        self.blocks = nn.Sequential(*stages)
        self._feature_points = {f["index"] for f in self.feature_info}

    @property
    def feature_channels(self) -> list[int]:
        return [f["num_chs"] for f in self.feature_info]

    @property
    def feature_reductions(self) -> list[int]:
        return [f["reduction"] for f in self.feature_info]

    # ------------------------------------------------------------------------------------------ weights
    def _init_weights(self) -> None:
        # torchvision's MobileNet/ResNet initialisation: He (fan_out) for convs, N(0, 0.01) for linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d | nn.GroupNorm | nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():  # blocks with an initialisation of their own (MobileNetV4's attention)
            if m is not self and callable(getattr(m, "init_weights", None)):
                m.init_weights()

    def no_weight_decay(self) -> set[str]:
        return set()

    @property
    def pad_type(self) -> str:
        return self.arch.pad_type

    def set_pad_type(self, pad_type: str) -> None:
        """Switch between PyTorch and TensorFlow "same" padding in place, keeping every weight.

        Padding holds no parameters, so a model built with one mode can run with the other: loading
        Keras or timm ``tf_`` weights into a symmetric-padded model (e.g. for fine-tuning) switches it to
        "same" so that its outputs match the source. Only stride-2 convolutions with kernels > 1 differ;
        at stride 1 both modes pad odd kernels symmetrically.
        """
        if pad_type not in ("", "same"):
            raise ValueError(f"pad_type={pad_type!r} invalid; expected '' (PyTorch) or 'same' (TensorFlow)")
        if pad_type == self.arch.pad_type:
            return
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if not isinstance(child, nn.Conv2d) or child.stride == (1, 1) or child.kernel_size == (1, 1):
                    continue
                cls = conv2d_class(pad_type, child.stride[0], is_depthwise(child.in_channels, child.groups))
                if type(child) is cls:
                    continue
                k, d = child.kernel_size, child.dilation
                padding = (0, 0) if issubclass(cls, Conv2dSame) else ((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])
                new = cls(child.in_channels, child.out_channels, k, child.stride, padding, d, child.groups,
                          child.bias is not None, device=child.weight.device, dtype=child.weight.dtype)
                new.weight = child.weight
                if child.bias is not None:
                    new.bias = child.bias
                setattr(parent, name, new)
        self.arch = replace(self.arch, pad_type=pad_type)
        kwargs = getattr(self, "model_kwargs", None)  # create_model's record, what save_pretrained writes
        if isinstance(kwargs, dict):
            kwargs["pad_type"] = pad_type

    # ------------------------------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected input of shape (N, {self.in_chans}, H, W), got {tuple(x.shape)}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk output before pooling (N, num_features, H/32, W/32 at the default strides); with an MSFA
        neck (MobileNetV5) its fixed grid (N, 2048, 16, 16 for Gemma 3n's encoder)."""
        if not torch.compiler.is_compiling():
            self._check_input(x)
        return self.forward_trunk(x)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_features` without its Python shape check, the graph exporters trace: stem,
        blocks and (MobileNetV5) the MSFA neck."""
        if self.msfa is None:
            return self.blocks(self.stem(x))
        _, taps = self._walk(x, set(self._neck_points))
        return self.msfa(taps)

    def _walk(self, x: torch.Tensor, points: set[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run stem and blocks, keeping the outputs at the flat indices ``points`` (0 = stem)."""
        feats = []
        x = self.stem(x)
        if 0 in points:
            feats.append(x)
        i = 0
        for stage in self.blocks:
            for block in stage:
                i += 1
                x = block(x)
                if i in points:
                    feats.append(x)
        return x, feats

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | None = None, *, intermediates_only: bool = True,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of levels ``indices`` (C1..C5 = 0..4; ``None``: those ``feature_info`` names).

        ``intermediates_only=False`` also returns ``forward_features``' output, as ``(features, maps)``
        (timm's order): for MobileNetV5 the MSFA grid with the stage outputs, from one pass.
        """
        if not torch.compiler.is_compiling():
            self._check_input(x)
        if indices is None:
            points = getattr(self, "_feature_points", {f["index"] for f in self.feature_info})
        else:
            by_level = {f["level"]: f["index"] for f in self.feature_info}
            bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int) or not -5 <= i <= 4
                   or (i % 5) not in by_level]
            if bad or not indices:
                raise ValueError(f"indices={indices!r} invalid; expected feature levels among {sorted(by_level)}")
            points = {by_level[i % 5] for i in indices}
        if intermediates_only:
            return self._walk(x, points)[1]
        if self.features_only:
            raise RuntimeError("a features_only model has no final features; use intermediates_only=True")
        neck = set(self._neck_points)
        out, feats = self._walk(x, points | neck)
        order = sorted(points | neck)
        maps = [feats[order.index(p)] for p in sorted(points)]
        final = self.msfa([feats[order.index(p)] for p in sorted(neck)]) if self.msfa is not None else out
        return final, maps

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, the V3 hidden head layer, dropout and classifier; ``pre_logits`` stops before dropout."""
        if self.features_only:
            raise RuntimeError("a features_only model has no head; use forward() for its feature maps")
        if self.arch.encoder:
            raise RuntimeError(f"{self.arch.family} is an encoder without a head; forward() returns its MSFA grid")
        x = self.head_hidden(torch.flatten(self.global_pool(x), 1))
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_intermediates(x)
        if self.arch.encoder:
            return self.forward_features(x)
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier for a new class count (fine-tuning); 0 removes it."""
        if self.features_only or self.arch.encoder:
            raise RuntimeError("a features_only model or an encoder has no classifier")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} invalid; expected an integer >= 0")
        self.num_classes = num_classes
        device = next(self.parameters()).device
        if num_classes > 0:
            self.classifier = nn.Linear(self.head_hidden_size, num_classes, device=device)
            nn.init.normal_(self.classifier.weight, 0, 0.01)
            nn.init.zeros_(self.classifier.bias)
        else:
            self.classifier = nn.Identity()
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    # -------------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str, class_names: list[str] | None = None) -> None:
        """Write the native format (``model.safetensors`` + ``config.json``); see :mod:`mobilenets.models.native`."""
        write_native(self, directory, class_names=class_names or getattr(self, "class_names", None))
