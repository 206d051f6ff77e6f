"""Weights: conversion from torchvision/timm/Keras (fixtures), the native format, safety, the registry, CLI.

The fixtures in tests/fixtures/weights/ were written by the source libraries themselves
(scripts/make_weight_fixtures.py says how): small models with random weights and non-default BatchNorm
statistics, in each source's own file format, with the source's logits for one fixed input. None of
torchvision, timm or Keras is needed here.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import pickle
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import mobilenets
from mobilenets.cli.convert import register
from mobilenets.weights import (
    WeightsError,
    create_model,
    from_pretrained,
    load_pretrained,
    load_state_dict_file,
    load_weights,
    registry,
    save_pretrained,
)

FIXTURES = Path(__file__).parent / "fixtures" / "weights"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
INPUT = load_file(str(FIXTURES / "input.safetensors"))["x"]
EXPECTED = load_file(str(FIXTURES / "expected.safetensors"))
TOL = 1e-4
CASES = [(name, file) for name, fx in sorted(MANIFEST["fixtures"].items()) for file in fx["files"]]


def _needs_h5py(file: str) -> None:
    if file.endswith(".h5"):
        pytest.importorskip("h5py", reason="Keras files need the optional h5py (pip install 'mobilenets[keras]')")


def build(name: str, *, keep_source_settings: bool = False, **overrides: Any) -> torch.nn.Module:
    """The fixture's architecture; padding and eps are left to load_weights unless asked otherwise."""
    fx = MANIFEST["fixtures"][name]
    kwargs = dict(fx["kwargs"])
    if not keep_source_settings:
        kwargs.pop("pad_type", None)
        kwargs.pop("bn_eps", None)
    return create_model(fx["arch"], **{"num_classes": fx["num_classes"], **kwargs, **overrides})


def logits(model: torch.nn.Module) -> torch.Tensor:
    """Our model on the fixture input, normalised with the model's own preprocessing metadata."""
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    model.eval()
    with torch.no_grad():
        return model((INPUT - mean) / std)


def loaded(name: str, file: str | None = None, **build_kw: Any) -> torch.nn.Module:
    fx = MANIFEST["fixtures"][name]
    model = build(name, **build_kw)
    load_weights(model, FIXTURES / (file or fx["files"][0]), **fx["load"])
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ------------------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize(("name", "file"), CASES, ids=[f"{n}:{Path(f).name.split('.', 1)[1]}" for n, f in CASES])
def test_fixture_matches_source(name: str, file: str, tmp_path: Path) -> None:
    _needs_h5py(file)
    fx = MANIFEST["fixtures"][name]
    model = loaded(name, file)
    # The source's input normalisation, padding mode and BN eps were adopted by load_weights.
    assert model.pretrained_cfg["mean"] == pytest.approx(fx["mean"])
    assert model.pretrained_cfg["std"] == pytest.approx(fx["std"])
    assert model.pad_type == fx["kwargs"].get("pad_type", "")
    got = logits(model)
    diff = max_diff(got, EXPECTED[name])
    assert diff <= TOL, f"{name} ({file}): max abs diff {diff:.3g} > {TOL} (logits span {fx['logit_range']})"

    # The native format reproduces it exactly, padding and eps included, without the source library.
    save_pretrained(model, tmp_path / "native")
    again = from_pretrained(tmp_path / "native")
    assert again.pad_type == model.pad_type
    assert max_diff(logits(again), got) == 0.0


@pytest.mark.parametrize("name", ["keras_mobilenet_v2", "timm_tf_mobilenet_v3_small_minimal"])
def test_fixtures_detect_wrong_padding_and_eps(name: str) -> None:
    """The fixtures are sensitive to the two settings a file does not carry."""
    _needs_h5py(MANIFEST["fixtures"][name]["files"][0])
    model = loaded(name)
    assert max_diff(logits(model), EXPECTED[name]) <= TOL
    model.set_pad_type("")
    assert max_diff(logits(model), EXPECTED[name]) > 10 * TOL, "symmetric padding went unnoticed"
    model.set_pad_type("same")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5
    assert max_diff(logits(model), EXPECTED[name]) > 10 * TOL, "BatchNorm eps 1e-5 instead of 1e-3 went unnoticed"


