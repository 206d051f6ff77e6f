"""Running the ``mobilenets`` command line from tests: one environment for every subprocess.

One thread per process (the suite runs on 2 cores) and ``src/`` on ``PYTHONPATH``, so a test runs the
checkout's code even where the package is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def start_train(args: list[str], *, cwd: str | Path | None = None, **env: str) -> subprocess.Popen:
    """``mobilenets train ARGS`` in the background, stderr captured (stdout discarded)."""
    return subprocess.Popen([sys.executable, "-m", "mobilenets", "train", *args], env=cli_env(**env), cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
