"""Detection box arithmetic (issue 17): IoU, box coding, NMS, matching, the SSD loss, post-processing and
the SSD default boxes.

NMS and post-processing are checked against brute-force references written here in plain Python
(greedy, descending score, ties by the lower index, exact rational IoU on integer boxes so float rounding
cannot flip a decision); matching and the loss on hand-made cases whose answers are worked out in the
comments; the anchors on values computed by hand from the SSD paper's formulas. torchvision is not
imported: its equality was checked once by hand on random inputs, and these pins keep it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobilenets.models.detection import (
    BoxCoder,
    DefaultBoxes,
    Matcher,
    batched_nms,
    box_area,
    box_iou,
    clip_boxes,
    nms,
    postprocess,
    remove_small,
    ssd_loss,
    ssd_match,
)
from mobilenets.models.detection import boxes as boxes_module

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def fast(n: int) -> settings:
    return settings(
        max_examples=n, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )


# ------------------------------------------------------------------------------ brute-force references


def _iou_exact(a: list[float], b: list[float]) -> Fraction:
    w = max(Fraction(0), min(Fraction(a[2]), Fraction(b[2])) - max(Fraction(a[0]), Fraction(b[0])))
    h = max(Fraction(0), min(Fraction(a[3]), Fraction(b[3])) - max(Fraction(a[1]), Fraction(b[1])))
    inter = w * h
    area = lambda r: (Fraction(r[2]) - Fraction(r[0])) * (Fraction(r[3]) - Fraction(r[1]))  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def brute_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    b, s = boxes.tolist(), scores.tolist()
    kept: list[int] = []
    for i in sorted(range(len(s)), key=lambda i: (-s[i], i)):
        if all(_iou_exact(b[i], b[j]) <= Fraction(threshold) for j in kept):
            kept.append(i)
    return kept


def brute_batched(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, threshold: float
) -> list[int]:
    kept: list[int] = []
    for c in sorted(set(labels.tolist())):
        idx = [i for i, v in enumerate(labels.tolist()) if v == c]
        kept += [idx[k] for k in brute_nms(boxes[idx], scores[idx], threshold)]
    return sorted(kept, key=lambda i: (-float(scores[i]), i))


def brute_postprocess(boxes, scores, score_thresh, nms_thresh, topk, max_det):
    """torchvision SSD's postprocess_detections loop (per class: threshold, top-k, then batched NMS)."""
    cand_boxes, cand_scores, cand_labels = [], [], []
    for c in range(1, scores.shape[1]):
        idx = [a for a in range(scores.shape[0]) if scores[a, c] > score_thresh]
        idx = sorted(idx, key=lambda a: (-float(scores[a, c]), a))[:topk]
        cand_boxes += [boxes[a] for a in idx]
        cand_scores += [float(scores[a, c]) for a in idx]
        cand_labels += [c] * len(idx)
    if not cand_scores:
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    b, s, lab = torch.stack(cand_boxes), torch.tensor(cand_scores), torch.tensor(cand_labels)
    keep = brute_batched(b, s, lab, nms_thresh)[:max_det]
    return b[keep], s[keep], lab[keep]


def _grid_boxes(n: int, grid: int = 24, generator: torch.Generator | None = None) -> torch.Tensor:
    """Integer boxes (many exact ties and duplicates); every side >= 1 px."""
    xy = torch.randint(0, grid, (n, 2), generator=generator).float()
    wh = torch.randint(1, grid // 2, (n, 2), generator=generator).float()
    return torch.cat((xy, xy + wh), 1)


# ------------------------------------------------------------------------------------ arithmetic


def test_area_iou_clip_remove_small_hand_values():
    a = torch.tensor([[0.0, 0, 2, 2], [10, 10, 12, 13]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [20, 20, 21, 21]])
    assert box_area(a).tolist() == [4.0, 6.0]
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0, 0.0])
    assert iou[1].tolist() == [0.0, 0.0, 0.0]
    assert box_iou(a[None].expand(5, 2, 4), b).shape == (5, 2, 3)  # leading dims broadcast
    clipped = clip_boxes(torch.tensor([[-5.0, -1, 120, 50], [3, 4, 5, 6]]), (40, 110))
    assert clipped.tolist() == [[0, 0, 110, 40], [3, 4, 5, 6]]
    keep = remove_small(torch.tensor([[0.0, 0, 1, 5], [0, 0, 0.5, 5], [0, 0, 5, 2], [0, 0, 3, 0.9]]), 1.0)
    assert keep.tolist() == [0, 2] and keep.dtype == torch.int64