def test_timm_tf_detected_from_a_same_padded_model() -> None:
    """timm's tf_ ports have timm's key names; a model built for TF padding tells them apart."""
    name = "timm_tf_mobilenet_v3_small_minimal"
    model = build(name, keep_source_settings=True)
    result = load_weights(model, FIXTURES / MANIFEST["fixtures"][name]["files"][0])
    assert (result.source, result.bn_eps, result.pad_type) == ("timm_tf", 1e-3, "same")
    assert max_diff(logits(model), EXPECTED[name]) <= TOL


def _tf_keras_name(name: str) -> str:
    """Keras 3's V3 layer names spelled as tf.keras 2.x (and the published .h5 files) spell them."""
    import re

    if name in ("conv", "conv_bn", "conv_1", "conv_1_bn", "conv_2", "logits"):
        return {"conv": "Conv", "conv_bn": "Conv/BatchNorm", "conv_1": "Conv_1", "conv_1_bn": "Conv_1/BatchNorm",
                "conv_2": "Conv_2", "logits": "Logits"}[name]
    m = re.fullmatch(r"(expanded_conv(?:_\d+)?)_(expand|depthwise|project|squeeze_excite)(.*)", name)
    if not m:
        return name
    block, part, tail = m.groups()
    tail = {"_bn": "/BatchNorm", "_conv": "/Conv", "_conv_1": "/Conv_1"}.get(tail, tail)
    return f"{block}/{part}{tail}"


def test_keras_h5_with_tf_keras_names_and_model_weights_group(tmp_path: Path) -> None:
    """The published V3 files use tf.keras names with slashes; full-model files nest under model_weights."""
    h5py = pytest.importorskip("h5py")
    name = "keras_mobilenet_v3_large_minimalistic"
    src = FIXTURES / MANIFEST["fixtures"][name]["files"][0]
    dst = tmp_path / "tf_keras_style.h5"
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        root = g.create_group("model_weights")
        layer_names = []
        for layer in (n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]):
            new = _tf_keras_name(layer)
            layer_names.append(new.encode())
            group = root.require_group(new)
            weight_names = []
            for w in f[layer].attrs["weight_names"]:
                w = w.decode() if isinstance(w, bytes) else w
                # tf.keras names a weight "<layer name>/<weight>:0" and creates it by that name inside the
                # layer's group, so "Conv/BatchNorm/gamma:0" lives at Conv/BatchNorm/Conv/BatchNorm/gamma:0.
                full = f"{new}/{w.rsplit('/', 1)[1]}:0"
                group.create_dataset(full, data=f[layer][w][()])
                weight_names.append(full.encode())
            group.attrs["weight_names"] = weight_names
        root.attrs["layer_names"] = layer_names
    assert "expanded_conv_1/expand/BatchNorm" in [n.decode() for n in layer_names]
    model = build(name)
    load_weights(model, dst)
    assert max_diff(logits(model), EXPECTED[name]) <= TOL


