"""NetAdapt against the uniform width multiplier at the same measured latency, trained with the same recipe.

    python benchmarks/adapt_vs_width.py runs/adapt --seeds 0,1,2 --out runs/adapt-compare

Reads an adaptation (``mobilenets adapt ... --out runs/adapt``): its budget, backend, threads, batch and input
size. Then, in one process:

1. measures MobileNetV3-Small at width multipliers 1.0, 0.95, ... (same backend, threads, batch and input size,
   the whole network through the backend as ``bench`` runs it) and takes the widest one whose measured latency
   is within the budget;
2. measures the adapted network (``runs/adapt/model.yaml``) the same way, in the same run;
3. trains both architectures from scratch with the run config's recipe (the main job's by default) once per seed, and reports
   test top-1 as mean +- std (the test split is used only here, never to choose).

The NetAdapt paper's claim is that the adapted network is more accurate at equal latency; this prints whichever
way it comes out, with the latencies measured beside it. Results land in ``--out/compare.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

from mobilenets.analysis.lut import measure_network_ms
from mobilenets.config import TrainConfig, load_config
from mobilenets.deploy.best import cpu_description
from mobilenets.engine.train import train
from mobilenets.weights import create_model


def _latency(name: str, kwargs: dict, rec: dict) -> float:
    opts = rec["options"]
    model = create_model(name, num_classes=10, in_chans=1, **kwargs).eval()
    # As the adaptation measured its networks: the same statistic (and measure_network_ms's spread rounds).
    return measure_network_ms(model, opts["input_size"], opts["backend"], threads=opts["threads"], batch=opts["batch"],
                              statistic=opts.get("statistic", "min"))


def _train(cfg, name: str, kwargs: dict, seed: int, out: Path) -> float:
    run = out / f"{Path(name).stem if name.endswith('.yaml') else name}-{kwargs.get('width_mult', 'adapted')}-s{seed}"
    if not (run / "summary.json").is_file():
        model = dataclasses.replace(cfg.model, name=name, kwargs=kwargs, pretrained=None)
        train(dataclasses.replace(cfg, model=model, seed=seed, output_dir=str(run),
                                  resume=(run / "checkpoints" / "last.pt").is_file()))
    return float(json.loads((run / "summary.json").read_text())["test_acc1"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("adapt_dir", help="an adaptation's --out directory")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--widths", default="1.0,0.95,0.9,0.85,0.8,0.75,0.7,0.65,0.6,0.55,0.5,0.45,0.4,0.35,0.3")
    ap.add_argument("--config", default=None, help="training recipe (default: the main job's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    adapt_dir, out = Path(args.adapt_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = json.loads((adapt_dir / "adapt.json").read_text())
    budget, opts = float(rec["budget_ms"]), rec["options"]
    base_kwargs = {"small_input": True}
    print(f"# {cpu_description()}; {opts['backend']}, {opts['threads']} threads, batch {opts['batch']}, "
          f"{opts['input_size']} px; budget {budget:.3f} ms", file=sys.stderr)
    table = str(adapt_dir / "model.yaml")
    adapted_ms = _latency(table, {}, rec)
    chosen, widths = None, {}
    for w in (float(v) for v in args.widths.split(",")):
        widths[w] = _latency("mobilenet_v3_small", {**base_kwargs, "width_mult": w}, rec)
        print(f"width {w:.2f}: {widths[w]:.3f} ms", file=sys.stderr)
        if widths[w] <= budget:
            chosen = w
            break
    if chosen is None:
        print("no width multiplier meets the budget", file=sys.stderr)
        return 1
    cfg = load_config(TrainConfig, args.config)
    seeds = [int(s) for s in args.seeds.split(",")]
    acc_adapt = [_train(cfg, table, {}, s, out) for s in seeds]
    acc_width = [_train(cfg, "mobilenet_v3_small", {**base_kwargs, "width_mult": chosen}, s, out) for s in seeds]

    def stats(v: list[float]) -> str:
        return f"{statistics.fmean(v):.2f} +- {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}"

    result = {"cpu": cpu_description(), "budget_ms": budget, "backend": opts["backend"], "threads": opts["threads"],
              "adapted_ms": adapted_ms, "width_mult": chosen, "width_ms": widths[chosen], "widths_ms": widths,
              "seeds": seeds, "adapted_test_acc1": acc_adapt, "width_test_acc1": acc_width}
    (out / "compare.json").write_text(json.dumps(result, indent=2))
    print(f"| network | measured ms | test top-1 (seeds {args.seeds}) |\n|---|---|---|\n"
          f"| NetAdapt ({table}) | {adapted_ms:.3f} | {stats(acc_adapt)} |\n"
          f"| V3-Small x{chosen:g} | {widths[chosen]:.3f} | {stats(acc_width)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
