"""history's implementation: ``python -m examples.flix.history.service``.

Reads the seeded viewings (``FLIX_DB``, read-only) and the plays recorded since
(``$FLIX_WRITES/history.db``: WAL, ``synchronous=FULL``, shared by every history instance; see
`examples.flix.writes`). Environment also: ``HERD_PORT`` (default 0: any free port) and
``FLIX_HISTORY_DELAY`` (seconds added to every read, to play a slow dependency; default 0).
"""

from __future__ import annotations

import asyncio
import os
import time

import herd
from examples.flix.history.interface import History, Play
from examples.flix.idempotency import KeyReused, check_ids, check_key
from examples.flix.ids import MAX_ID, VideoId, VisitorId
from examples.flix.store import HISTORY_VIEWS, Store
from examples.flix.writes import WriteStore

MAX_LIMIT = 100

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS plays (key TEXT PRIMARY KEY, visitor INTEGER NOT NULL, "
    "video INTEGER NOT NULL, played_at_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS plays_by_visitor ON plays (visitor, played_at_ms)",
)


class HistoryService(History):
    """The newest plays of a visitor, then their seeded viewings."""

    def __init__(self, store: Store, writes: WriteStore, delay: float = 0.0) -> None:
        self.views = store.table(HISTORY_VIEWS)
        self.writes = writes
        self.delay = delay

    async def recent(self, visitor: VisitorId, limit: int = 10) -> list[VideoId]:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        limit = max(0, min(limit, MAX_LIMIT))
        if not 1 <= visitor <= MAX_ID or limit == 0:
            return []
        played = self.writes.query(
            "SELECT video FROM plays WHERE visitor = ? "
            "ORDER BY played_at_ms DESC, rowid DESC LIMIT ?",
            (visitor, limit),
        )
        seeded = [view.video for _, view in self.views.partition(visitor, limit)]
        newest_first = dict.fromkeys([video for (video,) in played] + seeded)
        return [VideoId(video) for video in list(newest_first)[:limit]]

    async def play(self, visitor: VisitorId, video: VideoId, key: str) -> Play:
        check_key(key)
        check_ids(visitor=visitor, video=video)
        applied = await self.writes.execute(
            "INSERT INTO plays (key, visitor, video, played_at_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, visitor, video, int(time.time() * 1000)),
        )
        ((stored_visitor, stored_video, at),) = await self.writes.written(
            "SELECT visitor, video, played_at_ms FROM plays WHERE key = ?", (key,)
        )
        if (stored_visitor, stored_video) != (visitor, video):
            raise KeyReused(f"key {key} already recorded another viewing", key=key)
        return Play(key, visitor, video, at, applied=applied == 1)


def main() -> None:
    delay = float(os.environ.get("FLIX_HISTORY_DELAY", "0") or 0)
    service = HistoryService(Store.from_env(), WriteStore.from_env("history", SCHEMA), delay=delay)
    herd.run(service)


if __name__ == "__main__":
    main()
