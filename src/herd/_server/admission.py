"""Admission: how many requests an instance runs at once, and which wait or are shed.

Four modes (`HERD_LIMIT`, docs/overload.md):

- `none`: every request runs (the queue is the event loop: it grows until every request misses
  its deadline, and stays collapsed while the load lasts);
- `fixed`: at most the fixed cap in flight, the rest refused at once;
- `adaptive`: a Gradient2 limit learnt from latency (`herd._model.limit`), under the fixed cap
  as ceiling, and a short queue in front of it;
- `adaptive_priority` (the default): the same, and the queue serves the most critical first and
  sheds the least critical first.

The queue is deadline-aware and LIFO, as Facebook's adaptive LIFO and CoDel argue: it only
exists under pressure (otherwise a request starts at once), and then the newest request has the
most of its deadline left, while the oldest is the likeliest to be given up by its caller. A
queued request whose remaining deadline is shorter than the time a request takes now is dropped
before it starts, whether at arrival, while waiting, or when its turn comes: running it would
only spend capacity on an answer nobody reads.

Which criticality may still queue follows Zuul's cubic curve over how full the queue is: the
threshold is `100 * fullness ** 3`, so at a third full only levels below 4 are shed, at 80 %
those below 51, and `critical` (90) queues until the queue is 97 % full. A full queue makes room
for a more critical request by shedding its least critical, oldest entry.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from herd._model import clock as _clock
from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError, HerdError
from herd._model.limit import LimitPolicy, Windowed


class Mode(enum.StrEnum):
    """How an instance limits what it runs at once."""

    NONE = "none"
    FIXED = "fixed"
    ADAPTIVE = "adaptive"
    ADAPTIVE_PRIORITY = "adaptive_priority"

    @classmethod
    def parse(cls, value: str) -> Mode:
        """The mode named `value`; `ConfigurationError` for any other."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(mode.value for mode in cls)
            raise ConfigurationError(f"limit {value[:40]!r}: one of {names}") from None


_DEFAULTS = LimitPolicy()


class Shed(HerdError):
    """The request was not admitted: answered `overloaded` (retried elsewhere, inside the
    budget)."""


def shed_below(fullness: float) -> float:
    """The criticality below which a request may not queue when the queue is `fullness` full
    (Zuul's cubic curve: critical requests are kept until the very end)."""
    return 100.0 * min(1.0, fullness) ** 3


class _Waiter:
    __slots__ = ("criticality", "ends", "future")

    def __init__(self, criticality: int, ends: float, future: asyncio.Future[None]) -> None:
        self.criticality = criticality
        self.ends = ends
        self.future = future


