"""Calling over herd's frames: every call to one instance multiplexed on one connection.

The calls of one loop iteration leave in one write; answers come back in any order, matched by
call id. A call whose caller gives up (its deadline, a hedge's losing attempt, any cancellation)
sends `CANCEL`, so the server stops working on it at once. After a `DRAIN` the connection takes no
new call (the next call opens a new connection) and closes once its last answer is in. A lost
connection fails the calls on it alone, as `ConnectionLost`; a connection that cannot be made
fails as `ConnectFailed` (the server saw nothing, so any call may go elsewhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, cast

from herd._wire.connect import tcp_connect
from herd._wire.frames import (
    CANCEL,
    DRAIN,
    MAX_CALL_ID,
    PREFACE,
    REPLY,
    FrameError,
    FrameReader,
    FrameWriter,
    call_frame,
    control_frame,
    decode_reply,
)
from herd._wire.protocol import ConnectFailed, ConnectionLost
from herd._wire.tls import HANDSHAKE_S, PROCESS, Tls, client_context_for

#: A connection with nothing in flight for this long (15 to 30 s) is closed, well before
#: servers close idle connections (75 s), so a call never goes out on one being closed.
IDLE_S = 15.0
#: A call given up after waiting this long with nothing at all read from its connection since
#: it was sent makes the connection suspect: a black hole (a partition, a peer gone without a
#: word) looks exactly like that, and TCP would keep the connection for minutes. New calls
#: then open a fresh connection, which fails fast while the partition lasts and works at once
#: when it heals; calls already on the suspect one finish or time out there.
SILENT_S = 0.25
#: The largest answer accepted (a server answers at most what its handler returned).
MAX_ANSWER = 256 << 20

Answer = tuple[int, bytes]


class _Connection(asyncio.Protocol):
    """One connection to one instance, and the calls waiting on it."""

    def __init__(self, authority: str) -> None:
        self._authority = authority
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = FrameReader(MAX_ANSWER)
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        self._writer = FrameWriter(self._loop)
        self._greeted = b""
        self._next_id = 1
        self._active = True
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reads = 0
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._writer.transport = cast(asyncio.Transport, transport)
        self._transport.write(PREFACE)
        self._idle_timer = self._loop.call_later(IDLE_S, self._idle_check)

    async def call(
        self, service: str, method: str, body: bytes, metadata: dict[str, str]
    ) -> Answer:
        transport = self._transport
        if transport is None or transport.is_closing():
            # Closed before this call was written: the server never saw it.
            raise ConnectFailed(f"connection to {self._authority} closed before the call")
        call_id = self._next_id
        self._next_id = call_id + 1 if call_id < MAX_CALL_ID else 1
        answer: asyncio.Future[Answer] = self._loop.create_future()
        self._waiting[call_id] = answer
        self._send(call_frame(call_id, service, method, metadata, body))
        reads, sent = self._reads, self._loop.time()
        try:
            return await answer
        except asyncio.CancelledError:
            if self._waiting.pop(call_id, None) is not None and self._transport is not None:
                self._send(control_frame(CANCEL, call_id))
                if self._reads == reads and self._loop.time() - sent >= SILENT_S:
                    self.usable = False
                if not self.usable and not self._waiting:
                    self.close()
            raise

    def _send(self, frame: bytes | bytearray) -> None:
        self._writer.send(frame, others=len(self._waiting) > 1)

    def data_received(self, data: bytes) -> None:
        self._active = True
        self._reads += 1
        if len(self._greeted) < len(PREFACE):
            data = self._greet(data)
            if not data:
                return
        replied = False
        try:
            for kind, call_id, payload in self._reader.feed(data):
                if payload is None:
                    raise FrameError(f"frame of type {kind} over {MAX_ANSWER} bytes")
                if kind == REPLY:
                    replied = True
                    answer = self._waiting.pop(call_id, None)
                    if answer is not None and not answer.done():
                        answer.set_result(decode_reply(payload))
                elif kind == DRAIN:
                    # No new calls here; the connection closes once its last answer is in (a
                    # call already on its way is answered, `overloaded` if it came too late).
                    self.usable = False
                else:
                    raise FrameError(f"unknown frame type {kind}")
        except FrameError as exc:
            self._fail(exc)
            return
        if replied and not self.usable and not self._waiting:
            self.close()

    def _greet(self, data: bytes) -> bytes:
        """Check the server's preface; returns what follows it."""
        need = len(PREFACE) - len(self._greeted)
        self._greeted += data[:need]
        if not PREFACE.startswith(self._greeted):
            self._fail(FrameError("the server does not speak herd's frames"))
            return b""
        return data[need:]

    def _fail(self, error: Exception) -> None:
        self._fail_waiting(error)
        self.close()

    def _fail_waiting(self, error: BaseException | None) -> None:
        self.usable = False
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            if not answer.done():
                lost = ConnectionLost(f"connection to {self._authority} lost: {error or 'closed'}")
                answer.set_exception(lost)

    def _idle_check(self) -> None:
        if self._waiting or self._active:
            self._active = False
            self._idle_timer = self._loop.call_later(IDLE_S, self._idle_check)
        else:
            self._idle_timer = None
            self.close()

    def close(self) -> None:
        """Close the connection; calls still waiting fail as lost."""
        self.usable = False
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._fail_waiting(exc)


