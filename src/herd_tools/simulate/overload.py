"""`herd simulate --scenario overload`: `herd experiment overload` on virtual time, at scale.

The experiment's shape: a steady base at half the capacity, a spike to three times it (half
user pages, critical; half prefetches, best-effort) and back to the base, under each of the four
kinds of limit (`none`, `fixed`, `adaptive`, `adaptive_priority`). Users come through a front
door (herd's real `Caller`, which retries an `overloaded` answer elsewhere inside its budget) to
an edge tier, whose every page calls one backend. Each instance admits requests through herd's
real `Admission` (the Gradient2 limit, the deadline-aware LIFO queue and the cubic shedding
curve), so the simulation runs the code the instances run, on the virtual clock.

What the simulation adds is a model of a saturated instance: one core. Every request's work
(reading it, then its service time) waits for that core, first come first served, and keeps it
once started even if its caller has gone (a process does not know it has been abandoned), so
without a limit the queue in front of the core grows while the load lasts and takes as long to
drain: the collapse the experiment shows. Reading a request costs `READ_SHARE` of a tier's
median work whether or not it is admitted, so refusing is cheap, never free.

The capacity is the saturation goodput of the slowest tier (its instances over its mean work),
where the real experiment measures it with closed-loop clients, which stays below saturation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import herd
from herd._model import clock
from herd._model import criticality as _criticality
from herd._model.deadline import scope_at
from herd._model.errors import HerdError
from herd._server.admission import Admission, Shed
from herd._server.admission import Mode as Limit
from herd._server.targets import route_of
from herd._wire.protocol import H_DEADLINE
from herd_tools.experiments.overload import (
    BASE_X,
    CONFIGS,
    CRITICAL_SHARE,
    SPIKE_X,
    ConfigFigures,
    phase_figures,
    recovery_s,
)
from herd_tools.experiments.overload_load import Sample
from herd_tools.simulate import vtime
from herd_tools.simulate.model import _OK, FRONT_DOOR, Mode, Node, Tier, World, _reply
from herd_tools.simulate.scenarios import ZONES

#: The shares of the instances and the median work per request (seconds of one core) of the
#: edge and of the backend it calls once per page. The backend is the bottleneck, as flix's
#: dependencies are, and its work is flix's order of magnitude (milliseconds: the instances'
#: limits, queues and deadlines are set in time a real instance spends); the edge tier is wide
#: and the backend narrow so that a 1,000-instance run is some hundred thousand pages, which
#: one core simulates in a couple of minutes.
SHARES = {"edge": 0.98, "backend": 0.02}
MEDIANS_S = {"edge": 0.002, "backend": 0.01}
SIGMA = 0.5
#: What reading a request (and refusing it) costs, as a share of the tier's median work.
READ_SHARE = 0.2
#: The load's own timeout, and the front door's deadline and in-flight ceiling, as in the
#: experiment (`herd._cloud.front_door`).
USER_TIMEOUT_S = 5.0
FRONT_DOOR_TIMEOUT_S = 2.0
FRONT_DOOR_ATTEMPTS = 3
FRONT_DOOR_MAX_INFLIGHT = 1024
EDGES_PER_DOOR = 25
MAX_INFLIGHT = 512
MAX_QUEUED = 64
CRITICAL, BEST_EFFORT = _criticality.Criticality.CRITICAL, _criticality.Criticality.BEST_EFFORT


class _Core:
    """One instance's core: work runs one piece at a time, first come first served."""

    __slots__ = ("free_at",)

    def __init__(self) -> None:
        self.free_at = 0.0

    async def run(self, seconds: float) -> None:
        now = clock.monotonic()
        self.free_at = max(now, self.free_at) + seconds
        await asyncio.sleep(self.free_at - now)


