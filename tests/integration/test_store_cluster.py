"""herd.Store on a real 3-zone NATS JetStream cluster under failure: one copy per zone, and a
member SIGKILLed (a zone's server, then a stream's leader) while writes go on. Nothing that was
acknowledged is lost or stored twice, and the member that comes back catches up."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import pytest

import herd
from tests.helpers import eventually
from tests.integration.nats_cluster import NatsCluster

WRITERS = 4


class Play(msgspec.Struct, frozen=True):
    video: int


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    running = NatsCluster(tmp_path)
    try:
        running.start_all()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def store(cluster: NatsCluster) -> AsyncIterator[herd.Store]:
    async with herd.store("history", where=cluster.address()) as opened:
        yield opened


class Writers:
    """`WRITERS` clients appending to a log, each to its own key, one write at a time; a write
    that fails is sent again with the same id (as a client with no answer does) until it is
    acknowledged. Records each acknowledged id and when it was acknowledged."""

    def __init__(self, log: herd.Log[Play]) -> None:
        self.log = log
        self.acknowledged: dict[str, list[str]] = {f"w{n}": [] for n in range(WRITERS)}
        self.at: list[float] = []
        self.failures = 0
        self.slowest_s = 0.0
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._tasks = [asyncio.create_task(self._write(key)) for key in self.acknowledged]

    @property
    def count(self) -> int:
        return len(self.at)

    async def _write(self, key: str) -> None:
        n = 0
        while not self._stop.is_set():
            id = f"{key}-{n}"
            started = time.monotonic()
            while True:
                try:
                    with herd.deadline(2.0):
                        await self.log.append(key, Play(video=n), id=id)
                    break
                except (herd.StoreUnavailable, herd.DeadlineExceeded):
                    self.failures += 1
            now = time.monotonic()
            self.slowest_s = max(self.slowest_s, now - started)
            self.acknowledged[key].append(id)
            self.at.append(now)
            self._progress.set()
            n += 1

    async def reach(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `count` writes in all were acknowledged."""
        async with asyncio.timeout(timeout):
            while self.count < count:
                self._progress.clear()
                await self._progress.wait()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def longest_gap_s(self, since: float) -> float:
        """The longest time without an acknowledgement after `since`."""
        times = [since, *(t for t in sorted(self.at) if t >= since)]
        return max(b - a for a, b in itertools.pairwise(times))


async def _stream_placement(cluster: NatsCluster, stream: str) -> tuple[str, list[str]]:
    """(the leader's zone, every copy's zone) of `stream`, from JetStream itself."""
    client = await nats.connect(servers=[f"nats://{s}" for s in cluster.servers])
    try:
        info = await client.jetstream().stream_info(stream)
    finally:
        await client.close()
    assert info.cluster is not None and info.cluster.leader is not None
    followers = [peer.name for peer in info.cluster.replicas or []]
    leader = cluster.zone_of(info.cluster.leader)
    return leader, sorted([leader, *(cluster.zone_of(name) for name in followers)])


def _last_seq(cluster: NatsCluster, zone: str, stream: str) -> int | None:
    """The last sequence `zone`'s member holds of `stream` (None: it does not answer)."""
    try:
        found = cluster.monitor(zone, "/jsz?accounts=true&streams=true")
    except OSError:
        return None
    for account in found.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return int(detail["state"]["last_seq"])
    return None


async def _check_read_back(log: herd.Log[Play], writers: Writers) -> int:
    """Every acknowledged entry is in the engine, none twice; how many were read."""
    read = 0
    for key, acknowledged in writers.acknowledged.items():
        with herd.deadline(10.0):
            stored = [entry.id for entry in await log.last(key, 1_000_000)]
        read += len(stored)
        assert len(stored) == len(set(stored)), f"{key}: an entry stored twice"
        lost = set(acknowledged) - set(stored)
        assert not lost, f"{key}: {len(lost)} acknowledged entries lost: {sorted(lost)[:5]}"
    return read


