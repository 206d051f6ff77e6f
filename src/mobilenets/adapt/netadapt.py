"""NetAdapt (Yang et al. 2018): shrink a trained MobileNet, step by step, until it meets a latency budget
measured on the runtime it will ship on.

Why measured and not counted: MACs are a poor proxy for latency on real runtimes (depthwise convs are
memory-bound, squeeze-excite adds small kernels with launch cost, a runtime's fusion changes what costs
what), so every decision here is made on latencies this machine measured through the chosen backend:

1. **Lookup table** (:mod:`mobilenets.analysis.lut`): every distinct block is exported alone through the
   backend and timed once, cached on disk by backend, runtime version, threads, batch and CPU. A network's
   predicted latency is the sum of its blocks plus one constant, measured as (whole base network) - (sum
   of its blocks), then re-fitted after each iteration as the mean of (whole - sum) over every network
   measured so far (the number of blocks never changes, but what joining them costs drifts as they narrow).
2. **Iterations**: iteration ``i`` of ``K`` asks for predicted latency ``L0 * (budget / L0) ** (i / K)``
   (a geometric schedule reaching the budget at ``K``). Every channel group, kernel and squeeze-excite
   proposes its simplest change that meets the target (:mod:`.proposals`), keeps its highest-norm filters
   (:mod:`.groups`), is fine-tuned for a few steps on the training split and scored on val
   (:mod:`.finetune`); the best val top-1 (then the lower val loss) is kept. Each kept network is measured
   whole, so predicted vs measured is on record for every one; if the last one measures over the budget,
   further iterations aim lower until it does not (at most :data:`EXTRA_ITERATIONS`).
3. **Long-term fine-tune**: the normal training recipe, through :func:`mobilenets.engine.train.train`,
   starting from the adapted weights (or from scratch with ``long_term="retrain"``).

Everything is resumable: each iteration's network (table file + native weights) and ``adapt.json`` are
written atomically before the next begins, and a rerun of the same command continues after the last one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..analysis.lut import STATISTICS, LatencyTable, arch_parts, measure_network_ms, network_parts
from ..config import TrainConfig
from ..engine.progress import Progress, format_duration
from ..fileio import atomic_write_text
from ..models.mobilenet import ArchSpec, MobileNet
from .finetune import ProposalTrainer
from .groups import channel_groups, check_adaptable, prune
from .proposals import Proposal, make_proposals, smallest_arch
from .tables import load_network, save_network

__all__ = ["EXTRA_ITERATIONS", "AdaptOptions", "BudgetError", "adapt_network"]

#: Iterations after the schedule's last, aiming lower, when the last kept network measures over the budget.
EXTRA_ITERATIONS = 3
STATE_NAME = "adapt.json"


class BudgetError(ValueError):
    """A budget the search cannot reach (or that the base network already meets)."""


@dataclass(frozen=True)
class AdaptOptions:
    """What an adaptation is asked for; a resumed run must be asked for the same (see :meth:`key`)."""

    budget_ms: float | None = None
    """The budget in milliseconds; or ``budget_fraction`` of the base network's measured latency."""
    budget_fraction: float | None = None
    backend: str = "onnxruntime"
    threads: int = 2
    batch: int = 1
    input_size: int = 32
    iterations: int = 6
    finetune_steps: int = 30
    lr_scale: float = 0.05
    kernels: bool = True
    se: bool = True
    seed: int = 0
    lut_dir: str | None = None
    statistic: str = "min"
    """How per-call times become a latency (``analysis.lut.STATISTICS``): the least call, or the median."""

    def __post_init__(self) -> None:
        if (self.budget_ms is None) == (self.budget_fraction is None):
            raise ValueError("give exactly one of --budget-ms and --budget-fraction")
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise ValueError(f"--budget-ms {self.budget_ms} invalid; expected a positive number of milliseconds")
        if self.budget_fraction is not None and not 0 < self.budget_fraction < 1:
            raise ValueError(f"--budget-fraction {self.budget_fraction} invalid; expected a number in (0, 1)")
        if self.statistic not in STATISTICS:
            raise ValueError(f"--statistic {self.statistic!r} invalid; expected one of {', '.join(STATISTICS)}")
        for name, low in (("iterations", 1), ("finetune_steps", 0), ("threads", 1), ("batch", 1), ("input_size", 8)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)} invalid; expected an integer >= {low}")

    def key(self) -> dict[str, Any]:
        """The fields a resumed run must share with the one it continues (the LUT location may differ)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "lut_dir"}


def _schedule(start_ms: float, budget_ms: float, k: int, i: int) -> float:
    return start_ms * (budget_ms / start_ms) ** (min(i, k) / k)


class _Run:
    """One adaptation's state: the LUT, the constant, the trainer and the record written to ``adapt.json``."""

    def __init__(self, base: MobileNet, opts: AdaptOptions, cfg: TrainConfig, out: Path, log: Callable[[str], None]):
        self.base, self.opts, self.out, self.log = base, opts, out, log
        self.lut = LatencyTable(opts.backend, threads=opts.threads, batch=opts.batch,
                                cache_dir=Path(opts.lut_dir) if opts.lut_dir else None, log=log,
                                statistic=opts.statistic)
        self.trainer = ProposalTrainer(cfg, steps=opts.finetune_steps, lr_scale=opts.lr_scale, seed=opts.seed)
        self.constant_ms = 0.0
        self.budget_ms = opts.budget_ms or 0.0

    def predict(self, arch: ArchSpec) -> float:
        parts = arch_parts(arch, in_chans=self.base.in_chans, num_classes=self.base.num_classes,
                           input_size=self.opts.input_size)
        return self.lut.predict(parts, self.constant_ms)

    def measure(self, model: nn.Module) -> float:
        return measure_network_ms(model.cpu().eval(), self.opts.input_size, self.opts.backend,
                                  threads=self.opts.threads, batch=self.opts.batch, statistic=self.opts.statistic)

    def write(self, record: dict[str, Any]) -> None:
        atomic_write_text(self.out / STATE_NAME, json.dumps(record, indent=2))


