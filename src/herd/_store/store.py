"""`herd.Store`: a service's own data, typed, on one of two engines (docs/data.md).

A store belongs to one service (its `name`) and holds **tables** of keyed records and **logs**
of entries per key, each of one msgspec-encodable type:

- `Records.get` / `put` / `delete`: a record has a revision that changes with every write;
  `put(..., revision=r)` writes only if the record is still at `r` (0: absent) and otherwise
  raises `herd.Conflict` with the revision it has (compare-and-set).
- `Log.append(key, value, id=...)` / `Log.last(key, n)` / `Log.entry(key, id)`: an
  append-only log per key; the `id` (a client-made idempotency key) makes an append
  idempotent, and finds the entry stored under it.

**Idempotent by key**: a write the store retries itself (an attempt whose answer was lost) is
never applied twice. Sent again by the caller after an unknown outcome (a timeout, an instance
that died), an unconditional `put` writes the same value, an append finds its id and adds
nothing; a compare-and-set raises `Conflict` if the first one was applied (it cannot tell its
own earlier write from another writer's), and the caller reads and decides, as with any
compare-and-set.

**Bounded by the caller's deadline**: every operation ends by `herd.deadline` (raising
`herd.DeadlineExceeded`), or after `timeout_s` without one (`herd.StoreUnavailable`): the store
did not answer, and the write may or may not have been applied. Bad input fails before anything
is sent: `herd.InvalidKey`, `herd.TooLarge`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec

from herd._model.deadline import remaining
from herd._model.errors import ConfigurationError, DeadlineExceeded
from herd._store.backend import Backend
from herd._store.errors import InvalidKey, StoreUnavailable, TooLarge

T = TypeVar("T")
R = TypeVar("R")

#: Names of stores, tables, logs and topics: they become bucket, stream and subject names.
NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
#: Keys and ids: letters, digits, ``_ = -``; no dots, spaces or wildcards, which NATS subjects
#: give meaning to. The same rule on every backend, so data can move between them.
KEY = re.compile(r"^[A-Za-z0-9_=-]{1,128}$")
#: The largest encoded value by default: records are small and denormalized, and a NATS
#: message (the value plus headers) must fit the server's max_payload (1 MiB by default).
MAX_VALUE_BYTES = 64 * 1024


def check_name(kind: str, name: str) -> str:
    """`name` if it is a valid store, table, log or topic name; ConfigurationError if not."""
    if not NAME.match(name):
        raise ConfigurationError(
            f"{kind} name {name!r}: a lowercase letter, then lowercase letters, digits or -"
            " (32 at most)"
        )
    return name


def check_key(key: str | int, what: str = "key") -> str:
    """`key` as the store keeps it; `InvalidKey` if it has characters the store refuses."""
    text = str(key)
    if not KEY.match(text):
        raise InvalidKey(
            f"{what} {text[:40]!r}: 1 to 128 of letters, digits, _ = - (no dots or spaces)"
        )
    return text


class Record(msgspec.Struct, Generic[T], frozen=True):
    """A record as read: its key, value and revision (what a compare-and-set names)."""

    key: str
    value: T
    revision: int


class Entry(msgspec.Struct, Generic[T], frozen=True):
    """One entry of a key's log: its id, its value and its place in the log (`seq` grows)."""

    key: str
    id: str
    value: T
    seq: int


class Appended(msgspec.Struct, frozen=True):
    """What `Log.append` did: the entry's `seq`, and whether this call `applied` it (False: the
    id was stored already, by an earlier call or an earlier attempt of this one)."""

    seq: int
    applied: bool


