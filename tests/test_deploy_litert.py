"""LiteRT: litert-torch export round trips in ai_edge_litert, NHWC input, fp16 weights, full-integer int8
(proved from the flatbuffer), corrupt files; Core ML converts and is reported as not verified off macOS.

Skipped as a whole when the ``litert`` extra is missing. Each litert-torch conversion takes 10-20 s, so the
module shares its exports through module-scoped fixtures.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_litert") is None:
    pytest.skip("the litert extra: pip install 'mobilenets[litert]'", allow_module_level=True)

from deploy_models import digits_batch, randomize, tiny
from mobilenets.deploy.export import FP32_TOLERANCE, export_model
from mobilenets.deploy.extras import MissingExtraError
from mobilenets.deploy.litert import check_integer, inspect_tflite
from mobilenets.deploy.metadata import ArtifactError, sidecar_path
from mobilenets.deploy.runtimes import load_artifact
from mobilenets.weights import from_pretrained

SIZE = 16


@pytest.fixture(scope="module")
def weights(digits16_weights: Path) -> Path:
    return digits16_weights


@pytest.fixture(scope="module")
def fp32(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("litert") / "m.tflite"
    result = export_model(weights, "litert", out)
    assert result.verified and result.passed and result.max_abs_diff <= FP32_TOLERANCE, result.summary()
    assert result.runtime == "litert" and result.batch == 1
    return out


@pytest.fixture(scope="module")
def int8(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path_factory.mktemp("int8") / "q.tflite"
    result = quantize_weights(weights, target="litert", out=out, calib_batches=4, calib_batch_size=32)
    return out, result


def test_fp32_roundtrip_chunking_and_embedded_metadata(weights: Path, fp32: Path) -> None:
    predictor = load_artifact(fp32, threads=1)
    meta = predictor.metadata
    assert meta.format == "litert" and meta.batch == 1 and meta.input_size == (1, SIZE, SIZE)
    model = from_pretrained(weights).eval()
    x = digits_batch(3, SIZE)[0]  # batch 3 through a batch-1 file
    with torch.no_grad():
        ref = model(x)
    assert ref.abs().max() > 1.0 and ref.std(0).max() > 0.1, "logits must be large and depend on the input"
    assert (predictor(x) - ref).abs().max().item() <= FP32_TOLERANCE
    # The metadata is inside the flatbuffer: the file runs without its sidecar.
    side = sidecar_path(fp32)
    side.rename(side.with_suffix(".bak"))
    try:
        assert load_artifact(fp32).metadata.class_names == [str(i) for i in range(10)]
    finally:
        side.with_suffix(".bak").rename(side)


def test_nhwc_input_equals_nchw(weights: Path, fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "nhwc.tflite"
    result = export_model(weights, "litert", out, channels_last_io=True)
    assert result.passed and result.layout == "NHWC"
    from ai_edge_litert.interpreter import Interpreter

    shape = list(Interpreter(str(out)).get_input_details()[0]["shape"])
    assert shape == [1, SIZE, SIZE, 1], shape
    x = digits_batch(2, SIZE)[0]
    assert torch.allclose(load_artifact(out)(x), load_artifact(fp32)(x), atol=1e-5)
    assert inspect_tflite(out).transposes == []  # NHWC in: not even the input transpose


@pytest.mark.slow  # a litert-torch conversion (12-40 s) beyond the ones the fixtures share
def test_fp16_weights_pass_the_top1_check(weights: Path, fp32: Path, tmp_path: Path) -> None:
    out = tmp_path / "m16.tflite"
    result = export_model(weights, "litert", out, precision="fp16")
    assert result.precision == "fp16" and result.accuracy is not None
    assert result.accuracy["top1_unchanged"] and result.passed, result.summary()
    assert result.accuracy["top1_fp32"] > 50.0  # a trained model, so "unchanged" is a real check
    assert "FLOAT16" in inspect_tflite(out).tensors


def test_int8_is_integer_and_accurate(weights: Path, int8: tuple[Path, object]) -> None:
    out, result = int8
    report = inspect_tflite(out)
    # Every conv / fully-connected computes in int8; the only float tensors are the float io pair.
    assert not report.float_weighted
    conv_ops = sum(v for (op, i, o), v in report.ops.items() if op in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    assert conv_ops > 10 and all(i == "INT8" for (op, i, o) in report.ops if op in ("CONV_2D", "FULLY_CONNECTED"))
    assert report.tensors["FLOAT32"] == 2 and report.tensors["INT8"] > 50
    assert report.input_types == ["FLOAT32"] and report.output_types == ["FLOAT32"]
    assert report.transposes in ([], ["graph input"])  # 1-channel NCHW -> NHWC is a reshape, not a transpose
    assert result.census is not None and result.census["float_weighted"] == []  # recorded in the sidecar
    # Accuracy: within 2 points of float on the digits test split (the tiny model is at ~90%).
    assert result.float_acc1 > 50.0 and result.drop <= 2.0, result.summary()
    assert load_artifact(out).metadata.precision == "int8"


@pytest.mark.slow  # a litert-torch conversion (12-40 s) beyond the ones the fixtures share
def test_int8_io_and_the_checks_that_catch_float(weights: Path, tmp_path: Path) -> None:
    from mobilenets.deploy.litert import TFLiteReport
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path / "q8io.tflite"
    result = quantize_weights(weights, target="litert", out=out, calib_batches=2, calib_batch_size=16,
                              int8_io=True, evaluate=False)
    report = inspect_tflite(out)
    assert report.input_types == ["INT8"] and report.output_types == ["INT8"] and "FLOAT32" not in report.tensors
    # The predictor quantizes the float batch with the input's scale and zero point.
    x, _ = digits_batch(64, SIZE)
    model = from_pretrained(weights).eval()
    with torch.no_grad():
        ref = model(x)
    assert (load_artifact(out)(x).argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    assert result.census is not None
    bad = TFLiteReport(float_weighted=["CONV_2D #3 (FLOAT32 input, FLOAT32 weights)"])
    with pytest.raises(ArtifactError, match="not an integer model"):
        check_integer(bad, "x.tflite", nhwc=False)
    with pytest.raises(ArtifactError, match="TRANSPOSE"):
        check_integer(TFLiteReport(transposes=["graph input", "CONV_2D"]), "x.tflite", nhwc=False)


@pytest.mark.slow  # a litert-torch conversion (12-40 s) beyond the ones the fixtures share
def test_litert_float_litert_quantizer_would_fail_the_check(weights: Path, tmp_path: Path) -> None:
    """The defect the census exists for: a float model is refused as int8 (a .tflite with float convs)."""
    report = inspect_tflite(export_model(weights, "litert", tmp_path / "f.tflite", verify=False).path)
    assert report.float_weighted
    with pytest.raises(ArtifactError, match="weighted ops run in float"):
        check_integer(report, "f.tflite", nhwc=False)


def test_corrupt_and_mismatched(fp32: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(fp32.read_bytes()[:300])
    with pytest.raises(ArtifactError, match=r"cut\.tflite"):
        load_artifact(truncated)
    garbage = tmp_path / "junk.tflite"
    garbage.write_bytes(b"\0" * 64)
    with pytest.raises(ArtifactError, match=r"junk.tflite.*TFL3"):
        load_artifact(garbage)
    # Metadata of another model (different input size) beside a file without embedded metadata.
    side = json.loads(sidecar_path(fp32).read_text())
    side["input_size"] = [1, 32, 32]
    other = tmp_path / "other.tflite"
    from mobilenets.deploy.litert import _MAGIC

    data = fp32.read_bytes()
    assert data[4:8] == _MAGIC
    other.write_bytes(data)
    from mobilenets.deploy.metadata import ArtifactMetadata

    meta = ArtifactMetadata.from_dict(side, "test")
    from mobilenets.deploy.litert import LiteRTPredictor

    with pytest.raises(ArtifactError, match="metadata belongs to another artefact"):
        LiteRTPredictor(other, meta, threads=1)


def test_bad_options_and_missing_extra(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="--batch dynamic invalid for litert"):
        export_model(weights, "litert", tmp_path / "d.tflite", batch="dynamic")
    with pytest.raises(ValueError, match="--precision 'bf16' invalid for litert"):
        export_model(weights, "litert", tmp_path / "b.tflite", precision="bf16")
    with pytest.raises(ValueError, match="--channels-last-io is not available for onnx"):
        export_model(weights, "onnx", tmp_path / "m.onnx", channels_last_io=True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'mobilenets\[litert\]'"):
        export_model(weights, "litert", tmp_path / "m.tflite")


@pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="the coreml extra")
def test_coreml_converts_and_is_never_reported_verified_off_macos(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.mlpackage"
    result = export_model(weights, "coreml", out)
    assert out.is_dir() and (out / "Manifest.json").is_file() and result.size_bytes > 0
    if sys.platform == "darwin":
        assert result.verified and result.passed
        return
    assert not result.verified and "not verified on this platform" in result.status
    assert "OK" not in result.summary()
    with pytest.raises(ArtifactError, match="Core ML predicts on macOS only"):
        load_artifact(out)


def test_quantize_litert_refuses_qat(weights: Path, tmp_path: Path) -> None:
    from mobilenets.deploy.quantize_run import quantize_weights

    with pytest.raises(ValueError, match="--method qat is not available for target litert"):
        quantize_weights(weights, method="qat", target="litert", out=tmp_path / "q.tflite")
    with pytest.raises(ValueError, match="--int8-io is available for target litert, not x86"):
        quantize_weights(weights, target="x86", out=tmp_path / "q.pt2", int8_io=True)


@pytest.mark.slow  # two more litert-torch conversions
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v4_conv_small"])
def test_other_families_roundtrip(name: str, tmp_path: Path) -> None:
    model = randomize(tiny(name, width=0.25, size=SIZE))
    with torch.no_grad():
        ref = model(digits_batch(8, SIZE)[0])
    assert ref.std(0).max() > 1e-4  # the randomized model's logits depend on its input
    result = export_model(model, "litert", tmp_path / f"{name}.tflite")
    assert result.passed and result.max_abs_diff <= FP32_TOLERANCE, result.summary()
