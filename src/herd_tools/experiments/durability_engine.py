"""The durability experiment's phases on the store engine (an app with `[[stores]]`): what a
phase reports, and the engine's side of it: which member leads a stream, and when a member
that came back holds what the leaders hold (`catch_up_s`).

Read from nats-server itself: a stream's leader, and how current each copy is, from JetStream's
stream info (its leader's view: `cluster.replicas[].current`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import urllib.request
from collections.abc import Sequence

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ClusterInfo

from herd._cloud.interface import StoreView
from herd_tools.experiments.harness import Say

#: The phases on the engine, in the order they run.
ZONE_OUTAGE = "zone_outage"
LEADER_KILL = "leader_kill"
SUCCESS_PCT = 99.9
#: How long the probe waits for one answer of JetStream's API.
_ASK_S = 1.0


class Phase(msgspec.Struct, frozen=True, kw_only=True):
    """One phase's figures: writes through the front door while the engine loses a zone (or
    a stream's leader), every one read back from the engine after."""

    phase: str
    killed: list[str]
    """What was SIGKILLed: store members and instances."""
    sent: int
    acknowledged: int
    lost: int
    duplicated: int
    success_pct: float
    """Writes acknowledged within the client's retry budget, percent of `sent`."""
    write_p99_ms: float
    """From a write's due time to its acknowledgement (retries included), 99th percentile."""
    catch_up_s: float | None
    """From the member's return (its new process's start, once the outage ended or after the
    SIGKILL) until the leader of every stream reported its copy current; None if it did not
    within the wait."""
    retries: int
    election_s: float | None = None
    """From the SIGKILL until every stream the member led had a new leader (JetStream's own
    elections: 4 to 9 s of silence before one starts, in every nats-server so far); None if
    some stream had none within the wait. What `write_p99_ms` cannot go below."""

    def missed(self, target_pct: float) -> list[str]:
        """The targets this phase missed, in words."""
        problems = []
        if self.lost:
            problems.append(f"{self.phase}: {self.lost} acknowledged writes lost, target 0")
        if self.duplicated:
            problems.append(f"{self.phase}: {self.duplicated} writes applied twice, target 0")
        if self.success_pct < target_pct:
            problems.append(
                f"{self.phase}: {self.success_pct:g} % of writes succeeded, target {target_pct:g} %"
            )
        if self.catch_up_s is None:
            problems.append(f"{self.phase}: the returning member did not catch up")
        return problems


def p99_ms(latencies_s: Sequence[float]) -> float:
    """The 99th percentile (nearest rank) in milliseconds; 0 without any."""
    if not latencies_s:
        return 0.0
    ordered = sorted(latencies_s)
    return round(1000 * ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)], 1)


async def stream_leader(servers: Sequence[str], stream: str) -> str:
    """The server name (`nats-<zone>`) of `stream`'s leader."""
    client = await nats.connect(servers=[f"nats://{s}" for s in servers], connect_timeout=2)
    try:
        info = await client.jetstream().stream_info(stream)
    finally:
        await client.close()
    if info.cluster is None or info.cluster.leader is None:
        raise RuntimeError(f"stream {stream} has no leader now")
    return info.cluster.leader


def answers(member: StoreView) -> bool:
    """Whether `member`'s monitoring port answers (its process is up, whatever JetStream says)."""
    try:
        with urllib.request.urlopen(f"{member.monitor}varz", timeout=0.5):
            return True
    except OSError:
        return False


def not_current(member: str, clusters: dict[str, ClusterInfo | None]) -> list[str]:
    """Of the streams in `clusters` (each stream's placement as its leader reports it; None:
    no answer, no leader yet), those whose copy on `member` is not current (the leader's own
    account, `cluster.replicas[].current`) or that cannot tell."""
    behind = []
    for name, cluster in clusters.items():
        if cluster is None:
            behind.append(name)
            continue
        if cluster.leader == member:
            continue
        copy = next((peer for peer in cluster.replicas or [] if peer.name == member), None)
        if copy is not None and (not copy.current or copy.offline):
            behind.append(name)
    return behind


