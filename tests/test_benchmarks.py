"""The training-throughput benchmark runs end to end (tiny settings): each loop in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "train_throughput.py"


@pytest.mark.slow  # three timed training loops: ~35 s
def test_train_throughput_json() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "16", "--batches", "32", "--images", "128", "--warmup", "1",
         "--workers", "0", "--amp", "none,bf16", "--fast-depthwise-grad", "off", "--device", "cpu", "--json"],
        capture_output=True, text=True, check=True, timeout=600,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    rows = report["results"]
    assert [(r["size"], r["batch"], r["amp"], r["small_input"]) for r in rows] == [(16, 32, "none", True),
                                                                                (16, 32, "bf16", True)]
    for r in rows:
        assert r["reference_img_s"] > 0 and r["ours_img_s"] > 0
        assert abs(r["ratio"] - r["ours_img_s"] / r["reference_img_s"]) < 1e-9
        assert len(r["runs"]["ours"]) == 1 and len(r["runs"]["reference"]) == 1
    assert rows[0]["reference_img_s"] == rows[1]["reference_img_s"]  # one reference per setting


def test_train_throughput_rejects_unknown_amp() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--amp", "fp8"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "fp8" in out.stderr and "none or bf16" in out.stderr
