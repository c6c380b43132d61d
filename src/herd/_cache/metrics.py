"""What caches see, per cache and zone: plain counters, read by Prometheus at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

#: hits: keys a zone answered for its own zone's reader; misses: keys no zone had;
#: fallbacks: keys another zone answered after the local zone missed or failed; warmed: keys
#: written back to the local zone after a fallback found them; errors: operations that failed
#: or timed out (each is also a miss or a skipped write to the caller, never an exception).
OUTCOMES = ("hits", "misses", "fallbacks", "warmed", "errors", "writes")


class CacheMetrics(Collector):
    """Counters per (cache, zone, outcome); a Prometheus collector over them."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}

    def add(self, cache: str, zone: str, outcome: str, count: int = 1) -> None:
        """Add `count` to one counter."""
        if count:
            key = (cache, zone, outcome)
            self.counts[key] = self.counts.get(key, 0) + count

    def get(self, cache: str, zone: str, outcome: str) -> int:
        """One counter's value."""
        return self.counts.get((cache, zone, outcome), 0)

    def total(self, outcome: str, cache: str | None = None) -> int:
        """One outcome summed over zones (and caches, unless `cache` is given)."""
        return sum(
            count
            for (name, _, kind), count in self.counts.items()
            if kind == outcome and cache in (None, name)
        )

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "herd_cache_operations",
            "Cache keys and operations per cache, zone and outcome.",
            labels=("cache", "zone", "outcome"),
        )
        for (cache, zone, outcome), count in sorted(self.counts.items()):
            family.add_metric((cache, zone, outcome), count)
        yield family


CACHE_METRICS = CacheMetrics()
