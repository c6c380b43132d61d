"""Per-dependency circuit breaker (rolling window, Hystrix semantics) and bulkhead.

Both sit on the hot path of every call, so they are plain counters: no allocation per call, no
locks (the driver runs on one event loop), and no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError
from herd._model.limit import LimitPolicy, Windowed

__all__ = [
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerState",
    "Bulkhead",
    "CircuitBreaker",
]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open; the defaults are Hystrix's.

    The breaker looks at the last `window_s` seconds, split into `buckets` buckets. It opens when
    that window holds at least `volume_threshold` requests and at least `error_threshold_pct`
    percent of them failed; it then rejects everything for `sleep_window_s` before letting a single
    trial through.
    """

    window_s: float = 10.0
    buckets: int = 10
    volume_threshold: int = 20
    error_threshold_pct: float = 50.0
    sleep_window_s: float = 5.0

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ConfigurationError(f"window_s must be > 0, got {self.window_s}")
        if self.buckets < 1:
            raise ConfigurationError(f"buckets must be >= 1, got {self.buckets}")
        if self.volume_threshold < 1:
            raise ConfigurationError(f"volume_threshold must be >= 1, got {self.volume_threshold}")
        if not 0.0 <= self.error_threshold_pct <= 100.0:
            raise ConfigurationError(
                f"error_threshold_pct must be within [0, 100], got {self.error_threshold_pct}"
            )
        # A zero sleep window would let every call through as a "single" half-open trial.
        if self.sleep_window_s <= 0:
            raise ConfigurationError(f"sleep_window_s must be > 0, got {self.sleep_window_s}")


class BreakerState(enum.StrEnum):
    """Where a circuit breaker is in its cycle."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A point-in-time view of a breaker, for metrics and the dashboard.

    `requests` and `failures` count the outcomes in the current rolling window; `error_pct` is
    `100 * failures / requests` (0.0 for an empty window).
    """

    state: BreakerState
    requests: int
    failures: int
    error_pct: float


_DEFAULT_POLICY = BreakerPolicy()


