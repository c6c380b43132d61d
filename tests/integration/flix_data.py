"""What flix's seeded store holds, as the tests of flix's pages expect to see it."""

from __future__ import annotations

from typing import Any

from examples.flix import store


def with_history(data: store.Store, count: int = 3) -> list[int]:
    """Visitors that have rows and at least three viewings."""
    views = data.table(store.HISTORY_VIEWS)
    found = [v for v in range(1, 400) if len(views.partition(v, 3)) == 3]
    assert len(found) >= count
    return found[:count]


def merch_rows(data: store.Store, visitor: int) -> list[tuple[str, list[int]]]:
    """The visitor's rows as the store holds them, ranked by popularity as merch ranks them."""
    merch = data.table(store.MERCH_VIDEOS)
    rows = []
    for _, row in data.table(store.MERCH_ROWS).partition(visitor):
        popularity = merch.get_many(row.videos)
        rows.append((row.title, sorted(row.videos, key=lambda v: -popularity[v].popularity)))
    return rows


def check_titles(data: store.Store, home: dict[str, Any]) -> int:
    """Every video on the page is the store's, title and all; returns how many there are."""
    movies = data.table(store.MOVIE_VIDEOS)
    shown = 0
    for row in home["rows"]:
        for video in row["videos"]:
            record = movies.get(video["id"])
            assert record is not None
            assert (video["title"], video["year"], video["synopsis"]) == (
                record.title,
                record.year,
                record.synopsis,
            )
            shown += 1
    return shown