class Store:
    """One service's data on a backend (`herd.store(name)` builds one from `HERD_STORE_URL`).

    Args:
        name: the owning service; on a shared engine its tables and logs are named after it.
        backend: `SQLiteBackend` or `JetStreamBackend`.
        timeout_s: the longest one operation may take when the caller has no deadline.
        max_value_bytes: the largest encoded value a write takes (`TooLarge` above it).
    """

    def __init__(
        self,
        name: str,
        backend: Backend,
        *,
        timeout_s: float = 5.0,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        if timeout_s <= 0 or max_value_bytes <= 0:
            raise ConfigurationError("a store's timeout_s and max_value_bytes must be positive")
        self.name = check_name("store", name)
        self.backend = backend
        self.timeout_s = timeout_s
        self.max_value_bytes = max_value_bytes

    def records(self, table: str, value: type[T]) -> Records[T]:
        """The table `table` of records of type `value`."""
        return Records(self, check_name("table", table), value)

    def log(self, log: str, value: type[T]) -> Log[T]:
        """The log `log`, one append-only sequence of `value`s per key."""
        return Log(self, check_name("log", log), value)

    async def aclose(self) -> None:
        """Close the backend's connections or files."""
        await self.backend.aclose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def encode(self, value: object) -> bytes:
        """`value` as stored; `TooLarge` past `max_value_bytes`."""
        return encode(value, self.max_value_bytes, f"store {self.name}")

    async def bounded(self, operation: Callable[[], Awaitable[R]]) -> R:
        """Run one backend operation under the caller's deadline, or `timeout_s` without one."""
        return await bounded(operation, self.timeout_s, f"store {self.name}")


def encode(value: object, limit: int, owner: str) -> bytes:
    """`value` as MessagePack; `TooLarge` past `limit` bytes."""
    data = msgspec.msgpack.encode(value)
    if len(data) > limit:
        raise TooLarge(f"{owner}: a value of {len(data)} bytes is over the limit of {limit}")
    return data


async def bounded(operation: Callable[[], Awaitable[R]], timeout_s: float, owner: str) -> R:
    """Run `operation` until the caller's deadline, or for `timeout_s` without one:
    `DeadlineExceeded` when the deadline cut it, `StoreUnavailable` when `timeout_s` did."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"{owner}: the deadline passed before the call")
    try:
        async with asyncio.timeout(timeout_s if left is None else left):
            return await operation()
    except TimeoutError:
        if left is not None:
            raise DeadlineExceeded(
                f"{owner}: no answer within the caller's deadline ({left:.3f} s)"
            ) from None
        raise StoreUnavailable(f"{owner}: no answer within {timeout_s} s") from None


class Records(Generic[T]):
    """A table of keyed records of one type (`Store.records`)."""

    def __init__(self, store: Store, table: str, value: type[T]) -> None:
        self.store = store
        self.table = table
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(value)

    async def get(self, key: str | int) -> Record[T] | None:
        """The record at `key`, or None."""
        text = check_key(key)
        found = await self.store.bounded(lambda: self.store.backend.get(self.table, text))
        if found is None:
            return None
        return Record(text, self._decoder.decode(found[0]), found[1])

    async def put(self, key: str | int, value: T, *, revision: int | None = None) -> int:
        """Write `value` at `key`; its new revision. With `revision`, only if the record is at
        that revision now (0: absent), else `herd.Conflict`."""
        text = check_key(key)
        data = self.store.encode(value)
        backend = self.store.backend
        return await self.store.bounded(lambda: backend.put(self.table, text, data, revision))

    async def delete(self, key: str | int, *, revision: int | None = None) -> None:
        """Remove the record at `key` (absent is fine). With `revision`, only if the record is
        at that revision now, else `herd.Conflict`."""
        text = check_key(key)
        await self.store.bounded(lambda: self.store.backend.delete(self.table, text, revision))


class Log(Generic[T]):
    """An append-only log of one type per key (`Store.log`)."""

    def __init__(self, store: Store, log: str, value: type[T]) -> None:
        self.store = store
        self.log = log
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(value)

    async def append(self, key: str | int, value: T, *, id: str) -> Appended:
        """Add `value` to `key`'s log under `id`, a key the client made for this write: sent
        again with the same id (a retry), nothing is added; with the same id and another
        value, `herd.Conflict`."""
        text = check_key(key)
        ident = check_key(id, "id")
        data = self.store.encode(value)
        seq, applied = await self.store.bounded(
            lambda: self.store.backend.append(self.log, text, ident, data)
        )
        return Appended(seq, applied)

    async def entry(self, key: str | int, id: str) -> Entry[T] | None:
        """The entry stored under `id` in `key`'s log, or None: what an append that raised
        `herd.Conflict` found there (a retry whose value differs, say by a timestamp)."""
        text = check_key(key)
        ident = check_key(id, "id")
        found = await self.store.bounded(lambda: self.store.backend.entry(self.log, text, ident))
        if found is None:
            return None
        seq, data = found
        return Entry(text, ident, self._decoder.decode(data), seq)

    async def last(self, key: str | int, count: int = 20) -> list[Entry[T]]:
        """The newest `count` entries of `key`'s log, newest first."""
        text = check_key(key)
        if count <= 0:
            return []
        rows = await self.store.bounded(lambda: self.store.backend.last(self.log, text, count))
        return [Entry(text, ident, self._decoder.decode(data), seq) for seq, ident, data in rows]
