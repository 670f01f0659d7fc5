"""The servers registry of `--launcher command`: bad entries are refused with the fix, markers make phases."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coldstart.launch.base import LaunchSpec
from pytest_coldstart.launch.command import (
    GENERIC_RULES,
    CommandServer,
    load_servers,
    marker_events,
    parse_entry,
    server_entry,
)
from pytest_coldstart.launch.registry import KNOWN_LAUNCHERS, phase_rules
from pytest_coldstart.logs.timeline import StampedLine, build_timeline
from pytest_coldstart.model.errors import ConfigError

GOOD = {"command": ["{python}", "-m", "srv", "--port", "{port}", "{model}"], "readiness_url": "{base_url}/health"}


def spec(tmp_path: Path, **kw: object) -> LaunchSpec:
    values = {"model_ref": "/models/tiny", "served_name": "tiny", "port": 8123, "log_path": tmp_path / "x.log",
              "timeout_s": 60.0, "python": "/venv/bin/python", **kw}
    return LaunchSpec(**values)  # type: ignore[arg-type]


def test_packaged_registry_ships_the_four_servers_and_only_transformers_serve_is_tested_here() -> None:
    servers = load_servers()
    assert set(servers) >= {"transformers-serve", "sglang", "tgi", "llama-cpp"}
    assert [name for name, entry in servers.items() if entry.tested_here] == ["transformers-serve"]
    assert {"command", "transformers-serve", "docker"} <= set(KNOWN_LAUNCHERS)
    assert [r.name for r in phase_rules("transformers-serve")] == ["imports", "weights_load", "api_server", "ready"]
    assert phase_rules("command") == GENERIC_RULES


def test_command_template_expands(tmp_path: Path) -> None:
    entry = parse_entry("srv", GOOD)
    assert entry.argv(spec(tmp_path)) == ["/venv/bin/python", "-m", "srv", "--port", "8123", "/models/tiny"]
    assert entry.url(spec(tmp_path)) == "http://127.0.0.1:8123/health"
    assert entry.model_name(spec(tmp_path)) == "tiny"


@pytest.mark.parametrize(("change", "message"), [
    ({"readiness_url": None}, "[servers.srv] readiness_url: missing; expected an http(s) URL"),
    ({"readiness_url": ""}, "[servers.srv] readiness_url = '': not an http(s) URL"),
    ({"readiness_url": "localhost:8000/health"}, "readiness_url = 'localhost:8000/health': not an http(s) URL"),
    ({"phases": {"weights_load": "Load weight (end"}}, "[servers.srv.phases] weights_load = 'Load weight (end': not a "
                                                       "valid regular expression"),
    ({"phases": {"ready": "x"}}, "server 'srv': phase name 'ready' is reserved"),
    ({"command": []}, "[servers.srv] command = []: expected a non-empty list of strings"),
    ({"command": ["srv", "--port", "{prot}"]}, "[servers.srv] command[2] = '{prot}': unknown placeholder {prot}"),
    ({"command": ["srv", "--port", "{port"]}, "command[2] = '{port': not a valid template"),
    ({"ttft_api": "grpc"}, "[servers.srv] ttft_api = 'grpc': expected completions or chat"),
])
def test_bad_entries_name_the_server_and_the_fix(change: dict, message: str) -> None:
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as exc:
        parse_entry("srv", data)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_server_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text('[servers.mine]\ncommand = ["srv"]\nreadiness_url = "{base_url}/ready"\n')
    with pytest.raises(ConfigError, match="unknown server 'other'.*known: mine"):
        server_entry("other", path)
    assert server_entry("mine", path).phase_rules == GENERIC_RULES


def test_markers_become_phases_that_add_up_to_ready() -> None:
    entry = parse_entry("srv", {**GOOD, "phases": {"weights_load": r"weights done", "api_server": "listening"}})
    lines = [StampedLine(0.5, "starting"), StampedLine(2.0, "weights done in 1.2s"), StampedLine(2.1, "weights done"),
             StampedLine(3.0, "listening on :8123")]
    events = marker_events(entry, lines)
    assert events == {"marker:weights_load": [(2.0, {})], "marker:api_server": [(3.0, {})]}
    timeline = build_timeline([], source="arrival", spawn_s=0.0, ready_s=3.5, rules=entry.phase_rules,
                              extra_events=events)
    assert [(p.name, p.start_s, p.end_s) for p in timeline.phases] == [
        ("weights_load", 0.0, 2.0), ("api_server", 2.0, 3.0), ("ready", 3.0, 3.5)]
    assert timeline.total_ready_s == 3.5 and timeline.unaccounted_s == 0.0


def test_without_markers_the_phases_are_generic_and_an_unseen_marker_is_not_observed() -> None:
    generic = build_timeline([], source="arrival", spawn_s=0.0, ready_s=4.0, rules=GENERIC_RULES)
    assert [(p.name, p.start_s, p.end_s) for p in generic.phases] == [("ready", 0.0, 4.0)]
    entry = parse_entry("srv", {**GOOD, "phases": {"weights_load": "never logged"}})
    timeline = build_timeline([], source="arrival", spawn_s=0.0, ready_s=4.0, rules=entry.phase_rules,
                              extra_events=marker_events(entry, [StampedLine(1.0, "hello")]))
    assert timeline.phases[0].duration_s is None  # not observed, never zero
    assert timeline.unaccounted_s == 4.0


def test_phase_in_progress_walks_the_entrys_phases(tmp_path: Path) -> None:
    entry = parse_entry("srv", {**GOOD, "phases": {"weights_load": "weights done", "api_server": "listening"}})

    class Lines:
        def __init__(self, lines: list[StampedLine]) -> None:
            self._lines = tuple(lines)

        def lines(self) -> tuple[StampedLine, ...]:
            return self._lines

    server = CommandServer.__new__(CommandServer)
    server.entry, server.ready_s = entry, None
    server.process = Lines([StampedLine(1.0, "x")])  # type: ignore[assignment]
    assert server.phase_in_progress() == "weights_load"
    server.process = Lines([StampedLine(1.0, "weights done")])  # type: ignore[assignment]
    assert server.phase_in_progress() == "api_server"
    server.process = Lines([StampedLine(1.0, "weights done"), StampedLine(2.0, "listening")])  # type: ignore[assignment]
    assert server.phase_in_progress() == "ready"


def test_a_bound_launcher_keeps_its_packaged_entry_beside_a_servers_file(tmp_path: Path) -> None:
    """`--launcher transformers-serve,command --coldstart-command-servers FILE`: FILE is for `command` only."""
    from pytest_coldstart.launch.command import CommandLauncher, TransformersServeLauncher

    path = tmp_path / "servers.toml"
    path.write_text('[servers.plain]\ncommand = ["srv"]\nreadiness_url = "{base_url}/health"\n')
    options = {"command_server": "plain", "command_servers": str(path)}
    assert TransformersServeLauncher().entry(spec(tmp_path, launcher_options=options)).name == "transformers-serve"
    assert CommandLauncher().entry(spec(tmp_path, launcher_options=options)).name == "plain"
