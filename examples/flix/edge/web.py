"""edge's HTTP front: the home page as HTML (``/``) and JSON (``/api/home``), sign-in and
sign-out, and the writes (play, rate) from the page's buttons and the JSON API.

These are `herd.route`s of `EdgeService`, served on the same port as its RPCs, so the front door
and the registry see one address per edge instance. Each request runs under the caller's deadline
cut to ``FLIX_EDGE_DEADLINE`` seconds (default 1.0), which telescopes through every call behind
it. Boxshots are drawn as SVG at ``/boxshot.svg?video=N``.

Who is watching: a **session** (sign in with visitor number and password: ``POST /signin`` from
the landing page's form, or ``POST /api/signin`` with ``{"visitor": N, "password": "..."}``)
sets the ``flix_session`` cookie (HttpOnly, SameSite=Lax, a random id); the session itself lives
in memcached, so any edge instance serves it. Only a signed-in visitor writes: ``POST /act``
from the page's buttons, ``POST /api/play`` ``{"video": V}`` and ``POST /api/rate``
``{"video": V, "thumbs": 1 | -1}``, each with an idempotency key (``"key"`` in the body or the
``Idempotency-Key`` header; the page puts a fresh one in every button). The **demo shortcut**
``?visitor=N`` (then remembered in the ``visitor`` cookie) shows anyone's page read-only,
without signing in: load generators and experiments use it.

A build can be made bad on purpose for deploy experiments: ``FLIX_FAIL_RATE`` (default 0) is the
share of page requests (``/`` and ``/api/home``) that fail with a server error, as a broken release
would.

Every id a request carries is parsed by `examples.flix.ids.parse_id`: a bad one is answered with
400 and the reason (JSON ``{"error": "bad_request", "message": ...}`` on ``/api/*``, an HTML page
on ``/``, plain text on the boxshot) before any service is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import random
import zlib
from typing import Any
from urllib.parse import parse_qs

import msgspec

import herd
from examples.flix.edge.interface import HomePage, NoSuchVisitor, Session
from examples.flix.edge.library import SESSION_TTL_S, HomePages
from examples.flix.idempotency import BadKey, InvalidWrite, KeyReused, new_key
from examples.flix.identity.interface import BadCredentials, Person
from examples.flix.ids import BadId, VideoId, VisitorId, parse_id
from examples.flix.merch.interface import Thumbs

COOKIE = "visitor"
SESSION_COOKIE = "flix_session"
IDEMPOTENCY_HEADER = "idempotency-key"
_FIELDS_MAX = 16
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


class BadBody(BadId):
    """A write's body is not the form or JSON object it should be: answered with 400."""


class NotSignedIn(herd.HerdError):
    """A write without a live session: answered with 401."""


def _session_cookie(value: str, max_age: int) -> str:
    # HttpOnly: no script reads it; SameSite=Lax: no other site's form posts with it.
    return f"{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax"


