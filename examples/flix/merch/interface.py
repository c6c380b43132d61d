# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""merch's interface: the rows a visitor's home page shows. Callers import this and nothing else."""

from __future__ import annotations

import msgspec

import herd
from examples.flix.ids import VideoId, VisitorId


class Row(msgspec.Struct, frozen=True):
    """One row of a home page: a title and video ids, best first. Presentation is not here."""

    title: str
    videos: list[VideoId]


class MerchableVideo(herd.Facet, of=VideoId):
    """A video as merchandising sees it: the factors ranking uses, none of what a page shows."""

    id: VideoId  # herd adds it from `of=`; declared so the type checker sees it too
    genre: str
    rating: str
    popularity: float


class Merch(herd.Interface, name="merch"):
    """Personalized rows."""

    @herd.method(idempotent=True)
    async def rows(self, visitor: VisitorId) -> list[Row]:
        """The visitor's rows in page order, each ranked; everyone's rows for an unknown visitor."""

    @herd.method(idempotent=True)
    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]:
        """The merchandising facets of the known videos among `videos`."""
