"""Time sources for the call path's decision-makers.

The breaker, the retry budget, the balancer's ejections and the server's retry-pressure window
take a `Clock`, so tests can drive them on manual time. Deadlines, attempt timers and the timer
wheel read `monotonic()` here: it is `time.monotonic` itself unless a simulation on a virtual-time
event loop (`herd simulate`) installs its loop's clock with `use_monotonic`, so that deadlines and
the loop's timers agree on what time it is. Callers write `clock.monotonic()`: a module attribute
lookup and a call, the same cost as `time.monotonic()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

#: The call path's time source in seconds; replaced only through `use_monotonic`.
monotonic: Callable[[], float] = time.monotonic


def use_monotonic(source: Callable[[], float]) -> Callable[[], float]:
    """Make `source` the call path's time (a virtual clock); return the previous source, which
    the caller puts back when done. Only for a process that runs nothing on real time."""
    global monotonic
    previous, monotonic = monotonic, source
    return previous


class Clock(Protocol):
    """A monotonic time source in seconds."""

    def now(self) -> float:
        """Return the current monotonic time in seconds."""
        ...


class MonotonicClock:
    """The process's clock: `monotonic()` (real time unless a simulation installed its own)."""

    def now(self) -> float:
        """Return `monotonic()`."""
        return monotonic()


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
