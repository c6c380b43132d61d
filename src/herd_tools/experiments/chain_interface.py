"""The retry-storm chain's interfaces: edge → middle → deep, each with a `stats` method.

The orchestrator reads every process's counters through `stats`, the same way for all three
services: arrivals, requests sent downstream, handlers running now and the most ever running at
once (reset by `stats(reset_peak=True)`).
"""
# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

import msgspec

import herd


class Stats(msgspec.Struct):
    """One process's counters since it started (`peak` since the last reset)."""

    received: int
    """Requests that reached the handler."""
    sent: int
    """Attempts sent to the next service down (0 for deep)."""
    running: int
    """Handlers running now."""
    peak: int
    """Most handlers running at once."""
    succeeded: int
    failed: int


class StormDeep(herd.Interface, name="storm-deep"):
    """The bottom of the chain: answers at once, or (if sick) accepts and never answers."""

    @herd.method(idempotent=True)
    async def work(self, item: int) -> int: ...

    @herd.method(idempotent=True, attempts=1)
    async def stats(self, reset_peak: bool = False) -> Stats: ...


class StormMiddle(herd.Interface, name="storm-middle"):
    """Relays each request to deep."""

    @herd.method(idempotent=True)
    async def relay(self, item: int) -> int: ...

    @herd.method(idempotent=True, attempts=1)
    async def stats(self, reset_peak: bool = False) -> Stats: ...


class StormEdge(herd.Interface, name="storm-edge"):
    """Where a user's request enters: calls middle under a 3 s deadline."""

    @herd.method(idempotent=True)
    async def handle(self, item: int) -> int: ...

    @herd.method(idempotent=True, attempts=1)
    async def stats(self, reset_peak: bool = False) -> Stats: ...
