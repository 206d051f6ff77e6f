"""One static report (HTML + a Markdown twin) of experiments or runs: the V3 CIFAR-10 study's tables, V1's tables, plots.

Why one self-contained file: a report is shared by mail or opened on an air-gapped machine, so every image
is embedded as a base64 PNG and there is no external CSS or JavaScript (no script at all). The Markdown
twin carries the same tables and links the same figures, written as PNG files beside it.

Contents: the V3 CIFAR-10 study's results table (params, MACs, top-1, latency eager/best, training time, ratios to the
ResNet-50 baseline) next to the V3 CIFAR-10 study's own claims; the SE / h-swish ablation next to the V3 CIFAR-10 study's; the V1
paper's width-multiplier, resolution-multiplier and depthwise-vs-full-convolution tables with the paper's
ImageNet MACs/params beside ours (computed for the same ImageNet geometry, and measured on the user's data);
accuracy against MACs and against latency with the Pareto front; training curves; per-block MACs, params and
latency of one chosen model; and that model's architecture diagram.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .experiment import load_results
from .plots import read_metrics

__all__ = [
    "PAPER_V1_CONV",
    "PAPER_V1_RESOLUTION",
    "PAPER_V1_WIDTH",
    "STUDY_ABLATION_CLAIMS",
    "STUDY_CLAIMS",
    "TABLE_IDS",
    "V1_IMAGENET_COST",
    "Figure",
    "Report",
    "Table",
    "build_report",
    "write_report",
]

# V1 paper (Howard et al. 2017), ImageNet 224: Table 6 (width α), Table 7 (resolution), Table 4 (conv vs separable).
#: (α, MACs M, params M, top-1)
PAPER_V1_WIDTH: tuple[tuple[float, float, float, float], ...] = (
    (1.0, 569, 4.2, 70.6), (0.75, 325, 2.6, 68.4), (0.5, 149, 1.3, 63.7), (0.25, 41, 0.5, 50.6),
)
#: (resolution, MACs M, top-1), α = 1
PAPER_V1_RESOLUTION: tuple[tuple[int, float, float], ...] = ((224, 569, 70.6), (192, 418, 69.1), (160, 290, 67.2), (128, 186, 64.4))
#: name -> (params M, MACs M, top-1)
PAPER_V1_CONV: dict[str, tuple[float, float, float]] = {"Conv MobileNet": (29.3, 4866, 71.7), "MobileNet": (4.2, 569, 70.6)}
# The V3 CIFAR-10 study (CIFAR-10): model -> (params M, "FLOPs" M, top-1, latency ms); ablation (SE, h-swish) -> (params M, top-1).
STUDY_CLAIMS: dict[str, tuple[float, float, float, float]] = {
    "mobilenet_v3_small": (1.52, 58.2, 91.3, 5.89), "mobilenet_v3_large": (4.21, 217.8, 93.7, 12.4),
    "resnet50": (25.6, 4089.0, 94.1, 24.6),
}
STUDY_ABLATION_CLAIMS: dict[tuple[bool, bool], tuple[float, float]] = {
    (False, False): (1.45, 89.2), (True, False): (1.48, 90.8), (False, True): (1.45, 90.3), (True, True): (1.48, 91.3),
}
#: Every table a report contains, in order (tests check them all).
TABLE_IDS = ("results-table", "study-claims-table", "ablation-table", "v1-width-table", "v1-resolution-table",
             "v1-conv-table", "runs-table")
_DASH = "—"


@dataclass
class Table:
    """A titled table; cells are already formatted strings."""

    id: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    """A titled PNG figure."""

    id: str
    title: str
    png: bytes
    note: str = ""


@dataclass
class Report:
    """Everything a report shows; rendered by :meth:`html` and :meth:`markdown`."""

    title: str
    intro: list[str]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def html(self) -> str:
        """A self-contained HTML document: inline CSS, images as data URIs, no script."""
        parts = [
            "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(self.title)}</title>", f"<style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        parts += [f"<p>{html.escape(p)}</p>" for p in self.intro]
        for t in self.tables:
            parts.append(f'<section><h2>{html.escape(t.title)}</h2><table id="{t.id}"><thead><tr>')
            parts += [f"<th>{html.escape(h)}</th>" for h in t.headers]
            parts.append("</tr></thead><tbody>")
            for row in t.rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
            parts.append("</tbody></table>")
            if t.note:
                parts.append(f'<p class="note">{html.escape(t.note)}</p>')
            parts.append("</section>")
        for f in self.figures:
            data = base64.b64encode(f.png).decode("ascii")
            parts.append(f"<section><h2>{html.escape(f.title)}</h2><figure>"
                         f'<img id="{f.id}" alt="{html.escape(f.title)}" src="data:image/png;base64,{data}">')
            if f.note:
                parts.append(f"<figcaption>{html.escape(f.note)}</figcaption>")
            parts.append("</figure></section>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def markdown(self, image_dir: Path, rel_to: Path) -> str:
        """Markdown with the same tables; figures are written as PNGs into ``image_dir`` and linked."""
        image_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"# {self.title}", "", *[f"{p}\n" for p in self.intro]]
        for t in self.tables:
            lines += [f"## {t.title}", "", "| " + " | ".join(_md(h) for h in t.headers) + " |",
                      "|" + "|".join("---" for _ in t.headers) + "|"]
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in t.rows]
            lines += ["", t.note, ""] if t.note else [""]
        for f in self.figures:
            path = image_dir / f"{f.id}.png"
            path.write_bytes(f.png)
            rel = Path(_relpath(path, rel_to)).as_posix()
            lines += [f"## {f.title}", "", f"![{f.title}]({rel})", ""]
            if f.note:
                lines += [f.note, ""]
        return "\n".join(lines)


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #ccc;"
    "padding:.25em .6em;text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
    "tr:nth-child(even){background:#fafafa}img{max-width:100%;height:auto;border:1px solid #eee}"
    ".note,figcaption{color:#555;font-size:.85em;max-width:60em}h2{margin-top:1.6em}"
)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


# ------------------------------------------------------------------------------------------- formatting
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


# ------------------------------------------------------------------------------------------- collection
@dataclass
class _Run:
    """An aggregated run (one name, all seeds) with its directories resolved."""

    row: dict[str, Any]
    dirs: list[Path]
    records: list[dict[str, Any]]
    experiment: str = ""

    @property
    def name(self) -> str:
        return str(self.row["name"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.row.get("kwargs") or {})


def _collect(inputs: Sequence[str | Path]) -> tuple[list[_Run], list[dict[str, Any]]]:
    runs: list[_Run] = []
    results = []
    for item in inputs:
        data = load_results(item)
        results.append(data)
        root = Path(data["root"])
        for row in data["summary"]:
            recs = [r for r in data["runs"] if r["name"] == row["name"]]
            dirs = [(root / d).resolve() for d in row["run_dirs"]]
            runs.append(_Run(dict(row), dirs, recs, str(data.get("experiment"))))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # several experiments: prefix to keep names unique
        for r in runs:
            r.row["name"] = f"{r.experiment}/{r.name}"
    if not runs:
        raise ValueError("no finished runs in " + ", ".join(map(str, inputs)))
    return runs, results


# ---------------------------------------------------------------------------------------------- tables
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

    from ..weights import create_model
    from .profile import profile

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


# --------------------------------------------------------------------------------------------- figures
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


def _curves(runs: Sequence[_Run]) -> Figure:
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in runs:
        path = r.dirs[0] / "metrics.csv"
        if not path.is_file():
            continue
        rows = read_metrics(path)
        ep = [row["epoch"] for row in rows]
        acc = [row.get("ema_val_acc1") if row.get("ema_val_acc1") is not None else row.get("val_acc1") for row in rows]
        a1.plot(ep, [row.get("train_loss") for row in rows], marker="o", ms=2, label=r.name)
        a2.plot(ep, acc, marker="o", ms=2, label=r.name)
    a1.set(xlabel="epoch", ylabel="train loss", title="training loss")
    a2.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation accuracy (EMA where used)")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    a2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return Figure("plot-curves", "Training curves", _png(fig), "First seed of every run.")


def _block_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "stem":
        return "stem"
    if parts[0] == "blocks" and len(parts) >= 3:
        return f"blocks.{parts[1]}.{parts[2]}"
    return "head"


def _layer_bars(model: Any, shape: tuple[int, int, int], name: str) -> Figure:
    from .latency import layer_latency
    from .profile import profile

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


# ---------------------------------------------------------------------------------------------- build
def _pick(runs: Sequence[_Run], name: str | None) -> _Run:
    if name is not None:
        for r in runs:
            if r.name == name or r.name.endswith(f"/{name}"):
                return r
        raise ValueError(f"--model {name!r} is not a run of this report; runs: {', '.join(r.name for r in runs)}")
    for r in runs:
        if r.row.get("model") == "mobilenet_v3_small" and not _is_ablation_variant(r):
            return r
    return runs[0]


def build_report(inputs: Sequence[str | Path], *, model: str | None = None, title: str | None = None) -> Report:
    """Collect the runs under ``inputs`` (experiment or run directories) into a :class:`Report`."""
    from ..weights import from_pretrained

    runs, results = _collect(inputs)
    names = ", ".join(str(d.get("experiment")) for d in results)
    env = results[0].get("environment") or {}
    notes = sorted({rec.get("latency_note") for r in runs for rec in r.records if rec.get("latency_note")})
    intro = [
        f"Experiments: {names}. {len(runs)} runs, {sum(len(r.records) for r in runs)} training jobs on "
        f"{', '.join(sorted({str(r.row.get('dataset')) for r in runs}))}.",
        f"Environment: torch {env.get('torch')}, Python {env.get('python')}, {env.get('platform')}, "
        f"{env.get('cpu_count')} CPUs, {env.get('threads')} threads.",
    ]
    if notes:
        intro.append("Latency backends: " + "; ".join(notes) + ".")
    errors = {k: v for d in results for k, v in (d.get("errors") or {}).items()}
    if errors:
        intro.append("Failed jobs (retried by re-running the experiment): " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    if any(d.get("finished", 0) < d.get("total", 0) for d in results):
        intro.append("Some experiments are incomplete: "
                     + ", ".join(f"{d['experiment']} {d['finished']}/{d['total']}" for d in results) + " jobs.")
    rep = Report(title or f"MobileNets report: {names}", intro)
    rep.tables = [_results_table(runs), _study_claims_table(runs), _ablation_table(runs), _v1_width_table(runs),
                  _v1_resolution_table(runs), _v1_conv_table(runs), _runs_table(runs)]
    chosen = _pick(runs, model)
    net = from_pretrained(chosen.dirs[0]).float().eval()
    shape = tuple(int(v) for v in net.pretrained_cfg["input_size"])
    rep.figures = [
        _scatter(runs, "macs", "MACs per image (M)", "plot-acc-macs", "Accuracy vs MACs"),
        _scatter(runs, "latency_best_ms", "batch-1 latency, best backend (ms)", "plot-acc-latency",
                 "Accuracy vs latency"),
        _curves(runs),
        _layer_bars(net, shape, chosen.name),
        _architecture(net, shape, chosen.name),
    ]
    return rep


def write_report(inputs: Sequence[str | Path], output: str | Path, *, model: str | None = None,
                 title: str | None = None, markdown: bool = True) -> list[Path]:
    """Write ``output`` (HTML) and, with ``markdown``, its twin ``<output stem>.md`` plus ``<stem>_files/``."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rep = build_report(inputs, model=model, title=title)
    output.write_text(rep.html(), encoding="utf-8")
    written = [output]
    if markdown:
        md = output.with_suffix(".md")
        md.write_text(rep.markdown(output.parent / f"{output.stem}_files", md.parent), encoding="utf-8")
        written.append(md)
    return written
