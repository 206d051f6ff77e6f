"""The report's figures: accuracy against MACs and against latency with the Pareto front, training curves,
per-block MACs, params and latency of one chosen model, and that model's architecture diagram; for detection
runs, the validation mAP curves and a test scene with a detector's predicted boxes drawn by the predict
command's own drawing function; for segmentation runs, the validation mIoU curves and a test image with a
segmenter's predicted mask beside the ground truth, coloured by the deployment's own overlay."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from ..engine.plots import read_metrics
from .document import Figure
from .runs import _Run

__all__ = ["DETECTION_FIGURE_IDS", "SEGMENTATION_FIGURE_IDS", "build_detection_figures", "build_figures",
           "build_segmentation_figures", "predicted_mask"]

#: The figures a report adds when it has detection runs.
DETECTION_FIGURE_IDS = ("plot-detection-curves", "plot-detection-predicted")
#: The figures a report adds when it has segmentation runs.
SEGMENTATION_FIGURE_IDS = ("plot-segmentation-curves", "plot-segmentation-overlay")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _pareto(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats (lower cost and higher accuracy), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _scatter(runs: Sequence[_Run], key: str, xlabel: str, fid: str, title: str) -> Figure:
    plt = _pyplot()
    pts = [(r, float(r.row[key]), float(r.row["test_acc1"])) for r in runs
           if r.row.get(key) and r.row.get("test_acc1") is not None]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    xs = [x / 1e6 if key == "macs" else x for _, x, _ in pts]
    ys = [y for *_, y in pts]
    front = _pareto(list(zip(xs, ys)))
    ax.scatter(xs, ys, c="#4477aa", s=36, zorder=3, label="runs")
    log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
    placed: list[tuple[float, float]] = []
    x_span = y_span = 1.0
    if xs:  # normalised positions, so "near" means the same on a log or a linear axis
        x_span = (math.log10(max(xs) / min(xs)) if log_x else max(xs) - min(xs)) or 1.0
        y_span = (max(ys) - min(ys)) or 1.0
    for (r, _, _), x, y in zip(pts, xs, ys):
        std = r.row.get("test_acc1_std")
        if std:
            ax.errorbar([x], [y], yerr=[std], color="#4477aa", capsize=3, zorder=2)
        # Runs of near-equal cost and accuracy (ablation variants) would print their names on top of each
        # other: stack such labels downwards instead.
        u = (math.log10(x / min(xs)) if log_x else x - min(xs)) / x_span
        v = (y - min(ys)) / y_span
        near = sum(1 for pu, pv in placed if abs(pu - u) < 0.12 and abs(pv - v) < 0.04)
        placed.append((u, v))
        ax.annotate(r.name, (x, y), textcoords="offset points", xytext=(4, 4 - 9 * near), fontsize=7)
    if front:
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-", color="#cc3311", lw=1.5, zorder=1)
        ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=110, facecolors="none", edgecolors="#cc3311",
                   lw=1.5, zorder=4, label="Pareto front")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return Figure(fid, title, _png(fig), "Circled points are on the Pareto front (no other run is both cheaper and "
                  "more accurate); error bars are ± one std over seeds.")


def _training_curves(runs: Sequence[_Run], series: Sequence[tuple[str, str, str]], loss_label: str,
                     val_label: str, val_title: str) -> Any:
    """Training loss (left) and validation figures (right) per run, one colour per run; ``series`` holds
    ``(metrics.csv key without val_, line style, legend suffix)``, EMA values where the run kept them."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in runs:
        path = r.dirs[0] / "metrics.csv"
        if not path.is_file():
            continue
        rows = read_metrics(path)
        ep = [row["epoch"] for row in rows]
        (line,) = a1.plot(ep, [row.get("train_loss") for row in rows], marker="o", ms=2, label=r.name)
        for key, style, suffix in series:
            ys = [row.get(f"ema_val_{key}") if row.get(f"ema_val_{key}") is not None else row.get(f"val_{key}")
                  for row in rows]
            a2.plot(ep, ys, style, marker="o", ms=2, color=line.get_color(), label=f"{r.name}{suffix}")
    a1.set(xlabel="epoch", ylabel=loss_label, title="training loss")
    a2.set(xlabel="epoch", ylabel=val_label, title=val_title)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    a2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _curves(runs: Sequence[_Run]) -> Figure:
    fig = _training_curves(runs, [("acc1", "-", "")], "train loss", "val top-1 (%)",
                           "validation accuracy (EMA where used)")
    return Figure("plot-curves", "Training curves", _png(fig), "First seed of every run.")


