"""Box arithmetic for SSD-style detectors, in plain torch ops: areas, IoU, clipping, box coding, NMS,
matching, the SSD loss and the post-processing that turns scores into detections.

Everything follows torchvision's SSD (``torchvision.models.detection.ssd`` and ``ops.boxes``) so code and
checkpoints written for torchvision behave the same here, with three deliberate differences that only
matter where torchvision leaves the answer undefined:

- NMS is written with torch ops (torchvision's compiled kernels are not available on every install, and
  an export must not depend on them). It is exact greedy NMS: boxes in descending score, ties broken by
  the lower index, a box dropped when its IoU with a kept box is ``> iou_threshold``.
- ``batched_nms`` compares boxes of the same class only, instead of torchvision's coordinate-offset
  trick; the kept set is the same wherever the trick is exact (the trick loses float precision on large
  offsets and fails for negative coordinates).
- Where torchvision's order among exactly equal scores is implementation-defined (``topk``, ``sort``),
  ties go to the lower index, so results are reproducible on every device.

Boxes are float ``xyxy`` in pixels; label 0 is the background.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._validate import check_number, check_prob

__all__ = [
    "SSD_BOX_WEIGHTS",
    "BoxCoder",
    "Matcher",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "nms",
    "postprocess",
    "remove_small",
    "ssd_loss",
    "ssd_match",
]

SSD_BOX_WEIGHTS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
"""torchvision SSD's box-coding weights for (dx, dy, dw, dh): offsets are learnt 10x / 5x scaled."""

_DEFAULT_CLAMP = math.log(1000.0 / 16)
# The most pairs one IoU matrix of NMS may hold (1M floats, 4 MB: small enough to stay in cache); bigger problems go block by block.
_PAIR_BUDGET = 1 << 20
_BLOCK = 1024
_FIXED_POINT_STEPS = 8
"""Fixed-point steps of :func:`_greedy` before it switches to the sequential scan."""


def _check_boxes(name: str, boxes: object, *, ndim: int | None = None) -> Tensor:
    if not isinstance(boxes, Tensor):
        raise ValueError(f"{name} is a {type(boxes).__name__}; expected a tensor of boxes [..., 4]")
    if boxes.dim() < 1 or boxes.shape[-1] != 4 or (ndim is not None and boxes.dim() != ndim):
        want = "[K, 4]" if ndim == 2 else f"{ndim}-d [..., 4]" if ndim else "[..., 4]"
        raise ValueError(f"{name} has shape {tuple(boxes.shape)}; expected boxes {want} as (x1, y1, x2, y2)")
    return boxes


def _upcast(boxes: Tensor) -> Tensor:
    """Half-precision boxes lose whole pixels in products; areas and IoU are computed in float32."""
    return boxes.float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes


def box_area(boxes: Tensor) -> Tensor:
    """Areas of ``xyxy`` boxes ``[..., 4] -> [...]`` (negative for boxes with x2 < x1 or y2 < y1)."""
    b = _upcast(_check_boxes("boxes", boxes))
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU ``[..., K, 4] x [..., M, 4] -> [..., K, M]`` (leading dims broadcast).

    The same formula as torchvision's ``box_iou``, so matching and NMS decide borderline pairs alike.
    """
    a = _upcast(_check_boxes("boxes1", boxes1))
    b = _upcast(_check_boxes("boxes2", boxes2))
    # One contiguous plane per coordinate (not [..., 2] pairs of strided views): the same values, many
    # times faster on CPU, where NMS spends most of its time here.
    ax1, ay1, ax2, ay2 = a.movedim(-1, 0).contiguous().unsqueeze(-1)
    bx1, by1, bx2, by2 = b.movedim(-1, 0).contiguous().unsqueeze(-2)
    inter = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    inter = inter.mul_(torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0))
    union = ((ax2 - ax1) * (ay2 - ay1)).add((bx2 - bx1) * (by2 - by1)).sub_(inter)
    return inter.div_(union)


def clip_boxes(boxes: Tensor, size_hw: Sequence[float]) -> Tensor:
    """Boxes ``[..., 4]`` clamped into an image of ``size_hw = (height, width)`` pixels.

    Clamping (not dropping) keeps shapes static, so the same function runs inside an exported graph.
    """
    b = _check_boxes("boxes", boxes)
    if len(size_hw) != 2:
        raise ValueError(f"size_hw={tuple(size_hw)!r} invalid; expected (height, width)")
    h, w = (check_number("size_hw", float(v), lambda v: v >= 0, "non-negative sizes") for v in size_hw)
    return torch.stack(
        (b[..., 0].clamp(0, w), b[..., 1].clamp(0, h), b[..., 2].clamp(0, w), b[..., 3].clamp(0, h)), dim=-1
    )


def remove_small(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the boxes ``[K, 4]`` whose width and height are both ``>= min_size``."""
    b = _check_boxes("boxes", boxes, ndim=2)
    check_number("min_size", min_size, lambda v: v >= 0, "a size >= 0 in pixels")
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return torch.where(keep)[0]


