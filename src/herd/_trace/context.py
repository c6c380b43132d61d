"""The W3C trace context on the wire: `traceparent` and `tracestate`, in the same metadata map
as the deadline and the routing context (headers over HTTP, entries of a call frame).

Parsed here rather than by the SDK's propagator: a server reads it on every request, and a
malformed value from outside must only start a new trace, never fail the request.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: What the front door answers with: the trace the request was recorded in (W3C Trace Context
#: Level 2).
TRACERESPONSE = "traceresponse"
_HEX = frozenset("0123456789abcdef")
_MAX_TRACESTATE = 512


def format_traceparent(context: SpanContext) -> str:
    """`00-<trace id>-<span id>-<flags>`."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def parse(headers: Mapping[str, str]) -> SpanContext | None:
    """The caller's span context from `traceparent` (and `tracestate`), or None when absent or
    malformed (version `ff`, ids of zeros, wrong lengths, upper-case or non-hex digits)."""
    raw = headers.get(TRACEPARENT)
    if raw is None or len(raw) < 55:
        return None
    parts = raw.split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if (
        len(version) != 2
        or version == "ff"
        or (version == "00" and len(parts) != 4)
        or len(trace_id) != 32
        or len(span_id) != 16
        or len(flags) != 2
        or not _HEX.issuperset(version + trace_id + span_id + flags)
    ):
        return None
    trace, span = int(trace_id, 16), int(span_id, 16)
    if trace == 0 or span == 0:
        return None
    state = headers.get(TRACESTATE)
    return SpanContext(
        trace,
        span,
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16) & TraceFlags.SAMPLED),
        trace_state=_state(state) if state else None,
    )


def _state(raw: str) -> TraceState | None:
    if len(raw) > _MAX_TRACESTATE:
        return None
    return TraceState.from_header([raw])


def inject(context: SpanContext, headers: dict[str, str]) -> None:
    """Put `context` in an outgoing call's metadata."""
    headers[TRACEPARENT] = format_traceparent(context)
    if context.trace_state:
        headers[TRACESTATE] = context.trace_state.to_header()
