"""DDP on CPU (gloo, 2 processes through torchrun): equivalence with one process, resume, single writer."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli_env import cli_env

COMMON = [
    "data.name=synthetic", "data.synthetic_size=128", "data.image_size=16", "model.num_classes=4",
    "model.kwargs={small_input: true, width_mult: 0.35}", "model.dropout=0", "aug.crop=none",
    "aug.label_smoothing=0", "ema=false", "deterministic=true", "sched.warmup_epochs=0", "eval_batch_size=64",
    "optim.name=sgd", "optim.lr=0.05", "quiet=true", "threads=1",
]


def torchrun(args: list[str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mobilenets", "train", *args]
    return subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobilenets", "train", *args], env=cli_env(), capture_output=True,
                          text=True, timeout=300)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _kill_tree(pid: int) -> None:
    """SIGKILL torchrun and every worker (the workers run in sessions of their own)."""
    for p in _descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def test_ddp_equals_single_process_with_same_global_batch(tmp_path: Path) -> None:
    ddp = tmp_path / "ddp"
    _, err = _finish(torchrun([*COMMON, "epochs=2", "batch_size=16", "sync_bn=true", f"output_dir={ddp}"]))
    one = tmp_path / "one"
    res = single([*COMMON, "epochs=2", "batch_size=32", f"output_dir={one}"])
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(ddp), _weights(one)
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst <= 1e-5, f"max abs weight difference {worst:.3g}"
    # rank 0 alone writes: one event file, one metrics row per epoch, each epoch logged once
    assert len(list((ddp / "tb").glob("events.out.tfevents.*"))) == 1
    assert len((ddp / "metrics.csv").read_text().strip().splitlines()) == 1 + 2
    assert err.count("epoch 1/2 ") == 1, err
    assert "x 2 processes" in err


@pytest.mark.slow  # two torchrun launches with a kill between: ~45 s; resume itself is covered by test_resume
def test_ddp_resumes_after_kill(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    args = [*COMMON, "epochs=4", "batch_size=16", "aug.crop=pad", "aug.padding=2"]
    _finish(torchrun([*args, f"output_dir={ref}"]))

    cut = tmp_path / "cut"
    proc = torchrun([*args, f"output_dir={cut}"])
    ckpt = cut / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    _kill_tree(proc.pid)
    proc.communicate()
    epoch_at_kill = torch.load(ckpt, weights_only=True)["epoch"]
    assert epoch_at_kill < 3
    _, err = _finish(torchrun([*args, f"output_dir={cut}", "resume=true"]))
    assert "resuming" in err
    a, b = _weights(ref), _weights(cut)
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst <= 1e-6, f"resumed DDP run differs by {worst:.3g}"


def test_repeat_aug_sampler_partitions() -> None:
    from mobilenets.data.loader import RepeatAugSampler

    samplers = [RepeatAugSampler(30, r, 3, repeats=3, seed=1) for r in range(3)]
    shards = [list(s) for s in samplers]
    assert all(len(sh) == 10 == len(s) for sh, s in zip(shards, samplers))
    # each rank sees different copies; over the ranks every index appears (repeats spread across ranks)
    seen = [i for sh in shards for i in sh]
    assert len(set(seen)) >= 10
    samplers[0].set_epoch(1)
    assert list(samplers[0]) != shards[0]


def test_sync_batchnorm_cpu_is_plain_bn_without_process_group() -> None:
    from mobilenets import create_model
    from mobilenets.engine.distributed import SyncBatchNormCPU, convert_sync_batchnorm

    model = create_model("mobilenet_v3_small", width_mult=0.35, small_input=True, num_classes=3, dropout=0.0).train()
    x = torch.randn(4, 3, 16, 16)
    ref = model(x)
    synced = convert_sync_batchnorm(model, "cpu").train()
    assert any(isinstance(m, SyncBatchNormCPU) for m in synced.modules())
    torch.testing.assert_close(synced(x), ref)


@pytest.mark.parametrize("bad", ["batch_size=100"])
def test_ddp_global_batch_checked(tmp_path: Path, bad: str) -> None:
    proc = torchrun([*COMMON, "epochs=1", bad, f"output_dir={tmp_path}"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "batch_size" in err


@pytest.mark.slow  # a torchrun launch of a tiny detector and one evaluation: ~40 s on 2 cores
def test_ddp_detection_gathers_every_ranks_detections(tmp_path: Path) -> None:
    """Detection through the same DDP loop: the val mAP rank 0 logs (each rank detects on its shard,
    rank 0 gathers) equals a single-process evaluation of the saved weights on the whole val split."""
    pytest.importorskip("pycocotools")
    run = tmp_path / "det"
    args = ["configs/detect_digits.yaml", "data.scene_sizes=[64,30,30]", "model.kwargs.image_size=64",
            "data.image_size=64", "epochs=1", "batch_size=16", "ema=false", "quiet=true", "threads=1",
            f"output_dir={run}"]
    _, err = _finish(torchrun(args, cwd=Path(__file__).resolve().parent.parent))
    assert "x 2 processes" in err
    logged = float((run / "metrics.csv").read_text().strip().splitlines()[-1].split(",")[3])  # val_map
    res = subprocess.run([sys.executable, "-m", "mobilenets", "eval", str(run), "--split", "val", "--json"],
                         env=cli_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    assert json.loads(res.stdout)["map"] == pytest.approx(logged, abs=1e-6)


@pytest.mark.slow  # a torchrun launch of a tiny segmenter and one evaluation: ~30 s on 2 cores
def test_ddp_segmentation_sums_every_ranks_confusion_matrix(tmp_path: Path) -> None:
    """Segmentation through the same DDP loop: the val mIoU rank 0 logs (each rank scores its own images,
    the confusion matrices summed) equals a single-process evaluation of the saved weights on the whole
    val split."""
    run = tmp_path / "seg"
    args = ["configs/segment_digits.yaml", "data.scene_sizes=[64,30,30]", "data.image_size=64", "epochs=1",
            "batch_size=16", "ema=false", "quiet=true", "threads=1", "model.kwargs.backbone_kwargs={width_mult: 0.35}",
            f"output_dir={run}"]
    _, err = _finish(torchrun(args, cwd=Path(__file__).resolve().parent.parent))
    assert "x 2 processes" in err
    header, *rows = (run / "metrics.csv").read_text().strip().splitlines()
    logged = float(rows[-1].split(",")[header.split(",").index("val_miou")])
    res = subprocess.run([sys.executable, "-m", "mobilenets", "eval", str(run), "--split", "val", "--json"],
                         env=cli_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    import json

    result = json.loads(res.stdout)
    assert result["n"] == 30
    assert result["miou"] == pytest.approx(logged, abs=1e-6)
