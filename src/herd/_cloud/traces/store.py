"""The traces the control plane keeps: a tail rule over the front door's requests, and a bounded
store of the kept ones with their spans.

Every request through the front door is recorded at every hop (the front door starts its trace
sampled); only once it has answered is it known whether the trace is worth keeping: always when
it failed (5xx) or was slow (at or above the recent p99 of the front door's latency, and at
least `min_slow_s`), or when the caller asked (it sent a sampled `traceparent`: it records the
trace too), otherwise for `share` of the requests. A kept trace's spans are collected
from the instances after `settle_s`, once its stragglers (a hedge's cancelled loser) ended.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import msgspec

from herd._model.stats import percentile

FAILED = "failed"
SLOW = "slow"
SAMPLED = "sampled"
ASKED = "asked"


class SpanView(msgspec.Struct, frozen=True):
    """One span of a kept trace: `start` in seconds since the epoch, `parent` the parent's span
    id (None for the trace's root)."""

    trace_id: str
    span_id: str
    parent: str | None
    service: str
    instance: str
    name: str
    kind: str
    start: float
    duration_ms: float
    failed: bool
    attributes: dict[str, Any]
    group: str = ""
    version: str = ""
    zone: str = ""


class TraceSummary(msgspec.Struct, frozen=True):
    """A kept trace as the list of recent ones shows it: why it was kept (failed, slow,
    sampled), the front door's answer and how long it took."""

    trace_id: str
    start: float
    duration_ms: float
    status: int
    request: str
    reason: str


class TraceView(msgspec.Struct, frozen=True):
    """A kept trace and every span collected of it, in start order."""

    summary: TraceSummary
    spans: list[SpanView]


class _Kept:
    __slots__ = ("due", "spans", "summary")

    def __init__(self, summary: TraceSummary, due: float) -> None:
        self.summary = summary
        self.due = due
        self.spans: dict[str, SpanView] = {}


class TraceStore:
    """The kept traces, at most `capacity` (the oldest go first)."""

    _WINDOW = 2048
    _EVERY = 64

    def __init__(
        self,
        *,
        capacity: int = 256,
        share: float = 0.02,
        min_slow_s: float = 0.05,
        settle_s: float = 1.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._capacity = capacity
        self._share = share
        self._min_slow_s = min_slow_s
        self._settle_s = settle_s
        self._rng = rng
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._latencies: deque[float] = deque(maxlen=self._WINDOW)
        self._seen = 0
        self._p99 = 0.0

    @property
    def slow_s(self) -> float:
        """A request at least this long is slow: the recent p99, at least `min_slow_s`."""
        return max(self._min_slow_s, self._p99)

    def finished(
        self,
        trace_id: str,
        request: str,
        status: int,
        start: float,
        seconds: float,
        now: float,
        *,
        asked: bool = False,
    ) -> str | None:
        """A front-door request answered: keep its trace or not. The reason kept, or None."""
        slow = seconds >= self.slow_s
        self._learn(seconds)
        if status >= 500:
            reason = FAILED
        elif slow:
            reason = SLOW
        elif asked:
            reason = ASKED
        elif self._rng() < self._share:
            reason = SAMPLED
        else:
            return None
        summary = TraceSummary(trace_id, start, round(seconds * 1000.0, 3), status, request, reason)
        self._kept[trace_id] = _Kept(summary, now + self._settle_s)
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)
        return reason

    def _learn(self, seconds: float) -> None:
        self._latencies.append(seconds)
        self._seen += 1
        if self._seen % self._EVERY == 0 and len(self._latencies) >= self._EVERY * 2:
            self._p99 = percentile(sorted(self._latencies), 0.99)

    def due(self, now: float) -> list[str]:
        """Kept traces whose spans are due to be collected (each once)."""
        ready = [trace_id for trace_id, kept in self._kept.items() if kept.due <= now]
        for trace_id in ready:
            self._kept[trace_id].due = float("inf")
        return ready

    def add_spans(self, spans: list[dict[str, Any]]) -> list[SpanView]:
        """Spans collected of kept traces (others are ignored); the ones added."""
        added: list[SpanView] = []
        for span in spans:
            kept = self._kept.get(str(span.get("trace_id")))
            if kept is not None:
                view = msgspec.convert(span, SpanView)
                if view.span_id not in kept.spans:
                    added.append(view)
                kept.spans[view.span_id] = view
        return added

    def recent(self, limit: int = 50) -> list[TraceSummary]:
        """The latest kept traces whose spans were collected, newest first."""
        collected = [kept for kept in self._kept.values() if kept.due == float("inf")]
        return [kept.summary for kept in reversed(collected[-limit:])]

    def get(self, trace_id: str) -> TraceView | None:
        """A kept trace with its spans, or None if it is not (or no longer) kept."""
        kept = self._kept.get(trace_id)
        if kept is None:
            return None
        spans = sorted(kept.spans.values(), key=lambda span: span.start)
        return TraceView(kept.summary, spans)
