"""What a canary analysis measures: counts, per interval, from the instances' /metrics.

Every interval each instance of the canary, the baseline and the production group is read once
(the counters every herd server keeps: requests by outcome, the latency histogram), and the
change since the previous reading is what it served in the interval: requests, failed requests
(answers a caller would count as the server's failure) and requests per latency bucket. The
judge works on these counts, summed per group, never on per-interval rates or means.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from herd._model.outcome import is_server_failure
from herd._wire.http_client import InstanceSession

_FAMILIES = tuple(
    f"{prefix}{name}"
    for prefix in ("", "# HELP ", "# TYPE ")
    for name in ("herd_server_requests", "herd_server_latency_seconds")
)


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
    # Only the two families read here go through the parser: the rest of an instance's
    # exposition (its drivers' figures, its routed requests by bucket) is most of its lines.
    wanted = "\n".join(line for line in exposition.splitlines() if line.startswith(_FAMILIES))
    for family in text_string_to_metric_families(wanted):
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


@dataclass(slots=True)
class Counts:
    """What a set of instances served over some time: requests, failed requests, and requests
    per latency bucket (by the bucket's upper bound in seconds, `inf` last; not cumulative)."""

    requests: float = 0.0
    failed: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Count `other` in too."""
        self.requests += other.requests
        self.failed += other.failed
        for bound, n in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + n

    @property
    def timed(self) -> float:
        """Requests with a latency."""
        return sum(self.buckets.values())

    def above(self, bound: float) -> float:
        """Requests slower than `bound` seconds (a bucket bound: those of the buckets above)."""
        return sum(n for upper, n in self.buckets.items() if upper > bound)


def counts(before: Reading, after: Reading) -> Counts:
    """What an instance served between two readings of its counters."""
    found = Counts(
        max(0.0, after.requests - before.requests), max(0.0, after.failed - before.failed)
    )
    below = 0.0
    for bound, cumulative in after.buckets.items():
        fresh = cumulative - before.buckets.get(bound, 0.0)
        found.buckets[bound] = max(0.0, fresh - below)
        below = max(below, fresh)
    return found


class Sampler:
    """What a set of instances served between two `take()` calls, from their counters."""

    def __init__(self, session: InstanceSession) -> None:
        self._session = session
        self._last: dict[str, Reading] = {}

    async def take(self, addresses: Iterable[str]) -> Counts:
        """Read every instance at `addresses` once: what they served since the last reading
        (an instance read for the first time, or not answering, adds nothing this time)."""
        wanted = list(addresses)
        answers = await asyncio.gather(
            *(self._read(address) for address in wanted), return_exceptions=True
        )
        total = Counts()
        for address, answer in zip(wanted, answers, strict=True):
            if not isinstance(answer, Reading):
                continue
            before = self._last.get(address)
            self._last[address] = answer
            if before is not None:
                total.add(counts(before, answer))
        return total

    async def _read(self, address: str) -> Reading:
        async with self._session.session.get(self._session.url(address, "/metrics")) as response:
            response.raise_for_status()
            return read(await response.text())
