"""``pretrained="hf-hub:ORG/REPO"``: timm repositories and our own format, from a local Hugging Face cache.

Nothing is downloaded: each test fills a temporary cache in the hub's on-disk layout
(``models--ORG--REPO/snapshots/<commit>/...`` and ``refs/main``) with the existing weight fixtures and
runs with ``HF_HUB_OFFLINE=1``, as a machine without network would.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cli_env import cli_env
from mobilenets.weights import (
    WeightsError,
    create_model,
    from_pretrained,
    load_pretrained,
    load_weights,
    save_pretrained,
)
from mobilenets.weights.hub import HubNotInstalled, parse_hub_reference
from mobilenets.weights.registry import WeightsNotAvailable
from mobilenets.weights.sources import timm as timm_source
from test_weights import EXPECTED, FIXTURES, MANIFEST, TOL, build, logits, max_diff

pytest.importorskip("huggingface_hub", reason="the hub extra: pip install 'mobilenets[hub]'")
hf_constants = pytest.importorskip("huggingface_hub.constants")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
INCEPTION = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, offline. huggingface_hub reads its environment once, at import, so its
    constants are set too (it may have been imported before this test)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return cache


def put_repo(cache: Path, repo_id: str, files: dict[str, bytes | str | Path]) -> Path:
    """A cached repository snapshot, as hf_hub_download leaves it (plain files instead of blob links)."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        (snapshot / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return snapshot


def timm_config(architecture: str, num_classes: int, mean_std: tuple[list[float], list[float]], **cfg: Any) -> str:
    """A config.json as timm's push_to_hub writes it."""
    pretrained_cfg = {"tag": "test_in1k", "custom_load": False, "input_size": [3, 64, 64], "fixed_input_size": False,
                      "interpolation": "bicubic", "crop_pct": 0.95, "crop_mode": "center", "mean": mean_std[0],
                      "std": mean_std[1], "num_classes": num_classes, "pool_size": [2, 2], "first_conv": "conv_stem",
                      "classifier": "classifier", **cfg}
    return json.dumps({"architecture": architecture, "num_classes": num_classes, "num_features": 1024,
                       "pretrained_cfg": pretrained_cfg})


def put_timm_v1(cache: Path) -> str:
    """timm's V1 fixture as an older timm repository: pytorch_model.bin, not model.safetensors."""
    repo = "timm/mobilenetv1_010.test_in1k"
    put_repo(cache, repo, {"pytorch_model.bin": FIXTURES / "timm_mobilenet_v1.bin",
                           "config.json": timm_config("mobilenetv1_010", 5, IMAGENET)})
    return f"hf-hub:{repo}"


