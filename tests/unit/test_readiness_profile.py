"""Readiness levels (correct, warm_s) and the py-spy profile's attribution to phases: the pure parts."""

from __future__ import annotations

import json

import pytest

from pytest_coldstart.launch.ttft import TTFTSample
from pytest_coldstart.measure.profile import Segment, grown_functions, segments, speedscope, top_by_phase
from pytest_coldstart.measure.readiness import (
    OracleStore,
    Request,
    check_correct,
    measure_warmth,
    oracle_key,
    settled_index,
    warmth,
)
from pytest_coldstart.model.budgets import Budgets, check_budgets
from pytest_coldstart.model.phase import Phase
from pytest_coldstart.model.result import RunResult, load_result, write_result


def test_settled_index_finds_the_first_run_of_k_near_steady_state():
    # Deferred JIT: two slow requests, then steady at ~50 ms.
    assert settled_index([0.30, 0.12, 0.050, 0.052, 0.049, 0.051, 0.050]) == 2
    assert settled_index([0.05, 0.05, 0.05, 0.05]) == 0
    # A lone spike after settling does not undo it; never settling gives None.
    assert settled_index([0.2, 0.05, 0.05, 0.05, 0.3, 0.05, 0.05]) == 1
    assert settled_index([0.4, 0.3, 0.2, 0.1, 0.05, 0.3, 0.05]) is None
    assert settled_index([0.1, 0.1]) is None  # too few to say


def test_warm_s_is_when_the_last_slow_request_answered():
    ready = 100.0
    reqs = [Request(100.5, 0.30), Request(101.0, 0.20), Request(101.3, 0.05), Request(101.4, 0.05),
            Request(101.5, 0.05)]
    w = warmth(reqs, ready)
    assert w.settled_at == 2 and w.warm_s == pytest.approx(1.2)  # 101.0 + 0.2 - 100
    assert warmth([Request(100.1, 0.05)] * 4, ready).warm_s == 0.0
    assert warmth([Request(100.1 + i, 1.0 / (i + 1)) for i in range(4)], ready).warm_s is None


def test_measure_warmth_counts_the_ttft_request_first():
    clock = iter([10.0, 10.5, 11.0, 11.5])
    sample = TTFTSample(0.01, 0.04, "x", 3)
    w = measure_warmth(lambda: sample, lambda: next(clock), TTFTSample(0.3, 0.9, "x", 3), ready_s=9.0, n=3)
    assert w.latencies_s == (0.9, 0.04, 0.04, 0.04)
    assert w.warm_s == pytest.approx(1.0)  # TTFT sent at 10.0 - 0.9, answered at 10.0


def test_correct_records_then_checks_and_fails_closed(tmp_path):
    store = OracleStore(tmp_path / "oracles")
    key = oracle_key("tiny-llama", "0.32.0", ("--enforce-eager",))
    assert key != oracle_key("tiny-llama", "0.31.0", ("--enforce-eager",))
    assert key != oracle_key("tiny-llama", "0.32.0", ())
    first = check_correct(store, key, TTFTSample(0.1, 0.2, "hello world", 3), {"model": "tiny-llama"})
    assert first.correct is None and "recorded" in first.detail
    assert check_correct(store, key, TTFTSample(0.1, 0.2, "hello world", 3), {}).correct is True
    wrong = check_correct(store, key, TTFTSample(0.1, 0.2, "hello word", 3), {})
    assert wrong.correct is False and "wrong tokens" in wrong.detail
    assert store.get(key) == "hello world"  # a wrong start never overwrites the oracle
    assert check_correct(store, key, None, {}).correct is None


def _result(**kw) -> RunResult:
    base = dict(model="tiny-llama", optimization="baseline", launcher="vllm", cache_state="cold",
                started_at="2026-11-30T02:00:00", phases=(Phase("config", 0.0, 5.0, 5.0, "plugin"),), reported={},
                total_ready_s=10.0, ttft_s=0.1, first_response_s=0.2, unaccounted_s=5.0, environment={},
                exit_status="ok", log_path="x.log")
    base.update(kw)
    return RunResult(**base)


def test_new_result_fields_round_trip_and_old_files_stay_byte_identical(tmp_path):
    plain = _result()
    assert "warm_s" not in plain.to_dict() and "sub_phases" not in plain.to_dict()
    rich = _result(sub_phases={"config": (Phase("hf_config", 0.0, 5.0, 5.0, "plugin"),)},
                   phase_agreement=({"name": "config", "plugin_s": 5.0, "other_s": 4.0, "other": "log",
                                     "diff_s": 1.0},), correct=True, warm_s=1.5,
                   readiness={"warm": {"warm_s": 1.5}}, profile={"speedscope": "p.json", "top_by_phase": {}})
    loaded = load_result(write_result(tmp_path, rich))
    assert loaded == rich
    agreed = load_result(write_result(tmp_path, _result(phase_agreement=())))
    assert agreed.phase_agreement == ()  # "all agree" is kept, not read back as "no probe" (None)
    assert load_result(write_result(tmp_path, _result(correct=False))).correct is False


def test_budgets_check_warm_s_and_fail_wrong_tokens():
    budgets = Budgets({"tiny-llama": {"*": {"warm_s": 1.0}}})
    rows = {c.name: c for c in check_budgets(budgets, _result(warm_s=2.0))}
    assert rows["warm_s"].status == "over" and rows["warm_s"].over_by_s == pytest.approx(1.0)
    assert "correct" not in rows
    rows = {c.name: c for c in check_budgets(budgets, _result(warm_s=0.5, correct=False))}
    assert rows["warm_s"].status == "ok" and rows["correct"].status == "over"
    # Results from before readiness levels get no new rows.
    assert {c.name for c in check_budgets(Budgets({}), _result())} == {"config", "total_ready_s", "ttft_s"}


