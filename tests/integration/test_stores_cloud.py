"""`herd up` runs the engine of an app with `[[stores]]`: a nats-server per zone as one JetStream
cluster, shown in `herd ps`, supervised on its ports, recorded in the history; its children get
`HERD_STORE_URL`, and a store's copies land one per zone."""

from __future__ import annotations

import json
import os
import signal
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

import herd
from herd._process.config import STORE_URL, parse_store_url
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, write_app
from tests.integration.nats_cluster import require_nats_server

pytestmark = pytest.mark.timeout(150)


class Rating(msgspec.Struct, frozen=True):
    thumbs: int


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    require_nats_server()
    app = write_app(
        tmp_path_factory.mktemp("stores-cloud"),
        "chain",
        instances={"deep": 1, "middle": 1, "edge": 1},
        stores=[{"name": "deep", "replicas": 3}, {"name": "middle", "replicas": 1}],
    )
    running = Cloud(app).start(timeout=90)
    try:
        yield running
    finally:
        running.close()


def _history(cloud: Cloud, **params: str) -> Any:
    state = cloud.state()
    assert state is not None
    url = f"http://{state['control']}/history?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def _servers(cloud: Cloud) -> dict[str, list[str]]:
    """The dashboard's servers panel: server id -> its row."""
    state = cloud.state()
    assert state is not None
    with urllib.request.urlopen(f"http://{state['control']}/api/snapshot", timeout=10) as answer:
        panels = {panel["id"]: panel for panel in json.load(answer)["panels"]}
    return {row[0]: row for row in panels["servers"]["rows"]}


def _store_url(pid: int) -> str:
    """The `HERD_STORE_URL` a running process was given."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    (found,) = [e.split(b"=", 1)[1] for e in environ if e.startswith(f"{STORE_URL}=".encode())]
    return found.decode()


async def test_herd_up_runs_a_member_per_zone_and_hands_children_the_url(cloud: Cloud) -> None:
    members = json.loads(cloud.cli("ps", "--json"))["stores"]
    assert [(m["id"], m["zone"], m["status"]) for m in members] == [
        (f"store-nats-{zone}", zone, "UP") for zone in "abc"
    ]
    assert "stores (nats-server)" in cloud.cli("ps")
    servers = tuple(m["address"] for m in members)
    # The dashboard shows them beside the instances, as `herd ps` does.
    shown = _servers(cloud)
    assert [shown[m["id"]][1:5] for m in members] == [
        ["store (nats-server)", m["zone"], "UP", m["address"]] for m in members
    ]

    async with cloud.api() as api:
        instances = {view.group: view for view in await api.ps()}
    # Each service gets its own store's copies; one without an entry, the most any asks.
    deep = parse_store_url(_store_url(instances["deep-v001"].pid))
    middle = parse_store_url(_store_url(instances["middle-v001"].pid))
    edge = parse_store_url(_store_url(instances["edge-v001"].pid))
    assert (deep.servers, deep.replicas) == (servers, 3)
    assert (middle.servers, middle.replicas) == (servers, 1)
    assert (edge.servers, edge.replicas) == (servers, 3)

    # A store on that URL keeps one copy in each zone's member.
    async with herd.store("deep", where=deep) as store:
        ratings = store.records("ratings", Rating)
        revision = await ratings.put("v7", Rating(thumbs=1))
        assert (await ratings.get("v7")) == herd.Record("v7", Rating(thumbs=1), revision)
    client = await nats.connect(servers=[f"nats://{s}" for s in servers])
    try:
        info = await client.jetstream().stream_info("KV_deep_ratings")
    finally:
        await client.close()
    assert info.cluster is not None and info.cluster.leader is not None
    placed = [info.cluster.leader, *(peer.name for peer in info.cluster.replicas or [])]
    assert sorted(placed) == ["nats-a", "nats-b", "nats-c"]


async def test_a_killed_member_comes_back_on_its_ports_and_data_and_is_recorded(
    cloud: Cloud,
) -> None:
    before = {m["zone"]: m for m in json.loads(cloud.cli("ps", "--json"))["stores"]}
    url = parse_store_url(_store_url(_instance_pid(cloud)))
    async with herd.store("deep", where=url) as store:
        ratings = store.records("ratings", Rating)
        await ratings.put("v8", Rating(thumbs=-1))
        os.kill(before["b"]["pid"], signal.SIGKILL)

        def back() -> dict[str, Any]:
            return {m["zone"]: m for m in json.loads(cloud.cli("ps", "--json"))["stores"]}

        after = await eventually(
            back,
            lambda m: m["b"]["status"] == "UP" and m["b"]["pid"] != before["b"]["pid"],
            timeout=60,
            what="zone b's nats-server back",
        )
        assert after["b"]["address"] == before["b"]["address"]
        # With zone b back, the record written before its loss is still there (read through
        # any member, the quorum answers).
        with herd.deadline(10.0):
            found = await ratings.get("v8")
        assert found is not None and found.value == Rating(thumbs=-1)

    started = _history(cloud, kind="store.started")
    zone_b = [event for event in started if event["detail"].get("zone") == "b"]
    assert [event["detail"]["pid"] for event in zone_b][-2:] == [
        before["b"]["pid"],
        after["b"]["pid"],
    ], started
    assert all(e["detail"]["address"] == before["b"]["address"] for e in zone_b), zone_b


async def test_a_zone_outage_takes_the_zones_member_down_until_it_ends(cloud: Cloud) -> None:
    def members() -> dict[str, Any]:
        return {m["zone"]: m for m in json.loads(cloud.cli("ps", "--json"))["stores"]}

    before = await eventually(
        members, lambda m: m["b"]["status"] == "UP", timeout=60, what="zone b's member UP"
    )
    out = json.loads(cloud.cli("chaos", "zone-outage", "b", "--for", "6s", "--json"))
    assert "store-nats-b" in out["outages"][0]["stopped"], out
    # Held out: no member of zone b runs until the outage ends (the others stay UP).
    during = await eventually(
        members, lambda m: m["b"]["pid"] == 0, timeout=4, what="zone b's member down"
    )
    assert during["b"]["status"] != "UP", during
    await eventually(
        lambda: _servers(cloud)["store-nats-b"][3] != "UP", timeout=4, what="the page shows it"
    )
    assert during["a"]["status"] == during["c"]["status"] == "UP", during
    after = await eventually(
        members,
        lambda m: m["b"]["status"] == "UP" and m["b"]["pid"] != before["b"]["pid"],
        timeout=60,
        what="zone b's member back after the outage",
    )
    assert after["b"]["address"] == before["b"]["address"]

    stopped = _history(cloud, kind="store.terminated")[-1]
    assert (stopped["cause"], stopped["detail"]["zone"]) == ("zone-outage", "b"), stopped
    assert stopped["detail"]["pid"] == before["b"]["pid"], stopped
    restored = _history(cloud, kind="chaos.zone-restored")[-1]
    (back,) = [
        e for e in _history(cloud, kind="store.started") if e["detail"]["pid"] == after["b"]["pid"]
    ]
    assert restored["seq"] < back["seq"], "the member came back only once the zone was open"


def _instance_pid(cloud: Cloud) -> int:
    """A running instance of deep."""
    ps = json.loads(cloud.cli("ps", "--json"))
    return int(next(i["pid"] for i in ps["instances"] if i["group"] == "deep-v001"))
