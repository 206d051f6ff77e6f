"""Deployment: BN folding, export round trips in each runtime, int8 PTQ, artefact eval/predict, bench.

Runs on a tiny MobileNetV3-Small (width 0.35, small-input stem, 1×32×32 digits input) so every format
exports in seconds. ONNX/onnxruntime/onnxscript and torchao are required extras here: if one is missing
the module fails at collection with the ``pip install`` that fixes it. ExecuTorch and OpenVINO are the
heavy optional extras; their tests are skipped (``importorskip``) when they are not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobilenets
from deploy_models import digits_batch, randomize, tiny_v5
from mobilenets.deploy.export import (
    FP32_TOLERANCE,
    ExportVerificationError,
    export_model,
    verify_artifact,
)
from mobilenets.deploy.extras import MissingExtraError
from mobilenets.deploy.formats import FORMATS
from mobilenets.deploy.fuse import fuse_for_inference, prepare_for_export
from mobilenets.deploy.metadata import ArtifactError, sidecar_path
from mobilenets.deploy.runtimes import load_artifact
from mobilenets.weights import save_pretrained

_REQUIRED = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "torchao": "quant"}
_missing = [m for m in _REQUIRED if importlib.util.find_spec(m) is None]
if _missing:
    extras = ",".join(sorted({_REQUIRED[m] for m in _missing}))
    pytest.fail(f"tests/test_deploy.py needs {', '.join(_missing)}: pip install -e '.[{extras}]' torch==2.13.0",
                pytrace=False)

HAS_EXECUTORCH = importlib.util.find_spec("executorch") is not None
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _tiny(in_chans: int = 1) -> nn.Module:
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.35, small_input=True, in_chans=in_chans,
                                    num_classes=10)
    model.pretrained_cfg.update(mean=(0.3051,) * in_chans, std=(0.3235,) * in_chans)
    return randomize(model)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits model saved like a training run (config.json names the dataset)."""
    path = tmp_path_factory.mktemp("weights")
    save_pretrained(_tiny(), path, class_names=[str(i) for i in range(10)], extra={"dataset": "digits"})
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Exports shared by the tests that only need a file (filled by test_export_roundtrip)."""
    return {}


# ------------------------------------------------------------------------------------------ folding
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_fold_batchnorm_keeps_numerics(name: str) -> None:
    model = randomize(mobilenets.create_model(name, num_classes=10, small_input=True, width_mult=0.5))
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Dropout) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the original must be untouched"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert ref.abs().max() > 1e-2  # a non-trivial output, or the comparison means nothing
    assert (ref - out).abs().max().item() <= 1e-5
    with torch.no_grad():
        assert (prepare_for_export(model)(x) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["mobilenet_v4_conv_medium", "mobilenet_v4_hybrid_medium"])
def test_fold_batchnorm_keeps_numerics_v4(name: str) -> None:
    """Fused IB, UIB, the normalised head (Linear + BatchNorm1d) and MQA's key/value norms all fold."""
    model = randomize(mobilenets.create_model(name, num_classes=10, small_input=True, width_mult=0.25))
    fused = fuse_for_inference(model)
    left = [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)]
    # only the pre-attention norms of the hybrid (no layer before them to absorb them) remain
    assert len(left) == (8 if "hybrid" in name else 0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert ref.abs().max() > 1e-2
    assert (ref - out).abs().max().item() <= 1e-5


# ------------------------------------------------------------------------------------------ export
_CASES = [
    ("onnx", "dynamic"),
    ("torchscript", "dynamic"),
    ("pt2", "dynamic"),
    pytest.param("executorch", 1, marks=pytest.mark.skipif(not HAS_EXECUTORCH, reason="executorch extra")),
    pytest.param("openvino", 1, marks=pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra")),
]


@pytest.mark.parametrize(("fmt", "batch"), _CASES)
def test_export_roundtrip(fmt: str, batch: int | str, weights: Path, tmp_path_factory: pytest.TempPathFactory,
                          exports: dict[str, Path]) -> None:
    if fmt == "executorch":
        pytest.importorskip("executorch")
    if fmt == "openvino":
        pytest.importorskip("openvino")
    out = tmp_path_factory.mktemp(fmt) / f"tiny{FORMATS[fmt].suffix}"
    result = export_model(weights, fmt, out, batch=batch)
    assert result.passed and result.max_abs_diff <= FP32_TOLERANCE
    assert out.is_file() and sidecar_path(out).is_file() and result.size_bytes > 10_000
    exports[fmt] = out

    predictor = load_artifact(out)
    meta = predictor.metadata
    assert meta.input_size == (1, 32, 32) and meta.num_classes == 10 and meta.dataset == "digits"
    assert meta.mean == pytest.approx((0.3051,)) and meta.class_names == [str(i) for i in range(10)]
    assert meta.batch == (None if batch == "dynamic" else batch)
    # Any batch works: fixed-batch graphs are run in padded chunks, dynamic ones up to their bound.
    model = mobilenets.weights.from_pretrained(weights).eval()
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        assert (predictor(x) - model(x)).abs().max().item() <= FP32_TOLERANCE
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, 32, 32\)"):
        predictor(torch.randn(1, 3, 32, 32))


@pytest.fixture(scope="module")
def v4_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MobileNetV4-Hybrid-Medium (UIB, fused IB, Mobile MQA, LayerScale, BN head) for digits."""
    path = tmp_path_factory.mktemp("v4")
    model = mobilenets.create_model("mobilenet_v4_hybrid_medium", width_mult=0.25, small_input=True, in_chans=1,
                                    num_classes=10)
    save_pretrained(randomize(model), path, extra={"dataset": "digits"})
    return path


# Exporting the ~40 V4 blocks takes 15-30 s per format: the default run keeps torchscript and pt2 (the
# V4 graph through both PyTorch paths); ONNX, ExecuTorch and OpenVINO of V4 run with -m slow.
_V4_CASES = [
    pytest.param("onnx", "dynamic", marks=pytest.mark.slow),
    ("torchscript", "dynamic"),
    ("pt2", "dynamic"),
    pytest.param("executorch", 1, marks=pytest.mark.slow),
    pytest.param("openvino", 1, marks=[pytest.mark.slow,
                                       pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra")]),
]


@pytest.mark.parametrize(("fmt", "batch"), _V4_CASES)
def test_export_roundtrip_v4_hybrid(fmt: str, batch: int | str, v4_weights: Path, tmp_path: Path) -> None:
    if fmt in ("executorch", "openvino"):
        pytest.importorskip(fmt)
    out = tmp_path / f"v4{FORMATS[fmt].suffix}"
    result = export_model(v4_weights, fmt, out, batch=batch)
    assert result.passed and result.max_abs_diff <= FP32_TOLERANCE
    model = mobilenets.weights.from_pretrained(v4_weights).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    assert ref.abs().max() > 0.1  # a non-trivial output, or the comparison means nothing
    assert (load_artifact(out)(x) - ref).abs().max().item() <= FP32_TOLERANCE


@pytest.fixture(scope="module")
def v5_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shortened MobileNetV5 (every V5 piece: RMSNorm2d, GELU-tanh, MQA, the MSFA neck) for digits."""
    path = tmp_path_factory.mktemp("v5")
    save_pretrained(tiny_v5(), path, extra={"dataset": "digits"})
    return path


@pytest.mark.parametrize(("fmt", "batch"), [
    ("onnx", "dynamic"), ("torchscript", "dynamic"), ("pt2", "dynamic"),
    pytest.param("executorch", 1, marks=pytest.mark.slow),
    pytest.param("openvino", 1, marks=pytest.mark.skipif(not HAS_OPENVINO, reason="openvino extra")),
    ("litert", 1), ("ncnn", 1), ("mnn", 1),
])
def test_export_roundtrip_v5(fmt: str, batch: int | str, v5_weights: Path, tmp_path: Path) -> None:
    """Every runtime that takes V5's ops runs it within the fp32 tolerance: ExecuTorch only with GELU-tanh
    spelled out (XNNPACK computes the exact GELU), ncnn only with the MSFA's adaptive pooling."""
    module = {"litert": "ai_edge_litert", "ncnn": "ncnn", "mnn": "MNN"}.get(fmt, fmt)
    if fmt in ("executorch", "openvino", "litert", "ncnn", "mnn") and importlib.util.find_spec(module) is None:
        pytest.skip(f"{fmt} extra not installed")
    out = tmp_path / f"v5{FORMATS[fmt].suffix}"
    result = export_model(v5_weights, fmt, out, batch=batch)
    assert result.passed and result.max_abs_diff <= FP32_TOLERANCE
    model = mobilenets.weights.from_pretrained(v5_weights).eval()
    x = torch.randn(3 if batch == "dynamic" else 1, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    assert ref.abs().max() > 0.1
    assert (load_artifact(out)(x) - ref).abs().max().item() <= FP32_TOLERANCE


def test_export_coreml_converts_v5(v5_weights: Path, tmp_path: Path) -> None:
    """coremltools' TorchScript frontend fails on V5's traced reshapes; the export falls back to torch.export."""
    if importlib.util.find_spec("coremltools") is None:
        pytest.skip("coreml extra not installed")
    result = export_model(v5_weights, "coreml", tmp_path / "v5.mlpackage", batch=1)
    assert (tmp_path / "v5.mlpackage").is_dir()
    assert result.verified or "not verified on this platform" in result.note


# litert: 24 s of the default run (PT2E capture of the attention blocks, litert-torch conversion): slow.
@pytest.mark.parametrize(("target", "suffix"), [("onnxruntime", ".onnx"),
                                               *(pytest.param(t, s, marks=pytest.mark.slow)
                                                 for t, s in (("litert", ".tflite"), ("x86", ".pt2")))])
def test_ptq_v5(target: str, suffix: str, v5_weights: Path, tmp_path: Path) -> None:
    """int8 quantization takes MobileNetV5: convs go int8, RMSNorm, GELU and the attention matmuls may stay
    float; LiteRT's integer check passes with the attention's own transposes allowed and no others."""
    from mobilenets.deploy.quantize_run import quantize_weights

    if target == "litert" and importlib.util.find_spec("litert_torch") is None:
        pytest.skip("litert extra not installed")

    out = tmp_path / f"v5_int8{suffix}"
    result = quantize_weights(v5_weights, method="ptq", target=target, out=out, calib_batches=2, calib_batch_size=8)
    assert result.calib_images == 16 and load_artifact(out).metadata.precision == "int8"
    model = mobilenets.weights.from_pretrained(v5_weights).eval()
    x, _ = digits_batch(8, size=32)  # what calibration saw: RMSNorm of random-normal inputs leaves its range
    with torch.no_grad():
        ref = model(x)
    got = load_artifact(out)(x)
    # This random-weight V5 (RMSNorm weights and layer scales drawn large) moves ~1.0 of 2.6 in its
    # logits under int8; the logit pattern must survive: centred logits aligned, the same top-1 mostly.
    centred = [(t - t.mean(1, keepdim=True)).flatten() for t in (got, ref)]
    cos = F.cosine_similarity(*centred, dim=0).item()
    agree = (got.argmax(1) == ref.argmax(1)).float().mean().item()
    assert cos > 0.9 and agree >= 0.75, f"{target}: cosine {cos:.3f}, top-1 agreement {agree:.2f}"


def test_verification_fails_on_a_different_model(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    export_model(weights, "torchscript", out, verify=False)
    other = randomize(_tiny(), seed=1)
    with pytest.raises(ExportVerificationError, match="exceeds"):
        verify_artifact(out, other)


def test_export_rejects_bad_arguments(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export_model(weights, "onnx", tmp_path / "x.pt")
    with pytest.raises(ValueError, match="unknown export format 'tflte'; did you mean 'tflite'"):
        export_model(weights, "tflte", tmp_path / "x.tflite")
    # tflite is LiteRT's other name: resolved before the suffix check, which then names the key.
    with pytest.raises(ValueError, match=r"for format litert must end in \.tflite"):
        export_model(weights, "TFLite", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="'dynamic'"):
        export_model(weights, "pt2", tmp_path / "x.pt2", batch="zero")
    with pytest.raises(FileNotFoundError):
        export_model(tmp_path / "nope", "pt2", tmp_path / "x.pt2")


def test_every_format_has_one_writer_and_one_reader() -> None:
    from mobilenets.deploy.export import EXPORTERS
    from mobilenets.deploy.formats import WEIGHTS_FORMAT
    from mobilenets.deploy.runtimes import LOADERS

    assert set(EXPORTERS) == set(FORMATS)
    assert set(LOADERS) == {*FORMATS, WEIGHTS_FORMAT}


def test_missing_extra_names_the_install(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'mobilenets\[openvino\]' torch==2\.13\.0"):
        export_model(weights, "openvino", tmp_path / "m.xml")


# ------------------------------------------------------------------------------- runs anywhere
def _ensure(fmt: str, weights: Path, exports: dict[str, Path], tmp_path: Path) -> Path:
    if fmt not in exports:
        exports[fmt] = export_model(weights, fmt, tmp_path / f"tiny{FORMATS[fmt].suffix}", batch="dynamic",
                                    verify=False).path
    return Path(exports[fmt])


def test_eval_and_predict_accept_artifacts(weights: Path, exports: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    from mobilenets.deploy.evaluate import evaluate_weights, predict_images

    onnx_path = _ensure("onnx", weights, exports, tmp_path)
    ref = evaluate_weights(weights, plot=False)
    got = evaluate_weights(onnx_path, out_dir=tmp_path)
    assert got["n"] == ref["n"] == 360 and got["runtime"] == "onnxruntime"
    assert abs(got["acc1"] - ref["acc1"]) <= 100 / 360 + 1e-9  # at most one float-rounding argmax flip
    assert Path(got["confusion_png"]).is_file()

    img = tmp_path / "digit.png"
    Image.fromarray((torch.rand(8, 8) * 255).to(torch.uint8).numpy()).save(img)
    a = predict_images([str(img)], weights, topk=3)[0]["top"]
    b = predict_images([str(img)], onnx_path, topk=3)[0]["top"]
    assert [p["index"] for p in a] == [p["index"] for p in b]
    assert a[0]["prob"] == pytest.approx(b[0]["prob"], abs=1e-4)


def test_corrupt_and_mismatched_artifacts(weights: Path, exports: dict[str, Path], tmp_path: Path) -> None:
    onnx_path = _ensure("onnx", weights, exports, tmp_path)
    ts_path = _ensure("torchscript", weights, exports, tmp_path)

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:5000])
    with pytest.raises(ArtifactError, match=r"not a valid ONNX model|could not be loaded"):
        load_artifact(truncated)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a zip archive" * 10)
    with pytest.raises(ArtifactError, match="not a TorchScript archive"):
        load_artifact(garbage)

    state_dict = tmp_path / "state.pt"
    torch.save(_tiny().state_dict(), state_dict)
    with pytest.raises(ArtifactError, match="not a TorchScript module"):
        load_artifact(state_dict)

    bad_pt2 = tmp_path / "bad.pt2"
    bad_pt2.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArtifactError, match=r"torch\.export"):
        load_artifact(bad_pt2)

    empty = tmp_path / "empty.onnx"
    empty.touch()
    with pytest.raises(ArtifactError, match="empty"):
        load_artifact(empty)

    with pytest.raises(ArtifactError, match="unknown artefact type"):
        load_artifact(_touch(tmp_path / "model.h5"))
    with pytest.raises(FileNotFoundError):
        load_artifact(tmp_path / "missing.onnx")

    # A sidecar copied from another artefact is refused (SHA-256), not silently trusted.
    stale = tmp_path / "stale.pte"
    stale.write_bytes(b"\x00\x00\x00\x00ET12" + b"\x00" * 64)
    shutil.copy(sidecar_path(ts_path), sidecar_path(stale))
    with pytest.raises(ArtifactError, match="SHA-256"):
        load_artifact(stale)

    if HAS_EXECUTORCH and "executorch" in exports:
        # A truncated program whose sidecar was rewritten to match: the runtime's refusal, in one line.
        from mobilenets.deploy.metadata import read_metadata, write_metadata

        cut = tmp_path / "cut.pte"
        cut.write_bytes(Path(exports["executorch"]).read_bytes()[:4000])
        write_metadata(cut, read_metadata(exports["executorch"]))
        with pytest.raises(ArtifactError, match="could not be loaded by ExecuTorch"):
            load_artifact(cut)

    # Metadata that disagrees with the graph's declared input (a 3-channel sidecar on a 1-channel ONNX).
    lone = tmp_path / "lone.onnx"
    import onnx

    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(lone))
    with pytest.raises(ArtifactError, match="no mobilenets metadata"):
        load_artifact(lone)
    from mobilenets.deploy.metadata import ArtifactMetadata, write_metadata

    write_metadata(lone, ArtifactMetadata("onnx", (3, 32, 32), (0.5,) * 3, (0.2,) * 3, 10, batch=None))
    with pytest.raises(ArtifactError, match="channels is 1 but its metadata says 3"):
        load_artifact(lone)

    # Evaluating on a dataset the artefact does not fit is a clear error.
    from mobilenets.deploy.evaluate import evaluate_weights

    with pytest.raises(ValueError, match="expects 1-channel images but synthetic has 3"):
        evaluate_weights(onnx_path, data="synthetic", plot=False)


def _touch(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


# ------------------------------------------------------------------------------------------ int8
@pytest.mark.parametrize(("target", "suffix"), [("x86", ".pt2"), ("onnxruntime", ".onnx")])
def test_ptq_tiny_calibration_and_int8_eval(target: str, suffix: str, weights: Path, tmp_path: Path) -> None:
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path / f"int8{suffix}"
    result = quantize_weights(weights, method="ptq", target=target, out=out, calib_batches=2, calib_batch_size=8)
    assert out.is_file() and result.calib_images == 16
    assert 0.0 <= result.int8_acc1 <= 100.0 and 0.0 <= result.float_acc1 <= 100.0
    predictor = load_artifact(out)
    assert predictor.metadata.precision == "int8" and predictor.metadata.quantization["target"] == target
    # int8 logits stay close to float ones (coarse bound: this is a random-weight model).
    model = mobilenets.weights.from_pretrained(weights).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    assert (predictor(x) - ref).abs().max().item() < 0.25 * ref.abs().max().item() + 0.05


@pytest.mark.slow  # calibrating and converting the ~40 V4 blocks: 35-40 s per target
@pytest.mark.parametrize(("target", "suffix"), [("onnxruntime", ".onnx"), ("x86", ".pt2")])
def test_ptq_v4_hybrid(target: str, suffix: str, v4_weights: Path, tmp_path: Path) -> None:
    """int8 quantization handles MobileNetV4's attention (the matmuls may stay float, convs go int8)."""
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path / f"v4_int8{suffix}"
    result = quantize_weights(v4_weights, method="ptq", target=target, out=out, calib_batches=2, calib_batch_size=8)
    assert result.calib_images == 16 and load_artifact(out).metadata.precision == "int8"
    model = mobilenets.weights.from_pretrained(v4_weights).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    assert (load_artifact(out)(x) - ref).abs().max().item() < 0.25 * ref.abs().max().item() + 0.05


def test_quantize_rejects_bad_arguments(weights: Path, tmp_path: Path) -> None:
    from mobilenets.deploy.quantize_run import quantize_weights

    with pytest.raises(ValueError, match=r"must end in \.pte"):
        quantize_weights(weights, target="xnnpack", out=tmp_path / "x.onnx", calib_batches=1)
    with pytest.raises(ValueError, match="calib-batches"):
        quantize_weights(weights, out=tmp_path / "x.pt2", calib_batches=0)


# ------------------------------------------------------------------------------------------ CLI / bench
def _cli(argv: list[str]) -> int:
    from mobilenets.cli.deploy import register

    parser = argparse.ArgumentParser(prog="mobilenets")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def test_bench_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "mobilenet_v3_small", "--set", "width_mult=0.35", "--set", "small_input=true",
            "--backends", "eager,channels_last", "--batch", "1,2", "--min-time", "0.05", "--min-runs", "3", "--threads", "1",
            "--json"]
    assert _cli(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == 4
    for row in rows:
        assert {"backend", "batch", "median_ms", "p90_ms", "images_per_s", "peak_rss_mb", "speedup_vs_eager"} <= set(row)
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] * 0.999 and row["runs"] >= 3
    assert [(r["backend"], r["batch"]) for r in rows] == [("eager", 1), ("channels_last", 1), ("eager", 2),
                                                          ("channels_last", 2)]
    assert rows[0]["speedup_vs_eager"] == pytest.approx(1.0)


def test_bench_rounds_time_the_backends_in_turn(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--rounds 3``: each backend is timed in three slices, the slices of all backends taken in turn."""
    from mobilenets.deploy import bench, timing

    order: list[int] = []
    real = timing.time_callable

    def spy(fn: object, x: torch.Tensor, **kw: object) -> list[float]:
        order.append(id(fn))
        return real(fn, x, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(timing, "time_callable", spy)
    argv = ["bench", "mobilenet_v3_small", "--set", "width_mult=0.35", "--set", "small_input=true",
            "--backends", "eager,channels_last", "--min-time", "0", "--min-runs", "6", "--threads", "1",
            "--rounds", "3", "--json"]
    assert _cli(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in rows] == ["eager", "channels_last"]
    assert [r["runs"] for r in rows] == [6, 6]  # 3 slices of ceil(6 / 3) calls, pooled into one median
    assert len(order) == 6  # in turn: a b a b a b
    assert order[0::2] == [order[0]] * 3 and order[1::2] == [order[1]] * 3 and order[0] != order[1]
    assert rows[0]["speedup_vs_eager"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="--rounds 0 invalid; expected >= 1"):
        bench.run_bench("mobilenet_v3_small", rounds=0)


def test_bench_times_the_same_random_weights_in_every_run() -> None:
    from mobilenets.deploy.bench import load_bench_model

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    _, a, _ = load_bench_model("mobilenet_v3_small", {"width_mult": 0.35})
    _, b, _ = load_bench_model("mobilenet_v3_small", {"width_mult": 0.35})
    assert a is not None and b is not None
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    other = mobilenets.create_model("mobilenet_v3_small", width_mult=0.35)  # the init is random: seeding mattered
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values(), strict=True))


def test_bench_an_artifact_and_best(weights: Path, exports: dict[str, Path], tmp_path: Path) -> None:
    from mobilenets.deploy.bench import BACKENDS, best_backend, parse_backends, run_bench

    rows = run_bench(str(_ensure("onnx", weights, exports, tmp_path)), batches=(3,), min_time_s=0.05, min_runs=3,
                     threads=1)
    assert rows[0].backend == "artifact:onnxruntime" and rows[0].batch == 3
    assert parse_backends("best,eager", 1) == ["best", "eager"]  # resolved by measuring, in run_bench
    assert BACKENDS[best_backend(1)].available()
    with pytest.raises(ValueError, match=r"unknown backend 'onnxruntim'.*did you mean 'onnxruntime'"):
        parse_backends("eager,onnxruntim", 1)


def test_best_measures_here_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mobilenets.deploy.bench as bench

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "best.json"))
    monkeypatch.setattr(bench, "BEST_CANDIDATES", ("channels_last", "onnxruntime"))
    logs: list[str] = []
    kwargs = {"width_mult": 0.35, "small_input": True, "num_classes": 10}
    rows = bench.run_bench("mobilenet_v3_small", backends="best", kwargs=kwargs, input_size=32, threads=1,
                           min_time_s=0.05, min_runs=3, log=logs.append)
    chosen = rows[1].backend
    assert chosen in ("channels_last", "onnxruntime") and [r.backend for r in rows] == ["eager", chosen]
    measured = next(m for m in logs if m.startswith("best: "))
    assert "channels_last" in measured and "onnxruntime" in measured  # both were timed
    cache = json.loads((tmp_path / "best.json").read_text())
    assert [v["backend"] for v in cache.values()] == [chosen]
    logs.clear()
    bench.run_bench("mobilenet_v3_small", backends="best", kwargs=kwargs, input_size=32, threads=1,
                    min_time_s=0.05, min_runs=3, log=logs.append)
    assert any("measured before on this machine" in m for m in logs)


def test_cli_export_prints_diff_size_and_time(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["export", str(weights), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    out = capsys.readouterr().out
    assert "max abs diff" in out and "MiB" in out and "export" in out and "OK" in out
    with pytest.raises(SystemExit):
        _cli(["export", str(weights), "--format", "caffe", "--out", str(tmp_path / "m.caffe")])
