"""flix's writes on herd.store (SQLite in the test's directory): many writes of one visitor at
once, as when a backlog is let go after a stream's election, each stored once and kept among
the visitor's newest, with one compare-and-set each rather than a storm of conflicting ones."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import herd
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
