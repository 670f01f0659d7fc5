"""Any OpenAI-compatible server (``--launcher command``; ``--launcher transformers-serve``).

A server entry (``servers.toml``, the packaged one by default, or ``--coldstart-command-servers FILE``)
gives the command template, the readiness URL and, optionally, regex markers for the
server's own phases. The process is an ``OwnedProcess`` like vLLM's (own session, lines
stamped on arrival, TERM/grace/KILL). Without markers the phases are the generic ones:
process start -> ``ready`` (the readiness URL answers 200), then the first token.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import httpx

from pytest_coldstart.launch.base import Launcher, LaunchSpec, ProgressFn, Server
from pytest_coldstart.launch.options import COMMAND_OPTIONS, LauncherOption
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.launch.ttft import PROMPT, TTFTSample, measure_ttft
from pytest_coldstart.logs.grammar import parse_line
from pytest_coldstart.logs.timeline import SOURCE_ARRIVAL, PhaseRule, Timeline, build_timeline
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml
from pytest_coldstart.model.redact import Redactor

PACKAGED_SERVERS = "servers.toml"
COMMAND_PLACEHOLDERS = frozenset({"python", "model", "served_name", "host", "port", "max_model_len",
                                  "tensor_parallel_size"})
URL_PLACEHOLDERS = frozenset({"host", "port", "base_url"})
TTFT_APIS = ("completions", "chat")
READY_RULE = PhaseRule("ready", ("health_ok",), description="until the readiness URL answers 200")
#: No markers: one phase from spawn to the readiness URL's first 200.
GENERIC_RULES = (PhaseRule("ready", ("health_ok",), ("spawn",),
                           description="process start until the readiness URL answers 200"),)
_PLACEHOLDER = re.compile(r"\{(\w*)\}")


@dataclass(frozen=True)
class ServerEntry:
    """One server of the registry, checked."""

    name: str
    command: tuple[str, ...]
    readiness_url: str
    description: str = ""
    phases: tuple[tuple[str, re.Pattern[str]], ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    tested_here: bool = False
    ttft_api: str = "completions"
    #: The ``model`` field of the first request (``transformers serve`` knows the model by its path).
    request_model: str = "{served_name}"

    @property
    def phase_rules(self) -> tuple[PhaseRule, ...]:
        if not self.phases:
            return GENERIC_RULES
        rules = [PhaseRule(name, (f"marker:{name}",), ("spawn",) if i == 0 else (),
                           description=f"until a line matches /{pattern.pattern}/")
                 for i, (name, pattern) in enumerate(self.phases)]
        return (*rules, READY_RULE)

    def argv(self, spec: LaunchSpec) -> list[str]:
        values = {"python": spec.python, "model": spec.model_ref, "served_name": spec.served_name,
                  "host": spec.host, "port": spec.port, "tensor_parallel_size": spec.tensor_parallel_size,
                  "max_model_len": spec.max_model_len}
        argv = []
        for part in self.command:
            if "{max_model_len}" in part and spec.max_model_len is None:
                raise ConfigError(f"server {self.name!r}: its command needs {{max_model_len}} and the model sets none")
            argv.append(part.format(**values))
        return argv

    def model_name(self, spec: LaunchSpec) -> str:
        return self.request_model.format(model=spec.model_ref, served_name=spec.served_name)

    def url(self, spec: LaunchSpec) -> str:
        return self.readiness_url.format(host=spec.host, port=spec.port, base_url=spec.base_url)


def _check_placeholders(name: str, what: str, text: str, allowed: frozenset[str]) -> None:
    for found in _PLACEHOLDER.findall(text):
        if found not in allowed:
            raise ConfigError(f"server {name!r}: {what} {text!r} has an unknown placeholder {{{found}}}; "
                              f"known: {', '.join('{' + p + '}' for p in sorted(allowed))}")


def parse_entry(name: str, data: Mapping[str, Any], *, file: object = PACKAGED_SERVERS,
                schema: bool = True) -> ServerEntry:
    """Check one ``[servers.NAME]`` table; every problem is a ConfigError that names the entry and the fix.

    The schema (``model.schemas.ServerEntry``) first: types, templates that ``str.format`` can fill (a
    ``{port`` typo is refused here, not after the server was started), regexes that compile.
    *schema* False skips it for the packaged file, read when this module is imported (a test holds that
    file to the schema): no pydantic import in a pytest session that starts nothing.
    """
    if schema:
        from pytest_coldstart.model import schemas  # lazily: pydantic only when a user's servers file is read

        schemas.validate(schemas.ServerEntry, data, file=file, table=f"servers.{name}")
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(p, str) for p in command):
        raise ConfigError(f"server {name!r}: `command` must be a non-empty list of strings (the argv template)")
    readiness = data.get("readiness_url")
    if not isinstance(readiness, str) or not readiness.strip():
        raise ConfigError(f"server {name!r}: `readiness_url` is missing; give the URL that answers 200 once it "
                          f"serves, e.g. readiness_url = \"{{base_url}}/health\"")
    for part in command:
        _check_placeholders(name, "command part", part, COMMAND_PLACEHOLDERS)
    _check_placeholders(name, "readiness_url", readiness, URL_PLACEHOLDERS)
    if not readiness.startswith(("http://", "https://", "{base_url}")):
        raise ConfigError(f"server {name!r}: readiness_url {readiness!r} is not an http(s) URL")
    phases = []
    for phase, pattern in (data.get("phases") or {}).items():
        if phase == "ready":
            raise ConfigError(f"server {name!r}: phase name 'ready' is reserved (it ends at the readiness URL)")
        try:
            phases.append((str(phase), re.compile(str(pattern))))
        except re.error as exc:
            raise ConfigError(f"server {name!r}: phase {phase!r} has an invalid regex {pattern!r}: {exc}") from None
    request_model = str(data.get("request_model", "{served_name}"))
    _check_placeholders(name, "request_model", request_model, frozenset({"model", "served_name"}))
    api = data.get("ttft_api", "completions")
    if api not in TTFT_APIS:
        raise ConfigError(f"server {name!r}: ttft_api {api!r} must be one of {', '.join(TTFT_APIS)}")
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise ConfigError(f"server {name!r}: `env` must be a table of strings")
    return ServerEntry(name=name, command=tuple(command), readiness_url=readiness,
                       description=str(data.get("description", "")), phases=tuple(phases),
                       env={str(k): str(v) for k, v in env.items()}, tested_here=bool(data.get("tested_here")),
                       ttft_api=api, request_model=request_model)


def load_servers(path: Path | None = None) -> dict[str, ServerEntry]:
    """Every entry of *path* (default: the packaged ``servers.toml``), checked."""
    if path is None:
        with resources.as_file(resources.files("pytest_coldstart.launch") / PACKAGED_SERVERS) as packaged:
            data = load_toml(packaged, "servers registry")
    else:
        data = load_toml(path, "servers registry")
    servers = data.get("servers")
    if not isinstance(servers, dict) or not servers:
        raise ConfigError(f"{path or PACKAGED_SERVERS}: no [servers.NAME] tables")
    if path is not None:
        from pytest_coldstart.model import schemas

        schemas.validate(schemas.ServersFile, data, file=path)
    return {name: parse_entry(name, entry, file=path or PACKAGED_SERVERS, schema=path is not None)
            for name, entry in servers.items()}


def server_entry(name: str, path: Path | None = None) -> ServerEntry:
    servers = load_servers(path)
    try:
        return servers[name]
    except KeyError:
        raise ConfigError(f"unknown server {name!r} in {path or PACKAGED_SERVERS}; known: "
                          f"{', '.join(sorted(servers))}") from None


def marker_events(entry: ServerEntry, lines: Any) -> dict[str, list[tuple[float, dict[str, str]]]]:
    """The first line matching each phase's regex, as ``marker:PHASE`` events."""
    events: dict[str, list[tuple[float, dict[str, str]]]] = {}
    for line in lines:
        for name, pattern in entry.phases:
            key = f"marker:{name}"
            if key not in events and pattern.search(line.text):
                events[key] = [(line.t_s, {})]
    return events


def measure_chat_ttft(base_url: str, model: str, clock: Clock, *, timeout_s: float,
                      max_tokens: int = 16) -> TTFTSample:
    """Like ``measure_ttft`` through ``/v1/chat/completions`` (servers without the legacy API)."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", timeout=timeout_s, max_retries=0)
    try:
        sent = clock.monotonic_s()
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                                max_tokens=max_tokens, temperature=0.0, stream=True)
        first: float | None = None
        parts: list[str] = []
        chunks = 0
        for chunk in stream:
            chunks += 1
            text = chunk.choices[0].delta.content if chunk.choices else ""
            if text and first is None:
                first = clock.monotonic_s()
            parts.append(text or "")
        done = clock.monotonic_s()
    finally:
        client.close()
    return TTFTSample(None if first is None else round(first - sent, 6), round(done - sent, 6), "".join(parts), chunks)


class CommandServer(Server[OwnedProcess]):
    """A server started from an entry: its markers make the timeline, its URL the readiness."""

    def __init__(self, spec: LaunchSpec, process: OwnedProcess, clock: Clock, entry: ServerEntry) -> None:
        super().__init__(spec, process, clock)
        self.entry = entry

    def timeline(self) -> Timeline:
        lines = self.process.lines()
        stamped = [(line.t_s, parse_line(line.text)) for line in lines]
        timeline = build_timeline(stamped, source=SOURCE_ARRIVAL, spawn_s=0.0, ready_s=self.ready_s,
                                  rules=self.entry.phase_rules, extra_events=marker_events(self.entry, lines))
        # vLLM's self-reports mean nothing here; keep the server's name instead.
        return Timeline(timeline.phases, {"server": self.entry.name}, timeline.total_ready_s,
                        timeline.unaccounted_s, timeline.started_phase)

    def phase_in_progress(self) -> str:
        timeline = self.timeline()
        names = [rule.name for rule in self.entry.phase_rules]
        last = timeline.last_phase_reached
        return names[0] if last is None else (names[names.index(last) + 1] if last != names[-1] else "ready")

    def wait_ready(self, progress: ProgressFn | None = None) -> float:
        url = self.entry.url(self.spec)
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as client:

            def healthy() -> bool:
                try:
                    return client.get(url).status_code == 200
                except httpx.TransportError:
                    return False

            self.poll_until(healthy, timeout_s=self.spec.timeout_s, progress=progress,
                            timeout_summary=lambda: f"{self.entry.name}: {url} did not answer 200 within "
                                                    f"{self.spec.timeout_s:.0f} s (--coldstart-timeout)")
        self.ready_s = self.process.elapsed_s()
        return self.ready_s

    def first_token(self, served_name: str, *, timeout_s: float, progress: ProgressFn | None = None) -> TTFTSample:
        served_name = self.entry.model_name(self.spec)
        if self.entry.ttft_api == "chat":
            return measure_chat_ttft(self.base_url, served_name, self.clock, timeout_s=timeout_s)
        return measure_ttft(self.base_url, served_name, self.clock, timeout_s=timeout_s)


def _servers_path(options: Mapping[str, str]) -> Path | None:
    value = options.get("command_servers", "")
    return Path(value) if value else None


class CommandLauncher(Launcher):
    """``--launcher command --coldstart-command-server NAME``: one entry of the servers registry."""

    kind = "command"
    phase_rules: ClassVar[tuple[PhaseRule, ...]] = GENERIC_RULES
    options: ClassVar[tuple[LauncherOption, ...]] = COMMAND_OPTIONS
    #: Set by subclasses bound to one entry (``transformers-serve``).
    server: ClassVar[str | None] = None

    def entry(self, spec: LaunchSpec) -> ServerEntry:
        return self.entry_for(spec.launcher_options)

    def entry_for(self, options: Mapping[str, str]) -> ServerEntry:
        if self.server is not None:
            # A launcher bound to a packaged entry keeps it (its phase table is declared from it), also
            # when --coldstart-command-servers names another file for --launcher command in the same session.
            return server_entry(self.server)
        name = options.get("command_server") or "transformers-serve"
        return server_entry(name, _servers_path(options))

    def check_options(self, options: Mapping[str, str]) -> None:
        """The entry named exists in a servers registry that loads (before any start)."""
        self.entry_for(options)

    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        entry = self.entry(spec)
        env = {**os.environ, **entry.env, **spec.env}
        process = OwnedProcess(entry.argv(spec), env=env, log_path=spec.log_path, clock=clock,
                               redactor=Redactor.from_env(env))
        process.start()
        return CommandServer(spec, process, clock, entry)


class TransformersServeLauncher(CommandLauncher):
    """``--launcher transformers-serve``: Hugging Face ``transformers serve`` on the model (runs here for real)."""

    kind = "transformers-serve"
    server = "transformers-serve"
    options = ()
    phase_rules = load_servers()["transformers-serve"].phase_rules
