"""history's implementation: ``python -m examples.flix.history.service``.

Reads the seeded viewings (``FLIX_DB``, read-only) and the plays recorded since, which it owns:
its `herd.store` ("history", on `HERD_STORE_URL` or SQLite files in ``FLIX_WRITES``; see
`examples.flix.writes`), and publishes each new play as a `played` event. Environment also:
``HERD_PORT`` (default 0: any free port) and ``FLIX_HISTORY_DELAY`` (seconds added to every
read, to play a slow dependency; default 0).
"""

from __future__ import annotations

import asyncio
import os

import herd
from examples.flix.events import PLAYED, Played
from examples.flix.history.interface import History, Play
from examples.flix.idempotency import KeyReused, check_ids, check_key
from examples.flix.ids import MAX_ID, VideoId, VisitorId
from examples.flix.store import HISTORY_VIEWS, Store
from examples.flix.writes import Writes, Written, now_ms, where

MAX_LIMIT = 100


class HistoryService(History):
    """The newest plays of a visitor, then their seeded viewings."""

    def __init__(
        self, store: Store, own: herd.Store, events: herd.Events, delay: float = 0.0
    ) -> None:
        self.views = store.table(HISTORY_VIEWS)
        self.own = own
        self.plays = Writes(own, "plays")
        self.events = events
        self.delay = delay

    async def recent(self, visitor: VisitorId, limit: int = 10) -> list[VideoId]:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        limit = max(0, min(limit, MAX_LIMIT))
        if not 1 <= visitor <= MAX_ID or limit == 0:
            return []
        played = [write.video for write in (await self.plays.newest(visitor))[:limit]]
        seeded = [view.video for _, view in self.views.partition(visitor, limit)]
        newest_first = dict.fromkeys(played + seeded)
        return [VideoId(video) for video in list(newest_first)[:limit]]

    async def play(self, visitor: VisitorId, video: VideoId, key: str) -> Play:
        check_key(key)
        check_ids(visitor=visitor, video=video)
        stored, applied = await self.plays.record(key, Written(visitor, video, now_ms()))
        if (stored.visitor, stored.video) != (visitor, video):
            raise KeyReused(f"key {key} already recorded another viewing", key=key)
        # Published by every try: the key as the event's id stores it once.
        await self.events.publish(PLAYED, Played(visitor, video, stored.at_ms), id=key)
        return Play(key, visitor, video, stored.at_ms, applied=applied)

    async def aclose(self) -> None:
        await self.events.aclose()
        await self.own.aclose()


def main() -> None:
    delay = float(os.environ.get("FLIX_HISTORY_DELAY", "0") or 0)
    engine = where()
    own, events = herd.store("history", where=engine), herd.events(where=engine)
    herd.run(HistoryService(Store.from_env(), own, events, delay=delay))


if __name__ == "__main__":
    main()
