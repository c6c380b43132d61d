"""merch's implementation: ``python -m examples.flix.merch.service``.

Reads rows and facets from the seeded catalogue (``FLIX_DB``, read-only) and ratings from
``$FLIX_WRITES/merch.db`` (WAL, ``synchronous=FULL``, shared by every merch instance; see
`examples.flix.writes`). A rating drops the visitor's rows from memcached (`ROWS_CACHE`, every
zone) once it is stored, so the next page ranks with it. ``HERD_PORT``: default 0 (any port).
"""

from __future__ import annotations

import time

import herd
from examples.flix.idempotency import KeyReused, check_ids, check_key
from examples.flix.ids import MAX_ID, VideoId, VisitorId
from examples.flix.merch.interface import (
    ROWS_CACHE,
    Merch,
    MerchableVideo,
    Rating,
    Row,
    Thumbs,
)
from examples.flix.store import EVERYONE, MERCH_ROWS, MERCH_VIDEOS, MerchRecord, Store
from examples.flix.writes import WriteStore

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ratings (key TEXT PRIMARY KEY, visitor INTEGER NOT NULL, "
    "video INTEGER NOT NULL, thumbs INTEGER NOT NULL, rated_at_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ratings_by_visitor ON ratings (visitor, rated_at_ms)",
)


def _facet(video: VideoId, record: MerchRecord) -> MerchableVideo:
    return MerchableVideo(
        id=video, genre=record.genre, rating=record.rating, popularity=record.popularity
    )


class MerchService(Merch):
    """Reads a visitor's rows (one partition) and ranks each: liked videos first, disliked
    ones out, the rest by popularity."""

    def __init__(
        self, store: Store, writes: WriteStore, rows_cache: herd.Cache[list[Row]] | None = None
    ) -> None:
        self.rows_table = store.table(MERCH_ROWS)
        self.videos = store.table(MERCH_VIDEOS)
        self.writes = writes
        self.rows_cache = rows_cache

    async def rows(self, visitor: VisitorId) -> list[Row]:
        stored = self.rows_table.partition(visitor) or self.rows_table.partition(EVERYONE)
        thumbs = await self._thumbs(visitor)
        every = [VideoId(v) for _, row in stored for v in row.videos]
        facets = {f.id: f for f in await herd.fill(every, self.merchable, batch=500) if f}
        ranked = []
        for _, row in stored:
            videos = [VideoId(v) for v in row.videos if v in facets and thumbs.get(v) != -1]
            videos.sort(key=lambda v: (thumbs.get(v) != 1, -facets[v].popularity))
            liked = [v for v in videos if thumbs.get(v) == 1]
            ranked.append(Row(title=row.title, videos=videos, liked=liked))
        return ranked

    async def _thumbs(self, visitor: VisitorId) -> dict[int, int]:
        """The visitor's latest rating of each video they rated."""
        if not 1 <= visitor <= MAX_ID:
            return {}
        rated = self.writes.query(
            "SELECT video, thumbs FROM ratings WHERE visitor = ? ORDER BY rated_at_ms, rowid",
            (visitor,),
        )
        return dict(rated)

    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]:
        found = self.videos.get_many(videos)
        return [_facet(v, found[v]) for v in dict.fromkeys(videos) if v in found]

    async def rate(self, visitor: VisitorId, video: VideoId, thumbs: Thumbs, key: str) -> Rating:
        check_key(key)
        check_ids(visitor=visitor, video=video)
        applied = await self.writes.execute(
            "INSERT INTO ratings (key, visitor, video, thumbs, rated_at_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, visitor, video, thumbs, int(time.time() * 1000)),
        )
        ((stored_visitor, stored_video, stored_thumbs, at),) = await self.writes.written(
            "SELECT visitor, video, thumbs, rated_at_ms FROM ratings WHERE key = ?", (key,)
        )
        if (stored_visitor, stored_video, stored_thumbs) != (visitor, video, thumbs):
            raise KeyReused(f"key {key} already recorded another rating", key=key)
        if self.rows_cache is not None:
            # Stored first, then dropped in every zone. A reader that read the rows just
            # before the rating and caches them just after this leaves them stale for the
            # cache's TTL at most (30 s).
            await self.rows_cache.delete(visitor)
        return Rating(key, visitor, video, stored_thumbs, at, applied=applied == 1)


def main() -> None:
    rows_cache = herd.cache(ROWS_CACHE, list[Row], ttl_s=30)
    herd.run(MerchService(Store.from_env(), WriteStore.from_env("merch", SCHEMA), rows_cache))


if __name__ == "__main__":
    main()