def _server(tier: Tier, limit: Limit) -> None:
    """Give every instance of `tier` a core and herd's admission, and serve through both."""
    read = READ_SHARE * tier.median_s
    for node in tier.nodes:
        core = _Core()
        admission = Admission(
            limit, ceiling=MAX_INFLIGHT, max_queued=MAX_QUEUED, service=tier.service
        )

        async def pipeline(
            headers: dict[str, str],
            delay: float,
            node: Node = node,
            core: _Core = core,
            admission: Admission = admission,
        ) -> tuple[int, bytes]:
            # herd's server pipeline (`herd._server.server._pipeline`), on a core of its own.
            await asyncio.sleep(delay)
            await core.run(read)
            arrived = clock.monotonic()
            raw = headers.get(H_DEADLINE)
            ends = arrived + (30.0 if raw is None else int(raw) / 1000.0)
            if ends <= arrived:
                return _reply("deadline_exceeded", "the deadline passed before the request came")
            if not admission.try_enter():
                try:
                    await admission.enter(_criticality.of(route_of(headers)), ends)
                except Shed as shed:
                    return _reply("overloaded", str(shed))
            started = clock.monotonic()
            try:
                scope = scope_at(ends)
                with scope:
                    await core.run(node.service_time())
                    await tier.handler(node)
                return 200, _OK
            except TimeoutError as exc:
                if scope.fired or not isinstance(exc, HerdError):
                    return _reply("deadline_exceeded", "ran out of time")
                return _reply("dependency", f"{type(exc).__name__}: {exc}")
            except HerdError as exc:
                return _reply("dependency", f"{type(exc).__name__}: {exc}")
            finally:
                admission.leave(clock.monotonic() - started, admission.inflight)

        node.pipeline = pipeline


def _world(instances: int, limit: Limit, seed: int) -> tuple[World, Tier, float]:
    """The edge and its backend under `limit`; returns the world, the edge and the capacity
    (pages per second the backend tier serves when saturated)."""
    world = World(Mode.HERD, seed)

    async def edge(node: Node) -> None:
        await world.call(node, "backend")

    tiers = {
        name: world.tier(name, MEDIANS_S[name], edge if name == "edge" else None) for name in SHARES
    }
    for name, share in SHARES.items():
        tier = tiers[name]
        tier.sigma = SIGMA
        for index in range(max(3, round(instances * share))):
            tier.add(ZONES[index % len(ZONES)])
        _server(tier, limit)
    mean = math.exp(SIGMA**2 / 2)
    capacity = min(
        len(tier.nodes) / (tier.median_s * (1 + READ_SHARE) * mean) for tier in tiers.values()
    )
    # The front door's attempt loop has no bulkhead and no breaker: its admission is what
    # limits it.
    door = herd.CallPolicy(
        timeout=FRONT_DOOR_TIMEOUT_S,
        attempts=FRONT_DOOR_ATTEMPTS,
        max_concurrent=1 << 30,
        breaker=None,
    )
    world.policy("edge", door)
    return world, tiers["edge"], capacity


