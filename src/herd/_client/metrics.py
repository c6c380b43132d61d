"""Per-dependency call metrics, Hystrix-style, kept as plain counters on the hot path.

Counting is attribute arithmetic; Prometheus reads the counters only when scraped, through a
custom collector, so a call pays no lock or label lookup for its metrics.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from herd._model.stats import Sketch, cumulative_buckets, percentile

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OUTCOMES = (
    "success",
    "service_error",
    "failure",
    "timeout",
    "short_circuited",
    "rejected",
    "fallback_success",
    "fallback_failure",
    "retries",
    "retries_denied",
    "hedges",
)
_RECENT = 1024


class DependencyMetrics:
    """What one client saw of one dependency (a service it calls)."""

    __slots__ = (*OUTCOMES, "_bucket_counts", "_latency_sum", "_next", "_recent", "_sketch")

    def __init__(self) -> None:
        for name in OUTCOMES:
            setattr(self, name, 0)
        # Declared for the hot path, which adds to it directly rather than by name.
        self.success: int = 0
        self._bucket_counts = [0] * (len(BUCKETS) + 1)
        self._latency_sum = 0.0
        self._recent = [0.0] * _RECENT
        self._next = 0
        self._sketch = Sketch()

    def count(self, outcome: str) -> None:
        """Add one to an outcome counter."""
        setattr(self, outcome, getattr(self, outcome) + 1)

    def latency(self, seconds: float) -> None:
        """Record one call's latency (first attempt sent to answer)."""
        self._bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._latency_sum += seconds
        self._recent[self._next % _RECENT] = seconds
        self._next += 1
        self._sketch.add(seconds)

    def percentiles(self) -> dict[str, float]:
        """p50, p90, p99 and max in milliseconds over the last 1,024 calls."""
        samples = sorted(self._recent[: min(self._next, _RECENT)])

        def at(fraction: float) -> float:
            return round(percentile(samples, fraction) * 1000, 3)

        return {"p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0)}

    def snapshot(self) -> dict[str, object]:
        """Counters, latency percentiles, and the cumulative latency `sketch` (bucket index ->
        count, which the dashboard merges over instances and windows) as plain data."""
        data: dict[str, object] = {name: getattr(self, name) for name in OUTCOMES}
        data.update(self.percentiles())
        data["sketch"] = {str(index): count for index, count in self._sketch.counts.items()}
        return data

    def histogram(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative Prometheus buckets and the sum."""
        return cumulative_buckets(BUCKETS, self._bucket_counts), self._latency_sum


#: Which dependency's metrics each error a driver raised belongs to, for `herd.fallback` to count
#: the fallback it serves for it. Weak: an error that is let go takes its entry with it.
_RAISED_BY: weakref.WeakKeyDictionary[BaseException, DependencyMetrics] = (
    weakref.WeakKeyDictionary()
)


def raised_by(error: BaseException, metrics: DependencyMetrics) -> None:
    """Note that `error` is a failure of the dependency that `metrics` count."""
    _RAISED_BY[error] = metrics


def metrics_of(error: BaseException) -> DependencyMetrics | None:
    """The metrics of the dependency whose driver raised `error`; None for any other error."""
    return _RAISED_BY.get(error)


class Reporting(Protocol):
    """A driver's call path as its metrics owner sees it."""

    @property
    def service(self) -> str:
        """The dependency it calls."""
        ...

    def report(self) -> dict[str, Any]:
        """Breaker, budget, bulkhead and instances, as plain data."""
        ...


class ClientMetrics(Collector):
    """What a set of drivers sees of the dependencies they call: counters and latency per
    dependency, and the live state (breaker, budget) of every driver attached to it.

    A Prometheus collector over them. Each driver reports to one owner: the process's default
    (`herd.client_metrics`) unless it was given another.
    """

    def __init__(self) -> None:
        self.dependencies: dict[str, DependencyMetrics] = {}
        self._drivers: weakref.WeakSet[Reporting] = weakref.WeakSet()

    def attach(self, driver: Reporting) -> None:
        """Report on `driver` in `dependencies()` until it is detached (or collected)."""
        self._drivers.add(driver)

    def detach(self, driver: Reporting) -> None:
        """Stop reporting on a closed driver."""
        self._drivers.discard(driver)

    def report(self) -> dict[str, dict[str, Any]]:
        """Per dependency: counters and latency, with the breaker, budget and bulkhead of the
        first attached driver that calls it."""
        seen: dict[str, dict[str, Any]] = {}
        for driver in list(self._drivers):
            if driver.service not in seen:
                seen[driver.service] = {**self.of(driver.service).snapshot(), **driver.report()}
        return dict(sorted(seen.items()))

    def of(self, service: str) -> DependencyMetrics:
        """The metrics of one dependency, created on first use."""
        metrics = self.dependencies.get(service)
        if metrics is None:
            metrics = self.dependencies[service] = DependencyMetrics()
        return metrics

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        """Prometheus families built from the counters at scrape time."""
        calls = CounterMetricFamily(
            "herd_client_calls",
            "Calls to a dependency by outcome.",
            labels=("dependency", "outcome"),
        )
        latency = HistogramMetricFamily(
            "herd_client_latency_seconds", "Call latency per dependency.", labels=("dependency",)
        )
        for name, metrics in sorted(self.dependencies.items()):
            for outcome in OUTCOMES:
                calls.add_metric((name, outcome), getattr(metrics, outcome))
            buckets, total = metrics.histogram()
            latency.add_metric((name,), buckets, total)
        yield calls
        yield latency


CLIENT_METRICS = ClientMetrics()