def test_box_coder_hand_values_round_trip_and_clamp():
    coder = BoxCoder()
    anchor = torch.tensor([[0.0, 0, 10, 10]])
    gt = torch.tensor([[2.0, 4, 12, 24]])  # centre (7, 14) vs (5, 5); size (10, 20) vs (10, 10)
    code = coder.encode(gt, anchor)
    assert code[0].tolist() == pytest.approx([10 * 2 / 10, 10 * 9 / 10, 0.0, 5 * math.log(2)])
    anchors = _grid_boxes(50) * 4
    gts = anchors + torch.rand(50, 4) * 6
    assert (coder.decode(coder.encode(gts, anchors), anchors) - gts).abs().max().item() < 1e-4
    deltas = torch.randn(3, 50, 4)  # batched over leading dims, anchors broadcast
    assert torch.allclose(coder.encode(coder.decode(deltas, anchors), anchors), deltas, atol=1e-4)
    huge = coder.decode(torch.tensor([[0.0, 0, 100, 100]]), anchor)  # dw/ww = 20 clamped at log(1000/16)
    assert (huge[0, 2] - huge[0, 0]).item() == pytest.approx(10 * 1000 / 16, rel=1e-5)


# ------------------------------------------------------------------------------------------- NMS


@fast(60)
@given(
    n=st.integers(0, 40),
    seed=st.integers(0, 2**31 - 1),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    tied=st.booleans(),
)
def test_nms_matches_brute_force(n, seed, threshold, tied):
    g = torch.Generator().manual_seed(seed)
    boxes = _grid_boxes(n, generator=g)
    scores = torch.randint(0, 4, (n,), generator=g).float() if tied else torch.rand(n, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    keep = nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == brute_nms(boxes, scores, threshold)
    assert batched_nms(boxes, scores, labels, threshold).tolist() == brute_batched(
        boxes, scores, labels, threshold
    )


def test_nms_block_path_matches_one_matrix(monkeypatch):
    """Above the pair budget NMS runs block by block; it must keep exactly the same boxes."""
    g = torch.Generator().manual_seed(3)
    boxes, scores = _grid_boxes(300, grid=60, generator=g), torch.randint(0, 20, (300,), generator=g).float()
    labels = torch.randint(0, 4, (300,), generator=g)
    whole, whole_batched = nms(boxes, scores, 0.25), batched_nms(boxes, scores, labels, 0.25)
    monkeypatch.setattr(boxes_module, "_PAIR_BUDGET", 50 * 50)
    monkeypatch.setattr(boxes_module, "_BLOCK", 32)
    assert torch.equal(nms(boxes, scores, 0.25), whole)
    assert torch.equal(batched_nms(boxes, scores, labels, 0.25), whole_batched)
    assert whole.tolist() == brute_nms(boxes, scores, 0.25)


def test_nms_long_suppression_chain_takes_the_scan_and_stays_exact():
    # Boxes 2.5 px apart: each overlaps its neighbour (IoU 0.6) but not the next one (0.33), so the
    # fixed point would need one step per box; greedy keeps every other box.
    n = 40
    x0 = torch.arange(n, dtype=torch.float32) * 2.5
    boxes = torch.stack([x0, torch.zeros(n), x0 + 10, torch.full((n,), 10.0)], dim=1)
    scores = torch.linspace(1.0, 0.5, n)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == brute_nms(boxes, scores, 0.5) == list(range(0, n, 2))


def test_nms_hand_case_and_classes_are_independent():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.9])  # box 3 ties box 0: the lower index goes first
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]  # IoU(0, 1) = 90/110 > 0.5
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2]  # 0 and 3 are identical (IoU 1 > 0.9)
    labels = torch.tensor([1, 2, 1, 2])
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 3, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


