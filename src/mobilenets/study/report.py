"""One static report (HTML + a Markdown twin) of experiments or runs: the V3 CIFAR-10 study's tables, V1's tables, plots.

Contents: the V3 CIFAR-10 study's results table (params, MACs, top-1, latency eager/best, training time, ratios to the
ResNet-50 baseline) next to the V3 CIFAR-10 study's own claims; the SE / h-swish ablation next to the V3 CIFAR-10 study's; the V1
paper's width-multiplier, resolution-multiplier and depthwise-vs-full-convolution tables with the paper's
ImageNet MACs/params beside ours (computed for the same ImageNet geometry, and measured on the user's data);
accuracy against MACs and against latency with the Pareto front; training curves; per-block MACs, params and
latency of one chosen model; and that model's architecture diagram. Detection runs (``task: detect``) get their
own table (params, MACs, COCO box mAP / AP50 / AP75, latency), their curves and a test scene with one run's
predicted boxes; segmentation runs (``task: segment``) likewise (mIoU, pixel and mean accuracy, the lowest
class IoU, latency; mIoU curves; one run's predicted mask beside the ground truth); a report of classifiers
only is as it was.

Where each part lives: :mod:`.runs` (collecting the runs), :mod:`.tables` (the tables; the published
numbers in ``claims.yaml``), :mod:`.figures` (the plots), :mod:`.document` (HTML and Markdown writing).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .document import Report
from .figures import build_detection_figures, build_figures, build_segmentation_figures
from .runs import _collect, _Run
from .tables import _is_ablation_variant, build_tables

__all__ = ["build_report", "write_report"]


def _named(runs: Sequence[_Run], name: str) -> _Run | None:
    return next((r for r in runs if r.name == name or r.name.endswith(f"/{name}")), None)


def _pick(runs: Sequence[_Run], name: str | None) -> _Run:
    if name is not None:
        r = _named(runs, name)
        if r is not None:
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
    rep.tables = build_tables(runs)
    if model is not None and _named(runs, model) is None:
        _pick(runs, model)  # the one-line error listing the runs
    classify = [r for r in runs if r.task == "classify"]
    if classify:
        chosen = _pick(classify, model if model is not None and _named(classify, model) else None)
        net = from_pretrained(chosen.dirs[0]).float().eval()
        shape = tuple(int(v) for v in net.pretrained_cfg["input_size"])
        rep.figures = build_figures(classify, net, shape, chosen.name)
    for task, build in (("detect", build_detection_figures), ("segment", build_segmentation_figures)):
        mine = [r for r in runs if r.task == task]
        if not mine:
            continue
        figures, note = build(mine, (_named(mine, model) if model else None) or mine[0])
        rep.figures += figures
        if note:
            rep.intro.append(note)
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
