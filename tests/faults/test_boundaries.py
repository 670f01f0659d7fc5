"""The edges of the tool as a careless or hostile user meets them: names that would reach outside the work
directory, config that half-loads, flags that switch the gate off, duplicates that inflate the evidence.

Each observation of issue 18 (items 1-3) is a test here, run as a user runs the tool: the ``coldstart`` CLI
and pytest with the plugin in a subprocess, the small fake server (tests/faults/fake_server.py) where a
start is needed. Every refusal comes before any server is started and anything is written or deleted, in
one line naming the file, the table, the key, the bad value and what is allowed; never a traceback.
(docs/how-to/troubleshooting.md lists these faults and what the user sees.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pytest_coldstart.launch.command import CommandLauncher
from pytest_coldstart.model.result import load_results as load_results_of
from tests.conftest import REPO
from tests.faults.conftest import CPU_LANE, TINY, baseline_runs, coldstart, fake_registry, pids_in

FAKE_SERVER = REPO / "tests" / "faults" / "fake_server.py"
SUITE_CONFTEST = '''
from pytest_coldstart.launch import registry
registry.LAUNCHERS["fake"] = "tests.faults.fake_launcher:FakeLauncher"
'''
SUITE_TEST = '''
def test_start(coldstart):
    coldstart.run(check_budgets=False)
'''
#: A run of today's code that hangs (``--coldstart-timeout=nan``) is cut off here, its process group killed.
HANG_LIMIT_S = 90


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "INTERNALERROR" not in text, text[-3000:]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _pytest(tmp_path: Path, registry: Path, *extra: str, launcher: str = "fake", model: str = "fake",
            optimization: str = "mode_ok", timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    """pytest with the plugin on a one-test suite, as a user runs it; the process group is killed on a hang."""
    suite = tmp_path / "suite"
    suite.mkdir(parents=True, exist_ok=True)
    (suite / "conftest.py").write_text(SUITE_CONFTEST)
    (suite / "test_start.py").write_text(SUITE_TEST)
    pid_file = tmp_path / "pids"
    env = {**os.environ, "FAKE_PID_FILE": str(pid_file),
           "PYTHONPATH": f"{REPO}{os.pathsep}" + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider", "-q", f"--rootdir={suite}",
           f"--coldstart-model={model}", f"--coldstart-optimization={optimization}",
           f"--coldstart-launcher={launcher}", f"--coldstart-registry={registry}",
           f"--coldstart-results={tmp_path / 'results'}", f"--coldstart-workdir={tmp_path / 'work'}",
           "--coldstart-asv=off", *extra]
    proc = subprocess.Popen(cmd, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest; the fake server runs in a session of its own:
        for pid in pids_in(pid_file):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"pytest still running after {timeout_s:.0f} s (it waits forever):\n{out[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def _refused_before_any_start(tmp_path: Path, out: subprocess.CompletedProcess[str], *says: str) -> None:
    """A usage error (pytest exit 4) before any server: the message says *says*, no log, no result, no trace."""
    text = " ".join(out.stdout.split())
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout[-3000:]
    for part in says:
        assert part in text, out.stdout[-3000:]
    _no_traceback(out.stdout)
    assert not list((tmp_path / "results").glob("logs/*.log")), "a server was started"
    assert not list((tmp_path / "results").glob("runs/*.json")), "a result was written"


def _registry(tmp_path: Path, models: str = "", optimizations: str = "") -> Path:
    """The fault suite's registry (model `fake`, optimization `mode_ok`, ...) with *models* / *optimizations*
    TOML appended."""
    registry = fake_registry(tmp_path / "registry")
    if models:
        (registry / "models.toml").write_text((registry / "models.toml").read_text() + "\n" + models)
    if optimizations:
        (registry / "optimizations.toml").write_text((registry / "optimizations.toml").read_text() + "\n" + optimizations)
    return registry


def _fake_model(name: str, **keys: str) -> str:
    body = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return f'[models."{name}"]\nsource = "local:{TINY}"\nserved_name = "fake"\noptimizations = ["mode_ok"]\n{body}'


# --- A name can reach outside the work directory ----------------------------------------------------------------

def test_an_optimization_named_with_dotdot_cannot_empty_a_directory_above_the_cache(tmp_path: Path) -> None:
    """Today the per-case hygiene emptied `<workdir>/cache/assets/fake-x/../../../..`: the workdir's parent."""
    victim = tmp_path / "victim"
    keep = victim / "keep.txt"
    victim.mkdir()
    keep.write_text("the user's own file")
    evil = "x/../../../.."
    registry = _registry(tmp_path, models=_fake_model("mine").replace('["mode_ok"]', f'["{evil}"]'),
                         optimizations=f'[optimizations."{evil}"]\ncache = "cold"\n')
    out = _pytest(tmp_path, registry, f"--coldstart-workdir={victim / 'work'}", model="mine", optimization=evil)
    assert keep.is_file(), "a directory outside the cache was emptied"
    _refused_before_any_start(tmp_path, out, f"[optimizations.'{evil}']", "the name contains a path separator",
                              "allowed: a name of 1-64 letters, digits and . _ -")


