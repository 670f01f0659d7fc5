"""``coldstart``: the command-line side of pytest-coldstart.

One module per command group, each with ``add_commands(subparsers)`` that sets
``func`` (args -> exit code) on its parsers. Exit codes: 0 ok, 1 regression
(``compare``) or a miss (``cache pull``), 2 the command could not do its job
(bad input, an unwritable output, infrastructure, an abort).

No traceback reaches a user: every exception is caught here, its cause printed
in one line with ``coldstart COMMAND:`` in front, and the exit code is 2;
``--debug`` prints the traceback too. A reader that closes the pipe early
(``coldstart compare ... | head``) does not change the exit code: the rest of
the output is dropped and the command's own verdict is returned.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.model.exitcodes import ExitCode

#: Modules that add subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pytest_coldstart.cli.logs",  # make-tiny-model, timeline, ray-timeline, summary
    "pytest_coldstart.cli.report",  # report, anchors, floor
    "pytest_coldstart.cli.history",  # compare, record, publish, sweep
    "pytest_coldstart.cli.gate",  # gate run | judge | study
    "pytest_coldstart.cli.s3",  # s3 upload-model | shard, cache push | pull
    "pytest_coldstart.cli.init",  # init, preflight, export
    "pytest_coldstart.cli.vllm",  # check-vllm, gpu-check
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
    parser.add_argument("--debug", action="store_true", help="on an unexpected error, print the traceback too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(sub)
    return parser


class _PipeSafe:
    """stdout that drops output once its reader has gone (BrokenPipeError), instead of failing the command."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._broke()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._broke()

    def _broke(self) -> None:
        self.broken = True
        # Python flushes stdout again at exit; point the fd at /dev/null so that flush cannot fail.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _describe(exc: BaseException) -> str:
    """One line on what went wrong, for an exception nobody turned into a ColdstartError."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where} ({type(exc).__name__}); check the path and free space, then run it again"
    return (f"unexpected {type(exc).__name__}: {exc}; nothing was decided. Run again with --debug for the "
            "traceback and report it")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdout, sys.stdout = sys.stdout, _PipeSafe(sys.stdout)
    try:
        return int(args.func(args))
    except ColdstartError as exc:
        print(f"coldstart {args.command}: {exc}", file=sys.stderr)
        return ExitCode.UNDECIDED
    except KeyboardInterrupt:
        print(f"coldstart {args.command}: interrupted; nothing was decided", file=sys.stderr)
        return ExitCode.UNDECIDED
    except Exception as exc:  # the top-level catch: exit 2 (could not decide), never 1 (regression)
        if args.debug:
            traceback.print_exc()
        print(f"coldstart {args.command}: {_describe(exc)}", file=sys.stderr)
        return ExitCode.UNDECIDED
    finally:
        sys.stdout = stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
