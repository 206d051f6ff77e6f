"""End-to-end training tests on tiny data: every optimizer/schedule, AMP, EMA, resume, eval and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenets.cli import main
from mobilenets.config import ConfigError, TrainConfig, load_config
from mobilenets.engine import train as train_mod
from mobilenets.engine.plots import read_metrics
from mobilenets.engine.train import train

# A tiny but real job: synthetic learnable data, a narrow V3-Small, 16x16 images.
TINY = [
    "data.name=synthetic",
    "data.synthetic_size=128",
    "data.image_size=16",
    "model.num_classes=4",
    "model.kwargs={small_input: true, width_mult: 0.35}",
    "batch_size=32",
    "eval_batch_size=64",
    "epochs=2",
    "sched.warmup_epochs=0.5",
    "quiet=true",
]


def tiny_cfg(tmp_path: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*TINY, f"output_dir={tmp_path / 'run'}", *extra])


def test_run_directory_contents(tmp_path: Path) -> None:
    summary = train(tiny_cfg(tmp_path))
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "summary.json", "model.safetensors", "config.json",
                 "checkpoints/last.pt", "loss.png", "accuracy.png", "lr.png"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"lr", "train_loss", "val_loss", "val_acc1", "val_acc5", "ema_val_acc1", "images_per_s", "epoch_s"} <= set(rows[0])
    written = json.loads((run / "summary.json").read_text())
    for key in ("model", "params", "macs", "epochs", "best_val_acc1", "test_acc1", "train_time_s", "images_per_s"):
        assert key in written, key
    assert written == summary
    assert isinstance(written["params"], int) and written["params"] > 0
    import mobilenets.weights as w

    model = w.from_pretrained(run)
    assert model.num_classes == 4 and model.in_chans == 3


@pytest.mark.parametrize(
    "extra",
    [
        ["optim.name=sgd", "optim.lr=0.05", "optim.weight_decay=5e-5", "sched.name=step", "sched.step_size=1"],
        ["optim.name=rmsprop_tf", "optim.lr=0.01", "optim.weight_decay=1e-5", "sched.name=exponential", "sched.gamma=0.9"],
        ["optim.name=adamw", "sched.name=cosine", "optim.clip_grad=1.0", "optim.grad_accum_steps=2"],
        ["sched.name=constant", "sched.per_step=false", "ema=false"],
        ["amp=bf16", "channels_last=false"],
        ["aug.crop=rrc", "aug.hflip=0.5", "aug.auto_augment=randaugment", "aug.random_erasing=0.25",
         "aug.mixup_alpha=0.2", "aug.cutmix_alpha=1.0"],
        ["aug.auto_augment=trivialaugment", "aug.label_smoothing=0"],
        ["aug.auto_augment=autoaugment-cifar10", "deterministic=true"],
    ],
    ids=["sgd-step", "rmsprop-exp", "adamw-clip-accum", "constant-epoch", "bf16", "heavy-aug", "trivial", "aa-det"],
)
def test_one_epoch_each_recipe(tmp_path: Path, extra: list[str]) -> None:
    summary = train(tiny_cfg(tmp_path, "epochs=1", *extra))
    assert np.isfinite(summary["test_acc1"]) and 0 <= summary["test_acc1"] <= 100
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert np.isfinite(rows[0]["train_loss"])


def test_fast_depthwise_grad_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fast_depthwise_grad=true`` switches the model's 5x5 depthwise convs on CPU, with bf16 autocast."""
    switched: list[int] = []
    real = train_mod.use_fast_depthwise_backward

    def record(model: torch.nn.Module) -> int:
        switched.append(real(model))
        return switched[-1]

    monkeypatch.setattr(train_mod, "use_fast_depthwise_backward", record)
    summary = train(tiny_cfg(tmp_path, "epochs=1", "fast_depthwise_grad=true", "amp=bf16"))
    assert switched == [8]  # the tiny run's V3-Small has eight 5x5 depthwise convs
    assert np.isfinite(summary["test_acc1"])
    assert np.isfinite(read_metrics(tmp_path / "run" / "metrics.csv")[0]["train_loss"])


def test_learns_synthetic_data(tmp_path: Path) -> None:
    summary = train(tiny_cfg(tmp_path, "epochs=6", "data.synthetic_size=256", "optim.lr=0.01"))
    assert summary["best_val_acc1"] >= 60.0, summary  # 4 classes: chance is 25%