def _fitted_constant(record: dict[str, Any]) -> float:
    """The constant as fitted so far: the mean residual (measured - sum of parts) of every measured network,
    the base's alone before the first iteration."""
    residuals = record.get("residuals_ms") or [record["constant_ms"]]
    return sum(residuals) / len(residuals)


def _widths(arch: ArchSpec) -> dict[str, int]:
    return {g.name: g.width for g in channel_groups(arch)}


def _start(run: _Run, base: MobileNet, base_info: dict[str, Any]) -> dict[str, Any]:
    """Measure the base, calibrate the constant, check the budget is reachable: the record's header."""
    opts, log = run.opts, run.log
    parts_sum = run.lut.predict(network_parts(base, opts.input_size))
    log(f"lookup table: {run.lut.path} ({run.lut.measured} blocks measured, {run.lut.reused} reused)")
    measured = run.measure(base)
    run.constant_ms = measured - parts_sum
    if opts.budget_fraction is not None:
        run.budget_ms = opts.budget_fraction * measured
    smallest = smallest_arch(base.arch, kernels=opts.kernels, se=opts.se)
    min_ms = run.predict(smallest)
    log(f"base: {measured:.3f} ms measured on {opts.backend} ({opts.threads} threads, batch {opts.batch}, "
        f"{opts.input_size} px); blocks sum to {parts_sum:.3f} ms, constant {run.constant_ms:+.3f} ms; "
        f"smallest reachable network {min_ms:.3f} ms")
    budget = run.budget_ms
    if budget < min_ms:
        raise BudgetError(f"the budget {budget:.3f} ms is below what the smallest network this search can reach "
                          f"runs in: {min_ms:.3f} ms predicted on {opts.backend} (every group at 8 channels, 3x3 "
                          "kernels, no squeeze-excite); give a budget of at least that")
    if budget >= measured:
        raise BudgetError(f"the budget {budget:.3f} ms is at or above the base network's measured "
                          f"{measured:.3f} ms on {opts.backend}: there is nothing to adapt")
    val = run.trainer.validate(base)
    return {"format": "mobilenets-adapt", "version": 1, "options": opts.key(), "base": base_info,
            "budget_ms": budget, "cpu": run.lut.header["cpu"], "lut": str(run.lut.path), "constant_ms": run.constant_ms,
            "base_measured_ms": measured, "base_predicted_ms": parts_sum + run.constant_ms,
            "base_val_acc1": val["acc1"], "smallest_predicted_ms": min_ms, "widths_before": _widths(base.arch),
            "iterations": [], "done": False}