@pytest.mark.parametrize("name", ["../../escaped", "a/b", ".hidden", "x" * 300])
def test_a_model_name_that_is_no_slug_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    """Today `../` wrote the result and the log outside results/runs; 300 characters ended in a traceback."""
    registry = _registry(tmp_path, models=_fake_model(name))
    before = _files(tmp_path)
    out = _pytest(tmp_path, registry, model=name)
    _refused_before_any_start(tmp_path, out, "[models.", "allowed: a name of 1-64 letters, digits and . _ -")
    written = _files(tmp_path) - before
    assert not [f for f in written if not f.startswith(("suite", "results", "work"))], written
    assert not list(tmp_path.rglob("*escaped*")), "something was written under the escaping name"


def test_record_refuses_a_machine_name_that_escapes_the_history(tmp_path: Path) -> None:
    asv = tmp_path / "deep" / "asv"
    out = coldstart("record", str(CPU_LANE), "--asv-results", str(asv), "--repo", str(REPO),
                    "--machine", "../../x")
    assert out.returncode == 2, out
    assert "argument --machine: Could not parse value: '../../x': contains a path separator" in out.stderr, out
    _no_traceback(out.stdout, out.stderr)
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep").exists(), _files(tmp_path)


def test_the_plugin_refuses_a_machine_name_that_escapes_the_history(tmp_path: Path) -> None:
    out = _pytest(tmp_path, _registry(tmp_path), "--coldstart-machine=../../x")
    _refused_before_any_start(tmp_path, out, "--coldstart-machine", "'../../x': contains a path separator")


# --- Config that half-loads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("keys", "says"), [
    ({"env": '["FAKE_MODE=ok"]'}, "models.toml [models.bad] env = ['FAKE_MODE=ok']: expected a table of NAME = \"value\""),
    ({"weight_bytes": '"big"'}, "models.toml [models.bad] weight_bytes = 'big': expected the weights' size in bytes, "
                                "an integer >= 0"),
    ({"tensor_parallel_size": "0"}, "[models.bad] tensor_parallel_size = 0: expected an integer >= 1"),
    ({"floor_gbps": "{ local = nan }"}, "[models.bad.floor_gbps] local = nan: expected GB/s, a finite number > 0"),
])
def test_a_wrong_typed_models_toml_value_is_refused_before_any_start(tmp_path: Path, keys: dict[str, str],
                                                                     says: str) -> None:
    """Today: an INTERNALERROR traceback (`env` as a list), or accepted and failing after the start."""
    out = _pytest(tmp_path, _registry(tmp_path, models=_fake_model("bad", **keys)), model="bad")
    _refused_before_any_start(tmp_path, out, says)


