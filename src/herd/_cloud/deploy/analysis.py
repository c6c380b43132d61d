"""What a canary analysis measures: per instance, per interval, from the instances' /metrics.

Every interval each instance of the canary and of the baseline group is read once (the counters
every herd server keeps: requests by outcome, the latency histogram) and the change since the
previous reading becomes one data point per metric: the error rate (answers a caller would count
as the server's failure) and the mean and 95th percentile latency of what it served.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from herd._model.outcome import is_server_failure
from herd._wire.http_client import InstanceSession


@dataclass(slots=True)
class Reading:
    """One instance's cumulative counters at one moment."""

    requests: float = 0.0
    failed: float = 0.0
    latency_sum: float = 0.0
    latency_count: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    """Cumulative counts by upper bound (seconds; `inf` last)."""


def read(exposition: str) -> Reading:
    """The server's own counters in a Prometheus exposition, summed over its methods."""
    reading = Reading()
    buckets: dict[float, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        if family.name == "herd_server_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reading.requests += sample.value
                    outcome = sample.labels.get("outcome", "")
                    if is_server_failure(outcome):
                        reading.failed += sample.value
        elif family.name == "herd_server_latency_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets[float(sample.labels["le"])] += sample.value
                elif sample.name.endswith("_sum"):
                    reading.latency_sum += sample.value
                elif sample.name.endswith("_count"):
                    reading.latency_count += sample.value
    reading.buckets = dict(sorted(buckets.items()))
    return reading


def points(before: Reading, after: Reading) -> dict[str, float]:
    """The data points of one interval: only those the interval has figures for."""
    found: dict[str, float] = {}
    requests = after.requests - before.requests
    if requests > 0:
        found["error_rate"] = max(0.0, after.failed - before.failed) / requests
    count = after.latency_count - before.latency_count
    if count > 0:
        found["latency_mean_ms"] = 1000 * (after.latency_sum - before.latency_sum) / count
        deltas = {le: n - before.buckets.get(le, 0.0) for le, n in after.buckets.items()}
        found["latency_p95_ms"] = 1000 * _quantile(deltas, 0.95)
    return found


def _quantile(cumulative: Mapping[float, float], fraction: float) -> float:
    """The `fraction` quantile of a cumulative histogram, interpolated within its bucket."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]]
    wanted = fraction * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= wanted:
            if bound == float("inf"):
                return lower
            share = (wanted - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


class Sampler:
    """Series of data points per metric for a set of instances, one point per instance per
    `sample()` call after its first reading."""

    def __init__(self, session: InstanceSession) -> None:
        self._session = session
        self._last: dict[str, Reading] = {}
        self.series: dict[str, list[float]] = collections.defaultdict(list)

    async def sample(self, addresses: Iterable[str]) -> None:
        """Read every instance at `addresses` once; add what changed since the last reading."""
        wanted = list(addresses)
        answers = await asyncio.gather(
            *(self._read(address) for address in wanted), return_exceptions=True
        )
        for address, answer in zip(wanted, answers, strict=True):
            if not isinstance(answer, Reading):
                continue  # an instance that did not answer this round gives no point
            before = self._last.get(address)
            self._last[address] = answer
            if before is not None:
                for name, value in points(before, answer).items():
                    self.series[name].append(value)

    async def _read(self, address: str) -> Reading:
        async with self._session.session.get(self._session.url(address, "/metrics")) as response:
            response.raise_for_status()
            return read(await response.text())
