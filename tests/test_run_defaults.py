"""What a run chooses for itself: the dataset's defaults, a batch size that fits the data, a warm-up that fits
the run, a run directory a user can type -- each printed at start -- and the EMA only when it is better.

The headline check: a 3-class image folder of 30 training images per class trains to >= 90% val top-1
with nothing but ``data.name=imagefolder data.root=...`` (with the previous fixed batch of 64 -- one
optimizer step per epoch -- the same folder stayed at 33%, chance, for all 20 epochs).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_env import cli_env
from datasets_on_disk import make_texture_folder
from mobilenets.config import TrainConfig, load_config
from mobilenets.engine.defaults import resolve_batch_size, resolve_dataset_defaults
from mobilenets.engine.train import train

TINY = ["data.name=synthetic", "data.synthetic_size=96", "data.image_size=16", "model.num_classes=3",
        "model.kwargs={width_mult: 0.35}", "quiet=true", "threads=1", "epochs=1"]


@pytest.mark.slow  # 20 epochs on 90 images at 224 px: ~40-90 s on 2 cores
def test_tiny_image_folder_trains_with_nothing_but_its_root(tmp_path: Path, monkeypatch, capsys) -> None:
    root = make_texture_folder(tmp_path / "textures")
    monkeypatch.chdir(tmp_path)
    summary = train(load_config(TrainConfig, None, ["data.name=imagefolder", f"data.root={root}"]))
    err = capsys.readouterr().err
    assert summary["best_val_acc1"] >= 90.0, err[-3000:]
    # The choices were printed: the automatic batch (and why), the folder's defaults, the test = val caveat.
    assert "batch_size=9 (automatic: 64 would give 1 optimizer step(s) per epoch on 90 training images" in err
    assert "data.image_size=224" in err and "aug.crop=rrc" in err and "aug.hflip=0.5" in err
    assert "small_input=false" in err
    assert "no test/ folder" in err and summary["test_split"] == "val (no test/ folder)"
    assert Path(summary["run_dir"]) == Path("runs/imagefolder")


def test_each_dataset_brings_its_own_defaults() -> None:
    digits, _ = resolve_dataset_defaults(TrainConfig())
    assert (digits.data.image_size, digits.aug.crop, digits.aug.padding, digits.aug.hflip) == (32, "pad", 3, 0.0)
    assert digits.model.kwargs == {"small_input": True}  # the main job is unchanged
    cifar, _ = resolve_dataset_defaults(load_config(TrainConfig, None, ["data.name=cifar10", "data.root=x"]))
    assert (cifar.data.image_size, cifar.aug.crop, cifar.aug.padding, cifar.aug.hflip) == (32, "pad", 4, 0.5)
    folder, notes = resolve_dataset_defaults(load_config(TrainConfig, None, ["data.name=imagefolder", "data.root=x"]))
    assert (folder.data.image_size, folder.aug.crop, folder.aug.hflip) == (224, "rrc", 0.5)
    assert folder.model.kwargs == {"small_input": False}
    assert len(notes) == 1 and notes[0].startswith("imagefolder defaults:") and "ImageNet mean/std" in notes[0]
    # The model's own input size (MobileNetV4-Medium: 256), and what the user gave always wins.
    v4, _ = resolve_dataset_defaults(load_config(TrainConfig, None, [
        "data.name=imagefolder", "data.root=x", "model.name=mobilenet_v4_conv_medium"]))
    assert v4.data.image_size == 256
    given, notes = resolve_dataset_defaults(load_config(TrainConfig, None, [
        "data.name=imagefolder", "data.root=x", "data.image_size=160", "aug.crop=none", "aug.hflip=0",
        "aug.padding=0", "model.kwargs.small_input=true"]))
    assert (given.data.image_size, given.aug.crop, given.aug.hflip, given.model.kwargs) == (
        160, "none", 0.0, {"small_input": True})
    assert notes == []


def test_batch_size_adapts_to_the_training_split() -> None:
    cfg = TrainConfig()
    assert resolve_batch_size(cfg, 1257) == (dataclasses.replace(cfg, batch_size=64), [])  # the main job
    small, notes = resolve_batch_size(cfg, 90)
    assert small.batch_size == 9 and 90 // 9 >= 10
    assert small.optim.lr == pytest.approx(0.004 * (9 / 64) ** 0.5)  # AdamW: square-root rule
    assert "batch_size=9" in notes[0] and "optim.lr=" in notes[0]
    sgd, _ = resolve_batch_size(load_config(TrainConfig, None, ["optim.name=sgd", "optim.lr=0.1"]), 90)
    assert sgd.optim.lr == pytest.approx(0.1 * 9 / 64)  # SGD: linear rule
    ddp, _ = resolve_batch_size(cfg, 1257, world_size=2)  # per-process batch: 2 x 62 images per step
    assert ddp.batch_size == 62
    given, notes = resolve_batch_size(load_config(TrainConfig, None, ["batch_size=64"]), 90)
    assert given.batch_size == 64 and given.optim.lr == 0.004
    assert notes[0].startswith("warning: batch_size=64 gives 1 optimizer step(s) per epoch")


def test_one_epoch_smoke_run_works_with_the_defaults(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    summary = train(load_config(TrainConfig, None, ["epochs=1", "quiet=true"]))
    assert summary["epochs"] == 1 and 0.0 <= summary["test_acc1"] <= 100.0
    assert "sched.warmup_epochs=0.2 (clamped from 1" in capsys.readouterr().err
    assert Path(summary["run_dir"]) == Path("runs/digits")


def test_run_directories_are_short_and_never_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = train(load_config(TrainConfig, None, TINY))
    second = train(load_config(TrainConfig, None, TINY))
    assert (first["run_dir"], second["run_dir"]) == ("runs/synthetic", "runs/synthetic-2")
    with pytest.raises(ValueError):
        train(load_config(TrainConfig, None, [*TINY, "model.name=mobilenet_v3_smal"]))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["synthetic", "synthetic-2"]


def test_ema_weights_are_used_only_when_better_on_val(tmp_path: Path) -> None:
    # An EMA that barely moves from the random initialisation is worse on val than the trained weights.
    summary = train(load_config(TrainConfig, None, [
        *TINY, "epochs=4", "data.synthetic_size=256", "batch_size=16", "ema_decay=0.99999", "ema_warmup=false",
        f"output_dir={tmp_path}"]))
    rows = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    raw, ema = header.index("val_acc1"), header.index("ema_val_acc1")
    best = max(rows, key=lambda r: max(float(r[raw]), float(r[ema])))
    assert float(best[raw]) > float(best[ema])
    assert summary["best_weights"] == "model"
    assert json.loads((tmp_path / "config.json").read_text())["weights_source"] == "model"


def test_show_config_prints_resolved_values_with_help(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mobilenets", "train", "--show-config", "data.name=imagefolder",
                           f"data.root={tmp_path}"], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    line = next(x for x in lines if x.startswith("data.image_size:"))
    assert line.split("#")[0].strip() == "data.image_size: 224" and "(automatic)" in line
    assert any(x.startswith("optim.lr: 0.004") and "# peak learning rate" in x for x in lines)
    assert any(x.startswith("aug.crop: rrc") for x in lines)
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_threads_apply_to_the_run_only(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    train(load_config(TrainConfig, None, [*TINY, "threads=1", f"output_dir={tmp_path}"]))
    assert torch.get_num_threads() == before  # a library call leaves the caller's thread count alone
