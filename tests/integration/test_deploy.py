"""Deploys with real processes: a red/black deploy of flix's history service under load moves the
traffic to the new group and disables the old one (alive, OUT_OF_SERVICE); `herd rollback`
re-enables it in under 2 s without starting a process; a pinned request reaches the pinned
version at the hop that has it; no request fails on the way. With edge and history both
mid-canary, every request reaches the group its bucket or its pin says at both hops."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from herd._model.route import Route, Split
from herd_tools.experiments.cohorts import Cohorts, Taken, read
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, by_group, write_app

pytestmark = pytest.mark.timeout(120)


class Visitors:
    """A steady trickle of page requests through the front door, counting what failed."""

    def __init__(self, url: str, rate: float = 25.0) -> None:
        self.url = url
        self.rate = rate
        self.sent = 0
        self.failed: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Visitors:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            pending: set[asyncio.Task[None]] = set()
            try:
                while True:
                    task = asyncio.create_task(self._one(session, 1 + self.sent % 50))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    self.sent += 1
                    await asyncio.sleep(1 / self.rate)
            finally:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, session: aiohttp.ClientSession, visitor: int) -> None:
        try:
            async with session.get(f"{self.url}/api/home?visitor={visitor}") as response:
                await response.read()
                if response.status >= 500:
                    self.failed.append(f"{response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failed.append(repr(exc))


async def _taken(cloud: Cloud) -> dict[str, tuple[str, str, Taken]]:
    """Every instance's requests by bucket and pin: id -> (service, group, counts)."""
    async with cloud.api() as api:
        instances = [i for i in await api.ps() if i.address]
    found = {}
    connector = aiohttp.TCPConnector(ssl=cloud.tls())
    async with aiohttp.ClientSession(connector=connector) as session:
        for instance in instances:
            async with session.get(f"https://{instance.address}/metrics") as response:
                text = await response.text()
            found[instance.id] = (instance.service, instance.group, read(text)[1])
    return found


async def _pinned(cloud: Cloud) -> dict[str, float]:
    """Requests pinned to a version that each history group took, from its instances' /metrics."""
    taken: dict[str, float] = {}
    for service, group, counts in (await _taken(cloud)).values():
        if service == "history":
            pinned = sum(n for (_, pin), n in counts.items() if pin)
            taken[group] = taken.get(group, 0.0) + pinned
    return taken


