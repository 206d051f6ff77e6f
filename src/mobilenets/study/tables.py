"""The report's tables: the V3 CIFAR-10 study's results, claims and SE / h-swish ablation, the V1 paper's
width-multiplier, resolution-multiplier and depthwise-vs-full-convolution tables (the paper's ImageNet
MACs/params beside ours, computed for the same ImageNet geometry and measured on the user's data), and
every run. The published numbers come from ``claims.yaml`` (:mod:`.claims`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

from .claims import PAPER_V1_CONV, PAPER_V1_RESOLUTION, PAPER_V1_WIDTH, STUDY_ABLATION_CLAIMS, STUDY_CLAIMS
from .document import Table
from .runs import _Run

__all__ = ["DETECTION_TABLE_IDS", "SEGMENTATION_TABLE_IDS", "TABLE_IDS", "V1_IMAGENET_COST", "build_tables"]


#: Every table a report contains, in order (tests check them all).
TABLE_IDS = ("results-table", "study-claims-table", "ablation-table", "v1-width-table", "v1-resolution-table",
             "v1-conv-table", "runs-table")
#: The tables a report adds when it has detection runs (a report of detectors only has just these).
DETECTION_TABLE_IDS = ("detection-table",)
#: The tables a report adds when it has segmentation runs (a report of segmenters only has just these).
SEGMENTATION_TABLE_IDS = ("segmentation-table",)


_DASH = "—"


def _num(v: float | None, digits: int = 2) -> str:
    return _DASH if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _pm(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return _DASH
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def _mega(v: float | None, digits: int = 2) -> str:
    return _DASH if v is None else f"{v / 1e6:.{digits}f}"


def _kw_text(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in (kwargs or {}).items() if k not in ("num_classes", "in_chans")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _baseline(runs: Sequence[_Run]) -> _Run | None:
    for prefix in ("resnet50", "resnet"):
        for r in runs:
            if str(r.row.get("model", "")).startswith(prefix):
                return r
    return None


def _results_table(runs: Sequence[_Run]) -> Table:
    base = _baseline(runs)
    headers = ["run", "model", "options", "input", "params (M)", "MACs (M)", "top-1 (%)", "latency eager (ms)",
               "latency best (ms)", "best backend", "train time (s)"]
    if base is not None:
        headers += [f"params vs {base.name}", f"MACs vs {base.name}", f"top-1 vs {base.name}", "speed-up (eager)"]
    rows = []
    for r in runs:
        x = r.row
        cells = [r.name, str(x.get("model")), _kw_text(r.kwargs), f"{x.get('image_size')}px",
                 _mega(x.get("params")), _mega(x.get("macs"), 1), _pm(x.get("test_acc1"), x.get("test_acc1_std")),
                 _pm(x.get("latency_eager_ms"), x.get("latency_eager_ms_std")),
                 _pm(x.get("latency_best_ms"), x.get("latency_best_ms_std")), str(x.get("best_backend") or _DASH),
                 _pm(x.get("train_time_s"), x.get("train_time_s_std"), 1)]
        if base is not None:
            b = base.row

            def ratio(a: Any, c: Any) -> float | None:
                return a / c if a is not None and c else None

            p, m, acc = ratio(x.get("params"), b.get("params")), ratio(x.get("macs"), b.get("macs")), ratio(
                x.get("test_acc1"), b.get("test_acc1"))
            lat = ratio(b.get("latency_eager_ms"), x.get("latency_eager_ms"))
            cells += [f"{100 * p:.1f}%" if p is not None else _DASH, f"{100 * m:.1f}%" if m is not None else _DASH,
                      f"{100 * acc:.1f}%" if acc is not None else _DASH, f"{lat:.2f}×" if lat is not None else _DASH]
        rows.append(cells)
    n = max(len(r.dirs) for r in runs)
    note = ("top-1 is on the test split, from the best-validation weights; "
            + ("mean ± sample std over seeds. " if n > 1 else "one seed per run. ")
            + "Latency: median of batch-1 CPU forward passes at the run's input size. Training time: sum of epoch times "
            "(shared CPU: wall-clock numbers are inflated by other processes).")
    return Table("results-table", "Results (the V3 CIFAR-10 study style): params, MACs, accuracy, latency", headers, rows, note)


def _study_claims_table(runs: Sequence[_Run]) -> Table:
    rows = []
    for model, (p, f, acc, lat) in STUDY_CLAIMS.items():
        ours = next((r for r in runs if r.row.get("model") == model and not _is_ablation_variant(r)), None)
        rows.append([model, f"{p:.2f}", f"{f:.1f}", f"{acc:.1f}", f"{lat:.2f}",
                     _mega(ours.row.get("params")) if ours else _DASH, _mega(ours.row.get("macs"), 1) if ours else _DASH,
                     _pm(ours.row.get("test_acc1"), ours.row.get("test_acc1_std")) if ours else _DASH,
                     _num(ours.row.get("latency_eager_ms")) if ours else _DASH,
                     f"{ours.name} ({ours.row.get('dataset')}, {ours.row.get('image_size')}px)" if ours else _DASH])
    note = ("The V3 CIFAR-10 study's CIFAR-10 claims beside our runs of the same architecture. The V3 CIFAR-10 study's FLOPs are the ImageNet "
            "224px MAC counts of the 1000-class models (V3-Small 56-58M, V3-Large 217-219M, ResNet-50 4.1G), "
            "not the cost at 32px, so they are not comparable with our MACs at the training resolution; its latency "
            "hardware is not stated.")
    return Table("study-claims-table", "The V3 CIFAR-10 study's claims beside ours", [
        "model", "the V3 CIFAR-10 study params (M)", "the V3 CIFAR-10 study FLOPs (M)", "the V3 CIFAR-10 study top-1", "the V3 CIFAR-10 study latency (ms)",
        "our params (M)", "our MACs (M)", "our top-1", "our latency eager (ms)", "our run"], rows, note)


def _se_hs(r: _Run) -> tuple[bool, bool]:
    kw = r.kwargs
    return bool(kw.get("use_se", True)), bool(kw.get("use_hswish", True))


def _is_ablation_variant(r: _Run) -> bool:
    return _se_hs(r) != (True, True)


def _ablation_table(runs: Sequence[_Run]) -> Table:
    groups: dict[tuple[Any, ...], dict[tuple[bool, bool], _Run]] = {}
    for r in runs:
        if not str(r.row.get("model", "")).startswith("mobilenet_v3"):
            continue
        rest = tuple(sorted((k, str(v)) for k, v in r.kwargs.items() if k not in ("use_se", "use_hswish")))
        groups.setdefault((r.row.get("model"), r.row.get("image_size"), rest), {}).setdefault(_se_hs(r), r)
    rows = []
    order = [(False, False), (True, False), (False, True), (True, True)]
    for (model, size, rest), combos in groups.items():
        if len(combos) < 2:
            continue
        ref = combos.get((False, False))
        for key in order:
            r = combos.get(key)
            claim = STUDY_ABLATION_CLAIMS[key] if model == "mobilenet_v3_small" else None
            delta = (f"{r.row['test_acc1'] - ref.row['test_acc1']:+.2f}"
                     if r is not None and ref is not None and r.row.get("test_acc1") is not None
                     and ref.row.get("test_acc1") is not None else _DASH)
            rows.append([f"{model} {size}px {', '.join(f'{k}={v}' for k, v in rest)}".strip(),
                         "✓" if key[0] else "✗", "✓" if key[1] else "✗", r.name if r else _DASH,
                         _mega(r.row.get("params"), 3) if r else _DASH, _mega(r.row.get("macs"), 2) if r else _DASH,
                         _pm(r.row.get("test_acc1"), r.row.get("test_acc1_std")) if r else _DASH, delta,
                         _num(r.row.get("latency_eager_ms")) if r else _DASH,
                         f"{claim[0]:.2f}" if claim else _DASH, f"{claim[1]:.1f}" if claim else _DASH])
    if not rows:
        rows = [[_DASH, "✓" if s else "✗", "✓" if h else "✗", "(not in this experiment)", _DASH, _DASH, _DASH, _DASH,
                 _DASH, f"{STUDY_ABLATION_CLAIMS[(s, h)][0]:.2f}", f"{STUDY_ABLATION_CLAIMS[(s, h)][1]:.1f}"] for s, h in order]
    note = ("V3 with SE and/or h-swish removed (use_se=False: no squeeze-excite; use_hswish=False: ReLU everywhere, "
            "hard-sigmoid gates kept). Δ is against the variant with neither. The V3 CIFAR-10 study's figures are its CIFAR-10 "
            "claims for V3-Small.")
    return Table("ablation-table", "Ablation: squeeze-excite and h-swish", [
        "group", "SE", "h-swish", "run", "params (M)", "MACs (M)", "top-1 (%)", "Δ top-1 vs neither",
        "latency eager (ms)", "the V3 CIFAR-10 study params (M)", "the V3 CIFAR-10 study top-1"], rows, note)


#: Our V1's (params, MACs) in the paper's geometry for the paper's rows, keyed (α, resolution, separable): what
#: ``_imagenet_cost`` computes, pinned so a report does not spend seconds profiling 224px models (the pins
#: are checked against the profiler in tests/test_report.py).
V1_IMAGENET_COST: dict[tuple[float, int, bool], tuple[int, int]] = {
    (1.0, 224, True): (4231976, 568740352), (0.75, 224, True): (2585560, 325400448),
    (0.5, 224, True): (1331592, 149497088), (0.25, 224, True): (470072, 41030272),
    (1.0, 192, True): (4231976, 418121728), (1.0, 160, True): (4231976, 290675200),
    (1.0, 128, True): (4231976, 186400768), (1.0, 224, False): (29294088, 4867293184),
}


def _imagenet_cost(width: float = 1.0, resolution: int = 224, separable: bool = True) -> tuple[int, int]:
    """(params, MACs) of V1 in the paper's ImageNet geometry (1000 classes, 3 channels)."""
    pinned = V1_IMAGENET_COST.get((float(width), int(resolution), bool(separable)))
    return pinned if pinned is not None else _profile_v1(float(width), int(resolution), bool(separable))


