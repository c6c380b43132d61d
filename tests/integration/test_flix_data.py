"""flix's data the Netflix way, on the local cloud through the front door: memcached in every
zone (supervised, in `herd ps`), sessions that outlive every edge instance, writes stored
durably once per idempotency key and shown on the next page, and a memcached zone killed under
read load without a page losing a part."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

import herd
from examples.flix.edge.interface import HISTORY_ROW
from examples.flix.idempotency import new_key
from examples.flix.merch.interface import ROWS_CACHE, Row
from examples.flix.store import password_of
from examples.flix.writes import Written
from herd._cloud.interface import CacheView
from herd._process.config import CACHES, caches_value
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, replaced, write_app
from tests.integration.memcached import require_memcached

VISITOR = 3


@pytest.fixture(scope="module")
def flix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    require_memcached()
    cloud = Cloud(write_app(tmp_path_factory.mktemp("flix-data"), "flix")).start(timeout=90)
    yield cloud
    cloud.close()


class Browser:
    """One visitor's HTTP client: keeps the session cookie by hand (aiohttp's jar ignores
    cookies of a bare IP address)."""

    def __init__(self, cloud: Cloud, http: aiohttp.ClientSession) -> None:
        self.base = cloud.front_door
        self.http = http
        self.cookie = ""

    async def call(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        sent = {"Cookie": self.cookie, **headers} if self.cookie else headers
        async with self.http.request(
            method, self.base + path, json=body, headers=sent, allow_redirects=False
        ) as answer:
            if (cookie := answer.headers.get("Set-Cookie", "")).startswith("flix_session="):
                self.cookie = cookie.split(";")[0]
            text = await answer.text()
            is_json = answer.content_type == "application/json"
            return answer.status, json.loads(text) if is_json else text

    async def sign_in(self, visitor: int = VISITOR) -> None:
        status, body = await self.call(
            "POST", "/api/signin", {"visitor": visitor, "password": password_of(visitor)}
        )
        assert status == 200 and body["visitor"] == visitor, body

    async def home(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/home")
        assert status == 200, body
        return dict(body)


async def test_memcached_runs_in_every_zone_and_is_replaced_when_killed(flix: Cloud) -> None:
    listed = json.loads(flix.cli("ps", "--json"))["caches"]
    assert {(c["cache"], c["zone"], c["status"]) for c in listed} == {
        ("flix", zone, "UP") for zone in "abc"
    }
    assert "cache-flix-a" in flix.cli("ps")
    victim = listed[0]
    flix.pids.add([victim["pid"]])
    os.kill(victim["pid"], signal.SIGKILL)
    async with flix.api() as api:

        async def back() -> list[CacheView]:
            return [c for c in await api.caches() if c.id == victim["id"]]

        (again,) = await eventually(
            back,
            lambda found: found[0].status == "UP" and found[0].pid != victim["pid"],
            what="the killed memcached replaced",
        )
    assert again.address == victim["address"]  # same port: every child's HERD_CACHES holds
    flix.pids.add([again.pid])


async def test_a_session_outlives_every_edge_instance(flix: Cloud) -> None:
    async with aiohttp.ClientSession() as http:
        browser = Browser(flix, http)
        status, body = await browser.call(
            "POST", "/api/signin", {"visitor": VISITOR, "password": "wrong"}
        )
        assert status == 401 and body["error"] == "unauthorized"
        await browser.sign_in()
        async with flix.api() as api:
            edges = [i for i in await api.ps() if i.service == "edge"]
            for edge in edges:
                before = {i.id for i in await api.ps() if i.group == edge.group}
                await api.kill(edge.id)
                await replaced(flix, edge, before, asyncio.get_running_loop().time())
                assert (await browser.home())["visitor"] == VISITOR
        status, _ = await browser.call("POST", "/api/signout")
        assert status == 200
        status, body = await browser.call("POST", "/api/play", {"video": 5, "key": new_key()})
        assert status == 401, body


async def test_set_cookie_is_httponly_and_samesite(flix: Cloud) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"visitor": VISITOR, "password": password_of(VISITOR)}
        async with http.post(flix.front_door + "/api/signin", json=body) as answer:
            cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=" in cookie


async def _stored(flix: Cloud, service: str, log: str, key: str) -> list[herd.Entry[Written]]:
    """The entries of `VISITOR`'s `log` in `service`'s store stored under `key`."""
    where = f"sqlite://{flix.app.parent / 'run' / 'writes'}"  # no [[stores]]: SQLite
    async with herd.store(service, where=where) as store:
        entries = await store.log(log, Written).last(VISITOR, 1000)
    return [entry for entry in entries if entry.id == key]


async def test_writes_are_stored_once_and_show_on_the_next_page(flix: Cloud) -> None:
    async with aiohttp.ClientSession() as http:
        browser = Browser(flix, http)
        await browser.sign_in()
        page = await browser.home()
        merch_row = next(row for row in page["rows"] if row["kind"] == "merch")
        last, second = merch_row["videos"][-1]["id"], merch_row["videos"][1]["id"]

        key = new_key()
        for applied in (True, False):  # a retry with the same key changes nothing
            status, played = await browser.call(
                "POST", "/api/play", {"video": last}, **{"Idempotency-Key": key}
            )
            assert status == 200 and played["applied"] is applied, played
        assert len(await _stored(flix, "history", "plays", key)) == 1
        status, body = await browser.call("POST", "/api/play", {"video": second, "key": key})
        assert status == 409 and body["error"] == "conflict"
        status, body = await browser.call("POST", "/api/play", {"video": last, "key": "short"})
        assert status == 400

        status, rated = await browser.call(
            "POST", "/api/rate", {"video": last, "thumbs": 1, "key": new_key()}
        )
        assert status == 200 and rated["applied"], rated
        status, body = await browser.call(
            "POST", "/api/rate", {"video": second, "thumbs": -1, "key": new_key()}
        )
        assert status == 200, body
        page = await browser.home()
        assert page["rows"][0]["title"] == HISTORY_ROW
        assert page["rows"][0]["videos"][0]["id"] == last
        row = next(r for r in page["rows"] if r["title"] == merch_row["title"])
        assert row["videos"][0]["id"] == last and row["liked"] == [last]
        assert second not in [v["id"] for v in row["videos"]]

        # The page's own buttons: a form post, answered with a redirect to the next page.
        async with http.post(
            flix.front_door + "/act",
            data={"video": str(second), "do": f"play:{new_key()}"},
            headers={"Cookie": browser.cookie},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/"
        status, html = await browser.call("GET", "/")
        assert status == 200 and "sign out" in html and 'value="play:' in html
        assert (await browser.home())["rows"][0]["videos"][0]["id"] == second


async def test_a_rating_shows_in_the_merch_rows_in_memcached_within_a_second(
    flix: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """merch consumes its own `rated` events (group "merch") and puts the rated visitor's rows,
    ranked anew, in memcached: measured from the rating's acknowledgement to the rows there."""
    servers: dict[str, dict[str, list[str]]] = {}
    for view in json.loads(flix.cli("ps", "--json"))["caches"]:
        servers.setdefault(view["cache"], {}).setdefault(view["zone"], []).append(view["address"])
    monkeypatch.setenv(CACHES, caches_value(servers))
    rows = herd.cache(ROWS_CACHE, list[Row], ttl_s=30)
    visitor = 5
    async with aiohttp.ClientSession() as http:
        browser = Browser(flix, http)
        await browser.sign_in(visitor)
        page = await browser.home()
        video = next(row for row in page["rows"] if row["kind"] == "merch")["videos"][-1]["id"]
        status, rated = await browser.call(
            "POST", "/api/rate", {"video": video, "thumbs": 1, "key": new_key()}
        )
        assert status == 200 and rated["applied"], rated
        acknowledged = asyncio.get_running_loop().time()

        async def liked() -> bool:
            cached = await rows.get(visitor)
            return cached is not None and any(video in row.liked for row in cached)

        await eventually(liked, timeout=5.0, what="the rated visitor's rows in memcached")
        took_s = asyncio.get_running_loop().time() - acknowledged
    print(f"rating to merch rows in memcached: {took_s * 1000:.0f} ms")
    assert took_s < 1.0


async def test_a_memcached_zone_killed_under_read_load_keeps_pages_whole(flix: Cloud) -> None:
    async with flix.api() as api:
        zone_a = next(c for c in await api.caches() if c.zone == "a")
    pages = 0
    broken: list[str] = []

    async def reader(http: aiohttp.ClientSession, first: int) -> None:
        nonlocal pages
        for visitor in range(first, first + 60):
            async with http.get(f"{flix.front_door}/api/home?visitor={visitor}") as answer:
                body = await answer.json(content_type=None)
            pages += 1
            if answer.status != 200 or body["omitted"] or not body["name"]:
                broken.append(f"{answer.status} {body}"[:200])

    async with aiohttp.ClientSession() as http:
        readers = [asyncio.create_task(reader(http, 100 + 60 * i)) for i in range(4)]
        await eventually(lambda: pages >= 40, what="pages read before the kill")
        flix.pids.add([zone_a.pid])
        os.kill(zone_a.pid, signal.SIGKILL)
        await asyncio.gather(*readers)
    assert pages == 240 and not broken, broken[:3]
