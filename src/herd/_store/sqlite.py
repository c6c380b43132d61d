"""The embedded backend: one SQLite file per store, shared by the instances on one machine.

- **Durable before acknowledged**: WAL mode with ``synchronous=FULL``, so every commit is
  fsync'd to the write-ahead log before the write returns: it survives the process being
  SIGKILLed and the machine losing power.
- **Writes run in a worker thread**, one at a time per process, inside ``BEGIN IMMEDIATE``
  (the file's write lock, so two processes' compare-and-sets cannot interleave): an fsync or a
  wait for another process's lock never stalls the event loop.
- **Reads run on the loop**, on a connection of their own: an indexed read of a WAL database
  takes microseconds and never waits for a writer; a thread hop would cost more than the read.
- **Revisions never repeat for a key**: they come from one counter per table, and a delete
  leaves a tombstone (a NULL value) with a revision of its own, so a compare-and-set holding a
  revision from before a delete and re-create fails as it must.
- **Append ids are a UNIQUE constraint** per log and key: a retried append finds the first one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from herd._store.errors import Conflict, StoreUnavailable

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB,"
    " revision INTEGER NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS revisions (tbl TEXT PRIMARY KEY, last INTEGER NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS logs (seq INTEGER PRIMARY KEY AUTOINCREMENT, log TEXT NOT NULL,"
    " key TEXT NOT NULL, id TEXT NOT NULL, value BLOB NOT NULL, UNIQUE (log, key, id))",
    "CREATE INDEX IF NOT EXISTS logs_by_key ON logs (log, key, seq)",
)


class SQLiteFile:
    """One SQLite file with `schema`: writes in a worker thread, reads on the loop (above).
    Opened (and made, with its directory) on first use; any failure to use it is
    `StoreUnavailable`."""

    def __init__(
        self, path: str | Path, schema: Sequence[str], *, busy_timeout_s: float = 10.0
    ) -> None:
        self.path = Path(path)
        self._schema = schema
        self._busy_ms = int(busy_timeout_s * 1000)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        for statement in self._schema:
            db.execute(statement)
        return db

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one immediate transaction on the writer (call it in a worker thread)."""
        with self._lock:
            try:
                if self._writer is None:
                    self._writer = self._open()
                db = self._writer
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except (sqlite3.OperationalError, OSError) as exc:
                raise StoreUnavailable(f"store {self.path}: {exc}") from exc

    async def written(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`write` in a worker thread."""
        return await asyncio.to_thread(self.write, work)

    async def read(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """The rows of one query, on the reader (on the loop)."""
        try:
            if self._reader is None:
                # The writer makes the file and its tables (in the worker thread: it may wait
                # for another process's lock); the reader only reads them.
                await self.written(lambda db: None)
                if self._reader is None:  # not made by another read while this one waited
                    self._reader = sqlite3.connect(self.path, isolation_level=None)
                    self._reader.execute("PRAGMA busy_timeout = 1000")
            return self._reader.execute(sql, params).fetchall()
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreUnavailable(f"store {self.path}: {exc}") from exc

    async def aclose(self) -> None:
        def close_writer() -> None:
            with self._lock:
                if self._writer is not None:
                    self._writer.close()
                self._writer = None

        if self._reader is not None:
            self._reader.close()  # on the loop's thread, where it was made
            self._reader = None
        await asyncio.to_thread(close_writer)


class SQLiteBackend:
    """A store in the SQLite file at `path`."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.file = SQLiteFile(path, _SCHEMA, busy_timeout_s=busy_timeout_s)

    @property
    def path(self) -> Path:
        """The file."""
        return self.file.path

    # -- records

    async def get(self, table: str, key: str) -> tuple[bytes, int] | None:
        rows = await self.file.read(
            "SELECT value, revision FROM records WHERE tbl = ? AND key = ? AND value IS NOT NULL",
            (table, key),
        )
        if not rows:
            return None
        value, revision = rows[0]
        return bytes(value), int(revision)

    async def put(self, table: str, key: str, data: bytes, expect: int | None) -> int:
        def work(db: sqlite3.Connection) -> int:
            _check(db, table, key, expect)
            revision = _next_revision(db, table)
            db.execute(
                "INSERT OR REPLACE INTO records (tbl, key, value, revision) VALUES (?, ?, ?, ?)",
                (table, key, data, revision),
            )
            return revision

        return await self.file.written(work)

    async def delete(self, table: str, key: str, expect: int | None) -> None:
        def work(db: sqlite3.Connection) -> None:
            if _check(db, table, key, expect):
                db.execute(
                    "UPDATE records SET value = NULL, revision = ? WHERE tbl = ? AND key = ?",
                    (_next_revision(db, table), table, key),
                )

        await self.file.written(work)

    # -- logs

    async def append(self, log: str, key: str, id: str, data: bytes) -> tuple[int, bool]:
        def work(db: sqlite3.Connection) -> tuple[int, bool]:
            added = db.execute(
                "INSERT INTO logs (log, key, id, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (log, key, id) DO NOTHING RETURNING seq",
                (log, key, id, data),
            ).fetchall()
            if added:
                return int(added[0][0]), True
            seq, stored = db.execute(
                "SELECT seq, value FROM logs WHERE log = ? AND key = ? AND id = ?", (log, key, id)
            ).fetchone()
            if stored != data:
                raise Conflict(f"log {log!r} key {key!r}: id {id!r} holds another entry")
            return int(seq), False

        return await self.file.written(work)

    async def entry(self, log: str, key: str, id: str) -> tuple[int, bytes] | None:
        rows = await self.file.read(
            "SELECT seq, value FROM logs WHERE log = ? AND key = ? AND id = ?", (log, key, id)
        )
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    async def last(self, log: str, key: str, count: int) -> list[tuple[int, str, bytes]]:
        rows = await self.file.read(
            "SELECT seq, id, value FROM logs WHERE log = ? AND key = ? ORDER BY seq DESC LIMIT ?",
            (log, key, count),
        )
        return [(int(seq), str(id), bytes(value)) for seq, id, value in rows]

    async def aclose(self) -> None:
        await self.file.aclose()


def _check(db: sqlite3.Connection, table: str, key: str, expect: int | None) -> bool:
    """Whether the record exists; `Conflict` if `expect` is not its revision (0: absent)."""
    row = db.execute(
        "SELECT revision FROM records WHERE tbl = ? AND key = ? AND value IS NOT NULL",
        (table, key),
    ).fetchone()
    current = 0 if row is None else int(row[0])
    if expect is not None and expect != current:
        raise Conflict(
            f"table {table!r} key {key!r}: revision {current}, not {expect}", revision=current
        )
    return row is not None


def _next_revision(db: sqlite3.Connection, table: str) -> int:
    (revision,) = db.execute(
        "INSERT INTO revisions (tbl, last) VALUES (?, 1)"
        " ON CONFLICT (tbl) DO UPDATE SET last = last + 1 RETURNING last",
        (table,),
    ).fetchone()
    return int(revision)
