"""MNN: fp32 export through MNN's converter, int8 through its offline quantization tool, its Python runtime.

The digits model is trained here for two epochs at 16×16 (about 90% top-1 in ~10 s on one core), so the
int8 accuracy drop is measured on a model that has something to lose; a random-weight model answers 10%
whatever the precision. Skipped when the ``MNN`` package (``pip install 'mobilenets[mnn]'``) is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import mobilenets
from deploy_models import MEAN, STD, randomize
from mobilenets.deploy.export import FP32_TOLERANCE, export_model
from mobilenets.deploy.extras import MissingExtraError
from mobilenets.deploy.metadata import (
    ArtifactError,
    ArtifactMetadata,
    read_metadata,
    sidecar_path,
    write_metadata,
)
from mobilenets.deploy.runtimes import load_artifact
from mobilenets.weights import from_pretrained

if importlib.util.find_spec("MNN") is None:  # not importorskip: importing MNN prints its CPU features
    pytest.skip("the mnn extra: pip install 'mobilenets[mnn]'", allow_module_level=True)

SIZE = 16


@pytest.fixture(scope="module")
def weights(digits16_weights: Path) -> Path:
    return digits16_weights


@pytest.fixture(scope="module")
def fp32(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mnn") / "m.mnn"
    result = export_model(weights, "mnn", out)
    assert result.passed and result.verified and result.max_abs_diff <= FP32_TOLERANCE, result.summary()
    assert result.runtime == "mnn" and result.batch == 1
    return out


def test_fp32_roundtrip_and_chunking(weights: Path, fp32: Path) -> None:
    predictor = load_artifact(fp32, threads=1)
    meta = predictor.metadata
    assert meta.format == "mnn" and meta.batch == 1 and meta.input_size == (1, SIZE, SIZE)
    assert meta.dataset == "digits" and meta.class_names == [str(i) for i in range(10)]
    model = from_pretrained(weights).eval()
    x = torch.randn(3, 1, SIZE, SIZE)  # batch 3 through a batch-1 file: three runs
    with torch.no_grad():
        ref = model(x)
    got = predictor(x)
    assert got.dtype == torch.float32 and got.shape == (3, 10)
    assert (got - ref).abs().max().item() <= FP32_TOLERANCE
    # the metadata travels inside the file (bizCode): it loads without its sidecar
    sidecar_path(fp32).rename(sidecar_path(fp32).with_suffix(".bak"))
    try:
        assert load_artifact(fp32).metadata.class_names == meta.class_names
    finally:
        sidecar_path(fp32).with_suffix(".bak").rename(sidecar_path(fp32))


@pytest.mark.parametrize("name", ["mobilenet_v4_conv_small"])
def test_fp32_roundtrip_other_family(name: str, tmp_path: Path) -> None:
    model = randomize(mobilenets.create_model(name, width_mult=0.25, small_input=True, in_chans=1,
                                                num_classes=10))
    model.pretrained_cfg.update(mean=(MEAN,), std=(STD,), input_size=(1, SIZE, SIZE))
    out = tmp_path / "v4.mnn"
    result = export_model(model, "mnn", out)
    assert result.passed and result.max_abs_diff <= FP32_TOLERANCE, result.summary()
    x = torch.randn(2, 1, SIZE, SIZE)
    with torch.no_grad():
        ref = model(x)
    assert ref.abs().max() > 1e-3
    assert (load_artifact(out)(x) - ref).abs().max().item() <= FP32_TOLERANCE


@pytest.mark.slow  # two MNN calibrations and two evaluations of the test split: 40 s of the default run
def test_int8_ptq_full_and_weight_only(weights: Path, fp32: Path, tmp_path: Path) -> None:
    from mobilenets.deploy.evaluate import evaluate_weights
    from mobilenets.deploy.fuse import prepare_for_export
    from mobilenets.deploy.mnn import quantize_mnn
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path / "q.mnn"
    result = quantize_weights(weights, target="mnn", out=out, calib_batches=2, calib_batch_size=16)
    predictor = load_artifact(out)
    assert predictor.metadata.precision == "int8" and predictor.metadata.quantization["target"] == "mnn"
    assert result.calib_images == 32
    print(f"\nMNN full int8 on digits/test: fp32 {result.float_acc1:.2f}% -> int8 {result.int8_acc1:.2f}% "
          f"(drop {result.drop:+.2f} points); {out.stat().st_size} bytes vs fp32 {fp32.stat().st_size}")
    assert result.float_acc1 > 70.0, "the trained digits model should be well above chance"
    assert result.drop < 10.0
    # int8 weights: a quarter of the fp32 file, plus scales and the graph
    assert out.stat().st_size < 0.45 * fp32.stat().st_size

    # weight-only int8 (no calibration): the converter's --weightQuantBits 8
    model = from_pretrained(weights).eval()
    meta = read_metadata(fp32)
    meta.precision, meta.quantization = "int8", {"method": "ptq", "target": "mnn", "mode": "weight"}
    weight_only = tmp_path / "w8.mnn"
    quantize_mnn(prepare_for_export(model), [torch.randn(1, 1, SIZE, SIZE)], weight_only, meta, mode="weight")
    write_metadata(weight_only, meta)
    assert weight_only.stat().st_size < 0.45 * fp32.stat().st_size
    acc = evaluate_weights(weight_only, plot=False)["acc1"]
    print(f"MNN weight-only int8: {acc:.2f}%")
    assert abs(acc - result.float_acc1) < 5.0
    with pytest.raises(ValueError, match="unknown MNN int8 mode"):
        quantize_mnn(prepare_for_export(model), [torch.randn(1, 1, SIZE, SIZE)], weight_only, meta, mode="int4")


def test_qat_is_refused(weights: Path, tmp_path: Path) -> None:
    from mobilenets.deploy.quantize import quantize_model

    model = from_pretrained(weights).eval()
    with pytest.raises(ValueError, match="not available for target mnn"):
        quantize_model(model, "qat", "mnn", tmp_path / "q.mnn", [torch.randn(2, 1, SIZE, SIZE)],
                       train_batches=lambda: iter(()))


def test_evaluate_equals_the_weights(weights: Path, fp32: Path) -> None:
    from mobilenets.deploy.evaluate import evaluate_weights

    ref = evaluate_weights(weights, plot=False)
    got = evaluate_weights(fp32, plot=False)
    assert got["n"] == ref["n"] == 360 and got["runtime"] == "mnn"
    assert got["acc1"] == pytest.approx(ref["acc1"], abs=100 / 360 + 1e-9)  # at most one rounding argmax flip


def test_corrupt_and_mismatched(fp32: Path, tmp_path: Path) -> None:
    data = fp32.read_bytes()
    truncated = tmp_path / "truncated.mnn"
    truncated.write_bytes(data[: len(data) // 2])
    write_metadata(truncated, read_metadata(fp32))  # a matching sidecar: the file itself must be refused
    with pytest.raises(ArtifactError, match=r"truncated\.mnn could not be loaded by MNN") as info:
        load_artifact(truncated)
    assert "\n" not in str(info.value)

    garbage = tmp_path / "garbage.mnn"
    garbage.write_bytes(b"not an MNN flatbuffer\n" * 100)
    with pytest.raises(ArtifactError, match=r"garbage\.mnn could not be loaded by MNN"):
        load_artifact(garbage)

    # no embedded metadata (bizCode replaced) and no sidecar
    from mobilenets.deploy.mnn import mnn_convert

    bare = tmp_path / "bare.mnn"
    mnn_convert(fp32, bare, framework="MNN", biz_code="MNN")
    with pytest.raises(ArtifactError, match=r"bare\.mnn carries no mobilenets metadata and bare\.mnn\.json"):
        load_artifact(bare)
    # a sidecar whose input shape disagrees with the graph
    write_metadata(bare, ArtifactMetadata("mnn", (3, SIZE, SIZE), (0.5,) * 3, (0.2,) * 3, 10, batch=1))
    with pytest.raises(ArtifactError, match=r"bare\.mnn: graph input channels is 1 but its metadata says 3"):
        load_artifact(bare)
    write_metadata(bare, ArtifactMetadata("mnn", (1, SIZE, SIZE), (0.5,), (0.2,), 10, batch=4))
    with pytest.raises(ArtifactError, match="graph input batch is 1 but its metadata says 4"):
        load_artifact(bare)


def test_converter_failure_is_one_line(tmp_path: Path) -> None:
    from mobilenets.deploy.mnn import MnnToolError, mnn_convert

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(MnnToolError, match="MNN's converter") as info:
        mnn_convert(bad, tmp_path / "bad.mnn")
    assert "\n" not in str(info.value)


def test_missing_extra_names_the_install(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "MNN" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'mobilenets\[mnn\]'"):
        export_model(weights, "mnn", tmp_path / "m.mnn")
    from mobilenets.deploy.quantize_run import quantize_weights

    with pytest.raises(MissingExtraError, match=r"pip install 'mobilenets\[mnn\]'"):
        quantize_weights(weights, target="mnn", out=tmp_path / "q.mnn", calib_batches=1)