@cache
def _profile_v1(width: float, resolution: int, separable: bool) -> tuple[int, int]:
    import torch

    from ..cost import profile
    from ..weights import create_model

    with torch.no_grad():
        model = create_model("mobilenet_v1", width_mult=width, separable=separable)
        prof = profile(model, resolution)
    return prof.params, prof.macs


def _v1_runs(runs: Sequence[_Run], separable: bool = True) -> list[_Run]:
    return [r for r in runs if r.row.get("model") == "mobilenet_v1" and bool(r.kwargs.get("separable", True)) == separable]


def _v1_width_table(runs: Sequence[_Run]) -> Table:
    v1 = _v1_runs(runs)
    widths: dict[int, set[float]] = {}
    for r in v1:
        widths.setdefault(int(r.row.get("image_size") or 0), set()).add(float(r.kwargs.get("width_mult", 1.0)))
    # The resolution at which the grid varies α (resolution runs share α = 1 and must not hide it).
    size = max(widths, key=lambda s: (len(widths[s]), s), default=None)
    ours = {float(r.kwargs.get("width_mult", 1.0)): r for r in v1 if r.row.get("image_size") == size}
    alphas = sorted({a for a, *_ in PAPER_V1_WIDTH} | set(ours), reverse=True)
    paper = {a: (m, p, t) for a, m, p, t in PAPER_V1_WIDTH}
    rows = []
    for a in alphas:
        params, macs = _imagenet_cost(a, 224)
        m, p, t = paper.get(a, (None, None, None))
        r = ours.get(a)
        rows.append([f"{a:g}", _num(m, 0), f"{macs / 1e6:.0f}", _num(p, 1), f"{params / 1e6:.2f}", _num(t, 1),
                     r.name if r else _DASH, _mega(r.row.get("params"), 3) if r else _DASH,
                     _mega(r.row.get("macs"), 2) if r else _DASH,
                     _pm(r.row.get("test_acc1"), r.row.get("test_acc1_std")) if r else _DASH,
                     _num(r.row.get("latency_eager_ms")) if r else _DASH])
    data_note = f"measured on {v1[0].row.get('dataset')} at {size}px" if v1 else "no MobileNetV1 runs in this experiment"
    note = ("V1 paper Table 6 (ImageNet, 224px) beside our model's params/MACs for the same geometry (1000 classes, "
            f"224px, computed by mobilenets.profile) and our runs ({data_note}).")
    return Table("v1-width-table", "MobileNetV1 width multiplier α (V1 paper Table 6)", [
        "α", "paper MACs (M)", "our MACs @224 (M)", "paper params (M)", "our params @1000 cls (M)",
        "paper top-1 (ImageNet)", "our run", "params on data (M)", "MACs on data (M)", "top-1 on data (%)",
        "latency eager (ms)"], rows, note)


