"""movie's library: the layer above the driver that application code uses.

As in the talk's swimlane: look in the local cache; fetch what is missing from the movie
service in batches (`herd.fill`); keep it for next time. When movie cannot answer, serve what the
cache last held (stale) and leave the rest out, so a row shows fewer videos instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

import herd
from examples.flix import config
from examples.flix.cache import TtlCache
from examples.flix.ids import VideoId
from examples.flix.movie.interface import Movies, PresentationVideo


class MovieLibrary:
    """Presentation facets by video id, cached look-aside, batched, with a stale fallback."""

    def __init__(self, movies: Movies, *, ttl: float = 300.0, batch: int = 50) -> None:
        self.movies = movies
        self.batch = batch
        self.cache: TtlCache[VideoId, PresentationVideo] = TtlCache(ttl)

    @classmethod
    def from_env(cls) -> MovieLibrary:
        """Over the movie driver (``FLIX_MOVIE_ADDR`` or the registry)."""
        return cls(config.driver(Movies, "movie"))

    async def presentation(self, videos: Sequence[VideoId]) -> list[PresentationVideo | None]:
        """A facet per id in `videos`, in order; None where the video is unknown or unavailable."""
        found = self.cache.get_many(videos)
        missing = [v for v in dict.fromkeys(videos) if v not in found]
        if missing:
            fetched = await herd.fallback(
                herd.fill(missing, self.movies.presentation, batch=self.batch),
                lambda _: [self.cache.stale(v) for v in missing],
            )
            for video, facet in zip(missing, fetched, strict=True):
                if facet is not None:
                    self.cache.put(video, facet)
                    found[video] = facet
        return [found.get(v) for v in videos]

    async def video(self, video: VideoId) -> PresentationVideo | None:
        """One video's facet, or None."""
        return (await self.presentation([video]))[0]
