"""Real Docker Engine and `transformers serve` cold starts of the tiny model.

One session run of `pytest benchmarks --optimization baseline,image_cached --launcher
docker,transformers-serve,command` (a real pull from the loopback registry, a real container running
vLLM, the same with the image pulled beforehand, a real `transformers serve`; image_cached under the
other launchers is skipped with the reason), the registry's floor probed for real, plus the failures a
real engine shows on demand: an image missing from the registry, a registry that is down, a daemon
that is not there, an OOM-killed container. Docker tests skip with the reason where the ground
(launch/docker_ground.py: root, Debian's docker.io) cannot be set up; they never fake a container.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_coldstart.launch import docker_ground
from pytest_coldstart.measure.registry_floor import RegistryClient, RegistryFloors, parse_image, probe_registry
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.errors import LaunchError, ServerExitedError
from pytest_coldstart.model.phase import Phase
from pytest_coldstart.model.registry import load_registry
from pytest_coldstart.model.result import RunResult, load_results
from tests.conftest import REPO, BenchRun, requires_vllm, run_bench

pytestmark = [pytest.mark.integration, requires_vllm]
GROUND = docker_ground.Ground(REPO / ".coldstart" / "docker")


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """The CPU lane's daemon, registry and base image: used if `make test` set them up, else set up
    here and torn down after the session; a skip with the reason where that cannot be done."""
    if importlib.util.find_spec("docker") is None:
        pytest.skip("the Docker SDK for Python is not installed (extra `containers`)")
    ready = docker_ground.daemon_up(GROUND) and docker_ground.registry_up() and docker_ground.image_in_registry()
    if not ready:
        try:
            docker_ground.up(GROUND)
        except docker_ground.GroundError as exc:
            pytest.skip(f"Docker cannot run here: {exc}")
        except OSError as exc:
            pytest.skip(f"Docker cannot run here: {exc}")
    yield GROUND.docker_host
    if not ready:
        assert docker_ground.down(GROUND) == []  # nothing left, iptables and ip_forward as found
        assert docker_ground.leftover_mounts(GROUND) == []


@pytest.fixture(scope="session")
def two_systems(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    root = tmp_path_factory.mktemp("two-systems")
    # --launcher command with an entry that has no phase markers: the generic phases (~10 s more).
    servers = root / "servers.toml"
    servers.write_text('[servers.plain]\ncommand = ["{python}", "-m", "transformers.cli.transformers", "serve", '
                       '"--host", "{host}", "--port", "{port}", "--device", "cpu", "{model}"]\n'
                       'readiness_url = "{base_url}/health"\nrequest_model = "{model}"\n')
    return run_bench(root / "results", "--model", "tiny-llama", "--optimization", "baseline,image_cached",
                     "--launcher", "docker,transformers-serve,command", "-rs", f"--coldstart-docker-host={docker_host}",
                     "--coldstart-command-server=plain", f"--coldstart-command-servers={servers}",
                     f"--coldstart-workdir={root / 'w'}",
                     # Behaviour, not speed: budgets are benchmarks' business (a loaded 2-core box misses them).
                     "--coldstart-budgets=")  # '': no budgets at all


def only(run: BenchRun, launcher: str, optimization: str = "baseline") -> RunResult:
    [result] = [r for r in load_results(run.results_dir) if (r.launcher, r.optimization) == (launcher, optimization)]
    return result


def test_docker_start_times_pull_create_start_then_vllm(two_systems: BenchRun) -> None:
    assert two_systems.returncode == 0, two_systems.output[-6000:]
    result = only(two_systems, "docker")
    phases = {p.name: p for p in result.phases}
    names = [p.name for p in result.phases]
    assert names[:4] == ["image_pull", "container_create", "container_start", "imports"]
    for name in ("image_pull", "container_create", "container_start", "imports", "engine_init", "weights_load",
                 "api_server", "ready"):
        assert phases[name].observed, name
    # t = 0 is start(); the pull request leaves from its thread a few ms later.
    assert 0.0 <= phases["image_pull"].start_s < 0.1 and phases["image_pull"].source == "harness"
    # A real pull of a ~470 MB image over loopback takes seconds, not milliseconds (it was not cached).
    assert phases["image_pull"].duration_s > 0.5
    reported = result.reported
    assert reported["image_cached"] is False and reported["image_digest"].startswith("sha256:")
    assert reported["image_size_bytes"] > 100e6 and reported["image_pull_mb_per_s"] > 0
    observed = sum(p.duration_s for p in result.phases if p.duration_s is not None)
    assert observed + result.unaccounted_s == pytest.approx(result.total_ready_s, abs=1e-5)
    assert result.ttft_s is not None and result.ttft_s > 0
    assert result.server_argv[:4] == ("docker", "run", "--rm", "--init")
    assert "image" not in result.cache["warm"] and result.cache_state == "cold"


def test_docker_pull_is_set_against_the_registry_floor(two_systems: BenchRun) -> None:
    assert two_systems.returncode == 0, two_systems.output[-6000:]
    eff = only(two_systems, "docker").pull_efficiency
    assert eff is not None and eff.source_kind == "registry" and eff.floor_source == "probe", eff
    # The bytes on the wire: the manifest's compressed layer (~170 MB), not the unpacked 464 MB.
    assert 50e6 < eff.weight_bytes < only(two_systems, "docker").reported["image_size_bytes"]
    assert eff.load_s == only(two_systems, "docker").phase_durations()["image_pull"]
    assert eff.floor_gbps > 0 and 0 < eff.percent_of_floor < 150, eff
    assert "GET /v2/coldstart/base/blobs/sha256:" in eff.floor_detail and "best of 3 passes" in eff.floor_detail
    assert "image pull at" in two_systems.output and "% of registry floor" in two_systems.output


def test_image_cached_skips_the_pull_and_says_the_image_was_warm(two_systems: BenchRun, docker_host: str) -> None:
    assert two_systems.returncode == 0, two_systems.output[-6000:]
    result = only(two_systems, "docker", "image_cached")
    phases = {p.name: p for p in result.phases}
    assert not phases["image_pull"].observed and phases["image_pull"].duration_s is None  # not observed, never 0
    for name in ("container_create", "container_start", "imports", "weights_load", "ready"):
        assert phases[name].observed, name
    assert phases["container_create"].start_s < 1.0  # no pull before it
    assert result.reported["image_cached"] is True and result.reported["image_pull_s"] is None
    assert result.cache["image_cache"] == "warm" and result.cache["warm"] == ["image"]
    assert "compile" in result.cache["fresh"] and result.cache_state == "warm"
    assert result.cache["image_prepull"]["image_digest"] == only(two_systems, "docker").reported["image_digest"]
    assert result.pull_efficiency is not None and result.pull_efficiency.load_s is None
    assert "image_cached" in result.pull_efficiency.note
    observed = sum(p.duration_s for p in result.phases if p.duration_s is not None)
    assert observed + result.unaccounted_s == pytest.approx(result.total_ready_s, abs=1e-5)


def test_image_cached_is_skipped_with_the_reason_for_other_launchers(two_systems: BenchRun) -> None:
    assert two_systems.returncode == 0, two_systems.output[-6000:]
    launchers = {r.launcher for r in load_results(two_systems.results_dir) if r.optimization == "image_cached"}
    assert launchers == {"docker"}
    assert two_systems.output.count("needs a launcher that runs a container image") == 2, two_systems.output[-3000:]


def test_transformers_serve_start_has_its_own_phases(two_systems: BenchRun) -> None:
    assert two_systems.returncode == 0, two_systems.output[-6000:]
    result = only(two_systems, "transformers-serve")
    assert [p.name for p in result.phases] == ["imports", "weights_load", "api_server", "ready"]
    assert all(p.observed for p in result.phases)
    assert result.ttft_s is not None and result.total_ready_s > 0
    assert "transformers.cli.transformers" in " ".join(result.server_argv)


def test_a_server_entry_without_markers_has_the_generic_phases(two_systems: BenchRun) -> None:
    assert two_systems.returncode == 0, two_systems.output[-6000:]
    result = only(two_systems, "command")
    [ready] = result.phases
    assert (ready.name, ready.start_s, ready.end_s) == ("ready", 0.0, result.total_ready_s)
    assert result.unaccounted_s == 0.0 and result.ttft_s is not None and result.ttft_s > 0


def test_no_container_is_left_after_the_run(two_systems: BenchRun, docker_host: str) -> None:
    import docker

    client = docker.DockerClient(base_url=docker_host)
    assert client.containers.list(all=True, filters={"label": "pytest-coldstart"}) == []


def test_registry_floor_probe_reads_the_largest_layer(docker_host: str) -> None:
    """The real loopback registry: manifest, then best of 3 GETs of the layer blob (no vLLM needed)."""
    client = RegistryClient(parse_image(docker_ground.DEFAULT_IMAGE))
    try:
        manifest = client.manifest()
        floor = probe_registry(client, manifest, passes=3)
    finally:
        client.close()
    digest, size = manifest.largest
    assert digest.startswith("sha256:") and size > 50e6 and manifest.wire_bytes >= size
    assert floor.source == "probe" and floor.gbps > 0.01 and "best of 3 passes" in floor.detail


def test_registry_floor_failure_is_a_note_not_a_crash(docker_host: str) -> None:
    pull = Phase("image_pull", 0.0, 2.0, 2.0, "harness")
    eff = RegistryFloors().assess([pull], {"image": "127.0.0.1:5000/coldstart/absent:nope", "image_cached": False})
    assert eff is not None and eff.floor_gbps is None and eff.load_s == 2.0
    assert "registry probe failed" in eff.note and "404" in eff.note


def runner(tmp_path: Path, **options: str) -> ColdStartRunner:
    settings = Settings(registry_dir=REPO / "benchmarks", results_dir=tmp_path / "results", workdir=tmp_path / "w",
                        repo_dir=REPO, timeout_s=300, launcher_options=tuple(options.items()))
    return ColdStartRunner(settings, load_registry(REPO / "benchmarks"))


CASE = Case("tiny-llama", "baseline", launcher="docker")


def test_image_missing_from_the_registry(docker_host: str, tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as exc:
        runner(tmp_path, docker_host=docker_host, docker_image="127.0.0.1:5000/coldstart/absent:nope").run(CASE)
    assert "is not in registry 127.0.0.1:5000" in str(exc.value) and "docker_ground up" in str(exc.value)
    [result] = load_results(tmp_path / "results")
    assert result.exit_status != "ok" and result.phases[0].name == "image_pull"


def test_registry_unreachable(docker_host: str, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="registry 127.0.0.1:5999 is unreachable"):
        runner(tmp_path, docker_host=docker_host, docker_image="127.0.0.1:5999/coldstart/base:x").run(CASE)


def test_daemon_not_running_says_how_to_start_it(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    with pytest.raises(LaunchError) as exc:
        runner(tmp_path, docker_host=f"unix://{tmp_path}/absent.sock").run(CASE)
    assert "is not reachable" in str(exc.value) and "python -m pytest_coldstart.launch.docker_ground up" in str(exc.value)


def test_oom_killed_container_is_named_oom(docker_host: str, tmp_path: Path) -> None:
    """A real kernel OOM kill: vLLM's imports do not fit in 48 MiB."""
    with pytest.raises(ServerExitedError) as exc:
        runner(tmp_path, docker_host=docker_host, docker_memory="48m").run(CASE)
    assert "OOM-killed (exit 137" in str(exc.value) and "memory limit 48m" in str(exc.value)
    assert exc.value.exit_code == 137
    [result] = load_results(tmp_path / "results")
    assert result.server_exit_code == 137 and result.exit_status == "server_exited"
