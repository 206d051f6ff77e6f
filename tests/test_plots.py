"""Training-curve PNGs: whole-number epoch ticks, the run's name, the kept (best) epoch marked, and a note
on the loss plot when label smoothing keeps the train loss above the val loss."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mobilenets.engine.plots import best_epoch, plot_training_curves, read_metrics, training_curve_figures

FIELDS = ("epoch", "lr", "train_loss", "val_loss", "val_acc1", "ema_val_loss", "ema_val_acc1")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


ROWS = [  # best kept weights: epoch 2's EMA (80.0), which a later equal raw score does not replace
    (1, 0.01, 1.9, 1.2, 50.0, 1.3, 40.0),
    (2, 0.008, 1.5, 0.9, 70.0, 0.8, 80.0),
    (3, 0.002, 1.4, 0.85, 80.0, 0.9, 75.0),
]


def _run(tmp_path: Path, smoothing: float | None) -> Path:
    run = tmp_path / "my_run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        writer.writerows(ROWS)
    if smoothing is not None:
        (run / "config.yaml").write_text(f"aug: {{label_smoothing: {smoothing}}}\n")
    return run


def test_best_epoch_follows_the_training_rule(tmp_path: Path) -> None:
    rows = read_metrics(_run(tmp_path, None) / "metrics.csv")
    assert best_epoch(rows) == (2, 80.0, "ema")
    tie = [{"epoch": 1.0, "val_acc1": 60.0, "ema_val_acc1": 60.0}]
    assert best_epoch(tie) == (1, 60.0, "model")  # raw wins a tie, as in engine.train
    assert best_epoch([{"epoch": 1.0, "val_acc1": None}]) is None


def test_figures_have_integer_ticks_run_name_and_best_epoch(tmp_path: Path) -> None:
    run = _run(tmp_path, 0.1)
    figures = training_curve_figures(run / "metrics.csv")
    assert set(figures) == {"loss.png", "accuracy.png", "lr.png"}
    for name, fig in figures.items():
        ax = fig.axes[0]
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
        assert "my_run" in ax.get_title(), name
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("best epoch 2" in t and "EMA" in t for t in legend), (name, legend)
        assert any(list(line.get_xdata()) == [2, 2] for line in ax.get_lines()), name  # the vertical marker
    notes = [t.get_text() for t in figures["loss.png"].texts]
    assert any("label smoothing 0.1" in t and "above val loss" in t for t in notes)
    assert not figures["accuracy.png"].texts


def test_one_epoch_run_still_gets_an_integer_tick(tmp_path: Path) -> None:
    run = tmp_path / "one"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([FIELDS, ROWS[0]])
    ax = training_curve_figures(run / "metrics.csv")["accuracy.png"].axes[0]
    lo, hi = ax.get_xlim()
    assert [t for t in ax.get_xticks() if lo <= t <= hi] == [1.0]


@pytest.mark.parametrize("smoothing", [None, 0.0])
def test_no_note_without_smoothing_and_files_written(tmp_path: Path, smoothing: float | None) -> None:
    run = _run(tmp_path, smoothing)
    assert not training_curve_figures(run / "metrics.csv")["loss.png"].texts
    written = plot_training_curves(run / "metrics.csv", run, run_name="named")
    assert [p.name for p in written] == ["loss.png", "accuracy.png", "lr.png"] and all(p.is_file() for p in written)
    explicit = training_curve_figures(run / "metrics.csv", run_name="named", label_smoothing=0.2)
    assert explicit["lr.png"].axes[0].get_title().startswith("named")
    assert any("label smoothing 0.2" in t.get_text() for t in explicit["loss.png"].texts)
