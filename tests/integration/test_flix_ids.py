"""flix parses every id from outside strictly, with its edge and services as real OS processes.

A bad id in a query or a cookie is answered with 400 and the reason, never a 500; it never
reaches a service, so the edge's breakers stay closed and a good request still answers. Behind
the edge, ids that are integers but no entity's (0, negative, beyond SQLite's 64 bits) are a
declared error or an empty answer, never a 500.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import herd
from examples.flix import store
from examples.flix.edge.interface import Edge, NoSuchVisitor
from examples.flix.history.interface import History
from examples.flix.identity.interface import Identity, UnknownVisitor
from examples.flix.ids import MAX_ID, VideoId, VisitorId
from examples.flix.merch.interface import Merch
from examples.flix.movie.interface import Movies, NotFound
from tests.helpers import ServiceProcess
from tests.integration.test_flix_services import BACKENDS, Get, get, services, wiring

pytestmark = pytest.mark.timeout(120)

#: Ids no request may carry, each with why. The first three were 500s.
BAD_IDS = [
    pytest.param("\u00b2", id="superscript-two"),  # %C2%B2: isdigit() says yes, int() no
    pytest.param(str(2**63), id="2**63"),  # one past the largest: SQLite overflows
    pytest.param(str(2**64), id="2**64"),  # 18446744073709551616: msgpack cannot carry it
    pytest.param("", id="empty"),
    pytest.param("-5", id="negative"),
    pytest.param("+5", id="plus"),
    pytest.param(" 5", id="leading-space"),
    pytest.param("5 ", id="trailing-space"),
    pytest.param("5\n", id="trailing-newline"),
    pytest.param("0x10", id="hex"),
    pytest.param("1e3", id="exponent"),
    pytest.param("5.0", id="decimal-point"),
    pytest.param("1_000", id="underscore"),
    pytest.param("\u0661\u0662", id="arabic-indic"),  # int() takes them
    pytest.param("\uff15", id="fullwidth-five"),  # and this
    pytest.param("0", id="zero"),  # flix's ids start at 1; 0 is the store's "everyone" row
    pytest.param("007", id="leading-zero"),
    pytest.param("9" * 400, id="400-digits"),
]

#: Where a request carries an id: the path with a slot for it, the id's name in the error, and
#: the content type of the 400.
PLACES = {
    "api": ("/api/home?visitor={}", "visitor", "application/json"),
    "page": ("/?visitor={}", "visitor", "text/html"),
    "boxshot": ("/boxshot.svg?video={}", "video", "text/plain"),
}

#: Bad cookies (a cookie's spaces are trimmed by its parser, so they are not among them).
BAD_COOKIES = ["", "\u00b2", str(2**63), "-5", "+5", "0x10", "1e3", "\u0661\u0662", "0", "9" * 400]


def cookie(raw: str) -> dict[str, str]:
    """A `Cookie` header carrying `raw` as UTF-8 bytes (http.client sends str as latin-1)."""
    return {"Cookie": f"visitor={raw}".encode().decode("latin-1")}


def assert_refused(answer: Get, name: str, content_type: str) -> None:
    """A 400 whose body names the id that is wrong and what an id must be."""
    assert answer.status == 400, (answer.status, answer.body[:300])
    assert answer.headers["Content-Type"].startswith(content_type), answer.headers
    reason = f"{name} must be an id from 1 to {MAX_ID} in ASCII digits"
    if content_type == "application/json":
        body = answer.json()
        assert body["error"] == "bad_request" and body["message"].startswith(reason), body
    else:
        assert html.escape(reason) in answer.body, answer.body[-600:]
    assert len(answer.body) < 4_000  # the bad value is not repeated in full


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flix-ids") / "flix.db"
    store.seed(path, seed=3, videos=200, visitors=500)
    return path


@pytest.fixture(scope="module")
def backends(db: Path) -> Iterator[dict[str, ServiceProcess]]:
    with services(db, BACKENDS) as running:
        yield running


@pytest.fixture(scope="module")
def edge(db: Path, backends: dict[str, ServiceProcess]) -> Iterator[ServiceProcess]:
    with services(db, ("edge",), **wiring(backends)) as running:
        yield running["edge"]


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", BAD_IDS)
@pytest.mark.parametrize("place", PLACES)
def test_a_bad_id_is_a_400_with_the_reason(edge: ServiceProcess, place: str, raw: str) -> None:
    path, name, content_type = PLACES[place]
    assert_refused(get(edge.address, path.format(quote(raw, safe=""))), name, content_type)


@pytest.mark.parametrize("raw", BAD_COOKIES)
def test_a_bad_visitor_cookie_is_a_400_and_is_cleared(edge: ServiceProcess, raw: str) -> None:
    for path, content_type in (("/api/home", "application/json"), ("/", "text/html")):
        answer = get(edge.address, path, cookie(raw))
        assert_refused(answer, "the visitor cookie", content_type)
        assert answer.headers.get("Set-Cookie", "").startswith("visitor=;"), answer.headers


def test_ids_at_the_edges_of_the_range(edge: ServiceProcess) -> None:
    assert get(edge.address, "/api/home?visitor=1").status == 200
    for largest in (f"/api/home?visitor={MAX_ID}", f"/?visitor={MAX_ID}"):
        assert get(edge.address, largest).status == 404  # valid, but nobody
    assert get(edge.address, f"/boxshot.svg?video={MAX_ID}").status == 404
    assert get(edge.address, "/api/home", cookie("3")).json()["visitor"] == 3


def dependencies(edge: ServiceProcess) -> dict[str, dict[str, Any]]:
    answer = get(edge.address, "/herd/dependencies")
    assert answer.status == 200, answer.body
    seen: dict[str, dict[str, Any]] = answer.json()
    return seen


def calls(seen: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The counters of each dependency (outcomes, retries), without latency or live state."""
    return {
        service: {key: value for key, value in data.items() if type(value) is int}
        for service, data in seen.items()
    }


