"""Tests for mobilenets.config: typed loading, overrides, helpful errors, range checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from mobilenets.config import (
    ConfigError,
    TrainConfig,
    all_keys,
    apply_overrides,
    from_dict,
    load_config,
    save_yaml,
    to_dict,
    validate,
)


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ----------------------------------------------------------------------------------------------
# Round trips and loading
# ----------------------------------------------------------------------------------------------


def test_defaults_are_valid_and_match_the_main_job() -> None:
    cfg = TrainConfig()
    validate(cfg)
    assert cfg.model.name == "mobilenet_v3_small"
    assert cfg.model.kwargs == {}  # small_input comes from the dataset's defaults when the run starts
    assert cfg.aug.scale == (0.08, 1.0)
    assert cfg.optim.name == "adamw" and cfg.optim.lr == 0.004
    assert cfg.sched.gamma == 0.973 and cfg.sched.step_size == 2.0
    assert cfg.bn_momentum == 0.1
    # default factories are not shared between instances
    other = TrainConfig()
    other.model.kwargs["width_mult"] = 0.5
    assert "width_mult" not in cfg.model.kwargs


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = TrainConfig()
    path = save_yaml(cfg, tmp_path / "sub" / "config.yaml")
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp
    loaded = load_config(TrainConfig, path)
    assert loaded == cfg
    assert isinstance(loaded.aug.scale, tuple)


def test_to_dict_is_plain_and_yaml_safe() -> None:
    d = to_dict(TrainConfig())
    assert d["aug"]["scale"] == [0.08, 1.0]
    assert isinstance(d["optim"]["betas"], list)
    yaml.safe_dump(d)  # would raise on tuples / custom objects
    assert from_dict(TrainConfig, d) == TrainConfig()


def test_non_default_round_trip(tmp_path: Path) -> None:
    cfg = load_config(
        TrainConfig,
        None,
        [
            "optim.name=rmsprop_tf",
            "optim.eps=1e-3",
            "aug.scale=[0.25, 1]",
            "model.kwargs.width_mult=0.75",
            "output_dir=runs/x",
            "threads=2",
            "bn_momentum=null",
        ],
    )
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_config(TrainConfig, tmp_path / "c.yaml") == cfg


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
epochs: 10
optim:
  lr: 4e-3          # PyYAML reads this as a *string*; accepted as float
  name: sgd
aug:
  scale: [0.2, 1.0]
model:
  kwargs: {width_mult: 0.5}
""",
    )
    cfg = load_config(TrainConfig, path, ["epochs=12", "optim.momentum=0.8"])
    assert cfg.epochs == 12  # override wins over the file
    assert cfg.optim.lr == pytest.approx(4e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.name == "sgd"
    assert cfg.optim.momentum == 0.8
    assert cfg.optim.weight_decay == 0.05  # untouched keys keep their defaults
    assert cfg.aug.scale == (0.2, 1.0)
    assert cfg.model.kwargs == {"width_mult": 0.5}  # the file replaces the whole free-form dict


def test_empty_yaml_means_defaults(tmp_path: Path) -> None:
    assert load_config(TrainConfig, _write(tmp_path, "")) == TrainConfig()


def test_nested_dotted_overrides_do_not_mutate_input() -> None:
    base = TrainConfig()
    cfg = apply_overrides(
        base,
        [
            "sched.name=step",
            "sched.warmup_epochs=0",
            "data.name=cifar10",
            "aug.crop=rrc",
            "aug.scale=[0.08,1.0]",
            "model.pretrained=null",
            "optim.betas=[0.8, 0.99]",
        ],
    )
    assert cfg.sched.name == "step" and cfg.sched.warmup_epochs == 0.0
    assert cfg.data.name == "cifar10" and cfg.aug.crop == "rrc"
    assert cfg.optim.betas == (0.8, 0.99)
    assert base == TrainConfig()  # original untouched


def test_free_form_model_kwargs_override() -> None:
    cfg = apply_overrides(TrainConfig(), ["model.kwargs.width_mult=0.5", "model.kwargs.block.se=false"])
    assert cfg.model.kwargs == {"width_mult": 0.5, "block": {"se": False}}
    cfg = apply_overrides(TrainConfig(), ["model.kwargs={width_mult: 2.0}"])
    assert cfg.model.kwargs == {"width_mult": 2.0}


def test_section_mapping_override_merges() -> None:
    cfg = apply_overrides(TrainConfig(), ["optim={lr: 0.1, name: sgd}"])
    assert cfg.optim.lr == 0.1 and cfg.optim.name == "sgd"
    assert cfg.optim.weight_decay == 0.05  # other fields of the section are kept


def test_string_fields_keep_strings() -> None:
    # YAML would turn these into int / bool; str fields keep the raw text.
    cfg = apply_overrides(TrainConfig(), ["device=0", "model.name=no", "output_dir=123"])
    assert cfg.device == "0" and cfg.model.name == "no" and cfg.output_dir == "123"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("1", True),
        ("0", False),
        ("True", True),
    ],
)
def test_bool_spellings(text: str, expected: bool) -> None:
    assert apply_overrides(TrainConfig(), [f"deterministic={text}"]).deterministic is expected
    assert from_dict(TrainConfig, {"deterministic": text}).deterministic is expected


