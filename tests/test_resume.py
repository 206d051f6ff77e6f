"""Resume continues the run's own configuration (README's flow and the hint a run prints).

An interrupted run is continued with exactly the command it printed -- after SIGINT (printed when it
stops) and after SIGKILL (printed when it started) -- and must finish bit-identical to an uninterrupted
run; a resume that would change what the checkpoint holds is refused in one line naming the key.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cli_env import cli_env, start_train

# README's flow, `mobilenets train model.name=mobilenet_v2 optim.lr=0.002 epochs=30 output_dir=runs/v2`,
# made small enough for the suite (synthetic data, 16 px, a narrow V2) and bit-reproducible.
FAST = [
    "data.name=synthetic", "data.synthetic_size=96", "data.image_size=16", "model.num_classes=4",
    "model.kwargs={width_mult: 0.35}", "deterministic=true", "threads=1", "quiet=true",
]
FLOW = ["model.name=mobilenet_v2", "optim.lr=0.002", "epochs=4", *FAST]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobilenets", *args], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=600)


def _main_in(cwd: Path, argv: list[str]) -> int:
    """``mobilenets ARGV`` run in this process from ``cwd`` (no interpreter start-up: the suite is on 2 cores)."""
    from mobilenets.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main(argv)
    finally:
        os.chdir(old)


def _follow(hint: str, cwd: Path) -> int:
    """Run a printed ``mobilenets ...`` command verbatim (split as a shell would split it)."""
    argv = shlex.split(hint)
    assert argv[0] == "mobilenets", hint
    return _main_in(cwd, argv[1:])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("ref")
    assert _main_in(cwd, ["train", *FLOW, "output_dir=runs/v2"]) == 0
    return cwd / "runs" / "v2"


def _interrupt(cwd: Path, sig: signal.Signals) -> str:
    """Start README's first command, stop it with ``sig`` inside the third epoch, return its stderr."""
    proc = start_train([*FLOW, "output_dir=runs/v2"], cwd=cwd)
    metrics = cwd / "runs" / "v2" / "metrics.csv"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), err[-2000:]
    return err


# SIGINT (Ctrl-C) and SIGKILL are the two ways a run ends early; SIGTERM takes SIGINT's path and runs with -m slow.
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow), signal.SIGKILL],
                         ids=["sigint", "sigterm", "sigkill"])
def test_the_printed_hint_resumes_bit_identically(reference: Path, tmp_path: Path, sig: signal.Signals) -> None:
    err = _interrupt(tmp_path, sig)
    if sig != signal.SIGKILL:  # printed when it stops
        hints = re.findall(r"continue with `([^`]+)`", err)
    else:  # SIGKILL leaves no last words: the hint printed at start is the one to follow
        hints = re.findall(r"interrupted\? continue with: (.+)", err)
    assert hints, err[-2000:]
    assert hints[-1] == "mobilenets train output_dir=runs/v2 resume=true"
    assert _follow(hints[-1], tmp_path) == 0
    run = tmp_path / "runs" / "v2"
    assert _identical(_weights(reference), _weights(run))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved == yaml.safe_load((reference / "config.yaml").read_text())  # the run's own config, not defaults
    assert saved["model"]["name"] == "mobilenet_v2" and saved["epochs"] == 4


def test_resume_refuses_a_change_the_checkpoint_depends_on(reference: Path, capsys) -> None:
    run = str(reference)
    for override, key in (("model.name=mobilenet_v3_small", "model.name"), ("batch_size=8", "batch_size"),
                          ("aug.hflip=0.5", "aug.hflip"), ("seed=3", "seed")):
        assert _main_in(reference.parent, ["train", f"output_dir={run}", "resume=true", override]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith(f"mobilenets train: error: {key}: cannot change on resume"), lines
    saved = yaml.safe_load((reference / "config.yaml").read_text())
    assert saved["model"]["name"] == "mobilenet_v2"  # nothing was overwritten by the refused commands
    # The same refusal through the CLI process: one line, no traceback.
    done = _run(["train", f"output_dir={run}", "resume=true", "model.name=mobilenet_v1"], reference.parent)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "model.name: cannot change" in done.stderr


def test_resume_may_extend_epochs_with_a_note(reference: Path, tmp_path: Path, capsys) -> None:
    import shutil

    run = tmp_path / "v2"
    shutil.copytree(reference, run)
    assert _main_in(tmp_path, ["train", f"output_dir={run}", "resume=true", "epochs=5"]) == 0
    assert "epochs 4 -> 5" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 5
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 4  # 0-based: 5 epochs
    assert _main_in(tmp_path, ["train", f"output_dir={run}", "resume=true", "epochs=3"]) == 2
    assert "already completed 5 epochs" in capsys.readouterr().err


def test_resume_without_a_run_says_what_is_missing(tmp_path: Path, capsys) -> None:
    assert _main_in(tmp_path, ["train", "resume=true"]) == 2
    assert "resume=true needs output_dir=RUN_DIR" in capsys.readouterr().err
    assert _main_in(tmp_path, ["train", "resume=true", "output_dir=runs/nothing"]) == 2
    assert "runs/nothing does not exist" in capsys.readouterr().err
