"""eval / quantize of a run directory reuse the run's recorded data (data.name, data.root, split sizes);
a missing directory is one line naming --data-root; an image folder without test/ says the figure is on val."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobilenets.cli import main
from mobilenets.config import TrainConfig, load_config
from mobilenets.data.registry import DataRootError, build_datasets
from mobilenets.deploy.evaluate import evaluate_weights
from mobilenets.engine.evaluate import recorded_data
from mobilenets.engine.train import train

TINY_MODEL = ["model.kwargs={small_input: true, width_mult: 0.35}", "epochs=1", "sched.warmup_epochs=0",
              "quiet=true", "threads=1"]


def _image_folder(root: Path) -> Path:
    """Two colour classes, train/ and val/ only (no test/), small PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for c, colour in enumerate(((255, 0, 0), (0, 0, 255))):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(colour, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-epoch training run on an image folder; returns its run directory."""
    base = tmp_path_factory.mktemp("folder_run")
    data = _image_folder(base / "data")
    run = base / "run"
    train(load_config(TrainConfig, None, [
        "data.name=imagefolder", f"data.root={data}", "data.image_size=16", "batch_size=8", *TINY_MODEL,
        f"output_dir={run}",
    ]))
    return run


# ------------------------------------------------------------------------------------ DataRootError
def test_data_root_error_is_worded_per_caller() -> None:
    with pytest.raises(DataRootError) as err:
        build_datasets("cifar10", None, 32)
    exc = err.value
    assert isinstance(exc, ValueError) and exc.dataset == "cifar10" and exc.root is None
    assert "data.root=DIR" in str(exc) and "cifar-10-python.tar.gz" in str(exc)  # train's wording
    assert "root=<" not in str(exc)
    flag = exc.message("--data-root")
    assert "--data-root DIR" in flag and "data.root" not in flag and "\n" not in flag


@pytest.mark.parametrize("name", ["cifar100", "imagefolder"])
def test_missing_root_directory_is_named(name: str, tmp_path: Path) -> None:
    gone = tmp_path / "moved_away"
    with pytest.raises(DataRootError) as err:
        build_datasets(name, gone, 32)
    assert err.value.root == str(gone) and "does not exist" in str(err.value)
    assert str(gone) in err.value.message("--data-root")


def test_imagefolder_without_val_names_the_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataRootError, match=r"has no val/ folder") as err:
        build_datasets("imagefolder", tmp_path, 16)
    assert "val/<class>" in err.value.layout


# ------------------------------------------------------------------------------------ eval RUN
def test_run_records_its_data(folder_run: Path) -> None:
    rec = recorded_data(folder_run)
    assert rec is not None and rec.name == "imagefolder" and rec.root and Path(rec.root).is_dir()
    assert recorded_data(folder_run / "model.safetensors") == rec  # a file in the run works too
    assert recorded_data(folder_run.parent) is None  # no config.yaml there


def test_eval_run_needs_no_data_root_and_says_test_is_val(folder_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(folder_run), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["dataset"] == "imagefolder" and result["n"] == 8  # the 8 val images
    assert result["split"] == "val (no test/ folder)"
    assert main(["eval", str(folder_run)]) == 0
    out = capsys.readouterr()
    assert "imagefolder/val (no test/ folder)" in out.out and "not a held-out figure" in out.err
    assert main(["eval", str(folder_run), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"


def test_moved_data_root_is_one_line_naming_the_flag(folder_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    recorded = Path(recorded_data(folder_run).root)  # type: ignore[union-attr]
    moved = tmp_path / "elsewhere"
    shutil.move(str(recorded), moved)
    try:
        assert main(["eval", str(folder_run)]) == 2
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err
        assert str(recorded) in err and "does not exist" in err and "--data-root DIR" in err
        assert "config.yaml" in err and "root=<" not in err

        # The flag overrides the record.
        assert main(["eval", str(folder_run), "--data-root", str(moved), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["n"] == 8

        # quantize reads the same record and fails the same way.
        from mobilenets.deploy.quantize_run import quantize_weights

        with pytest.raises(ValueError, match=r"--data-root DIR") as qerr:
            quantize_weights(folder_run, target="onnxruntime", out=tmp_path / "q.onnx", calib_batches=1)
        assert not isinstance(qerr.value, DataRootError) and str(recorded) in str(qerr.value)
    finally:
        shutil.move(str(moved), recorded)


def test_quantize_run_uses_recorded_root_and_prints_stages(folder_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "int8.onnx"
    assert main(["quantize", str(folder_run), "--target", "onnxruntime", "--out", str(out),
                 "--calib-batches", "2", "--calib-batch-size", "4", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout is exactly one JSON document
    assert result["dataset"] == "imagefolder" and result["calib_images"] == 8 and out.is_file()
    assert result["split"] == "test"
    err = captured.err
    for stage in ("loading weights", "calibrat", "2/2 batches", "evaluating float", "evaluating int8"):
        assert stage in err, stage
    assert err.index("evaluating float") < err.index("evaluating int8")


def test_synthetic_run_is_evaluated_on_its_own_classes(tmp_path: Path) -> None:
    """The recorded split sizes and class count are used: a 4-class synthetic run is not measured on 10."""
    run = tmp_path / "syn"
    summary = train(load_config(TrainConfig, None, [
        "data.name=synthetic", "data.synthetic_size=64", "data.image_size=16", "model.num_classes=4",
        "batch_size=32", *TINY_MODEL, f"output_dir={run}",
    ]))
    result = evaluate_weights(run, plot=False, device="cpu")
    assert result["n"] == 16 and len(result["class_names"]) == 4  # synthetic_size // 4 test images
    assert result["acc1"] == pytest.approx(summary["test_acc1"])
