# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The chain's interfaces: what callers import, and nothing else."""

from __future__ import annotations

import msgspec

import herd


class Echo(msgspec.Struct):
    """What each hop answers: the text, and the budget every hop saw, edge first."""

    text: str
    budgets_ms: list[int]


class Refused(herd.ServiceError):
    """The deep service refuses a word."""

    word: str
    reason: str


class Deep(herd.Interface, name="deep"):
    """The bottom of the chain: echoes, refuses, hangs until cancelled, dawdles or breaks."""

    @herd.method(idempotent=True)
    async def echo(self, text: str, hang: bool = False) -> Echo: ...

    async def slow(self, text: str, seconds: float) -> Echo: ...

    async def explode(self, message: str) -> str: ...

    @herd.method(idempotent=True)
    async def stats(self) -> dict[str, int]: ...


class Middle(herd.Interface, name="middle"):
    """Relays to deep."""

    @herd.method(idempotent=True)
    async def relay(self, text: str, hang: bool = False) -> Echo: ...

    @herd.method(idempotent=True)
    async def stats(self) -> dict[str, int]: ...


class Edge(herd.Interface, name="edge"):
    """Where a user's request enters."""

    @herd.method(idempotent=True)
    async def greet(self, text: str, hang: bool = False) -> Echo: ...
