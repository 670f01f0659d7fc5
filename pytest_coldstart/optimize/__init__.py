"""Optimizations as strategies: where the weights come from and which caches a start finds.

Each strategy gets a frozen ``StartContext`` and returns what it contributes;
none imports the runner. A new one is one module plus a line in ``optimize.registry``.
"""
