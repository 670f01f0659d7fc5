"""``coldstart``: the command-line side of pytest-coldstart.

One module per command group, each with ``add_commands(subparsers)`` that sets
``func`` (args -> exit code) on its parsers. Exit codes: 0 ok, 1 regression
(``compare``) or a miss (``cache pull``), 2 unusable input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_coldstart.model.errors import ColdstartError

#: Modules that add subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pytest_coldstart.cli.logs",  # make-tiny-model, timeline, ray-timeline, summary
    "pytest_coldstart.cli.report",  # report, anchors, floor
    "pytest_coldstart.cli.history",  # compare, record, publish, sweep
    "pytest_coldstart.cli.s3",  # s3 upload-model | shard, cache push | pull
    "pytest_coldstart.cli.init",  # init, preflight, export
)

DESCRIPTION = """\
Measure and read LLM server cold starts.

The benchmarks themselves run under pytest:
  pytest benchmarks -m coldstart --model tiny-llama        # CPU lane, tiny generated model
  pytest benchmarks -m coldstart --model llama-3-8b        # on an H100 runner
This command prepares inputs and reads outputs.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldstart", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from pytest_coldstart.cli.init import package_version

    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ColdstartError as exc:
        print(f"coldstart {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
