"""Nothing lost: SIGKILL at random moments (also mid-write), SIGTERM, NaN losses and full disks.

Every interrupted run is resumed until it finishes; in deterministic CPU mode its final weights must be
bit-identical to an uninterrupted run, and the checkpoint picked for resume must never be corrupt.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from cli_env import start_train
from mobilenets.config import TrainConfig, load_config
from mobilenets.engine import checkpoint as ckpt_mod
from mobilenets.engine import epoch as epoch_mod
from mobilenets.engine.checkpoint import load_checkpoint
from mobilenets.engine.train import TrainingDiverged, train

TINY = [
    "data.name=synthetic", "data.synthetic_size=128", "data.image_size=16", "model.num_classes=4",
    "model.kwargs={small_input: true, width_mult: 0.35}", "batch_size=16", "eval_batch_size=64",
    "deterministic=true", "quiet=true", "threads=1", "sched.warmup_epochs=1", "aug.auto_augment=randaugment",
    "model.drop_path_rate=0.1",
]

def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    proc = start_train([*TINY, "epochs=40", f"output_dir={run}"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return run


@pytest.mark.slow  # ~2.5 min; the default run kills and resumes once per signal in test_resume.py
def test_sigkill_twenty_times_then_bit_identical(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.pt"
    rng = random.Random(1234)
    kills = during_write = 0
    window: float | None = None  # seconds a kill may wait after start-up
    args = [*TINY, "epochs=40", f"output_dir={run}"]
    while True:
        resume = ["resume=true"] if ckpt.exists() else []
        started = time.time()
        proc = start_train([*args, *resume], MOBILENETS_FAULT_CHECKPOINT_DELAY="0.15")
        if kills >= 20:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
            break
        # Wait until start-up is over (config.yaml rewritten), then kill at a random moment of the next
        # ~1.5 epochs. The window is scaled by the first run's time from start-up to its first checkpoint
        # write, so that on a slow CPU the kills still reach the checkpoint writes (a fixed 1.2 s window
        # ended before the first write on a loaded 2-core machine, and no kill could land in one).
        cfg_file = run / "config.yaml"
        while proc.poll() is None and not (cfg_file.exists() and cfg_file.stat().st_mtime >= started):
            time.sleep(0.02)
        if window is None:
            up = time.time()
            while proc.poll() is None and not (ckpt.exists() or list(ckpt.parent.glob(".last.pt.*.tmp"))):
                time.sleep(0.005)
            window = max(1.2, 1.5 * (time.time() - up))
            time.sleep(rng.uniform(0.0, window - (time.time() - up)))
        else:
            time.sleep(rng.uniform(0.0, window))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()[-2000:]
            break
        tmp_files = list(ckpt.parent.glob(".last.pt.*.tmp")) if ckpt.parent.exists() else []
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        during_write += bool(tmp_files)
        if ckpt.exists():
            load_checkpoint(ckpt)  # the checkpoint a resume would pick is always complete
    assert kills >= 20
    assert during_write >= 1, "no kill landed during a checkpoint write"
    _assert_identical(_weights(reference), _weights(run))
    assert json.loads((run / "summary.json").read_text())["epochs"] == 40
    print(f"fault figures: {kills} SIGKILLs, {during_write} during a checkpoint write, final weights identical")


@pytest.mark.slow  # with the 40-epoch reference run; test_resume.py covers SIGTERM by default
def test_sigterm_saves_mid_epoch_and_resumes_identically(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start_train([*TINY, "epochs=40", f"output_dir={run}"])
    ckpt = run / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.13)  # somewhere inside the next epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "resume=true" in err
    state = load_checkpoint(ckpt)
    assert state["epoch"] < 39
    proc = start_train([*TINY, "epochs=40", f"output_dir={run}", "resume=true"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    _assert_identical(_weights(reference), _weights(run))


def test_nan_loss_stops_with_diagnostics_and_resumes_with_lower_lr(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config(TrainConfig, None, [*TINY, "epochs=4", f"output_dir={tmp_path / 'run'}"])
    real_loss = epoch_mod._loss
    calls = {"n": 0}

    def exploding(logits, targets):
        calls["n"] += 1
        loss = real_loss(logits, targets)
        return loss * float("nan") if calls["n"] > 20 else loss  # dies in the third epoch

    monkeypatch.setattr(epoch_mod, "_loss", exploding)
    with pytest.raises(TrainingDiverged, match=r"resume=true optim\.lr") as info:
        train(cfg)
    assert "epoch" in str(info.value)
    dump = json.loads((tmp_path / "run" / "divergence.json").read_text())
    assert {"epoch", "step", "loss", "lr", "batch"} <= set(dump)
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1  # the last good epoch (0-based), not the diverged one
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())

    monkeypatch.setattr(epoch_mod, "_loss", real_loss)
    lower = load_config(TrainConfig, None, [*TINY, "epochs=4", f"output_dir={tmp_path / 'run'}", "resume=true",
                                            "optim.lr=0.001"])
    summary = train(lower)
    assert summary["epochs"] == 4 and 0 <= summary["test_acc1"] <= 100


def test_disk_full_never_replaces_the_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config(TrainConfig, None, [*TINY, "epochs=3", f"output_dir={tmp_path / 'run'}"])
    real_save = torch.save
    saves = {"n": 0}

    def disk_full(obj, f, *a, **kw):
        saves["n"] += 1
        if saves["n"] == 2:
            f.write(b"PK\x03\x04 partial")  # some bytes reach the disk, then the device is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(cfg)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(ckpt_dir / "last.pt")["epoch"] == 0
    assert not list(ckpt_dir.glob("*.tmp")) and not list(ckpt_dir.glob(".*.tmp"))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["malicious", "truncated", "empty", "foreign"])
def test_hostile_or_broken_checkpoint_is_refused(tmp_path: Path, kind: str) -> None:
    from mobilenets.engine.checkpoint import CheckpointError

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    if kind == "malicious":
        torch.save({"format": "mobilenets-train-v1", "model": _Payload(marker)}, ckpt)
    elif kind == "truncated":
        torch.save({"format": "mobilenets-train-v1", "model": {"w": torch.ones(1000)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    elif kind == "empty":
        ckpt.write_bytes(b"")
    else:
        torch.save({"state_dict": {"w": torch.ones(3)}}, ckpt)  # someone else's checkpoint
    cfg = load_config(TrainConfig, None, [*TINY, "epochs=2", f"output_dir={tmp_path / 'run'}", "resume=true"])
    with pytest.raises(CheckpointError, match=str(ckpt).replace(".", r"\.")):
        train(cfg)
    assert not marker.exists(), "unpickling ran code"