async def _kill_during_writes(
    cluster: NatsCluster, store: herd.Store, choose: str
) -> dict[str, float | str]:
    log = store.log("plays", Play)
    records = store.records("latest", Play)
    await log.append("w0", Play(video=-1), id="warm")  # the stream exists before the kill
    await records.put("w0", Play(video=-1))
    stream = store.backend.stream("plays")  # type: ignore[attr-defined]
    leader, zones = await _stream_placement(cluster, stream)
    assert zones == ["a", "b", "c"], "one copy per zone"
    victim = leader if choose == "leader" else next(zone for zone in zones if zone != leader)
    writers = Writers(log)
    writers.acknowledged["w0"].append("warm")
    await writers.reach(200)
    killed_at = time.monotonic()
    cluster.kill(victim)
    before = writers.count
    await writers.reach(before + 300)
    # Records take writes too with the member down (a quorum of 2 is left; the bucket's own
    # stream may be electing a leader too).
    with herd.deadline(15.0):
        assert await records.put("w0", Play(video=1)) > 0
    await writers.stop()
    gap = writers.longest_gap_s(killed_at)
    if choose == "leader":
        new_leader, _ = await _stream_placement(cluster, stream)
        assert new_leader != victim
    read = await _check_read_back(log, writers)
    assert read >= writers.count
    cluster.start(victim)
    back_at = time.monotonic()
    cluster.processes[victim].wait_ready(30.0)
    want = _last_seq(cluster, next(z for z in cluster.zones if z != victim), stream)
    await eventually(
        lambda: _last_seq(cluster, victim, stream),
        lambda seq: seq is not None and want is not None and seq >= want,
        timeout=30.0,
        what=f"zone {victim}'s copy of {stream} catching up",
    )
    figures: dict[str, float | str] = {
        "killed": f"{victim} (leader: {leader})",
        "acknowledged": writers.count,
        "failed_attempts": writers.failures,
        "longest_gap_ms": round(gap * 1000),
        "slowest_write_ms": round(writers.slowest_s * 1000),
        "catch_up_s": round(time.monotonic() - back_at, 2),
    }
    print(figures)
    return figures


async def test_a_zone_lost_loses_no_acknowledged_write(
    cluster: NatsCluster, store: herd.Store
) -> None:
    figures = await _kill_during_writes(cluster, store, "follower")
    # The killed member held a follower's copy: the leader and the other follower are a
    # quorum, and writes go on without an election (a client connected to it fails over).
    assert float(figures["longest_gap_ms"]) < 3000


async def test_the_streams_leader_lost_loses_no_acknowledged_write(
    cluster: NatsCluster, store: herd.Store
) -> None:
    figures = await _kill_during_writes(cluster, store, "leader")
    # The followers elect a leader (nats-server's raft: an election timeout of 2 to 5 s),
    # then writes go on.
    assert float(figures["longest_gap_ms"]) < 15000


async def test_events_go_on_through_a_leader_kill_and_each_is_handled_once(
    cluster: NatsCluster,
) -> None:
    async with herd.events(where=cluster.address()) as events:
        handled: list[str] = []
        progress = asyncio.Event()

        async def handle(event: herd.Event[int]) -> None:
            handled.append(event.id)
            progress.set()

        events.subscribe("rated", int, handle, group="merch")
        acknowledged: list[str] = []
        killed = False
        for n in range(300):
            if n == 100:
                await eventually(lambda: len(handled) >= 100, what="the first 100 handled")
                leader, zones = await _stream_placement(cluster, "EVENTS_rated")
                assert zones == ["a", "b", "c"]
                cluster.kill(leader)
                killed = True
            while True:
                try:
                    with herd.deadline(2.0):
                        await events.publish("rated", n, id=f"e{n}")
                    break
                except (herd.StoreUnavailable, herd.DeadlineExceeded):
                    continue  # sent again with the same id, as a client with no answer does
            acknowledged.append(f"e{n}")
        assert killed
        async with asyncio.timeout(30):
            while not set(acknowledged) <= set(handled):
                progress.clear()
                await progress.wait()
        assert len(handled) == len(set(handled)), "an event handled twice"


async def test_without_a_quorum_writes_fail_at_the_deadline_and_a_retry_stores_once(
    cluster: NatsCluster, store: herd.Store
) -> None:
    """Two zones of three down: no write can be acknowledged. It fails at the caller's deadline
    (never a hang); sent again with the same id once a zone is back, it is stored once, whether
    or not the first attempt got through in the end."""
    log = store.log("plays", Play)
    records = store.records("latest", Play)
    await log.append("k", Play(video=1), id="first")
    await records.put("k", Play(video=1))
    cluster.kill("b")
    cluster.kill("c")
    for write in (
        lambda: log.append("k", Play(video=2), id="second"),
        lambda: records.put("k", Play(video=2)),
    ):
        started = time.monotonic()
        with pytest.raises(herd.DeadlineExceeded), herd.deadline(1.0):
            await write()
        assert time.monotonic() - started < 2.5
    cluster.start("b")
    cluster.processes["b"].wait_ready(30.0)
    with herd.deadline(30.0):
        await log.append("k", Play(video=2), id="second")
        assert [entry.id for entry in await log.last("k")] == ["second", "first"]
        await records.put("k", Play(video=3))
        found = await records.get("k")
    assert found is not None and found.value == Play(video=3)
