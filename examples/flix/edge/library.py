"""edge's library: assembles a home page from the libraries and drivers of the services behind.

One page is: who the visitor is (identity), their rows (merch), what they watched (history),
all asked at once; then every video on the page presented by movie in batches (`herd.fill`
inside `MovieLibrary`). History is optional: `herd.fallback` turns "history is down, slow or
its circuit is open" into a page without the "Continue Watching" row.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import herd
from examples.flix import config
from examples.flix.edge.interface import HISTORY_ROW, HomePage, HomeRow, NoSuchVisitor, Session
from examples.flix.history.interface import History, Play
from examples.flix.identity.interface import Person, UnknownVisitor
from examples.flix.identity.library import IdentityLibrary
from examples.flix.ids import VideoId, VisitorId
from examples.flix.merch.interface import Rating, Thumbs
from examples.flix.merch.library import MerchLibrary
from examples.flix.movie.interface import PresentationVideo
from examples.flix.movie.library import MovieLibrary

T = TypeVar("T")

HISTORY_LENGTH = 10


#: How long a session lives in memcached without a sign-out.
SESSION_TTL_S = 12 * 3600
SESSIONS = "edge.session"
#: A session id: `secrets.token_urlsafe(32)`.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


class SessionsUnavailable(herd.HerdError):
    """No memcached zone could store the new session: nobody can sign in right now."""


class HomePages:
    """Builds `HomePage`s; signs visitors in and out; takes their writes to the owners."""

    def __init__(
        self,
        identity: IdentityLibrary,
        merch: MerchLibrary,
        movies: MovieLibrary,
        history: History,
        sessions: herd.Cache[Session] | None = None,
    ) -> None:
        self.identity = identity
        self.merch = merch
        self.movies = movies
        self.history = history
        self.sessions = sessions or herd.Cache(SESSIONS, Session, replicas={})

    @classmethod
    def from_env(cls) -> HomePages:
        """Wired by configuration (see `examples.flix.config` and ``FLIX_IDENTITY``)."""
        return cls(
            IdentityLibrary.from_env(),
            MerchLibrary.from_env(),
            MovieLibrary.from_env(),
            config.driver(History, "history"),
            # Longer than a look-aside cache's: a session that cannot be read costs a retry.
            herd.cache(SESSIONS, Session, ttl_s=SESSION_TTL_S, timeout_s=0.25),
        )

    # -- sessions

    async def sign_in(self, visitor: VisitorId, password: str) -> tuple[str, Session]:
        """A new session id and its session; raises `BadCredentials`, `SessionsUnavailable`."""
        person = await self.identity.sign_in(visitor, password)
        session = Session(visitor, person.name, int(time.time()))
        session_id = secrets.token_urlsafe(32)
        if not await self.sessions.set(session_id, session):
            raise SessionsUnavailable("sessions are kept in memcached, and none answers")
        return session_id, session

    async def session(self, session_id: str) -> Session | None:
        """The session behind a cookie's value, or None (unknown or expired); raises
        `herd.Unavailable` when no memcached zone answers (the visitor is not signed out: the
        front door tries another edge instance, and the visitor at worst sees a 503)."""
        if SESSION_ID.fullmatch(session_id) is None:
            return None
        return await self.sessions.get(session_id, strict=True)

    async def sign_out(self, session_id: str) -> None:
        if SESSION_ID.fullmatch(session_id) is not None:
            await self.sessions.delete(session_id)

    # -- writes: to the owning service, once per idempotency key

    async def play(self, visitor: VisitorId, video: VideoId, key: str) -> Play:
        return await self.history.play(visitor, video, key)

    async def rate(self, visitor: VisitorId, video: VideoId, thumbs: Thumbs, key: str) -> Rating:
        return await self.merch.rate(visitor, video, thumbs, key)

    async def home(self, visitor: VisitorId) -> HomePage:
        """The visitor's page; raises `NoSuchVisitor`."""
        person_task = _start(self.identity.person(visitor))
        rows_task = _start(self.merch.rows(visitor))
        recent_task = _start(herd.fallback(self._recent(visitor), otherwise=None))
        tasks: list[asyncio.Future[Any]] = [person_task, rows_task, recent_task]
        try:
            try:
                person: Person | None = await person_task
            except UnknownVisitor:
                raise NoSuchVisitor(f"no visitor {visitor}", visitor=visitor) from None
            rows = await rows_task
            merch_ids = [video for row in rows for video in row.videos]
            shown_task = _start(self.movies.presentation(merch_ids))
            tasks.append(shown_task)
            recent = await recent_task
            shown = _by_id(await shown_task)
            if recent:
                shown.update(_by_id(await self.movies.presentation(recent)))
        finally:
            for task in tasks:
                task.cancel()
        page_rows: list[HomeRow] = []
        if recent:
            page_rows.append(HomeRow(HISTORY_ROW, "history", _present(recent, shown)))
        page_rows.extend(
            HomeRow(row.title, "merch", _present(row.videos, shown), row.liked) for row in rows
        )
        return HomePage(
            visitor=visitor,
            name=person.name if person is not None else "",
            rows=[row for row in page_rows if row.videos],
            omitted=["history"] if recent is None else [],
        )

    async def _recent(self, visitor: VisitorId) -> list[VideoId] | None:
        return await self.history.recent(visitor, HISTORY_LENGTH)


def _start(call: Awaitable[T]) -> asyncio.Future[T]:
    return asyncio.ensure_future(call)


def _by_id(facets: Sequence[PresentationVideo | None]) -> dict[VideoId, PresentationVideo]:
    return {facet.id: facet for facet in facets if facet is not None}


def _present(
    videos: Sequence[VideoId], shown: dict[VideoId, PresentationVideo]
) -> list[PresentationVideo]:
    return [shown[video] for video in videos if video in shown]
