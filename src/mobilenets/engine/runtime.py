"""The process a job runs in: device, threads, seeds and determinism, autocast, signals, status lines."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from contextlib import nullcontext
from typing import Any

import torch

from ..config import ConfigError, TrainConfig
from .allocator import keep_freed_memory

__all__ = ["Logger", "StopRequest", "amp_context", "prepare_input", "resolve_device", "setup_runtime"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"got {name!r}, expected 'auto', 'cpu', 'cuda' or 'cuda:N'", key="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"got {name!r} but CUDA is not available on this machine", key="device")
    return device


def setup_runtime(cfg: TrainConfig) -> torch.device:
    """Threads, seeds and determinism as configured; returns the device to train on."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        # Bit-reproducible runs (and resumes) at some speed cost; warn_only keeps ops without a
        # deterministic kernel usable instead of failing the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()  # no page-fault storm per step (see engine/allocator.py)
    if device.type == "cuda" and not cfg.deterministic:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def amp_context(amp: str, device: torch.device) -> Any:
    """Autocast for ``amp`` (``"none"``, ``"bf16"`` or ``"fp16"``) on ``device``."""
    if amp == "none":
        return nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 needs a CUDA device (use amp=bf16 on CPU)", key="amp")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def prepare_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A model input in the memory format the model was put in."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class StopRequest:
    """SIGINT/SIGTERM set a flag that the loop checks after each optimizer step.

    The first signal asks for a clean stop (checkpoint, then exit); a second SIGINT aborts at once.
    Handlers are only installed from the main thread (Python's rule) and restored afterwards.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def __call__(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class Logger:
    """Status lines on stderr, from rank 0 only."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(msg, file=sys.stderr, flush=True)
