"""The seam between `herd.Store` and an engine: bytes in, bytes out, names already checked.

A backend may take as long as it likes and retry what failed for a passing reason (no leader,
a reconnect): the store bounds every operation by the caller's deadline and cancels it there.
"""

from __future__ import annotations

from typing import Protocol


class Backend(Protocol):
    """What a store needs of its engine. Tables hold records; logs hold entries per key."""

    async def get(self, table: str, key: str) -> tuple[bytes, int] | None:
        """The record's value and revision, or None when absent (never written, or deleted)."""
        ...

    async def put(self, table: str, key: str, data: bytes, expect: int | None) -> int:
        """Write the record; its new revision. With `expect`, only if its revision now is
        `expect` (0: absent), else `Conflict` carrying the revision it has."""
        ...

    async def delete(self, table: str, key: str, expect: int | None) -> None:
        """Remove the record (absent is fine, unless `expect` says otherwise: `Conflict`)."""
        ...

    async def append(self, log: str, key: str, id: str, data: bytes) -> tuple[int, bool]:
        """Add an entry to `key`'s log unless `id` is in it already; (its sequence number,
        whether this call added it). `Conflict` if `id` is there with other data."""
        ...

    async def entry(self, log: str, key: str, id: str) -> tuple[int, bytes] | None:
        """The entry stored under `id` in `key`'s log as (sequence, data), or None."""
        ...

    async def last(self, log: str, key: str, count: int) -> list[tuple[int, str, bytes]]:
        """The newest `count` entries of `key`'s log as (sequence, id, data), newest first."""
        ...

    async def aclose(self) -> None:
        """Close connections and files."""
        ...
