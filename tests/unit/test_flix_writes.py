"""flix's writes and events under a backlog (writes let go at once when a stream's election
ends), on herd.store in the test's directory: many writes of one visitor each stored once and
kept among the visitor's newest with one compare-and-set each, not a storm of conflicting
ones; merch ranks a visitor's rows once for a backlog of their ratings."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import herd
from examples.flix.events import Rated
from examples.flix.merch.service import MerchService
from examples.flix.writes import Writes, Written, now_ms

AT_ONCE = 60


async def test_writes_of_one_visitor_at_once_take_one_compare_and_set_each(
    tmp_path: Path,
) -> None:
    async with herd.store("history", where=f"sqlite://{tmp_path}") as store:
        plays = Writes(store, "plays")
        newest = plays.newest_by_visitor
        put = newest.put
        puts = 0

        async def counted(*args: Any, **kwargs: Any) -> int:
            nonlocal puts
            puts += 1
            return await put(*args, **kwargs)

        newest.put = counted  # type: ignore[method-assign]
        keys = [secrets.token_urlsafe(16) for _ in range(AT_ONCE)]
        await asyncio.gather(
            *(plays.record(key, Written(7, 100 + i, now_ms())) for i, key in enumerate(keys))
        )
        kept = await newest.get(7)
        assert kept is not None and sorted(k.key for k in kept.value) == sorted(keys)
        # Without taking turns: about AT_ONCE**2 / 2 (1,770 here), most of them conflicts.
        assert puts == AT_ONCE
        assert plays._updating == {}  # no lock left behind for a visitor nobody writes


class _Rows:
    """merch's rows cache, as the refresh uses it."""

    def __init__(self) -> None:
        self.puts: list[int] = []

    async def set(self, visitor: int, rows: object) -> int:
        self.puts.append(visitor)
        return 3


class _Catalogue:
    def table(self, name: str) -> None:
        return None


async def test_a_backlog_of_a_visitors_ratings_is_ranked_once(tmp_path: Path) -> None:
    async with herd.store("merch", where=f"sqlite://{tmp_path}") as own:
        rows = _Rows()
        merch = MerchService(_Catalogue(), own, None, rows)  # type: ignore[arg-type]
        ranked: list[int] = []

        async def rank(visitor: int) -> list[object]:
            ranked.append(visitor)
            return []

        merch.rows = rank  # type: ignore[assignment,method-assign]
        stored = time.time() - 10  # a backlog: stored during an election, handled now

        def rated(seq: int, visitor: int, published: float) -> herd.Event[Rated]:
            return herd.Event("rated", f"k{seq}", Rated(visitor, seq, 1, 0), seq, published)

        for seq in range(5):
            await merch._refresh(rated(seq, 7, stored))
        await merch._refresh(rated(5, 8, stored))
        assert ranked == [7, 8] and rows.puts == [7, 8]
        # A rating stored after the last ranking began is ranked again.
        await merch._refresh(rated(6, 7, time.time() + 5))
        assert ranked == [7, 8, 7]