def _trace() -> list[dict]:
    """py-spy's Chrome trace for one thread: import 0-1 s, a wait 1-2 s, compile 2-4 s (ts in us)."""
    def ev(ph, name, ts, fn="x.py", line=1):
        return {"ph": ph, "name": name, "ts": ts, "pid": 7, "tid": 1, "args": {"filename": fn, "line": line}}
    root = {"ph": "B", "name": "process 7:\"python\"", "ts": 0, "pid": 7, "tid": 1, "args": {"filename": "", "line": 0}}
    return [root, ev("B", "<module>", 0), ev("B", "_compile_bytecode", 0, "<frozen>", 729),
            ev("E", "_compile_bytecode", 1_000_000, "<frozen>", 729), ev("B", "Condition.wait", 1_000_000, "threading.py"),
            ev("E", "Condition.wait", 2_000_000, "threading.py"), ev("B", "compile_fx", 2_000_000, "compile_fx.py", 9),
            ev("E", "compile_fx", 4_000_000, "compile_fx.py", 9), ev("E", "<module>", 4_000_000),
            {**root, "ph": "E", "ts": 4_000_000}]


def test_profile_samples_are_attributed_to_phases_by_time_and_waits_are_left_out():
    segs = segments(_trace(), offset_s=10.0)  # py-spy started 10 s after spawn
    assert segs[0].start_s == 10.0 and segs[-1].end_s == 14.0
    phases = [Phase("imports", 0.0, 10.5, 10.5, "plugin"), Phase("config", 10.5, 12.5, 2.0, "plugin"),
              Phase("torch_compile", 12.5, 20.0, 7.5, "arrival"), Phase("cuda_graphs", None, None, None, "not_observed")]
    top = top_by_phase(segs, phases)
    assert top["imports"] == [{"function": "_compile_bytecode (<frozen>:729)", "self_s": 0.5}]
    assert top["config"] == [{"function": "_compile_bytecode (<frozen>:729)", "self_s": 0.5},
                             {"function": "compile_fx (compile_fx.py:9)", "self_s": 0.5}]  # the wait is not work
    assert top["torch_compile"] == [{"function": "compile_fx (compile_fx.py:9)", "self_s": 1.5}]
    assert "cuda_graphs" not in top


def test_speedscope_file_is_balanced_per_thread():
    doc = speedscope(segments(_trace(), 0.0), "run")
    assert doc["$schema"].endswith("file-format-schema.json")
    (profile,) = doc["profiles"]
    depth = 0
    for e in profile["events"]:
        depth += 1 if e["type"] == "O" else -1
        assert depth >= 0
    assert depth == 0 and profile["endValue"] == 4.0
    json.dumps(doc)


def test_grown_functions_names_what_got_slower():
    base = {"config": [{"function": "a", "self_s": 1.0}, {"function": "b", "self_s": 2.0}]}
    head = {"config": [{"function": "a", "self_s": 4.0}, {"function": "c", "self_s": 0.5}, {"function": "b", "self_s": 1.0}]}
    assert grown_functions(base, head, "config") == [{"function": "a", "grew_s": 3.0}, {"function": "c", "grew_s": 0.5}]
    assert grown_functions(base, head, "warmup") == []


def test_segment_is_a_value():
    assert Segment(1, 2, 0.0, 1.0, ("a",)) == Segment(1, 2, 0.0, 1.0, ("a",))


def test_pr_verdict_lines_name_the_functions_that_grew_in_flagged_phases():
    from pytest_coldstart.report.inside import inside_notes, profile_growth_lines

    def run(top):
        return _result(profile={"speedscope": "s.json", "rate_hz": 250, "processes": 3, "top_by_phase": top})

    base = [run({"config": [{"function": "get_config (config.py:1)", "self_s": 2.0}]})] * 2
    head = [run({"config": [{"function": "get_config (config.py:1)", "self_s": 6.0},
                            {"function": "import_module (x.py:3)", "self_s": 1.0}]})]
    lines = profile_growth_lines(base, head, ["config", "warmup"])
    assert lines[1].startswith("Functions whose self time grew most")
    assert lines[2] == "- `config`: `get_config (config.py:1)` +4.00 s, `import_module (x.py:3)` +1.00 s"
    assert profile_growth_lines([_result()], head, ["config"]) == []  # base not profiled: nothing to say
    notes = inside_notes([_result(sub_phases={"config": (Phase("hf_config", 0.0, 3.0, 3.0, "plugin"),
                                                         Phase("other", 3.0, 5.0, 2.0, "plugin"))},
                                  phase_agreement=(), correct=True, warm_s=0.5,
                                  readiness={"correct": {"correct": True}, "warm": {"warm_s": 0.5}}), head[0]])
    assert "config sub-phases (s, probe): hf_config 3.00, other 2.00" in notes
    assert "phase agreement: probe, log lines and vLLM's figures agree in 1 run(s)" in notes
    assert "readiness: correct 1/1, warm_s 0.50 (median)" in notes
    assert "config: get_config (config.py:1) 6.00s" in notes
    assert inside_notes([_result()]) == ""  # older results: no new sections


def test_agreement_lines_name_who_timed_the_inside_value() -> None:
    from pytest_coldstart.report.inside import agreement_lines

    span = {"name": "weights_load", "plugin_s": 1.36, "other_s": 0.19, "other": "log", "diff_s": 1.17,
            "source": "otel"}
    wrapped = {**span, "name": "warmup", "source": "plugin"}
    [line] = agreement_lines([_result(phase_agreement=(span, wrapped))])
    assert "weights_load span 1.36 vs log 0.19" in line and "warmup probe 1.36 vs log 0.19" in line
