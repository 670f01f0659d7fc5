"""The plugin's options: one table, each with an ini key of the same name.

Core and history options are listed here; each launcher adds its own
(``Launcher.options``), so a new launcher's settings appear without an edit
here. Every option is also an ini key (``coldstart_*``).
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_coldstart.launch.registry import KNOWN_LAUNCHERS, all_options
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.model.paths import MACHINE_RULE, MAX_MACHINE, shown, slug_problem

DEFAULT_MODEL = "tiny-llama"


def names(value: str) -> tuple[str, ...]:
    found = tuple(n.strip() for n in value.split(",") if n.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected comma-separated names, "
                                         "e.g. tiny-llama,llama-3-8b")
    return found


def _positive(kind: Callable[[str], Any], example: str) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            number = None
        # nan > 0 and nan <= 0 are both False: without isfinite, --coldstart-timeout=nan waits forever.
        if number is None or not math.isfinite(number) or number <= 0:
            raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected a number > 0, e.g. {example}")
        return number
    return parse


def _machine(value: str) -> str:
    """``--coldstart-machine``: empty (derived from the hardware) or a safe slug (it names a directory)."""
    problem = slug_problem(value, MAX_MACHINE) if value else None
    if problem is not None:
        raise argparse.ArgumentTypeError(f"Could not parse value: {shown(value)}: {problem}. Expected {MACHINE_RULE}, "
                                         "e.g. cpu-2x-AMD-EPYC")
    return value


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected a port 1-65535, or 0 for a free one")
    return int(value)


def flag(value: str) -> bool:
    """An on/off option: bare ``--flag`` is on; ini or ``--flag=VALUE`` takes yes/no, true/false, on/off, 1/0."""
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. Expected on or off (true/false, yes/no, 1/0)")


@dataclass(frozen=True)
class Option:
    """One pytest option and its ini key (``dest``)."""

    flag: str
    dest: str
    parse: Callable[[str], Any]
    default: str
    help: str
    #: For a launcher's option: the key it has in ``LaunchSpec.launcher_options``.
    launcher_key: str | None = None


def _launcher_parse(parse: Callable[[str], str]) -> Callable[[str], str]:
    def wrapped(value: str) -> str:
        try:
            return parse(value)
        except (ColdstartError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"Could not parse value: {value!r}. {exc}") from None
    return wrapped


CORE_OPTIONS: tuple[Option, ...] = (
    Option("--coldstart-model", "coldstart_model", names, DEFAULT_MODEL,
           "Comma-separated models to start cold: the packaged registry plus the registry dir's models.toml. "
           "Default: %(default)s"),
    Option("--coldstart-optimization", "coldstart_optimization", names, "",
           "Comma-separated optimizations (baseline, compile_cache, enforce_eager, ...). "
           "Default: the ones each model lists in models.toml"),
    Option("--coldstart-launcher", "coldstart_launcher", names, "vllm",
           f"Comma-separated server launchers ({', '.join(KNOWN_LAUNCHERS)}). Default: %(default)s"),
    Option("--coldstart-repeat", "coldstart_repeat", _positive(int, "3"), "1",
           "Cold starts per model x optimization; the summary shows medians. Default: %(default)s"),
    Option("--coldstart-results", "coldstart_results", str, "results",
           "Directory for results: runs/*.json (one per start) and logs/*.log. Default: %(default)s"),
    Option("--coldstart-budgets", "coldstart_budgets", str, "benchmarks/budgets.toml",
           "TOML file of per-phase budgets in seconds, over the packaged ones; a breach fails the test. A file "
           "named here must exist; the default may be absent. Default: %(default)s"),
    Option("--coldstart-timeout", "coldstart_timeout", _positive(float, "900"), "900",
           "Seconds to wait for GET /health before failing with the last phase reached. Default: %(default)s"),
    Option("--coldstart-registry", "coldstart_registry", str, "benchmarks",
           "Directory whose models.toml / optimizations.toml / compare.toml override the packaged ones entry by "
           "entry. A directory named here must exist; the default may be absent. Default: %(default)s"),
    Option("--coldstart-s3", "coldstart_s3", str, "",
           "S3 location (s3://BUCKET/PREFIX) that s3:NAME weight sources and compile caches live under. "
           "Default: $COLDSTART_S3_URI; with neither, the tiny generated model uses an embedded moto_server "
           "and other models' S3 cases are skipped"),
    Option("--coldstart-workdir", "coldstart_workdir", str, ".coldstart",
           "Scratch directory: generated models, compile caches, per-run cold caches. Default: %(default)s"),
    Option("--coldstart-port", "coldstart_port", _port, "0",
           "Port for the server; 0 picks a free one per start. Default: %(default)s"),
    Option("--coldstart-profile", "coldstart_profile", flag, "off",
           "Sample every server process with py-spy (--subprocesses, 250 Hz): a speedscope file per start under "
           "RESULTS/profiles/ and the top functions per phase in the report. Default: %(default)s"),
    Option("--coldstart-otel", "coldstart_otel", flag, "on",
           "Receive vLLM's own OpenTelemetry startup spans (vLLM 0.16+ with OpenTelemetry installed) on a "
           "loopback OTLP receiver: --otlp-traces-endpoint is added to the server's flags and the spans set "
           "the phase edges they cover; off leaves the server's flags alone. Default: %(default)s"),
    # History and PR gate (history/gate.py, plugin/history.py).
    Option("--coldstart-asv", "coldstart_asv", str, "",
           "asv results directory the session's runs are recorded into at session end (the history); 'off' "
           "records nothing. Default: asv/ in the --coldstart-results directory (a history in the old flat "
           "layout there is moved into it)"),
    Option("--coldstart-commit", "coldstart_commit", str, "HEAD",
           "Commit (ref or hash) the asv results are recorded against. Default: %(default)s"),
    Option("--coldstart-machine", "coldstart_machine", _machine, "",
           "asv machine name; give identical hosts one name. Default: derived from the GPU or CPU model"),
    Option("--coldstart-compare-to", "coldstart_compare_to", str, "",
           "Compare this session's starts with REF (a results directory, or a commit recorded in asv) using "
           "benchmarks/compare.toml; a regression fails the session (exit 1). Default: off"),
)


@functools.cache
def all_plugin_options() -> tuple[Option, ...]:
    """The core options, then every registered launcher's own (built once; ``option()`` asks often)."""
    launcher = tuple(Option(o.flag, o.ini, _launcher_parse(o.parse), o.default, o.help, o.key) for o in all_options())
    return CORE_OPTIONS + launcher


