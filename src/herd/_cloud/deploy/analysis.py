"""What a canary analysis measures: counts, per interval, from what the instances served.

Every interval each instance of the canary, the baseline and the production group is read once
(`/herd/served`: the requests by outcome and the latency sketch every herd server keeps), and
the change since the previous reading is what it served in the interval: requests, failed
requests (answers a caller would count as the server's failure) and requests per sketch bucket.
The judge works on these counts, summed per group, never on per-interval rates or means.

Latency is read from the sketch rather than from the Prometheus histogram beside it: a slow
threshold taken from a fixed bucket's edge (25 ms for a median anywhere from 10 to 25 ms)
would count as slow only what is slower than the edge, while a sketch bucket is within 1 %.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from herd._model.outcome import is_server_failure
from herd._server.metrics import SERVED_PATH
from herd._wire.http_client import InstanceSession


@dataclass(slots=True)
class Counts:
    """What a set of instances served over some time, or one instance's totals so far:
    requests, failed requests, and requests per latency sketch bucket (`Sketch` indexes)."""

    requests: float = 0.0
    failed: float = 0.0
    sketch: dict[int, float] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Count `other` in too."""
        self.requests += other.requests
        self.failed += other.failed
        for index, n in other.sketch.items():
            self.sketch[index] = self.sketch.get(index, 0.0) + n

    @property
    def timed(self) -> float:
        """Requests with a latency."""
        return sum(self.sketch.values())

    def above(self, index: int) -> float:
        """Requests slower than sketch bucket `index` holds."""
        return sum(n for held, n in self.sketch.items() if held > index)


def read(served: Mapping[str, Any]) -> Counts:
    """A server's totals from its `ServerMetrics.served()`, summed over its methods."""
    total = Counts()
    for figures in served.values():
        for outcome, n in figures.get("outcomes", {}).items():
            total.requests += n
            if is_server_failure(outcome):
                total.failed += n
        for index, n in figures.get("sketch", {}).items():
            total.sketch[int(index)] = total.sketch.get(int(index), 0.0) + n
    return total


def counts(before: Counts, after: Counts) -> Counts:
    """What an instance served between two readings of its totals."""
    found = Counts(
        max(0.0, after.requests - before.requests), max(0.0, after.failed - before.failed)
    )
    for index, n in after.sketch.items():
        fresh = n - before.sketch.get(index, 0.0)
        if fresh > 0:
            found.sketch[index] = fresh
    return found


class Sampler:
    """What a set of instances served between two `take()` calls, from their totals."""

    def __init__(self, session: InstanceSession) -> None:
        self._session = session
        self._last: dict[str, Counts] = {}

    async def take(self, addresses: Iterable[str]) -> Counts:
        """Read every instance at `addresses` once: what they served since the last reading
        (an instance read for the first time, or not answering, adds nothing this time)."""
        wanted = list(addresses)
        answers = await asyncio.gather(
            *(self._read(address) for address in wanted), return_exceptions=True
        )
        total = Counts()
        for address, answer in zip(wanted, answers, strict=True):
            if not isinstance(answer, Counts):
                continue
            before = self._last.get(address)
            self._last[address] = answer
            if before is not None:
                total.add(counts(before, answer))
        return total

    async def _read(self, address: str) -> Counts:
        async with self._session.session.get(self._session.url(address, SERVED_PATH)) as response:
            response.raise_for_status()
            return read(await response.json())
