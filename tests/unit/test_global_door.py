"""The global front door over two regions' front doors (small aiohttp servers standing in for
them): each visitor to the region steering chooses, the answer naming it; a region that cannot
be reached or refuses is skipped for the next; a failing health check steers around it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from herd._cloud.app import GlobalDoorSpec
from herd._cloud.regions.door import REGION_HEADER, GlobalFrontDoor
from tests.helpers import free_port


class Upstream:
    """A region's front door: answers `status` with its name, counts what it was sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = 200
        self.seen: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.seen.append(request.path_qs)
            return web.Response(status=self.status, text=self.name)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


Regions = tuple[GlobalFrontDoor, Upstream, Upstream]


@pytest.fixture
async def regions() -> AsyncIterator[Regions]:
    us, eu = Upstream("us"), Upstream("eu")
    await us.start()
    await eu.start()
    spec = GlobalDoorSpec(
        port=free_port(), visitor_query="visitor", home_header="x-region", health_every_s=3600
    )
    door = GlobalFrontDoor(spec, ["us", "eu"])
    door.attach("us", "127.0.0.1", us.port)
    door.attach("eu", "127.0.0.1", eu.port)
    await door.start()
    try:
        yield door, us, eu
    finally:
        await door.close()
        for upstream in (us, eu):
            if upstream.runner is not None and upstream.runner.server is not None:
                await upstream.stop()


async def _get(door: GlobalFrontDoor, path: str, **headers: str) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{door.url.rstrip('/')}{path}", headers=headers) as answer,
    ):
        return answer.status, await answer.text(), answer.headers.get(REGION_HEADER, "")


async def test_each_visitor_goes_home_and_the_answer_names_the_region(regions: Regions) -> None:
    door, us, eu = regions
    for visitor in range(1, 41):
        status, body, region = await _get(door, f"/page?visitor={visitor}")
        home = door.steering.home(str(visitor))
        assert (status, body, region) == (200, home, home)
    pages = {u.name: [p for p in u.seen if p != "/"] for u in (us, eu)}  # not health checks
    assert pages["us"] and pages["eu"]  # about half each, by bucket
    assert door.served == {name: len(seen) for name, seen in pages.items()}
    assert (await _get(door, "/page?visitor=1", **{"x-region": "eu"}))[2] == "eu"


async def test_a_region_that_cannot_be_reached_is_skipped_at_once(regions: Regions) -> None:
    door, us, _ = regions
    await us.stop()
    answers = [await _get(door, f"/page?visitor={v}", **{"x-region": "us"}) for v in range(20)]
    assert all(status == 200 and region == "eu" for status, _, region in answers)


async def test_a_refusal_of_a_safe_request_is_sent_to_the_next_region(regions: Regions) -> None:
    door, us, _ = regions
    us.status = 503
    assert (await _get(door, "/page?visitor=3", **{"x-region": "us"}))[1:] == ("eu", "eu")
    assert len(us.seen) >= 1


async def test_a_region_failing_its_health_checks_gets_no_visitors(regions: Regions) -> None:
    door, us, _ = regions
    us.status = 500
    await door.check_health()
    assert door.steering.healthy["us"]  # one failure is not enough
    await door.check_health()
    assert not door.steering.healthy["us"]
    sent_before = len(us.seen)
    answers = [await _get(door, f"/page?visitor={v}", **{"x-region": "us"}) for v in range(20)]
    assert {region for _, _, region in answers} == {"eu"}
    # Only the health checks reached us.
    assert all(path == "/" for path in us.seen[sent_before:])
    us.status = 200
    await door.check_health()
    assert door.steering.healthy["us"]


async def test_with_no_region_reachable_the_answer_is_503(regions: Regions) -> None:
    door, us, eu = regions
    await us.stop()
    await eu.stop()
    status, body, _ = await _get(door, "/page?visitor=1")
    assert status == 503 and "cannot connect" in body
    assert door.failed == 1
