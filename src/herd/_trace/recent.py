"""The spans a process keeps for the control plane: its recently finished spans, by trace,
within a bound, until the control plane asks for the traces it decided to keep.

Traces are kept whole or not at all by a rule at the front door that only knows the answer once
the request ended (a tail rule), so every hop holds its spans for a while rather than deciding
on its own; the oldest traces go first when the bound is reached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

#: Path of an instance's spans of some traces: `/herd/traces/<id>,<id>,...` (hex trace ids).
TRACES_PATH = "/herd/traces/"
_NS = 1e-9


def span_json(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the trace store and `herd trace --json` show it."""
    context = span.context
    assert context is not None
    resource = span.resource.attributes
    start = span.start_time or 0
    end = span.end_time or start
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "service": str(resource.get("service.name", "?")),
        "instance": str(resource.get("service.instance.id", "")),
        "group": str(resource.get("herd.group", "")),
        "version": str(resource.get("service.version", "")),
        "zone": str(resource.get("herd.zone", "")),
        "name": span.name,
        "kind": span.kind.name.lower(),
        "start": round(start * _NS, 6),
        "duration_ms": round((end - start) / 1e6, 3),
        "failed": span.status.status_code is StatusCode.ERROR,
        "attributes": {key: value for key, value in (span.attributes or {}).items()},
    }


class RecentSpans(SpanProcessor):
    """A span processor that holds finished spans by trace, at most `max_spans` of them."""

    def __init__(self, max_spans: int = 20_000) -> None:
        self._max = max_spans
        self._traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._count = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do until the span ends."""

    def on_end(self, span: ReadableSpan) -> None:
        """Hold the span under its trace; drop the oldest traces beyond the bound."""
        context = span.context
        if context is None:
            return
        held = self._traces.get(context.trace_id)
        if held is None:
            held = self._traces[context.trace_id] = []
        held.append(span)
        self._count += 1
        while self._count > self._max:
            _, dropped = self._traces.popitem(last=False)
            self._count -= len(dropped)

    def spans(self, trace_ids: Iterable[int]) -> list[dict[str, Any]]:
        """The spans held of these traces, as JSON-ready dicts."""
        found: list[dict[str, Any]] = []
        for trace_id in trace_ids:
            found.extend(span_json(span) for span in self._traces.get(trace_id, ()))
        return found

    def shutdown(self) -> None:
        """Forget everything."""
        self._traces.clear()
        self._count = 0

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered on the way out."""
        return True


def parse_ids(text: str) -> list[int]:
    """Trace ids from `id,id,...` (32 hex digits each); malformed ones are skipped."""
    ids: list[int] = []
    for part in text.split(",")[:256]:
        if len(part) == 32:
            try:
                ids.append(int(part, 16))
            except ValueError:
                continue
    return ids


#: This process's spans, which its server hands to the control plane.
PROCESS_SPANS = RecentSpans()
