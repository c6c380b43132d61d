"""The server core: turns an `Incoming` RPC into a call of the implementation, and guards it.

In order: the method must exist; the deadline header must parse and not have passed; the server
must not be draining or over its in-flight limit (an explicit `overloaded` answer, which clients
retry elsewhere); the body must decode to the method's argument types. The handler then runs
under the caller's remaining deadline and is cancelled when it passes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from herd._client.driver import dependencies
from herd._model import deadline as _deadline
from herd._model.errors import ConfigurationError, HerdError
from herd._model.interface import Interface, MethodSpec, ServiceError, error_to_wire, methods
from herd._model.web import WebHandler, WebRequest, routes_of
from herd._server.metrics import ServerMetrics
from herd._server.shedding import RetryPressure
from herd._wire.http import (
    H_DEADLINE,
    RPC_PREFIX,
    Dispatcher,
    HttpServer,
    Incoming,
    Reply,
    encode,
    error_reply,
)

log = structlog.get_logger("herd.server")

DEFAULT_MAX_BODY = 1 << 20
#: A dependency's DeadlineExceeded this close to our own deadline is our deadline running out
#: (drivers give up slightly early, when too little is left for a useful attempt).
_OWN_DEADLINE_SLACK_S = 0.02


class _Route:
    __slots__ = ("handler", "positional", "spec")

    def __init__(self, spec: MethodSpec, handler: Callable[..., Awaitable[Any]]) -> None:
        self.spec = spec
        self.handler = handler
        self.positional = len(spec.params) - len(spec.keyword_only)


class Server(Dispatcher):
    """Serves one implementation of an interface. Use `herd.serve` to make one.

    Binds to loopback unless told otherwise. Use as an async context manager, or call `start`,
    then `drain` and `close`.
    """

    def __init__(
        self,
        impl: Interface,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_inflight: int = 512,
        max_body: int = DEFAULT_MAX_BODY,
        default_timeout: float = 30.0,
        admin_token: str | None = None,
    ) -> None:
        if max_inflight < 1 or max_body < 1 or default_timeout <= 0:
            raise ConfigurationError("max_inflight, max_body and default_timeout must be positive")
        specs = methods(impl)
        self.impl = impl
        self.service = next(iter(specs.values())).service
        self.max_inflight = max_inflight
        self.default_timeout = default_timeout
        self._admin_token = admin_token
        self.metrics = ServerMetrics(self.service, lambda: self._inflight)
        self.retry_pressure = RetryPressure()
        self._routes = {
            spec.path: _Route(spec, getattr(impl, name)) for name, spec in specs.items()
        }
        self._http = HttpServer(self, host, port, max_body)
        self.host = host
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        self.ready = False
        self._web_routes = routes_of(impl)

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        return self._http.port

    @property
    def address(self) -> str:
        """`host:port` (after `start`)."""
        return f"{self.host}:{self.port}"

    @property
    def inflight(self) -> int:
        """Requests being handled now."""
        return self._inflight

    async def start(self) -> Server:
        """Bind, start serving and report ready."""
        await self._http.start()
        self.ready = True
        return self

    async def drain(self, timeout: float = 30.0) -> bool:
        """Refuse new requests and wait for in-flight ones; True if all finished in time."""
        self.draining = True
        self.ready = False
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop serving at once (after `drain` for a graceful stop)."""
        self.ready = False
        await self._http.close()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def knows(self, path: str) -> Reply | None:
        if path in self._routes:
            return None
        service, _, method = path[len(RPC_PREFIX) :].partition("/")
        if service != self.service:
            return error_reply(
                "unknown_method", f"unknown service {service!r}: this is {self.service!r}"
            )
        return error_reply("unknown_method", f"service {service!r} has no method {method!r}")

    async def web(self, request: WebRequest) -> Reply:
        if request.method == "GET":
            if request.path == "/health":
                return self._health()
            if request.path == "/herd/dependencies":
                return Reply(200, json.dumps(dependencies()).encode(), "application/json")
            if request.path == "/metrics":
                return Reply(200, self.metrics.exposition(), "text/plain; version=0.0.4")
        handler = self._web_routes.get((request.method, request.path))
        if handler is None:
            known = any(path == request.path for _, path in self._web_routes)
            return Reply(405 if known else 404, b"not found", "text/plain")
        return await self._run_web(handler, request)

    def _health(self) -> Reply:
        body = {
            "service": self.service,
            "live": True,
            "ready": self.ready,
            "inflight": self._inflight,
        }
        return Reply(200 if self.ready else 503, json.dumps(body).encode(), "application/json")

    async def _run_web(self, handler: WebHandler, request: WebRequest) -> Reply:
        name = f"{request.method} {request.path}"
        timeout = self.default_timeout
        raw = request.headers.get(H_DEADLINE)
        if raw is not None:
            try:
                timeout = int(raw) / 1000.0
            except ValueError:
                return Reply(400, b"bad deadline header", "text/plain")
        if timeout <= 0:
            return Reply(504, b"deadline passed before the request arrived", "text/plain")
        if self.draining or self._inflight >= self.max_inflight:
            self.metrics.record(name, "overloaded", None)
            return Reply(503, b"overloaded", "text/plain")
        self._inflight += 1
        self._idle.clear()
        started = time.monotonic()
        outcome = "ok"
        try:
            with _deadline._at(started + timeout):
                async with _deadline.Expiry(started + timeout):
                    response = await handler(request)
            return Reply(
                response.status, response.encoded(), response.content_type, response.headers
            )
        except TimeoutError:
            outcome = "deadline_exceeded"
            return Reply(504, b"deadline exceeded", "text/plain")
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            outcome = "internal"
            log.exception("web handler failed", route=name)
            return Reply(500, b"internal error", "text/plain")
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
            self.metrics.record(name, outcome, time.monotonic() - started)

    async def call(self, incoming: Incoming) -> Reply:
        route = self._routes[incoming.path]
        spec = route.spec
        timeout = self.default_timeout
        if incoming.deadline_ms is not None:
            try:
                timeout = int(incoming.deadline_ms) / 1000.0
            except ValueError:
                self.metrics.record(spec.name, "bad_request", None)
                return error_reply(
                    "bad_request", f"bad deadline header {incoming.deadline_ms[:32]!r}"
                )
            if timeout <= 0:
                self.metrics.record(spec.name, "deadline_exceeded", None)
                return error_reply(
                    "deadline_exceeded", "the deadline passed before the request arrived"
                )
        if spec.options.admin and not self._admin_allowed(incoming.token):
            self.metrics.record(spec.name, "forbidden", None)
            return error_reply("forbidden", f"{spec.service}.{spec.name} needs the admin token")
        if self.draining:
            self.metrics.record(spec.name, "overloaded", None)
            return error_reply("overloaded", f"{self.service} instance is draining")
        attempt = 1
        if incoming.attempt is not None:
            try:
                attempt = int(incoming.attempt)
            except ValueError:
                self.metrics.record(spec.name, "bad_request", None)
                return error_reply("bad_request", f"bad attempt header {incoming.attempt[:32]!r}")
        # Retries are shed only at a busy instance: an idle one that receives nothing but retries
        # (every caller's first choice is elsewhere and sick) is exactly where they should go.
        if not self.retry_pressure.admit(attempt) and self._inflight >= self.max_inflight // 2:
            self.metrics.record(spec.name, "overloaded", None)
            return error_reply(
                "overloaded", f"{self.service}: too many retries, do not retry", retry=False
            )
        if self._inflight >= self.max_inflight:
            self.metrics.record(spec.name, "overloaded", None)
            return error_reply(
                "overloaded", f"{self.service} has {self._inflight} requests in flight"
            )
        try:
            args = spec.args_decoder.decode(incoming.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.metrics.record(spec.name, "bad_request", None)
            return error_reply("bad_request", f"{spec.service}.{spec.name}: {exc}")
        return await self._run(route, args, timeout)

    def _admin_allowed(self, token: str | None) -> bool:
        if self._admin_token is None or token is None:
            return False
        return hmac.compare_digest(token.encode(), self._admin_token.encode())

    async def _run(self, route: _Route, args: Any, timeout: float) -> Reply:
        spec = route.spec
        self._inflight += 1
        self._idle.clear()
        started = time.monotonic()
        outcome = "ok"
        scope = _deadline.Expiry(started + timeout)
        token = _deadline._deadline.set(started + timeout)
        try:
            async with scope:
                values = msgspec.structs.astuple(args)
                if spec.keyword_only:
                    n = route.positional
                    keywords = dict(zip(spec.keyword_only, values[n:], strict=True))
                    result = await route.handler(*values[:n], **keywords)
                else:
                    result = await route.handler(*values)
            return Reply(200, encode(result))
        except ServiceError as exc:
            outcome = "service_error"
            key, fields = error_to_wire(exc)
            return error_reply("service_error", exc.message, key, fields)
        except TimeoutError as exc:
            left = started + timeout - time.monotonic()
            if scope.fired or not isinstance(exc, HerdError) or left <= _OWN_DEADLINE_SLACK_S:
                outcome = "deadline_exceeded"
                return error_reply(
                    "deadline_exceeded", f"{spec.service}.{spec.name} ran out of time"
                )
            # A dependency gave up with our own deadline still ahead: that is the dependency's
            # failure, and retrying this instance's caller elsewhere would only repeat it.
            outcome = "dependency"
            log.warning("dependency timed out", method=spec.name, error=str(exc))
            return error_reply("dependency", f"{type(exc).__name__}: {exc}")
        except HerdError as exc:
            outcome = "dependency"
            log.warning("dependency failed", method=spec.name, error=repr(exc))
            return error_reply("dependency", f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            outcome = "internal"
            log.exception("handler failed", method=spec.name)
            return error_reply("internal", f"{type(exc).__name__}: {exc}")
        finally:
            _deadline._deadline.reset(token)
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
            self.metrics.record(spec.name, outcome, time.monotonic() - started)
