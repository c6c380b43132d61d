"""What a request addresses, as the server pipeline sees it: an RPC method or a web route, which
differ in how the body becomes a call and how an answer or an error is rendered; and the
refusals and header readings of the pipeline's guards."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from herd._model import routing as _routing
from herd._model.interface import MethodSpec, ServiceError, error_to_wire
from herd._model.outcome import ErrorKind
from herd._model.web import WebHandler, WebRequest
from herd._wire.protocol import H_ROUTE, Incoming, Reply, encode, error_reply

#: Digits accepted in a deadline or attempt header: enough for any sane value, and a bound on
#: what `int()` is asked to parse.
_MAX_HEADER_DIGITS = 9


class Refusal(Exception):
    """The request is refused with an error kind before or while it runs."""

    def __init__(self, kind: ErrorKind, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry = retry


class Target:
    """What a request addresses: an RPC method or a web route. The pipeline is the same for both;
    they differ in how the body becomes a call and how an answer or error is rendered."""

    __slots__ = ("admin", "name")

    def __init__(self, name: str, admin: bool) -> None:
        self.name = name
        self.admin = admin

    async def run(self, incoming: Incoming, body: bytes) -> Reply:
        """Run the handler on the request's body; its answer."""
        raise NotImplementedError

    def error(self, kind: ErrorKind, message: str, *, retry: bool = True) -> Reply:
        """The answer to a failure of `kind`."""
        raise NotImplementedError

    def service_error(self, error: ServiceError) -> Reply:
        """The answer to a declared service error."""
        raise NotImplementedError


class Rpc(Target):
    """An RPC method: the body holds its msgpack arguments; errors answer as msgpack."""

    __slots__ = ("handler", "positional", "spec")

    def __init__(self, spec: MethodSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        super().__init__(spec.name, spec.options.admin)
        self.spec = spec
        self.handler = handler
        self.positional = len(spec.params) - len(spec.keyword_only)

    async def run(self, incoming: Incoming, body: bytes) -> Reply:
        spec = self.spec
        try:
            args = spec.args_decoder.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise Refusal(ErrorKind.BAD_REQUEST, f"{spec.service}.{spec.name}: {exc}") from None
        values = msgspec.structs.astuple(args)
        if spec.keyword_only:
            n = self.positional
            keywords = dict(zip(spec.keyword_only, values[n:], strict=True))
            result = await self.handler(*values[:n], **keywords)
        else:
            result = await self.handler(*values)
        try:
            return Reply(200, encode(result))
        except (TypeError, OverflowError, ValueError) as exc:
            raise RuntimeError(f"result of {spec.name} cannot be encoded: {exc}") from exc

    def error(self, kind: ErrorKind, message: str, *, retry: bool = True) -> Reply:
        return error_reply(kind, message, retry=retry)

    def service_error(self, error: ServiceError) -> Reply:
        key, fields = error_to_wire(error)
        return error_reply(ErrorKind.SERVICE_ERROR, error.message, key, fields)


class Web(Target):
    """A web route: the handler gets a `WebRequest`; errors answer as JSON."""

    __slots__ = ("handler",)

    def __init__(self, name: str, handler: WebHandler) -> None:
        super().__init__(name, False)
        self.handler = handler

    async def run(self, incoming: Incoming, body: bytes) -> Reply:
        try:
            request = WebRequest(
                incoming.method,
                incoming.path,
                incoming.query,
                {k.lower(): v for k, v in incoming.headers.items()},
                incoming.cookies,
                body,
            )
        except (UnicodeError, ValueError) as exc:
            raise Refusal(ErrorKind.BAD_REQUEST, f"unreadable request: {exc}") from None
        response = await self.handler(request)
        return Reply(
            response.status,
            response.encoded(),
            response.content_type,
            response.headers,
            response.stream,
        )

    def error(self, kind: ErrorKind, message: str, *, retry: bool = True) -> Reply:
        return json_error(kind, message)

    def service_error(self, error: ServiceError) -> Reply:
        return json_error(ErrorKind.SERVICE_ERROR, error.message)


def json_error(kind: ErrorKind, message: str) -> Reply:
    """A web error answer: JSON naming the kind, with the kind's status."""
    body = json.dumps({"error": kind, "message": message}).encode()
    return Reply(kind.status, body, "application/json")


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None when absent; `Refusal` when malformed."""
    raw = headers.get(name)
    if raw is None:
        return None
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_HEADER_DIGITS:
        raise Refusal(ErrorKind.BAD_REQUEST, f"bad {name} header {raw[:32]!r}")
    return int(raw)


def route_of(headers: Mapping[str, str]) -> _routing.RoutingContext:
    """The caller's routing context, to travel on with every call the handler makes."""
    raw = headers.get(H_ROUTE)
    if raw is None:
        return _routing.EMPTY
    try:
        return _routing.parse(raw)
    except ValueError as exc:
        raise Refusal(ErrorKind.BAD_REQUEST, str(exc)) from None
