"""The timing loop every benchmark row comes from, the row itself and its table.

Shared by ``bench`` (:mod:`mobilenets.deploy.bench`), ``best`` and the latency tables of ``adapt``
(:mod:`mobilenets.analysis.lut`), so their numbers are comparable: a warm-up (which also absorbs lazy
compilation and allocator growth), then calls until both a minimum count and a minimum time are reached.
Memory is read from ``/proc/self/status``: the peak resident set while a backend is built and run.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..tables import render_table

__all__ = ["BenchResult", "bench_runner", "build_and_time", "format_results", "set_times", "time_callable"]

Runner = Callable[[torch.Tensor], Any]
REDUCED_PRECISIONS = ("fp16", "bf16")
"""Float precisions below fp32 that a backend may run; they carry a top-1 check."""

def _read_status(field_name: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0) so each backend's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def time_callable(
    fn: Runner, x: torch.Tensor, *, warmup: int = 5, warmup_s: float = 0.5, min_runs: int = 20,
    min_time_s: float = 2.0, max_runs: int = 10_000, max_time_s: float = 30.0,
) -> list[float]:
    """Per-call latencies in seconds, after a warm-up, until ``min_runs`` and ``min_time_s`` are both met."""
    start = time.perf_counter()
    for i in range(10_000):
        fn(x)
        if i + 1 >= warmup and time.perf_counter() - start >= warmup_s:
            break
    times: list[float] = []
    begin = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - begin
        if (len(times) >= min_runs and elapsed >= min_time_s) or len(times) >= max_runs or elapsed >= max_time_s:
            return times


@dataclass
class BenchResult:
    """One row of the benchmark: a backend at a batch size (latencies in milliseconds)."""

    model: str
    backend: str
    precision: str
    batch: int
    input_size: int
    threads: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    images_per_s: float
    peak_rss_mb: float | None
    mem_delta_mb: float | None
    build_s: float
    runs: int
    speedup_vs_eager: float | None = None
    load_avg: float | None = None
    accuracy_check: dict[str, Any] | None = None
    """Reduced float precision: top-1 of fp32 and of this backend on the weights' evaluation split."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bench_runner(name: str, backend: str, precision: str, build: Callable[[], Runner], x: torch.Tensor,
                 threads: int, **timing: Any) -> BenchResult:
    """Build a runner (timed), then time it on ``x``; memory is the peak while building and running."""
    return build_and_time(name, backend, precision, build, x, threads, **timing)[0]


def build_and_time(name: str, backend: str, precision: str, build: Callable[[], Runner], x: torch.Tensor,
                    threads: int, **timing: Any) -> tuple[BenchResult, Runner, list[float]]:
    """:func:`bench_runner`, also returning the runner and its per-call times (for further rounds)."""
    gc.collect()
    _reset_peak_rss()
    base = _read_status("VmRSS")
    t0 = time.perf_counter()
    fn = build()
    build_s = time.perf_counter() - t0
    times = time_callable(fn, x, **timing)
    peak = _read_status("VmHWM")
    res = BenchResult(
        model=name, backend=backend, precision=precision, batch=int(x.shape[0]), input_size=int(x.shape[-1]),
        threads=threads, median_ms=0.0, p90_ms=0.0, mean_ms=0.0, min_ms=0.0, images_per_s=0.0,
        peak_rss_mb=peak, mem_delta_mb=(peak - base) if peak is not None and base is not None else None,
        build_s=build_s, runs=0, load_avg=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    )
    set_times(res, times)
    return res, fn, times


def set_times(res: BenchResult, times: list[float]) -> None:
    """Fill a row's latency statistics from its per-call times (seconds)."""
    med = statistics.median(times)
    res.median_ms, res.p90_ms = 1e3 * med, 1e3 * _percentile(times, 0.9)
    res.mean_ms, res.min_ms = 1e3 * statistics.fmean(times), 1e3 * min(times)
    res.images_per_s, res.runs = res.batch / med, len(times)




def format_results(results: list[BenchResult]) -> str:
    """A Markdown table (also readable as plain text) of benchmark rows."""
    head = ("model", "backend", "precision", "batch", "median ms", "p90 ms", "images/s", "peak RSS MiB", "+MiB",
            "vs eager", "runs")
    rows = [(
        r.model, r.backend, _precision_label(r), str(r.batch), f"{r.median_ms:.3f}", f"{r.p90_ms:.3f}",
        f"{r.images_per_s:.1f}", "-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}",
        "-" if r.mem_delta_mb is None else f"{r.mem_delta_mb:.0f}",
        "-" if r.speedup_vs_eager is None else f"{r.speedup_vs_eager:.2f}x", str(r.runs),
    ) for r in results]
    return render_table(head, rows, align="l" * len(head), markdown=True)


def _precision_label(r: BenchResult) -> str:
    """A reduced precision says whether its top-1 check passed (only then may ``best`` pick it)."""
    if r.precision not in REDUCED_PRECISIONS:
        return r.precision
    check = r.accuracy_check
    if check is None:
        return f"{r.precision} (top-1 unchecked)"
    return f"{r.precision} (top-1 {'same' if check.get('top1_unchanged') else 'CHANGED'})"