def test_int_accepts_integral_float() -> None:
    assert from_dict(TrainConfig, {"epochs": 12.0}).epochs == 12
    assert from_dict(TrainConfig, {"optim": {"lr": 1}}).optim.lr == 1.0


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("optim.lrr=0.1", "optim.lr"),
        ("epocs=3", "epochs"),
        ("optm.lr=0.1", "optim.lr"),  # misspelt section: the whole corrected key
        ("momentum=0.5", "optim.momentum"),  # misplaced key: found in its section
        ("aug.lable_smoothing=0.2", "aug.label_smoothing"),
    ],
)
def test_unknown_key_suggests_closest(override: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainConfig(), [override])
    msg = str(info.value)
    assert "unknown key" in msg
    assert f"did you mean '{suggestion}'" in msg
    assert override.split("=")[0] in msg  # the full dotted key is named
    assert "valid keys" in msg


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr.*did you mean 'optim\.lr'") as info:
        load_config(TrainConfig, path)
    assert str(path) in str(info.value)


def test_unknown_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="epocs"):
        from_dict(TrainConfig, {"epocs": 3})


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("epochs=abc", ["epochs", "'abc'", "int"]),
        ("epochs=1.5", ["epochs", "1.5", "int"]),
        ("epochs=true", ["epochs", "True", "int"]),
        ("deterministic=maybe", ["deterministic", "'maybe'", "bool"]),
        ("optim.lr=fast", ["optim.lr", "'fast'", "float"]),
        ("aug.scale=0.5", ["aug.scale", "0.5", "tuple[float, float]"]),
        ("aug.scale=[0.1, 0.5, 1.0]", ["aug.scale", "2 items"]),
        ("aug.scale=[0.1, x]", ["aug.scale[1]", "'x'", "float"]),
        ("model.kwargs=3", ["model.kwargs", "dict"]),
        ("optim=3", ["optim", "mapping"]),
        ("epochs=", ["epochs", "null", "int"]),
        ("threads=two", ["threads", "'two'", "int", "null"]),
    ],
)
def test_wrong_type_errors_name_key_value_and_type(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainConfig(), [override])
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_literal_errors_list_choices_and_suggest() -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainConfig(), ["optim.name=adamv"])
    msg = str(info.value)
    assert "optim.name" in msg
    for choice in ("'sgd'", "'rmsprop_tf'", "'adamw'"):
        assert choice in msg
    assert "did you mean 'adamw'" in msg
    with pytest.raises(ConfigError, match="'cifar10'"):
        from_dict(TrainConfig, {"data": {"name": "mnist"}})


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("optim.lr=-1", "optim.lr", "> 0"),
        ("optim.lr=0", "optim.lr", "> 0"),
        ("epochs=0", "epochs", ">= 1"),
        ("batch_size=0", "batch_size", ">= 1"),
        ("aug.label_smoothing=1.2", "aug.label_smoothing", "[0, 1)"),
        ("aug.label_smoothing=1.0", "aug.label_smoothing", "[0, 1)"),
        ("aug.hflip=1.5", "aug.hflip", "[0, 1]"),
        ("aug.mix_prob=-0.1", "aug.mix_prob", "[0, 1]"),
        ("ema_decay=1.0", "ema_decay", "(0, 1)"),
        ("ema_decay=0", "ema_decay", "(0, 1)"),
        ("optim.weight_decay=-0.1", "optim.weight_decay", ">= 0"),
        ("optim.clip_grad=-1", "optim.clip_grad", ">= 0"),
        ("optim.grad_accum_steps=0", "optim.grad_accum_steps", ">= 1"),
        ("data.num_workers=-1", "data.num_workers", ">= 0"),
        ("sched.warmup_epochs=-1", "sched.warmup_epochs", ">= 0"),
        ("aug.scale=[0.9, 0.1]", "aug.scale", "min <= max"),
        ("optim.lr=.nan", "optim.lr", "> 0"),
    ],
)
def test_range_errors(override: str, key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, [override])
    msg = str(info.value)
    assert msg.startswith(f"{key}:"), msg
    assert allowed in msg
    assert "got " in msg  # the value is shown
    assert info.value.key == key


