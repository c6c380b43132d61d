# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""edge's interface: a visitor's home page as data. The HTTP front serves the same page as JSON
(``/api/home?visitor=N``) and as HTML (``/``)."""

from __future__ import annotations

import msgspec

import herd
from examples.flix.ids import VideoId, VisitorId
from examples.flix.movie.interface import PresentationVideo

#: The optional row history feeds.
HISTORY_ROW = "Continue Watching"


class HomeRow(msgspec.Struct):
    """A row as the page shows it: merch's (or history's) ids, presented by movie."""

    title: str
    kind: str  # "history" or "merch"
    videos: list[PresentationVideo]
    liked: list[VideoId] = msgspec.field(default_factory=list)
    """Videos of the row the visitor gave a thumbs up."""


class HomePage(msgspec.Struct):
    """One visitor's home page.

    `omitted` names the optional parts left out because their service could not answer in time
    (``"history"``); `name` is empty when identity could not answer.
    """

    visitor: VisitorId
    name: str
    rows: list[HomeRow]
    omitted: list[str]


class Session(msgspec.Struct, frozen=True):
    """A signed-in visitor, kept in memcached under a random id (the session cookie's value),
    so any edge instance serves it and none keeps it."""

    visitor: VisitorId
    name: str
    signed_in_at: int


class NoSuchVisitor(herd.ServiceError):
    """The visitor does not exist."""

    visitor: VisitorId


class Edge(herd.Interface, name="edge"):
    """Pages, built per visitor from the services behind the edge."""

    @herd.method(idempotent=True)
    async def home(self, visitor: VisitorId) -> HomePage:
        """The visitor's home page; raises `NoSuchVisitor`."""