def _write_legacy_h5(path: Path, layers: list[tuple[str, list[Any]]]) -> None:
    """A legacy Keras weights file: layer_names in model order, weight_names per layer group."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        for name, arrays in layers:
            group = f.require_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(arrays))]
            for n, a in zip(names, arrays):
                group.create_dataset(n, data=a)
            group.attrs["weight_names"] = [n.encode() for n in names]


def test_keras_legacy_published_v2_spelling_and_order_fallback(tmp_path: Path) -> None:
    """keras-applications' V2 (the published file) spells layers Conv1/bn_Conv1/..._BN/Logits; unknown
    spellings fall back to layer order, which is how Keras itself loads a legacy file."""
    pytest.importorskip("h5py")
    from mobilenets.weights.sources import keras as keras_source

    name = "keras_mobilenet_v2"
    model = build(name)
    kf = keras_source.read_keras_file(FIXTURES / MANIFEST["fixtures"][name]["files"][0])
    layers = keras_source.expected_layers(model)
    arrays = {cls: iter(items) for cls, items in kf.by_class.items()}
    paired = [(la.name, next(arrays[la.cls])[1]) for la in layers]

    def published(n: str) -> str:
        fixed = {"conv1": "Conv1", "bn_conv1": "bn_Conv1", "conv_1": "Conv_1", "conv_1_bn": "Conv_1_bn",
                 "predictions": "Logits"}
        return fixed.get(n, n[:-3] + "_BN" if n.endswith("_bn") else n)

    _write_legacy_h5(tmp_path / "published_v2.h5", [(published(n), a) for n, a in paired])
    load_weights(model, tmp_path / "published_v2.h5")
    assert max_diff(logits(model), EXPECTED[name]) <= TOL

    _write_legacy_h5(tmp_path / "renamed.h5", [(f"layer_{i}", a) for i, (_, a) in enumerate(paired)])
    again = build(name)
    load_weights(again, tmp_path / "renamed.h5")
    assert max_diff(logits(again), EXPECTED[name]) <= TOL


def test_features_only_backbone_loads_what_it_has() -> None:
    full = loaded("tv_mobilenet_v3_large")
    backbone = build("tv_mobilenet_v3_large", features_only=True, out_indices=(1, 3))
    load_weights(backbone, FIXTURES / "tv_mobilenet_v3_large.safetensors")
    x = (INPUT - 0.45) / 0.225
    with torch.no_grad():
        feats = backbone.eval()(x)
        ref = [f for i, f in enumerate(full.eval().forward_intermediates(x)) if i in (1, 3)]
    assert all(torch.equal(a, b) for a, b in zip(feats, ref))


# ------------------------------------------------------------------------------------------ safety
class _Payload:
    """Unpickling this runs ``exec``: it writes a marker file, the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_checkpoint_is_refused_and_does_not_run(writer: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    state = {"stem.conv.weight": torch.zeros(1), "payload": _Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    model = build("tv_mobilenet_v3_large")
    for attempt in (lambda: load_weights(model, path), lambda: load_state_dict_file(path),
                    lambda: create_model("mobilenet_v3_large", pretrained=str(path), width_mult=0.1)):
        with pytest.raises(WeightsError, match=r"refused.*execute code") as err:
            attempt()
        assert str(path) in str(err.value) and "exec" in str(err.value)
        assert not marker.exists(), "the checkpoint's code ran"
    # The payload is live: an unrestricted unpickler does run it (so the refusal above is what saved us).
    if writer == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_truncated_empty_and_foreign_files_name_the_file(tmp_path: Path) -> None:
    model = build("tv_mobilenet_v3_small_reduced_tail")
    cases = {
        "half.safetensors": (FIXTURES / "tv_mobilenet_v3_large.safetensors", r"not a readable safetensors|truncated"),
        "half.pth": (FIXTURES / "tv_mobilenet_v3_small_reduced_tail.pth", r"truncated or corrupt"),
    }
    for new, (src, pattern) in cases.items():
        data = src.read_bytes()
        (tmp_path / new).write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightsError, match=pattern) as err:
            load_weights(model, tmp_path / new)
        assert str(tmp_path / new) in str(err.value)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth is empty"):
        load_weights(model, empty)
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match=r"notes\.pth is not a weights file this loader reads"):
        load_weights(model, text)