def _form(request: herd.WebRequest) -> dict[str, str]:
    """A urlencoded body's fields (the first value of each)."""
    try:
        fields = parse_qs(
            request.body.decode("utf-8"), max_num_fields=_FIELDS_MAX, strict_parsing=False
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadBody(f"the form could not be read: {exc}") from None
    return {name: values[0] for name, values in fields.items()}


def _json(request: herd.WebRequest) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(request.body or b"{}")
    except msgspec.DecodeError as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


def _id(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    if value is None:
        raise BadBody(f"give {name}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadBody(f"{name} must be an id")
    return parse_id(str(value), name)


def _key(fields: dict[str, Any], request: herd.WebRequest) -> str:
    key = fields.get("key") or request.headers.get(IDEMPOTENCY_HEADER) or ""
    if not isinstance(key, str) or not key:
        raise BadBody(f'give an idempotency key: "key" in the body or an {IDEMPOTENCY_HEADER}')
    return key


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

    async def _who(self, request: herd.WebRequest) -> tuple[VisitorId | None, Session | None]:
        """The visitor shown: ``?visitor=N`` (the demo shortcut), else the session's, else
        the ``visitor`` cookie's; and the session, when signed in. Raises `herd.Unavailable`
        when the session cannot be read (the front door tries another edge instance)."""
        raw = request.cookies.get(SESSION_COOKIE)
        if "visitor" in request.query:
            # The demo shortcut needs no session: one that cannot be read shows no buttons.
            session = None
            if raw:
                with contextlib.suppress(herd.Unavailable):
                    session = await self.pages.session(raw)
            return visitor_of(request), session
        session = await self.pages.session(raw) if raw else None
        if session is not None:
            return session.visitor, session
        return visitor_of(request), None

    async def api_home(self, request: herd.WebRequest) -> herd.WebResponse:
        self._maybe_fail()
        try:
            with herd.deadline(self.deadline):
                visitor, _ = await self._who(request)
                if visitor is None:
                    raise BadId("give a visitor: /api/home?visitor=N, or sign in")
                page = await self.pages.home(visitor)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=True)
        return herd.WebResponse(msgspec.json.encode(page), content_type=JSON)

    async def home(self, request: herd.WebRequest) -> herd.WebResponse:
        self._maybe_fail()
        try:
            with herd.deadline(self.deadline):
                visitor, session = await self._who(request)
                if visitor is None:
                    return herd.WebResponse(await self._landing(), content_type=HTML)
                page = await self.pages.home(visitor)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=False)
        headers = {}
        if "visitor" in request.query:
            headers["Set-Cookie"] = f"{COOKIE}={visitor}; Max-Age=2592000; Path=/; HttpOnly"
        writer = session if session is not None and session.visitor == visitor else None
        return herd.WebResponse(render_home(page, writer), content_type=HTML, headers=headers)

    # -- sessions

    async def sign_in(self, request: herd.WebRequest, *, as_json: bool) -> herd.WebResponse:
        try:
            fields = _json(request) if as_json else _form(request)
            visitor = VisitorId(_id(fields, "visitor"))
            password = fields.get("password")
            if not isinstance(password, str):
                raise BadBody("give a password")
            with herd.deadline(self.deadline):
                session_id, session = await self.pages.sign_in(visitor, password)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=as_json)
        headers = {"Set-Cookie": _session_cookie(session_id, SESSION_TTL_S)}
        if as_json:
            body = {"visitor": session.visitor, "name": session.name}
            return herd.WebResponse(msgspec.json.encode(body), 200, JSON, headers)
        return _see_other("/", headers)

    async def sign_out(self, request: herd.WebRequest, *, as_json: bool) -> herd.WebResponse:
        raw = request.cookies.get(SESSION_COOKIE)
        try:
            if raw:
                with herd.deadline(self.deadline):
                    await self.pages.sign_out(raw)
        except herd.HerdError as exc:
            return _failure(exc, as_json=as_json)
        headers = {"Set-Cookie": _session_cookie("", 0)}
        if as_json:
            return herd.WebResponse(b'{"signed_out": true}', 200, JSON, headers)
        return _see_other("/", headers)

    # -- writes

    async def _writer(self, request: herd.WebRequest) -> Session:
        raw = request.cookies.get(SESSION_COOKIE)
        session = await self.pages.session(raw) if raw else None
        if session is None:
            raise NotSignedIn("sign in to play or rate")
        return session

    async def act(self, request: herd.WebRequest) -> herd.WebResponse:
        """A button of the page: ``do=play:KEY``, ``up:KEY`` or ``down:KEY`` on ``video``."""
        try:
            fields = _form(request)
            video = VideoId(_id(fields, "video"))
            action, _, key = fields.get("do", "").partition(":")
            if action not in ("play", "up", "down"):
                raise BadBody("do is play:KEY, up:KEY or down:KEY")
            with herd.deadline(self.deadline):
                session = await self._writer(request)
                if action == "play":
                    await self.pages.play(session.visitor, video, key)
                else:
                    await self.pages.rate(session.visitor, video, 1 if action == "up" else -1, key)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=False)
        return _see_other("/")

    async def api_play(self, request: herd.WebRequest) -> herd.WebResponse:
        try:
            fields = _json(request)
            video, key = VideoId(_id(fields, "video")), _key(fields, request)
            with herd.deadline(self.deadline):
                session = await self._writer(request)
                played = await self.pages.play(session.visitor, video, key)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=True)
        return herd.WebResponse(msgspec.json.encode(played), content_type=JSON)

    async def api_rate(self, request: herd.WebRequest) -> herd.WebResponse:
        try:
            fields = _json(request)
            video, key = VideoId(_id(fields, "video")), _key(fields, request)
            thumbs: Thumbs
            if fields.get("thumbs") == 1:
                thumbs = 1
            elif fields.get("thumbs") == -1:
                thumbs = -1
            else:
                raise BadBody("thumbs is 1 (up) or -1 (down)")
            with herd.deadline(self.deadline):
                session = await self._writer(request)
                rated = await self.pages.rate(session.visitor, video, thumbs, key)
        except (BadId, herd.HerdError) as exc:
            return _failure(exc, as_json=True)
        return herd.WebResponse(msgspec.json.encode(rated), content_type=JSON)

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
        return _layout("flix", f"<h1>Who's watching?</h1>{_sign_in_form()}" + links_section(links))


