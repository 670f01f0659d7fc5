"""This repository's suite: the short --model / --optimization / --launcher the README uses.

The installed plugin registers only the prefixed --coldstart-model / --coldstart-optimization /
--coldstart-launcher (other suites define --model themselves); this conftest adds the short
spellings for `pytest benchmarks -m coldstart --model llama-3-8b`.
"""

from pytest_coldstart.plugin.options import add_short_options


def pytest_addoption(parser):
    add_short_options(parser)
