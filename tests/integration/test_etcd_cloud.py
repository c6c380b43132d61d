"""flix on `herd up` with `registry = "etcd"`: a 3-member etcd cluster the cloud runs itself.

Under 200 requests a second through the front door, one etcd member is killed, then the leader
(quorum is lost until the cloud has restarted them): no request fails, no registration is lost
(every instance's key keeps the revision it was created at), and once the quorum is back a new
instance reaches a driver within 1 s of reaching etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import aetcd  # type: ignore[import-untyped]
import pytest

from herd._process.registry_client import RegistryResolver
from herd._registry.etcd_cluster import local_members
from herd._wire import tls
from herd_tools.load import run_load
from tests.helpers import eventually
from tests.integration.cloud_helpers import Cloud, by_group, children, write_app
from tests.integration.etcd import free_ports, healthy, leader

RATE = 200.0
DURATION_S = 24.0
PREFIX = b"/herd/instances/"
#: A smaller flix: every service, fewer copies, so 200 requests a second fit on two cores.
INSTANCES = {"identity": 1, "movie": 2, "merch": 1, "history": 1, "edge": 2}


def member_pid(cloud: Cloud, name: str) -> int:
    """The pid of the etcd member `name` that the cloud runs now."""
    for pid in children(cloud.process.pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if command[0].endswith(b"etcd") and f"--name={name}".encode() in command:
                return pid
    raise AssertionError(f"no etcd member {name} runs")


async def keys(client: aetcd.Client) -> dict[str, int]:
    """Every instance key in etcd, with the revision it was created at."""
    found = await client.get_prefix(PREFIX)
    return {bytes(kv.key)[len(PREFIX) :].decode(): int(kv.create_revision) for kv in found}


@pytest.mark.timeout(150)
async def test_flix_keeps_serving_while_etcd_loses_a_member_then_its_quorum(
    tmp_path: Path,
) -> None:
    base = free_ports(6)
    members = local_members(base)
    endpoints = [member.endpoint for member in members]
    # The instances on the fixed cap: restarting etcd members take much of 2 cores, and an
    # adaptive limit rightly sheds what the slower CPU cannot serve (docs/overload.md), where
    # this test measures what losing the registry's quorum costs.
    app = write_app(
        tmp_path,
        "flix",
        instances=INSTANCES,
        registry="etcd",
        etcd_port=base,
        env={"HERD_LIMIT": "fixed"},
    )
    cloud = Cloud(app)
    etcd = aetcd.Client("127.0.0.1", members[0].client_port, timeout=2)
    resolver = RegistryResolver(cloud.registry)
    before_identity = tls.process_client_context()
    try:
        _, instances = await cloud.wait_up(timeout=90)
        # The registry takes no call without an identity: the test's driver is the control plane.
        tls.set_client_context(cloud.tls())
        assert "etcd: 3 members" in cloud.output()
        before = await keys(etcd)
        assert set(before) == {i.id for i in instances}
        await resolver.start()

        failures: list[tuple[float, str]] = []

        def record(intended: float, _: float, failure: str | None) -> None:
            if failure is not None:
                failures.append((intended, failure))

        url = f"{cloud.front_door}/api/home?visitor={{1..1000}}"
        load = asyncio.create_task(run_load(url, RATE, DURATION_S, record=record))
        await asyncio.sleep(3.0)  # on purpose: the load is in full swing when etcd is hit

        # One member, then the leader: one of three left, no quorum until the cloud restarts them.
        first = (await leader(endpoints) + 1) % 3
        os.kill(member_pid(cloud, members[first].name), signal.SIGKILL)
        await asyncio.sleep(0.2)
        second = await leader(endpoints)
        assert second != first
        os.kill(member_pid(cloud, members[second].name), signal.SIGKILL)
        killed = time.monotonic()
        await eventually(lambda: healthy(endpoints), all, timeout=20.0, what="quorum back")
        print(f"quorum back {time.monotonic() - killed:.2f} s after the leader was killed")

        # Every registration survived: the same keys, never deleted and created again.
        assert await keys(etcd) == before

        # A new instance once the quorum is back: it reaches a driver within 1 s of etcd.
        watch = await etcd.watch_prefix(PREFIX)
        async with cloud.api() as api:
            await api.scale("movie-v001", INSTANCES["movie"] + 1)
        known = set(before)
        async for event in watch:
            key = bytes(event.kv.key)[len(PREFIX) :].decode()
            if key not in known and b'"status":"UP"' in bytes(event.kv.value):
                in_etcd = time.monotonic()
                break
        await watch.cancel()
        await eventually(
            lambda: key in {i.id for i in resolver.instances("movie")},
            timeout=5.0,
            what="the new instance reaches the driver",
        )
        seen_after = time.monotonic() - in_etcd
        assert seen_after < 1.0, f"seen {seen_after:.3f} s after it was in etcd"

        report = await load
        assert report.sent == int(RATE * DURATION_S)
        # When they failed, relative to the leader's death, to tell etcd's fault from others.
        when = [(round(at - killed, 2), kind) for at, kind in failures[:20]]
        assert report.failed == 0, (report, when)
        # And the cloud took the new instance in: every group UP, the new one with them.
        async with cloud.api() as api:
            movies = by_group(await api.ps())["movie-v001"]
        assert key in {m.id for m in movies}
        assert all(m.status == "UP" for m in movies)
    finally:
        tls.set_client_context(before_identity)
        await resolver.close()
        await etcd.close()
        await asyncio.to_thread(cloud.close)
