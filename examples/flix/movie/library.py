"""movie's library: the layer above the driver that application code uses.

As in the talk's swimlane: look in the process's own cache, then in the zone's memcached
(`herd.cache`: EVCache, shared by every instance in every zone, docs/data.md); fetch what is
still missing from the movie service in batches (`herd.fill`); keep it at both levels for next
time. When movie cannot answer, serve what the process cache last held (stale) and leave the
rest out, so a row shows fewer videos instead of failing. A cache that is down is a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

import herd
from examples.flix import config
from examples.flix.cache import TtlCache
from examples.flix.ids import VideoId
from examples.flix.movie.interface import Movies, PresentationVideo

#: Where facets live in memcached: they change only with a new catalogue, so an hour.
CACHE_NAMESPACE = "movie.presentation"


class MovieLibrary:
    """Presentation facets by video id, cached look-aside, batched, with a stale fallback."""

    def __init__(
        self,
        movies: Movies,
        *,
        shared: herd.Cache[PresentationVideo] | None = None,
        ttl: float = 300.0,
        batch: int = 50,
    ) -> None:
        self.movies = movies
        self.batch = batch
        self.cache: TtlCache[VideoId, PresentationVideo] = TtlCache(ttl)
        self.shared = shared

    @classmethod
    def from_env(cls) -> MovieLibrary:
        """Over the movie driver (``FLIX_MOVIE_ADDR`` or the registry) and memcached
        (``HERD_CACHES``; without it, the process cache only)."""
        shared = herd.cache(CACHE_NAMESPACE, PresentationVideo, ttl_s=3600)
        return cls(config.driver(Movies, "movie"), shared=shared)

    async def presentation(self, videos: Sequence[VideoId]) -> list[PresentationVideo | None]:
        """A facet per id in `videos`, in order; None where the video is unknown or unavailable."""
        found = self.cache.get_many(videos)
        missing = [v for v in dict.fromkeys(videos) if v not in found]
        if missing and self.shared is not None:
            for video, facet in (await self.shared.get_many(missing)).items():
                self.cache.put(video, facet)
                found[video] = facet
            missing = [v for v in missing if v not in found]
        if missing:
            served_stale = False

            def stale(_: Exception) -> list[PresentationVideo | None]:
                nonlocal served_stale
                served_stale = True
                return [self.cache.stale(v) for v in missing]

            fetched = await herd.fallback(
                herd.fill(missing, self.movies.presentation, batch=self.batch), stale
            )
            fresh: list[PresentationVideo] = []
            for video, answer in zip(missing, fetched, strict=True):
                if answer is not None:
                    self.cache.put(video, answer)
                    found[video] = answer
                    fresh.append(answer)
            if self.shared is not None and not served_stale:
                self.shared.set_many_soon({facet.id: facet for facet in fresh})
        return [found.get(v) for v in videos]

    async def video(self, video: VideoId) -> PresentationVideo | None:
        """One video's facet, or None."""
        return (await self.presentation([video]))[0]
