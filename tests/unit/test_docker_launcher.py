"""The docker launcher's logic against a fake Docker client: only for failures a real engine will not
show on demand here (a registry error text, an exit mid-start at a chosen moment). The real engine
runs in tests/integration/test_docker.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pytest_coldstart.launch.base import LaunchSpec
from pytest_coldstart.launch.docker import (
    ContainerProcess,
    DockerServer,
    container_env,
    describe_pull_error,
    host_mounts,
    split_image,
)
from pytest_coldstart.launch.docker_ground import DEFAULT_IMAGE, network_state
from pytest_coldstart.model.clock import SystemClock
from pytest_coldstart.model.errors import LaunchError, LogWriteError, ServerExitedError
from pytest_coldstart.model.redact import Redactor


class FakeImage:
    id = "sha256:abc"
    attrs = {"Size": 200_000_000, "RepoDigests": ["127.0.0.1:5000/x@sha256:def"]}


class FakeContainer:
    def __init__(self, lines: list[bytes], state: dict[str, Any]) -> None:
        self.lines, self.attrs, self.removed = lines, {"State": {"Status": "running", "Pid": 0}}, False
        self.final = state

    def start(self) -> None:
        pass

    def reload(self) -> None:
        if not self.lines:
            self.attrs = {"State": self.final}

    def logs(self, stream: bool, follow: bool) -> Any:
        while self.lines:
            yield self.lines.pop(0)

    def stop(self, timeout: int) -> None:
        pass

    def remove(self, force: bool) -> None:
        self.removed = True


class FakeClient:
    def __init__(self, pull_error: Exception | None = None, container: FakeContainer | None = None) -> None:
        self.pull_error, self.container = pull_error, container
        self.images, self.containers = self, self

    def pull(self, repo: str, tag: str) -> FakeImage:
        if self.pull_error:
            raise self.pull_error
        return FakeImage()

    def create(self, image: str, command: Any, **kw: Any) -> FakeContainer:
        assert kw["network_mode"] == "host" and kw["init"] is True
        assert self.container is not None
        return self.container


def server(tmp_path: Path, client: FakeClient, **run_options: Any) -> DockerServer:
    spec = LaunchSpec(model_ref="/m", served_name="m", port=1, log_path=tmp_path / "c.log", timeout_s=30.0)
    process = ContainerProcess(client, image=DEFAULT_IMAGE, command=["python"], env={}, mounts={},
                               log_path=spec.log_path, clock=SystemClock(), redactor=Redactor(()),
                               run_options=run_options)
    process.start()
    return DockerServer(spec, process, SystemClock())


def wait_failure(srv: DockerServer) -> LaunchError:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            srv.check_alive()
        except LaunchError as exc:
            return exc
        time.sleep(0.05)
    raise AssertionError("no failure")


def test_split_image_keeps_a_registry_port() -> None:
    assert split_image("127.0.0.1:5000/coldstart/base:tag") == ("127.0.0.1:5000/coldstart/base", "tag")
    assert split_image("127.0.0.1:5000/coldstart/base") == ("127.0.0.1:5000/coldstart/base", "latest")
    assert split_image("vllm/vllm-openai:v0.11.0") == ("vllm/vllm-openai", "v0.11.0")


def test_pull_errors_say_which_and_what_to_do() -> None:
    down = describe_pull_error("127.0.0.1:5000/x:y", docker.errors.APIError(
        'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused'))
    assert "registry 127.0.0.1:5000 is unreachable" in down.summary and "docker_ground up" in down.hint
    missing = describe_pull_error("127.0.0.1:5000/x:y", docker.errors.NotFound("manifest unknown"))
    assert "image 127.0.0.1:5000/x:y is not in registry 127.0.0.1:5000" in missing.summary
    assert "--coldstart-docker-image" in missing.hint


def test_a_pull_error_fails_the_start_in_image_pull(tmp_path: Path) -> None:
    srv = server(tmp_path, FakeClient(pull_error=docker.errors.NotFound("manifest unknown")))
    error = wait_failure(srv)
    assert "image_pull:" in error.summary and "not in registry" in error.summary
    assert srv.phase_in_progress() == "image_pull"


def test_oom_killed_container_is_named_oom(tmp_path: Path) -> None:
    container = FakeContainer([b"INFO starting\n", b"partial"], {"Status": "exited", "ExitCode": 137, "OOMKilled": True})
    srv = server(tmp_path, FakeClient(container=container), mem_limit="64m")
    error = wait_failure(srv)
    assert isinstance(error, ServerExitedError) and error.exit_code == 137
    assert "OOM-killed (exit 137" in error.summary and "memory limit 64m" in error.summary
    assert "--coldstart-docker-memory" in error.hint
    assert error.log_tail[-2:] == ("INFO starting", "partial")  # the last partial line is kept
    srv.stop()
    assert container.removed


def test_container_exit_names_code_and_phase(tmp_path: Path) -> None:
    container = FakeContainer([b"boom\n"], {"Status": "exited", "ExitCode": 3, "OOMKilled": False})
    srv = server(tmp_path, FakeClient(container=container))
    error = wait_failure(srv)
    assert "container exited with code 3 during phase 'imports'" in error.summary and error.exit_code == 3
    assert error.log_tail == ("boom",)
    timeline = srv.timeline()
    assert [p.name for p in timeline.phases[:3] if p.observed] == ["image_pull", "container_create",
                                                                   "container_start"]
    assert timeline.reported["image_digest"] == "sha256:def" and timeline.reported["image_size_bytes"] == 200_000_000
    srv.stop()


def test_mounts_and_env_pass_only_what_the_server_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    cache = tmp_path / "cache"
    cache.mkdir()
    spec = LaunchSpec(model_ref=str(tmp_path), served_name="m", port=1, log_path=tmp_path / "c.log", timeout_s=30.0,
                      env={"VLLM_CACHE_ROOT": str(cache)}, python=sys.executable)
    env = container_env(spec, base={"HF_HUB_OFFLINE": "1", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "HOME": "/root"})
    assert env["HF_HUB_OFFLINE"] == "1" and "AWS_SECRET_ACCESS_KEY" not in env and "HOME" not in env
    mounts = host_mounts(spec, env)
    assert mounts[sys.base_prefix]["mode"] == "ro" and mounts[str(tmp_path)]["mode"] == "ro"
    assert mounts[str(cache)] == {"bind": str(cache), "mode": "rw"}


def test_network_state_reads_ip_forward() -> None:
    assert network_state()["ip_forward"] in ("0", "1", "unreadable")


def test_a_log_that_cannot_be_written_stops_the_start(tmp_path: Path) -> None:
    # As OwnedProcess does: a full disk under the log stops the start with that reason (the lines kept in
    # memory for the error), instead of a start measured without its log.
    (tmp_path / "c.log").symlink_to("/dev/full")
    container = FakeContainer([b"INFO starting\n", b"INFO more\n"], {"Status": "running", "Pid": 0})
    srv = server(tmp_path, FakeClient(container=container))
    error = wait_failure(srv)
    assert isinstance(error, LogWriteError) and "could not be written" in error.summary, error
    assert srv.process.log_error is not None
    assert [line.text for line in srv.process.lines()] == ["INFO starting", "INFO more"]