def test_a_warmup_as_long_as_the_run_is_clamped_with_a_note() -> None:
    from mobilenets.engine.defaults import clamp_warmup

    # A 1-epoch smoke run with the default 1-epoch warm-up is accepted, and the warm-up clamped at start.
    cfg = load_config(TrainConfig, None, ["epochs=1"])
    clamped, notes = clamp_warmup(cfg)
    assert clamped.sched.warmup_epochs == pytest.approx(0.2)
    assert len(notes) == 1 and "sched.warmup_epochs=0.2" in notes[0] and "clamped from 1" in notes[0]
    # A warm-up shorter than the run is left alone.
    cfg = load_config(TrainConfig, None, ["sched.warmup_epochs=30", "epochs=40"])
    assert clamp_warmup(cfg) == (cfg, [])


def test_imagefolder_needs_root() -> None:
    with pytest.raises(ConfigError, match=r"data\.root"):
        load_config(TrainConfig, None, ["data.name=imagefolder"])
    load_config(TrainConfig, None, ["data.name=imagefolder", "data.root=/data/imgs"])


def test_missing_equals_shows_expected_form() -> None:
    with pytest.raises(ConfigError, match=r"key=value.*optim\.lr=0\.01"):
        apply_overrides(TrainConfig(), ["epochs"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(TrainConfig(), ["=3"])


def test_sub_key_of_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"epochs.*no sub-key 'x'"):
        apply_overrides(TrainConfig(), ["epochs.x=1"])


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_file(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path)
    msg = str(info.value)
    assert "bad.yaml" in msg and "mapping" in msg


def test_invalid_yaml_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "epochs: [1, 2\n", "broken.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_config(TrainConfig, path)


# ----------------------------------------------------------------------------------------------
# Generic machinery on a user-defined tree
# ----------------------------------------------------------------------------------------------


@dataclass
class _Leaf:
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    ratios: tuple[float, ...] = (0.5,)
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if len(self.sizes) > 3:
            raise ConfigError(f"got {self.sizes!r}, but it must have at most 3 items", key="sizes")


@dataclass
class _Root:
    required: int
    leaf: _Leaf = field(default_factory=_Leaf)
    maybe: _Leaf | None = None


def test_generic_tree() -> None:
    root = from_dict(
        _Root, {"required": 3, "leaf": {"sizes": [4.0], "ratios": [1, 2, 3]}, "maybe": {"mode": "b"}}
    )
    assert root.leaf.sizes == [4] and root.leaf.ratios == (1.0, 2.0, 3.0)
    assert root.maybe is not None and root.maybe.mode == "b"
    assert from_dict(_Root, to_dict(root)) == root
    assert "leaf.sizes" in all_keys(_Root) and "maybe.mode" in all_keys(_Root)
    with pytest.raises(ConfigError, match="missing required key"):
        from_dict(_Root, {})
    with pytest.raises(ConfigError, match=r"leaf\.sizes"):
        validate(apply_overrides(root, ["leaf.sizes=[1,2,3,4]"]))
    root2 = apply_overrides(root, ["maybe=null", "leaf.extra.x.y=1"])
    assert root2.maybe is None and root2.leaf.extra == {"x": {"y": 1}}
    assert dataclasses.is_dataclass(root2)


# ----------------------------------------------------------------------------------------------
# The literal choices and the registries they name
# ----------------------------------------------------------------------------------------------


def test_literal_choices_agree_with_the_registries() -> None:
    """The config sits below the data package, so its choices are written out: they must name what exists."""
    from typing import get_args

    from mobilenets.config import AutoAugment, CropMode, DatasetName
    from mobilenets.data import DATASET_INFO, DATASETS
    from mobilenets.data.augment import AUTO_AUGMENT_CHOICES, CROP_CHOICES

    assert set(get_args(DatasetName)) == set(DATASETS) == set(DATASET_INFO)
    assert set(get_args(CropMode)) == set(CROP_CHOICES)
    assert set(get_args(AutoAugment)) == {c for c in AUTO_AUGMENT_CHOICES if c is not None}