# ------------------------------------------------------------------------------------ timm repos
def test_timm_repo_builds_and_matches(hub_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    ref = put_timm_v1(hub_cache)
    caplog.set_level(logging.INFO, logger="mobilenets.weights")
    model = create_model("mobilenet_v1", pretrained=ref)  # width, ReLU6 and classes from the repo
    assert model.model_kwargs["width_mult"] == 0.1 and model.arch.extra["act"] == "relu6"
    assert model.num_classes == 5
    assert max_diff(logits(model), EXPECTED["timm_mobilenet_v1"]) <= TOL
    cfg = model.pretrained_cfg  # timm's pretrained_cfg, read from config.json
    assert (cfg["interpolation"], cfg["crop_pct"], tuple(cfg["input_size"])) == ("bicubic", 0.95, (3, 64, 64))
    assert cfg["tag"] == ref and cfg["source"] == "timm"
    assert any("act='relu6'" in r.getMessage() and ref in r.getMessage() for r in caplog.records)
    # Fine-tuning: another class count keeps a fresh classifier and loads the rest.
    ten = create_model("mobilenet_v1", pretrained=ref, num_classes=10)
    assert ten.classifier.out_features == 10 and torch.equal(ten.stem.conv.weight, model.stem.conv.weight)


def test_timm_tf_repo_and_its_preprocessing(hub_cache: Path) -> None:
    name = "timm_tf_mobilenet_v3_small_minimal"
    repo = "timm/tf_mobilenetv3_small_minimal_002.in1k"
    put_repo(hub_cache, repo, {"model.safetensors": FIXTURES / MANIFEST["fixtures"][name]["files"][0],
                               "config.json": timm_config("tf_mobilenetv3_small_minimal_002", 5, INCEPTION)})
    model = create_model("mobilenet_v3_small", pretrained=f"hf-hub:{repo}")
    assert model.pad_type == "same" and model.model_kwargs["bn_eps"] == 1e-3
    assert model.model_kwargs["minimalistic"] is True and model.model_kwargs["width_convention"] == "timm"
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert max_diff(logits(model), EXPECTED[name]) <= TOL
    # load_pretrained into a model built by hand: the repo's source (tf_: TF padding, eps) is applied.
    own = build(name)
    assert own.pad_type == ""
    load_pretrained(own, f"hf-hub:{repo}")
    assert own.pad_type == "same" and max_diff(logits(own), EXPECTED[name]) <= TOL


def test_timm_repo_refusals(hub_cache: Path) -> None:
    ref = put_timm_v1(hub_cache)
    with pytest.raises(WeightsError, match=r"was trained with act='relu6', but act='relu' was passed"):
        create_model("mobilenet_v1", pretrained=ref, act="relu")
    with pytest.raises(ValueError, match=r"holds mobilenet_v1 weights, not mobilenet_v2"):
        create_model("mobilenet_v2", pretrained=ref)
    with pytest.raises(WeightsError, match=r"holds mobilenet_v1 weights, but the model is mobilenet_v2"):
        load_pretrained(create_model("mobilenet_v2"), ref)
    put_repo(hub_cache, "timm/mobilenetv3_rw.rmsp_in1k", {"config.json": timm_config("mobilenetv3_rw", 1000, IMAGENET),
                                                           "model.safetensors": b"unused"})
    with pytest.raises(WeightsError, match=r"'mobilenetv3_rw' has no mobilenets equivalent.*supported"):
        create_model("mobilenet_v3_large", pretrained="hf-hub:timm/mobilenetv3_rw.rmsp_in1k")
    with pytest.raises(ValueError, match=r"expected hf-hub:ORG/REPO"):
        create_model("mobilenet_v1", pretrained="hf-hub:mobilenetv1_100")


def test_timm_architecture_names_map_to_ours() -> None:
    assert timm_source.architecture("mobilenetv3_large_100.ra_in1k") == (
        "mobilenet_v3_large", {"width_convention": "timm"}, "timm")
    assert timm_source.architecture("tf_mobilenetv3_large_075") == (
        "mobilenet_v3_large", {"width_mult": 0.75, "width_convention": "timm"}, "timm_tf")
    assert timm_source.architecture("mobilenetv4_conv_small_050") == ("mobilenet_v4_conv_small", {"width_mult": 0.5}, "timm")
    assert timm_source.architecture("mobilenetv2_140")[:2] == ("mobilenet_v2", {"width_mult": 1.4})
    with pytest.raises(ValueError, match=r"did you mean 'mobilenetv3_large_100'"):
        timm_source.architecture("mobilenetv3_larg_100")
    with pytest.raises(ValueError, match=r"depth multiplier"):
        timm_source.architecture("mobilenetv2_110d")
    assert parse_hub_reference("hf-hub:timm/x.y@v1.0") == ("timm/x.y", "v1.0")


# ---------------------------------------------------------------------------------- native repos
def test_native_repo_round_trip_and_fine_tuning(hub_cache: Path, tmp_path: Path) -> None:
    from mobilenets.config import TrainConfig
    from mobilenets.engine.train import build_model

    pytest.importorskip("h5py")
    name = "keras_mobilenet_v1"
    source = build(name)
    load_weights(source, FIXTURES / MANIFEST["fixtures"][name]["files"][0])
    snapshot = put_repo(hub_cache, "someone/mnv1-keras", {})
    save_pretrained(source, snapshot, class_names=[f"c{i}" for i in range(5)])
    model = create_model("mobilenet_v1", pretrained="hf-hub:someone/mnv1-keras")
    assert model.pad_type == "same" and model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert max_diff(logits(model), EXPECTED[name]) <= TOL

    cfg = TrainConfig()  # mobilenets train model.name=mobilenet_v1 model.pretrained=hf-hub:... (10 classes)
    cfg.model.name = "mobilenet_v1"
    cfg.model.pretrained = "hf-hub:someone/mnv1-keras"
    tuned = build_model(cfg, num_classes=10, in_chans=3)
    assert tuned.classifier.out_features == 10 and tuned.arch.extra["act"] == "relu6"
    assert torch.equal(tuned.blocks[1][0].conv_pw.bn.running_var, model.blocks[1][0].conv_pw.bn.running_var)


def test_convert_from_hub(hub_cache: Path, tmp_path: Path) -> None:
    from mobilenets.cli.convert import convert

    ref = put_timm_v1(hub_cache)
    out = convert(ref, tmp_path / "converted")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "mobilenet_v1" and config["kwargs"]["act"] == "relu6"
    assert config["interpolation"] == "bicubic" and config["crop_pct"] == 0.95 and config["tag"] == ref
    assert max_diff(logits(from_pretrained(out)), EXPECTED["timm_mobilenet_v1"]) <= TOL
    with pytest.raises(ValueError, match="holds mobilenet_v1 weights, not mobilenet_v2"):
        convert(ref, tmp_path / "x", arch="mobilenet_v2")


def test_convert_cli_from_hub_in_a_fresh_process(hub_cache: Path, tmp_path: Path) -> None:
    """The real command line: environment variables only, and the applied options on stderr."""
    ref = put_timm_v1(hub_cache)
    env = cli_env(HF_HOME=str(hub_cache.parent), HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "mobilenets", "convert", ref, "--out", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "building mobilenet_v1 with act='relu6'" in proc.stderr, proc.stderr
    assert (tmp_path / "c" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------ missing and offline
def test_offline_and_not_cached_names_repo_file_and_command(hub_cache: Path) -> None:
    ref = "hf-hub:timm/mobilenetv3_large_100.ra_in1k"
    with pytest.raises(WeightsNotAvailable) as err:
        create_model("mobilenet_v3_large", pretrained=ref)
    msg = str(err.value)
    assert "\n" not in msg and "timm/mobilenetv3_large_100.ra_in1k" in msg and "config.json" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "hf download timm/mobilenetv3_large_100.ra_in1k" in msg
    assert str(hub_cache / "models--timm--mobilenetv3_large_100.ra_in1k") in msg

    # config.json cached, weights not: the error names both candidate files.
    put_repo(hub_cache, "timm/mobilenetv1_010.half", {"config.json": timm_config("mobilenetv1_010", 5, IMAGENET)})
    with pytest.raises(WeightsNotAvailable, match=r"model\.safetensors or pytorch_model\.bin is not in the Hugging Face cache"):
        create_model("mobilenet_v1", pretrained="hf-hub:timm/mobilenetv1_010.half")


def test_missing_huggingface_hub_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.config import ConfigError, TrainConfig
    from mobilenets.engine.train import build_model

    for module in [m for m in sys.modules if m == "huggingface_hub" or m.startswith("huggingface_hub.")]:
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(HubNotInstalled, match=r"pip install 'mobilenets\[hub\]'") as err:
        create_model("mobilenet_v1", pretrained="hf-hub:timm/mobilenetv1_100.ra4_e3600_r224_in1k")
    assert isinstance(err.value, ImportError) and isinstance(err.value, ValueError)
    cfg = TrainConfig()
    cfg.model.name = "mobilenet_v1"
    cfg.model.pretrained = "hf-hub:timm/mobilenetv1_100.ra4_e3600_r224_in1k"
    with pytest.raises(ConfigError, match=r"model\.pretrained: .*pip install 'mobilenets\[hub\]'"):
        build_model(cfg, num_classes=10, in_chans=3)
