"""README.md's commands, pasted in order into a fresh copy of the repository, run without error.

Every ``bash`` block line is one command and every ``python`` block one script, run in the order the page
shows them, in a copy of the tracked files with an empty home directory. Fast settings come from the
environment only -- the commands are the page's own: ``$MOBILENETS_TRAIN_OVERRIDES`` makes each training
run one epoch, and ``~/data`` holds tiny datasets in the official on-disk formats. Nothing is downloaded:
a command marked ``# downloads`` must fail offline with a one-line error that says how to get the file
(a Python block marked so, with the registry's ``WeightsNotAvailable``). ``pip install`` lines are not run
(this environment is the one they build); the extras they name must be declared by the package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import metadata
from pathlib import Path

import pytest

from cli_env import cli_env
from datasets_on_disk import SPEC, fake_members, make_texture_folder, write_tar

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^( *)```(bash|python)\n(.*?)^\1```", re.M | re.S)
DOWNLOADS = "# downloads"


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, text)`` of every bash/python block of README.md, dedented, in page order."""
    blocks = []
    for indent, lang, body in BLOCK.findall((ROOT / "README.md").read_text()):
        lines = [line[len(indent):] if line.startswith(indent) else line for line in body.splitlines()]
        blocks.append((lang, "\n".join(lines)))
    return blocks


def _fresh_copy(dest: Path) -> Path:
    """The repository's tracked files, as a fresh clone has them (nothing built, no runs/)."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [n for n in files.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and not {"runs", ".git", "__pycache__"} & set(p.relative_to(ROOT).parts)]
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _check_pip_line(line: str) -> str | None:
    """Check a ``pip install ... [&& rest]`` line's extras against pyproject.toml; return the rest to run."""
    install, _, rest = line.partition("&&")
    assert "torch==2.13.0" in install, f"README installs torch without the CPU pin: {line}"
    extras = re.search(r'\.\[([^\]]*)\]', install)
    declared = set(metadata("mobilenets").get_all("Provides-Extra") or [])  # from pyproject.toml, as installed
    for extra in (extras.group(1).split(",") if extras else []):
        assert extra.strip() in declared, f"README names the extra [{extra}], which pyproject.toml lacks"
    rest = rest.strip()
    return None if not rest or "pytest" in rest else rest  # the test command is this suite itself


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("readme")
    repo = _fresh_copy(base / "clone")
    home = base / "home"
    make_texture_folder(home / "data" / "photos", per_class=(8, 4))
    write_tar(home / "data" / SPEC["cifar10"][1], fake_members("cifar10"))
    env = cli_env(
        HOME=str(home), TORCH_HOME=str(base / "torch"), HF_HOME=str(base / "hf"), HF_HUB_OFFLINE="1",
        MPLBACKEND="Agg",
        # One epoch per training run; the fake CIFAR train files hold 200 images (the real archive 50,000).
        MOBILENETS_TRAIN_OVERRIDES="epochs=1 data.val_size=40 data.scene_sizes=[64,32,32] fast_depthwise_grad=false",
    )
    return repo, env


TIMES: list[tuple[float, str]] = []  # (seconds, command): printed with -s, to keep the walk's cost in view


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    TIMES.append((time.perf_counter() - start, cmd[-1].splitlines()[0][:100]))
    return done


def readme_commands() -> list[str]:
    """Every command line of the bash blocks, in page order."""
    return [line.strip() for lang, text in readme_blocks() if lang == "bash" for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_readme_commands_parse_and_name_what_exists() -> None:
    """The fast guard of the default run (the walk below runs them all, under ``-m slow``): every ``mobilenets``
    command parses, every training command's config loads, every repository file it names exists, every
    Python block compiles and every extra a ``pip install`` names is declared."""
    import shlex

    from mobilenets.cli import _parse, build_parser
    from mobilenets.cli.train import _train_config

    checked = 0
    for command in readme_commands():
        if command.startswith("pip install"):
            command = _check_pip_line(command) or ""
        argv = shlex.split(command, comments=True)
        if not argv or argv[0] != "mobilenets":
            continue
        try:
            args = _parse(build_parser(), argv[1:])
        except SystemExit as exc:
            if exc.code != 0:  # --version and --help exit 0
                raise AssertionError(f"README command does not parse: {command}") from None
            checked += 1
            continue
        for word in argv[1:]:
            if "/" in word and "=" not in word and not word.startswith(("runs/", "~", "-", "weights/", "hf-hub:")):
                assert (ROOT / word).exists(), f"README names {word}, which is not in the repository: {command}"
        if args.command == "train" and "resume=true" not in argv:
            old = Path.cwd()
            os.chdir(ROOT)  # recipes are named relative to the repository root
            try:
                _train_config(list(args.items))
            finally:
                os.chdir(old)
        checked += 1
    for lang, text in readme_blocks():
        if lang == "python":
            compile(text, "README.md", "exec")
    assert checked >= 25, checked


@pytest.mark.slow  # about 16 minutes on 2 cores: the experiment grid alone trains and times 16 models
def test_readme_commands_run_in_order(fresh: tuple[Path, dict[str, str]]) -> None:
    repo, env = fresh
    ran = offline = 0
    for lang, text in readme_blocks():
        if lang == "python":
            done = _run([sys.executable, "-c", text], repo, env)
            if text.lstrip().startswith(DOWNLOADS):
                assert done.returncode != 0 and "WeightsNotAvailable" in done.stderr, text + done.stderr[-2000:]
                offline += 1
            else:
                assert done.returncode == 0, f"README python block failed:\n{text}\n{done.stderr[-3000:]}"
                ran += 1
            continue
        for line in text.splitlines():
            command = line.strip()
            if not command or command.startswith("#"):
                continue
            if command.startswith("pip install"):
                command = _check_pip_line(command)
                if command is None:
                    continue
            done = _run(["bash", "-c", command], repo, env)
            if DOWNLOADS in command:
                err = done.stderr.strip().splitlines()
                assert done.returncode == 2, f"{command}\n{done.stderr[-2000:]}"
                assert "Traceback" not in done.stderr and err and "download" in err[-1].lower(), err
                offline += 1
            else:
                assert done.returncode == 0, f"README command failed: {command}\n{done.stderr[-3000:]}"
                ran += 1
    # The walk covered the page: the main job, the flows of every section, and the offline checks.
    assert ran >= 25 and offline >= 4, (ran, offline)
    assert (repo / "runs" / "digits" / "model.safetensors").is_file()
    assert (repo / "model_int8.pte").is_file() and (repo / "report.html").is_file()
    print(f"README: {ran} commands/blocks ran, {offline} download commands gave the offline message")
    for seconds, command in sorted(TIMES, reverse=True)[:12]:
        print(f"{seconds:6.1f}s  {command}")