def test_resume_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["epochs=3", "deterministic=true", "aug.auto_augment=randaugment", "model.drop_path_rate=0.1"]
    full = tiny_cfg(tmp_path / "a", *base)
    train(full)
    ref = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.pt", weights_only=True)

    calls = {"n": 0}
    real = train_mod.train_one_epoch

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    cut = tiny_cfg(tmp_path / "b", *base)
    with pytest.raises(KeyboardInterrupt):
        train(cut)
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    resumed = tiny_cfg(tmp_path / "b", *base, "resume=true")
    train(resumed)
    got = torch.load(tmp_path / "b" / "run" / "checkpoints" / "last.pt", weights_only=True)
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    for key, value in ref["ema"]["module"].items() if "module" in ref["ema"] else []:
        assert torch.equal(value, got["ema"]["module"][key]), key
    assert [r["val_acc1"] for r in ref["history"]] == [r["val_acc1"] for r in got["history"]]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"last\.pt"):
        train(tiny_cfg(tmp_path, "resume=true"))


def test_batch_larger_than_dataset_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        train(tiny_cfg(tmp_path, "batch_size=4096"))


def test_cli_train_eval_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "digits"
    args = ["train", "epochs=1", "sched.warmup_epochs=0", "data.image_size=16", "model.kwargs={small_input: true, width_mult: 0.35}",
            "quiet=true", f"output_dir={run}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test top-1" in out and str(run) in out

    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["acc1"] <= 100 and 0 <= result["acc5"] <= 100 and result["acc1"] <= result["acc5"]
    assert len(result["per_class_acc1"]) == 10 and result["n"] == 360
    assert (run / "confusion_test.png").is_file()

    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    img = tmp_path / "digit.png"
    Image.fromarray((digits.images[0] * 255 / 16).astype("uint8"), mode="L").resize((32, 32)).save(img)
    assert main(["predict", str(img), "--weights", str(run), "--topk", "3", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == 1 and len(preds[0]["top"]) == 3
    probs = [p["prob"] for p in preds[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert {p["class"] for p in preds[0]["top"]} <= {str(i) for i in range(10)}


def test_cli_reports_bad_keys_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "optim.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "Traceback" not in err
    assert main(["train", "model.name=mobilenet_v3_smal", "epochs=1", "sched.warmup_epochs=0"]) == 2
    assert "mobilenet_v3_small" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", sorted(Path(__file__).parent.parent.glob("configs/*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(recipe: Path) -> None:
    cfg = load_config(TrainConfig, recipe, ["data.root=/data"] if "digits" not in recipe.name else [])
    assert cfg.epochs >= 1


def test_digits_recipe_is_the_default() -> None:
    # `mobilenets train` with no arguments must be the documented main job.
    from mobilenets.config import to_dict

    root = Path(__file__).parent.parent
    from mobilenets.engine.defaults import resolve_batch_size, resolve_dataset_defaults

    def resolved(cfg: TrainConfig) -> dict:  # what a run of it trains with (digits: 1257 training images)
        return to_dict(resolve_batch_size(resolve_dataset_defaults(cfg)[0], 1257)[0])

    assert resolved(load_config(TrainConfig, root / "configs" / "digits.yaml", [])) == resolved(TrainConfig())


def test_trains_on_official_cifar_archive(tmp_path: Path) -> None:
    from datasets_on_disk import SPEC, fake_members, write_tar

    write_tar(tmp_path / SPEC["cifar10"][1], fake_members("cifar10"))
    summary = train(load_config(TrainConfig, None, [
        "data.name=cifar10", f"data.root={tmp_path}", "model.kwargs={small_input: true, width_mult: 0.35}",
        "epochs=1", "sched.warmup_epochs=0", "batch_size=16", "quiet=true", f"output_dir={tmp_path / 'run'}",
        "data.val_size=40",
    ]))
    # The fake train files hold 5 x 40 images; val_size=40 stands in for the real archive's 5000.
    assert summary["dataset"] == "cifar10" and 0 <= summary["test_acc1"] <= 100


def test_trains_on_imagefolder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c, colour in enumerate(((255, 0, 0), (0, 0, 255))):
            d = tmp_path / "data" / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(colour, 40, (40 + i, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    (tmp_path / "data" / "train" / "class0" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="broken"):
        summary = train(load_config(TrainConfig, None, [
            "data.name=imagefolder", f"data.root={tmp_path / 'data'}", "data.image_size=32",
            "model.kwargs={small_input: true, width_mult: 0.35}", "epochs=2", "sched.warmup_epochs=0",
            "batch_size=8", "quiet=true", "aug.hflip=0.5", f"output_dir={tmp_path / 'run'}",
        ]))
    assert summary["params"] > 0 and 0 <= summary["test_acc1"] <= 100
