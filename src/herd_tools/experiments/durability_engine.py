"""The durability experiment's phases on the store engine (an app with `[[stores]]`): what a
phase reports, and the engine's side of it: which member leads a stream, and when a member
that came back holds what the others held (`catch_up_s`).

Read from nats-server itself: a stream's leader from JetStream's stream info, each member's
copy of each stream from its monitoring port (``/jsz``).
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Sequence

import msgspec
import nats

from herd._cloud.interface import StoreView

#: The phases on the engine, in the order they run.
ZONE_OUTAGE = "zone_outage"
LEADER_KILL = "leader_kill"
SUCCESS_PCT = 99.9


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
    """From the member's return (the outage's end; its restart after a leader kill) until its
    copy of every stream held what the others held; None if it did not within the wait."""
    retries: int

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


def _last_seqs(member: StoreView) -> dict[str, int] | None:
    """Each stream's last sequence in `member`'s copy; None while it does not answer."""
    url = f"{member.monitor}jsz?accounts=true&streams=true"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as answer:
            found = json.load(answer)
    except (OSError, ValueError):
        return None
    return {
        detail["name"]: int(detail["state"]["last_seq"])
        for account in found.get("account_details", [])
        for detail in account.get("stream_detail", [])
    }


async def caught_up(
    returning: StoreView, others: Sequence[StoreView], *, timeout_s: float = 60.0
) -> float | None:
    """Seconds until `returning` holds, of every stream, at least what each of `others` held
    just before (writes go on meanwhile); None if not within `timeout_s`."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < timeout_s:
        held = [await asyncio.to_thread(_last_seqs, other) for other in others]
        mine = await asyncio.to_thread(_last_seqs, returning)
        if mine is not None and all(seqs is not None for seqs in held):
            behind = [
                name
                for seqs in held
                if seqs is not None
                for name, seq in seqs.items()
                if mine.get(name, 0) < seq
            ]
            if not behind:
                return round(loop.time() - began, 2)
        await asyncio.sleep(0.1)
    return None
