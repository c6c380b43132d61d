"""merch's library: a visitor's rows through memcached, with a fallback that keeps a page useful.

A visitor's rows change when they rate a video, so they are cached in memcached only (EVCache,
`herd.cache`, shared by every edge instance in every zone): merch drops a visitor's entry there
when they rate, and the next page, from whichever edge, shows the new ranking. The process keeps
each visitor's last rows only to serve stale when merch cannot answer.

When merch cannot answer: the visitor's last rows if this process saw them (stale), else the
last non-personalized row this process saw ("Popular on Flix"), else no rows.
"""

from __future__ import annotations

import herd
from examples.flix import config
from examples.flix.cache import TtlCache
from examples.flix.ids import VideoId, VisitorId
from examples.flix.merch.interface import ROWS_CACHE, Merch, Rating, Row, Thumbs

POPULAR = "Popular on Flix"


class MerchLibrary:
    """Rows per visitor, look-aside cached in memcached for `ttl` seconds; ratings."""

    def __init__(
        self, merch: Merch, *, shared: herd.Cache[list[Row]] | None = None, ttl: float = 30.0
    ) -> None:
        self.merch = merch
        self.shared = shared
        self.ttl = ttl
        self.cache: TtlCache[VisitorId, list[Row]] = TtlCache(ttl)
        self._popular: Row | None = None

    @classmethod
    def from_env(cls) -> MerchLibrary:
        """Over the merch driver (``FLIX_MERCH_ADDR`` or the registry) and memcached
        (``HERD_CACHES``; without it, every page asks merch)."""
        shared = herd.cache(ROWS_CACHE, list[Row], ttl_s=30)
        return cls(config.driver(Merch, "merch"), shared=shared)

    async def rows(self, visitor: VisitorId) -> list[Row]:
        """The visitor's rows; a degraded answer (see the module) when merch is down."""
        if self.shared is not None:
            cached = await self.shared.get(visitor)
            if cached is not None:
                self.cache.put(visitor, cached)
                return cached
        return await herd.fallback(self._fetch(visitor), lambda _: self._fallback(visitor))

    async def rate(self, visitor: VisitorId, video: VideoId, thumbs: Thumbs, key: str) -> Rating:
        """Record a rating once per `key` (merch drops the visitor's cached rows)."""
        return await self.merch.rate(visitor, video, thumbs, key)

    async def _fetch(self, visitor: VisitorId) -> list[Row]:
        rows = await self.merch.rows(visitor)
        self.cache.put(visitor, rows)
        if self.shared is not None:
            self.shared.set_soon(visitor, rows)
        self._popular = next((r for r in rows if r.title == POPULAR), self._popular)
        return rows

    def _fallback(self, visitor: VisitorId) -> list[Row]:
        stale = self.cache.stale(visitor)
        if stale is not None:
            return stale
        return [] if self._popular is None else [self._popular]
