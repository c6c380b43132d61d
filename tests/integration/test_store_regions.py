"""Stores across regions on real nats-servers: two regions (a standalone server each, its own
JetStream domain), joined by a leaf-node link that carries JetStream's API only. Each write is
acknowledged in its own region; `replication.link` gives each region a mirror of the other's
logs, and every write reaches the other region (within a bound) exactly once, while neither
region's own log holds anything but its own writes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import nats
import pytest
from nats.js import JetStreamContext

import herd
from herd._process.config import StoreAddress
from herd._store import replication
from herd._store.nats_server import Member, member_command
from tests.helpers import ServiceProcess
from tests.integration.etcd import free_ports
from tests.integration.nats_cluster import require_nats_server

pytestmark = pytest.mark.timeout(60)

#: Generous: on one machine a copy arrives within milliseconds.
LAG_BOUND_S = 5.0


class Play(msgspec.Struct, frozen=True):
    video: int


def _region(directory: Path, name: str, base: int, remotes: list[str]) -> ServiceProcess:
    member = Member("a", base, base + 1, base + 2, leaf_port=base + 3)
    command = member_command([member], "a", directory / name, domain=name, leaf_remotes=remotes)
    process = ServiceProcess(f"nats-{name}", command, directory / f"nats-{name}.log")
    process.wait_ready(30.0)
    return process


STREAM = "LOG_history_plays"


async def _copied(js: JetStreamContext, origin: str, subject: str, give_up_at: float) -> float:
    """When `origin`'s write on `subject` is in this region's mirror (monotonic)."""
    while time.monotonic() < give_up_at:
        if await replication.copied(js, origin, STREAM, subject):
            return time.monotonic()
        await asyncio.sleep(0.005)
    raise AssertionError(f"{subject} of {origin} never reached the other region")


async def test_each_regions_writes_reach_the_other_once_within_the_lag(tmp_path: Path) -> None:
    require_nats_server()
    us_base, eu_base = free_ports(4), free_ports(4)
    us = _region(tmp_path, "us", us_base, [])
    eu = _region(tmp_path, "eu", eu_base, [f"127.0.0.1:{us_base + 3}"])
    where = {
        "us": StoreAddress(servers=(f"127.0.0.1:{us_base}",), replicas=1).url,
        "eu": StoreAddress(servers=(f"127.0.0.1:{eu_base}",), replicas=1).url,
    }
    clients = {
        r: await nats.connect(f"nats://127.0.0.1:{b}")
        for r, b in (("us", us_base), ("eu", eu_base))
    }
    try:
        # A write in each region makes its log there; linking mirrors each in the other.
        for region, visitor in (("us", 1), ("eu", 2)):
            async with herd.store("history", where=where[region], timeout_s=10.0) as store:
                await store.log("plays", Play).append(visitor, Play(0), id=f"first-{region}")
        jetstreams = {r: c.jetstream() for r, c in clients.items()}
        made = await replication.link(jetstreams)
        assert sorted(made) == ["eu/FROM_us_LOG_history_plays", "us/FROM_eu_LOG_history_plays"]
        assert await replication.link(jetstreams) == []  # linked: nothing more to do
        lags = []
        for i in range(10):
            region, other = ("us", "eu") if i % 2 == 0 else ("eu", "us")
            key = f"play-{i}"
            async with herd.store("history", where=where[region], timeout_s=10.0) as store:
                await store.log("plays", Play).append(3, Play(i), id=key)
            acknowledged = time.monotonic()
            subject = f"herd.history.plays.3.{key}"
            seen = await _copied(jetstreams[other], region, subject, acknowledged + LAG_BOUND_S)
            lags.append(seen - acknowledged)
        assert max(lags) < LAG_BOUND_S
        # The writes made before the link were copied too; each region's own log holds its
        # own writes only, and its mirror the other's, once each.
        for region, other in (("us", "eu"), ("eu", "us")):
            own = await jetstreams[region].stream_info(STREAM)
            mirror = await jetstreams[region].stream_info(replication.mirror_name(other, STREAM))
            assert (own.state.messages, mirror.state.messages) == (6, 6)
    finally:
        for client in clients.values():
            await client.close()
        eu.stop()
        us.stop()
