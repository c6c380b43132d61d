"""merch's library: a visitor's rows, cached briefly, with a fallback that keeps a page useful.

When merch cannot answer: the visitor's last rows if cached (stale), else the last
non-personalized row this process saw ("Popular on Flix"), else no rows.
"""

from __future__ import annotations

import herd
from examples.flix import config
from examples.flix.cache import TtlCache
from examples.flix.ids import VisitorId
from examples.flix.merch.interface import Merch, Row

POPULAR = "Popular on Flix"


class MerchLibrary:
    """Rows per visitor, look-aside cached for `ttl` seconds."""

    def __init__(self, merch: Merch, *, ttl: float = 30.0) -> None:
        self.merch = merch
        self.cache: TtlCache[VisitorId, list[Row]] = TtlCache(ttl)
        self._popular: Row | None = None

    @classmethod
    def from_env(cls) -> MerchLibrary:
        """Over the merch driver (``FLIX_MERCH_ADDR`` or the registry)."""
        return cls(config.driver(Merch, "merch"))

    async def rows(self, visitor: VisitorId) -> list[Row]:
        """The visitor's rows; a degraded answer (see the module) when merch is down."""
        cached = self.cache.get(visitor)
        if cached is not None:
            return cached
        return await herd.fallback(self._fetch(visitor), lambda _: self._fallback(visitor))

    async def _fetch(self, visitor: VisitorId) -> list[Row]:
        rows = await self.merch.rows(visitor)
        self.cache.put(visitor, rows)
        self._popular = next((r for r in rows if r.title == POPULAR), self._popular)
        return rows

    def _fallback(self, visitor: VisitorId) -> list[Row]:
        stale = self.cache.stale(visitor)
        if stale is not None:
            return stale
        return [] if self._popular is None else [self._popular]
