"""Property-based tests (hypothesis) for bad configuration and arguments (issue 8).

Every combination of config overrides or model keywords either works or fails with a validated error
(``ConfigError`` / ``ValueError``) whose message names the offending key -- never a raw traceback from
deep inside the library or torch. Out-of-range values are caught before a training run starts.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mobilenets import create_model, get_model_kwargs, list_models
from mobilenets.cli import main
from mobilenets.config import ConfigError, TrainConfig, all_keys, load_config


def fast(n: int) -> settings:
    """No deadline (2 shared cores make timings noisy); ``n`` examples keep the whole file under a minute."""
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])



pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------------ config overrides
KEYS = all_keys(TrainConfig)
# Free-form sub-keys of the one dict field, valid and invalid alike (load_config does not build models).
KWARG_KEYS = ["model.kwargs.width_mult", "model.kwargs.small_input", "model.kwargs.block.se"]


def _misspell(key: str, data: st.DataObject) -> str:
    """A plausible typo of a real key: a character dropped, doubled or changed, or a part added."""
    parts = key.split(".")
    i = data.draw(st.integers(0, len(parts) - 1), label="part")
    part = parts[i]
    how = data.draw(st.sampled_from(["drop", "double", "change", "suffix", "extra"]), label="typo")
    j = data.draw(st.integers(0, max(len(part) - 1, 0)), label="pos")
    if how == "drop" and len(part) > 1:
        part = part[:j] + part[j + 1 :]
    elif how == "double":
        part = part[: j + 1] + part[j:]
    elif how == "change":
        part = part[:j] + ("q" if part[j : j + 1] != "q" else "z") + part[j + 1 :]
    elif how == "extra":
        parts.append(data.draw(st.sampled_from(["x", "value", "lr"]), label="extra"))
    else:
        part = part + "s"
    parts[i] = part
    return ".".join(parts)


_SCALAR_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["0", "-1", "1", "2", "64", "5000", "-0", "007", "1_000", "0x10"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([".nan", ".inf", "-.inf", "nan", "inf", "-inf", "1e400", "-1e-400", "4e-3", "1.5", "-0.5", "0.0"]),
    st.sampled_from(["true", "false", "yes", "no", "on", "off", "True", "NO", "~", "null", "", "  "]),
    st.sampled_from(["digits", "synthetic", "adamw", "cosine", "none", "pad", "rrc", "bf16", "cpu", "auto"]),
    st.text(max_size=12).map(lambda s: json.dumps(s, ensure_ascii=False)),  # quoted strings, unicode
    st.text(max_size=12),  # raw text: may be invalid YAML (": #", unbalanced brackets, tabs)
    st.sampled_from(["[1, 2", "{a: 1", "a: b: c", "- x", "'", '"', "&a", "*a", "!!python/object:os.system x",
                     "@", "`", "%", "|", ">", "é", "数", "\t", "key: [1, {2: 3}]"]),
)
_VALUE_TEXT = st.one_of(
    _SCALAR_TEXT,
    st.lists(st.one_of(st.integers(-5, 5), st.floats(-2, 2), st.booleans(), st.none(), st.text(max_size=3)),
             max_size=3).map(json.dumps),
    st.dictionaries(st.sampled_from(["lr", "name", "x", "epochs", "width_mult", "1"]),
                    st.one_of(st.integers(-3, 3), st.floats(-1, 2), st.booleans(), st.none(), st.text(max_size=3)),
                    max_size=2).map(json.dumps),
)


@st.composite
def _override(draw: st.DrawFn) -> tuple[str, str]:
    key = draw(st.one_of(st.sampled_from(KEYS), st.sampled_from(KWARG_KEYS)), label="key")
    if draw(st.booleans(), label="misspell") and draw(st.booleans()):
        key = _misspell(key, draw(st.data()))
    return key, draw(_VALUE_TEXT, label="value")


def _names_key(exc: ConfigError, keys: list[str]) -> bool:
    """The error is about one of the overridden keys (or a section/sub-key of one)."""
    msg = str(exc)
    related = set(keys)
    if "epochs" in related:  # warm-up is checked against epochs (a cross-field rule)
        related.add("sched.warmup_epochs")
    for key in related:
        if key in msg:
            return True
        parts = key.split(".")
        # A wrong section name or a scalar given sub-keys is reported at the offending prefix.
        at_prefix = any(".".join(parts[:i]) in msg for i in range(1, len(parts)))
        if at_prefix and (exc.key is None or key.startswith(exc.key) or exc.key.startswith(key)):
            return True
    return False


@fast(200)
@given(st.lists(_override(), min_size=1, max_size=3))
def test_overrides_load_or_name_the_key(overrides: list[tuple[str, str]]) -> None:
    items = [f"{k}={v}" for k, v in overrides]
    try:
        cfg = load_config(TrainConfig, None, items)
    except ConfigError as exc:
        event("rejected")
        assert "\n" not in str(exc), str(exc)  # one line, no traceback-like dump
        assert exc.key is not None, f"{items}: error without a key: {exc}"
        assert _names_key(exc, [k for k, _ in overrides]), f"{items}: {exc}"
        return
    event("loaded")
    _assert_sane(cfg)


def _assert_sane(cfg: Any, path: str = "") -> None:
    """An accepted config holds only finite numbers (NaN/inf would only surface mid-training)."""
    import dataclasses

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{path}{f.name}"
        if dataclasses.is_dataclass(value):
            _assert_sane(value, key + ".")
        elif isinstance(value, float):
            assert math.isfinite(value), f"{key}={value} accepted"
        elif isinstance(value, tuple):
            assert all(math.isfinite(v) for v in value if isinstance(v, float)), f"{key}={value} accepted"


def test_non_finite_numbers_are_rejected_everywhere() -> None:
    # Exhaustive rather than sampled: every key with NaN and both infinities.
    for key in KEYS:
        for text in (".nan", ".inf", "-.inf", "1e400"):
            try:
                cfg = load_config(TrainConfig, None, [f"{key}={text}"])
            except ConfigError as exc:
                assert _names_key(exc, [key]), f"{key}={text}: {exc}"
            else:
                _assert_sane(cfg)


@fast(60)
@given(st.sampled_from(KEYS), st.data())
def test_misspelt_keys_are_named(key: str, data: st.DataObject) -> None:
    bad = _misspell(key, data)
    if bad in KEYS or bad.startswith("model.kwargs."):  # a real key, or a free-form sub-key (valid)
        return
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, [f"{bad}=1"])
    assert info.value.key is not None
    assert info.value.key in bad, str(info.value)


# ----------------------------------------------------------------------------------------- model kwargs
_BAD_ANY = st.sampled_from([None, "", "abc", [], {}, object, -1, 1e30])
_BAD_FLOATS = st.one_of(
    st.floats(-1.0, 2.0),
    st.sampled_from([-0.0, -1.0, 1.0, 2.0, math.nan, math.inf, -math.inf, "0.2", "x", True, None]),
)
_BOOL_TEXT = st.sampled_from(["true", "false", "yes", "no", "True", 0, 1, None])
# Per keyword: (valid values, invalid or edge values). Widths stay <= 1 in the valid set so examples are fast.
_STRATEGIES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "width_mult": (
        st.one_of(st.sampled_from([0.25, 0.35, 0.5, 0.75, 1.0]), st.floats(0.05, 1.0)),
        st.one_of(st.floats(-1.0, 3.0), st.sampled_from(
            [0, 0.0, -0.5, math.nan, math.inf, -math.inf, 1e-9, 3, 3.0, True, "0.5", None])),
    ),
    "num_classes": (st.integers(0, 20), st.sampled_from([-3, -1, 10.0, True, "10", None, 2.5])),
    "in_chans": (st.integers(1, 4), st.sampled_from([0, -1, 3.0, False, "3", None])),
    "dropout": (st.one_of(st.none(), st.floats(0.0, 0.99)), _BAD_FLOATS),
    "drop_path_rate": (st.floats(0.0, 0.99), _BAD_FLOATS),
    "out_indices": (
        st.one_of(st.lists(st.integers(-5, 4), min_size=1, max_size=5).map(tuple),
                  st.lists(st.integers(0, 4), min_size=1, max_size=5)),
        st.one_of(st.lists(st.integers(-7, 7), max_size=6).map(tuple),
                  st.sampled_from([(), 2, "0", "01234", None, (0.5,), ("a",), (True,), [[1]]])),
    ),
    "width_convention": (st.sampled_from(["torchvision", "timm", "keras"]),
                         st.sampled_from(["TIMM", "tv", "", None, 1])),
    "act": (st.sampled_from(["relu", "relu6"]), st.sampled_from(["gelu", "RELU", "", None, 0])),
    "pad_type": (st.sampled_from(["", "same", None]), st.sampled_from(["valid", "SAME", 0, True])),
    "bn_eps": (st.one_of(st.none(), st.floats(1e-6, 1e-2)),
               st.one_of(st.floats(-1e-3, 0.0), st.sampled_from([math.nan, math.inf, "1e-3", True]))),
    "bn_momentum": (st.one_of(st.none(), st.floats(0.0, 1.0)),
                    st.one_of(st.floats(-0.5, 1.5), st.sampled_from([math.nan, math.inf, "0.1", True]))),
}
_UNKNOWN = ["width", "num_class", "dropout_rate", "in_channels", "pretrained_cfg", "smallinput"]
MODEL_NAMES = list_models()


def _value_strategy(name: str, default: Any, bad: bool) -> st.SearchStrategy[Any]:
    if name in _STRATEGIES:
        return _STRATEGIES[name][bad]
    if isinstance(default, bool):  # on/off switches, also given as strings or 0/1
        return _BOOL_TEXT if bad else st.booleans()
    return _BAD_ANY


@st.composite
def _model_kwargs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    valid = get_model_kwargs(name)
    keys = draw(st.lists(st.sampled_from(sorted(valid)), max_size=4, unique=True), label="keys")
    # Mostly valid values so that about half the examples build a model and run a forward pass.
    kwargs = {k: draw(_value_strategy(k, valid[k], draw(st.integers(0, 5)) == 0), label=k) for k in keys}
    if draw(st.integers(0, 9), label="unknown?") == 0:
        kwargs[draw(st.sampled_from(_UNKNOWN))] = draw(_BAD_ANY)
    # Small and fast unless the example is about these very keywords.
    kwargs.setdefault("small_input", True)
    if "width_mult" in valid:
        kwargs.setdefault("width_mult", draw(st.sampled_from([0.25, 0.5]), label="width"))
    kwargs.setdefault("num_classes", 10)
    return kwargs


def _check_model(name: str, kwargs: dict[str, Any]) -> None:
    try:
        model = create_model(name, **kwargs)
    except ValueError as exc:
        event("rejected")
        msg = str(exc)
        assert "\n" not in msg, msg
        assert any(k in msg for k in kwargs), f"{name}{kwargs}: message names no keyword: {msg}"
        return
    event("built")
    model.eval()
    in_chans = model.in_chans
    x = torch.randn(1, in_chans, 32, 32)
    with torch.no_grad():
        out = model(x)
    if getattr(model, "features_only", False):
        assert isinstance(out, list) and len(out) == len(model.out_indices) >= 1
        for t, chs in zip(out, model.feature_channels):
            assert t.shape[:2] == (1, chs)
            assert torch.isfinite(t).all(), f"{name}{kwargs}: non-finite features"
    elif model.arch.encoder:  # MobileNetV5's encoder: the MSFA grid
        assert out.shape[:2] == (1, model.num_features) and out.ndim == 4, f"{name}{kwargs}: {tuple(out.shape)}"
        assert torch.isfinite(out).all(), f"{name}{kwargs}: non-finite output"
    else:
        width = model.num_classes or model.head_hidden_size
        assert out.shape == (1, width), f"{name}{kwargs}: {tuple(out.shape)}"
        assert torch.isfinite(out).all(), f"{name}{kwargs}: non-finite output"


# ResNet-50 takes ~0.4 s to build and initialise, MobileNetV4-Large/Hybrid-Large and MobileNetV5-Base more:
# fewer examples. MobileNetV5-300M (294M parameters at width 1) builds in seconds: its cases run with -m slow.
HEAVY = {n for n in MODEL_NAMES if n.startswith(("resnet", "mobilenet_v5"))
         or n in ("mobilenet_v4_conv_large", "mobilenet_v4_hybrid_large")}


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in HEAVY])
@fast(100)
@given(data=st.data())
def test_mobilenet_kwargs_build_or_name_the_keyword(name: str, data: st.DataObject) -> None:
    _check_model(name, data.draw(_model_kwargs(name), label="kwargs"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("mobilenet_v5_300m") else n
                                  for n in sorted(HEAVY)])
@fast(25)
@given(data=st.data())
def test_heavy_model_kwargs_build_or_name_the_keyword(name: str, data: st.DataObject) -> None:
    _check_model(name, data.draw(_model_kwargs(name), label="kwargs"))


# ---------------------------------------------------------------------------------- pre-flight checks
def _run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], *items: str) -> str:
    out = tmp_path / "run"
    code = main(["train", f"output_dir={out}", "epochs=1", "sched.warmup_epochs=0", "quiet=true", *items])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("mobilenets train: error:")]
    assert len(lines) == 1 and len(err.splitlines()) == 1, err
    assert not out.exists(), "a run directory was created before the error"
    return lines[0]


@pytest.mark.parametrize(
    ("items", "key"),
    [
        (["optim.lr=-0.1"], "optim.lr"),
        (["optim.lr=.nan"], "optim.lr"),
        (["model.kwargs={small_input: true, width_mult: 0}"], "width_mult"),
        (["model.kwargs.width_mult=-1"], "width_mult"),
        (["model.kwargs.width_mult=.inf"], "width_mult"),
        (["batch_size=5000"], "batch_size"),
        (["data.num_workers=100000"], "data.num_workers"),
        (["data.num_workers=-1"], "data.num_workers"),
        (["model.num_classes=7"], "model.num_classes"),
        (["aug.mixup_alpha=.inf"], "aug.mixup_alpha"),
        (["seed=99999999999999999999999"], "seed"),
        (["model.kwargs.small_input=yes please"], "small_input"),
        (["model.name=mobilenet_v4"], "mobilenet_v4"),
    ],
)
def test_preflight_rejects_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], items: list[str], key: str
) -> None:
    line = _run_cli(tmp_path, capsys, *items)
    assert key in line, line


def test_num_workers_limit_is_generous() -> None:
    limit = max(16, 4 * (os.cpu_count() or 1))  # the rule in DataConfig.validate
    load_config(TrainConfig, None, [f"data.num_workers={limit}"])
    with pytest.raises(ConfigError, match=r"data\.num_workers"):
        load_config(TrainConfig, None, [f"data.num_workers={limit + 1}"])


def _save_five_class(directory: Path, in_chans: int) -> Path:
    from mobilenets.weights import save_pretrained

    model = create_model("mobilenet_v3_small", num_classes=5, in_chans=in_chans, small_input=True, width_mult=0.25)
    return save_pretrained(model, directory)


def test_pretrained_class_mismatch_on_labelled_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Digits (grayscale) has 10 classes: a 7-way classifier cannot be trained on it, pretrained or not.
    weights = _save_five_class(tmp_path / "w", in_chans=1)
    line = _run_cli(
        tmp_path, capsys, f"model.pretrained={weights}", "model.num_classes=7",
        "model.kwargs={small_input: true, width_mult: 0.25}",
    )
    assert "model.num_classes" in line and "10" in line, line


def test_pretrained_architecture_mismatch_is_caught_early(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Weights of another width: the shapes do not match, reported before any run directory exists.
    weights = _save_five_class(tmp_path / "w", in_chans=3)
    line = _run_cli(
        tmp_path, capsys, f"model.pretrained={weights}", "data.name=synthetic", "data.synthetic_size=64",
        "batch_size=16", "model.kwargs={small_input: true, width_mult: 0.5}",
    )
    assert "does not match" in line, line


def test_pretrained_fine_tune_reinitialises_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 5-class weights fine-tuned on a 7-class synthetic task: the classifier is re-initialised (allowed).
    weights = _save_five_class(tmp_path / "w", in_chans=3)
    out = tmp_path / "ft"
    code = main([
        "train", f"output_dir={out}", "epochs=1", "sched.warmup_epochs=0", "quiet=true",
        f"model.pretrained={weights}", "model.num_classes=7", "data.name=synthetic", "data.synthetic_size=64",
        "batch_size=16", "eval_batch_size=64", "ema=false", "model.kwargs={small_input: true, width_mult: 0.25}",
    ])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 7
