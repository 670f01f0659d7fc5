"""This repository's suite: the short --model / --optimization / --launcher the README uses, and the
scale-out benchmark's own options (benchmarks/test_scaleout.py; README "Cold starts under load").

The installed plugin registers only the prefixed --coldstart-model / --coldstart-optimization /
--coldstart-launcher (other suites define --model themselves); this conftest adds the short
spellings for `pytest benchmarks -m coldstart --model llama-3-8b`.
"""

import pytest

from pytest_coldstart.plugin.options import add_short_options


def pytest_addoption(parser: pytest.Parser) -> None:
    add_short_options(parser)
    group = parser.getgroup("coldstart-scaleout", "pytest-coldstart scale-out benchmark (-m scaleout)")
    group.addoption("--scaleout-steps", default="1:30,8:40", metavar="RATE:SECONDS,...",
                    help="stair-step load: offered req/s x seconds per step; the last rate is then held in "
                         "chunks until the added replica served a request. Default: %(default)s")
    group.addoption("--scaleout-max-replicas", type=int, default=2, help="autoscaling max replicas (min and "
                    "initial are 1); the local cluster gets one node per replica. Default: %(default)s")
    group.addoption("--scaleout-target-ongoing", type=float, default=2.0,
                    help="autoscaling target_ongoing_requests per replica; also the probes' fixed concurrency. "
                         "Default: %(default)s")
    group.addoption("--scaleout-slo", type=float, default=2.0, help="TTFT SLO in seconds for SLO attainment. "
                    "Default: %(default)s")
    group.addoption("--scaleout-io", default="32,128", metavar="INPUT,OUTPUT",
                    help="prompt and output lengths in tokens (random dataset). Default: %(default)s")
    group.addoption("--scaleout-timeout", type=float, default=1500.0,
                    help="seconds for the whole run; a profile that cannot fit is refused. Default: %(default)s")
    group.addoption("--scaleout-replica-timeout", type=float, default=420.0,
                    help="seconds one replica may take from being added to serving. Default: %(default)s")
    group.addoption("--scaleout-nodes", default="6,4", metavar="CPUS,CPUS,...",
                    help="local Ray cluster: logical CPUs of the head and each worker node (ignored with "
                         "--coldstart-ray-address). Default: %(default)s")
    group.addoption("--scaleout-loadgen-cmd", default="",
                    help="load generator command instead of vLLM's bench entry run by this Python, e.g. "
                         "'vllm bench serve' (its flags are added). Default: the bench entry")
