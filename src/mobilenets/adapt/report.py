"""The figures of an adaptation, drawn from its ``adapt.json`` record (headless matplotlib).

* ``adapt.png``: val top-1 against latency for the base and every kept network, predicted and measured,
  with every scored proposal behind them and the budget as a line: how much accuracy each step cost;
* ``widths.png``: every channel group's width before and after, to see where NetAdapt cut.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_adaptation"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_adaptation(record: dict[str, Any], out: str | Path) -> list[Path]:
    """Draw ``adapt.png`` and ``widths.png`` into ``out``; returns their paths."""
    plt = _pyplot()
    out = Path(out)
    its = record["iterations"]
    budget = record["budget_ms"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    props = [(p["predicted_ms"], p["val_acc1"]) for it in its for p in it["proposals"]]
    if props:
        ax.scatter(*zip(*props, strict=True), s=10, c="#bbbbbb", label="proposals (predicted, after short fine-tune)")
    xs_m = [record["base_measured_ms"], *(it["measured_ms"] for it in its)]
    xs_p = [record["base_predicted_ms"], *(it["predicted_ms"] for it in its)]
    ys = [record["base_val_acc1"], *(it["val_acc1"] for it in its)]
    ax.plot(xs_m, ys, "o-", c="#1f77b4", label="kept networks, measured")
    ax.plot(xs_p, ys, "x--", c="#ff7f0e", label="kept networks, predicted")
    ax.axvline(budget, c="#d62728", lw=1, label=f"budget {budget:.3g} ms")
    result = record.get("result") or {}
    if result.get("test_acc1") is not None:
        ax.scatter([result["measured_ms"]], [result.get("best_val_acc1") or ys[-1]], marker="*", s=160, c="#2ca02c",
                   zorder=5, label="after long-term fine-tune (val)")
    ax.set_xlabel(f"latency (ms, {record['options']['backend']}, batch {record['options']['batch']})")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("NetAdapt trajectory")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    first = out / "adapt.png"
    fig.savefig(first, dpi=120)
    plt.close(fig)

    before = record["widths_before"]
    after = its[-1]["widths"] if its else before
    names = list(before)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [before[n] for n in names], 0.4, label="before", color="#9ecae1")
    ax.bar([x + 0.2 for x in xs], [after.get(n, 0) for n in names], 0.4, label="after", color="#3182bd")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("channels")
    ax.set_yscale("log", base=2)
    ax.set_title("channel widths per group")
    ax.legend()
    fig.tight_layout()
    second = out / "widths.png"
    fig.savefig(second, dpi=120)
    plt.close(fig)
    return [first, second]
