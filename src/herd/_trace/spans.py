"""The spans herd makes, through small hooks in the call path: a driver call, each attempt
(retries, a hedge, the winner and the cancelled loser), a fallback taken, a server's handling of
a request, and the front door's request from outside.

Each hook is a context manager. When nothing is recorded (no tracer installed, or a trace that
was not sampled) it is one shared no-op object, so the call path pays a context-variable read
and no span. A trace that was not sampled still travels on (its `traceparent`), so that deeper
hops do not start traces of their own.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)
from opentelemetry.util.types import Attributes

from herd._model.errors import HerdError, RemoteError
from herd._model.instance import Instance
from herd._model.interface import ServiceError
from herd._model.outcome import ErrorKind
from herd._trace import context as _context
from herd._trace.sampling import FRONT_DOOR

#: Span attributes herd sets (beside OpenTelemetry's `rpc.*`, `http.*` and `error.type`).
INSTANCE = "herd.instance"
ZONE = "herd.zone"
GROUP = "herd.group"
VERSION = "herd.version"
ATTEMPT = "herd.attempt"
HEDGE = "herd.hedge"
OUTCOME = "herd.outcome"
DEADLINE_MS = "herd.deadline_remaining_ms"
ERROR_TYPE = "error.type"


class _Tracing:
    """The tracer the hooks use and the share of new traces they record."""

    __slots__ = ("share", "tracer")

    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        self.share = 0.0


_tracing = _Tracing()
_random = random.random


def _context_reader() -> Callable[[], Mapping[str, Any]]:
    """How the hooks read the current OpenTelemetry context: the SDK's context variable itself
    when the runtime context is the default one (contextvars), else the API. With tracing set
    up, a call reads it three times, sampled or not: through the API that is six Python calls a
    read, through the variable none (the API's reads were 6.7 % of an unsampled call's function
    calls: `benchmarks/trace_hooks.py`)."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(variable, contextvars.ContextVar):
        return variable.get
    return otel_context.get_current


_now = _context_reader()
#: Where a context holds its current span (what `trace.get_current_span` reads).
(_SPAN_KEY,) = trace.set_span_in_context(INVALID_SPAN, otel_context.Context()).keys()


def use(tracer: Tracer | None, share: float) -> None:
    """Make the hooks record with `tracer`, starting a new trace for `share` of the requests
    that arrive without one (None: record nothing)."""
    _tracing.tracer = tracer
    _tracing.share = share


class AttemptLike(Protocol):
    """What the attempt hook reads of an attempt (`herd._client.attempts.Attempt`)."""

    @property
    def instance(self) -> Instance: ...

    @property
    def number(self) -> int: ...

    @property
    def hedge(self) -> bool: ...

    @property
    def failed(self) -> bool | None: ...


class _NoSpan:
    """Nothing recorded."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


class Scope:
    """A recording span, current inside the `with` and ended at its end; an error that leaves
    the `with` is recorded on it."""

    __slots__ = ("_token", "span")

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)
        self._ended(error)
        self.span.end()

    def _ended(self, error: BaseException | None) -> None:
        if error is not None:
            failed(self.span, error)


class _Carried:
    """A trace that is not recorded here but travels on: its context is current inside the
    `with`, so calls made there send it."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: trace.SpanContext) -> None:
        self._context = context

    def __enter__(self) -> None:
        span = NonRecordingSpan(self._context)
        self._token = otel_context.attach(trace.set_span_in_context(span))

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._token)


class _AttemptScope(Scope):
    """An attempt's span: its outcome is read from the attempt as well as from the error, since
    an instance's failed answer that goes back as is raises nothing."""

    __slots__ = ("_attempt",)

    def __init__(self, span: Span, attempt: AttemptLike) -> None:
        super().__init__(span)
        self._attempt = attempt

    def _ended(self, error: BaseException | None) -> None:
        if error is None:
            if self._attempt.failed:
                self.span.set_attribute(OUTCOME, "failed")
                self.span.set_status(Status(StatusCode.ERROR, "the instance failed"))
            return
        # A retry carries the error that another instance may not repeat.
        cause = getattr(error, "error", error)
        failed(self.span, cause if isinstance(cause, BaseException) else error)


def failed(span: Span, error: BaseException) -> None:
    """Record how a span's work ended in `error`: its outcome and error kind."""
    if isinstance(error, asyncio.CancelledError):
        span.set_attribute(OUTCOME, "cancelled")
        return
    kind = error_kind(error)
    span.set_attribute(OUTCOME, kind)
    span.set_attribute(ERROR_TYPE, type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, str(error)[:200]))


def error_kind(error: BaseException) -> str:
    """The `ErrorKind` of an error a call raised, or its type for errors that have none
    (circuit open, bulkhead full, no instance)."""
    if isinstance(error, ServiceError):
        return ErrorKind.SERVICE_ERROR.value
    if isinstance(error, RemoteError):
        return error.kind
    if isinstance(error, TimeoutError):
        return ErrorKind.DEADLINE_EXCEEDED.value
    if isinstance(error, HerdError):
        return type(error).__name__
    return ErrorKind.INTERNAL.value


def call(service: str, method: str) -> Scope | _NoSpan:
    """A driver call: a child of the current span, or a new trace for the head share."""
    tracer = _tracing.tracer
    if tracer is None:
        return NO_SPAN
    parent: Span | None = _now().get(_SPAN_KEY)
    if parent is None or parent is INVALID_SPAN:
        # Outside any trace: a new one for the head share.
        if _tracing.share == 0.0 or _random() >= _tracing.share:
            return NO_SPAN
    elif not parent.get_span_context().trace_flags.sampled:
        return NO_SPAN
    attributes = {"rpc.system": "herd", "rpc.service": service, "rpc.method": method}
    return Scope(tracer.start_span(f"{service}.{method}", attributes=attributes))


