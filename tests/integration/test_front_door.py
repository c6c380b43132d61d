"""The front door is the one way in: only web routes pass, outside `x-herd-*` headers are
stripped, its own deadline goes downstream, and a caller's bad requests eject no instance."""

from __future__ import annotations

import re

import aiohttp
import pytest

import herd
from herd._cloud.app import CriticalityRule, CriticalitySpec
from herd._cloud.front_door import FrontDoor
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(60)


class Page(herd.Interface, name="page"):
    async def ping(self) -> str: ...


class PageService(Page):
    async def ping(self) -> str:
        return "pong"

    @herd.route("GET", "/seen")
    async def seen(self, request: herd.WebRequest) -> herd.WebResponse:
        """What reached the instance of the herd headers, and how much time it was given."""
        left = herd.remaining()
        herd_headers = {k: v for k, v in request.headers.items() if k.startswith("x-herd-")}
        return herd.WebResponse.json({"headers": herd_headers, "left": left})

    @herd.route("GET", "/strict")
    async def strict(self, request: herd.WebRequest) -> herd.WebResponse:
        return herd.WebResponse.json({"error": "bad_request"}, status=400)


async def test_only_web_routes_pass_and_outside_herd_headers_are_stripped() -> None:
    async with herd.serve(PageService(), admin_token="secret") as server:
        door = FrontDoor(
            "page",
            herd.StaticResolver("page", [server.address]),
            port=free_port(),
            timeout_s=1.5,
        )
        await door.start()
        try:
            async with aiohttp.ClientSession() as session:
                for method, path in [
                    ("POST", "/rpc/page/ping"),
                    ("GET", "/metrics"),
                    ("GET", "/health"),
                    ("GET", "/herd/dependencies"),
                ]:
                    async with session.request(method, f"{door.url.rstrip('/')}{path}") as answer:
                        assert answer.status == 404, (method, path)
                forged = {
                    "X-Herd-Deadline-Ms": "999999",
                    "x-herd-attempt": "7",
                    "X-HERD-TOKEN": "secret",
                    "x-herd-caller": "cloud",
                    "x-herd-route": "pin=v009",
                }
                async with session.get(f"{door.url}seen", headers=forged) as answer:
                    assert answer.status == 200
                    seen = await answer.json()
            # Only what the front door itself sets arrives: its deadline, attempt number and the
            # request's routing context (a bucket of its own, never the client's pin).
            assert set(seen["headers"]) == {"x-herd-deadline-ms", "x-herd-attempt", "x-herd-route"}
            assert seen["headers"]["x-herd-attempt"] == "1"
            assert re.fullmatch(r"bucket=\d{1,2},criticality=50", seen["headers"]["x-herd-route"])
            assert 0 < seen["left"] <= 1.5
        finally:
            await door.close()


async def test_a_callers_bad_requests_eject_no_instance() -> None:
    async with herd.serve(PageService()) as first, herd.serve(PageService()) as second:
        door = FrontDoor(
            "page", herd.StaticResolver("page", [first.address, second.address]), port=free_port()
        )
        await door.start()
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(60):
                    async with session.get(f"{door.url}strict") as answer:
                        assert answer.status == 400
                for _ in range(4):
                    async with session.get(f"{door.url}nowhere") as answer:
                        assert answer.status == 404
            balancer = door._loop.balancer
            assert not balancer.is_ejected(first.address)
            assert not balancer.is_ejected(second.address)
        finally:
            await door.close()


async def test_the_front_door_counts_what_users_saw() -> None:
    async with herd.serve(PageService()) as server:
        door = FrontDoor("page", herd.StaticResolver("page", [server.address]), port=free_port())
        await door.start()
        try:
            async with aiohttp.ClientSession() as session:
                for path, status in [("seen", 200), ("strict", 400), ("rpc/page/ping", 404)]:
                    async with session.get(f"{door.url}{path}") as answer:
                        assert answer.status == status
            totals = door.totals()
        finally:
            await door.close()
    assert totals["web"] == 3
    assert totals["web_failed"] == 0
    # Latency as a sketch's bucket counts: every request in one.
    assert sum(count for name, count in totals.items() if name.startswith("q=")) == 3


async def test_the_app_files_rules_set_how_much_a_request_matters() -> None:
    rules = CriticalitySpec(
        default="critical", rules=[CriticalityRule(level="best_effort", header="x-prefetch")]
    )
    async with herd.serve(PageService()) as server:
        door = FrontDoor(
            "page",
            herd.StaticResolver("page", [server.address]),
            port=free_port(),
            criticality=rules,
        )
        await door.start()
        seen = []
        try:
            async with aiohttp.ClientSession() as session:
                for headers in [{}, {"x-prefetch": "1"}, {"x-herd-route": "criticality=99"}]:
                    async with session.get(f"{door.url}seen", headers=headers) as answer:
                        route = (await answer.json())["headers"]["x-herd-route"]
                        seen.append(route.split("criticality=")[1])
        finally:
            await door.close()
    assert seen == ["90", "10", "90"]