class BoxCoder:
    """Boxes as offsets from anchors, torchvision's ``BoxCoder`` formulas.

    ``dx = wx * (gx - ax) / aw``, ``dy = wy * (gy - ay) / ah``, ``dw = ww * log(gw / aw)``,
    ``dh = wh * log(gh / ah)`` on centres and sizes; decoding clamps ``dw, dh`` (after dividing by the
    weights) at ``clamp`` so an untrained head cannot overflow ``exp``. The weights scale the targets to
    about unit variance, which is what the smooth-L1 loss with beta 1 expects.
    """

    def __init__(self, weights: Sequence[float] = SSD_BOX_WEIGHTS, clamp: float = _DEFAULT_CLAMP) -> None:
        if len(weights) != 4:
            raise ValueError(f"weights={tuple(weights)!r} invalid; expected 4 numbers (wx, wy, ww, wh)")
        self.weights = tuple(check_number("weights", w, lambda v: v > 0, "positive numbers") for w in weights)
        self.clamp = check_number("clamp", clamp, lambda v: v > 0, "a positive number")

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, clamp={self.clamp:.6g})"

    def encode(self, gt: Tensor, anchors: Tensor) -> Tensor:
        """Regression targets ``[..., 4]`` of ``gt`` boxes relative to ``anchors`` (leading dims broadcast)."""
        g = _check_boxes("gt", gt)
        a = _check_boxes("anchors", anchors).to(g.dtype)
        wx, wy, ww, wh = self.weights
        aw, ah = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
        ax, ay = a[..., 0] + 0.5 * aw, a[..., 1] + 0.5 * ah
        gw, gh = g[..., 2] - g[..., 0], g[..., 3] - g[..., 1]
        gx, gy = g[..., 0] + 0.5 * gw, g[..., 1] + 0.5 * gh
        return torch.stack(
            (wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw / aw), wh * torch.log(gh / ah)),
            dim=-1,
        )

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes ``[..., 4]`` xyxy from regression ``deltas`` and ``anchors`` (leading dims broadcast).

        Only elementwise ops with static shapes: this is what an exported detector graph runs.
        """
        d = _check_boxes("deltas", deltas)
        a = _check_boxes("anchors", anchors).to(d.dtype)
        wx, wy, ww, wh = self.weights
        aw, ah = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
        ax, ay = a[..., 0] + 0.5 * aw, a[..., 1] + 0.5 * ah
        dw = torch.clamp(d[..., 2] / ww, max=self.clamp)
        dh = torch.clamp(d[..., 3] / wh, max=self.clamp)
        cx = d[..., 0] / wx * aw + ax
        cy = d[..., 1] / wy * ah + ay
        half_w = 0.5 * (torch.exp(dw) * aw)
        half_h = 0.5 * (torch.exp(dh) * ah)
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


# ----------------------------------------------------------------------------------------------- NMS


def _greedy(boxes: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS in each row of ``boxes [G, n, 4]`` (already in score order): keep mask ``[G, n]``.

    Greedy NMS is the unique fixed point of ``keep[j] = valid[j] and no kept i < j overlaps j``. Iterating
    that map from ``keep = valid`` settles in a few steps for well-separated detections, and once two
    steps agree the answer is exact. Long suppression chains (the dense, overlapping candidates of a
    barely trained detector) can need up to ``n`` steps of an ``n x n`` product each; after
    :data:`_FIXED_POINT_STEPS` the rows are finished by the sequential scan instead, whose cost is ``n``
    cheap row updates whatever the overlaps.
    """
    n = boxes.shape[-2]
    # suppress[g, i, j] = True when box i (earlier) overlaps box j (later) by more than the threshold.
    weights = box_iou(boxes, boxes).float().triu_(1).gt_(iou_threshold)
    suppress = weights > 0
    keep = valid
    for _ in range(min(n + 1, _FIXED_POINT_STEPS)):
        hit = torch.bmm(keep.to(torch.float32).unsqueeze(-2), weights).squeeze(-2) > 0
        new = valid & ~hit
        if torch.equal(new, keep):
            return keep
        keep = new
    return _greedy_scan(suppress, valid)