def links_section(links: str) -> str:
    """The landing page's profiles (read-only pages, the demo shortcut) and its number form."""
    return (
        "<h2>or just look around</h2>"
        f'<ul class="who">{links}</ul>'
        '<form action="/"><label>or visitor number <input name="visitor" size="6" required '
        'inputmode="numeric" pattern="[1-9][0-9]{0,18}"></label>'
        "<button>go</button></form>"
    )


def _sign_in_form(message: str = "") -> str:
    note = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return (
        f'{note}<form class="signin" method="post" action="/signin">'
        '<label>visitor <input name="visitor" size="6" required inputmode="numeric" '
        'pattern="[1-9][0-9]{0,18}"></label> '
        '<label>password <input name="password" type="password" required '
        'autocomplete="current-password"></label> <button>sign in</button></form>'
        '<p class="hint">Demo accounts: visitors 1 to 8; a password is printed by '
        "<code>python -m examples.flix.store password N</code>.</p>"
    )


def _see_other(location: str, headers: dict[str, str] | None = None) -> herd.WebResponse:
    """303: after a form's POST the browser loads `location`, so a reload does not post again."""
    return herd.WebResponse(
        f'<a href="{location}">continue</a>', 303, HTML, {**(headers or {}), "Location": location}
    )


def _failure(exc: BadId | herd.HerdError, *, as_json: bool) -> herd.WebResponse:
    """400 for a bad id, body or key (a bad cookie is cleared), 401 without a session or with
    wrong credentials, 404 for an unknown visitor, 409 for a key reused by another write, 503
    when the page or write cannot be done now. JSON errors are ``{"error": kind, "message":
    ...}``, as herd's own."""
    headers = {}
    if isinstance(exc, BadId):
        status, kind, message = 400, "bad_request", str(exc)
        if isinstance(exc, BadCookie):
            headers["Set-Cookie"] = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly"
    elif isinstance(exc, BadKey | InvalidWrite):
        status, kind, message = 400, "bad_request", str(exc)
    elif isinstance(exc, BadCredentials | NotSignedIn):
        status, kind, message = 401, "unauthorized", str(exc)
        if isinstance(exc, NotSignedIn):
            headers["Set-Cookie"] = _session_cookie("", 0)
        elif not as_json:
            body = _layout("flix: sign in", _sign_in_form("Wrong visitor or password."))
            return herd.WebResponse(body, status, HTML, headers)
    elif isinstance(exc, KeyReused):
        status, kind, message = 409, "conflict", str(exc)
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


def _buttons(video: VideoId) -> str:
    """Play and rate a tile's video: one form, a fresh idempotency key per button."""
    return (
        '<form class="act" method="post" action="/act">'
        f'<input type="hidden" name="video" value="{video}">'
        f'<button name="do" value="play:{new_key()}" title="play">&#9654;</button>'
        f'<button name="do" value="up:{new_key()}" title="thumbs up">&#128077;</button>'
        f'<button name="do" value="down:{new_key()}" title="thumbs down">&#128078;</button>'
        "</form>"
    )


def render_home(page: HomePage, session: Session | None = None) -> str:
    """The HTML of a home page; with the visitor's own `session`, buttons to play and rate."""
    rows = []
    for row in page.rows:
        liked = set(row.liked)
        tiles = "".join(
            f'<li class="tile{" liked" if video.id in liked else ""}" data-video="{video.id}">'
            f'<img src="{html.escape(video.boxshot)}" alt="" width="120" height="180">'
            f'<span class="title">{html.escape(video.title)}</span>'
            f'<span class="year">{video.year}</span>'
            f"{_buttons(video.id) if session is not None else ''}</li>"
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
    account = (
        '<form class="signout" method="post" action="/signout"><button>sign out</button></form>'
        if session is not None
        else ""
    )
    body = f"<h1>{greeting}</h1>{account}{note}{''.join(rows)}"
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
    "a{color:#e5e5e5}.who li{margin:6px 0}.act button{background:none;border:0;"
    "cursor:pointer;font-size:14px;padding:2px}.liked img{outline:2px solid #46d369}"
    ".signout{float:right}.hint{color:#999;font-size:13px}"
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
