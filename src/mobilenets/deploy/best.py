"""``--backends best``: measured on the machine it runs on, and cached.

Which runtime wins changes with the CPU (AVX-512 / VNNI / BF16 / AMX decide between ONNX Runtime, OpenVINO,
XNNPACK and the int8 kernels), so ``best`` times every installed candidate here instead of trusting an order
measured elsewhere; :func:`cpu_description` names the CPU and those extensions for every table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["choose_best", "cpu_description"]


def _version() -> str:
    try:
        return importlib_metadata.version("mobilenets")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "source"


def cpu_description() -> str:
    """CPU model and the vector / matrix extensions that decide which runtime wins (for every table)."""
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",
              "asimddp", "fphp", "i8mm")
    present = [f for f in wanted if f in flags]
    return f"{model or 'unknown CPU'}, {os.cpu_count()} CPUs, flags: {' '.join(present) or 'none of ' + '/'.join(wanted[:8])}"


def _best_cache_path() -> Path:
    root = os.environ.get("MOBILENETS_CACHE")
    return Path(root) if root else Path(torch.hub.get_dir()).parent / "mobilenets" / "best_backend.json"


def choose_best(ctx: Any, name: str, x: torch.Tensor, backends: dict[str, Any], candidates: tuple[str, ...],
                reduced: tuple[str, ...], measure: Callable[..., list[float]],
                log: Callable[[str], None] | None = None) -> str:
    """Measure every installed candidate on this machine (short runs) and return the fastest key.

    A reduced float precision (fp16 / bf16) is a candidate only when its top-1 on the weights' evaluation
    split equals fp32's (checked while building it; a model without a dataset cannot pass). The choice is
    cached on disk keyed by model, input, batch, threads, CPU and runtime versions, so a second ``best``
    costs nothing; delete the cache file (``$MOBILENETS_CACHE`` overrides its path) to measure again.
    """
    # ``ctx`` is bench's BuildContext; the table, candidates and timer come from bench too (passed in, so that
    # this module does not import the one that calls it).
    key = "|".join(map(str, (name, tuple(x.shape), ctx.threads, cpu_description(), torch.__version__, _version(),
                             ctx.weights is not None)))
    path = _best_cache_path()
    cache: dict[str, Any] = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    hit = cache.get(key)
    if hit and hit.get("backend") in backends and backends[hit["backend"]].available():
        if log:
            log(f"best: {hit['backend']} (measured before on this machine: {_fmt_times(hit['ms'])}; cache {path})")
        return str(hit["backend"])
    times: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for cand in candidates:
        backend = backends[cand]
        if not backend.available():
            continue
        try:
            fn = backend.build(ctx)
            if backend.precision in reduced:
                check = ctx.checks.get(cand)  # keyed "<format>-<precision>", like these backends
                if not (check and check.get("top1_unchanged")):
                    skipped[cand] = "top-1 check " + ("failed" if check else "not possible (no dataset)")
                    continue
            times[cand] = 1e3 * statistics.median(measure(fn, x, warmup=3, warmup_s=0.2, min_runs=10,
                                                                min_time_s=0.3))
        except Exception as exc:  # a runtime that cannot take this model is skipped, not fatal
            skipped[cand] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
        finally:
            ctx.keep.clear()
            torch.set_num_threads(ctx.threads)
    if not times:
        return "eager"
    best = min(times, key=times.__getitem__)
    if log:
        extra = f"; skipped {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""
        log(f"best: {best} of {_fmt_times(times)}{extra}")
    cache[key] = {"backend": best, "ms": times, "skipped": skipped}
    try:
        from ..fileio import atomic_write_text

        atomic_write_text(path, json.dumps(cache, indent=1))
    except OSError:
        pass
    return best


def _fmt_times(times: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(times.items(), key=lambda kv: kv[1]))
