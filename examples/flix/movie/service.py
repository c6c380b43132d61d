"""movie's implementation over the store: ``python -m examples.flix.movie.service``.

Environment: ``FLIX_DB`` (the database), ``HERD_PORT`` (default 0: any free port).
"""

from __future__ import annotations

import herd
from examples.flix.ids import VideoId
from examples.flix.movie.interface import Movies, NotFound, PresentationVideo
from examples.flix.store import MOVIE_VIDEOS, Store, VideoRecord


def _facet(video: VideoId, record: VideoRecord) -> PresentationVideo:
    return PresentationVideo(
        id=video,
        title=record.title,
        synopsis=record.synopsis,
        year=record.year,
        boxshot=record.boxshot,
    )


class MovieService(Movies):
    """Reads the `movie_videos` table: one indexed read per batch."""

    def __init__(self, store: Store) -> None:
        self.videos = store.table(MOVIE_VIDEOS)

    async def presentation(self, videos: list[VideoId]) -> list[PresentationVideo]:
        found = self.videos.get_many(videos)
        return [_facet(v, found[v]) for v in dict.fromkeys(videos) if v in found]

    async def video(self, video: VideoId) -> PresentationVideo:
        record = self.videos.get(video)
        if record is None:
            raise NotFound(f"no video {video}", video=video)
        return _facet(video, record)


def main() -> None:
    herd.run(MovieService(Store.from_env()))


if __name__ == "__main__":
    main()