async def test_red_black_then_rollback_under_load(tmp_path: Path) -> None:
    app = write_app(
        tmp_path,
        "flix",
        instances={"identity": 1, "movie": 1, "merch": 1, "history": 2, "edge": 2},
        deploy={"rollback_window_s": 600.0, "ready_timeout_s": 45.0},
    )
    cloud = Cloud(app)
    try:
        await cloud.wait_up()
        async with Visitors(cloud.front_door) as visitors:
            await eventually(lambda: visitors.sent > 20, what="load running")
            done = await asyncio.to_thread(
                cloud.cli, "deploy", "start", "history", "--version", "v002", timeout=60
            )
            assert "window" in done or "serves" in done, done
            async with cloud.api() as api:
                (view,) = await api.deploys()
                assert view.state == "window", view
                assert view.shares == {"history-v002": 100, "history-v001": 0}
                members = by_group(await api.ps())
                groups = {group.name: group for group in await api.groups()}
            assert groups["history-v001"].status == "DISABLED"
            # The old group is disabled, not gone: alive, out of service.
            assert {i.status for i in members["history-v001"]} == {"OUT_OF_SERVICE"}
            assert all(i.pid for i in members["history-v001"])
            assert {i.status for i in members["history-v002"]} == {"UP"}
            old_pids = {i.pid for i in members["history-v001"]}

            # A request pinned to v002 reaches history-v002 (edge has no v002: the route's group).
            async with aiohttp.ClientSession() as session:
                for visitor in range(1, 6):
                    url = f"{cloud.front_door}/api/home?visitor={visitor}"
                    async with session.get(url, headers={"x-flix-pin": "v002"}) as response:
                        assert response.status == 200
            taken = await _pinned(cloud)
            assert taken.get("history-v002", 0) >= 5 and taken.get("history-v001", 0) == 0, taken

            await asyncio.sleep(1.0)  # load on the new group
            started = time.monotonic()
            done = await asyncio.to_thread(cloud.cli, "rollback", "history")
            command_s = time.monotonic() - started
            async with cloud.api() as api:
                (view,) = await api.deploys()
                assert view.state == "rolled_back", view
                assert view.rollback_s is not None and view.rollback_s < 2.0, view
                members = by_group(await api.ps())
            assert {i.status for i in members["history-v001"]} == {"UP"}
            # Re-enabled, not restarted: the same processes.
            assert {i.pid for i in members["history-v001"]} == old_pids
            assert command_s < 10.0, done
            await asyncio.sleep(1.0)  # load back on the old group while the new one drains
        assert visitors.sent > 100
        assert visitors.failed == [], visitors.failed[:5]

        async def new_gone() -> bool:
            async with cloud.api() as api:
                return "history-v002" not in by_group(await api.ps())

        await eventually(new_gone, timeout=20, what="history-v002 destroyed")
        status = json.loads(cloud.cli("deploy", "status", "--json"))
        kinds = [event["kind"] for event in status[0]["events"]]
        for kind in ("group_created", "group_up", "group_disabled", "group_enabled", "decision"):
            assert kind in kinds, kinds
    finally:
        cloud.close()


async def test_two_services_mid_canary_keep_every_cohort_at_every_hop(tmp_path: Path) -> None:
    # Edge and history canaries at 25 % each, analysed for longer than the test: both routes
    # split traffic over three groups while visitors come, some of them pinned to v002.
    app = write_app(
        tmp_path,
        "flix",
        instances={"identity": 1, "movie": 1, "merch": 1, "history": 1, "edge": 1},
        deploy={"canary_steps": [25, 100], "analysis_s": 600.0, "ready_timeout_s": 45.0},
    )
    cloud = Cloud(app)
    try:
        await cloud.wait_up()
        async with cloud.api() as api:
            for service in ("edge", "history"):
                await api.deploy(service, "v002", "canary", {})

            async def analysing() -> bool:
                views = await api.deploys()
                return len(views) == 2 and all(v.state == "analysing" for v in views)

            await eventually(analysing, timeout=60, what="both canaries analysing")
            views = {v.service: v for v in await api.deploys()}
            routes = {
                service: Route(service, [Split(g, n) for g, n in view.shares.items()])
                for service, view in views.items()
            }
            up = {i.group for i in await api.ps() if i.status == "UP"}
        assert routes["edge"].splits[0] == Split("edge-v002", 25), routes
        before = await _taken(cloud)
        async with aiohttp.ClientSession() as session:
            for visitor in range(1, 201):
                url = f"{cloud.front_door}/api/home?visitor={visitor}"
                pin = {"x-flix-pin": "v002"} if visitor % 5 == 0 else {}
                async with session.get(url, headers=pin) as response:
                    assert response.status == 200
        after = await _taken(cloud)
        cohorts = Cohorts()
        for instance, (service, group, counts) in after.items():
            old = before.get(instance, (service, group, {}))[2]
            fresh = {key: n - old.get(key, 0.0) for key, n in counts.items()}
            if service in routes:
                cohorts.add(routes[service], up, group, fresh)
        hops = {hop.service: hop for hop in cohorts.hops()}
        assert set(hops) == {"edge", "history"}, hops
        for hop in hops.values():
            # Every edge request, and history's calls from it (one per page or more).
            assert hop.bucketed >= 160 and hop.pinned >= 40, hop
            assert (hop.bucketed_pct, hop.pinned_pct) == (100.0, 100.0), hop
    finally:
        cloud.close()
