"""The one clock: monotonic seconds for durations, wall time only for stamps.

Everything that measures takes a ``Clock`` so unit tests can use ``FakeClock``
and never sleep.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def monotonic_s(self) -> float: ...

    def wall(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.monotonic`` (immune to NTP steps) and UTC wall time."""

    def monotonic_s(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to (``advance`` or ``sleep``)."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s
        self._wall0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._start_s = start_s

    def monotonic_s(self) -> float:
        return self.now_s

    def wall(self) -> datetime:
        from datetime import timedelta

        return self._wall0 + timedelta(seconds=self.now_s - self._start_s)

    def sleep(self, seconds: float) -> None:
        self.now_s += seconds

    advance = sleep