# -------------------------------------------------------------------------------------- matching


def test_matcher_thresholds_and_low_quality_matches():
    quality = torch.tensor([[0.9, 0.4, 0.1, 0.2], [0.3, 0.6, 0.2, 0.6]])
    # anchor 0: best 0.9 (gt 0) >= 0.7; anchors 1 and 3: best 0.6 in [0.3, 0.7); anchor 2: 0.2 < 0.3
    assert Matcher(0.7, 0.3)(quality).tolist() == [0, -2, -1, -2]
    # gt 1's best quality 0.6 is shared by anchors 1 and 3 (a tie): both get their best gt back
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality).tolist() == [0, 1, -1, 1]
    assert Matcher(0.5, 0.5)(quality).tolist() == [0, 1, -1, 1]
    with pytest.raises(ValueError, match="no ground-truth"):
        Matcher(0.5, 0.5)(torch.zeros(0, 4))


def test_ssd_match_forces_each_ground_truths_best_anchor():
    iou = torch.tensor([[0.6, 0.1, 0.2], [0.3, 0.35, 0.45]])
    # anchor 0 >= 0.5 -> gt 0; anchors 1, 2 below -> -1; then gt 1 claims its best anchor 2 anyway
    assert ssd_match(iou, 0.5).tolist() == [0, -1, 1]
    # both gts' best anchor is 0: the higher index wins (torchvision's sequential write)
    assert ssd_match(torch.tensor([[0.6, 0.1], [0.55, 0.2]]), 0.5).tolist() == [1, -1]
    # padded batch: a padding row never matches; an image without boxes matches nothing
    padded = torch.stack((iou, torch.tensor([[0.6, 0.1, 0.2], [0.0, 0.9, 0.0]])))
    valid = torch.tensor([[True, True], [True, False]])
    assert ssd_match(padded, 0.5, gt_valid=valid).tolist() == [[0, -1, 1], [0, -1, -1]]
    assert ssd_match(torch.zeros(0, 3)).tolist() == [-1, -1, -1]


# ------------------------------------------------------------------------------------------ loss


def _loss_case():
    anchors = torch.tensor([[0.0, 0, 10, 10], *[[20.0 * k, 40, 20 * k + 10, 50] for k in range(1, 6)]])
    gt = {"boxes": torch.tensor([[1.0, 0, 11, 10]]), "labels": torch.tensor([1])}  # IoU 90/110 with anchor 0
    logits = torch.zeros(1, 6, 2)
    logits[0, 0, 1] = 2.0  # the positive, class 1
    logits[0, 1:, 1] = torch.tensor([2.0, -1.0, 0.0, 1.0, 3.0])  # negatives: CE = log(1 + e^a)
    regression = torch.zeros(1, 6, 4)
    regression[0, 0] = torch.tensor([3.0, 0.5, 0.0, 0.0])  # target (1, 0, 0, 0)
    return logits, regression, anchors, gt


def test_ssd_loss_hand_value_and_three_to_one_negatives():
    logits, regression, anchors, gt = _loss_case()
    logits.requires_grad_(True)
    loss = ssd_loss(logits, regression, anchors, [gt])
    # smooth L1 (beta 1): |3 - 1| - 0.5 = 1.5 and 0.5 * 0.5^2 = 0.125, over 1 positive
    assert loss["bbox_regression"].item() == pytest.approx(1.625)
    softplus = lambda a: math.log1p(math.exp(a))  # noqa: E731
    # positive: CE = log(1 + e^-2); the 3 hardest of 5 negatives: a = 3, 2, 1
    expected = softplus(-2.0) + softplus(3.0) + softplus(2.0) + softplus(1.0)
    assert loss["classification"].item() == pytest.approx(expected, rel=1e-6)
    (grad,) = torch.autograd.grad(loss["classification"], logits)
    assert (grad.abs().sum(-1) > 0).tolist() == [[True, True, False, False, True, True]]
    padded = {"boxes": torch.cat((gt["boxes"], torch.zeros(1, 4)))[None], "labels": torch.tensor([[1, -1]])}
    again = ssd_loss(logits, regression, anchors, padded)
    assert all(torch.equal(loss[k], again[k]) for k in loss)


