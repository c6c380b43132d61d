"""The load of `herd experiment overload`, in a process of its own.

The front door runs in the experiment's process (the local cloud's controller); a generator in
that process would compete with it for the same core, and at three times capacity the
generator's own work would be what collapses. So the experiment starts this module:

    python -m herd_tools.experiments.overload_load '{"url": ..., "mode": "capacity", ...}'

Two modes, each writing msgpack to the file named `out`:

- `capacity`: `workers` closed-loop clients send user pages back to back for `seconds`; the
  figure is the successful pages per second (the most the app serves);
- `open`: open-model load over `segments` (`[rate, seconds]` each, one after the other), every
  other request a user page (critical) and the rest prefetches (`x-flix-prefetch: 1`,
  best-effort by the app file's rule); one sample per request.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Coroutine
from typing import Any, cast

import aiohttp
import msgspec
import uvloop

from herd_tools.load import UrlPattern
from herd_tools.schedule import Schedule, Send, open_model

PREFETCH = {"x-flix-prefetch": "1"}


class Job(msgspec.Struct, frozen=True):
    """What the parent asks for."""

    url: str
    out: str
    mode: str
    seconds: float = 0.0
    workers: int = 32
    segments: list[tuple[float, float]] = []
    timeout_s: float = 5.0
    critical_share: float = 0.5
    """The share of the open load that is user pages (the rest prefetches)."""
    critical: bool = True
    """What the capacity mode's clients send: user pages, or prefetches."""


class Sample(msgspec.Struct, array_like=True, frozen=True):
    """One request: when it was due (seconds from the start), how long it took, whether it
    succeeded and whether it was critical."""

    offset: float
    latency: float
    ok: bool
    critical: bool


async def _get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], timeout: float
) -> bool:
    try:
        async with asyncio.timeout(timeout), session.get(url, headers=headers) as response:
            await response.read()
            return response.status < 400
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False


async def capacity(job: Job) -> float:
    """Successful user pages per second from `workers` clients back to back."""
    pattern = UrlPattern(job.url)
    count = itertools.count(1)
    ends = time.monotonic() + job.seconds
    served = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal served
        while time.monotonic() < ends:
            headers = {} if job.critical else PREFETCH
            ok = await _get(session, pattern.at(next(count)), headers, job.timeout_s)
            served += ok  # after the await: `served += await ...` would read it before

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(job.workers)))
    return served / job.seconds


async def open_load(job: Job) -> list[Sample]:
    """Every segment's open-model load, one after the other, half user pages, half
    prefetches."""
    pattern = UrlPattern(job.url)
    count = itertools.count(1)
    samples: list[Sample] = []
    start = time.monotonic()

    async def get(session: aiohttp.ClientSession, intended: float, critical: bool) -> None:
        url = pattern.at(next(count))
        ok = await _get(session, url, {} if critical else PREFETCH, job.timeout_s)
        samples.append(Sample(intended - start, time.monotonic() - intended, ok, critical))

    def sender(session: aiohttp.ClientSession) -> Send:
        # Spread evenly: request n is critical when the running share falls behind.
        sent = itertools.count()
        critical = 0

        def send(intended: float) -> Coroutine[Any, Any, None]:
            nonlocal critical
            now = next(sent) + 1
            chosen = critical < job.critical_share * now
            critical += chosen
            return get(session, intended, chosen)

        return send

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Every segment on its own schedule from the start, so that answers late from one
        # segment never hold the next one back.
        begins = itertools.accumulate((seconds for _, seconds in job.segments), initial=start)
        await asyncio.gather(
            *(
                open_model(Schedule(rate, seconds), at, sender(session))
                for (rate, seconds), at in zip(job.segments, begins, strict=False)
            )
        )
    return samples


def main() -> None:
    """Run the job in argv[1] and write what it measured."""
    job = msgspec.json.decode(sys.argv[1], type=Job)
    measured = capacity(job) if job.mode == "capacity" else open_load(job)
    result = cast(float | list[Sample], uvloop.run(measured))
    with open(job.out, "wb") as file:
        file.write(msgspec.msgpack.encode(result))


if __name__ == "__main__":
    main()
