"""Serving the wire protocol over HTTP/1.1 with aiohttp's low-level server (no router): web
routes, operations and RPCs from anything that is not a herd driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from herd._model.deadline import Expiry
from herd._model.identity import Identity
from herd._wire.protocol import (
    RPC_PREFIX,
    BodyTimeout,
    BodyTooLarge,
    Chunks,
    Dispatcher,
    Reply,
)
from herd._wire.tls import peer_identity

#: Idle keep-alive connections are closed after this long (longer than herd clients keep idle
#: connections, 30 s, so a client never reuses one the server is closing).
KEEPALIVE_S = 75.0
#: A request's head (request line and headers) must arrive within this long once it began.
HEADER_TIMEOUT_S = 10.0
#: A request body must arrive within this long once the core asks for it.
BODY_TIMEOUT_S = 10.0
#: Connections one server holds open at once; more are closed as they arrive.
MAX_CONNECTIONS = 4096


class _GuardedHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline on a request's head: a client that starts a
    request and trickles its headers (slowloris) is cut off after `HEADER_TIMEOUT_S`."""

    _head_timer: asyncio.TimerHandle | None = None
    _head_count = 0
    peer: Identity | None = None
    """The caller's identity, read once per connection from its certificate (TLS only)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Under TLS this runs once the handshake is done: the peer's certificate is checked.
        self.peer = peer_identity(transport.get_extra_info("ssl_object"))
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        elif self._head_timer is None and self._idle():
            # Bytes arrived between requests without completing one: a head has begun.
            self._head_count = before
            self._head_timer = self._loop.call_later(HEADER_TIMEOUT_S, self._head_late)

    def _idle(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_count == self._head_count and self._idle():
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


class GuardedServer(web.Server):
    """aiohttp's low-level server with a head timeout and a cap on open connections."""

    def __init__(self, handler: Any, *, max_connections: int | None = None, **kwargs: Any) -> None:
        super().__init__(handler, keepalive_timeout=KEEPALIVE_S, access_log=None, **kwargs)
        self.max_connections = MAX_CONNECTIONS if max_connections is None else max_connections

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if len(self._connections) >= self.max_connections:
            # Refused before any request is read: the cheapest answer to a connection flood.
            transport.abort()
            return
        super().connection_made(handler, transport)


def plain(status: int, text: str) -> web.Response:
    """A plain-text answer of a proxy's own (a refusal, an error), one line."""
    return web.Response(status=status, text=text + "\n")


async def body_or_refusal(request: web.BaseRequest, limit: int) -> bytes | web.Response:
    """A proxied request's body, or the answer that refuses it: 413 beyond `limit` bytes, 408
    if it stalls (the front door's and the global front door's one rule)."""
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        return plain(413, f"request body over {limit} bytes")
    except BodyTimeout:
        return plain(408, "request body not received in time")


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """A request's body; `BodyTooLarge` beyond `limit` bytes, `BodyTimeout` if it stalls."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(f"body of {length} bytes exceeds {limit}")
    if length is not None:
        # The common case: a small body that arrived with the headers is already buffered,
        # and is taken without a timer or an await.
        buffered = request.content.read_nowait(length)
        if len(buffered) == length:
            return buffered
        chunks = [buffered]
        size = len(buffered)
    else:
        chunks = []
        size = 0
    try:
        async with Expiry(time.monotonic() + BODY_TIMEOUT_S):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"body not received within {BODY_TIMEOUT_S:g}s") from None
    return b"".join(chunks)


class _HttpIncoming:
    """An aiohttp request seen through the `Incoming` protocol."""

    __slots__ = ("_request", "rpc")

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        path = request.path
        self.rpc: tuple[str, str] | None = None
        if path.startswith(RPC_PREFIX):
            service, _, method = path[len(RPC_PREFIX) :].partition("/")
            self.rpc = (service, method)

    @property
    def method(self) -> str:
        return self._request.method

    @property
    def peer(self) -> Identity | None:
        handler = self._request.protocol
        return handler.peer if isinstance(handler, _GuardedHandler) else None

    @property
    def path(self) -> str:
        return self._request.path

    @property
    def headers(self) -> Mapping[str, str]:
        return self._request.headers

    @property
    def content_type(self) -> str:
        return self._request.content_type

    @property
    def query(self) -> dict[str, str]:
        return dict(self._request.query)

    @property
    def cookies(self) -> dict[str, str]:
        return dict(self._request.cookies)

    def read_body(self, limit: int) -> Awaitable[bytes]:
        return read_body(self._request, limit)


class HttpServer:
    """Serves a `Dispatcher` over HTTP/1.1: `server` makes the aiohttp connection handlers that
    the listener hands HTTP connections to."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def server(self, max_connections: int) -> GuardedServer:
        """aiohttp's side of the port (in a running loop)."""
        # handler_cancellation: when the caller gives up and closes the connection, the handler
        # is cancelled, so abandoned work stops instead of running on for nobody.
        return GuardedServer(
            self._handle, handler_cancellation=True, max_connections=max_connections
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        reply: Reply = await self._dispatcher.handle(_HttpIncoming(request))
        if reply.stream is not None:
            return await self._stream(request, reply, reply.stream)
        response = web.Response(status=reply.status, body=reply.body)
        _set_headers(response, reply)
        return response

    async def _stream(
        self, request: web.BaseRequest, reply: Reply, stream: Chunks
    ) -> web.StreamResponse:
        """Send a streamed reply chunk by chunk (chunked transfer encoding) until it ends or
        the client goes away (then aiohttp cancels this handler); the stream is closed either
        way."""
        response = web.StreamResponse(status=reply.status)
        _set_headers(response, reply)
        try:
            await response.prepare(request)
            async for chunk in stream:
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client left between two chunks: nobody to answer
        finally:
            await stream.aclose()
        return response


def _set_headers(response: web.StreamResponse, reply: Reply) -> None:
    # Set as a header, not `content_type=`, so a charset parameter passes through as given.
    response.headers["Content-Type"] = reply.content_type
    if reply.headers:
        response.headers.update(reply.headers)
