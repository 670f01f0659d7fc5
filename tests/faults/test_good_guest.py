"""A good guest in other suites (issue 18): the plugin is installed in every pytest session of the
environment, so a suite that has nothing to do with cold starts must run as if it were absent.

Observed before: eleven launcher options without the ``--coldstart-`` prefix (a conftest defining
``--docker-image`` could not start), a suite's own ``coldstart`` fixture or parameter taken for a
cold-start test (``results/runs/`` created, the suite's ``benchmarks/budgets.toml`` and
``results/runs/*.json`` read, exit 4, ``-m "not coldstart"`` deselecting it), ~0.28 s of imports
(numpy, rich, httpx, psutil) in every process, env vars parsed in every session, unknown marker
kwargs ignored, no hook to post-process a result, no way for another package to add a launcher or
an optimization, and the SIGTERM handler installed mid-test and never restored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.faults.conftest import TINY, fake_registry

#: The launchers' options as they were spelled before they took the prefix (real conftests define some).
OLD_LAUNCHER_FLAGS = ("--docker-image", "--docker-host", "--docker-python", "--docker-memory", "--docker-shm-size",
                      "--docker-gpus", "--docker-registry-floor-gbps", "--ray-address", "--ray-replicas",
                      "--command-server", "--command-servers")
HEAVY = ("numpy", "rich", "httpx", "psutil")
#: pytest-benchmark (installed beside) writes .benchmarks/ into any rootdir: not this plugin's doing.
QUIET = ("-p", "no:cacheprovider", "-p", "no:benchmark")


def _env(*extra_path: Path) -> dict[str, str]:
    path = os.pathsep.join([*(str(p) for p in extra_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def test_a_suite_defining_the_old_launcher_flags_runs_with_the_plugin(pytester: pytest.Pytester) -> None:
    """A conftest that defines --docker-image (and the ten others) starts; its values are its own."""
    adds = "".join(f"    parser.addoption({flag!r}, default='theirs')\n" for flag in OLD_LAUNCHER_FLAGS)
    pytester.makeconftest(f"def pytest_addoption(parser):\n{adds}")
    pytester.makepyfile(test_theirs="def test_image(request):\n"
                                    "    assert request.config.getoption('--docker-image') == 'alpine:3'\n"
                                    "    assert request.config.getoption('--ray-address') == 'theirs'\n")
    result = pytester.runpytest("--docker-image=alpine:3", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)


def test_every_option_and_ini_key_carries_the_prefix() -> None:
    from pytest_coldstart.plugin.options import all_plugin_options

    for option in all_plugin_options():
        assert option.flag.startswith("--coldstart-"), option.flag
        assert option.dest.startswith("coldstart_"), option.dest


OWN_FIXTURE_SUITE = """
import pytest

@pytest.fixture
def coldstart():
    return "the suite's own"

def test_uses_its_own_fixture(coldstart):
    assert coldstart == "the suite's own"

@pytest.mark.parametrize("coldstart", ["a", "b"])
def test_has_a_parameter_called_coldstart(coldstart):
    assert coldstart in ("a", "b")
"""


def _foreign_files(root: Path) -> dict[str, str]:
    """A budgets file and a results file in formats of the suite's own, not the plugin's."""
    files = {"benchmarks/budgets.toml": "[their.own]\nformat = 'not the plugin budgets'\n",
             "results/runs/theirs.json": "[1, 2, 3]\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return files


def test_a_suite_with_its_own_coldstart_fixture_runs_as_if_the_plugin_were_absent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_theirs=OWN_FIXTURE_SUITE)
    files = _foreign_files(pytester.path)
    before = sorted(p.relative_to(pytester.path) for p in pytester.path.rglob("*"))
    result = pytester.runpytest(*QUIET)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=3)
    # -m "not coldstart" deselects none of them: they are not cold-start tests.
    result = pytester.runpytest(*QUIET, "-m", "not coldstart")
    result.assert_outcomes(passed=3)
    assert "deselected" not in result.stdout.str()
    after = sorted(p.relative_to(pytester.path) for p in pytester.path.rglob("*") if "__pycache__" not in p.parts)
    assert after == [p for p in before if "__pycache__" not in p.parts], "the plugin created files"
    for name, text in files.items():
        assert (pytester.path / name).read_text() == text


def test_a_suite_override_that_builds_on_the_plugins_fixture_is_still_a_cold_start_test(
        pytester: pytest.Pytester) -> None:
    """The other side of the rule: a fixture named coldstart that requests the plugin's is the plugin's."""
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef coldstart(coldstart):\n    return coldstart\n")
    pytester.makepyfile(test_cold="def test_cold(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", f"--coldstart-registry={REPO / 'benchmarks'}",
                                "--coldstart-optimization=baseline", "-m", "coldstart", "-p", "no:cacheprovider")
    assert "test_cold.py::test_cold[tiny-llama-baseline-vllm-r0]" in result.stdout.str()


PROBE_CONFTEST = f"""
import sys

