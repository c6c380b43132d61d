"""edge's library: assembles a home page from the libraries and drivers of the services behind.

One page is: who the visitor is (identity), their rows (merch), what they watched (history),
all asked at once; then every video on the page presented by movie in batches (`herd.fill`
inside `MovieLibrary`). History is optional: `herd.fallback` turns "history is down, slow or
its circuit is open" into a page without the "Continue Watching" row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import herd
from examples.flix import config
from examples.flix.edge.interface import HISTORY_ROW, HomePage, HomeRow, NoSuchVisitor
from examples.flix.history.interface import History
from examples.flix.identity.interface import Person, UnknownVisitor
from examples.flix.identity.library import IdentityLibrary
from examples.flix.ids import VideoId, VisitorId
from examples.flix.merch.library import MerchLibrary
from examples.flix.movie.interface import PresentationVideo
from examples.flix.movie.library import MovieLibrary

T = TypeVar("T")

HISTORY_LENGTH = 10


class HomePages:
    """Builds `HomePage`s."""

    def __init__(
        self,
        identity: IdentityLibrary,
        merch: MerchLibrary,
        movies: MovieLibrary,
        history: History,
    ) -> None:
        self.identity = identity
        self.merch = merch
        self.movies = movies
        self.history = history

    @classmethod
    def from_env(cls) -> HomePages:
        """Wired by configuration (see `examples.flix.config` and ``FLIX_IDENTITY``)."""
        return cls(
            IdentityLibrary.from_env(),
            MerchLibrary.from_env(),
            MovieLibrary.from_env(),
            config.driver(History, "history"),
        )

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
        page_rows.extend(HomeRow(row.title, "merch", _present(row.videos, shown)) for row in rows)
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
