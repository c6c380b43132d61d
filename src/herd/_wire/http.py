"""The wire: everything about HTTP and encoding lives here, so the transport can be swapped.

Requests are `POST /rpc/{service}/{method}` over HTTP/1.1 keep-alive (aiohttp on both sides) with
a msgpack body (msgspec). Call metadata travels in headers: the remaining deadline in milliseconds,
the attempt number, the caller's identity and the routing context. Every answer is msgpack: the
result, or an `ErrorBody` whose `kind` tells the client which typed error to raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
import msgspec
from aiohttp import web
from yarl import URL

from herd._model.errors import Unavailable
from herd._model.web import WebRequest

CONTENT_TYPE = "application/x-msgpack"
H_DEADLINE = "x-herd-deadline-ms"
H_ATTEMPT = "x-herd-attempt"
H_CALLER = "x-herd-caller"
H_CONTEXT = "x-herd-context"
H_TOKEN = "x-herd-token"
RPC_PREFIX = "/rpc/"

# One HTTP status per error kind, so that proxies and logs read sensibly; clients read the body.
STATUS_OF_KIND: dict[str, int] = {
    "bad_request": 400,
    "forbidden": 403,
    "unknown_method": 404,
    "method_not_allowed": 405,
    "too_large": 413,
    "unsupported_media_type": 415,
    "service_error": 422,
    "internal": 500,
    "dependency": 502,
    "overloaded": 503,
    "deadline_exceeded": 504,
}


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """An error answer: what went wrong, and for declared errors, which type with which fields."""

    kind: str
    message: str
    type: str = ""
    fields: Any = None
    retry: bool = True


_encode = msgspec.msgpack.Encoder().encode
_error_decoder = msgspec.msgpack.Decoder(ErrorBody)


class Reply(NamedTuple):
    """What a dispatcher answers: a status, an encoded body, and any extra headers."""

    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    headers: Mapping[str, str] | None = None


def error_reply(
    kind: str, message: str, type_: str = "", fields: Any = None, *, retry: bool = True
) -> Reply:
    """Encode an error answer of the given kind; `retry=False` tells callers not to retry."""
    body = ErrorBody(kind, message, type_, fields, retry)
    return Reply(STATUS_OF_KIND.get(kind, 500), _encode(body))


def decode_error(body: bytes) -> ErrorBody:
    """Decode an error answer; anything unreadable becomes an `internal` error."""
    try:
        return _error_decoder.decode(body)
    except msgspec.DecodeError:
        return ErrorBody("internal", f"unreadable error answer ({len(body)} bytes)")


class Incoming(NamedTuple):
    """One RPC request as the server core sees it, free of HTTP."""

    path: str
    body: bytes
    deadline_ms: str | None
    attempt: str | None
    caller: str | None
    context: str | None
    token: str | None


class Dispatcher:
    """What the HTTP server calls: the server core implements this."""

    async def call(self, incoming: Incoming) -> Reply:
        """Answer one RPC."""
        raise NotImplementedError

    async def web(self, request: WebRequest) -> Reply:
        """Answer a plain HTTP request (health, metrics, web routes)."""
        raise NotImplementedError

    def knows(self, path: str) -> Reply | None:
        """Refuse an unknown RPC path before its body is read; None if the path is served."""
        raise NotImplementedError


class HttpServer:
    """Serves a `Dispatcher` over HTTP/1.1 with aiohttp's low-level server (no router)."""

    def __init__(self, dispatcher: Dispatcher, host: str, port: int, max_body: int) -> None:
        self._dispatcher = dispatcher
        self._host = host
        self._port = port
        self._max_body = max_body
        self._runner: web.ServerRunner | None = None
        self.port = port

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        # handler_cancellation: when the caller gives up and closes the connection, the handler
        # is cancelled, so abandoned work stops instead of running on for nobody.
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        sockets = self._runner.addresses
        self.port = int(sockets[0][1]) if sockets else self._port
        return self.port

    async def close(self) -> None:
        """Stop listening and close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if not request.path.startswith(RPC_PREFIX):
            reply = await self._web(request)
        elif request.method != "POST":
            reply = error_reply("method_not_allowed", f"{request.method}: RPCs are POSTed")
        else:
            reply = await self._rpc(request)
        response = web.Response(status=reply.status, body=reply.body)
        # Set as a header, not `content_type=`, so a charset parameter passes through as given.
        response.headers["Content-Type"] = reply.content_type
        if reply.headers:
            response.headers.update(reply.headers)
        return response

    async def _web(self, request: web.BaseRequest) -> Reply:
        body = b""
        if request.method not in ("GET", "HEAD"):
            length = request.content_length
            read = (
                None
                if length is not None and length > self._max_body
                else await self._read(request)
            )
            if read is None:
                return Reply(413, b"request body too large", "text/plain")
            body = read
        return await self._dispatcher.web(
            WebRequest(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                dict(request.cookies),
                body,
            )
        )

    async def _rpc(self, request: web.BaseRequest) -> Reply:
        refused = self._dispatcher.knows(request.path)
        if refused is not None:
            return refused
        if request.content_type != CONTENT_TYPE:
            return error_reply(
                "unsupported_media_type",
                f"content type must be {CONTENT_TYPE}, not {request.content_type}",
            )
        length = request.content_length
        if length is not None and length > self._max_body:
            return error_reply("too_large", f"body of {length} bytes exceeds {self._max_body}")
        body = await self._read(request)
        if body is None:
            return error_reply("too_large", f"body exceeds {self._max_body} bytes")
        headers = request.headers
        return await self._dispatcher.call(
            Incoming(
                request.path,
                body,
                headers.get(H_DEADLINE),
                headers.get(H_ATTEMPT),
                headers.get(H_CALLER),
                headers.get(H_CONTEXT),
                headers.get(H_TOKEN),
            )
        )

    async def _read(self, request: web.BaseRequest) -> bytes | None:
        if request.content_length is not None:
            return await request.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


class ConnectFailed(Unavailable):
    """The connection could not be made: the server never saw the request, so retry is safe."""


class ConnectionLost(Unavailable):
    """The connection broke after the request was sent: the server may have run it."""


class HttpTransport:
    """One keep-alive connection pool to one instance."""

    def __init__(
        self, host: str, port: int, *, connect_timeout: float, pool_size: int = 256
    ) -> None:
        self._base = URL.build(scheme="http", host=host, port=port)
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
        )
        return self._session

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST one RPC; the caller bounds the time with its own timeout (cancellation)."""
        session = self._session or self._open()
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base.with_path(path)
        headers["Content-Type"] = CONTENT_TYPE
        try:
            async with session.post(url, data=body, headers=headers) as response:
                return response.status, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self._base.authority}: {exc}") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionLost(f"connection to {self._base.authority} lost: {exc}") from exc

    async def get(self, path: str, timeout: float) -> tuple[int, bytes]:
        """GET an operations endpoint (health, metrics)."""
        session = self._session or self._open()
        try:
            async with asyncio.timeout(timeout):
                async with session.get(self._base.with_path(path)) as response:
                    return response.status, await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError) as exc:
            raise ConnectFailed(f"cannot connect to {self._base.authority}: {exc}") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise ConnectionLost(f"connection to {self._base.authority} lost: {exc}") from exc

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


encode = _encode