def _greedy_scan(suppress: Tensor, valid: Tensor) -> Tensor:
    """The sequential definition of greedy NMS, all groups at once: box ``i`` is final when reached."""
    sup = suppress.cpu().numpy()
    keep = valid.cpu().numpy().copy()
    for i in range(keep.shape[1] - 1):
        rows = keep[:, i]
        if rows.any():
            keep[rows, i + 1 :] &= ~sup[rows, i, i + 1 :]
    return torch.from_numpy(keep).to(valid.device)


def _greedy_blocked(boxes: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS of many boxes ``[n, 4]`` in score order, block by block to bound memory: keep ``[n]``.

    A block's boxes are first checked against every box kept in earlier blocks (those are final), then
    resolved among themselves.
    """
    n = boxes.shape[0]
    keep = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    kept = boxes[:0]
    for start in range(0, n, _BLOCK):
        part = boxes[start : start + _BLOCK]
        valid = torch.ones(part.shape[0], dtype=torch.bool, device=boxes.device)
        for k in range(0, kept.shape[0], _BLOCK):
            valid &= ~(box_iou(kept[k : k + _BLOCK], part) > iou_threshold).any(0)
        block_keep = _greedy(part[None], valid[None], iou_threshold)[0]
        keep[start : start + part.shape[0]] = block_keep
        kept = torch.cat((kept, part[block_keep]))
    return keep


def _nms_groups(boxes: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    """Independent greedy NMS per group: ``boxes [G, n, 4]`` in score order, ``valid [G, n]`` -> keep."""
    groups, n = valid.shape
    if groups == 0 or n == 0:
        return valid.clone()
    if n * n > _PAIR_BUDGET:
        keep = torch.zeros_like(valid)
        for g in range(groups):
            idx = torch.where(valid[g])[0]
            keep[g, idx] = _greedy_blocked(boxes[g, idx], iou_threshold)
        return keep
    chunk = max(1, _PAIR_BUDGET // (n * n))
    return torch.cat(
        [_greedy(boxes[g : g + chunk], valid[g : g + chunk], iou_threshold) for g in range(0, groups, chunk)]
    )


def _check_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    _check_boxes("boxes", boxes, ndim=2)
    if not isinstance(scores, Tensor) or scores.shape != boxes.shape[:1]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores has shape {shape}; expected [{boxes.shape[0]}], one score per box")
    check_prob("iou_threshold", iou_threshold)


def _score_order(scores: Tensor) -> Tensor:
    """Indices by descending score, ties by the lower index (a stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: indices (int64) of the kept boxes, in descending score.

    Boxes are visited by descending score (ties: lower index first); a box is dropped when its IoU with
    an already kept box is ``> iou_threshold``. Same contract as ``torchvision.ops.nms``.
    """
    _check_nms(boxes, scores, iou_threshold)
    order = _score_order(scores)
    valid = torch.ones(1, order.numel(), dtype=torch.bool, device=boxes.device)
    return order[_nms_groups(boxes[order][None], valid, iou_threshold)[0]]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each label only: kept indices (int64) in descending score (ties: lower index first).

    Boxes are grouped by label into a padded ``[classes, most boxes in one class]`` layout, so every class
    runs at once and no IoU is computed between boxes of different classes.
    """
    _check_nms(boxes, scores, iou_threshold)
    if not isinstance(labels, Tensor) or labels.shape != scores.shape:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels has shape {shape}; expected [{scores.shape[0]}], one label per box")
    n = scores.numel()
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = _score_order(scores)
    by_label = torch.sort(labels[order], stable=True).indices  # per label, still in score order
    _, counts = torch.unique_consecutive(labels[order][by_label], return_counts=True)
    group = torch.repeat_interleave(torch.arange(counts.numel(), device=boxes.device), counts)
    rank = torch.arange(n, device=boxes.device) - (torch.cumsum(counts, 0) - counts)[group]
    width = int(counts.max())
    padded = boxes.new_zeros(counts.numel(), width, 4)
    padded[group, rank] = boxes[order[by_label]]
    valid = torch.zeros(counts.numel(), width, dtype=torch.bool, device=boxes.device)
    valid[group, rank] = True
    keep = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    keep[by_label] = _nms_groups(padded, valid, iou_threshold)[group, rank]
    return order[keep]


# ------------------------------------------------------------------------------------------ matching


class Matcher:
    """Anchor-to-ground-truth assignment from a quality matrix, torchvision's ``Matcher``.

    ``matcher(quality [K, A]) -> matches [A]``: each anchor gets its best ground truth when that quality
    is ``>= high_threshold``, ``BETWEEN_THRESHOLDS`` (-2) when it is in ``[low, high)`` and
    ``BELOW_LOW_THRESHOLD`` (-1) below ``low``. With ``allow_low_quality_matches`` every anchor that ties
    for a ground truth's best quality keeps its best match anyway, so no ground truth goes unmatched.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
    ) -> None:
        self.high_threshold = check_prob("high_threshold", high_threshold)
        self.low_threshold = check_prob("low_threshold", low_threshold)
        if self.low_threshold > self.high_threshold:
            raise ValueError(
                f"low_threshold={low_threshold!r} invalid; expected <= high_threshold={high_threshold!r}"
            )
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __repr__(self) -> str:
        return (
            f"Matcher(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches})"
        )

    def __call__(self, quality: Tensor) -> Tensor:
        if not isinstance(quality, Tensor) or quality.dim() != 2:
            shape = tuple(quality.shape) if isinstance(quality, Tensor) else type(quality).__name__
            raise ValueError(f"quality has shape {shape}; expected [K ground truths, A anchors]")
        if quality.numel() == 0:
            what = "ground-truth boxes" if quality.shape[0] == 0 else "anchors"
            raise ValueError(f"quality has shape {tuple(quality.shape)}: no {what} to match")
        values, best = quality.max(dim=0)
        matches = best.masked_fill(values < self.low_threshold, self.BELOW_LOW_THRESHOLD)
        between = (values >= self.low_threshold) & (values < self.high_threshold)
        matches = matches.masked_fill(between, self.BETWEEN_THRESHOLDS)
        if self.allow_low_quality_matches:
            ties_best = (quality == quality.max(dim=1, keepdim=True).values).any(dim=0)
            matches = torch.where(ties_best, best, matches)
        return matches


def ssd_match(iou: Tensor, threshold: float = 0.5, *, gt_valid: Tensor | None = None) -> Tensor:
    """SSD's matching (torchvision's ``SSDMatcher``): ``iou [..., K, A] -> matched gt index [..., A]``.

    An anchor takes its best ground truth when that IoU is ``>= threshold`` (else -1); then every ground
    truth claims its own best anchor (the first on ties) whatever the IoU, so small objects always train
    some anchor. When two ground truths claim one anchor the higher index wins (torchvision's sequential
    write). ``gt_valid [..., K]`` marks real rows of a padded batch; no ground truth gives all -1.
    """
    if not isinstance(iou, Tensor) or iou.dim() < 2:
        shape = tuple(iou.shape) if isinstance(iou, Tensor) else type(iou).__name__
        raise ValueError(f"iou has shape {shape}; expected [..., K ground truths, A anchors]")
    check_prob("threshold", threshold)
    num_gt = iou.shape[-2]
    if num_gt == 0:
        return torch.full((*iou.shape[:-2], iou.shape[-1]), -1, dtype=torch.int64, device=iou.device)
    if gt_valid is not None:
        if gt_valid.shape != iou.shape[:-1]:
            raise ValueError(f"gt_valid has shape {tuple(gt_valid.shape)}; expected {tuple(iou.shape[:-1])}")
        iou = iou.masked_fill(~gt_valid[..., None], -1.0)
    values, matches = iou.max(dim=-2)
    matches = matches.masked_fill(values < threshold, -1)
    best_anchor = iou.argmax(dim=-1)
    claim = torch.arange(num_gt, device=iou.device).expand_as(best_anchor)
    if gt_valid is not None:
        claim = torch.where(gt_valid, claim, -1)
    forced = torch.full_like(matches, -1).scatter_reduce(-1, best_anchor, claim, reduce="amax")
    return torch.where(forced >= 0, forced, matches)


# ---------------------------------------------------------------------------------------------- loss


def _pad_targets(
    targets: Sequence[Mapping[str, Tensor]] | Mapping[str, Tensor], n: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``(boxes [N, M, 4], labels [N, M], valid [N, M])`` from per-image dicts or a padded batch dict
    (labels -1 = padding); ``M >= 1`` so gathers never index an empty dimension."""
    if isinstance(targets, Mapping):
        boxes, labels = targets["boxes"].to(device), targets["labels"].to(device)
        if boxes.dim() != 3 or labels.shape != boxes.shape[:2] or boxes.shape[0] != n:
            raise ValueError(
                f"targets boxes {tuple(boxes.shape)} / labels {tuple(labels.shape)}; expected [{n}, M, 4] / [{n}, M]"
            )
        valid = labels >= 0
    else:
        if len(targets) != n:
            raise ValueError(f"{len(targets)} targets for {n} images; expected one dict per image")
        width = max([1, *(int(t["boxes"].shape[0]) for t in targets)])
        boxes = torch.zeros(n, width, 4, device=device)
        labels = torch.full((n, width), -1, dtype=torch.int64, device=device)
        for i, t in enumerate(targets):
            b = _check_boxes(f"targets[{i}]['boxes']", t["boxes"], ndim=2)
            if t["labels"].shape != b.shape[:1]:
                raise ValueError(
                    f"targets[{i}]['labels'] has shape {tuple(t['labels'].shape)}; expected [{len(b)}]"
                )
            boxes[i, : len(b)] = b.to(device, torch.float32)
            labels[i, : len(b)] = t["labels"].to(device)
        valid = (
            torch.arange(width, device=device)
            < torch.tensor([len(t["boxes"]) for t in targets], device=device)[:, None]
        )
    if boxes.shape[1] == 0:
        boxes, labels = boxes.new_zeros(n, 1, 4), labels.new_full((n, 1), -1)
        valid = labels >= 0
    return boxes.float(), labels, valid


def ssd_loss(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    anchors: Tensor,
    targets: Sequence[Mapping[str, Tensor]] | Mapping[str, Tensor],
    *,
    coder: BoxCoder | None = None,
    iou_threshold: float = 0.5,
    neg_to_pos_ratio: float = 3.0,
) -> dict[str, Tensor]:
    """torchvision ``SSD.compute_loss`` (with its matching), batched: ``{"bbox_regression", "classification"}``.

    Anchors are matched with :func:`ssd_match`; the box loss is smooth L1 (beta 1) summed over matched
    anchors, the class loss cross-entropy over matched anchors plus the ``neg_to_pos_ratio`` x (positives
    of the image) background anchors with the highest loss (hard negatives, so the many easy background
    anchors do not drown the objects); both divided by the number of matched anchors (at least 1).
    ``cls_logits [N, A, C]``, ``bbox_regression [N, A, 4]``, ``anchors [A, 4]`` (or ``[N, A, 4]``),
    ``targets`` one ``{"boxes" [K, 4], "labels" [K]}`` per image or the padded batch dict.
    Like torchvision, when an image has fewer background anchors than the ratio asks, the ranking runs
    into matched anchors, whose loss then counts twice.
    """
    if cls_logits.dim() != 3 or bbox_regression.shape != (*cls_logits.shape[:2], 4):
        raise ValueError(
            f"cls_logits {tuple(cls_logits.shape)} / bbox_regression {tuple(bbox_regression.shape)}; "
            "expected [N, A, C] / [N, A, 4]"
        )
    n, a, c = cls_logits.shape
    anchors = _check_boxes("anchors", anchors)
    if anchors.shape[-2] != a:
        raise ValueError(
            f"anchors has shape {tuple(anchors.shape)}; expected [{a}, 4] to match the {a} predictions"
        )
    check_number("neg_to_pos_ratio", neg_to_pos_ratio, lambda v: v >= 0, "a ratio >= 0")
    coder = coder or BoxCoder()
    gt_boxes, gt_labels, valid = _pad_targets(targets, n, cls_logits.device)
    anchors = anchors.to(gt_boxes).expand(n, a, 4)
    matched = ssd_match(box_iou(gt_boxes, anchors), iou_threshold, gt_valid=valid)
    fg = matched >= 0
    index = matched.clamp(min=0)
    matched_boxes = gt_boxes.gather(1, index[..., None].expand(n, a, 4))
    target = coder.encode(matched_boxes[fg], anchors[fg])
    box_loss = F.smooth_l1_loss(bbox_regression[fg].float(), target, reduction="sum", beta=1.0)
    cls_target = torch.where(fg, gt_labels.gather(1, index), torch.zeros_like(index))
    ce = F.cross_entropy(cls_logits.reshape(-1, c).float(), cls_target.reshape(-1), reduction="none").view(
        n, a
    )
    positive = cls_target > 0
    num_negative = neg_to_pos_ratio * positive.sum(1, keepdim=True)
    order = ce.detach().masked_fill(positive, -math.inf).sort(dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(a, device=order.device).expand(n, a))
    hard_negative = rank < num_negative
    denominator = max(1, int(fg.sum()))
    return {
        "bbox_regression": box_loss / denominator,
        "classification": (ce[positive].sum() + ce[hard_negative].sum()) / denominator,
    }


# --------------------------------------------------------------------------------------- postprocess


def _detect_one(
    boxes: Tensor, scores: Tensor, score_thresh: float, nms_thresh: float, topk: int, max_det: int
) -> dict[str, Tensor]:
    """One image: every object class at once in a ``[classes, top-k]`` layout, then per-class NMS."""
    class_scores = scores[:, 1:].t()  # [C - 1, A]
    above = class_scores > score_thresh
    counts = above.sum(1)
    present = torch.where(counts > 0)[0]
    k = min(topk, int(counts.max())) if counts.numel() else 0
    if present.numel() == 0 or k == 0:
        return {
            "boxes": boxes.new_zeros(0, 4),
            "scores": scores.new_zeros(0),
            "labels": torch.zeros(0, dtype=torch.int64, device=scores.device),
        }
    ranked = class_scores[present].masked_fill(~above[present], -math.inf)
    values, anchor_idx = torch.sort(ranked, dim=1, descending=True, stable=True)
    values, anchor_idx = values[:, :k], anchor_idx[:, :k]
    valid = torch.arange(k, device=scores.device) < counts[present, None]
    candidates = boxes[anchor_idx]  # [G, k, 4]
    keep = _nms_groups(candidates, valid, nms_thresh)
    kept_scores = values[keep]  # class-major, then score order: torchvision's concatenation order
    labels = (present + 1)[:, None].expand_as(keep)[keep]
    final = _score_order(kept_scores)[:max_det]
    return {"boxes": candidates[keep][final], "scores": kept_scores[final], "labels": labels[final]}


def postprocess(
    boxes: Tensor,
    scores: Tensor,
    *,
    score_thresh: float = 0.001,
    nms_thresh: float = 0.55,
    topk_candidates: int = 300,
    detections_per_img: int = 300,
    image_sizes: Sequence[Sequence[int]] | Sequence[int] | Tensor | None = None,
) -> list[dict[str, Tensor]]:
    """Detections from decoded boxes ``[N, A, 4]`` and softmaxed scores ``[N, A, C]`` (torchvision SSD's
    ``postprocess_detections`` after decoding): one ``{"boxes", "scores", "labels"}`` per image.

    Per object class (labels ``1..C-1``): the scores ``> score_thresh``, the best ``topk_candidates`` of
    them; then NMS within each class at ``nms_thresh`` and the ``detections_per_img`` best overall, in
    descending score. ``image_sizes`` (one ``(h, w)`` per image, or one for all) clips the boxes to the
    image first, as torchvision does; pass it unless the boxes are already clipped. This is the one
    post-processing shared by the eager model and every exported runtime.
    """
    if boxes.dim() != 3 or scores.dim() != 3 or boxes.shape != (*scores.shape[:2], 4):
        raise ValueError(
            f"boxes {tuple(boxes.shape)} / scores {tuple(scores.shape)}; expected [N, A, 4] / [N, A, C]"
        )
    check_prob("score_thresh", score_thresh)
    check_prob("nms_thresh", nms_thresh)
    for name, value in (("topk_candidates", topk_candidates), ("detections_per_img", detections_per_img)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} invalid; expected an integer >= 1")
    n = boxes.shape[0]
    sizes: list[Sequence[int] | None] = [None] * n
    if image_sizes is not None:
        if isinstance(image_sizes, Tensor):  # e.g. a batch's "orig_size" [N, 2]
            image_sizes = image_sizes.tolist()
        one = len(image_sizes) == 2 and all(isinstance(v, int | float) for v in image_sizes)
        sizes = [image_sizes] * n if one else list(image_sizes)  # type: ignore[list-item]
        if len(sizes) != n:
            raise ValueError(f"{len(sizes)} image_sizes for {n} images; expected one (h, w) per image")
    out = []
    for i in range(n):
        image_boxes = boxes[i] if sizes[i] is None else clip_boxes(boxes[i], sizes[i])  # type: ignore[arg-type]
        out.append(
            _detect_one(image_boxes, scores[i], score_thresh, nms_thresh, topk_candidates, detections_per_img)
        )
    return out
