"""Experiment grids and the HTML report, end to end: kill-and-resume, and rendering in headless Chromium.

Why a real browser: a report is only useful if it opens offline and shows every table and image; a string
check of the HTML cannot see a broken data URI or a script error. Chromium is installed by the test set-up
(``ensure_chromium``); if it cannot be had the browser test fails rather than skips, because a skipped check
would let a broken report through CI silently.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mobilenets.config import ConfigError
from mobilenets.study.experiment import aggregate, load_results, load_spec
from mobilenets.study.figures import _pareto
from mobilenets.study.report import write_report
from mobilenets.study.tables import TABLE_IDS, V1_IMAGENET_COST, _pm

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
FIGURE_IDS = ("plot-acc-macs", "plot-acc-latency", "plot-curves", "plot-layers", "plot-architecture")

TINY = """
name: tiny
overrides: [data.name=synthetic, data.synthetic_size=32, data.image_size=16, epochs=2, sched.warmup_epochs=0,
            batch_size=16, quiet=true, channels_last=false, model.name=mobilenet_v3_small, model.kwargs.width_mult=0.35]
seeds: [0]
latency: {runs: 3, warmup: 1, best_backend: false}  # eager only: the kill/resume logic is under test
runs:
  full: []
  plain: {model.kwargs.use_se: false, model.kwargs.use_hswish: false}
"""


def ensure_chromium() -> str:
    """Path of Debian's chromium, installing it with apt-get when missing and running as root."""
    if not os.path.exists(CHROMIUM) and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env, capture_output=True,
                       timeout=900)
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing and could not be installed (apt-get install -y chromium, as root)")
    return CHROMIUM


def render(html_path: Path) -> tuple[str, list[str]]:
    """Load ``html_path`` in headless Chromium: (DOM after load, console messages).

    The page is loaded from an instrumented copy that marks every ``<img>`` with ``data-decoded`` once the
    browser has decoded it, so the DOM dump shows what the browser could draw. Console messages (errors,
    uncaught exceptions, failed resource loads) come from Chromium's stderr log.
    """
    chromium = ensure_chromium()
    probe = ("<script>window.addEventListener('load',()=>{for(const i of document.images){"
             "i.setAttribute('data-decoded',(i.complete&&i.naturalWidth>0&&i.naturalHeight>0)?'yes':'no')}});</script>")
    page = html_path.with_name(html_path.stem + ".probe.html")
    page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, console