def test_ssd_loss_batch_normalises_by_all_positives():
    logits, regression, anchors, gt = _loss_case()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    one = ssd_loss(logits, regression, anchors, [gt])
    two = ssd_loss(logits.repeat(2, 1, 1), regression.repeat(2, 1, 1), anchors, [gt, gt])
    assert torch.allclose(two["classification"], one["classification"])  # twice the sum / twice the positives
    # an image without boxes adds no positive and (3 x 0 =) no negative
    with_empty = ssd_loss(logits.repeat(2, 1, 1), regression.repeat(2, 1, 1), anchors, [gt, empty])
    assert torch.allclose(with_empty["classification"], one["classification"])
    nothing = ssd_loss(logits, regression, anchors, [empty])
    assert nothing["classification"].item() == 0.0 and nothing["bbox_regression"].item() == 0.0


def test_ssd_loss_batched_equals_a_per_image_reference():
    """Random batch, uneven box counts: the batched loss equals the straightforward per-image loop."""
    g = torch.Generator().manual_seed(5)
    anchors = DefaultBoxes([[2], [2]])([(6, 6), (3, 3)], (96, 96))
    n, a, c = 3, anchors.shape[0], 4
    targets = []
    for k in (2, 0, 5):
        xy = torch.rand(k, 2, generator=g) * 70
        targets.append(
            {
                "boxes": torch.cat((xy, xy + 8 + torch.rand(k, 2, generator=g) * 30), 1),
                "labels": torch.randint(1, c, (k,), generator=g),
            }
        )
    logits, regression = torch.randn(n, a, c, generator=g), torch.randn(n, a, 4, generator=g)
    coder, box_sum, cls_sum, positives = BoxCoder(), 0.0, 0.0, 0
    for i, t in enumerate(targets):
        matched = ssd_match(box_iou(t["boxes"], anchors), 0.5)
        fg = torch.where(matched >= 0)[0]
        positives += len(fg)
        target = coder.encode(t["boxes"][matched[fg]], anchors[fg])
        box_sum += F.smooth_l1_loss(regression[i, fg], target, reduction="sum", beta=1.0).item()
        labels = torch.zeros(a, dtype=torch.int64)
        labels[fg] = t["labels"][matched[fg]]
        ce = F.cross_entropy(logits[i], labels, reduction="none")
        negatives = sorted(ce[labels == 0].tolist(), reverse=True)[: 3 * len(fg)]
        cls_sum += ce[fg].sum().item() + sum(negatives)
    loss = ssd_loss(logits, regression, anchors, targets)
    assert positives > 5
    assert loss["bbox_regression"].item() == pytest.approx(box_sum / positives, rel=1e-5)
    assert loss["classification"].item() == pytest.approx(cls_sum / positives, rel=1e-5)


# ----------------------------------------------------------------------------------- postprocess


