"""edge's HTTP front: the home page as HTML (``/``) and JSON (``/api/home?visitor=N``).

These are `herd.route`s of `EdgeService`, served on the same port as its RPCs, so the front door
and the registry see one address per edge instance. Each request runs under the caller's deadline
cut to ``FLIX_EDGE_DEADLINE`` seconds (default 1.0), which telescopes through every call behind
it. The visitor comes from ``?visitor=N`` (then remembered in a cookie) or the ``visitor``
cookie. Boxshots are drawn as SVG at ``/boxshot.svg?video=N``.

A build can be made bad on purpose for deploy experiments: ``FLIX_FAIL_RATE`` (default 0) is the
share of page requests (``/`` and ``/api/home``) that fail with a server error, as a broken release
would.

Every id a request carries is parsed by `examples.flix.ids.parse_id`: a bad one is answered with
400 and the reason (JSON ``{"error": "bad_request", "message": ...}`` on ``/api/*``, an HTML page
on ``/``, plain text on the boxshot) before any service is called.
"""

from __future__ import annotations

import asyncio
import html
import os
import random
import zlib

import msgspec

import herd
from examples.flix.edge.interface import HomePage, NoSuchVisitor
from examples.flix.edge.library import HomePages
from examples.flix.identity.interface import Person
from examples.flix.ids import BadId, VideoId, VisitorId, parse_id

COOKIE = "visitor"
LANDING_VISITORS = tuple(VisitorId(v) for v in range(1, 9))
HTML = "text/html; charset=utf-8"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def page_deadline() -> float:
    """Seconds one HTTP request may take: ``FLIX_EDGE_DEADLINE``, default 1.0."""
    return float(os.environ.get("FLIX_EDGE_DEADLINE", "1.0"))


def fail_rate() -> float:
    """The share of page requests this build fails on purpose: ``FLIX_FAIL_RATE``, default 0."""
    return float(os.environ.get("FLIX_FAIL_RATE", "0"))


class BadBuild(RuntimeError):
    """A failure a build with ``FLIX_FAIL_RATE`` makes on purpose: the server answers 500."""


class BadCookie(BadId):
    """The visitor cookie holds no id: answered with 400 and the cookie cleared."""


def visitor_of(request: herd.WebRequest) -> VisitorId | None:
    """The visitor a request is for: ``?visitor=N`` (even empty), else the cookie, else None.

    Raises `BadId` for a bad parameter, `BadCookie` for a bad cookie.
    """
    raw = request.query.get("visitor")
    if raw is not None:
        return VisitorId(parse_id(raw, "visitor"))
    raw = request.cookies.get(COOKIE)
    if raw is None:
        return None
    try:
        return VisitorId(parse_id(raw, "the visitor cookie"))
    except BadId as exc:
        raise BadCookie(str(exc)) from None