def _servers_flags(servers: Path, entry: str) -> list[str]:
    """``--launcher command``'s own options, by key (their flags are being renamed)."""
    flag = {o.key: o.flag for o in CommandLauncher.options}
    return [f"{flag['command_servers']}={servers}", f"{flag['command_server']}={entry}"]


@pytest.mark.parametrize(("entry", "says"), [
    ('command = ["{python}", "%s", "--port", "{port", "--mode", "ok"]\nreadiness_url = "{base_url}/health"\n',
     "[servers.typo] command[3] = '{port': not a valid template"),
    ('command = ["{python}", "%s", "--port", "{port}", "--mode", "ok"]\nreadiness_url = "{base_url}/health"\n'
     'phases = "imports"\n', "[servers.typo] phases = 'imports': expected a table of phase name = regex"),
])
def test_a_bad_servers_toml_is_refused_before_any_start(tmp_path: Path, entry: str, says: str) -> None:
    """Today: an AttributeError (`phases` as a string) or a ValueError from `str.format` at start time."""
    servers = tmp_path / "servers.toml"
    servers.write_text("[servers.typo]\n" + entry % FAKE_SERVER)
    out = _pytest(tmp_path, _registry(tmp_path), *_servers_flags(servers, "typo"), launcher="command")
    _refused_before_any_start(tmp_path, out, str(servers), says)


def test_a_compare_toml_with_a_wrong_type_is_one_line_not_an_unexpected_error(tmp_path: Path) -> None:
    config = tmp_path / "compare.toml"
    config.write_text("metrics = 5\n")
    out = coldstart("compare", str(CPU_LANE), str(CPU_LANE), "--config", str(config), "--budgets", "")
    assert out.returncode == 2, out
    assert f"{config} metrics = 5: expected a table of [metrics.NAME] tables" in " ".join(out.stdout.split()), out
    assert "unexpected" not in out.stdout + out.stderr, out
    _no_traceback(out.stdout, out.stderr)


