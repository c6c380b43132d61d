"""An adaptive concurrency limit: how many requests may be in flight, learnt from latency.

The algorithm is Netflix concurrency-limits' Gradient2 (TCP congestion control turned to
requests): a long-term average of latency stands for the latency without load, the latest
window's average for the latency now, and their ratio (the gradient, at most 1) shrinks the limit
when requests start to queue, while a small allowance (`queue_size`) lets it grow when they do
not. The limit moves only a `smoothing` share of the way at each window, never below `min_limit`
nor above `max_limit` (the fixed cap stays the ceiling), and does not grow while less than half
of it is in use (an idle service says nothing about its capacity).

Samples are taken per request and folded into windows (`Windowed`), as the Java library does:
a window closes once it has `min_samples` and has lasted `min_window_s` (or twice its average
latency, at most `max_window_s`). The clock is injected, so tests drive it on manual time. It is
pure logic, shared by the server (per instance) and the driver (per dependency).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """The settings of an adaptive limit (defaults after concurrency-limits' Gradient2, with
    shorter windows: herd's requests take milliseconds, and a spike must be met in seconds)."""

    initial: int = 20
    min_limit: int = 8
    max_limit: int = 1000
    smoothing: float = 0.2
    tolerance: float = 1.5
    """How much slower than the no-load latency still counts as not queueing."""
    long_window: int = 600
    """Windows the no-load latency is averaged over."""
    queue_size: int = 4
    """How much the limit may grow per window when nothing queues."""
    min_samples: int = 10
    min_window_s: float = 0.05
    max_window_s: float = 1.0

    def under(self, ceiling: int) -> LimitPolicy:
        """These settings with the fixed cap `ceiling` as the most the limit may be (a limit
        above what may ever be in flight would read every window as an idle service's)."""
        return dataclasses.replace(
            self,
            initial=min(self.initial, ceiling),
            min_limit=min(self.min_limit, ceiling),
            max_limit=min(self.max_limit, ceiling),
        )

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial <= self.max_limit:
            raise ConfigurationError("1 <= min_limit <= initial <= max_limit")
        if not 0 < self.smoothing <= 1 or self.tolerance < 1 or self.long_window < 1:
            raise ConfigurationError("0 < smoothing <= 1, tolerance >= 1, long_window >= 1")
        if self.min_samples < 1 or not 0 < self.min_window_s <= self.max_window_s:
            raise ConfigurationError("min_samples >= 1 and 0 < min_window_s <= max_window_s")


class Gradient2:
    """The Gradient2 limit, updated once per window."""

    __slots__ = ("_long", "_policy", "_warm", "limit", "long_rtt", "short_rtt")

    _WARMUP = 10

    def __init__(self, policy: LimitPolicy) -> None:
        self._policy = policy
        self.limit = float(policy.initial)
        self.long_rtt = 0.0
        """The no-load latency (seconds): a long average."""
        self.short_rtt = 0.0
        """The latest window's average latency (seconds)."""
        self._warm = 0

    def update(self, rtt: float, inflight: int) -> float:
        """Take one window's average latency and the most in flight during it; the new limit."""
        policy = self._policy
        self.short_rtt = rtt
        if self._warm < self._WARMUP:
            # A plain average until there are enough windows for an exponential one.
            self._warm += 1
            self.long_rtt += (rtt - self.long_rtt) / self._warm
        else:
            factor = 2.0 / (policy.long_window + 1)
            self.long_rtt += (rtt - self.long_rtt) * factor
        if self.long_rtt > 2 * rtt:
            # Latency came back down after a long overload: forget the inflated baseline
            # sooner than the long average would.
            self.long_rtt *= 0.9
        if inflight < self.limit / 2:
            return self.limit
        gradient = max(0.5, min(1.0, policy.tolerance * self.long_rtt / rtt)) if rtt > 0 else 1.0
        target = self.limit * gradient + policy.queue_size
        limit = self.limit * (1 - policy.smoothing) + target * policy.smoothing
        self.limit = max(float(policy.min_limit), min(float(policy.max_limit), limit))
        return self.limit


class Windowed:
    """Per-request samples folded into windows that update a `Gradient2`.

    `sample` is the hot path: a few additions, and an update once per window.
    """

    __slots__ = ("_clock", "_count", "_ends", "_max_inflight", "_policy", "_total", "gradient")

    def __init__(self, policy: LimitPolicy | None = None, clock: Clock = MONOTONIC) -> None:
        self._policy = policy or LimitPolicy()
        self._clock = clock
        self.gradient = Gradient2(self._policy)
        self._count = 0
        self._total = 0.0
        self._max_inflight = 0
        self._ends = clock.now() + self._policy.min_window_s

    @property
    def limit(self) -> int:
        """The limit now (whole requests)."""
        return int(self.gradient.limit)

    def sample(self, rtt: float, inflight: int) -> None:
        """One request's latency and how many were in flight when it started."""
        self._count += 1
        self._total += rtt
        if inflight > self._max_inflight:
            self._max_inflight = inflight
        if self._count < self._policy.min_samples:
            return
        now = self._clock.now()
        if now < self._ends:
            return
        average = self._total / self._count
        self.gradient.update(average, self._max_inflight)
        policy = self._policy
        self._ends = now + min(max(2 * average, policy.min_window_s), policy.max_window_s)
        self._count = 0
        self._total = 0.0
        self._max_inflight = 0