def _score(run: _Run, current: MobileNet, proposal: Proposal, key: tuple[int, ...]) -> tuple[MobileNet, dict[str, float]]:
    """The proposal fine-tuned, or as pruned when that scores better on val: a few steps on a narrowed network
    were seen to lower val top-1 (98.9 -> 96.1 pruned -> 93.9 after 20 steps at a quarter of the recipe's rate)."""
    pruned = prune(current, proposal.arch)
    before = run.trainer.validate(pruned)
    tuned = run.trainer.finetune(copy.deepcopy(pruned), key=key)
    after = run.trainer.validate(tuned)
    return (tuned, after) if (after["acc1"], -after["loss"]) >= (before["acc1"], -before["loss"]) else (pruned, before)


def _iteration(run: _Run, record: dict[str, Any], current: MobileNet, index: int, target_ms: float,
               eta_after: float) -> MobileNet:
    """One NetAdapt iteration: propose, fine-tune and score each proposal, keep the best, save it."""
    opts = run.opts
    proposals = make_proposals(current.arch, target_ms, run.predict, kernels=opts.kernels, se=opts.se)
    if not proposals:
        raise BudgetError(f"iteration {index}: no change of the current network meets {target_ms:.3f} ms by prediction; "
                          f"the budget {run.budget_ms:.3f} ms is out of this search's reach from here")
    label = f"iteration {index}"
    run.log(f"{label}: target {target_ms:.3f} ms predicted, {len(proposals)} proposals, "
            f"{opts.finetune_steps} fine-tune steps each")
    progress = Progress(len(proposals), label, remaining_after=eta_after)
    scored, best = [], None
    for j, p in enumerate(proposals):
        model, val = _score(run, current, p, (index, j))
        scored.append({"name": p.name, "change": p.change, "predicted_ms": p.predicted_ms, "val_acc1": val["acc1"],
                       "val_loss": val["loss"]})
        if best is None or (val["acc1"], -val["loss"]) > (best[1]["acc1"], -best[1]["loss"]):
            best = (model, val, p)
        progress.update(1, val=val["acc1"])
        if not progress.live:  # a log file: one line per proposal, with the iteration's ETA
            eta = progress.elapsed / (j + 1) * (len(proposals) - j - 1) + eta_after
            run.log(f"  [{j + 1}/{len(proposals)}] {p.name} ({p.change}): predicted {p.predicted_ms:.3f} ms, "
                    f"val top-1 {val['acc1']:.2f} (loss {val['loss']:.3f}), ETA {format_duration(eta)}")
    assert best is not None
    model, val, chosen = best
    measured = run.measure(model)
    progress.close(f"{label}: kept {chosen.name} ({chosen.change}): predicted {chosen.predicted_ms:.3f} ms, measured "
                   f"{measured:.3f} ms, val top-1 {val['acc1']:.2f} ({format_duration(progress.elapsed)})")
    # The constant, re-fitted: the mean of (measured - sum of parts) over every network measured so far.
    # Why: on the machine this was written on, the residual moved from -0.004 ms at full width to -0.10 to
    # -0.18 ms at half width and below, so the base's alone over-predicts the narrowed networks; the
    # prediction recorded for this network was made before its measurement joined the fit.
    residuals = record.setdefault("residuals_ms", [record["constant_ms"]])
    residuals.append(measured - (chosen.predicted_ms - run.constant_ms))
    run.constant_ms = _fitted_constant(record)
    save_network(model, run.out / "iterations" / f"{index:02d}", run.base)
    record["iterations"].append({
        "index": index, "target_ms": target_ms, "proposals": scored, "chosen": chosen.name, "change": chosen.change,
        "predicted_ms": chosen.predicted_ms, "measured_ms": measured,
        "prediction_error": (chosen.predicted_ms - measured) / measured, "val_acc1": val["acc1"],
        "val_loss": val["loss"], "widths": _widths(model.arch), "seconds": progress.elapsed,
        "network": str(Path("iterations") / f"{index:02d}"), "constant_ms_after": run.constant_ms,
    })
    run.write(record)
    return model