class CircuitBreaker:
    """A rolling-window circuit breaker for one dependency.

    Usage per call: send only if `allow()` returned True, then report the outcome with exactly one
    of `record_success()` / `record_failure()`. Outcomes that say nothing about the dependency's
    health (the caller's own cancellation, a rejected-by-bulkhead call that was never sent) should
    not be recorded, except for a half-open trial, which must always be resolved (see `allow`).
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_failures",
        "_head",
        "_opened_at",
        "_policy",
        "_state",
        "_successes",
        "_total_failures",
        "_total_successes",
        "_trial_at",
        "_width",
    )

    def __init__(self, policy: BreakerPolicy = _DEFAULT_POLICY, clock: Clock = MONOTONIC) -> None:
        self._policy = policy
        self._clock = clock
        self._buckets = policy.buckets
        self._width = policy.window_s / policy.buckets
        # A ring of counters indexed by absolute bucket number modulo `buckets`; `_head` is the
        # absolute number of the newest bucket, so expiring old buckets is a subtraction from the
        # running totals rather than a sum over the ring on every call.
        self._successes = [0] * policy.buckets
        self._failures = [0] * policy.buckets
        self._total_successes = 0
        self._total_failures = 0
        self._head = int(clock.now() / self._width)
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._trial_at: float | None = None

    @property
    def state(self) -> BreakerState:
        """The current state, as of the last `allow()` or `record_*()` call.

        OPEN does not turn into HALF_OPEN here when the sleep window has passed; only `allow()`
        makes that move, because it is the one that hands out the trial.
        """
        return self._state

    def allow(self) -> bool:
        """Whether a call may be sent now.

        CLOSED: always. OPEN: never, until `sleep_window_s` has passed since the breaker opened;
        then it turns HALF_OPEN and returns True once, for a single trial call. HALF_OPEN: False
        while the trial is out. The caller must resolve a granted trial with `record_success()` or
        `record_failure()` (a cancelled trial counts as a failure). A trial that is never resolved
        is presumed lost after another `sleep_window_s`, and a new one is granted, so a leaked
        trial cannot keep the breaker shut forever.
        """
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock.now()
        if self._state is BreakerState.OPEN:
            if now - self._opened_at < self._policy.sleep_window_s:
                return False
            self._state = BreakerState.HALF_OPEN
        elif self._trial_at is not None and now - self._trial_at < self._policy.sleep_window_s:
            return False
        self._trial_at = now
        return True

    def record_success(self) -> None:
        """Report that a call sent through this breaker succeeded."""
        if self._state is BreakerState.CLOSED:
            now = self._clock.now()
            slot = self._advance(now)
            self._successes[slot] += 1
            self._total_successes += 1
            self._maybe_trip(now)
        elif self._state is BreakerState.HALF_OPEN:
            self._close()
        # While OPEN the window is frozen: it is cleared on closing anyway, so late outcomes of
        # calls sent before the breaker opened are dropped.

    def record_failure(self) -> None:
        """Report that a call sent through this breaker failed (error, timeout, refusal)."""
        if self._state is BreakerState.CLOSED:
            now = self._clock.now()
            slot = self._advance(now)
            self._failures[slot] += 1
            self._total_failures += 1
            self._maybe_trip(now)
        elif self._state is BreakerState.HALF_OPEN:
            # Any outcome seen while half-open is taken as the trial's: after a sleep window longer
            # than any attempt timeout, calls from before the opening have long finished.
            self._open(self._clock.now())

    def snapshot(self) -> BreakerSnapshot:
        """Return the state and the counts of the current rolling window."""
        self._advance(self._clock.now())
        requests = self._total_successes + self._total_failures
        error_pct = 100.0 * self._total_failures / requests if requests else 0.0
        return BreakerSnapshot(self._state, requests, self._total_failures, error_pct)

    def _advance(self, now: float) -> int:
        """Expire buckets older than the window as of `now`; return the ring slot for `now`."""
        index = int(now / self._width)
        if index > self._head:
            if index - self._head >= self._buckets:
                self._clear()
            else:
                for absolute in range(self._head + 1, index + 1):
                    slot = absolute % self._buckets
                    self._total_successes -= self._successes[slot]
                    self._total_failures -= self._failures[slot]
                    self._successes[slot] = 0
                    self._failures[slot] = 0
            self._head = index
        # A time before the head (impossible with a monotonic clock) lands in the newest bucket.
        return self._head % self._buckets

    def _maybe_trip(self, now: float) -> None:
        failures = self._total_failures
        requests = self._total_successes + failures
        if (
            requests >= self._policy.volume_threshold
            and 100.0 * failures >= self._policy.error_threshold_pct * requests
        ):
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._trial_at = None

    def _close(self) -> None:
        # Start from a clean window: the failures that opened the breaker must not trip it again
        # on the first failure after closing.
        self._state = BreakerState.CLOSED
        self._trial_at = None
        self._clear()
        self._head = int(self._clock.now() / self._width)

    def _clear(self) -> None:
        for slot in range(self._buckets):
            self._successes[slot] = 0
            self._failures[slot] = 0
        self._total_successes = 0
        self._total_failures = 0


class Bulkhead:
    """A concurrency limit for one dependency: at most `max_concurrent` calls in flight, or,
    with a `limit` policy, an adaptive limit under it (Gradient2, learnt from the calls'
    latency, so that a caller stops sending before the dependency has to refuse).

    A full bulkhead rejects at once rather than queueing, so a slow dependency cannot tie up the
    caller's capacity; the driver goes to the fallback instead.
    """

    __slots__ = ("_adaptive", "_in_use", "_limit", "_max_concurrent")

    def __init__(
        self, max_concurrent: int, limit: LimitPolicy | None = None, clock: Clock = MONOTONIC
    ) -> None:
        if max_concurrent < 1:
            raise ConfigurationError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self._max_concurrent = max_concurrent
        self._adaptive = Windowed(limit.under(max_concurrent), clock) if limit else None
        self._limit = self._current()
        self._in_use = 0

    def _current(self) -> int:
        if self._adaptive is None:
            return self._max_concurrent
        return min(self._adaptive.limit, self._max_concurrent)

    @property
    def max_concurrent(self) -> int:
        """The fixed limit (the adaptive one's ceiling)."""
        return self._max_concurrent

    @property
    def limit(self) -> int:
        """How many calls may be in flight now."""
        return self._limit

    @property
    def in_use(self) -> int:
        """How many permits are held right now."""
        return self._in_use

    def try_acquire(self) -> bool:
        """Take a permit if one is free; the caller must `release()` it when the call ends."""
        if self._in_use >= self._limit:
            return False
        self._in_use += 1
        return True

    def release(self, seconds: float | None = None) -> None:
        """Give back a permit taken by a successful `try_acquire()`, after a call of `seconds`
        (a sample of the adaptive limit's; None: none)."""
        if self._in_use == 0:
            # Releasing more than was acquired would silently raise the limit; fail loudly.
            raise RuntimeError("Bulkhead.release() without a matching try_acquire()")
        self._in_use -= 1
        if self._adaptive is not None and seconds is not None:
            self._adaptive.sample(seconds, self._in_use + 1)
            self._limit = self._current()