def run_config(
    name: str,
    instances: int,
    phase_s: float,
    spike_s: float,
    seed: int,
    critical_share: float = CRITICAL_SHARE,
) -> tuple[ConfigFigures, int, float]:
    """One configuration on virtual time: its figures, the requests every tier received and
    the capacity."""
    samples: list[Sample] = []
    result: list[Any] = []

    async def main(loop: vtime.VirtualLoop) -> None:
        limit = Limit.parse(name)
        world, edge, capacity = _world(instances, limit, seed)
        front = world.caller(FRONT_DOOR, "edge")
        # The front doors' own admissions (they cost no core here), one per `EDGES_PER_DOOR`
        # edges, as a site has many Zuuls: one door's limit, learnt from 20, for a
        # thousand instances would be the bottleneck no real site has. Their attempt loop
        # (the retry budget, the balancer) is shared.
        doors = [
            Admission(limit, ceiling=FRONT_DOOR_MAX_INFLIGHT, service="front-door")
            for _ in range(max(1, len(edge.nodes) // EDGES_PER_DOOR))
        ]
        start = clock.monotonic()
        users: set[asyncio.Task[None]] = set()

        async def user(critical: bool, door: Admission) -> None:
            intended = clock.monotonic()
            ok = False
            level = (
                _criticality.Criticality.CRITICAL
                if critical
                else _criticality.Criticality.BEST_EFFORT
            )
            with contextlib.suppress(HerdError, TimeoutError):
                async with asyncio.timeout(USER_TIMEOUT_S):
                    if not door.try_enter():
                        await door.enter(level, intended + FRONT_DOOR_TIMEOUT_S)
                    began = clock.monotonic()
                    try:
                        with herd.criticality(level):
                            await front.call(edge.spec, edge.args)
                    finally:
                        door.leave(clock.monotonic() - began, door.inflight)
                    ok = True
            samples.append(Sample(intended - start, clock.monotonic() - intended, ok, critical))

        sent = critical = 0
        segments = [(BASE_X, phase_s), (SPIKE_X, spike_s), (BASE_X, phase_s)]
        ends = start
        for share, seconds in segments:
            ends += seconds
            rate = share * capacity
            while True:
                await asyncio.sleep(world.arrivals.expovariate(rate))
                if clock.monotonic() >= ends:
                    break
                sent += 1
                # As the load process spreads them: critical whenever its share falls behind.
                chosen = critical < critical_share * sent
                critical += chosen
                task = loop.create_task(user(chosen, doors[sent % len(doors)]))
                users.add(task)
                task.add_done_callback(users.discard)
        await asyncio.sleep(USER_TIMEOUT_S + 1.0)
        result.extend((capacity, sum(t.received for t in world.tiers.values()) + loop.jumps))

    vtime.run(main)
    capacity, events = result
    samples.sort(key=lambda s: s.offset)
    phases = phase_figures(samples, phase_s, spike_s)
    recovered = recovery_s(samples, phase_s, spike_s)
    return ConfigFigures(name, round(capacity, 1), recovered, phases), events, capacity


def simulate(
    instances: int,
    *,
    phase_s: float = 10.0,
    spike_s: float = 30.0,
    seed: int = 1,
    configs: tuple[str, ...] = CONFIGS,
    critical_share: float = CRITICAL_SHARE,
) -> dict[str, Any]:
    """Every configuration in turn; the `--json` record (the experiment's `configs`)."""
    started = time.perf_counter()
    measured, events = [], 0
    for name in configs:
        figures, count, _ = run_config(name, instances, phase_s, spike_s, seed, critical_share)
        measured.append(figures)
        events += count
    return {
        "scenario": "overload",
        "instances": instances,
        "phase_s": phase_s,
        "spike_s": spike_s,
        "critical_share": critical_share,
        "wall_s": round(time.perf_counter() - started, 2),
        "events": events,
        "configs": [
            {
                "name": c.name,
                "capacity_rps": c.capacity_rps,
                "recovery_s": c.recovery_s,
                "phases": [
                    {
                        "phase": p.phase,
                        "goodput_rps": p.goodput_rps,
                        "critical_success_pct": p.critical_success_pct,
                        "best_effort_success_pct": p.best_effort_success_pct,
                        "p99_ms": p.p99_ms,
                        "critical_p99_ms": p.critical_p99_ms,
                    }
                    for p in c.phases
                ],
            }
            for c in measured
        ],
    }


def table(record: dict[str, Any]) -> str:
    """The run's figures as a plain-text table."""
    lines = [
        f"overload: {record['instances']:,} instances, capacity"
        f" {record['configs'][0]['capacity_rps']:g} pages/s, spike {SPIKE_X:g}x for"
        f" {record['spike_s']:g} s (virtual); {record['events']:,} events in"
        f" {record['wall_s']:.1f} s",
        f"{'config':<18}{'phase':<7}{'goodput/s':>10}{'critical %':>11}{'best-eff. %':>12}"
        f"{'crit. p99 ms':>13}{'recovery s':>11}",
    ]
    for config in record["configs"]:
        recovery = config["recovery_s"]
        for phase in config["phases"]:
            lines.append(
                f"{config['name']:<18}{phase['phase']:<7}{phase['goodput_rps']:>10g}"
                f"{phase['critical_success_pct']:>11g}{phase['best_effort_success_pct']:>12g}"
                f"{phase['critical_p99_ms']:>13g}{'-' if recovery is None else recovery:>11}"
            )
    return "\n".join(lines)


def main(instances: int, spike_s: float, seed: int, json_path: Path | None) -> int:
    """`herd simulate --scenario overload`: print the table, write the JSON; 0."""
    record = simulate(instances, phase_s=spike_s / 3, spike_s=spike_s, seed=seed)
    print(table(record))
    if json_path is not None:
        json_path.write_text(json.dumps(record, indent=2) + "\n")
    return 0
