"""Training-curve plots (PNG) drawn from a run's ``metrics.csv``, with a headless matplotlib backend."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["best_epoch", "plot_confusion_matrix", "plot_training_curves", "read_metrics", "training_curve_figures"]


def read_metrics(path: str | Path) -> list[dict[str, float | None]]:
    """Rows of a run's ``metrics.csv`` with numbers parsed (empty cells become ``None``)."""
    with open(path, newline="") as fh:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(fh)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def best_epoch(rows: list[dict[str, float | None]], metric: str = "acc1") -> tuple[int, float, str] | None:
    """``(epoch, val score, "model" | "ema")`` of the weights a run kept, as training chooses them.

    The same rule as :mod:`mobilenets.engine.train`: per epoch the better of the raw and the EMA
    validation ``metric`` (``acc1``; a detector's ``map``; raw on a tie), and over epochs the first one
    reaching the maximum (a later equal score does not replace the saved weights). ``None`` when no
    row has a validation score.
    """
    best: tuple[int, float, str] | None = None
    for row in rows:
        candidates = [(src, row.get(key)) for src, key in (("model", f"val_{metric}"), ("ema", f"ema_val_{metric}"))]
        scored = [(src, float(v)) for src, v in candidates if v is not None]
        if not scored or row.get("epoch") is None:
            continue
        source, acc = max(scored, key=lambda c: c[1])
        if best is None or acc > best[1]:
            best = (int(row["epoch"]), acc, source)  # type: ignore[arg-type]
    return best


def _run_label_smoothing(metrics_csv: Path) -> float | None:
    """``aug.label_smoothing`` from the run's config.yaml beside metrics.csv (None if not recorded)."""
    config = metrics_csv.parent / "config.yaml"
    if not config.is_file():
        return None
    try:
        import yaml

        raw = yaml.safe_load(config.read_text()) or {}
        value = (raw.get("aug") or {}).get("label_smoothing") if isinstance(raw, dict) else None
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# What the score panel of each task's metric shows: file name, y label, title, value format.
_SCORE_PANELS = {
    "acc1": ("accuracy.png", "top-1 accuracy (%)", "validation top-1", "{:.2f}%"),
    "map": ("map.png", "box mAP@[.5:.95]", "validation mAP", "{:.3f}"),
    "miou": ("miou.png", "mIoU (background included)", "validation mIoU", "{:.3f}"),
}


def training_curve_figures(
    metrics_csv: str | Path, *, run_name: str | None = None, label_smoothing: float | None = None,
    metric: str = "acc1",
) -> dict[str, Any]:
    """The ``loss.png`` / ``accuracy.png`` / ``lr.png`` figures of a run, not yet saved (name → Figure).

    Why each decoration: epochs are whole numbers (a 2-epoch run otherwise gets ticks at 1.2, 1.4, ...);
    a title naming the run keeps PNGs from different runs apart once copied elsewhere; the best epoch is
    marked because those are the weights the run kept (``model.safetensors``), not the last ones; and
    with label smoothing on, the training loss is measured against smoothed targets (and augmented
    images) so it sits above the validation loss by design, which the loss plot says instead of
    leaving it to look like a bug. ``metric`` is the task's validation score (``acc1``: ``accuracy.png``;
    a detector's ``map``: ``map.png``). ``run_name`` defaults to the run directory's name and
    ``label_smoothing`` to the value in the run's ``config.yaml`` (no note when neither is known).
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    metrics_csv = Path(metrics_csv)
    rows = read_metrics(metrics_csv)
    name = run_name if run_name is not None else metrics_csv.resolve().parent.name
    smoothing = label_smoothing if label_smoothing is not None else _run_label_smoothing(metrics_csv)
    best = best_epoch(rows, metric)
    epochs = [r["epoch"] for r in rows]
    score_png, score_label, score_what, fmt = _SCORE_PANELS[metric]
    panels = {
        "loss.png": ("loss", "loss", [("train_loss", "train"), ("val_loss", "val"), ("ema_val_loss", "val (EMA)")]),
        score_png: (score_label, score_what, [(f"val_{metric}", "val"), (f"ema_val_{metric}", "val (EMA)")]),
        "lr.png": ("learning rate", "learning rate", [("lr", "lr (end of epoch)")]),
    }
    figures: dict[str, Any] = {}
    for fname, (ylabel, what, series) in panels.items():
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for key, label in series:
            pts = [(e, r[key]) for e, r in zip(epochs, rows) if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=2.5, label=label)
        if best is not None:
            weights = "EMA" if best[2] == "ema" else "raw"
            ax.axvline(best[0], color="0.4", linestyle="--", linewidth=1,
                       label=f"best epoch {best[0]} ({weights} val {score_what.removeprefix('validation ')} "
                             f"{fmt.format(best[1])})")
            if fname == score_png:
                ax.plot([best[0]], [best[1]], marker="*", markersize=12, color="#cc3311", linestyle="none")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name}: {what}" if name else what)
        ax.grid(alpha=0.3)
        if fname == "lr.png":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if epochs:  # half an epoch either side: a one-epoch run still gets the integer tick under its point
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)  # type: ignore[type-var,operator]
        ax.legend(fontsize=8)
        if fname == "loss.png" and smoothing:
            fig.text(0.01, 0.01, f"label smoothing {smoothing:g}: train loss is measured against smoothed targets "
                     "(on augmented images),\nso it stays above val loss even when the model fits well",
                     fontsize=7, color="0.3", va="bottom", ha="left")
            fig.tight_layout(rect=(0, 0.08, 1, 1))
        else:
            fig.tight_layout()
        figures[fname] = fig
    return figures


def plot_training_curves(
    metrics_csv: str | Path, out_dir: str | Path, *, run_name: str | None = None,
    label_smoothing: float | None = None, metric: str = "acc1",
) -> list[Path]:
    """Write ``loss.png``, ``accuracy.png`` (a detector: ``map.png``; a segmenter: ``miou.png``) and
    ``lr.png``; returns their paths.

    See :func:`training_curve_figures` for what they show and the defaults of the keywords.
    """
    plt = _pyplot()
    out_dir = Path(out_dir)
    written = []
    figures = training_curve_figures(metrics_csv, run_name=run_name, label_smoothing=label_smoothing, metric=metric)
    for fname, fig in figures.items():
        fig.savefig(out_dir / fname)
        plt.close(fig)
        written.append(out_dir / fname)
    return written


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str], path: str | Path, title: str = "") -> Path:
    """A confusion-matrix heat map with counts (rows: true class, columns: predicted)."""
    plt = _pyplot()
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * n + 2), max(3.5, 0.45 * n + 1.5)), dpi=100)
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), class_names)
        peak = max(max(r) for r in matrix) or 1
        for i in range(n):
            for j in range(n):
                if matrix[i][j]:
                    ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=7,
                            color="white" if matrix[i][j] > peak / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
