"""merch's implementation: ``python -m examples.flix.merch.service``.

Reads rows and facets from the seeded catalogue (``FLIX_DB``, read-only) and the ratings it owns
from its `herd.store` ("merch", on `HERD_STORE_URL` or SQLite files in ``FLIX_WRITES``; see
`examples.flix.writes`). A rating, once stored, drops the visitor's rows from memcached
(`ROWS_CACHE`, every zone), so the visitor's next page ranks with it, and is published as a
`rated` event. merch's instances consume `rated` as one group ("merch"): the instance that gets
it computes the visitor's rows anew and puts them in memcached, so a page that cached rows read
just before the rating (which the drop cannot stop) is put right within the event's latency,
not the cache's 30 s. ``HERD_PORT``: default 0 (any port).
"""

from __future__ import annotations

import time

import herd
from examples.flix.events import RATED, Rated
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
from examples.flix.writes import Writes, Written, now_ms, where

#: How long after an event was stored a ranking must have begun to count as having read its
#: rating: room for this machine's clock against the engine's, and for a page that read the
#: rows before the rating and fills memcached late (a later ranking puts them right).
RANKED_AFTER_S = 1.0
#: Visitors whose last ranking is remembered at most.
RANKED_KEPT = 10_000


def _facet(video: VideoId, record: MerchRecord) -> MerchableVideo:
    return MerchableVideo(
        id=video, genre=record.genre, rating=record.rating, popularity=record.popularity
    )


class MerchService(Merch):
    """Reads a visitor's rows (one partition) and ranks each: liked videos first, disliked
    ones out, the rest by popularity."""

    def __init__(
        self,
        store: Store,
        own: herd.Store,
        events: herd.Events,
        rows_cache: herd.Cache[list[Row]] | None = None,
    ) -> None:
        self.rows_table = store.table(MERCH_ROWS)
        self.videos = store.table(MERCH_VIDEOS)
        self.own = own
        self.ratings = Writes(own, "ratings")
        self.events = events
        self.rows_cache = rows_cache
        self._ranked_at: dict[VisitorId, float] = {}
        """visitor -> when (Unix seconds) the last ranking put in memcached began."""

    async def astart(self) -> None:
        if self.rows_cache is not None:
            self.events.subscribe(RATED, Rated, self._refresh, group="merch")

    async def _refresh(self, event: herd.Event[Rated]) -> None:
        """Put the rated visitor's rows, ranked anew, in memcached (every zone), unless a
        ranking of them that began after this event was stored has already put them there: it
        read the rating, stored before its event. A backlog of a visitor's ratings (a stream's
        election, a consumer that was down) is then one ranking, not one per rating."""
        assert self.rows_cache is not None
        visitor = VisitorId(event.value.visitor)
        if self._ranked_at.get(visitor, 0.0) > event.published + RANKED_AFTER_S:
            return
        began = time.time()
        with herd.deadline(5.0):
            await self.rows_cache.set(visitor, await self.rows(visitor))
        if len(self._ranked_at) >= RANKED_KEPT:
            self._ranked_at.clear()  # forgetting costs a ranking more, never a stale row
        self._ranked_at[visitor] = began

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
        newest_first = await self.ratings.newest(visitor)
        return {write.video: write.thumbs for write in reversed(newest_first)}

    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]:
        found = self.videos.get_many(videos)
        return [_facet(v, found[v]) for v in dict.fromkeys(videos) if v in found]

    async def rate(self, visitor: VisitorId, video: VideoId, thumbs: Thumbs, key: str) -> Rating:
        check_key(key)
        check_ids(visitor=visitor, video=video)
        stored, applied = await self.ratings.record(key, Written(visitor, video, now_ms(), thumbs))
        if (stored.visitor, stored.video, stored.thumbs) != (visitor, video, thumbs):
            raise KeyReused(f"key {key} already recorded another rating", key=key)
        if self.rows_cache is not None:
            await self.rows_cache.delete(visitor)
        # Published by every try: the key as the event's id stores it once.
        await self.events.publish(RATED, Rated(visitor, video, thumbs, stored.at_ms), id=key)
        return Rating(key, visitor, video, stored.thumbs, stored.at_ms, applied=applied)

    async def aclose(self) -> None:
        await self.events.aclose()
        await self.own.aclose()


def main() -> None:
    rows_cache = herd.cache(ROWS_CACHE, list[Row], ttl_s=30)
    engine = where()
    own, events = herd.store("merch", where=engine), herd.events(where=engine)
    herd.run(MerchService(Store.from_env(), own, events, rows_cache))


if __name__ == "__main__":
    main()