def _v1_resolution_table(runs: Sequence[_Run]) -> Table:
    v1 = [r for r in _v1_runs(runs) if float(r.kwargs.get("width_mult", 1.0)) == 1.0]
    by_size = {int(r.row.get("image_size") or 0): r for r in v1}
    top = max(by_size, default=0)
    unmatched = dict(by_size)
    rows = []
    for res, macs_p, top1 in PAPER_V1_RESOLUTION:
        rho = res / 224
        _, macs = _imagenet_cost(1.0, res)
        match = min(unmatched, key=lambda s: abs(s / top - rho), default=None) if top else None
        r = unmatched.pop(match) if match is not None and abs(match / top - rho) < 0.05 else None
        rows.append([f"{rho:.3f}", f"{res}", f"{macs_p:.0f}", f"{macs / 1e6:.0f}", f"{top1:.1f}",
                     r.name if r else _DASH, f"{r.row.get('image_size')}px" if r else _DASH,
                     _mega(r.row.get("macs"), 2) if r else _DASH,
                     _pm(r.row.get("test_acc1"), r.row.get("test_acc1_std")) if r else _DASH,
                     _num(r.row.get("latency_eager_ms")) if r else _DASH])
    for size, r in sorted(unmatched.items(), reverse=True):
        rows.append([f"{size / top:.3f}", _DASH, _DASH, _DASH, _DASH, r.name, f"{size}px", _mega(r.row.get("macs"), 2),
                     _pm(r.row.get("test_acc1"), r.row.get("test_acc1_std")), _num(r.row.get("latency_eager_ms"))])
    note = ("V1 paper Table 7 (α = 1) beside our MACs at the same ImageNet resolutions, and our runs paired by the "
            "resolution multiplier ρ = resolution / largest resolution (our largest plays the part of the paper's 224).")
    return Table("v1-resolution-table", "MobileNetV1 resolution multiplier ρ (V1 paper Table 7)", [
        "ρ", "paper resolution", "paper MACs (M)", "our MACs (M)", "paper top-1 (ImageNet)", "our run",
        "our resolution", "MACs on data (M)", "top-1 on data (%)", "latency eager (ms)"], rows, note)


