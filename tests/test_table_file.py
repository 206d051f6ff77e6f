"""Architecture tables as files: round trips, the built-in tables rebuilt exactly from their files, safe
parsing with one-line errors, and a table path wherever a model name goes (create_model, native weights,
profile, bench, train)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import mobilenets
from mobilenets import create_model
from mobilenets.cli import main
from mobilenets.models import registry, tables
from mobilenets.models.rows import Bneck, Conv, LastConv
from mobilenets.models.table_file import (
    TableFile,
    dump_table_file,
    is_table_path,
    parse_row,
    parse_table_file,
    read_table_file,
    row_text,
    table_from_dict,
    table_to_dict,
    write_table_file,
)

BUILT_IN = {"mobilenet_v1": tables.MOBILENET_V1, "mobilenet_v2": tables.MOBILENET_V2,
            "mobilenet_v3_large": tables.MOBILENET_V3_LARGE, "mobilenet_v3_small": tables.MOBILENET_V3_SMALL}


def _write(tmp_path: Path, family: str, options: dict[str, Any] | None = None, table: Any = None,
           name: str = "model.yaml") -> Path:
    tf = TableFile(family, table or BUILT_IN[family], options or {}, name=f"{family} from its paper table")
    return write_table_file(tf, tmp_path / name)


def _text(tmp_path: Path, family: str = "mobilenet_v3_small") -> str:
    return _write(tmp_path, family).read_text()


# ------------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("family", sorted(BUILT_IN))
def test_dump_parse_round_trip(family: str, tmp_path: Path) -> None:
    tf = TableFile(family, BUILT_IN[family], {"small_input": True}, name="α = 0.9 ms", note="from a test")
    text = dump_table_file(tf)
    assert text.startswith("# mobilenets architecture table") and "format: mobilenets-table" in text
    assert parse_table_file(text) == tf
    assert table_from_dict(json.loads(json.dumps(table_to_dict(tf)))) == tf
    for suffix in (".yaml", ".yml", ".json"):
        path = write_table_file(tf, tmp_path / f"t{suffix}")
        assert is_table_path(str(path)) and read_table_file(path) == tf


def test_rows_are_written_as_tables_py_writes_them() -> None:
    assert row_text(tables.MOBILENET_V3_LARGE.stages[1][1]) == 'Bneck(56, 3, 72, 24, False, "RE", 1)'
    assert row_text(tables.MOBILENET_V1.stages[3][1]) == "DW(1, 512, n=5)"
    assert row_text(tables.MOBILENET_V3_SMALL.stem) == 'Conv(3, 16, 2, "HS")'
    assert row_text(tables.MOBILENET_V2.stages[1][0]) == "Bottleneck(6, 24, 2, 2)"
    every = [r for t in (*BUILT_IN.values(), *tables.RESNET.values()) for s in t.stages for r in s]
    every += [r for v in tables.MOBILENET_V4.values() for s in v.stages for r in s]
    assert all(parse_row(row_text(r)) == r for r in every)


def test_rows_parse_in_either_quote_style_and_with_keywords() -> None:
    assert parse_row("Bneck(56, 3, 72, 24, False, 'RE', 1)") == parse_row('Bneck(56, 3, 72, 24, False, "RE", 1)')
    assert parse_row("DW(1, 512, n=5)") == tables.MOBILENET_V1.stages[3][1]
    assert parse_row(" Bottleneck(t=6, c=24, s=2, n=2) ") == tables.MOBILENET_V2.stages[1][0]
    assert parse_row("LastConv(out=576, nl='HS')") == LastConv(576, "HS")


# ------------------------------------------------------------------------------ exact reproduction
def _same(a: torch.nn.Module, b: torch.nn.Module, size: int) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(2, a.in_chans, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(("family", "options", "keywords"), [
    ("mobilenet_v1", {}, {}),
    ("mobilenet_v1", {"separable": False, "act": "relu6"}, {"width_mult": 0.5}),
    ("mobilenet_v2", {}, {"width_mult": 0.35}),
    ("mobilenet_v3_large", {}, {}),
    ("mobilenet_v3_large", {"width_convention": "timm"}, {"width_mult": 0.75}),
    ("mobilenet_v3_large", {"reduced_tail": True, "dilated": True}, {"minimalistic": True}),
    ("mobilenet_v3_small", {"small_input": True, "use_se": False}, {"use_hswish": False}),
    ("mobilenet_v3_small", {"width_convention": "keras"}, {"width_mult": 1.25}),
], ids=lambda v: str(v))
def test_built_in_tables_rebuilt_from_their_files(family: str, options: dict, keywords: dict, tmp_path: Path) -> None:
    path = _write(tmp_path, family, options)
    torch.manual_seed(0)
    registered = create_model(family, num_classes=10, in_chans=1, **options, **keywords)
    torch.manual_seed(0)
    from_file = create_model(str(path), num_classes=10, in_chans=1, **keywords)
    assert from_file.model_name == "mobilenet_table" and from_file.arch.family == family
    assert sum(p.numel() for p in from_file.parameters()) == sum(p.numel() for p in registered.parameters())
    assert from_file.arch == registered.arch
    _same(registered, from_file, 32 if options.get("small_input") else 64)


def test_keywords_override_the_file_options(tmp_path: Path) -> None:
    path = _write(tmp_path, "mobilenet_v3_small", {"small_input": True, "use_se": False})
    assert create_model(path).arch.small_input
    model = create_model(path, small_input=False, use_se=True)
    assert not model.arch.small_input and any(b.se_chs for b in model.arch.blocks)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    with pytest.raises(ValueError, match="separable=True does not apply to a mobilenet_v3_small table"):
        create_model(path, separable=True)
    with pytest.raises(ValueError, match="use_se='no' invalid; expected True or False"):
        create_model(path, use_se="no")


def test_adapted_widths_resolve_exactly(tmp_path: Path) -> None:
    """What NetAdapt writes (multiples of 8, width_mult 1, torchvision widths) resolves to exactly those widths."""
    t = tables.MOBILENET_V3_SMALL
    s = [list(stage) for stage in t.stages]
    s[0][0] = s[0][0]._replace(exp=8, out=8)  # stride 2: no residual
    s[1][0] = s[1][0]._replace(exp=48, out=16)
    s[1][1] = s[1][1]._replace(exp=56, out=16)  # residual: in == out == 16
    s[2][1] = s[2][1]._replace(exp=160)
    s[4][2] = s[4][2]._replace(exp=400)
    s[5][0] = LastConv(472, "HS")
    adapted = tables.Table(Conv(3, 8, 2, "HS"), tuple(tuple(x) for x in s), head=712)
    tf = TableFile("mobilenet_v3_small", adapted, {"width_convention": "torchvision"})
    model = create_model(str(write_table_file(tf, tmp_path / "adapted.yaml")), small_input=True, num_classes=10)
    arch = model.arch
    assert arch.stem.out_chs == 8 and arch.head_hidden == 712
    rows = [r for stage in adapted.stages for r in stage]
    assert len(rows) == len(arch.blocks)
    for row, spec in zip(rows, arch.blocks, strict=True):
        if isinstance(row, Bneck):
            assert (spec.mid_chs, spec.out_chs) == (row.exp, row.out), row
        else:
            assert spec.out_chs == row.out
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# ------------------------------------------------------------------------------------------ errors
def _error(tmp_path: Path, old: str, new: str, family: str = "mobilenet_v3_small") -> str:
    text = _text(tmp_path, family)
    assert old in text, old
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError) as info:
        read_table_file(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_errors_are_one_line_and_name_the_row(tmp_path: Path) -> None:
    bneck = 'Bneck(56, 3, 72, 24, False, "RE", 2)'
    msg = _error(tmp_path, bneck, 'Bnek(56, 3, 72, 24, False, "RE", 2)')
    assert "stages[1][0]" in msg and "unknown row type 'Bnek'" in msg and msg.endswith("did you mean 'Bneck'?")
    msg = _error(tmp_path, bneck, 'Bneck(56, 3, 72, 24, False, "RE")')
    assert "stages[1][0]" in msg and "missing s" in msg
    msg = _error(tmp_path, bneck, 'Bneck(56, 3, 72, 24, False, "RE", 2, 9)')
    assert "8 values; expected at most 7" in msg
    assert "se='no' invalid" in _error(tmp_path, bneck, 'Bneck(56, 3, 72, 24, "no", "RE", 2)')
    assert "input=57 but the strides before it give 56" in _error(tmp_path, bneck, 'Bneck(57, 3, 72, 24, False, "RE", 2)')
    assert "unknown column 'expand'" in _error(tmp_path, bneck, 'Bneck(56, 3, 72, 24, False, "RE", 2, expand=3)')
    assert "k=4 invalid" in _error(tmp_path, bneck, 'Bneck(56, 4, 72, 24, False, "RE", 2)')
    assert "nl='RELU' invalid" in _error(tmp_path, bneck, 'Bneck(56, 3, 72, 24, False, "RELU", 2)')
    assert "DW rows are not read by mobilenet_v3_small" in _error(tmp_path, bneck, "DW(2, 24)")
    assert "4 stride-2 steps" in _error(tmp_path, "Bottleneck(6, 24, 2, 2)", "Bottleneck(6, 24, 2, 1)", "mobilenet_v2")
    assert "LastConv must be the last row" in _error(tmp_path, bneck, 'LastConv(72, "HS")')
    assert "family='mobilenet_v3_smal' invalid" in _error(tmp_path, "family: mobilenet_v3_small",
                                                          "family: mobilenet_v3_smal")
    assert "option 'use_sse' unknown" in _error(tmp_path, "options: {}", "options: {use_sse: false}")
    assert "options.use_se='no' invalid" in _error(tmp_path, "options: {}", "options: {use_se: 'no'}")
    assert "format=None invalid" in _error(tmp_path, "format: mobilenets-table\n", "")
    assert "version=2 unsupported" in _error(tmp_path, "version: 1", "version: 2")
    assert "not valid YAML" in _error(tmp_path, "stages:\n", "stages: [\n")
    assert "head=None invalid" in _error(tmp_path, "head: 1024", "head: null")
    assert "head=1280 invalid" in _error(tmp_path, "head: null", "head: 1280", "mobilenet_v2")


def test_nothing_in_a_file_is_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bneck = 'Bneck(56, 3, 72, 24, False, "RE", 2)'
    attempts = [f"__import__('pathlib').Path({str(marker)!r}).touch()",
                f"Bneck(__import__('pathlib').Path({str(marker)!r}).touch(), 3, 72, 24, False, 'RE', 2)",
                "__import__('os')", "Bneck(*[56, 3, 72, 24, False, 'RE', 2])", "Bneck(56, 3, 72, 24, False, 'RE', 1 + 1)",
                "(lambda:0)()", "open('x')"]
    for attempt in attempts:
        msg = _error(tmp_path, bneck, attempt)
        assert "stages[1][0]" in msg, msg
        assert "unknown row type" in msg or "not a constant" in msg or "not a row call" in msg, msg
    assert not marker.exists()


def test_registry_takes_a_table_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "mobilenet_v3_small", {"small_input": True})
    assert registry.is_model_name(str(path)) and registry.model_task(str(path)) == "classify"
    assert "table" not in mobilenets.get_model_kwargs(str(path))
    assert "small_input" in mobilenets.get_model_kwargs(str(path))
    by_name = create_model("mobilenet_table", table=str(path))
    assert by_name.model_kwargs["table"] == table_to_dict(read_table_file(path))  # the dict, not the path
    with pytest.raises(ValueError, match="table= given with the table file"):
        create_model(str(path), table=str(path))
    with pytest.raises(ValueError, match="no such table file"):
        create_model(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="table='nope' not found"):
        create_model("mobilenet_table", table="nope")
    from mobilenets.engine.defaults import model_input_size

    assert model_input_size(str(path), {}, None) == 32
    assert model_input_size(str(path), {"small_input": False}, None) == 224


def test_native_weights_rebuild_without_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "mobilenet_v3_small", {"small_input": True})
    model = create_model(path, num_classes=4, in_chans=1).eval()
    model.save_pretrained(str(tmp_path / "weights"))
    path.unlink()
    config = json.loads((tmp_path / "weights" / "config.json").read_text())
    assert config["architecture"] == "mobilenet_table" and config["kwargs"]["table"]["family"] == "mobilenet_v3_small"
    loaded = mobilenets.from_pretrained(tmp_path / "weights")
    again = create_model("mobilenet_table", pretrained=str(tmp_path / "weights"))
    _same(model, loaded, 32)
    _same(model, again, 32)


def test_profile_and_bench_take_a_table_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "mobilenet_v3_small")
    assert main(["profile", str(path), "small_input=true", "--input-size", "32", "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["profile", "mobilenet_v3_small", "small_input=true", "--input-size", "32", "--json"]) == 0
    built_in = json.loads(capsys.readouterr().out)
    assert (from_file["params"], from_file["macs"]) == (built_in["params"], built_in["macs"])
    from mobilenets.deploy.bench import load_bench_model

    name, model, artifact = load_bench_model(str(path), {"num_classes": 3})
    assert name == str(path) and artifact is None and model is not None and model.num_classes == 3


def test_train_with_a_table_path(tmp_path: Path) -> None:
    from mobilenets.config import TrainConfig, load_config
    from mobilenets.engine.train import train

    path = _write(tmp_path, "mobilenet_v3_small", {"small_input": True})
    cfg = load_config(TrainConfig, None, [
        "data.name=synthetic", "data.synthetic_size=64", "data.image_size=16", "model.num_classes=4",
        f"model.name={path}", "model.kwargs={width_mult: 0.35}", "batch_size=32", "eval_batch_size=64", "epochs=1",
        "sched.warmup_epochs=0", "quiet=true", f"output_dir={tmp_path / 'run'}"])
    summary = train(cfg)
    assert summary["model"] == str(path) and summary["params"] > 0
    path.unlink()  # the run's weights carry the table
    model = mobilenets.from_pretrained(tmp_path / "run")
    assert model.model_name == "mobilenet_table" and model.num_classes == 4 and model.arch.small_input


def test_a_file_that_sets_small_input_keeps_it_over_the_dataset_default(tmp_path: Path) -> None:
    from mobilenets.config import TrainConfig, load_config
    from mobilenets.engine.defaults import resolve_dataset_defaults

    def small_input(path: Path) -> Any:
        cfg = load_config(TrainConfig, None, ["data.name=digits", f"model.name={path}"])
        return resolve_dataset_defaults(cfg)[0].model.kwargs.get("small_input")

    assert small_input(_write(tmp_path, "mobilenet_v3_small", {"small_input": False}, name="big.yaml")) is None
    assert small_input(_write(tmp_path, "mobilenet_v3_small", name="open.yaml")) is True  # digits' default


def test_v5_table_round_trips_and_builds_like_the_registered_model() -> None:
    from mobilenets.models.table_file import TableFile, dump_table_file, parse_table_file, table_to_dict
    from mobilenets.models.tables import MOBILENET_V5, Table

    v5 = MOBILENET_V5["300m"]
    tf = TableFile("mobilenet_v5", Table(v5.stem, v5.stages), {"variant": "300m", "encoder": True})
    assert parse_table_file(dump_table_file(tf)) == tf
    with torch.device("meta"):
        model = mobilenets.create_model("mobilenet_table", table=table_to_dict(tf))
    assert sum(p.numel() for p in model.parameters()) == 294_126_912
    assert model.arch.encoder and model.pad_type == "same"


@pytest.mark.parametrize(("row", "options", "match"), [
    ("UIB(4, 0, 4, 256, 1)", {}, "a=4 invalid; expected an odd kernel size or 0"),
    ("UIB(3, 2, 4, 256, 1)", {}, "k=2 invalid"),
    ("UIB(3, 0, 4, 256, 1)", {"msfa_grid": 0}, "msfa_grid=0 invalid; expected an integer >= 1"),
    ("UIB(3, 0, 4, 256, 1)", {"variant": "large"}, "variant"),
    ("Bneck(56, 3, 72, 24, False, 'RE', 1)", {}, "Bneck rows are not read by mobilenet_v5"),
])
def test_v5_table_errors_name_the_row_or_option(row: str, options: dict, match: str) -> None:
    from mobilenets.models.table_file import table_from_dict

    data = {"format": "mobilenets-table", "version": 1, "family": "mobilenet_v5", "options": options,
            "stem": "Conv(3, 16, 2)", "stages": [["FusedIB(3, 4, 128, 2)"], ["UIB(3, 5, 6, 256, 2)", row],
                                                 ["UIB(5, 5, 6, 512, 2)"], ["UIB(5, 5, 6, 1024, 2)"]]}
    with pytest.raises(ValueError, match=match):
        table_from_dict(data)
