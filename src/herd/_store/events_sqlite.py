"""Events embedded: one SQLite file of topics, shared by the services on one machine.

- An event is a row; its id is UNIQUE per topic, so a retried publish stores nothing new.
- A group is a row holding its position (the last event it acknowledged) and a **lease**: the
  instance that holds it (renewed at every fetch) is the one that handles the group's events,
  and when it dies another instance takes the lease over `lease_s` later and goes on from the
  position. The instances of a group share the work by taking turns, not by splitting it.
- Events are handled in order: a handler that raises holds the group at that event until it is
  retried (`Delivery.retry`), and acknowledging moves the position past it.
- Processes cannot wake each other through a file, so an idle subscriber looks for new events
  every `poll_s` (50 ms): an event reaches its handler within about that.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from pathlib import Path

from herd._store.errors import Conflict, StoreUnavailable
from herd._store.events import Delivery
from herd._store.sqlite import SQLiteFile

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " topic TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL, published REAL NOT NULL,"
    " UNIQUE (topic, id))",
    "CREATE TABLE IF NOT EXISTS groups (topic TEXT NOT NULL, grp TEXT NOT NULL,"
    " position INTEGER NOT NULL, holder TEXT, until REAL NOT NULL, PRIMARY KEY (topic, grp))"
    " WITHOUT ROWID",
)


class _SQLiteDelivery:
    def __init__(
        self, events: SQLiteEvents, topic: str, group: str, row: tuple[int, str, bytes, float]
    ) -> None:
        self._events = events
        self._topic = topic
        self._group = group
        self.seq, self.id, self.data, self.published = row

    async def ack(self) -> None:
        await self._events.advance(self._topic, self._group, self.seq)

    async def retry(self, delay_s: float) -> None:
        self._events.pause(self._topic, self._group, delay_s)


class SQLiteEvents:
    """Topics in the SQLite file at `path`."""

    def __init__(self, path: str | Path, *, lease_s: float = 5.0, poll_s: float = 0.05) -> None:
        self.file = SQLiteFile(path, _SCHEMA)
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._me = uuid.uuid4().hex
        self._paused: dict[tuple[str, str], float] = {}

    async def publish(self, topic: str, id: str, data: bytes) -> tuple[int, bool]:
        def work(db: sqlite3.Connection) -> tuple[int, bool]:
            added = db.execute(
                "INSERT INTO events (topic, id, data, published) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (topic, id) DO NOTHING RETURNING seq",
                (topic, id, data, time.time()),
            ).fetchall()
            if added:
                return int(added[0][0]), True
            seq, stored = db.execute(
                "SELECT seq, data FROM events WHERE topic = ? AND id = ?", (topic, id)
            ).fetchone()
            if stored != data:
                raise Conflict(f"topic {topic!r}: id {id!r} holds another event")
            return int(seq), False

        return await self.file.written(work)

    async def fetch(self, topic: str, group: str, count: int, wait_s: float) -> list[Delivery]:
        give_up = time.monotonic() + wait_s
        while True:
            paused_until = self._paused.get((topic, group), 0.0)
            if time.monotonic() >= paused_until:
                rows = await self.file.written(lambda db: self._take(db, topic, group, count))
                if rows:
                    return [_SQLiteDelivery(self, topic, group, row) for row in rows]
            if time.monotonic() >= give_up:
                return []
            await asyncio.sleep(self.poll_s)

    def _take(
        self, db: sqlite3.Connection, topic: str, group: str, count: int
    ) -> list[tuple[int, str, bytes, float]]:
        """Hold (or renew) the group's lease; the events after its position if held."""
        now = time.time()
        db.execute(
            "INSERT OR IGNORE INTO groups (topic, grp, position, holder, until)"
            " VALUES (?, ?, 0, NULL, 0)",
            (topic, group),
        )
        held = db.execute(
            "UPDATE groups SET holder = ?, until = ? WHERE topic = ? AND grp = ?"
            " AND (holder = ? OR until < ?) RETURNING position",
            (self._me, now + self.lease_s, topic, group, self._me, now),
        ).fetchall()
        if not held:
            return []
        rows = db.execute(
            "SELECT seq, id, data, published FROM events WHERE topic = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (topic, held[0][0], count),
        ).fetchall()
        return [(int(seq), str(id), bytes(data), float(at)) for seq, id, data, at in rows]

    async def advance(self, topic: str, group: str, seq: int) -> None:
        """The group acknowledged every event up to `seq`."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE groups SET position = MAX(position, ?) WHERE topic = ? AND grp = ?"
                " AND holder = ?",
                (seq, topic, group, self._me),
            )

        await self.file.written(work)

    def pause(self, topic: str, group: str, delay_s: float) -> None:
        """Fetch nothing for the group for `delay_s` (an event is to be retried then)."""
        self._paused[(topic, group)] = time.monotonic() + delay_s

    async def release(self) -> None:
        """Give up every lease this process holds, so another instance goes on at once."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("UPDATE groups SET holder = NULL, until = 0 WHERE holder = ?", (self._me,))

        await self.file.written(work)

    async def aclose(self) -> None:
        # A file that cannot be written now has no lease of ours to give up.
        with contextlib.suppress(StoreUnavailable):
            await self.release()
        await self.file.aclose()
