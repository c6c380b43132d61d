"""Where flix's writes are kept: an SQLite file per owning service, shared by the group's
instances, durable before a write is acknowledged, each write applied once per idempotency key.

- **WAL mode, ``synchronous=FULL``**: every commit is written to the write-ahead log and
  fsync'd before the service answers, so an acknowledged write survives the process being
  killed (SIGKILL) and the machine losing power; readers never wait for the writer.
- **Idempotency**: every write carries a client-generated key, the table's PRIMARY KEY (a UNIQUE
  constraint), and is inserted with ``ON CONFLICT(key) DO NOTHING``: a retry (the client's, or
  the driver's on another instance after one died mid-write) finds the first write and changes
  nothing.
- The files live in ``FLIX_WRITES`` (a directory; default ``writes/`` beside ``FLIX_DB``):
  ``history.db`` and ``merch.db``. The seeded catalogue (``FLIX_DB``) stays read-only, and
  reseeding it leaves the writes alone.

Writes run in a worker thread, one at a time per process, so a commit's fsync or a wait for the
file lock (``busy_timeout``) never stalls the event loop. Reads run on the loop, on a
connection of their own: an indexed read of a WAL database takes microseconds and never waits
for a writer, and a thread hop per read would cost more than the read under load.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class WriteStore:
    """One service's durable, shared SQLite file."""

    def __init__(self, path: str | os.PathLike[str], schema: Sequence[str]) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        for statement in schema:
            self._db.execute(statement)
        self._reader = sqlite3.connect(path, isolation_level=None)
        self._reader.execute("PRAGMA busy_timeout = 1000")

    @classmethod
    def from_env(cls, service: str, schema: Sequence[str]) -> WriteStore:
        """``$FLIX_WRITES/<service>.db`` (default: ``writes/`` beside ``FLIX_DB``)."""
        where = os.environ.get("FLIX_WRITES")
        if not where:
            catalogue = os.environ.get("FLIX_DB")
            if not catalogue:
                raise SystemExit("set FLIX_WRITES (or FLIX_DB) for flix's writes")
            where = str(Path(catalogue).parent / "writes")
        return cls(Path(where) / f"{service}.db", schema)

    def _run(self, sql: str, params: Sequence[Any]) -> tuple[int, list[tuple[Any, ...]]]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            return cursor.rowcount, cursor.fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement, committed (durably) when it returns; rows changed."""
        return (await asyncio.to_thread(self._run, sql, params))[0]

    async def written(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query on the writer's connection: what a write just committed."""
        return (await asyncio.to_thread(self._run, sql, params))[1]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read, on the loop (see the module)."""
        return self._reader.execute(sql, params).fetchall()

    def close(self) -> None:
        self._reader.close()
        self._db.close()