class Front:
    """The HTTP handlers over `HomePages`; `EdgeService` routes requests here."""

    def __init__(
        self, pages: HomePages, deadline: float | None = None, failing: float | None = None
    ) -> None:
        self.pages = pages
        self.deadline = deadline if deadline is not None else page_deadline()
        self.failing = failing if failing is not None else fail_rate()

    def _maybe_fail(self) -> None:
        if self.failing and random.random() < self.failing:
            raise BadBuild(f"this build fails {self.failing:.0%} of its pages (FLIX_FAIL_RATE)")

    async def api_home(self, request: herd.WebRequest) -> herd.WebResponse:
        self._maybe_fail()
        try:
            visitor = visitor_of(request)
            if visitor is None:
                raise BadId("give a visitor: /api/home?visitor=N")
            with herd.deadline(self.deadline):
                page = await self.pages.home(visitor)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=True)
        return herd.WebResponse(msgspec.json.encode(page), content_type=JSON)

    async def home(self, request: herd.WebRequest) -> herd.WebResponse:
        self._maybe_fail()
        try:
            visitor = visitor_of(request)
            if visitor is None:
                return herd.WebResponse(await self._landing(), content_type=HTML)
            with herd.deadline(self.deadline):
                page = await self.pages.home(visitor)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=False)
        headers = {}
        if "visitor" in request.query:
            headers["Set-Cookie"] = f"{COOKIE}={visitor}; Max-Age=2592000; Path=/; HttpOnly"
        return herd.WebResponse(render_home(page), content_type=HTML, headers=headers)

    async def boxshot(self, request: herd.WebRequest) -> herd.WebResponse:
        raw = request.query.get("video")
        if raw is None:
            return herd.WebResponse("give a video: /boxshot.svg?video=N", 400, TEXT)
        try:
            video = VideoId(parse_id(raw, "video"))
        except BadId as exc:
            return herd.WebResponse(str(exc), 400, TEXT)
        try:
            with herd.deadline(self.deadline):
                facet = await self.pages.movies.video(video)
        except herd.HerdError as exc:
            return _failure(exc, as_json=False)
        if facet is None:
            return herd.WebResponse("no such video", 404, TEXT)
        return herd.WebResponse(
            render_boxshot(video, facet.title, facet.year),
            content_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def _landing(self) -> str:
        async def person(visitor: VisitorId) -> Person | None:
            try:
                return await self.pages.identity.person(visitor)
            except herd.HerdError:
                return None

        with herd.deadline(self.deadline):
            people = await asyncio.gather(*(person(v) for v in LANDING_VISITORS))
        links = "".join(
            f'<li><a href="/?visitor={p.id}">{html.escape(p.name)}</a></li>' for p in people if p
        )
        body = (
            "<h1>Who's watching?</h1>"
            f'<ul class="who">{links}</ul>'
            '<form action="/"><label>or visitor number <input name="visitor" size="6" required '
            'inputmode="numeric" pattern="[1-9][0-9]{0,18}"></label>'
            "<button>go</button></form>"
        )
        return _layout("flix", body)


def _failure(exc: BadId | herd.HerdError, *, as_json: bool) -> herd.WebResponse:
    """400 for a bad visitor (a bad cookie is cleared), 404 for an unknown one, 503 when the
    page cannot be built. JSON errors are ``{"error": kind, "message": ...}``, as herd's own."""
    headers = {}
    if isinstance(exc, BadId):
        status, kind, message = 400, "bad_request", str(exc)
        if isinstance(exc, BadCookie):
            headers["Set-Cookie"] = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly"
    elif isinstance(exc, NoSuchVisitor):
        status, kind, message = 404, "not_found", f"no visitor {exc.visitor}"
    else:
        status, kind = 503, "unavailable"
        message = f"the page is unavailable right now ({type(exc).__name__})"
    if as_json:
        data = {"error": kind, "message": message}
        return herd.WebResponse(msgspec.json.encode(data), status, JSON, headers)
    body = f'<p class="error">{html.escape(message)}</p><p><a href="/">home</a></p>'
    return herd.WebResponse(_layout("flix", body), status, HTML, headers)


def render_home(page: HomePage) -> str:
    """The HTML of a home page."""
    rows = []
    for row in page.rows:
        tiles = "".join(
            f'<li class="tile" data-video="{video.id}">'
            f'<img src="{html.escape(video.boxshot)}" alt="" width="120" height="180">'
            f'<span class="title">{html.escape(video.title)}</span>'
            f'<span class="year">{video.year}</span></li>'
            for video in row.videos
        )
        rows.append(
            f'<section class="row" data-kind="{row.kind}"><h2>{html.escape(row.title)}</h2>'
            f'<ol class="tiles">{tiles}</ol></section>'
        )
    greeting = f"Welcome back, {html.escape(page.name)}" if page.name else "Welcome back"
    note = (
        f'<p class="omitted" data-omitted="{" ".join(page.omitted)}">'
        "Some rows are unavailable right now.</p>"
        if page.omitted
        else ""
    )
    body = f"<h1>{greeting}</h1>{note}{''.join(rows)}"
    return _layout(f"flix: home of visitor {page.visitor}", body)


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_STYLE}</style></head>"
        f'<body><header><a class="logo" href="/">FLIX</a></header><main>{body}</main></body></html>'
    )


_STYLE = (
    "body{margin:0;background:#141414;color:#e5e5e5;font-family:system-ui,sans-serif}"
    "header{padding:12px 24px}.logo{color:#e50914;font-weight:800;font-size:28px;"
    "text-decoration:none}main{padding:0 24px 24px}h1{font-weight:500}"
    "h2{font-size:18px;margin:18px 0 8px}.tiles{display:flex;gap:8px;overflow-x:auto;"
    "list-style:none;padding:0;margin:0}.tile{flex:0 0 120px;font-size:12px}"
    ".tile img{display:block;border-radius:4px}.title{display:block;margin-top:4px}"
    ".year{color:#999}.omitted{color:#999;font-style:italic}.error{color:#f66}"
    "a{color:#e5e5e5}.who li{margin:6px 0}"
)


def render_boxshot(video: int, title: str, year: int) -> str:
    """A generated boxshot: a gradient in the video's own colours, its title and year."""
    hue = zlib.crc32(str(video).encode()) % 360
    lines: list[str] = []
    for word in title.split():
        if lines and len(lines[-1]) + len(word) < 13:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    text = "".join(
        f'<text x="12" y="{150 + 24 * i}" font-size="20" font-weight="700" fill="#fff">'
        f"{html.escape(line)}</text>"
        for i, line in enumerate(lines[:5])
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="300" viewBox="0 0 200 300">'
        '<defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1">'
        f'<stop offset="0" stop-color="hsl({hue},65%,45%)"/>'
        f'<stop offset="1" stop-color="hsl({(hue + 40) % 360},70%,15%)"/></linearGradient></defs>'
        '<rect width="200" height="300" fill="url(#g)"/>'
        f'<text x="12" y="30" font-size="14" fill="#e50914" font-weight="800">FLIX</text>{text}'
        f'<text x="12" y="285" font-size="13" fill="#ddd">{year}</text></svg>'
    )
