"""SSDLite (MobileNetV2 paper, Sec. 6.2; MobileNetV3 paper, Sec. 6.3) on any ``features_only`` backbone.

The detector is data like the classifiers: a backbone built by the one builder, the levels it exposes
(chosen from the architecture, below), extra blocks of a channel list and prediction heads per level.
Levels: the expansion output of the first stride-32 block (stride 16; its 1x1 expansion conv, the
layer the V2 and V3 papers attach the first SSDLite map to) and the end of C5 (stride 32), then one
level per extra block (1x1 -> 3x3 depthwise stride 2 -> 1x1, ReLU6). A backbone whose first stride-32
block has no expansion before its strided conv (V1, ResNet, a fused block) uses the end of C4 instead.
``first_level="c3"`` puts the end of C3 (stride 8) in front, for small objects. Each level has a
classification and a box head: 3x3 depthwise + BN + ReLU6, then a 1x1 conv.

The conventions are torchvision's, so code written for its SSD works unchanged: images in 0..1 as a
list of [C, H, W] tensors (any sizes) or one [N, C, H, W] tensor, resized to ``image_size`` and
normalised by the model; ``model(images)`` in eval returns one dict per image (``boxes`` xyxy in the
pixels of the image given, ``scores``, ``labels`` with 0 = background never returned);
``model(images, targets)`` in training returns the loss dict. ``raw_outputs`` gives the head outputs
in torchvision's anchor order (level, row, column, anchor) with the anchors; ``decoded`` is the graph
with static shapes that export captures (network and box decoding; NMS runs after any runtime in the
shared :func:`~mobilenets.models.detection.boxes.postprocess`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import InvertedResidual, UniversalInvertedBottleneck
from ..layers import ConvNormAct, norm_layer_for
from ..mobilenet import MobileNet
from ..native import save_pretrained as write_native
from ..registry import build_model
from .anchors import DefaultBoxes
from .boxes import SSD_BOX_WEIGHTS, BoxCoder, clip_boxes, postprocess, ssd_loss

__all__ = ["DEFAULT_EXTRA_CHANNELS", "SSDLite", "Targets"]

DEFAULT_EXTRA_CHANNELS = (512, 256, 256, 128)
FIRST_LEVELS = ("expansion", "c3")
Targets = Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor]


# ------------------------------------------------------------------------------------ backbone taps
def _expansion_of(block: nn.Module) -> nn.Module | None:
    """The 1x1 expansion of a block whose strided conv follows it (so its output is at the input's stride)."""
    if isinstance(block, InvertedResidual) and not isinstance(block.conv_pw, nn.Identity):
        return None if block.has_skip else block.conv_pw
    if isinstance(block, UniversalInvertedBottleneck) and not block.has_skip:
        start = block.dw_start
        if isinstance(start, nn.Identity) or start.conv.stride == (1, 1):
            return block.pw_exp
    return None


def _split_forward(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a block, returning its expansion output too (the SSDLite tap inside the first stride-32 block)."""
    if isinstance(block, InvertedResidual):
        mid = block.conv_pw(x)
        return mid, block._add_skip(x, block.conv_pwl(block.se(block.conv_dw(mid))))
    assert isinstance(block, UniversalInvertedBottleneck)
    mid = block.pw_exp(block.dw_start(x))
    y = block.pw_proj(block.se(block.dw_mid(mid)))
    return mid, block._add_skip(x, block.layer_scale(block.dw_end(y)))


def _taps(backbone: MobileNet, first_level: str) -> tuple[dict[int, str], list[int], list[int]]:
    """Where the detector reads the backbone: ``{flat block index: "out" | "mid"}``, channels, reductions.

    Flat indices count the stem as 0 and the blocks after it in order, as ``feature_info`` does.
    """
    info = {f["level"]: f for f in backbone.feature_info}
    blocks = [b for stage in backbone.blocks for b in stage]
    taps: dict[int, str] = {}
    chans: list[int] = []
    reds: list[int] = []
    if first_level == "c3":
        taps[info[2]["index"]] = "out"
        chans.append(info[2]["num_chs"])
        reds.append(info[2]["reduction"])
    first32 = info[3]["index"] + 1
    expansion = _expansion_of(blocks[first32 - 1]) if first32 <= len(blocks) else None
    if expansion is not None:
        taps[first32] = "mid"
        chans.append(expansion.out_chs)
    else:
        taps[info[3]["index"]] = "out"
        chans.append(info[3]["num_chs"])
    reds.append(info[3]["reduction"])
    taps[info[4]["index"]] = "out"
    chans.append(info[4]["num_chs"])
    reds.append(info[4]["reduction"])
    return taps, chans, reds


# ------------------------------------------------------------------------------------- extras, heads
def _extra_block(in_chs: int, out_chs: int, norm_layer: Any) -> nn.Sequential:
    """1x1 to half the width -> 3x3 depthwise stride 2 -> 1x1 to the width, each BN + ReLU6."""
    mid = out_chs // 2
    return nn.Sequential(
        ConvNormAct(in_chs, mid, 1, norm_layer=norm_layer, act_layer=nn.ReLU6),
        ConvNormAct(mid, mid, 3, 2, groups=mid, norm_layer=norm_layer, act_layer=nn.ReLU6),
        ConvNormAct(mid, out_chs, 1, norm_layer=norm_layer, act_layer=nn.ReLU6),
    )


def _prediction_block(in_chs: int, out_chs: int, norm_layer: Any) -> nn.Sequential:
    """3x3 depthwise + BN + ReLU6, then a 1x1 conv with bias to the level's outputs."""
    return nn.Sequential(
        ConvNormAct(in_chs, in_chs, 3, groups=in_chs, norm_layer=norm_layer, act_layer=nn.ReLU6),
        nn.Conv2d(in_chs, out_chs, 1),
    )


def _normal_init(module: nn.Module) -> None:
    """torchvision's SSDLite initialisation: every conv N(0, 0.03), biases zero (BatchNorm as built)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.03)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _flatten_levels(outputs: list[torch.Tensor], columns: int) -> torch.Tensor:
    """[N, A_l * cols, H, W] per level -> [N, sum(H W A_l), cols], in (level, row, column, anchor) order."""
    flat = []
    for out in outputs:
        n, _, h, w = out.shape
        flat.append(out.view(n, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, columns))
    return torch.cat(flat, dim=1)


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} invalid; expected one of {tuple(choices)}")


def _size_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 16:
        return image_size, image_size
    if (isinstance(image_size, Sequence) and len(image_size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in image_size)):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size={image_size!r} invalid; expected an integer >= 16 or (height, width)")


# ------------------------------------------------------------------------------------------- model
class SSDLite(nn.Module):
    """SSDLite on a MobileNet (or any registered) backbone; see the module docstring for the layout.

    Args:
        num_classes: outputs per anchor including background (label 0); COCO weights have 91.
        in_chans: image channels.
        image_size: the side (or ``(height, width)``) every image is resized to.
        backbone: a registered model name, built ``features_only``; ``backbone_kwargs`` its options.
        extra_channels: the widths of the extra blocks after C5 (one level each; may be empty).
        first_level: ``"expansion"`` (the papers' layout) or ``"c3"`` (a stride-8 level in front).
        aspect_ratios: per level, as torchvision's DefaultBoxGenerator; default ``[2, 3]`` on every level.
        min_ratio, max_ratio, anchor_scales: anchor sizes as fractions of the image (scales: one per
            level plus one, overriding the two ratios).
        score_thresh, nms_thresh, topk_candidates, detections_per_img: post-processing, per class.
        image_mean, image_std: input normalisation (default 0.5: inputs in [-1, 1], as torchvision).
        bn_eps, bn_momentum: every BatchNorm of the detector (torchvision: 1e-3, 0.03).
        iou_thresh, neg_to_pos_ratio: anchor matching and hard-negative mining in the loss.
    """

    family = "ssdlite"

    def __init__(
        self,
        *,
        num_classes: int = 91,
        in_chans: int = 3,
        image_size: int | Sequence[int] = 320,
        backbone: str = "mobilenet_v3_large",
        backbone_kwargs: Mapping[str, Any] | None = None,
        extra_channels: Sequence[int] = DEFAULT_EXTRA_CHANNELS,
        first_level: str = "expansion",
        aspect_ratios: Sequence[Sequence[float]] | None = None,
        min_ratio: float = 0.2,
        max_ratio: float = 0.95,
        anchor_scales: Sequence[float] | None = None,
        score_thresh: float = 0.001,
        nms_thresh: float = 0.55,
        detections_per_img: int = 300,
        topk_candidates: int = 300,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.03,
        iou_thresh: float = 0.5,
        neg_to_pos_ratio: float = 3.0,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r} invalid; expected an integer >= 2 (background + classes)")
        _check_choice("first_level", first_level, FIRST_LEVELS)
        extra_channels = [int(c) for c in extra_channels]
        if any(c < 2 for c in extra_channels):
            raise ValueError(f"extra_channels={extra_channels!r} invalid; expected widths >= 2")
        self.num_classes, self.in_chans = num_classes, in_chans
        self.image_size = _size_hw(image_size)
        norm_layer = norm_layer_for(bn_eps, bn_momentum)
        self.backbone = build_model(backbone, features_only=True, in_chans=in_chans, bn_eps=bn_eps,
                                    bn_momentum=bn_momentum, **dict(backbone_kwargs or {}))
        #: the registered classifier the backbone was built from (what load_backbone_weights builds)
        self.backbone_name, self.backbone_kwargs = backbone, dict(backbone_kwargs or {})
        self._tap_at, chans, reds = _taps(self.backbone, first_level)
        self.extras = nn.ModuleList()
        for width in extra_channels:
            self.extras.append(_extra_block(chans[-1], width, norm_layer))
            chans.append(width)
            reds.append(reds[-1] * 2)
        self.level_channels, self.level_reductions = chans, reds
        levels = len(chans)
        ratios = [[2, 3]] * levels if aspect_ratios is None else [list(r) for r in aspect_ratios]
        if len(ratios) != levels:
            raise ValueError(f"aspect_ratios has {len(ratios)} entries but the detector has {levels} levels "
                             f"(channels {chans}); give one list per level")
        self.anchor_generator = DefaultBoxes(ratios, min_ratio=min_ratio, max_ratio=max_ratio,
                                             scales=None if anchor_scales is None else list(anchor_scales))
        per_loc = self.anchor_generator.num_anchors_per_location()
        self.cls_head = nn.ModuleList(_prediction_block(c, num_classes * a, norm_layer) for c, a in zip(chans, per_loc))
        self.box_head = nn.ModuleList(_prediction_block(c, 4 * a, norm_layer) for c, a in zip(chans, per_loc))
        _normal_init(self)  # the backbone too: torchvision does so when it is not pretrained
        self.box_coder = BoxCoder(SSD_BOX_WEIGHTS)
        self.image_mean = tuple(float(v) for v in (image_mean or (0.5,) * in_chans))
        self.image_std = tuple(float(v) for v in (image_std or (0.5,) * in_chans))
        if len(self.image_mean) != in_chans or len(self.image_std) != in_chans:
            raise ValueError(f"image_mean / image_std need {in_chans} values (in_chans), got "
                             f"{self.image_mean} / {self.image_std}")
        self.score_thresh, self.nms_thresh = float(score_thresh), float(nms_thresh)
        self.detections_per_img, self.topk_candidates = int(detections_per_img), int(topk_candidates)
        self.iou_thresh, self.neg_to_pos_ratio = float(iou_thresh), float(neg_to_pos_ratio)
        self._anchor_cache: dict[tuple[Any, ...], torch.Tensor] = {}
        self.pretrained_cfg: dict[str, Any] = {
            "input_size": (in_chans, *self.image_size), "mean": self.image_mean, "std": self.image_std,
            "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": num_classes, "task": "detect",
        }

    # ------------------------------------------------------------------------------------ network
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map of every level, backbone taps then extras ([N, C_l, H_l, W_l])."""
        bb, taps = self.backbone, self._tap_at
        x = bb.stem(x)
        feats = [x] if taps.get(0) == "out" else []
        i = 0
        for stage in bb.blocks:
            for block in stage:
                i += 1
                if taps.get(i) == "mid":
                    mid, x = _split_forward(block, x)
                    feats.append(mid)
                    continue
                x = block(x)
                if taps.get(i) == "out":
                    feats.append(x)
        for block in self.extras:
            x = block(x)
            feats.append(x)
        return feats

    def head_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``cls_logits`` [N, A, num_classes] and ``bbox_regression`` [N, A, 4] for a normalised batch."""
        feats = self.features(x)
        return {
            "cls_logits": _flatten_levels([h(f) for h, f in zip(self.cls_head, feats)], self.num_classes),
            "bbox_regression": _flatten_levels([h(f) for h, f in zip(self.box_head, feats)], 4),
        }

    def profile_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a cost profile counts: the network on a normalised batch (no resizing, no NMS)."""
        return self.head_outputs(x)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Each level's map size for an input of ``height`` x ``width`` (every stride 2 rounds up)."""
        sizes = []
        for red in self.level_reductions:
            h, w = height, width
            for _ in range(round(math.log2(red))):
                h, w = (h + 1) // 2, (w + 1) // 2
            sizes.append((h, w))
        return sizes

    def anchors_for(self, x: torch.Tensor) -> torch.Tensor:
        """The anchors [A, 4] (xyxy pixels of ``x``) for a batch of ``x``'s size, cached per size and device."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        key = (h, w, x.dtype, x.device)
        cached = self._anchor_cache.get(key)
        if cached is not None:
            return cached
        anchors = self.anchor_generator(self.feature_sizes(h, w), (h, w), dtype=x.dtype, device=x.device)
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            self._anchor_cache[key] = anchors
        return anchors

    def decoded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes [N, A, 4] (xyxy, clipped to ``x``) and class probabilities [N, A, C]: the exported graph.

        ``x`` is a normalised batch at the model's ``image_size``; every shape is static, so the graph
        passes ``torch.export`` whole. :func:`~mobilenets.models.detection.boxes.postprocess` turns the
        pair into detections (threshold, top-k, NMS per class) after any runtime.
        """
        out = self.head_outputs(x)
        anchors = self.anchors_for(x)
        # Decoding and softmax in float32 even under autocast: bf16 would move a 320-px box by pixels.
        deltas = out["bbox_regression"].float()
        boxes = self.box_coder.decode(deltas, anchors.float().unsqueeze(0).expand(deltas.shape[0], -1, -1))
        boxes = clip_boxes(boxes, (int(x.shape[-2]), int(x.shape[-1])))
        return boxes, F.softmax(out["cls_logits"].float(), dim=-1)

    # ---------------------------------------------------------------------------------- interface
    def transform(self, images: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Normalise and resize images in 0..1 to the model's input; returns the batch and the original sizes."""
        items = list(images.unbind(0)) if isinstance(images, torch.Tensor) and images.ndim == 4 else list(images)
        if not items:
            raise ValueError("images is empty; expected a list of [C, H, W] tensors or an [N, C, H, W] tensor")
        for img in items:
            if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != self.in_chans:
                shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
                raise ValueError(f"expected images of shape ({self.in_chans}, H, W), got {shape}")
            if not img.is_floating_point():
                raise TypeError(f"expected float images in 0..1, got dtype {img.dtype}; divide uint8 images by 255")
        ref = items[0]
        mean = torch.tensor(self.image_mean, dtype=ref.dtype, device=ref.device)[:, None, None]
        std = torch.tensor(self.image_std, dtype=ref.dtype, device=ref.device)[:, None, None]
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in items]
        out = []
        for img in items:
            img = (img - mean) / std
            if tuple(img.shape[-2:]) != self.image_size:
                img = F.interpolate(img[None], size=self.image_size, mode="bilinear", align_corners=False)[0]
            out.append(img)
        return torch.stack(out), sizes

    def raw_outputs(self, images: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``cls_logits``, ``bbox_regression`` (torchvision's anchor order) and ``anchors`` [A, 4] (model input pixels)."""
        x, _ = self.transform(images)
        out = self.head_outputs(x)
        out["anchors"] = self.anchors_for(x)
        if out["anchors"].shape[0] != out["cls_logits"].shape[1]:
            raise RuntimeError(f"{out['anchors'].shape[0]} anchors for {out['cls_logits'].shape[1]} head outputs "
                               f"(feature sizes {self.feature_sizes(*x.shape[-2:])}): the level strides are off")
        return out

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor],
                targets: Targets | None = None) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Training (with ``targets``): the loss dict. Eval: one ``boxes``/``scores``/``labels`` dict per image."""
        x, sizes = self.transform(images)
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode (a list of dicts with boxes and labels)")
            out = self.head_outputs(x)
            scaled = self._scale_targets(targets, sizes)
            return ssd_loss(out["cls_logits"], out["bbox_regression"], self.anchors_for(x), scaled,
                            coder=self.box_coder, iou_threshold=self.iou_thresh,
                            neg_to_pos_ratio=self.neg_to_pos_ratio)
        boxes, scores = self.decoded(x)
        detections = postprocess(boxes, scores, score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                                 topk_candidates=self.topk_candidates, detections_per_img=self.detections_per_img)
        s_h, s_w = self.image_size
        for det, (h, w) in zip(detections, sizes):
            if (h, w) != (s_h, s_w):
                det["boxes"] = det["boxes"] * det["boxes"].new_tensor([w / s_w, h / s_h, w / s_w, h / s_h])
        return detections

    def _scale_targets(self, targets: Targets, sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Targets in input pixels -> model-input pixels; a padded batch dict (labels -1) is unpadded first."""
        if isinstance(targets, Mapping):
            boxes, labels = targets["boxes"], targets["labels"]
            items = [{"boxes": b[lab >= 0], "labels": lab[lab >= 0]} for b, lab in zip(boxes, labels)]
        else:
            items = [dict(t) for t in targets]
        if len(items) != len(sizes):
            raise ValueError(f"{len(items)} targets for {len(sizes)} images")
        s_h, s_w = self.image_size
        out = []
        for i, (t, (h, w)) in enumerate(zip(items, sizes)):
            boxes = t["boxes"].to(torch.float32).reshape(-1, 4)
            if bool((boxes[:, 2:] <= boxes[:, :2]).any()):
                bad = boxes[(boxes[:, 2:] <= boxes[:, :2]).any(dim=1)][0].tolist()
                raise ValueError(f"target {i} has a box without positive width and height: {bad} (xyxy)")
            if (h, w) != (s_h, s_w):
                boxes = boxes * boxes.new_tensor([s_w / w, s_h / h, s_w / w, s_h / h])
            out.append({"boxes": boxes, "labels": t["labels"].to(torch.int64).reshape(-1)})
        return out

    # -------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str, class_names: list[str] | None = None) -> None:
        """Write the native format (``model.safetensors`` + ``config.json``); see :mod:`mobilenets.models.native`."""
        write_native(self, directory, class_names=class_names or getattr(self, "class_names", None))
