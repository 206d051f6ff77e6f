"""NCNN: pnnx export round trips in the ncnn runtime, fp16, corrupt files, the missing extra, eval, and the
int8 file written for ncnn (integer census, accuracy, a float layer refused, a bad .bin named, bench).

Tiny 1×32×32 models (width 0.25-0.35, small-input stems) so each pnnx conversion takes a second or two.
Skipped as a whole when ``pnnx`` or ``ncnn`` (the ``ncnn`` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytest.importorskip("pnnx")
pytest.importorskip("ncnn")

from deploy_models import tiny
from mobilenets.deploy.export import FP32_TOLERANCE, ExportResult, export_model
from mobilenets.deploy.extras import MissingExtraError
from mobilenets.deploy.fuse import prepare_for_export
from mobilenets.deploy.metadata import ArtifactError, read_metadata, sidecar_path, write_metadata
from mobilenets.deploy.runtimes import load_artifact
from mobilenets.weights import from_pretrained, save_pretrained


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """ncnn on one thread in this file: evaluation loads artefacts with the default (all cores), and
    ncnn's OpenMP workers spin between layers, which on a shared CPU makes 360 tiny images take 20 s."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mobilenets.deploy.ncnn.default_threads", lambda: 1)
        yield


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digits model saved like a training run (config.json names the dataset)."""
    path = tmp_path_factory.mktemp("weights")
    save_pretrained(tiny(), path, class_names=[str(i) for i in range(10)], extra={"dataset": "digits"})
    return path


@pytest.fixture(scope="module")
def exported(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 export of ``weights`` (verified by export_model), shared by the tests that need a file."""
    out = tmp_path_factory.mktemp("ncnn") / "m.ncnn.param"
    result = export_model(weights, "ncnn", out, threads=1)
    assert result.passed and result.verified, result.summary()
    assert result.max_abs_diff <= FP32_TOLERANCE
    return out


def test_fp32_round_trip(weights: Path, exported: Path) -> None:
    # Only the two NCNN files and the sidecar: pnnx's side files stay in its temporary directory.
    assert sorted(p.name for p in exported.parent.iterdir()) == ["m.ncnn.bin", "m.ncnn.param", "m.ncnn.param.json"]
    predictor = load_artifact(exported, threads=1)
    meta = predictor.metadata
    assert (meta.format, meta.precision, meta.batch, meta.input_size) == ("ncnn", "fp32", 1, (1, 32, 32))
    eager = prepare_for_export(from_pretrained(weights).eval())
    x = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(3))  # 3 images: chunks of batch 1
    got = predictor(x)
    with torch.no_grad():
        want = eager(x)
    assert got.dtype == torch.float32 and got.shape == (3, 10)
    assert float((got - want).abs().max()) <= FP32_TOLERANCE


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v4_conv_small"])
def test_families_round_trip(name: str, tmp_path: Path) -> None:
    result = export_model(tiny(name, 0.25), "ncnn", tmp_path / f"{name}.ncnn.param", threads=1)
    assert result.passed and result.verified, result.summary()
    assert result.max_abs_diff <= FP32_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "resnet18"])
def test_more_families_round_trip(name: str, tmp_path: Path) -> None:
    result = export_model(tiny(name, 0.25), "ncnn", tmp_path / f"{name}.ncnn.param", threads=1)
    assert result.passed and result.verified, result.summary()
    assert result.max_abs_diff <= FP32_TOLERANCE


@pytest.fixture(scope="module")
def half(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportResult]:
    """The fp16 export of ``weights``; its accuracy check also yields the weights' own top-1 on digits."""
    out = tmp_path_factory.mktemp("ncnn16") / "half.ncnn.param"
    return out, export_model(weights, "ncnn", out, precision="fp16", threads=1)


