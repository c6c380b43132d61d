"""history's implementation over the store: ``python -m examples.flix.history.service``.

Environment: ``FLIX_DB`` (the database), ``HERD_PORT`` (default 0: any free port), and
``FLIX_HISTORY_DELAY`` (seconds added to every answer, to play a slow dependency; default 0).
"""

from __future__ import annotations

import asyncio
import os

import herd
from examples.flix.history.interface import History
from examples.flix.ids import VideoId, VisitorId
from examples.flix.store import HISTORY_VIEWS, Store

MAX_LIMIT = 100


class HistoryService(History):
    """Reads the newest rows of the visitor's `history_views` partition."""

    def __init__(self, store: Store, delay: float = 0.0) -> None:
        self.views = store.table(HISTORY_VIEWS)
        self.delay = delay

    async def recent(self, visitor: VisitorId, limit: int = 10) -> list[VideoId]:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        limit = max(0, min(limit, MAX_LIMIT))
        return [VideoId(view.video) for _, view in self.views.partition(visitor, limit)]


def main() -> None:
    delay = float(os.environ.get("FLIX_HISTORY_DELAY", "0") or 0)
    service = HistoryService(Store.from_env(), delay=delay)
    herd.run(service)


if __name__ == "__main__":
    main()
