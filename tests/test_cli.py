"""The command line a new user meets: help and examples everywhere, --version, one KEY=VALUE override
syntax, hints that name commands, stages on stderr with pure JSON on stdout, experiment output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

import mobilenets
from mobilenets.cli import build_parser, cli_message, main

COMMANDS = ("profile", "list", "train", "eval", "predict", "convert", "export", "quantize", "bench", "adapt", "experiment",
            "report")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _one_line_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help or "" for a in action._choices_actions}


# ------------------------------------------------------------------------------------------ help
def test_every_command_has_help_an_example_and_option_help() -> None:
    parser = build_parser()
    subs = _subparsers(parser)
    assert set(COMMANDS) <= set(subs)
    helps = _one_line_helps(parser)
    for name in COMMANDS:
        assert helps[name] and "\n" not in helps[name], name
        p = subs[name]
        text = f"{p.description or ''}\n{p.epilog or ''}"
        assert f"mobilenets {name}" in text, f"{name}: no example in --help"
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "mobilenets profile mobilenet_v3_small small_input=true" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"mobilenets {mobilenets.__version__}"


# ------------------------------------------------------------------------------------------ overrides
def _profile_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_profile_takes_key_value_overrides_anywhere(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["profile", "mobilenet_v3_small", "--input-size", "32", "--json"]
    positional = _profile_json([*base[:2], "small_input=true", "num_classes=10", *base[2:]], capsys)
    after_options = _profile_json([*base, "small_input=true", "num_classes=10"], capsys)
    alias = _profile_json([*base, "--set", "small_input=true", "--set", "num_classes=10"], capsys)
    assert positional["kwargs"] == {"small_input": True, "num_classes": 10}
    assert positional["macs"] == after_options["macs"] == alias["macs"]
    plain = _profile_json(base, capsys)
    assert plain["macs"] != positional["macs"]  # the overrides did something


def test_bad_override_and_unknown_option_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "mobilenet_v1", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "'0.5' is not a KEY=VALUE override" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["profile", "mobilenet_v1", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_mistyped_names_get_the_closest_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """argparse before 3.14 only lists the choices; every choice of the command line names the closest."""
    for argv, hint in ((["trian"], "did you mean 'train'?"),
                       (["export", "w", "--format", "onxx", "--out", "m.onnx"], "did you mean 'onnx'?"),
                       (["quantize", "w", "--target", "openvno", "--out", "m.xml"], "did you mean 'openvino'?"),
                       (["eval", "w", "--split", "tset"], "did you mean 'test'?")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert hint in err and "expected one of" in err and "Traceback" not in err, (argv, err)


def test_tflite_is_accepted_for_litert() -> None:
    parser = build_parser()
    assert parser.parse_args(["export", "w", "--format", "tflite", "--out", "m.tflite"]).format == "litert"
    assert parser.parse_args(["quantize", "w", "--target", "TFLite", "--out", "m.tflite"]).target == "litert"
    assert parser.parse_args(["export", "w", "--format", "onnx", "--out", "m.onnx"]).format == "onnx"


def test_bench_and_convert_take_key_value_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import mobilenets.cli.convert as convert_cli
    import mobilenets.deploy.bench as bench

    seen: dict[str, Any] = {}

    def fake_bench(model: str, **kw: Any) -> list[Any]:
        seen["bench"] = kw["kwargs"]
        return []

    def fake_convert(src: str, out: str, **kw: Any) -> Path:
        seen["convert"] = kw["kwargs"]
        raise ValueError("stop here")

    monkeypatch.setattr(bench, "run_bench", fake_bench)
    monkeypatch.setattr(convert_cli, "convert", fake_convert)
    assert main(["bench", "mobilenet_v3_small", "small_input=true", "--json", "num_classes=10",
                 "--set", "width_mult=0.5"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert seen["bench"] == {"width_mult": 0.5, "small_input": True, "num_classes": 10}
    assert main(["convert", "w.pth", "--arch", "mobilenet_v3_large", "width_convention=timm",
                 "--out", str(tmp_path / "o")]) == 2
    assert seen["convert"] == {"width_convention": "timm"}


# ------------------------------------------------------------------------------------------ hints
def test_python_hints_become_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_message("unknown model 'x' (see mobilenets.list_models())") == "unknown model 'x' (see `mobilenets list`)"
    assert main(["profile", "mobilenet_v3_smal"]) == 2
    err = capsys.readouterr().err
    assert "`mobilenets list`" in err and "list_models()" not in err and "mobilenet_v3_small" in err
    assert main(["convert", "no_such_file.pth", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "`mobilenets list --pretrained`" in err and "list_pretrained()" not in err


def test_list_pretrained(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--pretrained", "mobilenet_v3_large.*"]) == 0
    tags = capsys.readouterr().out.split()
    assert tags and all(t.startswith("mobilenet_v3_large.") for t in tags)
    assert tags == mobilenets.list_pretrained("mobilenet_v3_large.*")
    assert main(["list", "--pretrained", "nothing*"]) == 2
    assert "no pretrained tag matches 'nothing*'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ stages
def test_export_prints_stages_on_stderr_and_pure_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenets.weights import save_pretrained

    weights = tmp_path / "w"
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.35, small_input=True, in_chans=1,
                                    num_classes=10)
    save_pretrained(model.eval(), weights, extra={"dataset": "digits"})
    assert main(["export", str(weights), "--format", "torchscript", "--out", str(tmp_path / "m.pt"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"] is True
    lines = captured.err.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["loading", "exporting", "verifying:"]


def test_export_int8_is_quantize_with_the_formats_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from mobilenets.weights import save_pretrained

    weights = tmp_path / "w"
    model = mobilenets.create_model("mobilenet_v3_small", width_mult=0.35, small_input=True, in_chans=1,
                                    num_classes=10)
    save_pretrained(model.eval(), weights, extra={"dataset": "digits"})
    out = tmp_path / "m_int8.onnx"
    assert main(["export", str(weights), "--format", "onnx", "--int8", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert out.is_file() and result["target"] == "onnxruntime" and result["method"] == "ptq"
    assert 0.0 <= result["int8_acc1"] <= 100.0 and result["split"] == "test"
    assert main(["export", str(weights), "--format", "torchscript", "--int8", "--out", str(tmp_path / "m.pt")]) == 2
    assert "formats with an int8 file: pt2, executorch, onnx" in capsys.readouterr().err
    assert main(["export", str(weights), "--format", "onnx", "--int8", "--batch", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--batch cannot be combined with --int8" in err and "--target onnxruntime" in err


# ------------------------------------------------------------------------------------------ experiment
def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "exp.yaml"
    spec.write_text("name: smoke\nseeds: [0, 1]\nruns:\n  a: [epochs=2]\n  b: [epochs=2, model.name=mobilenet_v2]\n")
    return spec


def _no_runtime_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenets.deploy import bench

    monkeypatch.setattr(bench.Backend, "available", lambda self: not self.requires)


def test_experiment_results_line_names_the_missing_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import mobilenets.study.experiment as experiment

    row = {"name": "v3_small", "params": 1.5e6, "macs": 6e7, "test_acc1": 97.5, "test_acc1_std": None,
           "latency_eager_ms": 7.48, "latency_best_ms": 7.48, "best_backend": "eager"}
    results = {"summary": [row], "finished": 1, "total": 1, "errors": {}}
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: results)
    _no_runtime_extras(monkeypatch)
    assert main(["experiment", str(_spec(tmp_path)), "-o", str(tmp_path / "exp")]) == 0
    out = capsys.readouterr().out
    assert "7.48 ms eager / 7.48 ms eager" not in out and "latency 7.48 ms eager" in out
    assert "pip install 'mobilenets[onnx]'" in out

    # With a runtime measured, both figures are shown and no install note.
    row.update(latency_best_ms=3.1, best_backend="onnxruntime")
    assert main(["experiment", str(_spec(tmp_path)), "-o", str(tmp_path / "exp")]) == 0
    out = capsys.readouterr().out
    assert "7.48 ms eager / 3.10 ms onnxruntime" in out and "pip install" not in out


def test_experiment_dry_run_estimates_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, exp = _spec(tmp_path), tmp_path / "exp"
    assert main(["experiment", str(spec), "-o", str(exp), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("todo") == 4 and "estimate: none yet" in out

    first = exp / "runs" / "a" / "seed0"
    first.mkdir(parents=True)
    (first / "summary.json").write_text(json.dumps({"wall_time_s": 100.0}))
    assert main(["experiment", str(spec), "-o", str(exp), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1/4 jobs finished, 3 to do" in out
    assert "~1:40 per job" in out and "~5:00 for the 3 jobs to do" in out