def test_fp16_export(half: tuple[Path, ExportResult], exported: Path) -> None:
    out, result = half
    # Reduced precision passes on unchanged top-1 (digits), not on the fp32 logit tolerance.
    assert result.passed and result.verified and result.accuracy is not None, result.summary()
    assert result.accuracy["top1_unchanged"]
    assert 0.0 <= result.max_abs_diff < 5e-2
    assert read_metadata(out).precision == "fp16"
    assert load_artifact(out, threads=1).metadata.precision == "fp16"
    # fp16 weight storage: the .bin is about half the fp32 one.
    assert out.with_suffix(".bin").stat().st_size < 0.6 * exported.with_suffix(".bin").stat().st_size


def test_fixed_batch_one(weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one image at a time"):
        export_model(weights, "ncnn", tmp_path / "b4.ncnn.param", batch=4)
    with pytest.raises(ValueError, match="--batch dynamic invalid for ncnn"):
        export_model(weights, "ncnn", tmp_path / "dyn.ncnn.param", batch="dynamic")


def _copy(src: Path, dst: Path, *, param: bytes | None = None, weights: bytes | None = None,
          bin_too: bool = True) -> Path:
    """Copy an export (optionally altering a file) with a sidecar rewritten to match the new .param,
    so that the check under test, not the sidecar's SHA-256, is what refuses it."""
    dst.write_bytes(src.read_bytes() if param is None else param)
    if bin_too:
        dst.with_suffix(".bin").write_bytes(src.with_suffix(".bin").read_bytes() if weights is None else weights)
    write_metadata(dst, read_metadata(src))
    return dst


def test_corrupt_and_mismatched_files(exported: Path, tmp_path: Path) -> None:
    lone = _copy(exported, tmp_path / "lone.ncnn.param", bin_too=False)
    with pytest.raises(ArtifactError, match=r"lone\.ncnn\.param: the weights file lone\.ncnn\.bin is missing"):
        load_artifact(lone)

    text = exported.read_bytes()
    cut = _copy(exported, tmp_path / "cut.ncnn.param", param=text[:len(text) // 2])
    with pytest.raises(ArtifactError, match=r"cut\.ncnn\.param.*(truncated|malformed)"):
        load_artifact(cut)

    lines = text.splitlines(keepends=True)
    cut_on_line = _copy(exported, tmp_path / "lines.ncnn.param", param=b"".join(lines[:len(lines) // 2]))
    with pytest.raises(ArtifactError, match=r"lines\.ncnn\.param: NCNN \.param declares \d+ layers but holds"):
        load_artifact(cut_on_line)

    garbage = _copy(exported, tmp_path / "garbage.ncnn.param", param=b"\x00\xffnot a param file" * 20)
    with pytest.raises(ArtifactError, match=r"garbage\.ncnn\.param is not an NCNN \.param file"):
        load_artifact(garbage)

    size = exported.with_suffix(".bin").stat().st_size
    short = _copy(exported, tmp_path / "short.ncnn.param", weights=exported.with_suffix(".bin").read_bytes()[:size // 2])
    with pytest.raises(ArtifactError, match=rf"short\.ncnn\.bin is {size // 2} bytes but the export .* wrote {size}"):
        load_artifact(short)

    noise = torch.randn(size // 4, generator=torch.Generator().manual_seed(0)).numpy().tobytes()
    same_size = _copy(exported, tmp_path / "noise.ncnn.param", weights=noise)
    with pytest.raises(ArtifactError, match=r"noise\.ncnn\.bin differs from the weights exported .*SHA-256"):
        load_artifact(same_size)

    # Without the recorded size/digest (a hand-written sidecar), ncnn's own refusal comes through in one line.
    bare = _copy(exported, tmp_path / "bare.ncnn.param", weights=exported.with_suffix(".bin").read_bytes()[:size // 2])
    meta = read_metadata(bare)
    meta.extra.clear()
    write_metadata(bare, meta)
    with pytest.raises(ArtifactError, match=r"bare\.ncnn\.bin could not be loaded by ncnn .*read weight_data failed.*; layer load_model"):
        load_artifact(bare)

    nosidecar = _copy(exported, tmp_path / "nosidecar.ncnn.param")
    sidecar_path(nosidecar).unlink()
    with pytest.raises(ArtifactError, match=r"nosidecar\.ncnn\.param carries no mobilenets metadata"):
        load_artifact(nosidecar)


def test_pnnx_failure_is_one_line(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pnnx

    fake = tmp_path / "pnnx"
    fake.write_text("#!/bin/sh\necho '############# pass_level0' >&2\necho 'error: unsupported op aten::foo' >&2\n"
                    "echo 'bye' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(pnnx, "EXEC_PATH", str(fake))
    with pytest.raises(ArtifactError) as info:
        export_model(weights, "ncnn", tmp_path / "f.ncnn.param")
    message = str(info.value)
    assert "\n" not in message
    assert "f.ncnn.param (exit status 3): error: unsupported op aten::foo" in message
    assert not (tmp_path / "f.ncnn.param").exists()


def test_missing_extra_names_the_install(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pnnx" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'mobilenets\[ncnn\]' torch==2\.13\.0"):
        export_model(weights, "ncnn", tmp_path / "m.ncnn.param")


def test_missing_runtime_names_the_install(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ncnn" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'mobilenets\[ncnn\]'"):
        load_artifact(exported)


def test_eval_matches_weights(weights: Path, exported: Path, half: tuple[Path, ExportResult]) -> None:
    """``mobilenets eval model.ncnn.param`` gives the weights' top-1 (theirs measured by the fp16 check)."""
    from mobilenets.deploy.evaluate import evaluate_weights

    accuracy = half[1].accuracy
    assert accuracy is not None
    got = evaluate_weights(exported, plot=False)
    assert got["dataset"] == accuracy["dataset"] == "digits"
    assert got["acc1"] == pytest.approx(accuracy["top1_fp32"], abs=1e-9)


# ------------------------------------------------------------------------------------ int8
@pytest.fixture(scope="module")
def int8(digits16_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """``quantize --target ncnn`` of the trained 16-px digits model (calibrated on 128 training images)."""
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path_factory.mktemp("ncnn8") / "q.ncnn.param"
    return out, quantize_weights(digits16_weights, target="ncnn", out=out, calib_batches=4, calib_batch_size=32)


def test_int8_is_integer_and_accurate(digits16_weights: Path, int8: tuple[Path, object],
                                      tmp_path: Path) -> None:
    from deploy_models import digits_batch
    from mobilenets.deploy.ncnn import INT8_TAG, inspect_ncnn_int8, parse_param, split_bin

    out, result = int8
    report = inspect_ncnn_int8(out)
    # Every convolution (depthwise included) and the fully-connected layers hold int8 weights and int8 inputs.
    assert not report.float_weighted
    kinds = {kind for kind, _ in report.layers}
    assert {"Convolution", "ConvolutionDepthWise", "InnerProduct"} <= kinds
    assert all(storage == "int8" for _, storage in report.layers)
    assert report.requantized > 0  # conv -> conv pairs hand int8 over without a dequantize
    assert result.census is not None and result.census["float_weighted"] == []  # recorded with the file
    _, layers = parse_param(out, out.read_text())
    chunks = split_bin(out, layers, out.with_suffix(".bin").read_bytes())
    first = next(c for layer, c in zip(layers, chunks, strict=True) if layer.type == "Convolution")
    assert int.from_bytes(first[0][:4], "little") == INT8_TAG
    # int8 weights: the .bin is about a quarter of the fp32 one.
    fp32 = tmp_path / "f.ncnn.param"
    export_model(digits16_weights, "ncnn", fp32, verify=False)
    assert out.with_suffix(".bin").stat().st_size < 0.4 * fp32.with_suffix(".bin").stat().st_size
    # Accuracy on digits' test split, float vs int8, as for every target (the litert test's bound).
    assert result.float_acc1 > 50.0 and result.drop <= 2.0, result.summary()
    predictor = load_artifact(out, threads=1)
    assert predictor.metadata.precision == "int8" and predictor.metadata.quantization["target"] == "ncnn"
    x, _ = digits_batch(64, 16)
    got, want = predictor(x), load_artifact(fp32, threads=1)(x)
    # Really computed in int8 (logits move), yet the same answers on nearly every image.
    assert float((got - want).abs().max()) > 1e-3
    assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.9


@pytest.mark.parametrize("name", ["mobilenet_v4_hybrid_medium", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_int8_families(name: str, tmp_path: Path) -> None:
    """The hybrid's attention brings layers with data besides conv/fc (MemoryData, BatchNorm) and float MatMuls:
    the .bin is still walked to the last byte, and every conv/fc is int8."""
    from mobilenets.deploy.ncnn import inspect_ncnn_int8
    from mobilenets.deploy.quantize import quantize_model

    model = tiny(name, 0.25).eval()
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(8, 1, 32, 32, generator=gen) for _ in range(2)]
    out = quantize_model(model, "ptq", "ncnn", tmp_path / "q.ncnn.param", calib)
    report = inspect_ncnn_int8(out)
    assert not report.float_weighted and sum(report.layers.values()) > 15
    if name.startswith("mobilenet_v4_hybrid"):
        assert {"MemoryData", "BatchNorm", "MatMul"} <= {ln.split()[0] for ln in out.read_text().splitlines()[2:]}
    x = torch.randn(4, 1, 32, 32, generator=gen)
    with torch.no_grad():
        want = prepare_for_export(model)(x)
    got = load_artifact(out, threads=1)(x)
    assert float((got - want).abs().max()) < 0.1 * float(want.abs().max())


def test_int8_census_refuses_float_layers(digits16_weights: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect the census exists for: a file that keeps a conv/fc in float (here the head's two FCs) is
    not called int8."""
    from mobilenets.deploy import ncnn as ncnn_mod
    from mobilenets.deploy.quantize_run import quantize_weights

    fp32 = tmp_path / "f.ncnn.param"
    export_model(digits16_weights, "ncnn", fp32, verify=False)
    report = ncnn_mod.inspect_ncnn_int8(fp32)
    assert report.float_weighted and not any(storage == "int8" for _, storage in report.layers)
    monkeypatch.setattr(ncnn_mod, "QUANTIZABLE", {"Convolution": 2, "ConvolutionDepthWise": 1})
    with pytest.raises(ArtifactError, match=r"q\.ncnn\.param: not an integer model, 2 conv/fc layers stay float: "
                                            r"\S+ \(InnerProduct\), \S+ \(InnerProduct\)"):
        quantize_weights(digits16_weights, target="ncnn", out=tmp_path / "q.ncnn.param", calib_batches=1)


def test_int8_reader_names_a_bad_bin(int8: tuple[Path, object], tmp_path: Path) -> None:
    from mobilenets.deploy.ncnn import format_param, inspect_ncnn_int8, parse_param

    out, _ = int8
    data = out.with_suffix(".bin").read_bytes()
    cut = tmp_path / "cut.ncnn.param"
    cut.write_text(out.read_text())
    cut.with_suffix(".bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"cut\.ncnn\.bin: ends inside the weights of \S+ \(\w+\); truncated"):
        inspect_ncnn_int8(cut)
    long = tmp_path / "long.ncnn.param"
    long.write_text(out.read_text())
    long.with_suffix(".bin").write_bytes(data + b"\0" * 8)
    with pytest.raises(ArtifactError, match=r"long\.ncnn\.bin: 8 bytes left after the weights of every layer"):
        inspect_ncnn_int8(long)
    # The .param writer gives back what it read.
    blobs, layers = parse_param(out, out.read_text())
    assert parse_param(out, format_param(blobs, layers)) == (blobs, layers)


def test_int8_ncnn_runs_in_bench() -> None:
    from mobilenets.deploy.bench import parse_backends, run_bench

    assert "int8-ncnn" in parse_backends("int8", 1)
    results = run_bench("mobilenet_v3_small", backends="int8-ncnn", input_size=32, threads=1,
                        kwargs={"width_mult": 0.35, "num_classes": 10}, min_time_s=0.0, min_runs=2)
    assert [r.backend for r in results] == ["eager", "int8-ncnn"] and results[1].median_ms > 0
