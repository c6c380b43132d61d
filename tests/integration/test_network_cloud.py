"""`herd up --network isolated`: a network namespace per zone, cleaned up after a crash too.

These need Linux, root and iproute2/nftables (CI here runs as root); elsewhere they skip.
Every test removes what it made, also when it fails.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from herd._cloud.history.store import HistoryQuery
from herd._cloud.interface import ChaosRefused
from herd._cloud.network import isolated
from herd._cloud.network.faults import NetFault
from herd._cloud.network.plan import cloud_id
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, ps_rows, write_app
from tests.integration.network_helpers import NEEDS_NAMESPACES, namespaces_kept

pytestmark = [pytest.mark.timeout(150), NEEDS_NAMESPACES]

FLIX = {"identity": 1, "movie": 2, "merch": 1, "history": 1, "edge": 3}


@pytest.fixture
def namespaces_before() -> Iterator[list[str]]:
    with namespaces_kept() as before:
        yield before


def _network_of(app: Path) -> str:
    return cloud_id(app.parent / "run")


async def test_isolated_zones_have_their_own_addresses_and_a_crash_is_cleaned_up(
    tmp_path: Path, namespaces_before: list[str]
) -> None:
    app = write_app(tmp_path, "flix", instances=FLIX, network="isolated")
    cloud = Cloud(app)
    try:
        _, instances = await cloud.wait_up(timeout=90)
        network = _network_of(app)
        made = sorted(set(isolated.namespaces()) - set(namespaces_before))
        assert made == sorted(
            [f"herd-{network}-core", *(f"herd-{network}-zone-{z}" for z in "abc")]
        )
        # Every zone its own address; every instance of a zone on it.
        by_zone: dict[str, set[str]] = {}
        for instance in instances:
            by_zone.setdefault(instance.zone, set()).add(instance.address.rsplit(":", 1)[0])
        addresses = {zone: hosts.pop() for zone, hosts in by_zone.items() if len(hosts) == 1}
        assert len(addresses) == 3 and len(set(addresses.values())) == 3, by_zone
        assert all(a.startswith("10.213.") for a in addresses.values())
        rows = ps_rows(cloud.cli("ps"))
        assert rows[instances[0].id][4] == instances[0].address  # `herd ps` shows it
        # Nothing leaves the machine: a zone has its /24 and no default route.
        routes = isolated.run(["ip", "-n", f"herd-{network}-zone-a", "route", "show"])
        assert "default" not in routes and routes.count("\n") == 1, routes
        # The front door still answers from this (the root) namespace.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{cloud.front_door}/api/home?visitor=7") as page,
        ):
            assert page.status == 200 and "omitted" in await page.json()
        await _partition_between_zones_cuts_only_that_pair(cloud, network)
        # A crash of the control plane leaves the namespaces; `herd down` removes them.
        cloud.process.kill()
        cloud.process.wait(5)
        assert isolated.leftovers(network)
        said = cloud.cli("down")
        assert "removed what a killed one left" in said, said
        assert sorted(isolated.namespaces()) == namespaces_before
        assert not isolated.run(["ip", "-o", "link", "show", f"hd{network}h"], check=False)
    finally:
        cloud.close()


def _connects(namespace: str, address: str) -> bool:
    """Whether a TCP connection from `namespace` to `address` opens within 0.5 s (from a
    thread of its own: a namespace is entered per thread, and this one ends with the probe)."""
    host, port = address.rsplit(":", 1)
    opened: list[bool] = []

    def probe() -> None:
        isolated.enter(namespace)
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            opened.append(True)
        except OSError:
            opened.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return opened[0]


async def _partition_between_zones_cuts_only_that_pair(cloud: Cloud, network: str) -> None:
    async with cloud.api() as api:
        caches = {c.zone: c.address for c in await api.caches()}
        zone = {z: f"herd-{network}-zone-{z}" for z in "abc"}
        assert _connects(zone["b"], caches["a"])
        said = cloud.cli("chaos", "net", "--zone", "b", "--to", "a", "--partition", "--for", "60s")
        assert "b -> a: partition" in said, said
        assert not await asyncio.to_thread(_connects, zone["b"], caches["a"])
        assert not await asyncio.to_thread(_connects, zone["a"], caches["b"])  # both ways
        assert await asyncio.to_thread(_connects, zone["c"], caches["a"])
        assert await asyncio.to_thread(_connects, zone["b"], caches["c"])
        with pytest.raises(ChaosRefused, match="the peer is another zone"):
            await api.chaos_net(NetFault(zone="b", peer="z", loss_pct=5))
        assert (await api.chaos_halt()).network == []
        assert await asyncio.to_thread(_connects, zone["b"], caches["a"])
        events = await api.history_events(HistoryQuery(kind="chaos", limit=20))
        kinds = [e.kind for e in events if e.kind.startswith("chaos.net")]
        assert kinds == ["chaos.net", "chaos.net-ended"], kinds


async def test_a_new_network_removes_what_a_crashed_one_of_the_same_cloud_left(
    tmp_path: Path, namespaces_before: list[str]
) -> None:
    first = isolated.create(tmp_path, ["a", "b"])
    # (no removal: as if the control plane had been killed)
    second = isolated.create(tmp_path, ["a", "b"])
    try:
        assert second.id == first.id
        assert sorted(isolated.leftovers(second.id)) == sorted(second.namespaces)
    finally:
        isolated.remove(second.id)
    assert sorted(isolated.namespaces()) == namespaces_before
    await eventually(lambda: not isolated.leftovers(second.id), timeout=2, what="all removed")
