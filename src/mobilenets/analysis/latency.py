"""Batch-1 CPU inference latency: whole-model (eager and best available backend) and per layer.

Why its own module: the V3 CIFAR-10 study's results table reports a latency column, and MACs are a poor proxy for
it (depthwise convolutions are memory-bound, SE adds tiny kernels with launch overhead), so the
experiment grid measures it for every run. The measurement is deliberately simple and robust on a
shared machine: warm-up, then the *median* of ``runs`` timed forward passes at batch 1 (the median
ignores the spikes other processes cause; the mean would not).

"Best backend": ``mobilenets.deploy.bench.best_latency`` times every installed fp32 runtime (ONNX Runtime,
OpenVINO, ExecuTorch, channels_last PyTorch; contract: ``best_latency(model, input_shape, *, runs, warmup)
-> {"backend": str, "ms": float, "all": {backend: ms}}``). Should that module be unavailable, the best of the variants that need nothing beyond PyTorch is taken: eager NCHW,
channels_last, and BatchNorm folded into the convolutions (``mobilenets.deploy.fuse`` when present).
Which backend won is always recorded, so a report never passes an eager number off as an optimised one.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["PYTORCH_ONLY_BACKENDS", "LatencyResult", "layer_latency", "measure_latency", "missing_runtime_extras",
           "time_forward"]

#: Best-backend candidates that need nothing beyond PyTorch: when one of these wins, no runtime was compared.
PYTORCH_ONLY_BACKENDS = ("eager", "channels_last", "fused+channels_last")


@dataclass
class LatencyResult:
    """Median batch-1 latency in milliseconds, eager and the best backend found."""

    eager_ms: float
    best_ms: float
    best_backend: str
    backends: dict[str, float]
    threads: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def time_forward(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, *, runs: int = 30, warmup: int = 5) -> float:
    """Median wall time of ``fn(x)`` in milliseconds after ``warmup`` untimed calls."""
    with torch.inference_mode():
        for _ in range(max(warmup, 0)):
            fn(x)
        times = []
        for _ in range(max(runs, 1)):
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def _fused(model: nn.Module) -> nn.Module | None:
    try:
        from ..deploy.fuse import fuse_for_inference
    except ImportError:
        return None
    try:
        return fuse_for_inference(copy.deepcopy(model)).eval()
    except Exception:  # an optional speed-up: never fail a measurement over it
        return None


def _deploy_bench() -> Callable[..., dict[str, Any]] | None:
    try:
        from ..deploy import bench  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn = getattr(bench, "best_latency", None)
    return fn if callable(fn) else None


def _pytorch_variants(model: nn.Module, x: torch.Tensor, *, runs: int, warmup: int) -> dict[str, float]:
    """The fallback candidates that need nothing beyond PyTorch: channels_last, unfused and BN-folded."""
    xcl = x.contiguous(memory_format=torch.channels_last)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    out = {"channels_last": time_forward(cl, xcl, runs=runs, warmup=warmup)}
    fused = _fused(model)
    if fused is not None:
        out["fused+channels_last"] = time_forward(fused.to(memory_format=torch.channels_last), xcl, runs=runs,
                                                  warmup=warmup)
    return out


def measure_latency(
    model: nn.Module, input_shape: tuple[int, int, int], *, runs: int = 30, warmup: int = 5, best_backend: bool = True
) -> LatencyResult:
    """Batch-1 latency of ``model`` on CPU for a ``(C, H, W)`` input: eager, and the best backend available."""
    model = copy.deepcopy(model).cpu().float().eval()
    x = torch.randn(1, *input_shape)
    eager = time_forward(model, x, runs=runs, warmup=warmup)
    backends = {"eager": eager}
    note = ""
    bench = _deploy_bench() if best_backend else None
    fallback = best_backend
    if not best_backend:
        note = "eager only (best_backend disabled)"
    elif bench is None:
        note = "mobilenets.deploy.bench not available: best of eager / channels_last / BN-folded PyTorch"
    else:
        try:
            out = bench(model, tuple(input_shape), runs=runs, warmup=warmup)
            # bench's own "channels_last" is BN-folded channels_last; its timings are not measured again here
            backends.update({str(k): float(v) for k, v in out.get("all", {out["backend"]: out["ms"]}).items()})
            if out.get("failed"):
                note = "failed backends: " + "; ".join(f"{k} ({v})" for k, v in out["failed"].items())
            fallback = False
        except Exception as exc:
            note = f"deploy.bench failed ({type(exc).__name__}: {exc}); PyTorch-only backends used"
    if fallback:
        backends.update(_pytorch_variants(model, x, runs=runs, warmup=warmup))
    best = min(backends, key=lambda k: backends[k])
    return LatencyResult(eager, backends[best], best, backends, torch.get_num_threads(), note)


def missing_runtime_extras() -> list[tuple[str, str]]:
    """``(backend, pip extra)`` for each runtime the best-backend measurement tries but cannot run here.

    Why: without ONNX Runtime, OpenVINO or ExecuTorch installed, "best backend" can only be a PyTorch
    layout variant, often eager itself; the experiment output names the extra that would add a real
    runtime instead of printing the eager figure twice. Order: fastest first on the CPUs measured
    (``mobilenets.deploy.bench.BEST_ORDER``), so the first entry is the one to install.
    """
    try:
        from ..deploy.bench import BACKENDS, BEST_LATENCY_BACKENDS, BEST_ORDER
    except ImportError:
        return []
    tried = [k for k in BEST_ORDER["single"] if k in BEST_LATENCY_BACKENDS and BACKENDS[k].requires]
    out = []
    for key in tried:
        backend = BACKENDS[key]
        if not backend.available():
            out.append((key, backend.requires[0][1]))
    return out


def layer_latency(
    model: nn.Module, input_shape: tuple[int, int, int], *, runs: int = 5, warmup: int = 2
) -> dict[str, float]:
    """Median eager time per leaf module (ms, batch 1) over ``runs`` passes, from forward pre/post hooks.

    The median, not the mean, because on a shared CPU one preempted pass would otherwise dominate a
    layer's bar. Hook overhead (~µs) is included in every layer, so the sum exceeds :func:`measure_latency`'s eager
    figure a little; the bars are for comparing layers with one another, which they do faithfully.
    """
    model = copy.deepcopy(model).cpu().float().eval()
    x = torch.randn(1, *input_shape)
    totals: dict[str, float] = {}
    samples: dict[str, list[float]] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue

        def pre(_m: nn.Module, _a: Any, name: str = name) -> None:
            starts[name] = time.perf_counter()

        def post(_m: nn.Module, _a: Any, _o: Any, name: str = name) -> None:
            totals[name] = totals.get(name, 0.0) + (time.perf_counter() - starts[name]) * 1e3

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(max(runs, 1)):
                totals.clear()
                model(x)
                for k, v in totals.items():
                    samples.setdefault(k, []).append(v)
    finally:
        for h in handles:
            h.remove()
    return {k: float(statistics.median(v)) for k, v in samples.items()}
