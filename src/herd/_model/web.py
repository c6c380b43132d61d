"""Web routes: plain HTTP endpoints a service serves beside its RPCs (pages, JSON APIs).

The edge of a system serves browsers and the front door; its handlers see a `WebRequest` and
return a `WebResponse`, so the HTTP library stays hidden here too. Web handlers run under the
caller's deadline like RPCs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from herd._model.errors import ConfigurationError

WebHandler = Callable[["WebRequest"], Awaitable["WebResponse"]]
H = TypeVar("H", bound=Callable[..., Awaitable["WebResponse"]])

_ROUTE_ATTR = "__herd_route__"


@dataclasses.dataclass(frozen=True, slots=True)
class WebRequest:
    """An HTTP request to a web route."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True, slots=True)
class WebResponse:
    """An HTTP response from a web route: one body, or with `stream` a body sent as it comes."""

    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    stream: AsyncGenerator[bytes, None] | None = None
    """Chunks sent as they are yielded. The stream still runs under the request's deadline
    (the caller's, else the server's default timeout): it ends when that passes, and when the
    server drains, at its next chunk."""

    @classmethod
    def json(cls, data: Any, status: int = 200) -> WebResponse:
        """A JSON response."""
        return cls(json.dumps(data).encode(), status, "application/json")

    @classmethod
    def streaming(
        cls,
        chunks: AsyncGenerator[bytes, None],
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
    ) -> WebResponse:
        """A streamed response (server-sent events by default), never cached by the browser."""
        headers = {"cache-control": "no-store", **(headers or {})}
        return cls(b"", 200, content_type, headers, chunks)

    def encoded(self) -> bytes:
        """The body as bytes."""
        return self.body.encode() if isinstance(self.body, str) else self.body


def route(method: str, path: str) -> Callable[[H], H]:
    """Serve the decorated method of an implementation at `method path`.

    ::

        class EdgeService(Edge):
            @herd.route("GET", "/api/home")
            async def api_home(self, request: herd.WebRequest) -> herd.WebResponse: ...
    """
    method = method.upper()
    if method not in {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}:
        raise ConfigurationError(f"unsupported HTTP method {method!r}")
    if not path.startswith("/") or path.startswith(("/rpc/", "/herd/")):
        raise ConfigurationError(f"route {path!r}: must start with / and not with /rpc/ or /herd/")

    def mark(fn: H) -> H:
        routes: list[tuple[str, str]] = getattr(fn, _ROUTE_ATTR, [])
        setattr(fn, _ROUTE_ATTR, [*routes, (method, path)])
        return fn

    return mark


def routes_of(impl: object) -> dict[tuple[str, str], WebHandler]:
    """The web routes an implementation declares, bound to it."""
    found: dict[tuple[str, str], WebHandler] = {}
    for name in dir(type(impl)):
        for key in getattr(getattr(type(impl), name, None), _ROUTE_ATTR, ()):
            if key in found:
                raise ConfigurationError(f"route {key[0]} {key[1]} is declared twice")
            found[key] = getattr(impl, name)
    return found
