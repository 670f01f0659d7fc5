"""Load efficiency: which load time, against which floor, and where it shows up."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_coldstart.logs.timeline import Phase, timeline_from_log
from pytest_coldstart.measure.floors import FloorResolver, configured_floor, probe_local_disk, probe_s3
from pytest_coldstart.model.clock import FakeClock
from pytest_coldstart.model.efficiency import (
    BASIS_STREAM,
    BASIS_TRANSFER,
    FLOOR_CONFIGURED,
    FLOOR_PROBE,
    SCOPE_MODEL_LOAD,
    SCOPE_TRANSFER,
    FloorBandwidth,
    LoadEfficiency,
    assess,
    load_time,
)
from pytest_coldstart.model.errors import ConfigError, SchemaVersionError
from pytest_coldstart.model.registry import ModelSpec, load_registry
from pytest_coldstart.model.result import load_result, load_results, write_result
from pytest_coldstart.report.efficiency import efficiency_line, efficiency_markdown, median_efficiency
from pytest_coldstart.report.tables import render_summary

DATA = Path(__file__).resolve().parents[1] / "data"
RESULTS = DATA / "results"
REPO = Path(__file__).resolve().parents[2]
H100_LOGS = DATA / "ray-serve-llm-h100"  # vendored copy of shared/logs/ray-serve-llm-h100


def phase(name: str, start: float | None, end: float | None, reported: float | None = None,
          source: str = "arrival") -> Phase:
    if start is None or end is None:
        return Phase(name, None, None, None, "not_observed", reported)
    return Phase(name, start, end, round(end - start, 6), source, reported)


# --- which load time -----------------------------------------------------------------------------

def test_load_time_prefers_the_streamers_own_stream_time() -> None:
    phases = [phase("weights_load", 10.0, 38.0, reported=27.2)]
    assert load_time(phases, {"stream_s": 26.45, "model_load_s": 27.2}) == (26.45, BASIS_STREAM)


def test_load_time_adds_an_observed_download_to_the_load_phase() -> None:
    phases = [phase("weights_download", 66.0, 264.0), phase("weights_load", 264.0, 281.0)]
    load_s, basis = load_time(phases, {"model_load_s": 213.5})
    assert load_s == pytest.approx(215.0)
    assert basis == "weights_download + weights_load phases (arrival)"


def test_load_time_uses_the_load_phase_alone_without_a_download() -> None:
    load_s, basis = load_time([phase("weights_download", None, None), phase("weights_load", 1.0, 1.25)], {})
    assert (load_s, basis) == (0.25, "weights_load phase (arrival)")


def test_load_time_falls_back_to_vllms_own_numbers_when_the_phase_was_not_seen() -> None:
    phases = [phase("weights_load", None, None)]
    assert load_time(phases, {"weights_load_s": 16.46, "weights_download_s": 196.47}) == \
        (pytest.approx(212.93), "vLLM-reported load time (weights_download_s + weights_load_s)")
    assert load_time(phases, {"model_load_s": 27.5})[0] == 27.5


def test_an_unobserved_load_is_not_observed_never_zero() -> None:
    eff = assess(1000, [phase("weights_load", None, None)], {}, FloorBandwidth(1.0, FLOOR_PROBE))
    assert eff.load_s is None and eff.achieved_gbps is None and eff.percent_of_floor is None
    assert "not observed" in eff.note and "not observed" in eff.describe()


# --- the numbers ---------------------------------------------------------------------------------

def test_efficiency_is_floor_time_over_load_time() -> None:
    # 141.1 GB in 26.45 s against 5.6 GiB/s: coldstart-anchors.md 3.3 puts the floor at 23.5 s.
    floor = FloorBandwidth(5.6 * 2**30 / 1e9, FLOOR_CONFIGURED, "anchors")
    eff = assess(141_100_000_000, [], {"stream_s": 26.45}, floor, source_kind="s3")
    assert eff.floor_s == pytest.approx(23.47, abs=0.01)
    assert eff.achieved_gbps == pytest.approx(141.1 / 26.45, rel=1e-6)
    assert eff.percent_of_floor == pytest.approx(100 * 23.465 / 26.45, abs=0.05)
    text = eff.describe()
    assert text.startswith("load at 5.33 GB/s = 88.7% of floor 6.01 GB/s (source: configured)")


def test_above_the_floor_says_where_the_bytes_came_from() -> None:
    eff = assess(10_000_000_000, [phase("weights_load", 0.0, 1.0)], {}, FloorBandwidth(2.0, FLOOR_PROBE))
    assert eff.percent_of_floor == pytest.approx(500.0)
    assert "page cache" in eff.describe()


def test_no_floor_and_no_bytes_say_what_to_configure() -> None:
    eff = assess(None, [phase("weights_load", 0.0, 1.0)], {}, None, floor_note="set floor_gbps.hf")
    assert eff.achieved_gbps is None
    assert "weight_bytes not set" in eff.note and "set floor_gbps.hf" in eff.note
    eff = assess(1_000_000, [phase("weights_load", 0.0, 1.0)], {}, None, floor_note="set floor_gbps.hf")
    assert eff.achieved_gbps == pytest.approx(0.001) and eff.percent_of_floor is None
    assert "no floor (set floor_gbps.hf)" in eff.describe()


def test_floor_bandwidth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        FloorBandwidth(0.0, FLOOR_PROBE)


# --- results JSON -------------------------------------------------------------------------------

def test_real_cpu_lane_results_carry_an_efficiency_object() -> None:
    for result in load_results(RESULTS / "cpu-lane"):
        eff = result.efficiency
        assert eff is not None and eff.weight_bytes == 1685112 and eff.floor_source == FLOOR_PROBE
        assert "page cache evicted" in eff.floor_detail
        if result.exit_status == "ok":
            assert eff.load_s == result.phase_durations()["weights_load"]
            assert eff.percent_of_floor == pytest.approx(100 * eff.achieved_gbps / eff.floor_gbps)


def test_efficiency_round_trips_and_derived_values_are_recomputed(tmp_path: Path) -> None:
    result = load_results(RESULTS / "cpu-lane")[0]
    written = load_result(write_result(tmp_path, result))
    assert written.efficiency == result.efficiency
    data = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert data["schema_version"] == 1
    assert set(data["efficiency"]) >= {"weight_bytes", "load_s", "load_basis", "achieved_gbps", "floor_gbps",
                                       "floor_source", "floor_s", "percent_of_floor"}
    data["efficiency"]["percent_of_floor"] = 99.0  # a stale derived value is not trusted
    assert LoadEfficiency.from_dict(data["efficiency"]).percent_of_floor == pytest.approx(
        100 * result.efficiency.achieved_gbps / result.efficiency.floor_gbps)


def test_files_from_before_efficiency_still_load() -> None:
    [old] = load_results(RESULTS / "pre-efficiency")
    assert old.efficiency is None and old.exit_status == "ok"


def test_a_malformed_efficiency_object_is_a_clear_error(tmp_path: Path) -> None:
    source = next((RESULTS / "cpu-lane" / "runs").glob("*_r0_*.json"))
    data = json.loads(source.read_text())
    data["efficiency"] = "fast"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(SchemaVersionError, match="move it aside"):
        load_result(bad)


# --- terminal summary and PR markdown ------------------------------------------------------------

def test_terminal_summary_carries_load_efficiency() -> None:
    results = load_results(RESULTS / "cpu-lane")
    baseline = [r for r in results if r.optimization == "baseline"]
    text = render_summary(baseline)
    line = next(s for s in text.splitlines() if "load at" in s)
    assert "GB/s = 0.422% of floor 1.14 GB/s (source: probe)" in line
    assert "weights_load phase (arrival)" in line
    # the failed repeat has no load time: the line is the successful run's, not a median with a hole
    assert "median of" not in line


def test_terminal_summary_without_efficiency_is_unchanged() -> None:
    assert "load at" not in render_summary(load_results(RESULTS / "pre-efficiency"))
    assert efficiency_line(load_results(RESULTS / "pre-efficiency")) == ""


def test_median_over_repeats() -> None:
    [r0] = [r for r in load_results(RESULTS / "cpu-lane") if r.optimization == "baseline" and r.exit_status == "ok"]
    from dataclasses import replace

    slower = replace(r0, repeat_index=2, efficiency=replace(r0.efficiency, load_s=0.9))
    slowest = replace(r0, repeat_index=3, efficiency=replace(r0.efficiency, load_s=2.0))
    assert median_efficiency([r0, slower, slowest]).load_s == 0.9
    assert efficiency_line([r0, slower, slowest]).startswith("  median of 3 runs: load at")


def test_efficiency_markdown_for_a_pr_comment() -> None:
    results = load_results(RESULTS / "cpu-lane") + load_results(RESULTS / "h100-llama70b") + \
        load_results(RESULTS / "pre-efficiency")
    md = efficiency_markdown(results)
    lines = md.splitlines()
    assert lines[0].startswith("**Load efficiency**")
    assert "| model | optimization | launcher | weights | load s | load at GB/s | floor GB/s (source) |" in md
    sharded = next(s for s in lines if "| runai_streamer_sharded |" in s)
    assert "| 141 GB | 26.4 | 5.33 | 6.01 (configured) | 23.5 | 88.7% |" in sharded
    assert "| tiny-llama | baseline | vllm |" in md and "(probe)" in md
    # old results: one row saying so; the tiny-llama baseline row appears once (r0 + failed r1 grouped)
    assert sum("| tiny-llama | baseline | vllm |" in s for s in lines) == 1
    assert "- llama-3-70b/runai_streamer/ray-serve-llm: load time from the vLLM-reported Run:ai stream" in md
    assert efficiency_markdown([]) == ""


# --- floors --------------------------------------------------------------------------------------

def test_h100_models_configure_floors_per_source_kind() -> None:
    registry = load_registry(REPO / "benchmarks")
    spec = registry.model("llama-3-70b")
    assert configured_floor(spec, "s3").gbps == pytest.approx(6.013, abs=0.01)
    assert configured_floor(spec, "hf").source == FLOOR_CONFIGURED
    assert configured_floor(registry.model("tiny-llama"), "generated") is None


@pytest.mark.parametrize(("toml", "message"), [
    ("floor_gbps = 5", "floor_gbps = 5: expected a table of source kind"),
    ("floor_gbps = { ftp = 1.0 }", "key 'ftp': expected one of generated, hf, local, s3, host_to_gpu"),
    ("floor_gbps = { s3 = -1 }", "s3 = -1: expected GB/s, a finite number > 0"),
    ("floor_gbps = { s3 = true }", "s3 = True: expected GB/s, a finite number > 0"),
])
def test_bad_floor_config_is_refused(tmp_path: Path, toml: str, message: str) -> None:
    shutil.copy(REPO / "benchmarks" / "optimizations.toml", tmp_path)
    (tmp_path / "models.toml").write_text(f'[models.m]\nsource = "hf:org/m"\nserved_name = "m"\n{toml}\n')
    with pytest.raises(ConfigError, match=message):
        load_registry(tmp_path)


def test_configured_floor_wins_and_nothing_is_probed(tmp_path: Path) -> None:
    spec = ModelSpec("m", "local:/models/m", "m", weight_bytes=10**9, floor_gbps=(("local", 2.0),))
    resolver = FloorResolver(tmp_path / "probe")
    floor, kind, why = resolver.floor(spec, "baseline")
    assert (floor.gbps, floor.source, kind, why) == (2.0, FLOOR_CONFIGURED, "local", "")
    assert not (tmp_path / "probe").exists()


def test_remote_source_without_configuration_says_how_to_get_a_floor(tmp_path: Path) -> None:
    spec = ModelSpec("m", "hf:org/m", "m", weight_bytes=10**9)
    eff = FloorResolver(tmp_path).assess_run(spec, "baseline", [phase("weights_load", 0.0, 2.0)], {})
    assert eff.floor_gbps is None and eff.achieved_gbps == pytest.approx(0.5)
    assert "floor_gbps.hf" in eff.note and "coldstart floor" in eff.note


def test_local_sources_are_probed_once_per_session(tmp_path: Path) -> None:
    spec = ModelSpec("m", "generated:tiny", "m", weight_bytes=10**6)
    resolver = FloorResolver(tmp_path, probe_bytes=4 * 2**20, passes=1)
    first, kind, _ = resolver.floor(spec, "baseline")
    again, _, _ = resolver.floor(spec, "compile_cache")
    assert kind == "generated" and first.source == FLOOR_PROBE and again is first
    assert list(tmp_path.iterdir()) == []  # scratch file removed


def test_disk_probe_reads_with_the_page_cache_evicted(tmp_path: Path) -> None:
    floor = probe_local_disk(tmp_path, size_bytes=8 * 2**20, passes=2)
    assert floor.gbps > 0 and floor.source == FLOOR_PROBE
    assert "8 MiB" in floor.detail and "best of 2 passes" in floor.detail
    if "mincore" in floor.detail:  # Linux: the kernel confirms the pages were gone before each timed read
        assert "mincore: 0% still resident" in floor.detail
    assert list(tmp_path.iterdir()) == []


def test_disk_probe_failures_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too fast to time"):
        probe_local_disk(tmp_path, size_bytes=2**20, passes=1, clock=FakeClock())
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the disk probe file"):
        probe_local_disk(blocker / "sub", size_bytes=2**20)


def test_a_failed_probe_is_a_note_not_a_crash(tmp_path: Path) -> None:
    spec = ModelSpec("m", "generated:tiny", "m", weight_bytes=10**6)
    eff = FloorResolver(tmp_path, clock=FakeClock(), probe_bytes=2**20, passes=1).assess_run(
        spec, "baseline", [phase("weights_load", 0.0, 1.0)], {})
    assert eff.floor_gbps is None and "disk probe failed" in eff.note


def test_h100_logs_give_the_published_efficiency() -> None:
    if not H100_LOGS.is_dir():
        pytest.skip(f"{H100_LOGS} not present")
    floor = FloorBandwidth(5.6 * 2**30 / 1e9, FLOOR_CONFIGURED)
    timeline = timeline_from_log((H100_LOGS / "llama70b-s3-runai-sharded.log").read_text(errors="replace"))
    eff = assess(141_107_412_992, timeline.phases, timeline.reported, floor)
    assert eff.load_basis == BASIS_STREAM and eff.load_s == pytest.approx(26.45)
    assert eff.percent_of_floor == pytest.approx(88.7, abs=0.2)  # anchors: "at the observed S3 ceiling"


# --- S3 ranged-GET probe against a real moto_server ----------------------------------------------

@pytest.fixture
def moto_endpoint(tmp_path: Path):
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start on {url}")
                time.sleep(0.1)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket="weights")
        client.put_object(Bucket="weights", Key="model.safetensors", Body=os.urandom(6 * 2**20))
        yield url, client, env
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def test_s3_probe_times_ranged_gets(moto_endpoint) -> None:
    url, client, _ = moto_endpoint
    floor = probe_s3(client, "weights", "model.safetensors", range_bytes=2**20, passes=1, endpoint=url)
    assert floor.gbps > 0 and floor.source == FLOOR_PROBE
    assert "6 MiB from s3://weights/model.safetensors at http://127.0.0.1:" in floor.detail
    assert "1 MiB ranges" in floor.detail


def test_floor_command_probes_s3(moto_endpoint) -> None:
    url, _, env = moto_endpoint
    proc = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "floor", "--s3-url",
                           "s3://weights/model.safetensors", "--endpoint-url", url, "--mib", "4"],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "GB/s" in proc.stdout and "floor_gbps = { s3 = " in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", "floor", "--s3-url", "weights"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected s3://BUCKET/KEY" in bad.stderr


def test_a_start_that_never_loaded_is_not_probed(tmp_path: Path) -> None:
    spec = ModelSpec("m", "generated:tiny", "m", weight_bytes=10**6)
    eff = FloorResolver(tmp_path / "probe").assess_run(spec, "baseline", [phase("weights_load", None, None)], {})
    assert eff.load_s is None and "not observed" in eff.note and "floor not probed" in eff.note
    assert not (tmp_path / "probe").exists()


# --- one phase, one meaning: the transfer, not the model construction ------------------------------

def test_load_time_uses_vllms_weight_transfer_not_the_whole_load_phase() -> None:
    """vLLM 0.32 on the CPU lane: the weights_load phase (OTel "Loading (CPU)", 0.94 s) also builds the model;
    "Loading weights took 0.09 seconds" is the transfer. The efficiency divides by the transfer."""
    phases = [phase("weights_download", None, None), phase("weights_load", 10.0, 10.94, source="otel")]
    load_s, basis = load_time(phases, {"weights_load_s": 0.09, "model_load_s": 0.93})
    assert (load_s, basis) == (0.09, BASIS_TRANSFER)
    eff = assess(9_000_000, phases, {"weights_load_s": 0.09}, FloorBandwidth(1.0, FLOOR_PROBE))
    assert eff.load_s == 0.09 and eff.load_scope == SCOPE_TRANSFER
    assert eff.achieved_gbps == pytest.approx(0.1)  # 9 MB / 0.09 s, not 9 MB / 0.94 s
    assert SCOPE_TRANSFER in eff.describe()
    assert LoadEfficiency.from_dict(eff.to_dict()) == eff


def test_an_observed_download_is_added_to_the_transfer() -> None:
    phases = [phase("weights_download", 66.0, 149.0), phase("weights_load", 149.0, 348.0)]
    load_s, basis = load_time(phases, {"weights_load_s": 167.46, "model_load_s": 281.24})
    assert load_s == pytest.approx(83.0 + 167.46) and BASIS_TRANSFER in basis


def test_without_a_transfer_line_the_scope_says_construction_is_included() -> None:
    eff = assess(1000, [phase("weights_load", 1.0, 1.25)], {"model_load_s": 0.25}, FloorBandwidth(1.0, FLOOR_PROBE))
    assert eff.load_scope == SCOPE_MODEL_LOAD
    old = {k: v for k, v in eff.to_dict().items() if k != "load_scope"}  # a record from before the field
    assert LoadEfficiency.from_dict(old).load_scope is None
