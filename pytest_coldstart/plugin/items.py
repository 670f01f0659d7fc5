"""Which tests are cold-start tests: those that use this plugin's own fixtures.

A suite's own fixture or parameter that happens to be called ``coldstart`` is not the plugin's: such
a test is left alone (not parametrized, not marked, nothing read for it).
"""

from __future__ import annotations

from typing import Any

import pytest

#: The plugin's own fixtures (module, function name), told apart from a suite's fixtures of the same name.
OWN_FIXTURES = {"coldstart": ("pytest_coldstart.plugin", "coldstart"),
                "coldstart_case": ("pytest_coldstart.plugin", "coldstart_case")}


def _resolves_to_own(fixtureinfo: Any, name: str) -> bool:
    """True when *name*, as this test resolves it, is the plugin's own fixture (directly, or through a
    suite's override that requests the one it overrides). A suite's own fixture, or a parameter, of the
    same name is not."""
    defs = getattr(fixtureinfo, "name2fixturedefs", {}).get(name) or ()
    for fixturedef in reversed(defs):
        func = getattr(fixturedef, "func", None)
        func = getattr(func, "__func__", func)  # a fixture defined as a method
        if (getattr(func, "__module__", None), getattr(func, "__name__", None)) == OWN_FIXTURES[name]:
            return True
        if name not in getattr(fixturedef, "argnames", ()):
            return False  # a fixture of the suite's own that does not build on the plugin's
    return False


def uses_own_fixture(node: Any) -> bool:
    """True when *node* (a ``pytest.Function``, or a ``Metafunc``'s definition) uses one of the plugin's fixtures.

    pytest has no public accessor for the definitions a test's fixture names resolve to; ``_fixtureinfo``
    (pytest 7 to 9, ``Function`` and ``FunctionDefinition``) is what pytest-django and pytest-asyncio read too.
    """
    info = getattr(node, "_fixtureinfo", None)
    if info is None:  # not a Function (a doctest, a plugin's item): never a cold-start test
        return False
    return any(_resolves_to_own(info, name) for name in OWN_FIXTURES)


def is_coldstart_item(item: pytest.Item) -> bool:
    """A cold-start test: it uses this plugin's ``coldstart`` (or ``coldstart_case``) fixture."""
    return uses_own_fixture(item)