def _experiment_command() -> list[str]:
    """``python -m mobilenets experiment`` once the main CLI has the sub-command; the module's own CLI until then."""
    from mobilenets import cli

    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "experiment" in subs.choices:
        return [sys.executable, "-m", "mobilenets", "experiment"]
    return [sys.executable, "-m", "mobilenets.cli", "experiment"]


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the tiny grid as a subprocess, SIGKILL it mid-way, run it again to completion."""
    root = tmp_path_factory.mktemp("exp")
    spec = root / "tiny.yaml"
    spec.write_text(TINY)
    out = root / "out"
    cmd = [*_experiment_command(), str(spec), "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    first = out / "runs" / "full" / "seed0" / "summary.json"
    second_ckpt = out / "runs" / "plain" / "seed0" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    # Kill once the first job is finished and the second is mid-way (it has a checkpoint, no summary).
    while not (first.exists() and second_ckpt.exists()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"experiment ended before it could be killed:\n{proc.stdout.read().decode()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_second_done = (second_ckpt.parent.parent / "summary.json").exists()
    mtime = first.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return {"dir": out, "mtime": mtime, "first": first, "log": again.stdout + again.stderr, "rc": again.returncode,
            "second_done_before_restart": killed_second_done}


# ---------------------------------------------------------------------------------------------- tests
def test_experiment_resumes_after_kill(experiment: dict) -> None:
    assert experiment["rc"] == 0, experiment["log"][-3000:]
    log = experiment["log"]
    assert "full seed 0: finished earlier, skipped" in log
    assert experiment["first"].stat().st_mtime_ns == experiment["mtime"], "a finished run was re-trained"
    if not experiment["second_done_before_restart"]:
        assert "plain seed 0: resuming from checkpoint" in log
    data = load_results(experiment["dir"])
    assert data["finished"] == data["total"] == 2 and not data["errors"]
    rows = {r["name"]: r for r in data["summary"]}
    assert set(rows) == {"full", "plain"}
    for row in rows.values():
        assert row["n"] == 1 and row["test_acc1_std"] is None
        assert row["params"] > 0 and row["macs"] > 0 and row["latency_eager_ms"] > 0
    assert rows["plain"]["params"] < rows["full"]["params"]  # SE removed
    assert (experiment["dir"] / "results.csv").read_text().count("\n") == 3


def test_aggregate_mean_std() -> None:
    recs = [{"name": "a", "seed": s, "run_dir": f"a/seed{s}", "params": 10, "macs": 20, "test_acc1": acc,
             "train_time_s": 1.0, "latency_eager_ms": 2.0, "latency_best_ms": 1.0} for s, acc in enumerate((90.0, 92.0))]
    (row,) = aggregate(recs)
    assert row["n"] == 2 and row["test_acc1"] == 91.0 and abs(row["test_acc1_std"] - 2**0.5) < 1e-12
    assert _pm(row["test_acc1"], row["test_acc1_std"]) == "91.00 ± 1.41"


_CHEAP_PINS = [(0.25, 224, True), (1.0, 128, True)]


@pytest.mark.parametrize(
    "key", [pytest.param(k, marks=() if k in _CHEAP_PINS else pytest.mark.slow) for k in V1_IMAGENET_COST]
)
def test_pinned_v1_costs_match_profiler(key: tuple[float, int, bool]) -> None:
    import mobilenets

    width, res, separable = key
    prof = mobilenets.profile(mobilenets.create_model("mobilenet_v1", width_mult=width, separable=separable), res)
    assert (prof.params, prof.macs) == V1_IMAGENET_COST[key]


def test_report_renders_in_chromium(experiment: dict, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    html_path, md_path = write_report([experiment["dir"]], tmp_path / "report.html")
    dom, console = render(html_path)
    assert console == [], f"console messages: {console}"
    for tid in TABLE_IDS:
        assert f'id="{tid}"' in dom, f"table {tid} missing"
    imgs = re.findall(r"<img\b[^>]*>", dom)
    assert len(imgs) == len(FIGURE_IDS)
    for fid in FIGURE_IDS:
        tag = next((t for t in imgs if f'id="{fid}"' in t), None)
        assert tag is not None, f"figure {fid} missing"
        assert 'data-decoded="yes"' in tag, f"Chromium could not decode {fid}"
        data = re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1)
        image = Image.open(io.BytesIO(base64.b64decode(data))).convert("L")
        assert image.width > 100 and image.height > 100
        assert ImageStat.Stat(image).stddev[0] > 1.0, f"figure {fid} is blank"
    assert "<script" not in html_path.read_text() and "http://" not in html_path.read_text()
    md = md_path.read_text()
    for fid in FIGURE_IDS:
        assert (md_path.parent / "report_files" / f"{fid}.png").is_file() and f"report_files/{fid}.png" in md


def test_browser_check_catches_console_errors(tmp_path: Path) -> None:
    """Negative control: the same browser check must see a deliberate console.error and an uncaught exception."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('deliberate-error');"
                    "notDefinedAnywhere();</script></body></html>")
    _, console = render(page)
    assert any("deliberate-error" in line for line in console)
    assert any("Uncaught ReferenceError" in line for line in console)


def test_spec_errors_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: {a: [optim.lrr=0.1]}")
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_spec(bad)
    bad.write_text("runs: {a: [output_dir=x]}")
    with pytest.raises(ConfigError, match="set by the experiment runner"):
        load_spec(bad)
    bad.write_text("runs: {a: []}\nseedz: [1]")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_spec(bad)
    ok = tmp_path / "grid.yaml"
    ok.write_text("grids: [{name: 'w{width_mult}_r{image_size}', axes: {model.kwargs.width_mult: [1.0, 0.5], "
                  "data.image_size: [32, 16]}}]\nseeds: 2")
    spec = load_spec(ok)
    assert [r.name for r in spec.runs] == ["w1.0_r32", "w1.0_r16", "w0.5_r32", "w0.5_r16"] and spec.seeds == [0, 1]


def test_pareto_front() -> None:
    # (cost, accuracy): the third point is dominated by the second.
    assert _pareto([(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (4.0, 96.0)]) == [0, 1, 3]


def test_shipped_specs_load() -> None:
    root = Path(__file__).resolve().parents[1] / "configs" / "experiments"
    for name in ("v3_digits_study.yaml", "v3_cifar10_study.yaml"):
        spec = load_spec(root / name)
        assert {"v3_small", "v3_large", "resnet50"} <= {r.name for r in spec.runs}