class Admission(Collector):
    """One instance's admission: its in-flight count, its limit and its queue (on `/metrics`
    as `herd_server_limit`, `herd_server_queued` and `herd_server_shed`)."""

    def __init__(
        self,
        mode: Mode = Mode.ADAPTIVE_PRIORITY,
        *,
        ceiling: int = 512,
        max_queued: int = 64,
        policy: LimitPolicy | None = None,
        service: str = "",
        clock: Clock = MONOTONIC,
    ) -> None:
        if ceiling < 1 or max_queued < 0:
            raise ConfigurationError("the in-flight ceiling must be >= 1 and max_queued >= 0")
        self.mode = mode
        self._service = service
        self.ceiling = ceiling
        adaptive = mode in (Mode.ADAPTIVE, Mode.ADAPTIVE_PRIORITY)
        self._limiter = Windowed((policy or _DEFAULTS).under(ceiling), clock) if adaptive else None
        self._prioritised = mode is Mode.ADAPTIVE_PRIORITY
        self.max_queued = max_queued if adaptive else 0
        self._limit = self._current_limit()
        self.inflight = 0
        # Waiters by criticality (one level when not prioritised), oldest first.
        self._queues: dict[int, deque[_Waiter]] = {}
        self.queued = 0
        self.shed: dict[int, int] = {}
        """Requests shed so far, by criticality."""

    @property
    def limit(self) -> int:
        """How many requests may run at once now."""
        return self._limit

    def _current_limit(self) -> int:
        if self.mode is Mode.NONE:
            return 1 << 62
        if self._limiter is None:
            return self.ceiling
        return min(self._limiter.limit, self.ceiling)

    def try_enter(self) -> bool:
        """Take a place at once if one is free and nobody waits (the hot path)."""
        if self.inflight < self._limit and not self.queued:
            self.inflight += 1
            return True
        return False

    async def enter(self, criticality: int, ends: float) -> None:
        """Wait for a place, or raise `Shed`: call when `try_enter` failed. `ends` is the
        request's deadline on the call path's clock."""
        if self.inflight < self._limit and not self.queued:
            self.inflight += 1
            return
        level = criticality if self._prioritised else 0
        reason = self._refusal(level, ends)
        if reason is not None:
            self._count_shed(criticality)
            raise Shed(reason)
        waiter = _Waiter(level, ends, asyncio.get_running_loop().create_future())
        self._queues.setdefault(level, deque()).append(waiter)
        self.queued += 1
        future = waiter.future
        try:
            async with asyncio.timeout(max(0.0, ends - self._expected() - _clock.monotonic())):
                await future
        except TimeoutError:
            if future.done() and not future.cancelled():
                self._give_back(future)  # its place came as its time ran out: hand it on
            else:
                self._forget(waiter)
            self._count_shed(criticality)
            raise Shed("waited until too little of its deadline was left to run it") from None
        except Shed:
            self._count_shed(criticality)
            raise
        except BaseException:
            # Cancelled while waiting (its caller hung up), or just as its place was taken.
            if future.cancelled() or not future.done():
                self._forget(waiter)
            else:
                self._give_back(future)
            raise

    def _give_back(self, future: asyncio.Future[None]) -> None:
        """A place was taken for a waiter that is gone after all: hand it on."""
        if future.exception() is None:
            self.inflight -= 1
            self._wake()

    def _refusal(self, level: int, ends: float) -> str | None:
        if self.max_queued == 0:
            return f"{self.inflight} requests in flight, the limit"
        if ends - _clock.monotonic() < self._expected():
            return "too little of its deadline is left to run it now"
        if self._prioritised:
            # How full the queue is of work at least as critical as this request.
            ahead = sum(len(queue) for key, queue in self._queues.items() if key >= level)
            if level < shed_below(ahead / self.max_queued):
                return f"shedding criticality {level} with {self.queued} queued"
        if self.queued < self.max_queued:
            return None
        lowest = min((key for key, queue in self._queues.items() if queue), default=None)
        if lowest is not None and lowest < level:
            # Make room: the least critical, oldest waiter goes.
            evicted = self._queues[lowest].popleft()
            self.queued -= 1
            evicted.future.set_exception(Shed("shed for a more critical request"))
            return None
        return f"{self.queued} requests queued, the most this instance holds"

    def _expected(self) -> float:
        """How long a request takes now (seconds): the latest window's average."""
        return self._limiter.gradient.short_rtt if self._limiter is not None else 0.0

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.criticality)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            self.queued -= 1
        if not waiter.future.done():
            waiter.future.cancel()

    def _count_shed(self, criticality: int) -> None:
        self.shed[criticality] = self.shed.get(criticality, 0) + 1

    def leave(self, rtt: float | None, inflight: int) -> None:
        """A request that entered ended after `rtt` seconds of running (None: no sample, e.g. a
        stream), with about `inflight` running beside it (the most of a window counts); wake
        who may run now."""
        self.inflight -= 1
        limiter = self._limiter
        if limiter is not None and rtt is not None:
            limiter.sample(rtt, inflight)
            self._limit = min(limiter.limit, self.ceiling)
        if self.queued:
            self._wake()

    def _wake(self) -> None:
        now = _clock.monotonic()
        expected = self._expected()
        while self.queued and self.inflight < self._limit:
            level = max(key for key, queue in self._queues.items() if queue)
            waiter = self._queues[level].pop()
            self.queued -= 1
            if waiter.ends - now < expected:
                waiter.future.set_exception(Shed("too little of its deadline was left to run it"))
                continue
            self.inflight += 1
            waiter.future.set_result(None)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The limit, the queue and what was shed, for `/metrics`."""
        labels = ("service",)
        limit = GaugeMetricFamily(
            "herd_server_limit", "Requests this instance runs at once now.", labels=labels
        )
        limit.add_metric((self._service,), min(self._limit, self.ceiling))
        queued = GaugeMetricFamily(
            "herd_server_queued", "Requests waiting for a place.", labels=labels
        )
        queued.add_metric((self._service,), self.queued)
        shed = CounterMetricFamily(
            "herd_server_shed",
            "Requests refused as overloaded by the limit or its queue, by criticality.",
            labels=("service", "criticality"),
        )
        for level, count in sorted(self.shed.items()):
            shed.add_metric((self._service, str(level)), count)
        yield limit
        yield queued
        yield shed
