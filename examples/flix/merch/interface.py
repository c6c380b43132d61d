# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""merch's interface: the rows a visitor's home page shows. Callers import this and nothing else."""

from __future__ import annotations

from typing import Literal

import msgspec

import herd
from examples.flix.idempotency import BadKey, InvalidWrite, KeyReused
from examples.flix.ids import VideoId, VisitorId

#: Where callers cache a visitor's rows in memcached (`herd.cache`); merch drops a visitor's
#: entry when they rate a video.
ROWS_CACHE = "merch.rows"

#: A rating: thumbs up (1) or down (-1).
Thumbs = Literal[1, -1]


class Row(msgspec.Struct, frozen=True):
    """One row of a home page: a title and video ids, best first. Presentation is not here.

    `liked` are the videos of the row the visitor gave a thumbs up (ranked first); videos they
    gave a thumbs down are left out of their rows.
    """

    title: str
    videos: list[VideoId]
    liked: list[VideoId] = msgspec.field(default_factory=list)


class Rating(msgspec.Struct, frozen=True):
    """One rating as stored; `applied` is False for a retry of a key already recorded."""

    key: str
    visitor: VisitorId
    video: VideoId
    thumbs: int
    rated_at_ms: int
    applied: bool


class MerchableVideo(herd.Facet, of=VideoId):
    """A video as merchandising sees it: the factors ranking uses, none of what a page shows."""

    id: VideoId  # herd adds it from `of=`; declared so the type checker sees it too
    genre: str
    rating: str
    popularity: float


__all__ = [
    "ROWS_CACHE",
    "BadKey",
    "InvalidWrite",
    "KeyReused",
    "Merch",
    "MerchableVideo",
    "Rating",
    "Row",
    "Thumbs",
]


class Merch(herd.Interface, name="merch"):
    """Personalized rows."""

    @herd.method(idempotent=True)
    async def rows(self, visitor: VisitorId) -> list[Row]:
        """The visitor's rows in page order, each ranked; everyone's rows for an unknown visitor."""

    @herd.method(idempotent=True)
    async def merchable(self, videos: list[VideoId]) -> list[MerchableVideo]:
        """The merchandising facets of the known videos among `videos`."""

    @herd.method(idempotent=True)
    async def rate(self, visitor: VisitorId, video: VideoId, thumbs: Thumbs, key: str) -> Rating:
        """Record a thumbs up (1) or down (-1), durably, once per idempotency `key`; the
        visitor's rows rank with it from the next read. Raises `KeyReused`, `BadKey`."""