def test_bad_ids_reach_no_service_and_leave_the_edge_healthy(edge: ServiceProcess) -> None:
    assert get(edge.address, "/api/home?visitor=2").status == 200  # every driver in use
    before = dependencies(edge)
    assert set(before) == set(BACKENDS), before

    for param in BAD_IDS:
        (raw,) = param.values
        for path, name, content_type in PLACES.values():
            answer = get(edge.address, path.format(quote(str(raw), safe="")))
            assert_refused(answer, name, content_type)
    for raw in BAD_COOKIES:
        assert get(edge.address, "/api/home", cookie(raw)).status == 400

    assert calls(dependencies(edge)) == calls(before), "a bad id reached a service"
    for path in ("/api/home?visitor=2", "/?visitor=2", "/boxshot.svg?video=7", "/"):
        assert get(edge.address, path).status == 200, path
    after = dependencies(edge)
    for service, data in after.items():
        assert data["breaker"]["state"] == "closed", (service, data["breaker"])
        assert data["failure"] == data["timeout"] == 0, (service, data)
    assert edge.alive


# --------------------------------------------------------------------------------------------
# Behind the edge: integers that are no entity's id, sent over RPC as any caller could.

UNKNOWN = [0, -1, -(2**63), 10**9, MAX_ID, 2**63, 2**64 - 1]


async def test_services_answer_unknown_ids_without_failing(
    backends: dict[str, ServiceProcess], edge: ServiceProcess, db: Path
) -> None:
    identity = herd.driver(Identity, address=backends["identity"].address)
    movies = herd.driver(Movies, address=backends["movie"].address)
    merch = herd.driver(Merch, address=backends["merch"].address)
    history = herd.driver(History, address=backends["history"].address)
    edges = herd.driver(Edge, address=edge.address)
    data = store.Store.open(db)
    everyone = [row.title for _, row in data.table(store.MERCH_ROWS).partition(store.EVERYONE)]
    data.close()
    try:
        for number in UNKNOWN:
            visitor, video = VisitorId(number), VideoId(number)
            with pytest.raises(UnknownVisitor):
                await identity.person(visitor)
            assert await identity.people([visitor, VisitorId(1)]) != []
            assert await movies.presentation([video]) == []
            with pytest.raises(NotFound):
                await movies.video(video)
            assert await merch.merchable([video]) == []
            assert [row.title for row in await merch.rows(visitor)] == everyone
            assert await history.recent(visitor) == []
            with pytest.raises(NoSuchVisitor):
                await edges.home(visitor)
        for limit in (-(2**63), -1, 0, 2**63, 2**64 - 1):
            assert len(await history.recent(VisitorId(1), limit)) <= 100
    finally:
        for driver in (identity, movies, merch, history, edges):
            await driver.aclose()