def test_truncated_keras_file(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    data = (FIXTURES / "keras_mobilenet_v1.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match=r"cut\.h5"):
        load_weights(build("keras_mobilenet_v1"), tmp_path / "cut.h5")


def test_wrong_architecture_names_file_and_mismatch() -> None:
    v3 = create_model("mobilenet_v3_small", num_classes=5, width_mult=0.1)
    with pytest.raises(WeightsError) as err:
        load_weights(v3, FIXTURES / "tv_mobilenet_v2.safetensors")
    msg = str(err.value)
    assert "tv_mobilenet_v2.safetensors" in msg and "torchvision MobileNetV2" in msg
    assert "does not match the model mobilenet_v3_small" in msg and "shape mismatch" in msg

    # Same family, other widths: the tensors are named with both spellings and both shapes.
    tv_widths = create_model("mobilenet_v3_large", num_classes=5, width_mult=0.02)
    with pytest.raises(WeightsError, match=r"timm_mobilenet_v3_large\.safetensors.*shape mismatch.*\(file: "):
        load_weights(tv_widths, FIXTURES / "timm_mobilenet_v3_large.safetensors")


def test_wrong_architecture_keras(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    with pytest.raises(WeightsError, match=r"keras_mobilenet_v1\.h5 \(Keras MobileNetV1 weights.*missing"):
        load_weights(create_model("mobilenet_v2", num_classes=5, width_mult=0.25), FIXTURES / "keras_mobilenet_v1.h5")
    # V1 from Keras needs the ReLU6 the weights were trained with.
    with pytest.raises(WeightsError, match=r"ReLU6.*act='relu6'"):
        load_weights(build("keras_mobilenet_v1", act="relu"), FIXTURES / "keras_mobilenet_v1.h5")


def test_source_mismatch_is_explicit() -> None:
    model = build("tv_mobilenet_v2")
    with pytest.raises(WeightsError, match=r"looks like a torchvision checkpoint.*not timm"):
        load_weights(model, FIXTURES / "tv_mobilenet_v2.safetensors", source="timm")
    with pytest.raises(WeightsError, match="not an HDF5 file"):
        load_weights(model, FIXTURES / "tv_mobilenet_v2.safetensors", source="keras")
    with pytest.raises(ValueError, match="source='tensorflow' invalid"):
        load_weights(model, FIXTURES / "tv_mobilenet_v2.safetensors", source="tensorflow")


def test_unknown_keys_are_reported_by_name(tmp_path: Path) -> None:
    state = load_file(str(FIXTURES / "timm_mobilenet_v2.safetensors"))
    state["blocks.9.0.conv_pw.weight"] = torch.zeros(1)
    del state["blocks.1.0.bn2.running_var"]
    save_file(state, tmp_path / "edited.safetensors")
    model = build("timm_mobilenet_v2")
    with pytest.raises(WeightsError) as err:
        load_weights(model, tmp_path / "edited.safetensors")
    assert "blocks.9.0.conv_pw.weight" in str(err.value)  # as the file spells it
    assert "blocks.1.0.conv_dw.bn.running_var" in str(err.value)  # as the model spells it
    with pytest.warns(UserWarning, match="non-strictly"):
        result = load_weights(model, tmp_path / "edited.safetensors", strict=False)
    assert result.unexpected == ["blocks.9.0.conv_pw.weight"]
    assert result.missing == ["blocks.1.0.conv_dw.bn.running_var"]


# ----------------------------------------------------------------------------------- class counts
def test_class_count_mismatch_and_fine_tuning(tmp_path: Path) -> None:
    file = FIXTURES / "tv_mobilenet_v3_large.safetensors"
    ten = build("tv_mobilenet_v3_large", num_classes=10)
    with pytest.raises(WeightsError) as err:
        load_weights(ten, file)
    assert "tv_mobilenet_v3_large.safetensors" in str(err.value)
    assert "has 5 classes but the model has 10" in str(err.value) and "skip_classifier=True" in str(err.value)

    fresh = ten.classifier.weight.detach().clone()
    result = load_weights(ten, file, skip_classifier=True)
    assert sorted(result.skipped) == ["classifier.3.bias", "classifier.3.weight"]
    assert torch.equal(ten.classifier.weight, fresh), "the new classifier must keep its fresh initialisation"
    full = loaded("tv_mobilenet_v3_large")
    x = INPUT - 0.45
    with torch.no_grad():
        assert torch.equal(ten.eval().forward_head(ten.forward_features(x), pre_logits=True),
                           full.eval().forward_head(full.forward_features(x), pre_logits=True))

    # create_model(pretrained=DIR, num_classes=10): everything but the classifier, for fine-tuning.
    save_pretrained(full, tmp_path / "src", class_names=[f"c{i}" for i in range(5)])
    tuned = create_model("mobilenet_v3_large", pretrained=str(tmp_path / "src"), num_classes=10)
    assert tuned.classifier.out_features == 10
    assert torch.equal(tuned.head_hidden[0].weight, full.head_hidden[0].weight)
    same = create_model("mobilenet_v3_large", pretrained=str(tmp_path / "src"))
    assert max_diff(logits(same), logits(full)) == 0.0
    # from_pretrained with another class count is the same fine-tuning load.
    assert from_pretrained(tmp_path / "src", num_classes=3).classifier.out_features == 3


def test_train_build_model_fine_tunes_from_pretrained(tmp_path: Path) -> None:
    """``mobilenets train model.pretrained=DIR model.num_classes=10``: the trainer's model builder."""
    from mobilenets.config import TrainConfig
    from mobilenets.engine.train import build_model

    full = loaded("tv_mobilenet_v3_small_reduced_tail")
    save_pretrained(full, tmp_path / "pre")
    cfg = TrainConfig()
    cfg.model.name = "mobilenet_v3_small"
    cfg.model.pretrained = str(tmp_path / "pre")
    cfg.model.kwargs = {"width_mult": 0.1, "reduced_tail": True}
    model = build_model(cfg, num_classes=10, in_chans=3)
    assert model.classifier.out_features == 10
    assert torch.equal(model.stem.conv.weight, full.stem.conv.weight)
    assert torch.equal(model.blocks[2][0].conv_dw.bn.running_var, full.blocks[2][0].conv_dw.bn.running_var)


# ------------------------------------------------------------------------------------------ native
def test_native_round_trip_keeps_metadata(tmp_path: Path) -> None:
    model = create_model("mobilenet_v2", num_classes=3, width_mult=0.35, small_input=True)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    model.pretrained_cfg.update(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    save_pretrained(model, tmp_path, class_names=["a", "b", "c"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "mobilenet_v2" and config["num_classes"] == 3
    assert config["kwargs"]["width_mult"] == 0.35 and config["class_names"] == ["a", "b", "c"]
    assert config["mean"] == [0.1, 0.2, 0.3] and config["interpolation"] == "bilinear"
    again = mobilenets.from_pretrained(tmp_path)
    assert again.class_names == ["a", "b", "c"] and again.pretrained_cfg["std"] == (0.4, 0.5, 0.6)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), again.eval()(x))


# --------------------------------------------------------------------------------------- registry
@pytest.fixture
def hub_dir(tmp_path: Path) -> Any:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def _offline(url: str) -> Any:
    raise urllib.error.URLError("network is unreachable (test)")


def test_registry_offline_error_names_url_file_and_directory(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_open_url", _offline)
    with pytest.raises(registry.WeightsNotAvailable) as err:
        create_model("mobilenet_v3_large", pretrained="mobilenet_v3_large.tv_in1k")
    msg = str(err.value)
    assert "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth" in msg
    assert str(hub_dir / "mobilenet_v3_large-8738ca79.pth") in msg and "pretrained=PATH" in msg
    assert not any(hub_dir.iterdir()), "no partial file may be left behind"


def test_registry_lists_tags_with_metadata() -> None:
    tags = mobilenets.list_pretrained()
    for tag in ("mobilenet_v3_large.tv_in1k", "mobilenet_v3_large.tv2_in1k", "mobilenet_v3_large.timm_ra_in1k",
                "mobilenet_v2.keras_in1k", "mobilenet_v3_small.timm_tf_minimal_in1k"):
        assert tag in tags
    for tag in tags:
        entry = registry.get_pretrained(tag)
        assert entry.arch == tag.split(".")[0] and entry.url.startswith("https://")
        with torch.device("meta"):  # shapes only: MobileNetV5-300M's 294M parameters build in a second
            model = create_model(entry.arch, **entry.kwargs)  # the recorded keywords build
        assert model.num_classes == entry.num_classes or entry.arch.startswith(("ssdlite", "lraspp", "deeplab"))
    assert registry.get_pretrained("mobilenet_v3_large.timm_ra_in1k").sha256
    with pytest.raises(ValueError, match=r"did you mean 'mobilenet_v3_large\.tv_in1k'"):
        registry.get_pretrained("mobilenet_v3_large.tv_inlk")
    with pytest.raises(ValueError, match="holds mobilenet_v2 weights, not mobilenet_v3_large"):
        create_model("mobilenet_v3_large", pretrained="mobilenet_v2.tv_in1k")


def _local_entry(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> registry.PretrainedEntry:
    """A registry entry served from a fixture file through a file:// URL (the real download code path)."""
    fx = MANIFEST["fixtures"]["tv_mobilenet_v3_small_reduced_tail"]
    file = FIXTURES / fx["files"][0]
    entry = registry.PretrainedEntry(
        "mobilenet_v3_small.test_in1k", fx["arch"], "torchvision", file.as_uri(), "test-v3s.pth",
        kwargs=fx["kwargs"], num_classes=fx["num_classes"],
        sha256=hashlib.sha256(file.read_bytes()).hexdigest(), top1=1.0,
    )
    entry = registry.PretrainedEntry(**{**entry.__dict__, **changes})
    monkeypatch.setitem(registry._REGISTRY, entry.tag, entry)
    return entry


def test_registry_download_verifies_and_caches(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _local_entry(monkeypatch)
    model = create_model("mobilenet_v3_small", pretrained=entry.tag)
    assert (hub_dir / "test-v3s.pth").is_file()
    assert max_diff(logits(model), EXPECTED["tv_mobilenet_v3_small_reduced_tail"]) <= TOL
    assert model.pretrained_cfg["tag"] == entry.tag
    # Cached now: no network needed any more.
    monkeypatch.setattr(registry, "_open_url", _offline)
    create_model("mobilenet_v3_small", pretrained=entry.tag)


def test_registry_corrupted_download_fails_checksum(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _local_entry(monkeypatch, sha256="0" * 64)
    with pytest.raises(WeightsError, match=r"failed its checksum \(sha256 [0-9a-f]{64}, expected 0{64}"):
        create_model("mobilenet_v3_small", pretrained=entry.tag)
    assert not any(hub_dir.iterdir()), "a file that failed its checksum must not stay in the cache"

    # Wrong bytes from the server, with the prefix convention of torchvision/timm file names.
    entry = _local_entry(monkeypatch, sha256=None, sha256_prefix="8738ca79")
    monkeypatch.setattr(registry, "_open_url", lambda url: io.BytesIO(b"<html>rate limited</html>"))
    with pytest.raises(WeightsError, match="sha256 prefix"):
        registry.fetch(entry)
    # A corrupted file already in the cache is not used either.
    (hub_dir / entry.filename).write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=r"Delete .*test-v3s\.pth"):
        load_pretrained(build("tv_mobilenet_v3_small_reduced_tail"), entry.tag)


def test_registry_refuses_unverified_files_unless_allowed(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _local_entry(monkeypatch, sha256=None)
    monkeypatch.delenv(registry.ALLOW_UNVERIFIED_ENV, raising=False)
    with pytest.raises(WeightsError, match="published without a checksum"):
        registry.fetch(entry)
    assert registry.fetch(entry, allow_unverified=True).is_file()
    monkeypatch.setenv(registry.ALLOW_UNVERIFIED_ENV, "1")
    create_model("mobilenet_v3_small", pretrained=entry.tag)


# -------------------------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mobilenets")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_convert_cli_writes_native_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "timm_tf_mobilenet_v3_small_minimal"
    src = FIXTURES / MANIFEST["fixtures"][name]["files"][0]
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(f"class{i}" for i in range(5)))
    out = tmp_path / "converted"
    assert _cli(["convert", str(src), "--source", "timm_tf", "--arch", "mobilenet_v3_small", "--set", "width_mult=0.02",
                 "--set", "width_convention=timm", "--set", "minimalistic=true", "--out", str(out),
                 "--class-names", str(names)]) == 0
    assert "wrote" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 5, "the class count is read from the file"
    assert config["kwargs"]["pad_type"] == "same" and config["kwargs"]["bn_eps"] == 1e-3
    assert config["mean"] == [0.5, 0.5, 0.5] and config["class_names"][0] == "class0"
    model = from_pretrained(out)
    assert max_diff(logits(model), EXPECTED[name]) <= TOL


def test_convert_cli_keras_and_errors(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    name = "keras_mobilenet_v3_small"
    fx = MANIFEST["fixtures"][name]
    sets = [a for k, v in fx["kwargs"].items() if k != "pad_type" for a in ("--set", f"{k}={v}")]
    assert _cli(["convert", str(FIXTURES / fx["files"][0]), "--arch", fx["arch"], *sets, "--out", str(tmp_path / "k")]) == 0
    assert max_diff(logits(from_pretrained(tmp_path / "k")), EXPECTED[name]) <= TOL
    with pytest.raises(ValueError, match="--arch is required"):
        _cli(["convert", str(FIXTURES / fx["files"][0]), "--out", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="neither a file nor a registry tag"):
        _cli(["convert", "nowhere.pth", "--arch", "mobilenet_v2", "--out", str(tmp_path / "x")])
    # The wording belongs to mobilenets.cli.parse_set (being reworded there): either spelling names the item.
    with pytest.raises(ValueError, match=r"--set 'width_mult' invalid|'width_mult' is not a KEY=VALUE override"):
        _cli(["convert", str(FIXTURES / fx["files"][0]), "--arch", fx["arch"], "--set", "width_mult", "--out", "x"])


# ------------------------------------------------- create_model(pretrained=FILE): what the file needs
V1_FIXTURES = ["timm_mobilenet_v1", "keras_mobilenet_v1"]


@pytest.mark.parametrize("name", V1_FIXTURES)
def test_create_model_applies_options_the_v1_weights_need(name: str, caplog: pytest.LogCaptureFixture) -> None:
    """timm and Keras V1 weights were trained with ReLU6 (and their eps / padding): a plain
    create_model(pretrained=FILE) builds that model, says so in one line, and matches the source."""
    _needs_h5py(MANIFEST["fixtures"][name]["files"][0])
    fx = MANIFEST["fixtures"][name]
    caplog.set_level(logging.INFO, logger="mobilenets.weights")
    model = create_model("mobilenet_v1", pretrained=str(FIXTURES / fx["files"][0]), width_mult=fx["kwargs"]["width_mult"])
    assert model.arch.extra["act"] == "relu6" and model.model_kwargs["act"] == "relu6"
    assert model.pad_type == fx["kwargs"].get("pad_type", "")
    assert model.num_classes == fx["num_classes"], "the class count is read from the file"
    assert max_diff(logits(model), EXPECTED[name]) <= TOL
    lines = [r.getMessage() for r in caplog.records if "building mobilenet_v1" in r.getMessage()]
    assert len(lines) == 1 and "act='relu6'" in lines[0] and fx["files"][0] in lines[0], lines
    eps = 1e-3 if fx["source"] == "keras" else 1e-5
    assert f"bn_eps={eps!r}" in lines[0]
    assert all(m.eps == eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize(("name", "option", "value", "needed"), [
    ("keras_mobilenet_v1", "act", "relu", "relu6"),
    ("timm_mobilenet_v1", "act", "relu", "relu6"),
    ("keras_mobilenet_v1", "pad_type", "", "same"),
    ("keras_mobilenet_v1", "bn_eps", 1e-5, 1e-3),
    ("tv_mobilenet_v3_large", "pad_type", "same", ""),
])
def test_create_model_refuses_options_that_contradict_the_weights(name: str, option: str, value: Any, needed: Any) -> None:
    fx = MANIFEST["fixtures"][name]
    _needs_h5py(fx["files"][0])
    kwargs = {k: v for k, v in fx["kwargs"].items() if k not in ("act", "pad_type", "bn_eps")}
    with pytest.raises(WeightsError) as err:
        create_model(fx["arch"], pretrained=str(FIXTURES / fx["files"][0]), **kwargs, **{option: value})
    msg = str(err.value)
    assert "\n" not in msg and fx["files"][0] in msg
    # Refused before building, naming the option with the weights' value and the caller's.
    assert f"was trained with {option}={needed!r}, but {option}={value!r} was passed" in msg, msg
    # Agreeing with the weights is fine.
    create_model(fx["arch"], pretrained=str(FIXTURES / fx["files"][0]), **kwargs, **{option: needed})


def test_timm_tf_port_recognised_by_file_name_or_padding(tmp_path: Path) -> None:
    """timm's tf_ ports have timm's key names; timm's file name (tf_...) or pad_type='same' says which."""
    name = "timm_tf_mobilenet_v3_small_minimal"
    fx = MANIFEST["fixtures"][name]
    kwargs = {k: v for k, v in fx["kwargs"].items() if k != "pad_type"}
    renamed = tmp_path / "tf_mobilenetv3_small_minimal_002-0123abcd.safetensors"
    renamed.write_bytes((FIXTURES / fx["files"][0]).read_bytes())
    model = create_model(fx["arch"], pretrained=str(renamed), **kwargs)
    assert model.pad_type == "same" and model.model_kwargs["bn_eps"] == 1e-3
    assert max_diff(logits(model), EXPECTED[name]) <= TOL
    by_padding = create_model(fx["arch"], pretrained=str(FIXTURES / fx["files"][0]), **kwargs, pad_type="same")
    assert max_diff(logits(by_padding), EXPECTED[name]) <= TOL
    # The same file without either hint is timm's PyTorch convention (what load_weights also assumes).
    plain = create_model(fx["arch"], pretrained=str(FIXTURES / fx["files"][0]), **kwargs)
    assert plain.pad_type == "" and plain.model_kwargs["bn_eps"] == 1e-5


def test_announcement_reaches_stderr_without_logging_setup(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line configures no logging: the line must still be seen there."""
    import mobilenets.weights as weights_module

    # Cut the logger off from pytest's handlers on the root logger: what an unconfigured process has.
    monkeypatch.setattr(weights_module.log, "propagate", False)
    create_model("mobilenet_v1", pretrained=str(FIXTURES / "timm_mobilenet_v1.bin"), width_mult=0.1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mobilenets: ") and "act='relu6'" in err, err


def test_convert_and_train_apply_v1_options(tmp_path: Path) -> None:
    """``mobilenets convert`` and ``train model.pretrained=FILE`` take the same options from the file."""
    from mobilenets.config import TrainConfig
    from mobilenets.engine.train import build_model

    pytest.importorskip("h5py")
    name = "keras_mobilenet_v1"
    src = FIXTURES / MANIFEST["fixtures"][name]["files"][0]
    assert _cli(["convert", str(src), "--arch", "mobilenet_v1", "--set", "width_mult=0.25", "--out", str(tmp_path / "c")]) == 0
    converted = from_pretrained(tmp_path / "c")
    assert converted.model_kwargs["act"] == "relu6"
    assert max_diff(logits(converted), EXPECTED[name]) <= TOL

    cfg = TrainConfig()
    cfg.model.name = "mobilenet_v1"
    cfg.model.pretrained = str(src)
    cfg.model.kwargs = {"width_mult": 0.25}
    model = build_model(cfg, num_classes=10, in_chans=3)
    assert model.classifier.out_features == 10 and model.arch.extra["act"] == "relu6"
    assert torch.equal(model.stem.conv.weight, converted.stem.conv.weight)
