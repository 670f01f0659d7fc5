"""Launchers: start one kind of server, wait for readiness, time the first token, stop it.

A launcher is one module plus a line in ``launch.registry.LAUNCHERS`` (its options declared in
``launch.options``), or, from another package, an entry point in the ``pytest_coldstart.launchers``
group (docs/reference/extending.md).
"""
