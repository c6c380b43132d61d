"""Server-side Prometheus metrics, one registry per server so several can share a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from herd._client.metrics import CLIENT_METRICS

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServerMetrics:
    """Per-method requests by outcome, latency histogram and in-flight gauge."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # What this process's drivers see of their dependencies is served beside the server's own.
        self.registry.register(CLIENT_METRICS)
        self._service = service
        self._requests = Counter(
            "herd_server_requests",
            "Requests served, by method and outcome.",
            ("service", "method", "outcome"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "herd_server_latency_seconds",
            "Time from request decoded to answer ready, by method.",
            ("service", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "herd_server_inflight", "Requests being handled.", ("service",), registry=self.registry
        ).labels(service)
        # Resolving label children costs a dict lookup and a lock; cache them per key.
        self._counters: dict[tuple[str, str], Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def record(self, method: str, outcome: str, seconds: float | None) -> None:
        """Count one request's outcome and, when it ran, its latency."""
        counter = self._counters.get((method, outcome))
        if counter is None:
            counter = self._counters[(method, outcome)] = self._requests.labels(
                self._service, method, outcome
            )
        counter.inc()
        if seconds is not None:
            histogram = self._histograms.get(method)
            if histogram is None:
                histogram = self._histograms[method] = self._latency.labels(self._service, method)
            histogram.observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