def test_postprocess_thresholds_topk_and_limit():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [-5, 20, 10, 30]]])
    scores = torch.tensor([[[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.25, 0.5, 0.25], [0.3, 0.3, 0.4]]])
    out = postprocess(
        boxes, scores, score_thresh=0.25, nms_thresh=0.5, topk_candidates=300, detections_per_img=300
    )
    # class 1: 0.8, 0.7 (suppressed by 0.8: IoU 90/110), 0.5, 0.3; class 2: 0.4 (0.25 is not > 0.25)
    assert out[0]["scores"].tolist() == pytest.approx([0.8, 0.5, 0.4, 0.3])
    assert out[0]["labels"].tolist() == [1, 1, 2, 1]
    assert out[0]["labels"].dtype == torch.int64
    top2 = postprocess(
        boxes, scores, score_thresh=0.25, nms_thresh=0.5, topk_candidates=2, detections_per_img=300
    )
    assert top2[0]["scores"].tolist() == pytest.approx([0.8, 0.4])  # class 1 keeps 0.8, 0.7, then NMS
    limited = postprocess(
        boxes, scores, score_thresh=0.25, nms_thresh=0.5, topk_candidates=300, detections_per_img=2
    )
    assert limited[0]["scores"].tolist() == pytest.approx([0.8, 0.5])
    clipped = postprocess(boxes, scores, score_thresh=0.35, nms_thresh=0.5, image_sizes=[(8, 9)])
    # clipped first, as torchvision does: class 1 keeps b0 and the (now empty) b2; class 2 keeps b3
    assert clipped[0]["boxes"].tolist() == [[0, 0, 9, 8], [9, 8, 9, 8], [0, 8, 9, 8]]
    as_tensor = postprocess(
        boxes, scores, score_thresh=0.35, nms_thresh=0.5, image_sizes=torch.tensor([[8, 9]])
    )
    assert torch.equal(as_tensor[0]["boxes"], clipped[0]["boxes"])
    none = postprocess(boxes, scores, score_thresh=0.9, nms_thresh=0.5)
    assert none[0]["boxes"].shape == (0, 4) and none[0]["labels"].shape == (0,)


@fast(25)
@given(seed=st.integers(0, 2**31 - 1), topk=st.integers(1, 12), max_det=st.integers(1, 30))
def test_postprocess_matches_torchvision_loop(seed, topk, max_det):
    g = torch.Generator().manual_seed(seed)
    n, anchors, classes = 2, 30, 5
    boxes = _grid_boxes(n * anchors, generator=g).view(n, anchors, 4)
    scores = F.softmax(torch.randint(-3, 4, (n, anchors, classes), generator=g).float(), -1)
    out = postprocess(
        boxes, scores, score_thresh=0.1, nms_thresh=0.5, topk_candidates=topk, detections_per_img=max_det
    )
    for i in range(n):
        b, s, lab = brute_postprocess(boxes[i], scores[i], 0.1, 0.5, topk, max_det)
        assert torch.equal(out[i]["boxes"], b) and torch.equal(out[i]["scores"], s)
        assert torch.equal(out[i]["labels"], lab)


# -------------------------------------------------------------------------------------- anchors


