"""`herd.Cache`: a typed look-aside cache replicated in every zone, the way EVCache is.

- **Writes go to every zone** (in parallel, each under the operation's timeout; look-aside
  fills in the background without waiting for replies: `set_many_soon`).
- **Reads go to the local zone**; keys it misses, or all of them when it fails, are read from
  one other zone (a fallback). A zone that failed rests for `rest_s`: reads skip it and `set`s
  pass it by, so a dead server costs one timeout, not one per request.
- **Read repair warms an empty zone**: a key the local zone missed and another zone had is
  written back to the local zone (in the background, with the cache's TTL), so a memcached
  that restarted empty fills up with what its readers ask for.
- **Failures are misses**: nothing here raises to the caller for a cache that is down or slow;
  the caller goes to the service, as it would on a miss. Each operation is timed out at
  `timeout_s`, or at half of what is left of the caller's deadline when that is less.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from herd._cache.metrics import CACHE_METRICS, CacheMetrics
from herd._cache.replica import Replica
from herd._model.deadline import remaining
from herd._model.errors import ConfigurationError, Unavailable

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

#: Background writes (`set_soon`, warming) pending per cache before more are skipped.
BACKGROUND_MAX = 64
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
#: memcached keys: at most 250 bytes, no spaces or control characters.
_PLAIN_KEY = re.compile(r"^[!-~]{1,180}$")


class Cache(Generic[T]):
    """Values of one type under one namespace, in a memcached replica per zone.

    Usually made with `herd.cache(namespace, Type, ttl_s=...)`, which finds the servers in
    `HERD_CACHES` and this process's zone in `HERD_ZONE`. Keys are ints or strings.

    Args:
        namespace: prefixes every key (``movie``, ``session``), so caches can share servers.
        value: the type of the values (a msgspec Struct, or anything msgspec encodes).
        replicas: zone -> its `Replica`; none gives a cache that always misses.
        zone: this process's zone: reads go here first (default: the first zone).
        ttl_s: seconds a value lives, unless `set` says otherwise.
        timeout_s: the most one operation on one zone may take.
        rest_s: how long a zone that failed is skipped by reads and `set`s.
    """

    def __init__(
        self,
        namespace: str,
        value: type[T],
        *,
        replicas: Mapping[str, Replica],
        zone: str | None = None,
        ttl_s: float = 300.0,
        timeout_s: float = 0.1,
        rest_s: float = 1.0,
        metrics: CacheMetrics = CACHE_METRICS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _NAMESPACE.match(namespace):
            raise ConfigurationError(
                f"cache namespace {namespace!r}: lowercase letters, digits, _ . -"
            )
        if ttl_s < 1 or timeout_s <= 0 or rest_s < 0:
            raise ConfigurationError("a cache's ttl_s must be >= 1 s, timeout_s > 0, rest_s >= 0")
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.rest_s = rest_s
        self.metrics = metrics
        self._clock = clock
        self._replicas = dict(replicas)
        self.zone = zone if zone in self._replicas else next(iter(self._replicas), "")
        self._resting: dict[str, float] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(value)
        self._background: set[asyncio.Task[object]] = set()
        self._abandoned: set[asyncio.Future[Any]] = set()

    @property
    def enabled(self) -> bool:
        """Whether any zone has servers (a cache without any always misses)."""
        return bool(self._replicas)

    @property
    def zones(self) -> list[str]:
        """The zones, this process's first."""
        return sorted(self._replicas, key=lambda zone: zone != self.zone)

    def _key(self, key: Hashable) -> bytes:
        text = str(key)
        if not _PLAIN_KEY.match(text):
            text = "h:" + hashlib.blake2b(text.encode(), digest_size=20).hexdigest()
        return f"{self.namespace}:{text}".encode()

    async def get(self, key: Hashable, *, strict: bool = False) -> T | None:
        """The value of `key`, or None (absent, or no zone could answer). With `strict`, no
        zone answering raises `herd.Unavailable` instead: for data that lives only here (a
        session), where "not there" and "cannot tell" must not look alike."""
        return (await self.get_many([key], strict=strict)).get(key)

    async def get_many(self, keys: Iterable[K], *, strict: bool = False) -> dict[K, T]:
        """The values found among `keys` (see `get` for `strict`)."""
        wanted = {self._key(key): key for key in dict.fromkeys(keys)}
        if not wanted or not self._replicas:
            return {}
        found: dict[bytes, bytes] = {}
        local_missed: list[bytes] = []
        fallen_back = answered = False
        for zone in self._readable():
            missing = [k for k in wanted if k not in found]
            if not missing:
                break
            answer = await self._call(zone, _get_many(missing))
            if answer is None:
                continue  # failed: counted; the next zone is asked for every missing key
            answered = True
            if zone == self.zone:
                self.metrics.add(self.namespace, zone, "hits", len(answer))
                local_missed = [k for k in missing if k not in answer]
            else:
                self.metrics.add(self.namespace, zone, "fallbacks", len(answer))
                self._warm({k: v for k, v in answer.items() if k in local_missed})
                fallen_back = True
            found.update(answer)
            if fallen_back:
                break  # one other zone's answer is the answer, as in EVCache
        if strict and not answered:
            raise Unavailable(f"no zone of cache {self.namespace!r} answered")
        self.metrics.add(self.namespace, self.zone, "misses", len(wanted) - len(found))
        values: dict[K, T] = {}
        for raw_key, data in found.items():
            try:
                values[wanted[raw_key]] = self._decoder.decode(data)
            except msgspec.DecodeError:
                # Written by another build with another type: a miss, and it is overwritten.
                self.metrics.add(self.namespace, self.zone, "errors")
        return values

    async def set(self, key: Hashable, value: T, ttl_s: float | None = None) -> int:
        """Store `value` in every zone that is not resting; how many zones stored it (never
        raises for a cache failure: 0 says none could)."""
        data = self._encoder.encode(value)
        ttl = _memcached_ttl(self.ttl_s if ttl_s is None else ttl_s)
        raw = self._key(key)
        zones = [zone for zone in self.zones if not self._rests(zone)]
        done = await asyncio.gather(*(self._write(zone, raw, data, ttl) for zone in zones))
        return sum(done)

    def set_soon(self, key: Hashable, value: T, ttl_s: float | None = None) -> None:
        """`set` in the background: a look-aside fill the reader need not wait for."""
        self.set_many_soon({key: value}, ttl_s)

    def set_many_soon(self, values: Mapping[Hashable, T], ttl_s: float | None = None) -> None:
        """Store `values` in every zone that is not resting, in the background, without
        waiting for the servers' replies (memcached's ``noreply``): the cheap look-aside fill
        of what a reader just fetched. Skipped when `BACKGROUND_MAX` fills are pending (a
        burst of misses must not queue more work than the servers take: the next miss fills
        it again)."""
        if not values or not self._replicas or len(self._background) >= BACKGROUND_MAX:
            return
        ttl = _memcached_ttl(self.ttl_s if ttl_s is None else ttl_s)
        entries = [(self._key(key), self._encoder.encode(value)) for key, value in values.items()]
        self._in_background(self._fill(self.zones, entries, ttl, "writes"))

    async def delete(self, key: Hashable) -> None:
        """Remove `key` from every zone, resting ones too (a stale value is worse than a wait)."""
        raw = self._key(key)
        await asyncio.gather(
            *(self._call(zone, _delete(raw), count="writes") for zone in self.zones)
        )

    async def aclose(self) -> None:
        """Finish warming, end abandoned operations, close every zone's connections."""
        await asyncio.gather(*self._background, return_exceptions=True)
        for attempt in list(self._abandoned):
            attempt.cancel()
        await asyncio.gather(*self._abandoned, return_exceptions=True)
        await asyncio.gather(*(replica.aclose() for replica in self._replicas.values()))

    async def __aenter__(self) -> Cache[T]:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- zones

    def _rests(self, zone: str) -> bool:
        until = self._resting.get(zone)
        if until is None:
            return False
        if self._clock() >= until:
            del self._resting[zone]
            return False
        return True

    def _readable(self) -> list[str]:
        """Zones to read in order: the local one first, resting ones last (when all rest, a
        read still tries them rather than give up)."""
        return sorted(self.zones, key=lambda zone: (self._rests(zone), zone != self.zone))

    def _timeout(self) -> float:
        left = remaining()
        return self.timeout_s if left is None else max(0.0, min(self.timeout_s, left / 2))

    async def _call(
        self,
        zone: str,
        operation: Callable[[Replica], Awaitable[R]],
        *,
        count: str | None = None,
    ) -> R | None:
        """One operation on one zone under the timeout; None if it failed (counted as an
        error; the zone rests, unless only the caller's deadline was too short for it).

        An operation that runs out of time is left to finish rather than cancelled: cutting
        a memcached request off mid-answer costs its connection, and under load that churn
        makes every other request slower. The replica bounds it (`MemcachedReplica`: 1 s).
        """
        timeout = self._timeout()
        if timeout <= 0:
            return None
        attempt = asyncio.ensure_future(operation(self._replicas[zone]))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(attempt)
            raise
        if not done:
            self._abandon(attempt)
            failure: BaseException | None = TimeoutError()
        else:
            failure = attempt.exception()
        if failure is not None:
            self.metrics.add(self.namespace, zone, "errors")
            if not (isinstance(failure, TimeoutError) and timeout < self.timeout_s):
                self._resting[zone] = self._clock() + self.rest_s
            return None
        result = attempt.result()
        if count is not None:
            self.metrics.add(self.namespace, zone, count)
        self._resting.pop(zone, None)
        return result

    def _abandon(self, attempt: asyncio.Future[Any]) -> None:
        """Let an operation nobody waits for any more finish on its own (`aclose` ends it)."""
        self._abandoned.add(attempt)
        attempt.add_done_callback(self._abandoned.discard)
        attempt.add_done_callback(_consume)

    async def _write(self, zone: str, raw: bytes, data: bytes, ttl: int) -> bool:
        return await self._call(zone, _set(raw, data, ttl), count="writes") is not None

    def _warm(self, entries: dict[bytes, bytes]) -> None:
        """Write what another zone had back to the local zone, without holding up the read."""
        if not entries or self._rests(self.zone):
            return
        if len(self._background) < BACKGROUND_MAX:
            ttl = _memcached_ttl(self.ttl_s)
            self._in_background(self._fill([self.zone], list(entries.items()), ttl, "warmed"))

    async def _fill(
        self, zones: list[str], entries: list[tuple[bytes, bytes]], ttl: int, count: str
    ) -> None:
        """Write `entries` to each zone that is not resting, unacknowledged; a zone that fails
        rests (the replica bounds each write)."""
        for zone in zones:
            if self._rests(zone):
                continue
            replica = self._replicas[zone]
            try:
                for raw, data in entries:
                    await replica.set(raw, data, ttl, noreply=True)
            except Exception:
                self.metrics.add(self.namespace, zone, "errors")
                self._resting[zone] = self._clock() + self.rest_s
            else:
                self.metrics.add(self.namespace, zone, count, len(entries))

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        # A fresh context: the caller's deadline must not cut the work short.
        task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _consume(attempt: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned operation's outcome, so asyncio does not log it as lost."""
    if not attempt.cancelled():
        attempt.exception()


def _get_many(keys: list[bytes]) -> Callable[[Replica], Awaitable[dict[bytes, bytes]]]:
    return lambda replica: replica.get_many(keys)


def _set(key: bytes, data: bytes, ttl: int) -> Callable[[Replica], Awaitable[bool]]:
    """A write that answers True when done (`_call` answers None for a failure)."""

    async def write(replica: Replica) -> bool:
        await replica.set(key, data, ttl)
        return True

    return write


def _delete(key: bytes) -> Callable[[Replica], Awaitable[bool]]:
    async def delete(replica: Replica) -> bool:
        await replica.delete(key)
        return True

    return delete


def _memcached_ttl(seconds: float) -> int:
    """memcached reads an expiry above 30 days as a Unix time: longer TTLs are capped."""
    return max(1, min(int(seconds), 30 * 24 * 3600))
