"""Values and the files that hold them: case identity, run results and their store,
the model/optimization registry, budgets, the clock, errors, redaction.

The bottom layer: imports nothing else from pytest_coldstart.
"""
