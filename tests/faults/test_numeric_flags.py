"""Issue 18: "flags that switch the gate off". Every number a `coldstart` command takes goes through the
checked flag types (finite, in range), so `nan`, `inf` or a negative count can never reach a decision."""

from __future__ import annotations

import argparse

import pytest

from pytest_coldstart.cli import build_parser


def _actions(parser: argparse.ArgumentParser, prog: str = "coldstart") -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:  # argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_actions(sub, f"{prog} {name}"))
        else:
            found.append((prog, action))
    return found


def test_no_command_takes_a_bare_float_or_int() -> None:
    bare = [f"{prog} {'/'.join(a.option_strings) or a.dest}" for prog, a in _actions(build_parser())
            if a.type in (float, int)]
    assert not bare, f"numbers not range-checked (use model.flags.checked): {bare}"


@pytest.mark.parametrize("argv", [
    ["gate", "run", "--base", ".", "--head", ".", "--alpha", "nan"],
    ["gate", "run", "--base", ".", "--head", ".", "--power", "nan"],
    ["gate", "run", "--base", ".", "--head", ".", "--budget-min", "inf"],
    ["gate", "run", "--base", ".", "--head", ".", "--min-pairs", "0"],
    ["changes", "--floor", "nan"],
    ["bisect", "--good", "a", "--bad", "b", "--max-pairs", "-1"],
])
def test_a_number_that_is_not_finite_or_in_range_is_a_usage_error(argv: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 2
    assert "Could not parse value" in capsys.readouterr().err
