"""The dashboard's web routes, served by the control plane beside its API.

The page and its script and style are files of this package (hand-written, no framework: the
page must work with no internet, and a few hundred lines of plain JavaScript and SVG are
smaller to ship and to read than any charting library). Figures reach the page as server-sent
events, one snapshot a second from the one `Gatherer`. Reading needs nothing; actions (kill an
instance, scale a group) need the control plane's admin token as `Authorization: Bearer`, which
the page takes from its URL fragment or asks for, and never finds in what is served.
"""

from __future__ import annotations

import hmac
import importlib.resources
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from herd._cloud.dashboard.gatherer import Gatherer, Source
from herd._cloud.interface import GroupView, InstanceView
from herd._model.outcome import ErrorKind
from herd._model.web import WebRequest, WebResponse, route

#: What the browser may cache: nothing, so a new version of herd shows at once.
_NO_CACHE = {"cache-control": "no-store"}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Tells EventSource how soon to reconnect when a stream ends (each ends at its deadline).
_RETRY_MS = 500


class Actions(Source, Protocol):
    """What the dashboard needs of the control plane: the gatherer's source, and its actions."""

    token: str

    async def kill(self, instance: str) -> InstanceView:
        """SIGKILL one instance."""
        ...

    async def scale(self, group: str, count: int) -> GroupView:
        """Change a group's desired count."""
        ...


def asset(name: str) -> WebResponse:
    """A file of the dashboard's static assets, as a response."""
    data = importlib.resources.files(__package__).joinpath("static", name).read_bytes()
    return WebResponse(data, content_type=_TYPES[name[name.rindex(".") :]], headers=_NO_CACHE)


class Dashboard:
    """The dashboard of one control plane: its gatherer and what its routes do."""

    def __init__(self, control: Actions) -> None:
        self.control = control
        self.gatherer = Gatherer(control)

    async def events(self) -> AsyncGenerator[bytes, None]:
        """Server-sent events: one `snapshot` event per gathered snapshot."""
        yield f"retry: {_RETRY_MS}\n\n".encode()
        async for snapshot in self.gatherer.watch():
            yield b"event: snapshot\ndata: " + snapshot + b"\n\n"

    def allowed(self, request: WebRequest) -> bool:
        """Whether the request carries the admin token."""
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        expected = self.control.token.encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8", "surrogateescape"), expected
        )

    async def act(self, request: WebRequest, action: str) -> WebResponse:
        """Kill or scale, as the JSON body asks, if the request carries the token."""
        if not self.allowed(request):
            forbidden = ErrorKind.FORBIDDEN
            return WebResponse.json(
                {"error": forbidden, "message": "actions need the control token"}, forbidden.status
            )
        try:
            body: Any = request.json()
            if action == "kill":
                done = (await self.control.kill(str(body["instance"]))).id
            else:
                done = (await self.control.scale(str(body["group"]), int(body["count"]))).name
        except (ValueError, KeyError, TypeError) as exc:
            bad = ErrorKind.BAD_REQUEST
            return WebResponse.json({"error": bad, "message": repr(exc)}, bad.status)
        return WebResponse.json({"id": done})

    async def close(self) -> None:
        """Stop gathering: open streams end."""
        await self.gatherer.close()


class DashboardRoutes:
    """The dashboard's routes, mixed into the control plane's implementation."""

    dashboard: Dashboard

    @route("GET", "/")
    async def dashboard_page(self, request: WebRequest) -> WebResponse:
        """The page."""
        return asset("index.html")

    @route("GET", "/dashboard.js")
    async def dashboard_script(self, request: WebRequest) -> WebResponse:
        """The page's script."""
        return asset("dashboard.js")

    @route("GET", "/dashboard.css")
    async def dashboard_style(self, request: WebRequest) -> WebResponse:
        """The page's style."""
        return asset("dashboard.css")

    @route("GET", "/favicon.svg")
    async def dashboard_icon(self, request: WebRequest) -> WebResponse:
        """The page's icon."""
        return asset("favicon.svg")

    @route("GET", "/events")
    async def dashboard_events(self, request: WebRequest) -> WebResponse:
        """A snapshot a second as server-sent events, until the request's deadline."""
        return WebResponse.streaming(self.dashboard.events())

    @route("GET", "/api/snapshot")
    async def dashboard_snapshot(self, request: WebRequest) -> WebResponse:
        """The newest snapshot as JSON (what `herd top` reads)."""
        snapshot = await self.dashboard.gatherer.latest()
        return WebResponse(snapshot, content_type="application/json", headers=_NO_CACHE)

    @route("POST", "/api/kill")
    async def dashboard_kill(self, request: WebRequest) -> WebResponse:
        """Kill an instance: `{"instance": id}`; needs the token."""
        return await self.dashboard.act(request, "kill")

    @route("POST", "/api/scale")
    async def dashboard_scale(self, request: WebRequest) -> WebResponse:
        """Scale a group: `{"group": name, "count": n}`; needs the token."""
        return await self.dashboard.act(request, "scale")