def test_a_nan_budget_is_refused_not_ok_forever(tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[tiny-llama."*"]\ntotal_ready_s = nan\n')
    out = coldstart("summary", str(CPU_LANE), "--budgets", str(budgets))
    assert out.returncode == 2, out
    assert f'{budgets} [tiny-llama."*"] total_ready_s = nan: expected seconds, a finite number > 0' in out.stderr, out
    _no_traceback(out.stdout, out.stderr)


def test_a_nan_budget_fails_the_session_before_any_start(tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[fake."*"]\ntotal_ready_s = nan\n')
    out = _pytest(tmp_path, _registry(tmp_path), f"--coldstart-budgets={budgets}")
    _refused_before_any_start(tmp_path, out, f'{budgets} [fake."*"] total_ready_s = nan: expected seconds, '
                                             "a finite number > 0")


# --- Flags that switch the gate off -------------------------------------------------------------------------------

def _slower(dest: Path, factor: float) -> Path:
    """The CPU lane's baseline runs with every time multiplied by *factor* (a head that got slower)."""
    side = baseline_runs(dest)
    for path in (side / "runs").glob("*.json"):
        data = json.loads(path.read_text())
        for key in ("total_ready_s", "ttft_s", "first_response_s", "unaccounted_s"):
            if data.get(key) is not None:
                data[key] *= factor
        for phase in data["phases"]:
            for key in ("start_s", "end_s", "duration_s", "reported_s"):
                if phase.get(key) is not None:
                    phase[key] *= factor
        path.write_text(json.dumps(data))
    return side


@pytest.fixture(scope="module")
def slower_head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A base and a head 1.6x slower, which the gate catches (exit 1) with the packaged thresholds."""
    tmp = tmp_path_factory.mktemp("gate")
    base, head = baseline_runs(tmp / "base"), _slower(tmp / "head", 1.6)
    out = coldstart("compare", str(base), str(head), "--budgets", "")
    assert out.returncode == 1, out
    return base, head


@pytest.mark.parametrize(("flag", "value"), [
    ("--threshold", "nan"), ("--threshold", "inf"), ("--threshold", "-1"),
    ("--floor", "nan"), ("--floor", "-inf"), ("--floor", "-1"),
    ("--alpha", "nan"), ("--alpha", "0"), ("--min-samples", "nan"), ("--min-samples", "1"),
])
def test_a_non_finite_or_out_of_range_compare_flag_is_a_usage_error(slower_head: tuple[Path, Path], flag: str,
                                                                    value: str) -> None:
    """Today `--threshold nan` turned a 1.6x slower head into "OK (exit 0)": flags skipped compare.toml's ranges."""
    base, head = slower_head
    out = coldstart("compare", str(base), str(head), "--budgets", "", f"{flag}={value}")
    assert out.returncode == 2, out
    assert f"argument {flag}: Could not parse value: '{value}'. Expected " in out.stderr, out
    _no_traceback(out.stdout, out.stderr)


def test_a_nan_timeout_is_a_usage_error_not_a_wait_forever(tmp_path: Path) -> None:
    """Today `--coldstart-timeout=nan` waited forever for a server that never becomes healthy."""
    out = _pytest(tmp_path, _registry(tmp_path), "--coldstart-timeout=nan", optimization="mode_hang",
                  timeout_s=HANG_LIMIT_S)
    _refused_before_any_start(tmp_path, out, "--coldstart-timeout", "Could not parse value: 'nan'",
                              "Expected a number > 0")


# --- Duplicates inflate the evidence ------------------------------------------------------------------------------

def test_record_counts_a_run_once_when_given_twice_in_one_call(tmp_path: Path) -> None:
    """Today `coldstart record DIR COPY_OF_DIR` recorded every run twice, doubling n for the significance test."""
    pytest.importorskip("asv")
    from pytest_coldstart.history import asv_store, commits
    from pytest_coldstart.model.case import CaseKey

    copy = shutil.copytree(CPU_LANE, tmp_path / "copy")
    asv = tmp_path / "asv"
    n = len(list((CPU_LANE / "runs").glob("*.json")))
    out = coldstart("record", str(CPU_LANE), str(copy), str(CPU_LANE), "--asv-results", str(asv), "--repo", str(REPO),
                    "--machine", "m1")
    assert out.returncode == 0, out
    assert f"recorded {n} run(s) ({2 * n} already recorded or given twice)" in out.stdout, out
    again = coldstart("record", str(copy), "--asv-results", str(asv), "--repo", str(REPO), "--machine", "m1")
    assert f"recorded 0 run(s) ({n} already recorded or given twice)" in again.stdout, again
    samples = asv_store.load_commit(asv, commits.resolve(REPO, "HEAD").hash, "m1")
    baseline = samples.cases[CaseKey("tiny-llama", "baseline", "vllm")]
    ok = [p for p in (CPU_LANE / "runs").glob("*_baseline_*.json") if json.loads(p.read_text())["exit_status"] == "ok"]
    assert len(baseline.samples_s["total_ready_s"]) == len(ok)


# --- Every place a name becomes a path ----------------------------------------------------------------------------

BAD_NAMES = ["..", "a/b", "../x", "x" * 300]


Quiet = Callable[[], AbstractContextManager[None]]


@pytest.fixture
def quiet_tree(tmp_path: Path) -> Quiet:
    """A block that must write and delete nothing under *tmp_path*."""
    @contextlib.contextmanager
    def unchanged() -> Iterator[None]:
        before = _files(tmp_path)
        yield
        assert _files(tmp_path) == before, "something was written or deleted"
    return unchanged


def _refuses(call: Callable[..., object], *args: object, **kwargs: object) -> str:
    from pytest_coldstart.model.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        call(*args, **kwargs)
    message = str(exc.value)
    assert "\n" not in message and "letters, digits and . _ -" in message, message
    return message


@pytest.mark.parametrize("name", BAD_NAMES, ids=["dotdot", "slash", "dotdot-slash", "300-chars"])
def test_every_place_a_name_becomes_a_path_refuses_it_before_writing(tmp_path: Path, name: str,
                                                                     quiet_tree: Quiet) -> None:
    """The walk: each function that turns a name into a path (found by the grep below), given a bad name."""
    from dataclasses import replace
    from types import SimpleNamespace

    from pytest_coldstart.history import asv_store, commits
    from pytest_coldstart.measure.profile import Profiler
    from pytest_coldstart.model import paths
    from pytest_coldstart.model.result import load_results, write_result
    from pytest_coldstart.model.scaleout import SCALEOUT_DIR
    from pytest_coldstart.optimize import hygiene
    from pytest_coldstart.optimize.caches import local_cache_dir
    from pytest_coldstart.optimize.sources import generated_dir

    work, results, asv = tmp_path / "work", tmp_path / "results", tmp_path / "asv"
    for d in (work, results / "runs", asv / "m1"):
        d.mkdir(parents=True)
    run = load_results(CPU_LANE)[0]
    with quiet_tree():
        _refuses(paths.under, work, name)
        _refuses(paths.under, work, "cache", name, "x")
        _refuses(hygiene.assets_dir_for, work, "tiny-llama", name)  # the cache hygiene empties this directory
        _refuses(hygiene.assets_dir_for, work, name, "baseline")
        ctx = SimpleNamespace(workdir=work, model=SimpleNamespace(name=name), optimization=SimpleNamespace(name="b"))
        _refuses(local_cache_dir, ctx, SimpleNamespace(digest="0" * 64))  # populate_local empties this one
        _refuses(generated_dir, work, name)  # generated:NAME
        for field in ("model", "optimization", "launcher"):
            _refuses(write_result, results, replace(run, **{field: name}))  # results/runs/STAMP_MODEL_OPT_...
        _refuses(Profiler, results / "profiles", name)  # the log name / case id
        _refuses(asv_store.record, [run], asv, commits.resolve(REPO, "HEAD"), machine=name)  # <asv>/<machine>/
        _refuses(asv_store.one_machine, [run.environment], name, "scale-out results")  # record_scaleout's machine
        _refuses(asv_store.load_commit, asv, "0" * 40, name)
        _refuses(asv_store.commits_with_results, asv, name)
        _refuses(paths.under, results / SCALEOUT_DIR, f"{name}.json")


@pytest.mark.parametrize("name", BAD_NAMES, ids=["dotdot", "slash", "dotdot-slash", "300-chars"])
def test_every_config_name_that_becomes_a_path_is_refused_at_load(tmp_path: Path, name: str,
                                                                  quiet_tree: Quiet) -> None:
    from pytest_coldstart.launch.command import load_servers
    from pytest_coldstart.model.registry import load_registry

    good_model = f'[models.m]\nsource = "local:{TINY}"\nserved_name = "m"\noptimizations = ["baseline"]\n'
    cases = {
        "model table": (f'[models."{name}"]\nsource = "local:{TINY}"\nserved_name = "m"\n'
                        'optimizations = ["baseline"]\n', ""),
        "optimization table": (good_model, f'[optimizations."{name}"]\ncache = "cold"\n'),
        "optimizations list": (good_model.replace('["baseline"]', f'["{name}"]'), ""),
        "sources key": (good_model + f'sources = {{ "{name}" = "hf:org/m" }}\n', ""),
        "generated source": (good_model.replace(f"local:{TINY}", f"generated:{name}"), ""),
    }
    for where, (models, opts) in cases.items():
        registry = tmp_path / where.replace(" ", "-")
        registry.mkdir()
        (registry / "models.toml").write_text(models)
        (registry / "optimizations.toml").write_text('[optimizations.baseline]\ncache = "cold"\n' + opts)
        with quiet_tree():
            _refuses(load_registry, registry)
    servers = {
        "server name": f'[servers."{name}"]\ncommand = ["srv"]\nreadiness_url = "{{base_url}}/health"\n',
        "phase name": f'[servers.s]\ncommand = ["srv"]\nreadiness_url = "{{base_url}}/health"\n'
                      f'[servers.s.phases]\n"{name}" = "x"\n',
    }
    for where, text in servers.items():
        path = tmp_path / f"{where.replace(' ', '-')}.toml"
        path.write_text(text)
        with quiet_tree():
            _refuses(load_servers, path)


def test_the_packaged_config_files_hold_to_their_schemas() -> None:
    """The packaged servers file is read without the schema at import (no pydantic in a session that starts
    nothing); the registry, budgets and thresholds go through it every time. All must pass it."""
    from importlib import resources

    from pytest_coldstart.model import schemas
    from pytest_coldstart.model.files import load_toml
    from pytest_coldstart.model.registry import packaged_file

    with resources.as_file(resources.files("pytest_coldstart.launch") / "servers.toml") as path:
        data = load_toml(path, "servers registry")
    schemas.validate(schemas.ServersFile, data, file=path)
    for name, entry in data["servers"].items():
        schemas.validate(schemas.ServerEntry, entry, file=path, table=f"servers.{name}")
    for table, schema in (("models", schemas.ModelEntry), ("optimizations", schemas.OptimizationEntry)):
        path = packaged_file(f"{table}.toml")
        for name, entry in load_toml(path, table)[table].items():
            schemas.validate(schema, entry, file=path, table=f"{table}.{name}")
    schemas.validate(schemas.BudgetsFile, load_toml(packaged_file("budgets.toml"), "budgets"), file="budgets.toml")
    schemas.validate(schemas.CompareFile, load_toml(packaged_file("compare.toml"), "compare"), file="compare.toml")


def test_the_longest_names_still_make_files_a_file_system_takes(tmp_path: Path) -> None:
    """Names are bounded so that the file names composed of them fit (a start must not run and then fail to
    save its result with ENAMETOOLONG)."""
    from dataclasses import replace

    from pytest_coldstart.measure.profile import Profiler
    from pytest_coldstart.model.paths import MAX_NAME, under
    from pytest_coldstart.model.result import load_result, write_result

    run = load_results_of(CPU_LANE)[0]
    longest = replace(run, model="m" * MAX_NAME, optimization="o" * MAX_NAME, launcher="transformers-serve",
                      repeat_index=999)
    path = write_result(tmp_path, longest)
    assert load_result(path).model == "m" * MAX_NAME
    case_id = f"{'m' * MAX_NAME}-{'o' * MAX_NAME}-transformers-serve-r999"
    for suffix in (".log", ".events.jsonl", ".otel.jsonl", "_populate.log"):
        log = under(tmp_path / "logs", f"20261205T081400_{case_id}{suffix}")
        log.parent.mkdir(exist_ok=True)
        log.write_text("")
    profiler = Profiler(tmp_path / "profiles", f"20261205T081400_{case_id}")
    profiler.trace_path.parent.mkdir()
    profiler.speedscope_path.write_text("")  # the longest of them


def test_deletes_stay_inside_their_root(tmp_path: Path) -> None:
    from pytest_coldstart.model import paths
    from pytest_coldstart.model.errors import ConfigError

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (root / "link").symlink_to(outside)
    for target in (root, root / ".." / "outside", outside, root / "inner" / ".." / ".."):
        with pytest.raises(ConfigError, match="is not inside"):
            paths.remove(root, target)
    assert paths.remove(root, root / "link")  # the link goes, never what it points to
    assert (outside / "keep.txt").is_file() and not (root / "link").exists()
    assert paths.empty_dir(root, root / "inner") is False and (root / "inner").is_dir()


#: Every place in the package where a path is joined from something that is not a literal, and why it is safe.
#: A new join fails test_no_unreviewed_path_joins: build it with ``paths.under`` or add it here with its reason.
REVIEWED_JOINS = {
    ("cli/init.py", '.joinpath("defaults").joinpath("init").joinpath(name)'): "packaged starter file names",
    ("model/registry.py", '.joinpath("defaults").joinpath(name)'): "packaged file names (literals of this package)",
    ("history/gate_run.py", 'return out / f"runs-{side}"'): "side is base or head (the gate's own constants)",
    ("history/gate_run.py", 'out / "logs" / f"{name}-{i:02d}.log"'): "side name (base/head) and a pair number",
    ("history/asv_publish.py", "os.replace(parent / machine, asv_dir / machine)"):
        "moving the old flat layout: machine folders found by listing the history itself, into its asv/",
    ("history/asv_publish.py", "(parent / name).is_file()"): "asv's own file names (constants)",
    ("history/asv_publish.py", "os.replace(parent / name, asv_dir / name)"): "asv's own file names (constants)",
    ("history/asv_publish.py", "(results / machine).glob"): "machine names found by globbing the history (read only)",
    ("history/changes.py", "(results_dir / machine).glob"): "machine names found by globbing the history (read only)",
    ("history/bisect.py", 'probe_dir / f"runs-{side}"'): "inside a probe folder made by under(); side is base or head",
    ("model/paths.py", "base.joinpath(*names)"): "under() itself: each name checked first",
    ("logs/vllm_source.py", "tree.package_dir.joinpath(*parts[1:])"):
        "a probe target's dotted module name (a constant of this package) in the vLLM tree it reads (read only)",
    ("model/registry.py", 'joinpath("defaults", name)'): "packaged file names (literals of this package)",
    ("cli/init.py", 'joinpath("defaults", "init", name)'): "packaged starter file names",
    ("history/gate.py", "(root / ref).is_dir()"): "a user's REF looked up as a directory of theirs (read only)",
    ("history/gate.py", "ref = str(root / ref)"): "the same REF, read only",
    ("history/gate.py", "(results_dir / machine).glob"): "machine names found by globbing the history (read only)",
    ("history/sweep.py", 'venv_dir / f"vllm-{version}"'): "version checked by VERSION_RE (digits and dots)",
    ("history/sweep.py", "out / version /"): "version checked by VERSION_RE",
    ("report/html.py", "png_dir / f\"{_slug("): "slugged by report.html._slug",
    ("report/html.py", "out.parent / f\"{out.stem}-figures\""): "the user's own --out file's stem",
    ("report/html.py", 'png_dir / f"{name}_waterfall.png"'): "name built by report.html._slug",
    ("measure/readiness.py", 'self.root / f"{key}.json"'): "key is a sha256 hex digest (oracle_key)",
    ("measure/preflight.py", "hf_cache_dir() / f\"models--"): "the hub's own cache layout of a hub id (read only)",
    ("optimize/s3source.py", 'workdir / "shards" / f"{spec.model_dir.name}'): "the last segment of a directory",
    ("optimize/s3source.py", 'workdir / "shards" / f"{out.name}.log"'): "the same segment",
    ("launch/ray_cluster.py", "self.root / name"): "node names of this module (head, worker-N)",
    ("launch/ray_cluster.py", 'self.log_dir / f"ray-{name}.log"'): "the same node names",
    ("launch/loadgen.py", 'work_dir / f"{request.label}.log"'): "load-step labels of this package (step-N-...)",
}
_JOIN = __import__("re").compile(r"""/ f["'][^"']*\{|\.joinpath\(|/ (name|model|machine|key|case|opt|optimization|"""
                                 r"""launcher|stem|label|log_name|run_id|version|entry|server|ref)\b(?!')""")


def test_no_unreviewed_path_joins() -> None:
    """The grep behind the walk above: a path joined from a non-literal goes through ``paths.under`` or is
    reviewed in REVIEWED_JOINS."""
    package = REPO / "pytest_coldstart"
    unreviewed = []
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if not _JOIN.search(code) or "under(" in code or code.strip().startswith(('"', "'", ":param")):
                continue
            if not any(rel == f and snippet in code for f, snippet in REVIEWED_JOINS):
                unreviewed.append(f"{rel}:{number}: {line.strip()}")
    assert not unreviewed, "paths joined from names without paths.under:\n" + "\n".join(unreviewed)
