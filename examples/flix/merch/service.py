"""merch's implementation over the store: ``python -m examples.flix.merch.service``.

Environment: ``FLIX_DB`` (the database), ``HERD_PORT`` (default 0: any free port).
"""

from __future__ import annotations

import herd
from examples.flix.ids import VideoId, VisitorId
from examples.flix.merch.interface import Merch, MerchableVideo, Row
from examples.flix.store import EVERYONE, MERCH_ROWS, MERCH_VIDEOS, MerchRecord, Store


def _facet(video: VideoId, record: MerchRecord) -> MerchableVideo:
    return MerchableVideo(
        id=video, genre=record.genre, rating=record.rating, popularity=record.popularity
    )


class MerchService(Merch):
    """Reads a visitor's rows (one partition) and ranks each by its videos' popularity."""

    def __init__(self, store: Store) -> None:
        self.rows_table = store.table(MERCH_ROWS)
        self.videos = store.table(MERCH_VIDEOS)

    async def rows(self, visitor: VisitorId) -> list[Row]:
        stored = self.rows_table.partition(visitor) or self.rows_table.partition(EVERYONE)
        every = [VideoId(v) for _, row in stored for v in row.videos]
        facets = {f.id: f for f in await herd.fill(every, self.merchable, batch=500) if f}
        ranked = []
        for _, row in stored:
            videos = [VideoId(v) for v in row.videos if v in facets]
            videos.sort(key=lambda v: -facets[v].popularity)
            ranked.append(Row(title=row.title, videos=videos))
        return ranked

    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]:
        found = self.videos.get_many(videos)
        return [_facet(v, found[v]) for v in dict.fromkeys(videos) if v in found]


def main() -> None:
    herd.run(MerchService(Store.from_env()))


if __name__ == "__main__":
    main()