def _block_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "stem":
        return "stem"
    if parts[0] == "blocks" and len(parts) >= 3:
        return f"blocks.{parts[1]}.{parts[2]}"
    return "head"


def _layer_bars(model: Any, shape: tuple[int, int, int], name: str) -> Figure:
    from ..analysis.latency import layer_latency
    from ..cost import profile

    plt = _pyplot()
    prof = profile(model, shape)
    lat = layer_latency(model, shape)
    macs: dict[str, float] = {}
    params: dict[str, float] = {}
    ms: dict[str, float] = {}
    for row in prof.rows:
        b = _block_of(row.name)
        macs[b] = macs.get(b, 0) + row.macs / 1e6
        params[b] = params.get(b, 0) + row.params / 1e6
    for layer, t in lat.items():
        b = _block_of(layer)
        ms[b] = ms.get(b, 0) + t
    labels = list(dict.fromkeys([*macs, *ms]))
    fig, axes = plt.subplots(3, 1, figsize=(max(8, 0.45 * len(labels) + 2), 8.5), sharex=True)
    for ax, data, ylabel, color in ((axes[0], macs, "MACs (M)", "#4477aa"), (axes[1], params, "params (M)", "#228833"),
                                    (axes[2], ms, "latency (ms)", "#ee6677")):
        ax.bar(range(len(labels)), [data.get(k, 0.0) for k in labels], color=color)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[2].set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    axes[0].set_title(f"{name}: per-block cost at {shape[1]}×{shape[2]}")
    fig.tight_layout()
    return Figure("plot-layers", f"Per-block MACs, params and latency: {name}", _png(fig),
                  "Latency per block: mean of eager batch-1 forward passes timed with hooks on every leaf module (hook "
                  "overhead included; compare blocks with each other, not with the whole-model figure).")


def _block_shapes(model: Any, shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if name == "stem" or (name.startswith("blocks.") and name.count(".") == 2):
            handles.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    finally:
        for h in handles:
            h.remove()
    return shapes


def _block_text(spec: Any) -> tuple[str, str]:
    from ..models.blocks import BLOCK_TYPES  # each block type says how it is drawn

    se = "SE" if spec.se_chs else "no SE"
    return BLOCK_TYPES[spec.type].head_text(spec), f"{se} · {spec.act} · s{spec.stride}"


def _block_color(spec: Any) -> str:
    from ..models.blocks import BLOCK_TYPES

    return BLOCK_TYPES[spec.type].color


def _architecture(model: Any, shape: tuple[int, int, int], name: str) -> Figure:
    plt = _pyplot()
    from matplotlib.patches import FancyBboxPatch

    arch = model.arch
    shapes = _block_shapes(model, shape)
    items = [("stem", arch.stem)]
    for s, stage in enumerate(arch.stages):
        items += [(f"blocks.{s}.{i}", spec) for i, spec in enumerate(stage)]
    cols = 4
    nrows = math.ceil((len(items) + 1) / cols)
    fig, ax = plt.subplots(figsize=(13, 1.25 * nrows + 0.8))
    ax.set_xlim(0, cols)
    ax.set_ylim(nrows, -0.35)
    ax.axis("off")
    boxes = [(label, *_block_text(spec), _block_color(spec), spec.se_chs is not None,
              "×".join(map(str, shapes.get(label, ())))) for label, spec in items]
    norm = " BN" if arch.head_norm else ""
    head = f"pool → {arch.head_hidden}{norm} {arch.head_act} → " if arch.head_hidden else "pool → "
    boxes.append(("head", f"{head}dropout → FC", f"{model.num_classes} classes", "#f2f2f2", False,
                  str(model.num_classes)))
    for i, (label, line1, line2, color, has_se, out) in enumerate(boxes):
        r, c = divmod(i, cols)
        ax.add_patch(FancyBboxPatch((c + 0.04, r + 0.06), 0.88, 0.82, boxstyle="round,pad=0.01", fc=color,
                                    ec="#cc3311" if has_se else "#555555", lw=2 if has_se else 1))
        ax.text(c + 0.08, r + 0.22, f"{i}. {label}", fontsize=8, weight="bold", va="center")
        ax.text(c + 0.08, r + 0.42, line1, fontsize=7.5, va="center")
        ax.text(c + 0.08, r + 0.60, line2, fontsize=7.5, va="center")
        ax.text(c + 0.08, r + 0.78, f"→ {out}", fontsize=7.5, va="center", color="#224477")
        if i + 1 < len(boxes) and c + 1 < cols:
            ax.annotate("", (c + 1.04, r + 0.47), (c + 0.92, r + 0.47), arrowprops={"arrowstyle": "->", "lw": 1})
    ax.set_title(f"{name}: {len(items) - 1} blocks, input {'×'.join(map(str, shape))} (red border: squeeze-excite)",
                 fontsize=10)
    fig.tight_layout()
    return Figure("plot-architecture", f"Architecture: {name}", _png(fig),
                  "Each box is one block in execution order (left to right, then down): type, kernel, expansion, "
                  "SE, activation, stride and output shape (C×H×W).")


def build_figures(runs: Sequence[_Run], model: Any, shape: tuple[int, int, int], name: str) -> list[Figure]:
    """Every figure of a report; the per-block and architecture figures are of ``model`` (run ``name``)."""
    return [
        _scatter(runs, "macs", "MACs per image (M)", "plot-acc-macs", "Accuracy vs MACs"),
        _scatter(runs, "latency_best_ms", "batch-1 latency, best backend (ms)", "plot-acc-latency",
                 "Accuracy vs latency"),
        _curves(runs),
        _layer_bars(model, shape, name),
        _architecture(model, shape, name),
    ]


def _detection_curves(runs: Sequence[_Run]) -> Figure:
    fig = _training_curves(runs, [("map", "-", " mAP"), ("map50", "--", " AP50")],
                           "train loss (classification + box)", "val box AP", "val mAP (solid), AP50 (dashed)")
    return Figure("plot-detection-curves", "Detection training curves", _png(fig),
                  "First seed of every detection run; validation figures of the EMA weights where the run kept an EMA.")


def _scene_image(image: Any) -> Any:
    """A dataset image (uint8 tensor [C, H, W]) as a PIL image."""
    from PIL import Image

    arr = image.detach().cpu().numpy()
    return Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr[:3].transpose(1, 2, 0))


