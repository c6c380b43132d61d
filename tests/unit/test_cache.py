"""herd.Cache's EVCache rules over in-memory replicas: write everywhere, read local, fall back
to one other zone, warm the local zone, degrade every failure to a miss."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import pytest

import herd


class Video(msgspec.Struct, frozen=True):
    title: str
    year: int


class MemoryReplica:
    """One zone's servers in a dict; `broken` makes every operation raise, `stalled` hang."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.broken = False
        self.stalled = False
        self.reads = 0

    async def _check(self) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        if self.broken:
            raise ConnectionError("zone down")

    async def get_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        await self._check()
        self.reads += 1
        return {key: self.data[key] for key in keys if key in self.data}

    async def set(self, key: bytes, value: bytes, ttl: int, *, noreply: bool = False) -> None:
        await self._check()
        self.data[key] = value

    async def delete(self, key: bytes) -> None:
        await self._check()
        self.data.pop(key, None)

    async def aclose(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def zones() -> dict[str, MemoryReplica]:
    return {zone: MemoryReplica() for zone in ("a", "b", "c")}


def make(
    replicas: dict[str, MemoryReplica], zone: str = "a", clock: Clock | None = None
) -> tuple[herd.Cache[Video], herd.CacheMetrics]:
    metrics = herd.CacheMetrics()
    cache = herd.Cache(
        "movie",
        Video,
        replicas=replicas,
        zone=zone,
        timeout_s=0.05,
        metrics=metrics,
        clock=clock or Clock(),
    )
    return cache, metrics


async def test_a_write_reaches_every_zone_and_reads_stay_local() -> None:
    replicas = zones()
    cache, metrics = make(replicas)
    assert await cache.set(7, Video("Up", 2009)) == 3
    assert all(len(r.data) == 1 for r in replicas.values())
    assert await cache.get(7) == Video("Up", 2009)
    assert (replicas["a"].reads, replicas["b"].reads, replicas["c"].reads) == (1, 0, 0)
    assert metrics.get("movie", "a", "hits") == 1


async def test_a_local_miss_falls_back_to_one_other_zone_and_warms_the_local_one() -> None:
    replicas = zones()
    cache, metrics = make(replicas)
    await cache.set(1, Video("One", 2001))
    await cache.set(2, Video("Two", 2002))
    replicas["a"].data.clear()  # zone a's memcached restarted empty
    assert await cache.get_many([1, 2, 3]) == {1: Video("One", 2001), 2: Video("Two", 2002)}
    assert replicas["b"].reads + replicas["c"].reads == 1  # one other zone, not both
    assert metrics.total("fallbacks") == 2
    assert metrics.get("movie", "a", "misses") == 1
    await cache.aclose()  # lets the warming finish
    assert len(replicas["a"].data) == 2
    assert metrics.get("movie", "a", "warmed") == 2
    replicas["b"].broken = replicas["c"].broken = True
    assert await cache.get(1) == Video("One", 2001)  # served by the warmed local zone


async def test_a_broken_zone_is_a_fallback_then_rests_for_writes() -> None:
    replicas, clock = zones(), Clock()
    cache, metrics = make(replicas, clock=clock)
    await cache.set(1, Video("One", 2001))
    replicas["a"].broken = True
    assert await cache.get(1) == Video("One", 2001)
    assert metrics.get("movie", "a", "errors") == 1
    reads = replicas["b"].reads + replicas["c"].reads
    await cache.set(2, Video("Two", 2002))  # zone a rests: not even tried
    assert metrics.get("movie", "a", "errors") == 1 and b"movie:2" not in replicas["a"].data
    assert await cache.get(2) == Video("Two", 2002)
    assert replicas["b"].reads + replicas["c"].reads == reads + 1
    replicas["a"].broken = False
    clock.now += 1.5  # the rest is over: zone a is read first again
    assert await cache.get(1) == Video("One", 2001)
    assert replicas["a"].reads == 1


async def test_every_zone_down_is_a_miss_within_the_timeout_never_an_error() -> None:
    replicas = zones()
    cache, metrics = make(replicas)
    for replica in replicas.values():
        replica.stalled = True
    async with asyncio.timeout(1.0):
        assert await cache.get(1) is None
        assert await cache.set(1, Video("x", 1)) == 0
        await cache.delete(1)
    assert metrics.total("errors") >= 3
    assert metrics.get("movie", "a", "misses") == 1
    await cache.aclose()  # ends the stalled operations it stopped waiting for


async def test_a_strict_read_tells_no_answer_from_a_miss() -> None:
    replicas = zones()
    cache, _ = make(replicas)
    assert await cache.get(1, strict=True) is None  # a real miss
    replicas["a"].broken = True
    assert await cache.get(1, strict=True) is None  # zone b or c answered: still a miss
    for replica in replicas.values():
        replica.broken = True
    with pytest.raises(herd.Unavailable, match="no zone"):
        await cache.get(1, strict=True)
    assert await cache.get(1) is None


async def test_the_callers_deadline_bounds_a_cache_read() -> None:
    replicas = zones()
    cache, _ = make(replicas)
    cache.timeout_s = 5.0
    for replica in replicas.values():
        replica.stalled = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    with herd.deadline(0.2):
        assert await cache.get(1) is None
    assert loop.time() - started < 0.2
    await cache.aclose()


async def test_delete_reaches_every_zone() -> None:
    replicas = zones()
    cache, _ = make(replicas)
    await cache.set("abc", Video("x", 1))
    await cache.delete("abc")
    assert all(not r.data for r in replicas.values())
    assert await cache.get("abc") is None


async def test_keys_memcached_cannot_hold_are_hashed_and_a_foreign_value_is_a_miss() -> None:
    replicas = zones()
    cache, metrics = make(replicas)
    await cache.set("a key with spaces " * 20, Video("x", 1))
    assert await cache.get("a key with spaces " * 20) == Video("x", 1)
    assert all(len(key) < 250 and b" " not in key for key in replicas["a"].data)
    replicas["a"].data[b"movie:9"] = b"\x01not a video"
    assert await cache.get(9) is None
    assert metrics.get("movie", "a", "errors") == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="namespace"):
        herd.Cache("Bad Name", Video, replicas={})
    with pytest.raises(ValueError, match="ttl_s"):
        herd.Cache("movie", Video, replicas={}, ttl_s=0)


async def test_without_servers_a_cache_always_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERD_CACHES", raising=False)
    cache = herd.cache("movie", Video)
    assert not cache.enabled
    await cache.set(1, Video("x", 1))
    assert await cache.get(1) is None


def test_herd_caches_names_servers_per_cache_and_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_CACHES", "flix@a=127.0.0.1:1,flix@b=127.0.0.1:2,x@a=127.0.0.1:3")
    monkeypatch.setenv("HERD_ZONE", "b")
    with pytest.raises(herd.ConfigurationError, match="several caches"):
        herd.cache("movie", Video)
    cache = herd.cache("movie", Video, name="flix")
    assert cache.zones == ["b", "a"]
    monkeypatch.setenv("HERD_CACHES", "flix@a")
    with pytest.raises(herd.ConfigurationError, match="name@zone=host:port"):
        herd.cache("movie", Video)
