"""A small in-process look-aside cache: a dict with a time-to-live and a size bound.

Entries past their TTL are not served as fresh but are kept for `stale`, which a fallback uses
when the dependency behind the cache cannot answer ("serve stale rather than nothing").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Fresh for `ttl` seconds; at most `max_items` entries (oldest written evicted first)."""

    def __init__(
        self, ttl: float, max_items: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0 or max_items < 1:
            raise ValueError("ttl and max_items must be positive")
        self.ttl = ttl
        self.max_items = max_items
        self._clock = clock
        self._items: dict[K, tuple[float, V]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        """The fresh value of `key`, or None."""
        entry = self._items.get(key)
        if entry is None or entry[0] < self._clock():
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def get_many(self, keys: Iterable[K]) -> dict[K, V]:
        """The fresh values among `keys`."""
        found: dict[K, V] = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def stale(self, key: K) -> V | None:
        """The last value of `key` whatever its age, or None."""
        entry = self._items.get(key)
        return None if entry is None else entry[1]

    def put(self, key: K, value: V) -> None:
        """Store `value`, fresh for `ttl` from now."""
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self.ttl, value)
        while len(self._items) > self.max_items:
            del self._items[next(iter(self._items))]
