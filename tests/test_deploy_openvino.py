"""OpenVINO's own int8 (NNCF): integer in the compiled graph, accurate on a trained model, embedded
metadata, and the census that refuses a float model as int8.

Skipped as a whole when the ``openvino`` extra (openvino + nncf) is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None:
    pytest.skip("the openvino extra: pip install 'mobilenets[openvino]'", allow_module_level=True)

from deploy_models import digits_batch
from mobilenets.deploy.export import export_model
from mobilenets.deploy.metadata import ArtifactError, sidecar_path
from mobilenets.deploy.openvino import OpenVINOReport, check_integer, inspect_openvino
from mobilenets.deploy.runtimes import load_artifact
from mobilenets.weights import from_pretrained

SIZE = 16


@pytest.fixture(scope="module")
def weights(digits16_weights: Path) -> Path:
    return digits16_weights


@pytest.fixture(scope="module")
def int8(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from mobilenets.deploy.quantize_run import quantize_weights

    out = tmp_path_factory.mktemp("int8") / "q.xml"
    result = quantize_weights(weights, target="openvino", out=out, calib_batches=4, calib_batch_size=32)
    return out, result


def _compiled(path: Path) -> object:
    import openvino as ov

    return ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})


def test_int8_is_integer_and_accurate(weights: Path, int8: tuple[Path, object]) -> None:
    out, result = int8
    report = inspect_openvino(_compiled(out))
    # Every convolution (depthwise and squeeze-excite included) and fully-connected layer runs in u8/i8 in
    # the compiled graph: NNCF's SE pattern, which would keep this model's 18 SE convs float, is lifted.
    assert not report.float_weighted and not report.float_pooled, (report.float_weighted, report.float_pooled)
    integer = sum(n for (kind, p), n in report.layers.items() if kind == "Convolution" and p in ("u8", "i8"))
    assert integer > 30 and all(p in ("u8", "i8") for (kind, p) in report.layers if kind == "FullyConnected")
    assert result.census is not None and result.census["float_weighted"] == []  # recorded with the file
    # Accuracy on the digits test split: this 16-px, width-0.35 model (92.5%) is int8's hard case, where
    # every NNCF setting tried (presets, full bias correction, overflow fix, 128 or 300 calibration images)
    # landed at 89.4-91.1%; the main-job model loses 0.00 points (docs/benchmarks.md).
    assert result.float_acc1 > 50.0 and result.drop <= 3.5, result.summary()
    assert result.size_bytes > (out.with_suffix(".bin")).stat().st_size  # the .xml with its weights
    predictor = load_artifact(out)
    assert predictor.metadata.precision == "int8" and predictor.metadata.quantization["target"] == "openvino"
    x, _ = digits_batch(64, SIZE)
    model = from_pretrained(weights).eval()
    with torch.no_grad():
        ref = model(x)
    assert (predictor(x).argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    # The metadata is inside the IR: the .xml runs without its sidecar.
    side = sidecar_path(out)
    side.rename(side.with_suffix(".bak"))
    try:
        assert load_artifact(out).metadata.precision == "int8"
    finally:
        side.with_suffix(".bak").rename(side)


def test_a_float_model_fails_the_integer_check(weights: Path, tmp_path: Path) -> None:
    """The defect the census exists for: a float IR is refused as int8."""
    path = export_model(weights, "openvino", tmp_path / "f.xml", verify=False).path
    report = inspect_openvino(_compiled(Path(path)))
    assert report.float_weighted and "float" in report.summary()
    with pytest.raises(ArtifactError, match="conv/fc layers run in float"):
        check_integer(report, "f.xml")
    check_integer(OpenVINOReport(), "empty.xml")  # nothing float: passes


def test_missing_bin_and_refused_options(weights: Path, int8: tuple[Path, object], tmp_path: Path) -> None:
    from mobilenets.deploy.quantize_run import quantize_weights

    out, _ = int8
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(out.read_bytes())
    with pytest.raises(ArtifactError, match="lonely"):
        load_artifact(lonely)
    with pytest.raises(ValueError, match="--method qat is not available for target openvino"):
        quantize_weights(weights, method="qat", target="openvino", out=tmp_path / "q.xml")
    with pytest.raises(ValueError, match="--int8-io is available for target litert, not openvino"):
        quantize_weights(weights, target="openvino", out=tmp_path / "q.xml", int8_io=True)


def test_squeeze_excite_pattern_is_lifted_only_for_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """NNCF's SE ignored pattern is absent inside the block, back afterwards (an error included), and a NNCF
    whose table moved is left alone (the block then says so, and the SE stays float)."""
    from nncf.common.graph.patterns.manager import PatternsManager
    from nncf.common.graph.patterns.patterns import IgnoredPatternNames
    from nncf.common.utils.backend import BackendType

    from mobilenets.deploy.openvino import squeeze_excite_quantized

    def patterns() -> set[object]:
        return set(PatternsManager._get_backend_ignored_patterns_map(BackendType.OPENVINO))

    before = patterns()
    assert IgnoredPatternNames.SE_BLOCK in before
    with pytest.raises(RuntimeError, match="inside"), squeeze_excite_quantized() as lifted:
        assert lifted and patterns() == before - {IgnoredPatternNames.SE_BLOCK}
        raise RuntimeError("inside")
    assert patterns() == before
    monkeypatch.delattr(PatternsManager, "_get_backend_ignored_patterns_map")
    with squeeze_excite_quantized() as lifted:
        assert not lifted