def attempt(attempt: AttemptLike) -> Scope | _NoSpan:
    """One attempt at one instance, under the call (or front-door request) that makes it."""
    tracer = _tracing.tracer
    if tracer is None:
        return NO_SPAN
    current: Span | None = _now().get(_SPAN_KEY)
    if current is None or not current.is_recording():
        return NO_SPAN
    instance = attempt.instance
    attributes: Attributes = {
        INSTANCE: instance.id,
        ZONE: instance.zone,
        GROUP: instance.group,
        VERSION: instance.version,
        ATTEMPT: attempt.number,
        HEDGE: attempt.hedge,
        "server.address": instance.address,
    }
    name = f"{instance.service} attempt {attempt.number}" + (" (hedge)" if attempt.hedge else "")
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    return _AttemptScope(span, attempt)


def sending(metadata: dict[str, str], budget_s: float) -> None:
    """An attempt is about to be sent: the trace context goes into its metadata, and the
    deadline it carries onto the attempt's span."""
    if _tracing.tracer is None:
        return
    span: Span | None = _now().get(_SPAN_KEY)
    if span is None or span is INVALID_SPAN:
        return
    context = span.get_span_context()
    if not context.is_valid:
        return
    _context.inject(context, metadata)
    if span.is_recording():
        span.set_attribute(DEADLINE_MS, round(budget_s * 1000.0, 1))


#: What `serve` returns: a recording span, a trace carried on unrecorded, or `NO_SPAN`.
ServeScope = Scope | _Carried | _NoSpan


def serve(service: str, target: str, metadata: Mapping[str, str]) -> ServeScope:
    """A server's handling of one request, a child of the caller's attempt. A request without
    a trace context, or with a malformed one, starts a new trace for the head share."""
    tracer = _tracing.tracer
    if tracer is None:
        return NO_SPAN
    parent = _context.parse(metadata) if _context.TRACEPARENT in metadata else None
    if parent is None:
        if _tracing.share == 0.0 or _random() >= _tracing.share:
            return NO_SPAN
        under = otel_context.Context()
    elif not parent.trace_flags.sampled:
        return _Carried(parent)
    else:
        under = trace.set_span_in_context(NonRecordingSpan(parent))
    attributes = {"rpc.system": "herd", "rpc.service": service, "herd.target": target}
    span = tracer.start_span(
        f"{service} {target}", context=under, kind=SpanKind.SERVER, attributes=attributes
    )
    return Scope(span)


def answered(span: Span | None, status: int) -> None:
    """A server or the front door answered with `status`: a 5xx marks the span failed."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        kind = ErrorKind.of_status(status)
        span.set_attribute(OUTCOME, kind.value)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR, kind.value))


def front_door(
    method: str, path: str, headers: Mapping[str, str], *, record: bool = True
) -> Scope | _NoSpan:
    """A request from outside: recorded when `record` (the control plane keeps or drops the
    trace once it knows how it ended); otherwise it carries an unsampled trace id, which no hop
    records. An outside trace context is continued; a malformed one is ignored and a new trace
    starts."""
    tracer = _tracing.tracer
    if tracer is None:
        return NO_SPAN
    # aiohttp's headers: names are case-insensitive.
    parent = _context.parse(headers)
    if not record:
        ids = random.getrandbits
        trace_id = parent.trace_id if parent is not None else ids(128)
        return Scope(NonRecordingSpan(SpanContext(trace_id, ids(64), is_remote=False)))
    under = (
        trace.set_span_in_context(NonRecordingSpan(parent))
        if parent is not None
        else otel_context.Context()
    )
    attributes: Attributes = {
        FRONT_DOOR: True,
        "http.request.method": method,
        "url.path": path[:256],
    }
    span = tracer.start_span(
        f"{method} {path[:64]}", context=under, kind=SpanKind.SERVER, attributes=attributes
    )
    return Scope(span)


def fallback(error: BaseException) -> Scope | _NoSpan:
    """A fallback taken after a call failed with `error`: a span under the caller's, as long as
    the fallback runs."""
    tracer = _tracing.tracer
    if tracer is None:
        return NO_SPAN
    current: Span | None = _now().get(_SPAN_KEY)
    if current is None or not current.is_recording():
        return NO_SPAN
    service = getattr(error, "service", None) or "?"
    method = getattr(error, "method", None) or "?"
    attributes: Attributes = {
        "rpc.service": service,
        "rpc.method": method,
        OUTCOME: "fallback",
        ERROR_TYPE: type(error).__name__,
        "herd.fallback_after": error_kind(error),
    }
    return Scope(tracer.start_span(f"{service}.{method} fallback", attributes=attributes))


def response_header(span: Span) -> str:
    """The `traceresponse` value for a span the front door recorded."""
    return _context.format_traceparent(span.get_span_context())


def asked(headers: Mapping[str, str]) -> bool:
    """Whether a caller from outside sent a sampled trace context: it records the trace."""
    context = _context.parse(headers) if _context.TRACEPARENT in headers else None
    return context is not None and context.trace_flags.sampled


def trace_id(span: Span) -> str:
    """The span's trace id, as 32 hex digits."""
    return f"{span.get_span_context().trace_id:032x}"
