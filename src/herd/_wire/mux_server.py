"""Serving calls over herd's frames: one asyncio.Protocol per connection, many calls at once.

Each call frame becomes an `Incoming` for the same `Dispatcher` HTTP requests go to, run in its
own task; the answers of one loop iteration leave in one write. A `CANCEL` cancels that call's
task at once; a lost connection cancels all of its calls (nobody is left to answer).

A peer that breaks the protocol (an unknown frame type, a call id in use or 0, a frame that is
not a call) loses its connection; a call whose payload is unreadable or too large gets a typed
error answer and the connection stays. Guards as for HTTP: a frame begun must end within
`FRAME_TIMEOUT_S`, a connection with nothing in flight is closed after `IDLE_S`, a connection
holds at most `MAX_CALLS` calls (more are answered `overloaded`), and while the peer does not
read its answers nothing more is read from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from herd._model.identity import Identity
from herd._model.outcome import ErrorKind
from herd._wire.frames import (
    CALL,
    CANCEL,
    DRAIN,
    PREFACE,
    CallHead,
    FrameReader,
    FrameWriter,
    control_frame,
    decode_call,
    reply_frame,
)
from herd._wire.protocol import (
    CONTENT_TYPE,
    BodyTooLarge,
    Dispatcher,
    error_reply,
    rpc_path,
)
from herd._wire.tls import peer_identity

#: A frame must arrive whole within this long once it began (a slow or stalled client).
FRAME_TIMEOUT_S = 10.0
#: A connection with no call in flight and no frame received for this long is closed (longer
#: than drivers keep an idle connection, 30 s, so a driver never uses one the server is closing).
IDLE_S = 75.0
#: Calls one connection may have in flight; more are answered `overloaded` without a task.
MAX_CALLS = 1024
#: Room for a call frame's service, method and metadata on top of the largest body.
HEAD_ROOM = 64 * 1024
#: An oversized call frame is answered `too_large` and its payload skipped as it arrives, so the
#: connection's other calls go on; one claiming more than this is not worth waiting through,
#: and its connection is closed after the answer.
MAX_SKIP = 64 << 20


class _CallIncoming:
    """A call frame seen through the `Incoming` protocol."""

    __slots__ = ("_body", "headers", "peer", "rpc")

    method = "POST"
    content_type = CONTENT_TYPE

    def __init__(self, call: CallHead, peer: Identity | None) -> None:
        self.rpc = (call.service, call.method)
        self.headers = call.metadata
        self.peer = peer
        self._body = call.body

    @property
    def path(self) -> str:
        return rpc_path(*self.rpc)

    @property
    def query(self) -> dict[str, str]:
        return {}

    @property
    def cookies(self) -> dict[str, str]:
        return {}

    async def read_body(self, limit: int) -> bytes:
        if len(self._body) > limit:
            raise BodyTooLarge(f"body of {len(self._body)} bytes exceeds {limit}")
        return self._body


class MuxConnection(asyncio.Protocol):
    """One client connection, from just after its preface until it closes."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_body: int,
        on_close: Callable[[MuxConnection], None],
    ) -> None:
        self._dispatcher = dispatcher
        self._max_body = max_body
        self._on_close = on_close
        self._reader = FrameReader(max_body + HEAD_ROOM)
        self._calls: dict[int, asyncio.Task[None]] = {}
        self._loop = asyncio.get_running_loop()
        self._writer = FrameWriter(self._loop)
        self._transport: asyncio.Transport | None = None
        self._peer: Identity | None = None
        self._frames = 0
        self._active = True
        self._idle_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None
        self.draining = False

    @property
    def inflight(self) -> int:
        """Calls running now on this connection."""
        return len(self._calls)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._writer.transport = cast(asyncio.Transport, transport)
        # Under TLS the handshake is done by now: the caller's certificate has been checked.
        self._peer = peer_identity(transport.get_extra_info("ssl_object"))
        self._transport.write(PREFACE)
        if self.draining:
            self._transport.write(control_frame(DRAIN))
        self._idle_timer = self._loop.call_later(IDLE_S, self._idle_check)

    def data_received(self, data: bytes) -> None:
        self._active = True
        reader = self._reader
        for kind, call_id, payload in reader.feed(data):
            self._frames += 1
            if kind == CALL:
                if not self._call(call_id, payload):
                    return
            elif kind == CANCEL and payload is not None and not payload:
                task = self._calls.pop(call_id, None)
                if task is not None:
                    task.cancel()
            else:
                self.abort()
                return
        if reader.partial and self._frame_timer is None:
            self._frame_timer = self._loop.call_later(
                FRAME_TIMEOUT_S, self._frame_late, self._frames
            )

    def _call(self, call_id: int, payload: memoryview | None) -> bool:
        """Start one call, or answer it with an error; False if the client broke the protocol."""
        if call_id == 0 or call_id in self._calls:
            self.abort()
            return False
        if payload is None:
            message = f"call frame exceeds {self._reader.max_frame} bytes"
            self._send(reply_frame(call_id, *_error(ErrorKind.TOO_LARGE, message)))
            if self._reader.skipping > MAX_SKIP:
                self.close()
            return True
        try:
            call = decode_call(payload)
        except ValueError as exc:
            message = f"bad call frame: {exc}"
            self._send(reply_frame(call_id, *_error(ErrorKind.BAD_REQUEST, message)))
            return True
        if len(self._calls) >= MAX_CALLS:
            message = f"{MAX_CALLS} calls in flight on one connection"
            self._send(reply_frame(call_id, *_error(ErrorKind.OVERLOADED, message)))
            return True
        self._calls[call_id] = self._loop.create_task(
            self._run(call_id, _CallIncoming(call, self._peer))
        )
        return True

    async def _run(self, call_id: int, incoming: _CallIncoming) -> None:
        # A call cancelled (CANCEL, or its connection lost) has left `_calls` already, and may
        # not even have started: only a call that ends by itself removes its own entry.
        try:
            reply = await self._dispatcher.handle(incoming)
        except asyncio.CancelledError:
            return  # nobody awaits an answer
        except Exception as exc:
            # The dispatcher answers its own failures; this is the last line, not the path.
            reply = error_reply(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
        if self._calls.get(call_id) is asyncio.current_task(self._loop):
            del self._calls[call_id]
        self._send(reply_frame(call_id, reply.status, reply.body))

    def _send(self, frame: bytes) -> None:
        self._writer.send(frame, others=bool(self._calls))

    def drain(self) -> None:
        """Tell the client this server is stopping: calls in flight finish, nothing new."""
        if self.draining:
            return
        self.draining = True
        if self._transport is not None and not self._transport.is_closing():
            self._send(control_frame(DRAIN))

    def close(self) -> None:
        """Close the connection once the answers written so far are sent; calls still in
        flight are cancelled now."""
        transport = self._transport
        if transport is None:
            return
        self._writer.flush()
        transport.close()
        self._cancel_calls()

    def abort(self) -> None:
        """Drop the connection at once, unsent answers and all."""
        if self._transport is not None:
            self._transport.abort()

    def _cancel_calls(self) -> None:
        calls, self._calls = self._calls, {}
        for task in calls.values():
            task.cancel()

    def _frame_late(self, frames: int) -> None:
        self._frame_timer = None
        if not self._reader.partial:
            return
        if self._frames == frames:
            self.abort()
        else:
            self._frame_timer = self._loop.call_later(
                FRAME_TIMEOUT_S, self._frame_late, self._frames
            )

    def _idle_check(self) -> None:
        if self._calls or self._active:
            self._active = False
            self._idle_timer = self._loop.call_later(IDLE_S, self._idle_check)
        elif self._transport is not None:
            self._idle_timer = None
            self._transport.close()

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop taking new calls until it does.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._idle_timer, self._frame_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._frame_timer = None
        self._transport = None
        self._cancel_calls()
        self._on_close(self)


def _error(kind: ErrorKind, message: str) -> tuple[int, bytes]:
    reply = error_reply(kind, message)
    return reply.status, reply.body
