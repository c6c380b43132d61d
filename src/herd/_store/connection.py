"""One client connection to a NATS cluster, shared by the buckets and streams of one owner.

nats-py keeps the connection: it fails over to another server of the list when one dies and
reconnects in the background. Made on first use, so building a store never waits for (or fails
on) a cluster that is not there yet; operations that find no server retry until the store's
deadline (`retrying`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

T = TypeVar("T")


class Pending(Exception):
    """An answer that is not known yet (another write still in flight): ask again shortly."""


#: Failures that pass: a server died (the client is failing over), a stream has no leader yet
#: (an election is under way), a request went unanswered. Anything else is a real answer.
TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    ConnectionError,
    OSError,
    Pending,
)

_BACKOFF_FIRST_S = 0.02
_BACKOFF_MAX_S = 0.25


async def retrying(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation` until it gives an answer, retrying transient failures with a short
    back-off; the caller bounds it (the store's deadline cancels it). Only safe for operations
    that may be applied twice: every write here carries its key, revision or id."""
    delay = _BACKOFF_FIRST_S
    while True:
        try:
            return await operation()
        except TRANSIENT:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)


async def _quiet(*_: object) -> None:
    """nats-py's callbacks print every reconnect by default; herd's retries already say it."""


class Connection:
    """A lazily made nats-py client to `servers` (``host:port`` or ``nats://host:port``)."""

    def __init__(self, servers: Sequence[str], *, connect_timeout_s: float = 1.0) -> None:
        self.servers = [s if "://" in s else f"nats://{s}" for s in servers]
        self._connect_timeout_s = connect_timeout_s
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = asyncio.Lock()

    async def jetstream(self, request_timeout_s: float = 1.0) -> JetStreamContext:
        """The JetStream context on a connected client (connecting now if need be)."""
        if self._js is not None and self._client is not None and not self._client.is_closed:
            return self._js
        async with self._lock:
            if self._js is None or self._client is None or self._client.is_closed:
                client = await nats.connect(
                    servers=self.servers,
                    connect_timeout=self._connect_timeout_s,
                    # Fail over fast: a server that died on loopback refuses at once.
                    reconnect_time_wait=0.1,
                    max_reconnect_attempts=-1,
                    # A partitioned server is noticed within seconds, not minutes.
                    ping_interval=5,
                    max_outstanding_pings=2,
                    error_cb=_quiet,
                    disconnected_cb=_quiet,
                    reconnected_cb=_quiet,
                    closed_cb=_quiet,
                )
                self._client = client
                self._js = client.jetstream(timeout=request_timeout_s)
            return self._js

    async def aclose(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            await client.close()
