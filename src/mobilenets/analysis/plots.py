"""Training-curve plots (PNG) drawn from a run's ``metrics.csv``, with a headless matplotlib backend."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["plot_confusion_matrix", "plot_training_curves", "read_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, float | None]]:
    """Rows of a run's ``metrics.csv`` with numbers parsed (empty cells become ``None``)."""
    with open(path, newline="") as fh:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(fh)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(metrics_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``loss.png``, ``accuracy.png`` and ``lr.png``; returns their paths."""
    plt = _pyplot()
    rows = read_metrics(metrics_csv)
    out_dir = Path(out_dir)
    epochs = [r["epoch"] for r in rows]
    panels = {
        "loss.png": ("loss", [("train_loss", "train"), ("val_loss", "val"), ("ema_val_loss", "val (EMA)")]),
        "accuracy.png": ("top-1 accuracy (%)", [("val_acc1", "val"), ("ema_val_acc1", "val (EMA)")]),
        "lr.png": ("learning rate", [("lr", "lr (end of epoch)")]),
    }
    written = []
    for name, (ylabel, series) in panels.items():
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for key, label in series:
            pts = [(e, r[key]) for e, r in zip(epochs, rows) if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=2.5, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if name == "lr.png":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name)
        plt.close(fig)
        written.append(out_dir / name)
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
