"""The server core: one request pipeline for RPCs and web routes.

Every request passes the same guards in the same order, written once: the target must exist; the
caller must be one the allow rules name (its identity proven by the connection); the deadline
header must parse and not have passed; admin methods need the control plane's identity or the
token; the server must not be draining; then `admission` gives it a place within the in-flight
limit (adaptive under the fixed cap), or a wait in a short queue that serves the most critical
first, or an explicit `overloaded` answer, which clients retry elsewhere; only then is the body
read (inside the in-flight count) and decoded, and the handler run under the caller's remaining
deadline, cancelled when it passes, and with the caller's routing context and identity in force
(so the handler's own calls carry the context on, and `herd.caller()` says who asked); injected
faults (`injection`: the control plane's, or the request's own `fit` entry) add latency or fail
it just before the handler. Failures map to one set of error kinds; RPCs answer them as msgpack,
web routes as JSON. A streamed web answer (server-sent events) stays in the pipeline until it
ends: in flight, and cut off at the same deadline.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any

import structlog
from prometheus_client.registry import Collector

from herd._model import clock as _clock
from herd._model import criticality as _criticality
from herd._model import deadline as _deadline
from herd._model import identity as _identity
from herd._model import routing as _routing
from herd._model.errors import ConfigurationError, HerdError
from herd._model.interface import Interface, ServiceError, methods
from herd._model.outcome import ErrorKind
from herd._model.route import BUCKET, PIN
from herd._model.web import routes_of
from herd._server.admission import Admission, Mode, Shed
from herd._server.injection import FAULTS_PATH, FIT_KEY, InjectedFailure, Injections
from herd._server.metrics import SERVED_PATH, ServerMetrics
from herd._server.shedding import RetryPressure
from herd._server.targets import Refusal, Rpc, Target, Web, header_int, json_error, route_of
from herd._trace import spans as _spans
from herd._trace.recent import PROCESS_SPANS, TRACES_PATH, parse_ids
from herd._wire.listener import Listener
from herd._wire.protocol import (
    CONTENT_TYPE,
    H_ATTEMPT,
    H_DEADLINE,
    H_TOKEN,
    BodyTimeout,
    BodyTooLarge,
    Chunks,
    Incoming,
    Reply,
    error_reply,
)

log = structlog.get_logger("herd.server")

DEFAULT_MAX_BODY = 1 << 20
#: The most a `/herd/faults` body may hold.
_MAX_FAULTS_BODY = 1 << 16
#: A dependency's DeadlineExceeded this close to our own deadline is our deadline running out
#: (drivers give up slightly early, when too little is left for a useful attempt).
_OWN_DEADLINE_SLACK_S = 0.02

#: Outcomes of requests refused before their handler ran: they have no latency to record.
_REFUSED = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.TOO_LARGE, ErrorKind.REQUEST_TIMEOUT})

#: What `/herd/dependencies` serves: the process's view of the services it calls.
Dependencies = Callable[[], Mapping[str, Any]]


class _Streamed:
    """A streamed body, still inside the pipeline that admitted its request: it counts in flight
    until it ends, and it ends when the request's deadline passes (so a stream that nobody ends
    still has a lifetime), when the server stops being ready (draining or closing, at the next
    chunk), or when the transport closes it."""

    __slots__ = ("_chunks", "_done", "_ends", "_outcome", "_server", "_started", "_target")

    def __init__(
        self, server: Server, target: Target, chunks: Chunks, ends: float, started: float
    ) -> None:
        self._server = server
        self._target = target
        self._chunks = chunks
        self._ends = ends
        self._started = started
        self._outcome = "ok"
        self._done = False

    def __aiter__(self) -> _Streamed:
        return self

    async def __anext__(self) -> bytes:
        left = self._ends - time.monotonic()
        if self._done or left <= 0 or not self._server.ready:
            await self.aclose()
            raise StopAsyncIteration
        try:
            async with asyncio.timeout(left):
                return await anext(self._chunks)
        except (StopAsyncIteration, TimeoutError):
            pass
        except asyncio.CancelledError:
            self._outcome = "cancelled"
            await self.aclose()
            raise
        except Exception:
            # The status line is sent: all that is left to do about a failing stream is end it.
            self._outcome = ErrorKind.INTERNAL
            log.exception("stream failed", target=self._target.name)
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            await self._chunks.aclose()
        finally:
            self._server._finished(self._target, self._outcome, self._started, sampled=False)


class Server:
    """Serves one implementation of an interface. Use `herd.serve` to make one.

    Binds to loopback unless told otherwise. Use as an async context manager, or call `start`,
    then `drain` and `close`. With `tls` (a server context from the app's authority), every
    caller must present a certificate, and `allow` names the services that may call (the
    control plane always may); without `tls` anyone local may connect and `allow` cannot be
    checked, so it is refused.
    """

    def __init__(
        self,
        impl: Interface,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_inflight: int = 512,
        limit: Mode | str = Mode.ADAPTIVE_PRIORITY,
        max_queued: int = 64,
        max_body: int = DEFAULT_MAX_BODY,
        default_timeout: float = 30.0,
        max_timeout: float = 300.0,
        admin_token: str | None = None,
        collectors: Iterable[Collector] = (),
        dependencies: Dependencies | None = None,
        tls: ssl.SSLContext | None = None,
        allow: Collection[str] | None = None,
    ) -> None:
        if allow is not None and tls is None:
            raise ConfigurationError("allow rules need identities: give the server tls=")
        if max_inflight < 1 or max_body < 1 or default_timeout <= 0:
            raise ConfigurationError("max_inflight, max_body and default_timeout must be positive")
        if max_timeout < default_timeout:
            raise ConfigurationError("max_timeout must be at least default_timeout")
        specs = methods(impl)
        self.impl = impl
        self.service = next(iter(specs.values())).service
        self.max_inflight = max_inflight
        self.max_body = max_body
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self._admin_token = admin_token.encode() if admin_token else None
        self._dependencies = dependencies
        self.allow = frozenset(allow) if allow is not None else None
        self.admission = Admission(
            Mode.parse(limit), ceiling=max_inflight, max_queued=max_queued, service=self.service
        )
        self.metrics = ServerMetrics(
            self.service, lambda: self.admission.inflight, [*collectors, self.admission]
        )
        self.retry_pressure = RetryPressure()
        self.injections = Injections(self.service)
        self._rpcs = {name: Rpc(spec, getattr(impl, name)) for name, spec in specs.items()}
        self._web = {
            key: Web(f"{key[0]} {key[1]}", handler) for key, handler in routes_of(impl).items()
        }
        self._web_paths = {path for _, path in self._web}
        self._listener = Listener(self, host, port, max_body=max_body, tls=tls)
        self.host = host
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        self.ready = False

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        return self._listener.port

    @property
    def address(self) -> str:
        """`host:port` (after `start`)."""
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self._listener.connections

    @property
    def inflight(self) -> int:
        """Requests being handled now."""
        return self.admission.inflight

    async def start(self) -> Server:
        """Bind, start serving and report ready."""
        await self._listener.start()
        self.ready = True
        return self

    async def drain(self, timeout: float = 30.0) -> bool:
        """Refuse new requests and wait for in-flight ones; True if all finished in time.

        Drivers connected by herd's frames are told at once (a drain frame), so they send
        nothing new here."""
        self.draining = True
        self.ready = False
        self._listener.drain()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop serving at once (after `drain` for a graceful stop)."""
        self.ready = False
        await self._listener.close()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def handle(self, incoming: Incoming) -> Awaitable[Reply]:
        """Answer one request: find its target, then run the one pipeline."""
        rpc = incoming.rpc
        if rpc is None and incoming.path == FAULTS_PATH:
            return self._faults(incoming)
        if rpc is None and (operations := self._operations(incoming)) is not None:
            return _ready(operations)
        name = rpc[1] if rpc is not None else f"{incoming.method} {incoming.path[:64]}"
        span = _spans.serve(self.service, name, incoming.headers)
        if span is _spans.NO_SPAN:
            # Nothing recorded: the pipeline's own coroutine is the request's, none around it.
            return self._target_and_pipeline(incoming)
        return self._handle_in(span, incoming)

    async def _handle_in(self, span: _spans.ServeScope, incoming: Incoming) -> Reply:
        with span as recording:
            reply = await self._target_and_pipeline(incoming)
            _spans.answered(recording, reply.status)
        return reply

    def _target_and_pipeline(self, incoming: Incoming) -> Awaitable[Reply]:
        rpc = incoming.rpc
        if rpc is None:
            target: Target | Reply = self._web_target(incoming)
        else:
            target = self._rpc_target(incoming, *rpc)
        if isinstance(target, Reply):
            return _ready(target)
        return self._pipeline(target, incoming)

    def _rpc_target(self, incoming: Incoming, service: str, method: str) -> Target | Reply:
        target = self._rpcs.get(method) if service == self.service else None
        if target is None:
            if service != self.service:
                message = f"unknown service {service[:64]!r}: this is {self.service!r}"
            else:
                message = f"service {service!r} has no method {method[:64]!r}"
            self.metrics.record("unknown", ErrorKind.UNKNOWN_METHOD, None)
            return error_reply(ErrorKind.UNKNOWN_METHOD, message)
        if incoming.method != "POST":
            self.metrics.record(target.name, ErrorKind.METHOD_NOT_ALLOWED, None)
            return error_reply(ErrorKind.METHOD_NOT_ALLOWED, f"{incoming.method}: RPCs are POSTed")
        if incoming.content_type != CONTENT_TYPE:
            self.metrics.record(target.name, ErrorKind.UNSUPPORTED_MEDIA_TYPE, None)
            return error_reply(
                ErrorKind.UNSUPPORTED_MEDIA_TYPE,
                f"content type must be {CONTENT_TYPE}, not {incoming.content_type[:64]!r}",
            )
        return target

    def _web_target(self, incoming: Incoming) -> Target | Reply:
        target = self._web.get((incoming.method, incoming.path))
        if target is None:
            if incoming.path in self._web_paths:
                return json_error(
                    ErrorKind.METHOD_NOT_ALLOWED, f"{incoming.method} is not served here"
                )
            return json_error(ErrorKind.NOT_FOUND, f"no route {incoming.path[:64]!r}")
        return target

    def _operations(self, incoming: Incoming) -> Reply | None:
        """Health, metrics and dependencies: answered outside the pipeline, so that they answer
        even when the in-flight limit is reached."""
        if incoming.method != "GET":
            return None
        path = incoming.path
        if path == "/health":
            body = {
                "service": self.service,
                "live": True,
                "ready": self.ready,
                "inflight": self.admission.inflight,
            }
            status = 200 if self.ready else 503
            return Reply(status, json.dumps(body).encode(), "application/json")
        if path == "/metrics":
            return Reply(200, self.metrics.exposition(), "text/plain; version=0.0.4")
        if path == SERVED_PATH:
            return Reply(200, json.dumps(self.metrics.served()).encode(), "application/json")
        if path == "/herd/dependencies":
            seen = dict(self._dependencies()) if self._dependencies is not None else {}
            return Reply(200, json.dumps(seen).encode(), "application/json")
        if path.startswith(TRACES_PATH):
            # Spans name paths and instances: the control plane's to read, like its faults.
            if not self._admin_allowed(incoming.headers, incoming.peer):
                return json_error(ErrorKind.FORBIDDEN, f"{TRACES_PATH} needs the admin token")
            held = PROCESS_SPANS.spans(parse_ids(path.removeprefix(TRACES_PATH)))
            return Reply(200, json.dumps({"spans": held}).encode(), "application/json")
        return None

    async def _faults(self, incoming: Incoming) -> Reply:
        """The faults this server injects: the control plane's, so they need the admin token."""
        if not self._admin_allowed(incoming.headers, incoming.peer):
            return json_error(ErrorKind.FORBIDDEN, f"{FAULTS_PATH} needs the admin token")
        try:
            body = await incoming.read_body(_MAX_FAULTS_BODY) if incoming.method == "POST" else b""
        except BodyTooLarge as exc:
            return json_error(ErrorKind.TOO_LARGE, str(exc))
        except BodyTimeout as exc:
            return json_error(ErrorKind.REQUEST_TIMEOUT, str(exc))
        status, answer = self.injections.command(incoming.method, body)
        if status == 200 and incoming.method == "POST":
            log.warning("faults set", faults=answer.decode())
        return Reply(status, answer, "application/json")

    def _admin_allowed(self, headers: Mapping[str, str], peer: _identity.Identity | None) -> bool:
        if peer is not None and peer.is_control:
            return True
        token = headers.get(H_TOKEN)
        if self._admin_token is None or token is None:
            return False
        return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._admin_token)

    def _admit(
        self, target: Target, headers: Mapping[str, str], peer: _identity.Identity | None
    ) -> float:
        """The guards before any work: returns the seconds the request may run."""
        allow = self.allow
        if allow is not None and not (
            peer is not None and (peer.service in allow or peer.is_control)
        ):
            who = "a caller without an identity" if peer is None else peer.service
            raise Refusal(
                ErrorKind.FORBIDDEN, f"{self.service} does not take calls from {who}", retry=False
            )
        deadline_ms = header_int(headers, H_DEADLINE)
        timeout = self.default_timeout
        if deadline_ms is not None:
            if deadline_ms <= 0:
                raise Refusal(
                    ErrorKind.DEADLINE_EXCEEDED, "the deadline passed before the request came"
                )
            timeout = min(deadline_ms / 1000.0, self.max_timeout)
        if target.admin and not self._admin_allowed(headers, peer):
            raise Refusal(
                ErrorKind.FORBIDDEN,
                f"{self.service}.{target.name} needs the control plane or the admin token",
                retry=False,
            )
        if self.draining:
            raise Refusal(ErrorKind.OVERLOADED, f"{self.service} instance is draining")
        attempt = max(1, header_int(headers, H_ATTEMPT) or 1)
        # Retries are shed only at a busy instance: an idle one that receives nothing but retries
        # (every caller's first choice is elsewhere and sick) is exactly where they should go.
        busy = self.admission.inflight >= self.max_inflight // 2
        if not self.retry_pressure.admit(attempt) and busy:
            raise Refusal(
                ErrorKind.OVERLOADED, f"{self.service}: too many retries, do not retry", retry=False
            )
        return timeout

    async def _pipeline(self, target: Target, incoming: Incoming) -> Reply:
        peer = incoming.peer
        try:
            timeout = self._admit(target, incoming.headers, peer)
            route = route_of(incoming.headers)
        except Refusal as refusal:
            self.metrics.record(target.name, refusal.kind, None)
            return target.error(refusal.kind, refusal.message, retry=refusal.retry)
        arrived = time.monotonic()
        # The hook into admission (docs/overload.md): a place at once, or a wait in its queue.
        if not self.admission.try_enter():
            try:
                await self.admission.enter(_criticality.of(route), _clock.monotonic() + timeout)
            except Shed as shed:
                self.metrics.record(target.name, ErrorKind.OVERLOADED, None)
                return target.error(ErrorKind.OVERLOADED, f"{self.service}: {shed}")
        self._idle.clear()
        started = time.monotonic()
        ends = arrived + timeout
        outcome = "ok"
        streaming = False
        scope = _deadline.scope_at(ends)
        routed = _routing.use(route)
        if (pin := route.get(PIN)) is not None:
            self.metrics.pinned(pin)
        self.metrics.routed(route.get(BUCKET), pin)
        identified = _identity.use(peer)
        try:
            with scope:
                body = await incoming.read_body(self.max_body)
                if self.injections.armed or FIT_KEY in route:
                    await self.injections.apply(target.name, route)
                reply = await target.run(incoming, body)
            if reply.stream is not None:
                # The request stays in flight, and under its deadline, until the stream ends.
                streaming = True
                return reply._replace(stream=_Streamed(self, target, reply.stream, ends, started))
            return reply
        except Refusal as refusal:
            outcome = refusal.kind
            return target.error(refusal.kind, refusal.message, retry=refusal.retry)
        except BodyTooLarge as exc:
            outcome = ErrorKind.TOO_LARGE
            return target.error(outcome, str(exc))
        except BodyTimeout as exc:
            outcome = ErrorKind.REQUEST_TIMEOUT
            return target.error(outcome, str(exc))
        except ServiceError as exc:
            outcome = ErrorKind.SERVICE_ERROR
            return target.service_error(exc)
        except InjectedFailure as exc:
            # Answered as the instance failing, which it is meant to look like, without the
            # traceback a real failure logs.
            outcome = ErrorKind.INTERNAL
            return target.error(outcome, str(exc))
        except TimeoutError as exc:
            left = ends - time.monotonic()
            if scope.fired or not isinstance(exc, HerdError) or left <= _OWN_DEADLINE_SLACK_S:
                outcome = ErrorKind.DEADLINE_EXCEEDED
                return target.error(outcome, f"{self.service}.{target.name} ran out of time")
            # A dependency gave up with our own deadline still ahead: that is the dependency's
            # failure, and retrying this instance's caller elsewhere would only repeat it.
            outcome = ErrorKind.DEPENDENCY
            log.warning("dependency timed out", target=target.name, error=str(exc))
            return target.error(outcome, f"{type(exc).__name__}: {exc}")
        except HerdError as exc:
            outcome = ErrorKind.DEPENDENCY
            log.warning("dependency failed", target=target.name, error=repr(exc))
            return target.error(outcome, f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            outcome = ErrorKind.INTERNAL
            log.exception("handler failed", target=target.name)
            # RPC callers are herd drivers, which show the cause to the developer; web routes
            # face the outside, which learns nothing of the internals.
            detail = f"{type(exc).__name__}: {exc}" if isinstance(target, Rpc) else "failed"
            return target.error(outcome, f"{self.service}.{target.name}: {detail}")
        finally:
            _identity.reset(identified)
            _routing.reset(routed)
            if not streaming:
                self._finished(target, outcome, started)

    def _finished(
        self, target: Target, outcome: str, started: float, *, sampled: bool = True
    ) -> None:
        """The end of an admitted request: out of flight (its latency a sample of the adaptive
        limit's, unless it was a stream), counted."""
        ran = outcome not in _REFUSED
        took = time.monotonic() - started
        admission = self.admission
        admission.leave(took if sampled and ran else None, admission.inflight)
        if admission.inflight == 0:
            self._idle.set()
        self.metrics.record(target.name, outcome, took if ran else None)


async def _ready(reply: Reply) -> Reply:
    """A reply known before any await, as the awaitable `Server.handle` returns."""
    return reply
