"""The control API's trace methods (`herd trace`, the dashboard's slow and failed requests)."""

from __future__ import annotations

from herd._cloud.interface import UnknownTrace
from herd._cloud.traces.store import TraceStore, TraceSummary, TraceView


class TracesApi:
    """The control API's trace methods, mixed into the control plane."""

    traces_kept: TraceStore

    async def traces(self, limit: int = 50) -> list[TraceSummary]:
        return self.traces_kept.recent(limit)

    async def trace(self, trace_id: str) -> TraceView:
        found = self.traces_kept.get(trace_id.strip().lower())
        if found is None:
            raise UnknownTrace(f"no kept trace {trace_id[:40]!r}: it was not kept, or is gone")
        return found
