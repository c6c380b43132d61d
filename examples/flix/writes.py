"""Where flix's writes are kept: each owning service's `herd.store` (history: plays; merch:
ratings), applied once per idempotency key, and told to the other services as events.

- **The engine** is `HERD_STORE_URL`'s: under `herd up` with `[[stores]]`, a NATS JetStream
  cluster with a copy in each zone (a write is acknowledged once a quorum of zones has it);
  without it, SQLite files in ``FLIX_WRITES`` (default ``writes/`` beside ``FLIX_DB``), shared
  by the instances on this machine. The seeded catalogue (``FLIX_DB``) stays read-only.
- **Idempotency**: a write is appended to its visitor's log with its client-made key as the
  entry's id, which the log stores once for good (one quorum write: the entry is the record).
  A retry finds the entry there and takes the stored write (its first time, unchanged); a key
  is the visitor's own, as an account's are at a payment API: reused by another write of the
  same visitor, it is refused (`KeyReused`), by another visitor, it is that visitor's write.
  A write that died after its append is completed by its retry.
- **Reads**: every write of a visitor is in their log; their newest `NEWEST` are also one record
  per visitor (denormalized, kept by compare-and-set), which a page reads with one `get`: on
  JetStream, reading a log's newest entries passes over the whole log.
- **Events**: once stored, the owner publishes it (`played`, `rated`) with the key as the
  event id, so a retried write publishes nothing twice (`examples.flix.events`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec

import herd

#: A visitor's newest writes kept in one record.
NEWEST = 100


class Written(msgspec.Struct, frozen=True):
    """One write as stored: who, what, when (ms since the epoch), and a rating's thumbs."""

    visitor: int
    video: int
    at_ms: int
    thumbs: int = 0


class Keyed(msgspec.Struct, frozen=True):
    """A write and its idempotency key, in a visitor's newest."""

    key: str
    write: Written


def where() -> str:
    """The engine of flix's writes and events: `HERD_STORE_URL`, else SQLite files in
    ``FLIX_WRITES`` (default: ``writes/`` beside ``FLIX_DB``)."""
    if url := os.environ.get("HERD_STORE_URL"):
        return url
    directory = os.environ.get("FLIX_WRITES")
    if not directory:
        catalogue = os.environ.get("FLIX_DB")
        if not catalogue:
            raise SystemExit("set HERD_STORE_URL, FLIX_WRITES or FLIX_DB for flix's writes")
        directory = str(Path(catalogue).parent / "writes")
    return f"sqlite://{directory}"


class Writes:
    """One kind of write (`what`: plays, ratings) in its owner's store: by key, and per
    visitor."""

    def __init__(self, store: herd.Store, what: str) -> None:
        self.by_visitor = store.log(what, Written)
        self.newest_by_visitor = store.records(f"{what}-newest", list[Keyed])
        self._updating: dict[int, tuple[asyncio.Lock, int]] = {}
        """visitor -> the lock this process's updates of their newest take turns on, and how
        many hold or wait for it."""

    async def record(self, key: str, write: Written) -> tuple[Written, bool]:
        """Store `write` once under `key`: (the write stored under it, whether this call
        stored it). The caller compares the stored write with its own (a key reused)."""
        try:
            appended = await self.by_visitor.append(write.visitor, write, id=key)
            stored, applied = write, appended.applied
        except herd.Conflict:
            # Stored before under this key: by an earlier try of this write (another `at_ms`),
            # or (a reused key) another write of this visitor.
            found = await self.by_visitor.entry(write.visitor, key)
            if found is None:
                raise
            stored, applied = found.value, False
        await self._remember(key, stored)
        return stored, applied

    async def _remember(self, key: str, stored: Written) -> None:
        """Put the write among its visitor's newest, one update of a visitor at a time in this
        process. The compare-and-set alone would be right, but n writes of one visitor at once
        (a backlog let go when a stream's leader is elected) would cost n * n / 2 attempts, each
        a few round trips to the stream's leader: 90 at once made 2,977 puts for 90 writes."""
        lock, users = self._updating.get(stored.visitor, (asyncio.Lock(), 0))
        self._updating[stored.visitor] = (lock, users + 1)
        try:
            async with lock:
                await self._put_newest(key, stored)
        finally:
            lock, users = self._updating[stored.visitor]
            if users == 1:
                del self._updating[stored.visitor]
            else:
                self._updating[stored.visitor] = (lock, users - 1)

    async def _put_newest(self, key: str, stored: Written) -> None:
        """The compare-and-set of `_remember` (again on another instance's conflicting write;
        a retry of the write finds it there)."""
        while True:
            found = await self.newest_by_visitor.get(stored.visitor)
            have = found.value if found is not None else []
            if any(kept.key == key for kept in have):
                return
            merged = sorted([*have, Keyed(key, stored)], key=lambda k: -k.write.at_ms)[:NEWEST]
            revision = found.revision if found is not None else 0
            try:
                await self.newest_by_visitor.put(stored.visitor, merged, revision=revision)
                return
            except herd.Conflict:
                continue

    async def newest(self, visitor: int) -> list[Written]:
        """The visitor's newest `NEWEST` writes, newest first: one read."""
        found = await self.newest_by_visitor.get(visitor)
        return [kept.write for kept in found.value] if found is not None else []


def now_ms() -> int:
    """This moment, as writes record it."""
    return int(time.time() * 1000)
