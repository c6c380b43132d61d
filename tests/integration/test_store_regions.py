"""Stores across regions on real nats-servers: two regions (a standalone server each, its own
JetStream domain), joined by a leaf-node link that carries JetStream's API only. Each write is
acknowledged in its own region; `replication.link` makes each region's logs source the
other's, and every write reaches the other region (the lag measured) exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import nats
import pytest

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


async def _visible(where: str, visitor: int, key: str, give_up_at: float) -> float:
    """When the write `key` of `visitor` can be read at `where` (monotonic)."""
    async with herd.store("history", where=where, timeout_s=5.0) as store:
        plays = store.log("plays", Play)
        while time.monotonic() < give_up_at:
            if any(entry.id == key for entry in await plays.last(visitor, 100)):
                return time.monotonic()
            await asyncio.sleep(0.005)
    raise AssertionError(f"write {key} never reached {where}")


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
        # A write in each region makes its log there; linking makes each source the other.
        for region, visitor in (("us", 1), ("eu", 2)):
            async with herd.store("history", where=where[region], timeout_s=10.0) as store:
                await store.log("plays", Play).append(visitor, Play(0), id=f"first-{region}")
        jetstreams = {r: c.jetstream() for r, c in clients.items()}
        assert sorted(await replication.link(jetstreams)) == [
            "eu/LOG_history_plays",
            "us/LOG_history_plays",
        ]
        assert await replication.link(jetstreams) == []  # linked: nothing more to do
        lags = []
        for i in range(10):
            region, other = ("us", "eu") if i % 2 == 0 else ("eu", "us")
            key = f"play-{i}"
            async with herd.store("history", where=where[region], timeout_s=10.0) as store:
                await store.log("plays", Play).append(3, Play(i), id=key)
            acknowledged = time.monotonic()
            seen = await _visible(where[other], 3, key, acknowledged + LAG_BOUND_S)
            lags.append(seen - acknowledged)
        assert max(lags) < LAG_BOUND_S
        # Each write once in each region: the copy sourced back is a duplicate, dropped.
        for region in ("us", "eu"):
            async with herd.store("history", where=where[region], timeout_s=10.0) as store:
                entries = await store.log("plays", Play).last(3, 100)
            assert sorted(e.id for e in entries) == sorted(f"play-{i}" for i in range(10))
            info = await jetstreams[region].stream_info("LOG_history_plays")
            assert info.state.messages == 12
    finally:
        for client in clients.values():
            await client.close()
        eu.stop()
        us.stop()
