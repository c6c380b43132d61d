"""Time sources for the call path's decision-makers.

The breaker, the retry budget, the balancer's ejections and the server's retry-pressure window
take a `Clock`, so tests (and a simulation) can drive them on virtual time. Deadlines are not
clocked: they are absolute `time.monotonic()` values that cross processes as remaining
milliseconds, and the event loop's timers that enforce them run on real time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic time source in seconds."""

    def now(self) -> float:
        """Return the current monotonic time in seconds."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`."""

    def now(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; for tests of time-driven logic."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the current manual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`."""
        self._now += seconds


MONOTONIC = MonotonicClock()