def pytest_unconfigure(config):
    heavy = [m for m in {HEAVY!r} if m in sys.modules]
    print("HEAVY-MODULES", ",".join(heavy) or "-")
"""


def test_a_session_without_cold_start_tests_does_no_work(tmp_path: Path) -> None:
    """No heavy import, no env var parsed (a bad one does not matter), no file written, exit 0."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(PROBE_CONFTEST)
    (suite / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    env = {**_env(), "COLDSTART_S3_URI": "not-an-s3-uri"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-s", *QUIET, str(suite)], cwd=suite,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HEAVY-MODULES -" in proc.stdout, proc.stdout
    assert sorted(p.name for p in suite.iterdir() if p.name != "__pycache__") == ["conftest.py", "test_plain.py"]


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = ("import sys, pytest_coldstart, pytest_coldstart.plugin; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or '-')")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "-"


@pytest.mark.parametrize(("marker", "named"), [("coldstart(lancher='vllm')", "lancher="),
                                                ("coldstart('ray-serve')", "'ray-serve'")])
def test_unknown_marker_arguments_are_a_usage_error(pytester: pytest.Pytester, marker: str, named: str) -> None:
    pytester.makepyfile(test_cold=f"import pytest\n\n@pytest.mark.{marker}\ndef test_cold(coldstart):\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q", f"--coldstart-registry={REPO / 'benchmarks'}",
                                "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "takes only keyword arguments launcher=" in err and named in err, err
    assert "Traceback" not in err


def test_the_sigterm_handler_is_installed_in_configure_and_restored_in_unconfigure(pytester: pytest.Pytester) -> None:
    """Inside the session the plugin owns SIGTERM; after it, the disposition is what it was."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        pytester.makepyfile(test_sig="import signal\n\ndef test_owned():\n"
                                     "    handler = signal.getsignal(signal.SIGTERM)\n"
                                     "    assert getattr(handler, '__self__', None).__class__.__name__ == 'SigtermGuard'\n")
        result = pytester.runpytest("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_before_any_start_ends_the_session_as_without_the_plugin(tmp_path: Path) -> None:
    """Until a server starts, SIGTERM kills pytest by the signal, as it would without the plugin."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_slow.py").write_text("import os, signal\n\ndef test_term_myself():\n"
                                        "    os.kill(os.getpid(), signal.SIGTERM)\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)], cwd=suite,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGTERM, proc.stdout + proc.stderr


# --- Extending it from outside: hookspecs and entry points ---------------------------------------------

EXTRA_PACKAGE = '''
"""A tiny third-party package adding a launcher and an optimization to pytest-coldstart."""

from pytest_coldstart.launch.options import LauncherOption
from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.registry import OptimizationSpec
from tests.faults.fake_launcher import FakeLauncher


class ExtraLauncher(FakeLauncher):
    """The fault suite's fake server, under another name and with an option of its own."""

    kind = "extra-fake"
    options = (LauncherOption("--coldstart-extra-greeting", "extra_greeting", "hello",
                              "--coldstart-launcher extra-fake: a word written into the server's env"),)

    def start(self, spec, clock):
        import dataclasses
        env = {**spec.env, "EXTRA_GREETING": spec.launcher_options.get("extra_greeting", "")}
        return super().start(dataclasses.replace(spec, env=env), clock)


EXTRA_EAGER = OptimizationSpec("extra_eager", "from the coldstart-extra-demo package", CachePolicy.COLD,
                               env=(("FAKE_MODE", "ok"),))
'''
EXTRA_PYPROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "coldstart-extra-demo"
version = "0.1"

[project.entry-points."pytest_coldstart.launchers"]
extra-fake = "coldstart_extra_demo:ExtraLauncher"
broken = "coldstart_extra_demo:NotThere"

[project.entry-points."pytest_coldstart.optimizations"]
extra_eager = "coldstart_extra_demo:EXTRA_EAGER"
'''
HOOK_CONFTEST = '''
import json

def pytest_coldstart_result(result, item, config):
    with open(config.rootpath / "hooked.jsonl", "a") as f:
        f.write(json.dumps({"nodeid": item.nodeid, "launcher": result.launcher,
                            "optimization": result.optimization, "exit_status": str(result.exit_status)}) + "\\n")
    item.user_properties.append(("hooked", result.launcher))
'''
COLD_TEST = '''
def test_cold(coldstart):
    result = coldstart.run(check_budgets=False)
    assert result.exit_status == "ok"
'''


@pytest.fixture(scope="module")
def extra_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` of the tiny package (a real distribution: dist-info with entry_points.txt) into a directory
    that the sessions below put on PYTHONPATH."""
    root = tmp_path_factory.mktemp("extra")
    (root / "pkg" / "coldstart_extra_demo").mkdir(parents=True)
    (root / "pkg" / "pyproject.toml").write_text(EXTRA_PYPROJECT)
    (root / "pkg" / "coldstart_extra_demo" / "__init__.py").write_text(EXTRA_PACKAGE)
    site = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--target", str(site), str(root / "pkg")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (dist,) = site.glob("coldstart_extra_demo-0.1.dist-info")
    assert "pytest_coldstart.launchers" in (dist / "entry_points.txt").read_text()
    return site


def _pytest(suite: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={suite}", *args,
                           str(suite)], cwd=suite, env=_env(site), capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not TINY.is_dir(), reason="the tiny model is made by `make tiny-model`")
def test_another_package_adds_a_launcher_and_an_optimization_and_a_hook_sees_each_result(
        extra_site: Path, tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(HOOK_CONFTEST)
    (suite / "test_cold.py").write_text(COLD_TEST)
    registry = fake_registry(tmp_path / "registry")

    # Listed: the launcher's option in --help, both names among the known ones in an error.
    helped = _pytest(suite, extra_site, "--help")
    assert "--coldstart-extra-greeting" in helped.stdout, helped.stdout[-2000:] + helped.stderr
    wrong = _pytest(suite, extra_site, "--collect-only", "--coldstart-model=fake", "--coldstart-launcher=nope",
                    f"--coldstart-registry={registry}")
    assert wrong.returncode == pytest.ExitCode.USAGE_ERROR and "extra-fake" in wrong.stderr, wrong.stderr
    wrong = _pytest(suite, extra_site, "--collect-only", "--coldstart-model=fake", "--coldstart-optimization=nope",
                    f"--coldstart-registry={registry}")
    assert wrong.returncode == pytest.ExitCode.USAGE_ERROR and "extra_eager" in wrong.stderr, wrong.stderr

    # A broken entry (no such attribute) costs other sessions nothing, and is a clear error where it is asked for.
    broken = _pytest(suite, extra_site, "--collect-only", "--coldstart-model=fake", "--coldstart-launcher=broken",
                     f"--coldstart-registry={registry}")
    assert broken.returncode == pytest.ExitCode.USAGE_ERROR, broken.stdout[-2000:] + broken.stderr
    assert "distribution coldstart-extra-demo 0.1" in broken.stderr and "Traceback" not in broken.stderr

    # Usable: one real start of the fake server through the other package's launcher and optimization.
    results = tmp_path / "results"
    ran = _pytest(suite, extra_site, "-q", "--coldstart-model=fake", "--coldstart-launcher=extra-fake",
                  "--coldstart-optimization=extra_eager", f"--coldstart-registry={registry}",
                  f"--coldstart-results={results}", f"--coldstart-workdir={tmp_path / 'work'}",
                  "--coldstart-budgets=", "--coldstart-asv=off", "--coldstart-extra-greeting=bonjour",
                  "--coldstart-timeout=120")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    (saved,) = (results / "runs").glob("*.json")
    record = json.loads(saved.read_text())
    assert (record["launcher"], record["optimization"], record["exit_status"]) == ("extra-fake", "extra_eager", "ok")
    hooked = [json.loads(line) for line in (suite / "hooked.jsonl").read_text().splitlines()]
    assert hooked == [{"nodeid": "test_cold.py::test_cold[fake-extra_eager-extra-fake-r0]", "launcher": "extra-fake",
                       "optimization": "extra_eager", "exit_status": "ok"}]


def test_a_hook_implementation_is_known_to_pytest(pytester: pytest.Pytester) -> None:
    """Without the hookspec, pytest refuses a conftest defining pytest_coldstart_result (unknown hook)."""
    pytester.makeconftest(textwrap.dedent(HOOK_CONFTEST))
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    from pytest_coldstart.plugin import hookspecs

    assert hookspecs.pytest_coldstart_result.__doc__
