"""The history on the control port: Edda's query parameters over HTTP, and the control API's
methods that `herd history` calls.

`GET /history` answers the events (`_since`, `_until`, `group`, `kind`, `_limit`), or with
`_at=T` the state of the cloud as of T, or with `_diff=T1,T2` what changed between them. Times
are ISO 8601, seconds since the epoch, or how long ago (`5m`). Like `herd ps`, reading needs no
token: the history holds ids, counts and causes, never a secret, and the port is loopback's.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import msgspec

from herd._cloud.history.store import (
    CloudState,
    Diff,
    Event,
    History,
    HistoryQuery,
    InvalidTime,
    parse_time,
)
from herd._cloud.interface import BadTimes
from herd._model.outcome import ErrorKind
from herd._model.web import WebRequest, WebResponse, route

#: Events the dashboard's history panel shows, newest first.
PANEL_EVENTS = 12
_PARAMETERS = frozenset({"_since", "_until", "_at", "_diff", "_limit", "group", "kind"})


def _bad(message: str) -> WebResponse:
    bad = ErrorKind.BAD_REQUEST
    return WebResponse.json({"error": bad, "message": message}, bad.status)


class HistoryRoutes:
    """The history's routes and control-API methods, mixed into the control plane."""

    history: History

    @route("GET", "/history")
    async def history_page(self, request: WebRequest) -> WebResponse:
        """Events, a state (`_at`) or a diff (`_diff`), as JSON."""
        query = request.query
        unknown = sorted(set(query) - _PARAMETERS)
        if unknown:
            return _bad(f"unknown parameters {unknown}: known are {sorted(_PARAMETERS)}")
        answer: object
        try:
            if "_at" in query:
                answer = self.history.at(parse_time(query["_at"]))
            elif "_diff" in query:
                first, sep, second = query["_diff"].partition(",")
                if not sep:
                    return _bad("_diff takes two times: _diff=T1,T2")
                answer = self.history.diff(parse_time(first), parse_time(second))
            else:
                limit = query.get("_limit")
                if limit is not None and not (limit.isdigit() and 0 < int(limit) <= 100_000):
                    return _bad("_limit is a count from 1 to 100000")
                asked = HistoryQuery(
                    since=parse_time(query["_since"]) if "_since" in query else None,
                    until=parse_time(query["_until"]) if "_until" in query else None,
                    group=query.get("group"),
                    kind=query.get("kind"),
                    limit=int(limit) if limit is not None else None,
                )
                answer = self.history.events(asked)
        except InvalidTime as exc:
            return _bad(str(exc))
        return WebResponse(msgspec.json.encode(answer), content_type="application/json")

    async def history_panel(self) -> Mapping[str, Any]:
        """The dashboard's panel: the latest events."""
        rows = [
            [
                datetime.datetime.fromtimestamp(event.at).strftime("%H:%M:%S"),
                event.kind,
                event.instance or event.group or "",
                event.cause,
            ]
            for event in reversed(self.history.events(HistoryQuery(limit=PANEL_EVENTS)))
        ]
        return {
            "id": "history",
            "title": "history (herd history)",
            "columns": ["time", "kind", "what", "cause"],
            "rows": rows,
        }

    async def history_events(self, query: HistoryQuery) -> list[Event]:
        return self.history.events(query)

    async def history_at(self, at: float) -> CloudState:
        return self.history.at(at)

    async def history_diff(self, since: float, until: float) -> Diff:
        try:
            return self.history.diff(since, until)
        except InvalidTime as exc:
            raise BadTimes(str(exc)) from None
