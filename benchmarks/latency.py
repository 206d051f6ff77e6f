"""Latency of the MobileNet family on every installed backend, with the deployment ratios of issue 5.

    python benchmarks/latency.py                                   # V1, V2, V3-L, V3-S; batch 1 and 32
    python benchmarks/latency.py --models mobilenet_v3_large --batch 1 --backends eager,executorch,int8-xnnpack
    python benchmarks/latency.py --segmentation --batch 1                # LR-ASPP / DeepLabV3 at 520 and 128 px

Models are built with random weights at their default (ImageNet, 224×224) configuration: latency does
not depend on the weights' values. Every row comes from ``mobilenets bench`` (the same timing loop),
all in one process and one run, so the ratios compare numbers measured under the same conditions. The
backends are timed in turn, ``--rounds`` times (default 3) for a share of ``--min-time`` each, so a slow
phase of a shared machine slows every row instead of the one that ran during it (timed one after the
other, a single row moved by up to 1.8x between otherwise identical runs):

* best fp32 / eager: the fastest fp32 backend against plain eager fp32 of the same model and batch;
* int8 / best fp32: the fastest int8 backend against that best fp32 backend;
* fastest float / best fp32: the fastest float path with the reduced precisions (fp16 / bf16) included,
  and int8-litert / best fp32 (with its distance to the fastest int8 path).

Every table is headed by the CPU model and the extensions that decide which runtime wins (AVX-512, VNNI,
BF16, AMX): the winners and the int8 gain change with them.

Rows are appended to ``--json`` as they are measured, so an interrupted run keeps what it measured.
The 1-minute load average is recorded per row: on a shared machine other processes inflate latency
(torch's OpenMP threads are hit hardest), so a row with a load above the thread count is suspect.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from mobilenets.deploy.bench import BenchResult, format_results, run_bench
from mobilenets.deploy.best import cpu_description
from mobilenets.deploy.runtimes import default_threads

DEFAULT_MODELS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")

#: ``--segmentation``: (model, input side, create_model keywords). 520 px with VOC's 21 classes is
#: torchvision's evaluation size; 128 px with 11 classes on grey images is the digit scenes'.
SEGMENTATION = tuple(
    (name, size, kwargs)
    for name in ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
    for size, kwargs in ((520, {}), (128, {"num_classes": 11, "in_chans": 1}))
)


def runs(models: str, input_size: int | None, segmentation: bool) -> list[tuple[str, int | None, dict, str]]:
    """(model spec, input size, keywords, row label) of each benchmark run; a segmenter's label carries its
    input side, since one model is measured at two sizes."""
    if segmentation:
        return [(name, size, kw, f"{name}@{size}") for name, size, kw in SEGMENTATION]
    return [(m, input_size, {}, m) for m in models.split(",")]


def ratios(rows: list[BenchResult], model: str, batch: int) -> dict[str, object]:
    """best fp32 / eager, best int8 / best fp32, fastest float / best fp32 for one model and batch."""
    sel = [r for r in rows if r.model == model and r.batch == batch]
    eager = next((r for r in sel if r.backend == "eager"), None)
    fp32 = [r for r in sel if r.precision == "fp32"]
    int8 = [r for r in sel if r.precision == "int8"]
    reduced = [r for r in sel if r.precision in ("fp16", "bf16")]
    out: dict[str, object] = {"model": model, "batch": batch}
    if eager and fp32:
        best = min(fp32, key=lambda r: r.median_ms)
        out.update(eager_ms=eager.median_ms, best_fp32=best.backend, best_fp32_ms=best.median_ms,
                   best_fp32_over_eager=best.median_ms / eager.median_ms)
        if int8:
            best8 = min(int8, key=lambda r: r.median_ms)
            out.update(best_int8=best8.backend, best_int8_ms=best8.median_ms,
                       int8_over_best_fp32=best8.median_ms / best.median_ms)
            lite = next((r for r in int8 if r.backend == "int8-litert"), None)
            if lite:
                out.update(int8_litert_ms=lite.median_ms, int8_litert_over_best_fp32=lite.median_ms / best.median_ms,
                           int8_litert_over_best_int8=lite.median_ms / best8.median_ms)
        if reduced:
            fast = min([*fp32, *reduced], key=lambda r: r.median_ms)
            out.update(fastest_float=fast.backend, fastest_float_ms=fast.median_ms,
                       fastest_float_over_best_fp32=fast.median_ms / best.median_ms)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--backends", default="all")
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="slices of --min-time per backend, taken in turn over all backends (default: 3), so "
                             "a slow phase of a shared machine lands on every row and the ratios hold")
    parser.add_argument("--json", default=None, help="append each row (JSON lines) to this file")
    parser.add_argument("--segmentation", action="store_true",
                        help="the segmentation rows instead of --models: LR-ASPP and DeepLabV3 (V3-Large) at 520 px "
                             "(21 classes) and at the digit scenes' 128 px (11 classes, 1 channel)")
    args = parser.parse_args(argv)
    threads = args.threads or default_threads()
    batches = tuple(int(b) for b in args.batch.split(","))
    print(f"# {cpu_description()}; torch {torch.__version__}, threads {threads}, load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    rows: list[BenchResult] = []
    start = time.perf_counter()
    plan = runs(args.models, args.input_size, args.segmentation)
    for model, size, kwargs, label in plan:
        for batch in batches:
            got = run_bench(model, backends=args.backends, batches=(batch,), input_size=size, kwargs=kwargs,
                            threads=threads, min_time_s=args.min_time, strict=False, rounds=args.rounds,
                            log=lambda m: print(m, file=sys.stderr, flush=True))
            for r in got:
                r.model = label
            rows += got
            if args.json:
                with open(args.json, "a") as fh:
                    for r in got:
                        fh.write(json.dumps(r.to_dict()) + "\n")
            print(format_results(got), flush=True)
    print("\n## all rows\n")
    print(format_results(rows))
    print("\n## ratios (one run)\n")
    for model in (label for *_, label in plan):
        for batch in batches:
            r = ratios(rows, model, batch)
            if "best_fp32_over_eager" in r:
                line = (f"{model} batch {batch}: eager {r['eager_ms']:.2f} ms, best fp32 {r['best_fp32']} "
                        f"{r['best_fp32_ms']:.2f} ms = {r['best_fp32_over_eager']:.2f}x eager")
                if "int8_over_best_fp32" in r:
                    line += (f"; best int8 {r['best_int8']} {r['best_int8_ms']:.2f} ms = "
                             f"{r['int8_over_best_fp32']:.2f}x best fp32")
                if "int8_litert_ms" in r:
                    line += (f"; int8-litert {r['int8_litert_ms']:.2f} ms = {r['int8_litert_over_best_fp32']:.2f}x best "
                             f"fp32, {r['int8_litert_over_best_int8']:.2f}x best int8")
                if "fastest_float_ms" in r:
                    line += (f"; fastest float {r['fastest_float']} {r['fastest_float_ms']:.2f} ms = "
                             f"{r['fastest_float_over_best_fp32']:.2f}x best fp32")
                print(line)
    print(f"\n# {time.perf_counter() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
