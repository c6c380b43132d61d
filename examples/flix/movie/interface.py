# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""movie's interface: what a page needs to present a video. Callers import this and nothing else."""

from __future__ import annotations

import herd
from examples.flix.ids import VideoId


class PresentationVideo(herd.Facet, of=VideoId):
    """A video as a page presents it: filled in on demand, in batches, from a `VideoId`."""

    id: VideoId  # herd adds it from `of=`; declared so the type checker sees it too
    title: str
    synopsis: str
    year: int
    boxshot: str


class NotFound(herd.ServiceError):
    """No such video."""

    video: VideoId


class Movies(herd.Interface, name="movie"):
    """Video metadata."""

    @herd.method(idempotent=True)
    async def presentation(self, videos: list[VideoId]) -> list[PresentationVideo]:
        """The presentation facets of the known videos among `videos` (unknown ones left out).

        Batch with `herd.fill`, which puts the answers back in the order asked.
        """

    @herd.method(idempotent=True)
    async def video(self, video: VideoId) -> PresentationVideo:
        """One video's presentation facet; raises `NotFound`."""