def test_default_boxes_ssdlite320_count_and_values():
    gen = DefaultBoxes([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    assert gen.num_anchors_per_location() == [6] * 6
    assert gen.scales == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    anchors = gen([(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], (320, 320))
    assert anchors.shape == (6 * (400 + 100 + 25 + 9 + 4 + 1), 4) == (3234, 4)
    # level 0, cell (0, 0): centre 0.5 / 20 * 320 = 8; square s = 0.2 -> half 32 px
    assert anchors[0].tolist() == pytest.approx([-24.0, -24.0, 40.0, 40.0])
    half = math.sqrt(0.2 * 0.35) / 2 * 320  # the extra square sqrt(s_k s_k+1)
    assert anchors[1].tolist() == pytest.approx([8 - half, 8 - half, 8 + half, 8 + half], rel=1e-6)
    w = 0.2 * math.sqrt(2) / 2 * 320  # ratio 2: wide, then tall
    assert anchors[2].tolist() == pytest.approx([8 - w, 8 - w / 2, 8 + w, 8 + w / 2], rel=1e-6)
    assert anchors[6].tolist() == pytest.approx([-8.0, -24.0, 56.0, 40.0])  # next cell: x centre 24
    assert anchors[6 * 20].tolist() == pytest.approx([-24.0, -8.0, 40.0, 56.0])  # next row: y centre 24
    # last anchor: level 5, tall box of ratio 3: w = 0.95 / sqrt 3, h = 0.95 sqrt 3 clipped to 1
    w = 0.95 / math.sqrt(3) * 160
    assert anchors[-1].tolist() == pytest.approx([160 - w, 0.0, 160 + w, 320.0], rel=1e-6)


def test_default_boxes_steps_scales_and_clip():
    gen = DefaultBoxes([[], [2]], scales=[0.25, 1.5, 2.0], steps=[16, 32], clip=False)
    assert gen.num_anchors_per_location() == [2, 4]
    anchors = gen([(4, 4), (2, 2)], (64, 64))
    assert anchors.shape == (4 * 4 * 2 + 2 * 2 * 4, 4)
    # steps: centres at (i + 0.5) * 16 px; level 0 square 0.25 * 64 = 16 px
    assert anchors[0].tolist() == [0.0, 0.0, 16.0, 16.0]
    assert anchors[2].tolist() == [16.0, 0.0, 32.0, 16.0]
    # level 1 (step 32): square 1.5 * 64 = 96 px, not clipped
    assert anchors[32].tolist() == [-32.0, -32.0, 64.0, 64.0]
    clipped = DefaultBoxes([[], [2]], scales=[0.25, 1.5, 2.0], steps=[16, 32])([(4, 4), (2, 2)], (64, 64))
    assert clipped[32].tolist() == [-16.0, -16.0, 48.0, 48.0]  # w, h clamped to 1 (64 px)
    one = DefaultBoxes([[2]])  # a single level: scales (min_ratio, max_ratio)
    assert one.scales == [0.15, 0.9]
    assert one([(1, 1)], (100, 200))[0].tolist() == pytest.approx([85.0, 42.5, 115.0, 57.5])


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: nms(torch.zeros(3, 5), torch.zeros(3), 0.5),
            r"boxes has shape \(3, 5\); expected boxes \[K, 4\]",
        ),
        (lambda: nms(torch.zeros(3, 4), torch.zeros(2), 0.5), r"scores has shape \(2,\); expected \[3\]"),
        (
            lambda: nms(torch.zeros(3, 4), torch.zeros(3), 1.5),
            r"iou_threshold=1.5 invalid; expected a probability",
        ),
        (lambda: batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(2), 0.5), r"labels has shape"),
        (lambda: box_iou(torch.zeros(2, 3), torch.zeros(2, 4)), r"boxes1 has shape \(2, 3\)"),
        (lambda: clip_boxes(torch.zeros(2, 4), (1, 2, 3)), r"size_hw=\(1, 2, 3\) invalid"),
        (lambda: Matcher(0.3, 0.7), r"low_threshold=0.7 invalid; expected <= high_threshold=0.3"),
        (lambda: ssd_match(torch.zeros(2, 3), 2.0), r"threshold=2.0 invalid"),
        (lambda: BoxCoder((1.0, 1.0)), r"weights=\(1.0, 1.0\) invalid; expected 4 numbers"),
        (lambda: DefaultBoxes([[2], [3]], steps=[8]), r"steps=\[8\] invalid; expected 2 steps"),
        (lambda: DefaultBoxes([[2], [3]], scales=[0.1, 0.2]), r"scales has 2 values; expected 3"),
        (lambda: DefaultBoxes([[2]])([(2, 2), (1, 1)], (64, 64)), r"2 feature sizes; expected 1"),
        (
            lambda: postprocess(torch.zeros(1, 3, 4), torch.zeros(1, 3, 2), topk_candidates=0),
            r"topk_candidates=0 invalid; expected an integer >= 1",
        ),
        (
            lambda: postprocess(torch.zeros(1, 3, 4), torch.zeros(1, 2, 2)),
            r"expected \[N, A, 4\] / \[N, A, C\]",
        ),
        (
            lambda: ssd_loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, 4), torch.zeros(4, 4), []),
            r"anchors has shape \(4, 4\); expected \[3, 4\]",
        ),
    ],
)
def test_bad_input_is_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
