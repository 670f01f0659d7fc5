"""The built-in launchers' options are declared in launch/options.py (so registering pytest options imports
no launcher module) and must stay the ones their classes declare."""

from __future__ import annotations

import pytest

from pytest_coldstart.launch.options import BUILTIN_OPTIONS, DEFAULT_DOCKER_IMAGE, FLAG_PREFIX
from pytest_coldstart.launch.registry import KNOWN_LAUNCHERS, all_options, launcher_class, options_of
from pytest_coldstart.model.errors import ConfigError


def test_every_builtin_launcher_has_its_options_declared_and_they_are_its_class_options() -> None:
    assert set(BUILTIN_OPTIONS) == set(KNOWN_LAUNCHERS)
    for kind in KNOWN_LAUNCHERS:
        assert launcher_class(kind).options == BUILTIN_OPTIONS[kind] == options_of(kind), kind


def test_every_launcher_option_is_prefixed_and_named_once() -> None:
    flags = [o.flag for o in all_options()]
    assert len(flags) == len(set(flags)) == 14
    assert all(flag.startswith(FLAG_PREFIX) for flag in flags)
    assert {o.ini for o in all_options()} == {"coldstart_" + f.removeprefix(FLAG_PREFIX).replace("-", "_")
                                              for f in flags}


def test_the_docker_default_image_is_the_one_the_ground_builds() -> None:
    from pytest_coldstart.launch.docker_ground import DEFAULT_IMAGE

    assert DEFAULT_DOCKER_IMAGE == DEFAULT_IMAGE


@pytest.mark.parametrize(("flag", "bad"), [("--coldstart-docker-registry-floor-gbps", "inf"),
                                           ("--coldstart-docker-registry-floor-gbps", "-1"),
                                           ("--coldstart-docker-python", "container"),
                                           ("--coldstart-ray-replicas", "2,1,1"),
                                           ("--coldstart-docker-gpus", "two"),
                                           ("--coldstart-docker-gpus", "0"),
                                           ("--coldstart-docker-memory", "8 GiB"),
                                           ("--coldstart-docker-memory", "-1g"),
                                           ("--coldstart-docker-shm-size", "nan")])
def test_bad_launcher_option_values_are_refused_with_why(flag: str, bad: str) -> None:
    (option,) = [o for o in all_options() if o.flag == flag]
    with pytest.raises(ConfigError, match="expected|need"):
        option.parse(bad)


@pytest.mark.parametrize(("flag", "good"), [("--coldstart-docker-gpus", "all"), ("--coldstart-docker-gpus", "8"),
                                            ("--coldstart-docker-memory", "8g"), ("--coldstart-docker-memory", ""),
                                            ("--coldstart-docker-shm-size", "2G"),
                                            ("--coldstart-docker-shm-size", "536870912")])
def test_docker_sizes_and_gpu_counts_as_docker_takes_them(flag: str, good: str) -> None:
    (option,) = [o for o in all_options() if o.flag == flag]
    assert option.parse(good) == good
