"""``mobilenets adapt BASE --budget-ms X --backend B --out DIR``: the whole job around :mod:`.netadapt`.

BASE is a trained run / weights directory, or a model name, which is first trained with the run config (the
main job's by default) into ``DIR/base``. Then NetAdapt's iterations, the long-term fine-tune with the same
recipe into ``DIR/finetune`` (a normal run directory: ``eval``, ``export``, ``quantize`` and ``bench`` take
it), and the final network re-measured whole. What lands in ``DIR``:

* ``model.yaml``: the adapted architecture as a table file (``create_model("DIR/model.yaml")``);
* ``adapted/``: the network after the last iteration (before the long-term fine-tune), native weights;
* ``finetune/``: the long-term fine-tuned run (``long_term="none"``: absent);
* ``adapt.json``: every iteration (proposals, predicted and measured latency, val top-1) and the result;
* ``adapt.png`` (latency vs accuracy trajectory) and ``widths.png`` (every group's width before and after).

Each stage is skipped when its output is already there, so the command printed on a kill resumes the job.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from torch import nn

from ..analysis.lut import measure_network_ms
from ..config import TrainConfig, load_config
from ..engine.train import train
from ..fileio import atomic_write_text
from ..models.mobilenet import MobileNet
from .netadapt import STATE_NAME, AdaptOptions, adapt_network
from .report import plot_adaptation
from .tables import TABLE_NAME, load_network

__all__ = ["LongTerm", "adapt", "load_base", "run_config"]

LongTerm = Literal["finetune", "retrain", "none"]


def run_config(base: str, config: str | Path | None, overrides: Sequence[str]) -> TrainConfig:
    """The training config of the job: a run directory's own ``config.yaml``, else ``config`` (default: the
    main job's values), then ``overrides``."""
    saved = Path(base) / "config.yaml"
    if config is None and saved.is_file():
        cfg = load_config(TrainConfig, saved, overrides)
        return dataclasses.replace(cfg, resume=False, output_dir=None)
    return load_config(TrainConfig, config, overrides)


def load_base(base: str, cfg: TrainConfig, out: Path, log: Callable[[str], None]) -> tuple[MobileNet, dict[str, Any]]:
    """The trained base network: loaded from a weights directory, or trained first from a model name."""
    from ..deploy.export import load_model
    from ..models import list_models

    path = Path(base)
    if path.is_dir():
        model = load_model(path)
        return model, {"source": str(path), "model": getattr(model, "model_name", None)}  # type: ignore[return-value]
    if base not in list_models():
        raise FileNotFoundError(f"{base} is neither a weights / run directory nor a model name (see `mobilenets list`)")
    run_dir = out / "base"
    if not (run_dir / "summary.json").is_file():
        log(f"training the base {base} first into {run_dir} (the run config's recipe)")
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        model_cfg = dataclasses.replace(cfg.model, name=base)
        train(dataclasses.replace(cfg, model=model_cfg, output_dir=str(run_dir), resume=resume))
    summary = json.loads((run_dir / "summary.json").read_text())
    return load_model(run_dir), {"source": str(run_dir), "model": base, "test_acc1": summary.get("test_acc1")}  # type: ignore[return-value]


def _long_term(cfg: TrainConfig, out: Path, mode: LongTerm, log: Callable[[str], None]) -> dict[str, Any] | None:
    if mode == "none":
        return None
    run_dir = out / "finetune"
    if (run_dir / "summary.json").is_file():
        return json.loads((run_dir / "summary.json").read_text())
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    log(f"long-term {'fine-tune' if mode == 'finetune' else 'retraining from scratch'} into {run_dir} ...")
    model_cfg = dataclasses.replace(cfg.model, name=str(out / TABLE_NAME), kwargs={},
                                    pretrained=str(out / "adapted") if mode == "finetune" else None)
    return train(dataclasses.replace(cfg, model=model_cfg, output_dir=str(run_dir), resume=resume))


def adapt(base: str, opts: AdaptOptions, *, out: str | Path, config: str | Path | None = None,
          overrides: Sequence[str] = (), long_term: LongTerm = "finetune",
          log: Callable[[str], None] = print, stop_after: int | None = None) -> dict[str, Any]:
    """The whole job (see the module docstring); returns the final ``adapt.json`` record."""
    if long_term not in ("finetune", "retrain", "none"):
        raise ValueError(f"long_term={long_term!r} invalid; expected finetune, retrain or none")
    out = Path(out)
    cfg = run_config(base, config, overrides)
    model, info = load_base(base, cfg, out, log)
    if not isinstance(model, MobileNet):
        raise ValueError(f"{base} is a {type(model).__name__}; adaptation takes a MobileNet classifier")
    record = adapt_network(model, opts, cfg, out, base_info=info, log=log, stop_after=stop_after)
    if not record["done"]:
        return record
    last = record["iterations"][-1]
    final_dir = out / last["network"]
    for name in (TABLE_NAME, "config.json", "model.safetensors"):
        target = out / (TABLE_NAME if name == TABLE_NAME else f"adapted/{name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final_dir / name, target)
    summary = _long_term(cfg, out, long_term, log)
    final = _final(record, opts, out, summary, long_term, log)
    record["result"] = final
    atomic_write_text(out / STATE_NAME, json.dumps(record, indent=2))
    try:
        plot_adaptation(record, out)
    except Exception as exc:  # a figure is a convenience; never lose a finished adaptation over it
        log(f"warning: could not draw the figures ({exc})")
    return record


def _final(record: dict[str, Any], opts: AdaptOptions, out: Path, summary: dict[str, Any] | None,
           long_term: LongTerm, log: Callable[[str], None]) -> dict[str, Any]:
    """Re-measure the final network whole and gather the result."""
    budget = float(record["budget_ms"])
    from ..cost import profile

    weights = out / "finetune" if summary is not None else out / "adapted"
    model: nn.Module = load_network(weights)
    measured = measure_network_ms(model, opts.input_size, opts.backend, threads=opts.threads, batch=opts.batch,
                                  statistic=opts.statistic)
    # The typical call beside the chosen statistic: on a quiet device the two agree; on a shared one they do not.
    other = "median" if opts.statistic == "min" else "min"
    also = measure_network_ms(model, opts.input_size, opts.backend, threads=opts.threads, batch=opts.batch,
                              statistic=other)
    last = record["iterations"][-1]
    prof = profile(model, (int(model.in_chans), opts.input_size, opts.input_size))
    final = {"table": str(out / TABLE_NAME), "weights": str(weights), "measured_ms": measured,
             "predicted_ms": last["predicted_ms"], "prediction_error": (last["predicted_ms"] - measured) / measured,
             "budget_ms": budget, "meets_budget": measured <= budget, "statistic": opts.statistic,
             f"measured_{other}_ms": also, "params": prof.params,
             "macs": prof.macs, "val_acc1_short_term": last["val_acc1"], "long_term": long_term}
    if summary is not None:
        final.update(test_acc1=summary.get("test_acc1"), best_val_acc1=summary.get("best_val_acc1"))
    log(f"adapted: {measured:.3f} ms measured ({opts.statistic}; {other} {also:.3f}) on {opts.backend} (budget {budget:.3f} ms, predicted "
        f"{last['predicted_ms']:.3f}, {100 * final['prediction_error']:+.1f}%), {prof.params:,} params, "
        f"{prof.macs / 1e6:.1f} M MACs" + (f", test top-1 {summary['test_acc1']:.2f}" if summary else "")
        + f"\n  table {out / TABLE_NAME}; weights {weights}")
    return final
