"""image_cached and the registry floor: the pure parts (plans, refusals, timelines, parsing, reports).

The real pull, the real registry probe and a real image_cached start run in
tests/integration/test_docker.py; a fake Docker client here only stands in for a warm local image.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pytest_coldstart.launch.base import LaunchSpec
from pytest_coldstart.launch.docker import IMAGE_CACHE_KEY, IMAGE_WARM, ContainerProcess, DockerServer
from pytest_coldstart.launch.docker_ground import DEFAULT_IMAGE
from pytest_coldstart.launch.process import OwnedProcess, StampedLog
from pytest_coldstart.logs.timeline import StampedLine
from pytest_coldstart.measure.registry_floor import (
    DOCKER_HUB,
    Manifest,
    RegistryFloors,
    parse_image,
    pull_efficiency,
)
from pytest_coldstart.measure.runner import Case, ColdStartRunner, Settings
from pytest_coldstart.model.case import CachePolicy
from pytest_coldstart.model.clock import SystemClock
from pytest_coldstart.model.efficiency import FLOOR_PROBE, FloorBandwidth
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import load_toml
from pytest_coldstart.model.phase import Phase
from pytest_coldstart.model.redact import Redactor
from pytest_coldstart.model.registry import load_registry, packaged_file
from pytest_coldstart.model.result import RunResult
from pytest_coldstart.optimize import hygiene
from pytest_coldstart.optimize.registry import cache_strategy, refusal
from pytest_coldstart.report.efficiency import describe_pull, pull_efficiency_line, pull_efficiency_markdown
from tests.conftest import REPO


def runner(tmp_path: Path) -> ColdStartRunner:
    settings = Settings(registry_dir=REPO / "benchmarks", results_dir=tmp_path / "results", workdir=tmp_path / "w",
                        repo_dir=REPO)
    return ColdStartRunner(settings, load_registry(REPO / "benchmarks"))


def test_image_cached_ships_in_the_packaged_defaults_with_the_image_policy() -> None:
    packaged = load_toml(packaged_file("optimizations.toml"), "t")["optimizations"]
    assert packaged["image_cached"]["cache"] == "image"
    assert "image_cached" not in load_toml(REPO / "benchmarks" / "optimizations.toml", "t")["optimizations"]
    assert load_registry(REPO / "benchmarks").optimization("image_cached").cache == CachePolicy.IMAGE


def test_image_cached_is_refused_for_launchers_without_an_image() -> None:
    assert refusal("docker", "image") is None
    for launcher in ("vllm", "ray-serve", "command", "transformers-serve"):
        reason = refusal(launcher, CachePolicy.IMAGE)
        assert reason and f"--launcher {launcher} has no image cache" in reason and "--launcher docker" in reason
    assert refusal("vllm", "cold") is None and refusal("vllm", "compile") is None


def test_a_non_docker_plan_under_image_cached_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a launcher that runs a container image"):
        runner(tmp_path).plan(Case("tiny-llama", "image_cached", "vllm"))


def test_image_cached_plan_is_cold_everywhere_but_the_image(tmp_path: Path) -> None:
    plan = runner(tmp_path).plan(Case("tiny-llama", "image_cached", "docker"))
    assert plan.cache.policy == CachePolicy.IMAGE and plan.cache.state == "cold"  # warm once the pull ran
    assert plan.cache.launcher_options == {IMAGE_CACHE_KEY: IMAGE_WARM}
    assert plan.cache.record["image_cache"] == "warm" and plan.cache.record["policy"] == "image"
    assert plan.cache.hygiene.mode == "cold"  # the torch.compile cache root is fresh and empty
    report = hygiene.apply(plan.cache.hygiene)
    assert report.warm == ("image",) and "compile" in report.fresh and "hf_hub" in report.fresh
    # The measured start's launcher options carry the plan's: keep the image, do not pull.
    spec = runner(tmp_path)._spec(plan.case, plan, plan.env, "x.log")
    assert spec.launcher_options[IMAGE_CACHE_KEY] == IMAGE_WARM


def test_a_baseline_docker_plan_keeps_the_image_cold(tmp_path: Path) -> None:
    plan = runner(tmp_path).plan(Case("tiny-llama", "baseline", "docker"))
    assert IMAGE_CACHE_KEY not in plan.cache.launcher_options and "image_cache" not in plan.cache.record
    assert hygiene.apply(plan.cache.hygiene).warm == ()
    assert cache_strategy("image").refuses("docker") is None


class WarmImage:
    id = "sha256:abc"
    attrs = {"Size": 200_000_000, "RepoDigests": ["127.0.0.1:5000/x@sha256:def"]}


class Container:
    attrs = {"State": {"Status": "running", "Pid": 0}}

    def start(self) -> None:
        pass

    def reload(self) -> None:
        pass

    def logs(self, stream: bool, follow: bool) -> Any:
        yield b"INFO first line\n"

    def stop(self, timeout: int) -> None:
        pass

    def remove(self, force: bool) -> None:
        pass


class WarmClient:
    """An image already local: ``get`` answers, ``pull`` must not be called."""

    def __init__(self) -> None:
        self.images, self.containers, self.pulled = self, self, False

    def get(self, image: str) -> WarmImage:
        return WarmImage()

    def pull(self, repo: str, tag: str) -> WarmImage:
        self.pulled = True
        return WarmImage()

    def create(self, image: str, command: Any, **kw: Any) -> Container:
        return Container()


def test_a_warm_image_is_not_pulled_and_image_pull_is_not_observed(tmp_path: Path) -> None:
    client = WarmClient()
    spec = LaunchSpec(model_ref="/m", served_name="m", port=1, log_path=tmp_path / "c.log", timeout_s=30.0)
    process = ContainerProcess(client, image=DEFAULT_IMAGE, command=["python"], env={}, mounts={},
                               log_path=spec.log_path, clock=SystemClock(), redactor=Redactor(()), run_options={},
                               image_warm=True)
    process.start()
    srv = DockerServer(spec, process, SystemClock())  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while not process.lines() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not client.pulled and "pull_start" not in process.events
    phases = {p.name: p for p in srv.timeline().phases}
    assert not phases["image_pull"].observed and phases["image_pull"].duration_s is None
    assert phases["container_create"].observed and phases["container_start"].observed
    assert process.reported["image_pull_s"] is None and process.reported["image_pull_mb_per_s"] is None
    assert process.reported["image_digest"] == "sha256:def"
    assert srv.phase_in_progress() != "image_pull"
    srv.stop()


def test_container_and_owned_process_share_the_stamped_log() -> None:
    assert issubclass(ContainerProcess, StampedLog) and issubclass(OwnedProcess, StampedLog)
    log = StampedLog()
    for i in range(3):
        log._append(StampedLine(float(i), f"line {i}"))
    assert log.tail(2) == ("line 1", "line 2") and [line.t_s for line in log.lines()] == [0.0, 1.0, 2.0]


def test_parse_image_finds_the_registry_and_prefers_the_pulled_digest() -> None:
    ref = parse_image("127.0.0.1:5000/coldstart/base:tag", "sha256:abc")
    assert (ref.registry, ref.name, ref.reference, ref.base_url) == ("127.0.0.1:5000", "coldstart/base",
                                                                     "sha256:abc", "http://127.0.0.1:5000")
    hub = parse_image("vllm/vllm-openai:v0.11.0")
    assert (hub.registry, hub.name, hub.reference) == (DOCKER_HUB, "vllm/vllm-openai", "v0.11.0")
    assert hub.base_url == f"https://{DOCKER_HUB}"
    assert parse_image("ubuntu").name == "library/ubuntu" and parse_image("ubuntu").reference == "latest"
    assert parse_image("ghcr.io/a/b@sha256:x").reference == "sha256:x"


def test_pull_efficiency_compares_wire_bytes_with_the_floor() -> None:
    manifest = Manifest("sha256:m", (("sha256:a", 150_000_000), ("sha256:b", 50_000_000)))
    assert manifest.wire_bytes == 200_000_000 and manifest.largest == ("sha256:a", 150_000_000)
    eff = pull_efficiency(0.4, manifest.wire_bytes, FloorBandwidth(1.0, FLOOR_PROBE, "GET blob"))
    assert eff.achieved_gbps == pytest.approx(0.5) and eff.percent_of_floor == pytest.approx(50.0)
    assert eff.floor_s == pytest.approx(0.2) and eff.source_kind == "registry"
    text = describe_pull(eff)
    assert text.startswith("image pull at 0.5 GB/s = 50% of registry floor 1 GB/s (source: probe)")


def test_no_pull_means_not_observed_and_no_probe() -> None:
    floors = RegistryFloors()
    assert floors.assess([Phase("weights_load", 0.0, 1.0, 1.0, "log")], {}) is None  # not a docker start
    unseen = Phase("image_pull", None, None, None, "not_observed")
    eff = floors.assess([unseen], {"image": DEFAULT_IMAGE, "image_cached": True})
    assert eff is not None and eff.load_s is None and eff.achieved_gbps is None and eff.weight_bytes is None
    assert "image_cached" in eff.note and "not observed" in describe_pull(eff)
    assert floors._seen == {}


def result(optimization: str, eff: Any) -> RunResult:
    return RunResult(model="m", optimization=optimization, launcher="docker", cache_state="cold", started_at="t",
                     phases=(), reported={}, total_ready_s=1.0, ttft_s=1.0, first_response_s=1.0, unaccounted_s=0.0,
                     environment={}, exit_status="ok", log_path="", pull_efficiency=eff)  # type: ignore[arg-type]


def test_pull_efficiency_round_trips_and_is_reported() -> None:
    eff = pull_efficiency(2.0, 200_000_000, FloorBandwidth(0.5, FLOOR_PROBE, "GET blob"))
    cold = result("baseline", eff)
    assert RunResult.from_dict(cold.to_dict()).pull_efficiency == eff
    assert "pull_efficiency" not in result("baseline", None).to_dict()  # old readers see the file unchanged
    assert "image pull at 0.1 GB/s = 20% of registry floor 0.5 GB/s" in pull_efficiency_line([cold])
    warm = result("image_cached", pull_efficiency(None, None, None, "image_pull not observed: image_cached"))
    table = pull_efficiency_markdown([cold, warm])
    assert "| m | baseline | docker | 200 MB | 2 | 0.1 | 0.5 (probe) | 0.4 | 20% |" in table
    assert "| m | image_cached | docker | - | not observed |" in table
    assert pull_efficiency_markdown([result("baseline", None)]) == ""


def test_a_pull_without_a_floor_still_shows_its_time() -> None:
    eff = pull_efficiency(2.0, None, None, "registry probe failed: 404")
    assert describe_pull(eff) == "image pull in 2 s; no rate (registry probe failed: 404)"
