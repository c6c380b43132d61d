"""Server-side Prometheus metrics, one registry per server so several can share a process.

Counting on the hot path is plain integer arithmetic; Prometheus families are built from the
counters only when `/metrics` is scraped, so a request pays no lock or label lookup.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from herd._model.route import BUCKETS
from herd._model.stats import Sketch, cumulative_buckets

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: Where a server answers `ServerMetrics.served()` (the control plane's canary judge reads it).
SERVED_PATH = "/herd/served"

#: Distinct pinned versions counted by name (a label each), at most.
MAX_PINS = 32

Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class _Latency:
    """One method's latencies: Prometheus's fixed buckets for users' dashboards, and the sketch
    every quantile herd shows or judges is read from (a bucket's edge is off by up to its
    width)."""

    __slots__ = ("counts", "sketch", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.sketch = Sketch()


class ServerMetrics(Collector):
    """Per-method requests by outcome, latency histogram and in-flight gauge."""

    def __init__(
        self,
        service: str,
        inflight: Callable[[], int] = lambda: 0,
        collectors: Iterable[Collector] = (),
    ) -> None:
        """`collectors` are served beside the server's own (what the process's drivers see of
        their dependencies)."""
        self._service = service
        self._inflight = inflight
        self._requests: dict[tuple[str, str], int] = {}
        self._latency: dict[str, _Latency] = {}
        self._pinned: dict[str, int] = {}
        self._routed: dict[tuple[str, str], int] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)
        for collector in collectors:
            self.registry.register(collector)

    def record(self, method: str, outcome: str, seconds: float | None) -> None:
        """Count one request's outcome and, when it ran, its latency."""
        key = (method, outcome)
        self._requests[key] = self._requests.get(key, 0) + 1
        if seconds is not None:
            latency = self._latency.get(method)
            if latency is None:
                latency = self._latency[method] = _Latency()
            latency.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            latency.total += seconds
            latency.sketch.add(seconds)

    def served(self) -> dict[str, dict[str, dict[str, int]]]:
        """What this server served, cumulative, per method: requests by outcome (`outcomes`)
        and the latency sketch (`sketch`: bucket index -> count), as plain data."""
        methods: dict[str, dict[str, dict[str, int]]] = {}
        for (method, outcome), count in self._requests.items():
            entry = methods.setdefault(method, {"outcomes": {}, "sketch": {}})
            entry["outcomes"][outcome] = count
        for method, recorded in self._latency.items():
            entry = methods.setdefault(method, {"outcomes": {}, "sketch": {}})
            entry["sketch"] = {str(index): n for index, n in recorded.sketch.counts.items()}
        return methods

    def pinned(self, version: str) -> None:
        """Count a request pinned to `version` (its routing context's `pin`) that this server
        took: whether pins reach their version is read from these (docs/deploy.md). Pins come
        from callers: past `MAX_PINS` distinct ones, the rest count as `other`."""
        if version not in self._pinned and len(self._pinned) >= MAX_PINS:
            version = "other"
        self._pinned[version] = self._pinned.get(version, 0) + 1

    def routed(self, bucket: str | None, pin: str | None) -> None:
        """Count a request by its routing context's bucket and pin ("" for none): which group
        took which buckets is how cohort consistency is measured at every hop (docs/deploy.md).
        A bucket that is not 0-99 counts as "", a pin beyond `MAX_PINS` distinct ones as
        `other`."""
        if bucket is None or not (bucket.isdigit() and int(bucket) < BUCKETS):
            bucket = ""
        pin = pin or ""
        if pin and pin not in self._pinned and len(self._pinned) >= MAX_PINS:
            pin = "other"
        key = (bucket, pin)
        self._routed[key] = self._routed.get(key, 0) + 1

    def collect(self) -> Iterator[Family]:
        """Prometheus families built from the counters at scrape time."""
        requests = CounterMetricFamily(
            "herd_server_requests",
            "Requests served, by method and outcome.",
            labels=("service", "method", "outcome"),
        )
        for (method, outcome), count in sorted(self._requests.items()):
            requests.add_metric((self._service, method, outcome), count)
        latency = HistogramMetricFamily(
            "herd_server_latency_seconds",
            "Time from request decoded to answer ready, by method.",
            labels=("service", "method"),
        )
        for method, recorded in sorted(self._latency.items()):
            buckets = cumulative_buckets(LATENCY_BUCKETS, recorded.counts)
            latency.add_metric((self._service, method), buckets, recorded.total)
        inflight = GaugeMetricFamily(
            "herd_server_inflight", "Requests being handled.", labels=("service",)
        )
        inflight.add_metric((self._service,), self._inflight())
        pinned = CounterMetricFamily(
            "herd_server_pinned_requests",
            "Requests taken whose routing context pins them to a version, by that version.",
            labels=("service", "pin"),
        )
        for version, count in sorted(self._pinned.items()):
            pinned.add_metric((self._service, version), count)
        routed = CounterMetricFamily(
            "herd_server_routed_requests",
            "Requests taken, by their routing context's bucket and pin (empty: none).",
            labels=("service", "bucket", "pin"),
        )
        for (bucket, pin), count in sorted(self._routed.items()):
            routed.add_metric((self._service, bucket, pin), count)
        yield requests
        yield latency
        yield inflight
        yield pinned
        yield routed

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
