"""The control API's trace methods (`herd trace`), the dashboard's panel of recent slow and
failed requests, and the waterfall page of one kept trace."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import msgspec

from herd._cloud.dashboard.routes import asset
from herd._cloud.history.store import History
from herd._cloud.interface import UnknownTrace
from herd._cloud.traces.flow import AddressView, ServedView, at_address, served
from herd._cloud.traces.store import TraceStore, TraceSummary, TraceView
from herd._model.outcome import ErrorKind
from herd._model.web import WebRequest, WebResponse, route

#: How many kept traces the dashboard's panel lists.
_PANEL_ROWS = 15


class TracesApi:
    """The control API's trace methods and pages, mixed into the control plane."""

    traces_kept: TraceStore
    history: History

    async def traces(self, limit: int = 50) -> list[TraceSummary]:
        return self.traces_kept.recent(limit)

    async def trace(self, trace_id: str) -> TraceView:
        found = self.traces_kept.get(trace_id.strip().lower())
        if found is None:
            raise UnknownTrace(f"no kept trace {trace_id[:40]!r}: it was not kept, or is gone")
        return found

    async def history_served(
        self, service: str, since: float | None = None, until: float | None = None
    ) -> list[ServedView]:
        return served(self.history, service, since, until)

    async def history_address(self, address: str) -> list[AddressView]:
        return at_address(self.history, address)

    async def traces_panel(self) -> Mapping[str, Any]:
        """The dashboard's panel: the latest kept requests, each a link to its waterfall."""
        rows = [
            [
                datetime.datetime.fromtimestamp(t.start).strftime("%H:%M:%S"),
                t.request,
                str(t.status),
                f"{t.duration_ms:.1f}",
                t.reason,
                {"text": t.trace_id[:12], "href": f"/trace?id={t.trace_id}"},
            ]
            for t in self.traces_kept.recent(_PANEL_ROWS)
        ]
        return {
            "id": "traces",
            "title": f"slow and failed requests (slow: {self.traces_kept.slow_s * 1000:.0f} ms)",
            "columns": ["time", "request", "status", "ms", "kept", "trace"],
            "rows": rows,
        }

    @route("GET", "/trace")
    async def trace_page(self, request: WebRequest) -> WebResponse:
        """The waterfall page of one kept trace (`/trace?id=...`)."""
        return asset("trace.html")

    @route("GET", "/trace.js")
    async def trace_script(self, request: WebRequest) -> WebResponse:
        """The waterfall page's script."""
        return asset("trace.js")

    @route("GET", "/api/trace")
    async def trace_json(self, request: WebRequest) -> WebResponse:
        """One kept trace as JSON (`/api/trace?id=...`), what the waterfall page draws."""
        found = self.traces_kept.get(request.query.get("id", "").strip().lower())
        if found is None:
            missing = ErrorKind.NOT_FOUND
            return WebResponse.json({"error": missing, "message": "no such kept trace"}, 404)
        return WebResponse(msgspec.json.encode(found), content_type="application/json")