def _v1_conv_table(runs: Sequence[_Run]) -> Table:
    rows = []
    size: Any = None
    for name, separable in (("Conv MobileNet", False), ("MobileNet", True)):
        p, m, t = PAPER_V1_CONV[name]
        params, macs = _imagenet_cost(1.0, 224, separable)
        cands = [r for r in _v1_runs(runs, separable) if float(r.kwargs.get("width_mult", 1.0)) == 1.0]
        # The separable run compared is the one at the Conv MobileNet's resolution when there is one.
        r = max(cands, key=lambda c: (c.row.get("image_size") == size, c.row.get("image_size") or 0), default=None)
        if not separable and r is not None:
            size = r.row.get("image_size")
        rows.append([name, f"{p:.1f}", f"{params / 1e6:.2f}", f"{m:.0f}", f"{macs / 1e6:.0f}", f"{t:.1f}",
                     r.name if r else _DASH, _mega(r.row.get("params"), 2) if r else _DASH,
                     _mega(r.row.get("macs"), 1) if r else _DASH,
                     _pm(r.row.get("test_acc1"), r.row.get("test_acc1_std")) if r else _DASH,
                     _num(r.row.get("latency_eager_ms")) if r else _DASH])
    note = "V1 paper Table 4: full 3×3 convolutions against depthwise separable ones, same widths."
    return Table("v1-conv-table", "Depthwise separable vs full convolution (V1 paper Table 4)", [
        "model", "paper params (M)", "our params (M)", "paper MACs (M)", "our MACs @224 (M)", "paper top-1",
        "our run", "params on data (M)", "MACs on data (M)", "top-1 on data (%)", "latency eager (ms)"], rows, note)


def _runs_table(runs: Sequence[_Run]) -> Table:
    rows = []
    for r in runs:
        for rec in r.records:
            rows.append([r.name, str(rec.get("seed")), _num(rec.get("test_acc1")), _num(rec.get("best_val_acc1")),
                         str(rec.get("epochs")), _num(rec.get("train_time_s"), 1), _num(rec.get("latency_eager_ms")),
                         _num(rec.get("latency_best_ms")), str(rec.get("run_dir"))])
    return Table("runs-table", "Every run", ["run", "seed", "test top-1", "best val top-1", "epochs", "train time (s)",
                                            "latency eager (ms)", "latency best (ms)", "run directory"], rows)


def _model_cells(r: _Run) -> list[str]:
    """The leading cells of a detection or segmentation row: run, model, options, dataset, input, params, MACs."""
    x = r.row
    return [r.name, str(x.get("model")), _kw_text(r.kwargs), str(x.get("dataset")), f"{x.get('image_size')}px",
            _mega(x.get("params"), 3), _mega(x.get("macs"), 1)]


def _cost_cells(x: dict[str, Any]) -> list[str]:
    """The trailing cells of a detection or segmentation row: latency eager / best, best backend, train time."""
    return [_pm(x.get("latency_eager_ms"), x.get("latency_eager_ms_std")),
            _pm(x.get("latency_best_ms"), x.get("latency_best_ms_std")), str(x.get("best_backend") or _DASH),
            _pm(x.get("train_time_s"), x.get("train_time_s_std"), 1)]