def predicted_scene(run_dir: Any, *, index: int = 0, min_score: float = 0.3, min_side: int = 384) -> tuple[bytes, str]:
    """PNG bytes of test scene ``index`` of a detection run with the run's predicted boxes and labels drawn
    (by :func:`mobilenets.deploy.evaluate.draw_detections`, what ``mobilenets predict --out`` draws with),
    and a caption. The data is the run's own (its ``config.yaml``); small scenes are enlarged (nearest
    neighbour, boxes scaled alike) to at least ``min_side`` pixels so the labels are readable."""
    import tempfile
    from pathlib import Path

    import torch

    from ..deploy.evaluate import draw_detections
    from ..engine.evaluate import build_eval_datasets, recorded_data
    from ..weights import from_pretrained, read_config

    run_dir = Path(run_dir)
    model = from_pretrained(run_dir).float().eval()
    recorded = recorded_data(run_dir)
    size = recorded.image_size if recorded and recorded.image_size else int(model.pretrained_cfg["input_size"][-1])
    dataset, _, splits = build_eval_datasets(run_dir, data=None, root=None, known_dataset=read_config(run_dir).get("dataset"),
                                             image_size=size, crop_pct=1.0, interpolation="bilinear",
                                             num_classes=model.num_classes)
    split = "test" if "test" in splits else "val"
    ds = splits[split]
    image, target = ds[min(index, len(ds) - 1)]
    with torch.no_grad():
        det = model([image.float().div(255)])[0]
    names = list(getattr(ds, "classes", None) or [str(i) for i in range(model.num_classes)])
    scale = max(1, -(-min_side // max(int(image.shape[-1]), int(image.shape[-2]))))
    found = [{"class": names[int(lab)], "label": int(lab), "score": float(sc), "box": [float(v) * scale for v in box]}
             for box, sc, lab in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist())]
    dets = [d for d in found if d["score"] >= min_score]
    # A barely trained detector scores nothing that high: show its best few, and say so.
    shown = (f"{len(dets)} detections scoring >= {min_score:g}" if dets or not found else
             f"no detection scores >= {min_score:g}; its best {min(3, len(found))} shown")
    dets = dets or sorted(found, key=lambda d: -d["score"])[:3]
    pil = _scene_image(image)
    if scale > 1:
        from PIL import Image

        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    with tempfile.TemporaryDirectory() as tmp:
        png = draw_detections(pil, dets, Path(tmp) / "predicted.png").read_bytes()
    truth = ", ".join(names[int(lab)] for lab in target["labels"].tolist())
    caption = (f"{dataset} {split} scene {index} ({image.shape[-1]}x{image.shape[-2]} px"
               + (f", shown {scale}x" if scale > 1 else "") + f"): {shown} (class and score on each box); "
               f"ground truth: {truth or 'no objects'}.")
    return png, caption


def build_detection_figures(runs: Sequence[_Run], chosen: _Run) -> tuple[list[Figure], str | None]:
    """The detection figures: every detection run's curves, and ``chosen``'s predictions on a test scene;
    plus a note when the scene cannot be drawn here (its dataset is not on this machine, say), in which
    case the report goes without that figure rather than failing."""
    figures = [_detection_curves(runs)]
    try:
        png, caption = predicted_scene(chosen.dirs[0])
    except (ValueError, OSError) as exc:
        return figures, f"No predicted-boxes figure for {chosen.name}: {exc}"
    figures.append(Figure("plot-detection-predicted", f"Predicted boxes: {chosen.name}", png, caption))
    return figures, None


# ---------------------------------------------------------------------------------------- segmentation
def _segmentation_curves(runs: Sequence[_Run]) -> Figure:
    fig = _training_curves(runs, [("miou", "-", " mIoU"), ("pixel_acc", "--", " pixel acc")],
                           "train loss (cross-entropy, aux head's included)", "val mIoU / pixel accuracy",
                           "val mIoU (solid), pixel accuracy (dashed)")
    return Figure("plot-segmentation-curves", "Segmentation training curves", _png(fig),
                  "First seed of every segmentation run; validation figures of the EMA weights where the run kept "
                  "an EMA.")


#: White pixels between the panels of :func:`_overlay_png`.
_PANEL_GAP = 8
#: Height of one legend line under the panels of :func:`_overlay_png`.
_LEGEND_LINE = 16


def _overlay_png(image: Any, truth: Any, predicted: Any, classes: Sequence[str], *, scale: int = 1,
                 alpha: float = 0.5) -> bytes:
    """PNG bytes of three panels side by side, top-aligned, ``_PANEL_GAP`` white pixels apart: the image,
    the image with the ground-truth mask ``truth`` coloured in, and with the ``predicted`` mask coloured in
    (both by :func:`mobilenets.deploy.segment.overlay`, what ``mobilenets predict --out`` writes: VOC
    palette, background left clear); each enlarged ``scale`` times (nearest neighbour, so every pixel
    stays one class). Under them a legend of the classes either mask has (and ignored pixels), one swatch
    per line.

    ``image``: uint8 ``[C, H, W]`` (1 or 3 channels); ``truth`` / ``predicted``: ``[H, W]`` class indices
    (255 in ``truth``: ignored pixels); ``classes``: the names of the indices, background first.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    if int(scale) < 1:
        raise ValueError(f"scale={scale} invalid; expected a positive integer")
    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or arr.dtype != np.uint8:
        raise ValueError(f"image of shape {arr.shape} and dtype {arr.dtype} invalid; expected uint8 (1|3, H, W)")

    from ..deploy.segment import overlay, voc_palette
    from ..engine.seg_metrics import IGNORE_INDEX

    k = len(classes)
    plain = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr
    plain = plain.transpose(1, 2, 0)
    panels = [plain, overlay(plain, truth, k, alpha), overlay(plain, predicted, k, alpha)]
    h, w = plain.shape[:2]
    side_h, side_w = h * int(scale), w * int(scale)
    # Every class either mask has (ignored pixels too: the overlay paints them VOC's border colour).
    labels = sorted({int(v) for m in (truth, predicted) for v in np.unique(np.asarray(
        m.detach().cpu() if hasattr(m, "detach") else m)) if 0 < int(v) < k or int(v) == IGNORE_INDEX})
    legend = ["background: clear", *(classes[i] if i < k else f"ignored ({i})" for i in labels)]
    width = 3 * side_w + 2 * _PANEL_GAP
    canvas = Image.new("RGB", (width, side_h + _PANEL_GAP + _LEGEND_LINE * len(legend)), "white")
    for i, panel in enumerate(panels):
        pil = Image.fromarray(panel)
        if scale > 1:
            pil = pil.resize((side_w, side_h), Image.Resampling.NEAREST)
        canvas.paste(pil, (i * (side_w + _PANEL_GAP), 0))
    draw = ImageDraw.Draw(canvas)
    palette = voc_palette()
    for line, text in enumerate(legend):
        y = side_h + _PANEL_GAP + line * _LEGEND_LINE
        if line:  # background has no colour of its own
            colour = tuple(int(c) for c in palette[labels[line - 1]])
            draw.rectangle((2, y + 2, 13, y + 13), fill=colour, outline="black")
        draw.text((18, y + 2), text, fill="black")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def predicted_mask(model: Any, image: Any) -> Any:
    """Class indices ``[H, W]`` (int64) a segmenter gives a uint8 image ``[C, H, W]``: the image scaled to
    0..1 and normalised with the model's ``pretrained_cfg`` mean and std (as training fed it), the argmax of
    the ``out`` logits."""
    import torch

    cfg = getattr(model, "pretrained_cfg", None) or {}
    c = int(image.shape[0])
    mean = torch.tensor(cfg.get("mean", (0.0,) * c), dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(cfg.get("std", (1.0,) * c), dtype=torch.float32).view(-1, 1, 1)
    x = (image.float().div(255) - mean) / std
    with torch.no_grad():
        out = model(x[None])
    logits = out["out"] if isinstance(out, dict) else out
    if logits.ndim != 4 or tuple(logits.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError(f"segmenter logits of shape {tuple(logits.shape)} invalid; expected (1, K, "
                         f"{image.shape[-2]}, {image.shape[-1]}) for a {tuple(image.shape)} image")
    return logits[0].argmax(0)


def _segmentation_item(ds: Any, index: int) -> tuple[Any, Any]:
    """``(uint8 image [C, S, S], mask [S, S])`` of item ``index`` of a segmentation split; the digit scenes'
    detection split (items ``(image, boxes)``) gives its kept masks instead."""
    image, target = ds[index]
    if isinstance(target, dict):
        masks = getattr(ds, "masks", None)
        if masks is None:
            raise ValueError(f"the {type(ds).__name__} split has no masks; a segmentation figure needs them")
        target = masks[index]
    return image, target


def segmentation_overlay(run_dir: Any, *, index: int = 0, min_side: int = 384) -> tuple[bytes, str]:
    """PNG bytes of test image ``index`` of a segmentation run (:func:`_overlay_png`: the image, the ground
    truth and the run's predicted mask) and a caption with the image's pixel accuracy and IoU. The data is
    the run's own (its ``config.yaml``); small images are enlarged to at least ``min_side`` pixels."""
    from pathlib import Path

    from ..engine.evaluate import build_eval_datasets, recorded_data
    from ..engine.seg_metrics import IGNORE_INDEX, confusion_matrix, segmentation_scores
    from ..weights import from_pretrained, read_config

    run_dir = Path(run_dir)
    model = from_pretrained(run_dir).float().eval()
    recorded = recorded_data(run_dir)
    size = recorded.image_size if recorded and recorded.image_size else int(model.pretrained_cfg["input_size"][-1])
    dataset, _, splits = build_eval_datasets(run_dir, data=None, root=None, known_dataset=read_config(run_dir).get("dataset"),
                                             image_size=size, crop_pct=1.0, interpolation="bilinear",
                                             num_classes=model.num_classes, task="segment")
    split = "test" if "test" in splits else "val"
    ds = splits[split]
    index = min(index, len(ds) - 1)
    image, truth = _segmentation_item(ds, index)
    predicted = predicted_mask(model, image)
    names = list(getattr(ds, "classes", None) or getattr(model, "class_names", None)
                 or [str(i) for i in range(model.num_classes)])
    scale = max(1, -(-min_side // max(int(image.shape[-1]), int(image.shape[-2]))))
    png = _overlay_png(image, truth, predicted, names, scale=scale)
    ignore = int(getattr(ds, "ignore_index", IGNORE_INDEX))
    scores = segmentation_scores(confusion_matrix(predicted, truth.long(), len(names), ignore), names)
    caption = (f"{dataset} {split} image {index} ({image.shape[-1]}x{image.shape[-2]} px"
               + (f", shown {scale}x" if scale > 1 else "") + f"), left to right: the image, its ground "
               f"truth and the run's prediction (pixel accuracy {scores['pixel_acc']:.3f}, mIoU "
               f"{scores['miou']:.3f} on this image); classes coloured in the VOC palette, background clear.")
    return png, caption


def build_segmentation_figures(runs: Sequence[_Run], chosen: _Run) -> tuple[list[Figure], str | None]:
    """The segmentation figures: every segmentation run's curves, and ``chosen``'s predicted mask on a test
    image; plus a note when the image cannot be drawn here (its dataset or weights are not on this
    machine, say), in which case the report goes without that figure rather than failing."""
    figures = [_segmentation_curves(runs)]
    try:
        png, caption = segmentation_overlay(chosen.dirs[0])
    except (ValueError, OSError) as exc:
        return figures, f"No segmentation overlay figure for {chosen.name}: {exc}"
    figures.append(Figure("plot-segmentation-overlay", f"Predicted mask: {chosen.name}", png, caption))
    return figures, None
