"""What every exit code of pytest-coldstart means: one table, used by the CLI, the plugin and the docs."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of ``coldstart`` commands and of a pytest session with cold-start tests.

    pytest's own codes keep their meaning in a pytest session (0 passed, 1 tests failed, 2 interrupted,
    3 internal error, 4 usage error, 5 no tests collected); a budget breach or a regression is a failed
    test there, so 1 again.
    """

    #: The command did its job and found no regression (``compare``, ``gate run``: ``unchanged``).
    OK = 0
    #: A regression (``compare``, ``gate run``, ``--coldstart-compare-to``), or a miss (``cache pull``).
    REGRESSION = 1
    #: Could not decide: bad input, an unwritable output, infrastructure, an abort, or an ``undecided`` verdict.
    UNDECIDED = 2


#: One line per code for ``--help`` texts and the reference page.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "no regression: the job was done and nothing got slower (or the command simply succeeded)",
    ExitCode.REGRESSION: "a regression (compare, gate run, --coldstart-compare-to), or a cache miss (cache pull)",
    ExitCode.UNDECIDED: ("could not decide: bad input, an unwritable output, infrastructure, an abort, or an "
                         "undecided verdict (more pairs needed); the one-line message says what to do next"),
}