def _detection_table(runs: Sequence[_Run]) -> Table:
    rows = []
    for r in runs:
        x = r.row
        rows.append([*_model_cells(r),
                     _pm(x.get("test_map"), x.get("test_map_std"), 3),
                     _pm(x.get("test_map50"), x.get("test_map50_std"), 3),
                     _pm(x.get("test_map75"), x.get("test_map75_std"), 3),
                     _pm(x.get("best_val_map"), x.get("best_val_map_std"), 3),
                     *_cost_cells(x)])
    n = max(len(r.dirs) for r in runs)
    note = ("COCO box metrics (pycocotools' COCOeval) on the test split, from the weights best on val mAP: mAP is "
            "the mean over IoU 0.50:0.95, AP50 / AP75 at IoU 0.50 / 0.75; "
            + ("mean ± sample std over seeds. " if n > 1 else "one seed per run. ")
            + "MACs: the network (backbone, extras, heads) at the model's input size, without box decoding and NMS. "
            "Latency: median of batch-1 CPU forward passes at the model's input size, NMS included in eager.")
    return Table("detection-table", "Detection: params, MACs, box mAP, latency", [
        "run", "model", "options", "dataset", "input", "params (M)", "MACs (M)", "mAP", "AP50", "AP75",
        "best val mAP", "latency eager (ms)", "latency best (ms)", "best backend", "train time (s)"], rows, note)


def _worst_class(per_class: Any) -> str:
    """``name: IoU`` of the class the model segments worst, the figure a mean hides; a class absent from
    the test split (IoU ``None``) is not a failure and is passed over."""
    scored = [(k, v) for k, v in (per_class or {}).items() if v is not None]
    if not scored:
        return _DASH
    name, iou = min(scored, key=lambda kv: kv[1])
    return f"{name}: {iou:.3f}"


def _segmentation_table(runs: Sequence[_Run]) -> Table:
    rows = []
    for r in runs:
        x = r.row
        rows.append([*_model_cells(r),
                     _pm(x.get("test_miou"), x.get("test_miou_std"), 3),
                     _pm(x.get("test_pixel_acc"), x.get("test_pixel_acc_std"), 3),
                     _pm(x.get("test_mean_acc"), x.get("test_mean_acc_std"), 3),
                     _pm(x.get("best_val_miou"), x.get("best_val_miou_std"), 3),
                     _worst_class(x.get("test_per_class_iou")),
                     *_cost_cells(x)])
    n = max(len(r.dirs) for r in runs)
    note = ("Per-pixel metrics on the test split from one confusion matrix over all its pixels (the ignore label "
            "255 left out), from the weights best on val mIoU: mIoU is the mean intersection over union of the classes "
            "(background included) present in the labels or the predictions, pixel accuracy the fraction of pixels "
            "labelled right, mean accuracy the mean over classes of each class's pixel recall; the lowest class IoU "
            "is of those classes too; " + ("mean ± sample std over seeds (the per-class IoU averaged over seeds). " if n > 1 else
                        "one seed per run. ")
            + "MACs: the network (backbone and head) at the model's input size. "
            "Latency: median of batch-1 CPU forward passes at the model's input size, upsampled logits included.")
    return Table("segmentation-table", "Segmentation: params, MACs, mIoU, pixel accuracy, latency", [
        "run", "model", "options", "dataset", "input", "params (M)", "MACs (M)", "mIoU", "pixel acc", "mean acc",
        "best val mIoU", "lowest class IoU", "latency eager (ms)", "latency best (ms)", "best backend",
        "train time (s)"], rows, note)


def build_tables(runs: Sequence[_Run]) -> list[Table]:
    """Every table of a report: :data:`TABLE_IDS` of the classification runs (when there are any), then
    :data:`DETECTION_TABLE_IDS` of the detection runs and :data:`SEGMENTATION_TABLE_IDS` of the segmentation
    runs (each when there are any)."""
    classify = [r for r in runs if r.task == "classify"]
    detect = [r for r in runs if r.is_detection]
    segment = [r for r in runs if r.is_segmentation]
    tables = []
    if classify:
        tables += [_results_table(classify), _study_claims_table(classify), _ablation_table(classify),
                   _v1_width_table(classify), _v1_resolution_table(classify), _v1_conv_table(classify),
                   _runs_table(classify)]
    if detect:
        tables.append(_detection_table(detect))
    if segment:
        tables.append(_segmentation_table(segment))
    return tables