async def _names(client: Client) -> list[str]:
    """Every stream's name (the cluster's meta leader answers)."""
    answer = await client.request("$JS.API.STREAM.NAMES", b"{}", timeout=_ASK_S)
    names: list[str] = json.loads(answer.data).get("streams") or []
    return names


async def stream_names(servers: Sequence[str]) -> list[str]:
    """Every stream's name, asked before a kill: while the meta leader is being elected again,
    nobody answers it."""
    client = await _connect(servers)
    try:
        return await _names(client)
    finally:
        await client.close()


async def _placements(js: JetStreamContext, names: Sequence[str]) -> dict[str, ClusterInfo | None]:
    """Each stream's placement, asked of its leader (None for a stream without one yet)."""
    clusters: dict[str, ClusterInfo | None] = {}
    for name in names:
        try:
            clusters[name] = (await js.stream_info(name)).cluster
        except nats.errors.Error:
            clusters[name] = None
    return clusters


async def _connect(servers: Sequence[str]) -> Client:
    """A probe's own client: it fails over quietly while members die and return."""
    return await nats.connect(
        servers=[f"nats://{s}" for s in servers],
        connect_timeout=1,
        reconnect_time_wait=0.1,
        max_reconnect_attempts=-1,
        error_cb=_quiet,
        disconnected_cb=_quiet,
        reconnected_cb=_quiet,
    )


def leaderless(
    member: str, clusters: dict[str, ClusterInfo | None], *, member_back: bool
) -> list[str]:
    """Of the streams in `clusters`, those without a leader now. `member` (just killed) counts
    as none until its new process is up (`member_back`): then it leads only what it won in an
    election, which it often does after a kill, being as up to date as the others when no
    write could be committed without a leader."""
    gone = ("", None) if member_back else ("", None, member)
    return [name for name, cluster in clusters.items() if cluster is None or cluster.leader in gone]


async def elected(
    member: str,
    servers: Sequence[str],
    names: Sequence[str],
    back: asyncio.Event,
    *,
    timeout_s: float = 30.0,
) -> float | None:
    """Seconds from now (`member` was just killed) until each stream of `names` has a leader:
    another member, or `member` once its new process is up (`back` set); None if not within
    `timeout_s`."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    client = await _connect(servers)
    js = client.jetstream(timeout=_ASK_S)
    try:
        while loop.time() - began < timeout_s:
            with contextlib.suppress(nats.errors.Error, ValueError):
                found = await _placements(js, names)
                if not leaderless(member, found, member_back=back.is_set()):
                    return round(loop.time() - began, 2)
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    return None


async def caught_up(
    member: str, servers: Sequence[str], *, timeout_s: float = 60.0, say: Say | None = None
) -> float | None:
    """Seconds from now (the member is back: its new process answers) until every stream's leader
    reports `member`'s copy current (writes go on meanwhile); None if not within `timeout_s`,
    naming the streams still behind through `say`.

    Asked of each stream's leader rather than by comparing the members' last sequences
    (``/jsz``, one member after another): under writes those answers are never of one moment,
    and on a loaded machine the returning follower, read last, could trail what the leader
    answered a moment before for as long as writes went on.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    client = await _connect(servers)
    js = client.jetstream(timeout=_ASK_S)
    behind: list[str] = []
    try:
        while loop.time() - began < timeout_s:
            try:
                behind = not_current(member, await _placements(js, await _names(client)))
            except (nats.errors.Error, ValueError):
                behind = ["(the stream names: no answer)"]
            if not behind:
                return round(loop.time() - began, 2)
            await asyncio.sleep(0.1)
    finally:
        await client.close()
    if say is not None:
        say(f"{member} not current after {timeout_s:g} s: {', '.join(behind)}")
    return None


async def _quiet(*_: object) -> None:
    """nats-py prints every reconnect by default; the probe expects them."""
