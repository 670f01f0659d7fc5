"""The built-in launchers' own settings, declared where importing them costs nothing.

pytest registers every option before it parses the command line, in every
session, cold-start or not; reading them from the launcher classes would import
httpx, psutil and the log grammar into every pytest process. So the built-in
launchers' options live here (``Launcher.options`` points at these tuples) and
this module imports nothing of the package but ``model.errors``. A launcher
from another package declares its options on its class; the plugin imports it
to read them (``launch.registry.all_options``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_coldstart.model.errors import ConfigError

#: Every launcher option's flag starts with this: a guest in other suites never takes their flags.
FLAG_PREFIX = "--coldstart-"


@dataclass(frozen=True)
class LauncherOption:
    """A launcher's own setting, offered as a pytest option and ini key by the plugin.

    :param flag: the command-line flag; starts with ``--coldstart-`` (``--coldstart-ray-address``).
    :param key: the key in ``LaunchSpec.launcher_options``; the ini key is ``coldstart_KEY``.
    :param parse: turns the text into the value kept (raise ``ValueError`` or ``ConfigError`` with why).
    """

    flag: str
    key: str
    default: str
    help: str
    parse: Callable[[str], str] = str

    @property
    def ini(self) -> str:
        return f"coldstart_{self.key}"


def parse_replicas(value: str) -> tuple[int, int, int]:
    """``"0,0,1"`` -> (min, initial, max), checked the way Serve would."""
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"ray replicas {value!r}: expected MIN,INITIAL,MAX as three integers, e.g. 0,0,1")
    low, initial, high = (int(p) for p in parts)
    if not low <= initial <= high or high < 1:
        raise ConfigError(f"ray replicas {value!r}: need MIN <= INITIAL <= MAX and MAX >= 1, e.g. 0,0,1")
    return low, initial, high


def _replicas_option(value: str) -> str:
    parse_replicas(value)  # raises ConfigError with the reason
    return value


def _floor_gbps(value: str) -> str:
    if value:
        try:
            ok = float(value) > 0 and float(value) != float("inf")
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"--coldstart-docker-registry-floor-gbps {value!r}: expected a number of GB/s > 0")
    return value


#: Docker's size syntax (``docker run --memory/--shm-size``): a whole number with an optional unit b, k, m, g.
_DOCKER_SIZE = re.compile(r"[1-9][0-9]*[bkmg]?", re.IGNORECASE)


def _docker_size(flag: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value and not _DOCKER_SIZE.fullmatch(value.strip()):
            raise ConfigError(f"{flag} {value!r}: expected a size as docker takes it, a whole number > 0 with an "
                              "optional unit b, k, m or g, e.g. 8g")
        return value.strip()

    return parse


def _docker_gpus(value: str) -> str:
    # The launcher turns this into one DeviceRequest (count -1 = all); anything else would reach int() there.
    text = value.strip()
    if text and text != "all" and not (text.isdigit() and int(text) > 0):
        raise ConfigError(f"--coldstart-docker-gpus {value!r}: expected 'all' or a whole number of GPUs > 0, e.g. 8")
    return text


def _python_mode(value: str) -> str:
    if value not in ("host", "image"):
        raise ConfigError(f"--coldstart-docker-python {value!r}: expected host or image")
    return value


#: The CPU lane's base image: ``launch.docker_ground.DEFAULT_IMAGE`` (it builds and pushes it; a test holds them equal).
DEFAULT_DOCKER_IMAGE = "127.0.0.1:5000/coldstart/base:bookworm-python3-gxx"
DEFAULT_SHM = "2g"

RAY_SERVE_OPTIONS: tuple[LauncherOption, ...] = (
    LauncherOption("--coldstart-ray-address", "ray_address", "",
                   "--coldstart-launcher ray-serve: join this Ray cluster (e.g. ray://head:10001 or auto) instead "
                   "of starting a local Ray; only the benchmark's app is deleted afterwards. Default: a local Ray "
                   "per start"),
    LauncherOption("--coldstart-ray-replicas", "ray_replicas", "0,0,1",
                   "--coldstart-launcher ray-serve: MIN,INITIAL,MAX replicas of the LLM deployment's "
                   "autoscaling_config; the first request scales it from INITIAL. Default: %(default)s (scale "
                   "from zero)", _replicas_option),
)

DOCKER_OPTIONS: tuple[LauncherOption, ...] = (
    LauncherOption("--coldstart-docker-image", "docker_image", DEFAULT_DOCKER_IMAGE,
                   "--coldstart-launcher docker: the image to pull and run. Default: %(default)s (the CPU lane's "
                   "base image, pushed by `python -m pytest_coldstart.launch.docker_ground up`)"),
    LauncherOption("--coldstart-docker-host", "docker_host", "",
                   "--coldstart-launcher docker: the daemon's address. Default: $DOCKER_HOST, else the CPU "
                   "lane's private daemon (unix://.coldstart/docker/docker.sock)"),
    LauncherOption("--coldstart-docker-python", "docker_python", "host",
                   "--coldstart-launcher docker: host runs the harness's interpreter and venv mounted read-only "
                   "at the same paths; image runs the image's entrypoint with vLLM's arguments "
                   "(vllm/vllm-openai). Default: %(default)s", _python_mode),
    LauncherOption("--coldstart-docker-memory", "docker_memory", "",
                   "--coldstart-launcher docker: the container's memory limit (e.g. 8g). Default: none",
                   _docker_size("--coldstart-docker-memory")),
    LauncherOption("--coldstart-docker-shm-size", "docker_shm_size", DEFAULT_SHM,
                   "--coldstart-launcher docker: the container's /dev/shm (vLLM's ring buffer needs more than "
                   "Docker's 64 MB). Default: %(default)s", _docker_size("--coldstart-docker-shm-size")),
    LauncherOption("--coldstart-docker-gpus", "docker_gpus", "",
                   "--coldstart-launcher docker: 'all' or a count of GPUs (device_requests). Default: none (CPU)",
                   _docker_gpus),
    LauncherOption("--coldstart-docker-registry-floor-gbps", "docker_registry_floor_gbps", "",
                   "--coldstart-launcher docker: the registry's floor in GB/s (1e9 B/s), the fastest it delivers "
                   "a layer, for the pull's efficiency. Default: probed (best of 3 GETs of the image's largest "
                   "layer blob, after the start)", _floor_gbps),
)

COMMAND_OPTIONS: tuple[LauncherOption, ...] = (
    LauncherOption("--coldstart-command-server", "command_server", "transformers-serve",
                   "--coldstart-launcher command: the server entry to start (see --coldstart-command-servers). "
                   "Default: %(default)s"),
    LauncherOption("--coldstart-command-servers", "command_servers", "",
                   "--coldstart-launcher command: a servers registry TOML ([servers.NAME] with command, "
                   "readiness_url, phases). Default: the packaged pytest_coldstart/launch/servers.toml"),
)

def parse_speed(value: str) -> str:
    """A finite factor > 0 (``20`` replays 20x faster than recorded)."""
    try:
        speed = float(value)
    except ValueError:
        raise ConfigError(f"--coldstart-replay-speed must be a number > 0, e.g. 20; got {value!r}") from None
    if not math.isfinite(speed) or speed <= 0:
        raise ConfigError(f"--coldstart-replay-speed must be finite and > 0, e.g. 20; got {value!r}")
    return value


def parse_log(value: str) -> str:
    if value and not Path(value).is_file():
        raise ConfigError(f"--coldstart-replay-log {value!r} is not a file; give a saved server log "
                          "(a `vllm serve` log or a Ray Serve LLM console capture)")
    return value


def parse_record(value: str) -> str:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return "on"
    if text in ("", "0", "false", "no", "off"):
        return "off"
    raise ConfigError(f"--coldstart-replay-record takes on or off; got {value!r}")


REPLAY_OPTIONS: tuple[LauncherOption, ...] = (
    LauncherOption("--coldstart-replay-log", "replay_log", "",
                   "--coldstart-launcher replay: the recorded server log to replay (a `vllm serve` log, or a Ray "
                   "Serve LLM console capture).", parse_log),
    LauncherOption("--coldstart-replay-speed", "replay_speed", "1",
                   "--coldstart-launcher replay: how many times faster than recorded (finite, > 0). "
                   "Default: %(default)s", parse_speed),
    LauncherOption("--coldstart-replay-record", "replay_record", "off",
                   "Record replayed results into the asv history too (on/off). Default: %(default)s",
                   parse_record),
)

#: Built-in launcher kind -> its options (``launch.registry`` reads these instead of importing the class).
BUILTIN_OPTIONS: dict[str, tuple[LauncherOption, ...]] = {
    "vllm": (),
    "ray-serve": RAY_SERVE_OPTIONS,
    "docker": DOCKER_OPTIONS,
    "command": COMMAND_OPTIONS,
    "transformers-serve": (),
    "replay": REPLAY_OPTIONS,
}