class MuxTransport:
    """Calls to one instance over one multiplexed connection, opened on first use; inside
    mutual TLS with `tls` (default: the process's identity, if it has one)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float, tls: Tls = PROCESS) -> None:
        self._host = host
        self._port = port
        self._authority = f"{host}:{port}"
        self._tls = client_context_for(tls)
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._opening: asyncio.Future[_Connection] | None = None
        self._closed = False

    def call(
        self, service: str, method: str, body: bytes, headers: dict[str, str]
    ) -> Coroutine[Any, Any, Answer]:
        """Send one call with its metadata (`x-herd-*` entries) and wait for the answer; the
        caller bounds the time by cancelling, which cancels the call at the server too."""
        connection = self._connection
        if connection is not None and connection.usable:
            # The common case costs no coroutine of its own.
            return connection.call(service, method, body, headers)
        return self._call_connecting(service, method, body, headers)

    async def _call_connecting(
        self, service: str, method: str, body: bytes, headers: dict[str, str]
    ) -> Answer:
        connection = await self._connect()
        return await connection.call(service, method, body, headers)

    async def _connect(self) -> _Connection:
        """The connection, opened once however many calls are waiting for it."""
        if self._closed:
            raise ConnectFailed(f"transport to {self._authority} is closed")
        opening = self._opening
        if opening is None or opening.done():
            opening = self._opening = asyncio.ensure_future(self._open())
            # Awaited by whoever waits for it: if nobody is left, its failure is not news.
            opening.add_done_callback(_consume)
        return await asyncio.shield(opening)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            # The TCP connect alone under the short connect timeout: a host that does not
            # answer (a partition, a black hole) costs that, not the TLS handshake's allowance,
            # which only a host that answered gets.
            async with asyncio.timeout(self._connect_timeout):
                sock = await tcp_connect(loop, self._host, self._port)
            async with asyncio.timeout(HANDSHAKE_S if self._tls is not None else None):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._authority),
                    sock=sock,
                    ssl=self._tls,
                    server_hostname="" if self._tls is not None else None,
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self._authority}: {exc!r}") from exc
        previous, self._connection = self._connection, connection
        if previous is not None and not previous._waiting:
            previous.close()
        return connection

    async def close(self) -> None:
        """Close the connection; calls still waiting fail as lost."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _consume(opening: asyncio.Future[_Connection]) -> None:
    if not opening.cancelled():
        opening.exception()
