"""The wire protocol, free of any transport: paths, metadata, encoding and error answers.

A call names a service and a method and carries a msgpack body (msgspec) and a metadata map of
`x-herd-*` entries: the remaining deadline in milliseconds, the attempt number, the admin token,
the routing context. Herd drivers send calls as frames (`frames`); anything else POSTs them to
`/rpc/{service}/{method}` with the metadata as headers. Every answer is msgpack: the result, or
an `ErrorBody` whose `kind` (an `ErrorKind`, which also gives the HTTP status) tells the client
which typed error to raise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, NamedTuple, Protocol

import msgspec

from herd._model.errors import Unavailable
from herd._model.identity import Identity
from herd._model.outcome import ErrorKind

CONTENT_TYPE = "application/x-msgpack"
H_DEADLINE = "x-herd-deadline-ms"
H_ATTEMPT = "x-herd-attempt"
H_TOKEN = "x-herd-token"
#: The routing context (see `herd._model.routing`): `key=value` pairs joined by `,`.
H_ROUTE = "x-herd-route"
#: Every header herd reads starts with this: the front door strips them from outside requests.
HEADER_PREFIX = "x-herd-"
RPC_PREFIX = "/rpc/"


def rpc_path(service: str, method: str) -> str:
    """Where an RPC is POSTed."""
    return f"{RPC_PREFIX}{service}/{method}"


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """An error answer: what went wrong (`kind`, an `ErrorKind`'s name), and for declared errors,
    which type with which fields."""

    kind: str
    message: str
    type: str = ""
    fields: Any = None
    retry: bool = True


encode = msgspec.msgpack.Encoder().encode
_error_decoder = msgspec.msgpack.Decoder(ErrorBody)


class Chunks(Protocol):
    """A streamed body: chunks until exhausted. The transport calls `aclose` once it is done
    with it, exhausted or not, so whatever the stream holds is released."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def __anext__(self) -> Awaitable[bytes]: ...

    def aclose(self) -> Awaitable[None]: ...


class Reply(NamedTuple):
    """What the server core answers: a status, an encoded body, and any extra headers; or, with
    `stream`, a body sent chunk by chunk as it comes (`body` is then unused)."""

    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    headers: Mapping[str, str] | None = None
    stream: Chunks | None = None


def error_reply(
    kind: ErrorKind | str,
    message: str,
    type_: str = "",
    fields: Any = None,
    *,
    retry: bool = True,
) -> Reply:
    """Encode an RPC error answer of the given kind (an `ErrorKind` or its name), with the
    kind's status; `retry=False` tells callers not to retry."""
    known = ErrorKind(kind)
    body = ErrorBody(known, message, type_, fields, retry)
    return Reply(known.status, encode(body))


def decode_error(body: bytes) -> ErrorBody:
    """Decode an error answer; anything unreadable becomes an `internal` error."""
    try:
        return _error_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ErrorBody(ErrorKind.INTERNAL, f"unreadable error answer ({len(body)} bytes)")


class ConnectFailed(Unavailable):
    """The connection could not be made: the server never saw the request, so retry is safe."""


class ConnectionLost(Unavailable):
    """The connection broke after the request was sent: the server may have run it."""


class BodyTooLarge(Exception):
    """The request body is larger than the server accepts."""


class BodyTimeout(Exception):
    """The request body did not arrive in time (a slow or stalled client)."""


class Incoming(Protocol):
    """One request as the server core sees it, whatever carried it.

    `rpc` is `(service, method)` for an RPC and None for a web request. The body is read only
    when the core asks, after its guards, so a refused request costs no body read.
    """

    @property
    def method(self) -> str:
        """The HTTP method (`POST` for RPCs)."""
        ...

    @property
    def path(self) -> str:
        """The request path."""
        ...

    @property
    def rpc(self) -> tuple[str, str] | None:
        """`(service, method)` of an RPC, or None for a web request."""
        ...

    @property
    def peer(self) -> Identity | None:
        """The caller's identity, proven by the connection (mutual TLS: read once per
        connection from its certificate); None on a connection without one."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers; names are case-insensitive."""
        ...

    @property
    def content_type(self) -> str:
        """The body's media type, without parameters."""
        ...

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the last value of each)."""
        ...

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies sent with the request."""
        ...

    def read_body(self, limit: int) -> Awaitable[bytes]:
        """The body; raises `BodyTooLarge` beyond `limit` bytes, `BodyTimeout` if it stalls."""
        ...


class Dispatcher(Protocol):
    """What a transport's server calls: the server core implements it."""

    def handle(self, incoming: Incoming) -> Awaitable[Reply]:
        """Answer one request."""
        ...
