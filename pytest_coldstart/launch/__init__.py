"""Launchers: start one kind of server, wait for readiness, time the first token, stop it.

A launcher is one module plus a line in ``launch.registry.LAUNCHERS``.
"""
