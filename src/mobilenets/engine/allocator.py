"""Keep freed tensor memory in the process on CPU, so training steps stop page-faulting.

glibc's ``malloc`` serves large blocks (the activations of a training step are 1-40 MB each) with
``mmap`` and gives them back with ``munmap`` on free. Every step then maps its activations afresh,
and the kernel zero-fills each 4 KiB page on first touch: V3-Small at 32x32, batch 128 took about
25,000 minor page faults per step, roughly a tenth of the step time on 2 cores. Raising the mmap
threshold and the trim threshold makes ``malloc`` serve those blocks from its heap and keep them
there after ``free``, the way PyTorch's CUDA caching allocator (or tcmalloc/jemalloc, which Intel's
launcher preloads) already behaves. Page faults per step drop to ~0 (``docs/benchmarks.md``).

The price is that the process keeps its peak memory instead of returning it between steps, which
is what a training process wants. ``MOBILENETS_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory"]

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # serve every block below 1 GiB from the heap
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: never trim the heap top in practice

_applied = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc for a training process; returns whether the tuning is in effect.

    A no-op (returning False) off glibc (macOS, Windows, musl) or with ``MOBILENETS_MALLOC_TUNING=0``.
    Idempotent: the settings are process-wide and set once.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("MOBILENETS_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting M_MMAP_THRESHOLD also stops glibc's dynamic threshold.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _applied