#: The short spellings this repository's ``benchmarks/conftest.py`` adds (``add_short_options``).
SHORT_OPTIONS: dict[str, str] = {"--model": "coldstart_model", "--optimization": "coldstart_optimization",
                                 "--launcher": "coldstart_launcher"}


def add_short_options(parser: pytest.Parser) -> None:
    """``--model``/``--optimization``/``--launcher`` as aliases of the ``--coldstart-*`` options.

    Never registered by the installed plugin (a suite with its own ``--model``, vLLM's among them,
    would die with "conflicting option string"); a suite that wants them calls this from its own
    conftest's ``pytest_addoption``, as this repository's ``benchmarks/conftest.py`` does.
    """
    group = parser.getgroup("coldstart")
    for flag, dest in SHORT_OPTIONS.items():
        o = next(o for o in all_plugin_options() if o.dest == dest)
        group.addoption(flag, dest=dest, metavar=dest.removeprefix("coldstart_").upper(), type=o.parse,
                        default=None, help=f"Short for {o.flag} (this suite's conftest).")


def explicit(config: pytest.Config, dest: str) -> bool:
    """True when *dest* was given on the command line or in the ini file (not left at its default)."""
    if config.getoption(dest) is not None:
        return True
    default = next(o.default for o in all_plugin_options() if o.dest == dest)
    return str(config.getini(dest)) != default


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("coldstart", "cold-start benchmarking of LLM servers (pytest-coldstart)")
    for o in all_plugin_options():
        bare = {"nargs": "?", "const": True} if o.parse is flag else {}  # `--coldstart-profile` alone is on
        group.addoption(o.flag, dest=o.dest, metavar=o.dest.removeprefix("coldstart_").upper(), type=o.parse,
                        default=None, **bare, help=o.help.replace("%(default)s", repr(o.default) if o.default else "-")
                        + f" (ini: {o.dest})")
        parser.addini(o.dest, o.help.replace("%(default)s", repr(o.default)), default=o.default)


def option(config: pytest.Config, dest: str) -> Any:
    """The option's value: command line, else ini, else default; parsed and checked."""
    value = config.getoption(dest)
    if value is not None:
        return value
    parse = next(o.parse for o in all_plugin_options() if o.dest == dest)
    raw = str(config.getini(dest))
    if dest == "coldstart_optimization" and not raw:
        return ()
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {dest}: {exc}") from None


def launcher_options(config: pytest.Config) -> tuple[tuple[str, str], ...]:
    """Every launcher option as (key, value), for ``Settings.launcher_options``."""
    return tuple((o.launcher_key, option(config, o.dest)) for o in all_plugin_options() if o.launcher_key)