def _resume(run: _Run, record: dict[str, Any]) -> tuple[MobileNet, int]:
    if record.get("options") != run.opts.key():
        theirs, mine = record.get("options") or {}, run.opts.key()
        diff = next((k for k in mine if theirs.get(k) != mine[k]), "?")
        raise ValueError(f"{run.out / STATE_NAME} was made with {diff}={theirs.get(diff)!r}, not {mine.get(diff)!r}: "
                         "use another --out, or the same options to continue it")
    run.constant_ms = _fitted_constant(record)
    run.budget_ms = float(record["budget_ms"])
    its = record["iterations"]
    if not its:
        return run.base, 0
    last = its[-1]
    run.log(f"resuming after iteration {last['index']} ({len(its)} kept, {run.out / STATE_NAME})")
    return load_network(run.out / last["network"]), int(last["index"])


def adapt_network(base: MobileNet, opts: AdaptOptions, cfg: TrainConfig, out: str | Path, *,
                  base_info: dict[str, Any] | None = None, log: Callable[[str], None] = print,
                  stop_after: int | None = None) -> dict[str, Any]:
    """Run (or continue) NetAdapt on a trained ``base`` into ``out``; returns the ``adapt.json`` record.

    ``cfg`` is the training config whose data, augmentation and optimizer the short-term fine-tunes use.
    ``stop_after`` ends the run after that iteration (as a kill between iterations would).
    """
    check_adaptable(base.arch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(base.eval(), opts, cfg, out, log)
    state = out / STATE_NAME
    if state.is_file():
        record = json.loads(state.read_text())
        current, done = _resume(run, record)
    else:
        record, current, done = _start(run, base, base_info or {}), base, 0
        run.write(record)
    start_ms, budget = float(record["base_measured_ms"]), run.budget_ms
    index = done
    t0 = time.perf_counter()
    while not record["done"]:
        index += 1
        its = record["iterations"]
        if index > opts.iterations and its and its[-1]["measured_ms"] <= budget:
            break
        if index > opts.iterations + EXTRA_ITERATIONS:
            last = its[-1]["measured_ms"] if its else start_ms
            raise BudgetError(f"after {index - 1} iterations the network measures {last:.3f} ms, still over the "
                              f"{budget:.3f} ms budget on {opts.backend}")
        target = _schedule(start_ms, budget, opts.iterations, index)
        if index > opts.iterations:  # predicted met the budget but measured did not: aim lower by their ratio
            last = its[-1]
            target = last["predicted_ms"] * budget / last["measured_ms"] * 0.98
        per_it = (time.perf_counter() - t0) / max(index - done - 1, 1) if index - done > 1 else 0.0
        try:
            current = _iteration(run, record, current, index, target, per_it * max(opts.iterations - index, 0))
        except BudgetError as exc:
            if index <= opts.iterations:
                raise
            # Predicted met the budget, the measurement did not, and nothing smaller is in reach: keep the
            # network and say so (adapt.json's result records meets_budget: false) rather than lose the run.
            run.log(f"warning: {exc}; keeping the last network, measured {its[-1]['measured_ms']:.3f} ms")
            break
        if stop_after is not None and index >= stop_after:
            return record
    record["done"] = True
    run.write(record)
    return record
