"""herd.Cache on real memcached, one server per zone: writes reach every zone, a killed zone
costs no read, and a zone that restarted empty is warmed from another."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import herd
from herd._cache.replica import MemcachedReplica
from tests.helpers import eventually
from tests.integration.memcached import MemcachedZones


class Row(msgspec.Struct, frozen=True):
    title: str
    videos: list[int]


@pytest.fixture
def zones(tmp_path: Path) -> Iterator[MemcachedZones]:
    running = MemcachedZones(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def one_zone(zones: MemcachedZones, zone: str, metrics: herd.CacheMetrics) -> herd.Cache[Row]:
    """A reader that sees only `zone`'s server: what that replica holds."""
    replicas = {zone: MemcachedReplica(zones.servers[zone])}
    return herd.Cache("rows", Row, replicas=replicas, zone=zone, metrics=metrics)


async def test_evcache_on_memcached(zones: MemcachedZones, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_CACHES", zones.env())
    monkeypatch.setenv("HERD_ZONE", "a")
    metrics = herd.CacheMetrics()
    cache = herd.cache("rows", Row, ttl_s=60)
    cache.metrics = metrics
    rows = {visitor: Row(f"row {visitor}", [visitor, visitor + 1]) for visitor in range(1, 21)}
    try:
        for visitor, row in rows.items():
            await cache.set(visitor, row)
        for zone in "abc":
            async with one_zone(zones, zone, herd.CacheMetrics()) as replica:
                assert await replica.get_many(rows) == rows, f"zone {zone} lacks writes"
        assert await cache.get_many(rows) == rows
        assert metrics.get("rows", "a", "hits") == 20

        await asyncio.to_thread(zones.kill, "a")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await cache.get_many(rows) == rows  # from another zone, within the timeout
        assert loop.time() - started < 0.5
        assert metrics.get("rows", "a", "errors") >= 1
        assert metrics.total("fallbacks") == 20

        await asyncio.to_thread(zones.start, "a")  # back, empty, on the same port
        cache.rest_s = 0.0  # read zone a again at once rather than after its rest

        async def local_has_everything() -> bool:
            assert await cache.get_many(rows) == rows  # whole all along: fallbacks fill in
            async with one_zone(zones, "a", herd.CacheMetrics()) as replica:
                return await replica.get_many(rows) == rows

        # emcache reconnects with a back-off of its own (1 s, then 2 s, ...).
        await eventually(local_has_everything, timeout=15, what="zone a warmed by read repair")
        assert metrics.get("rows", "a", "warmed") >= 20
        await cache.delete(1)
        for zone in "abc":
            async with one_zone(zones, zone, herd.CacheMetrics()) as replica:
                assert await replica.get(1) is None
    finally:
        await cache.aclose()
