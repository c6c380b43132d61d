"""Topologies, faults and measurements of `herd simulate`.

Two shapes. **retry-storm**: the experiment's chain (edge → middle → deep, `depth` tiers in all)
with every deep instance of zone a hanging; at 5 instances and depth 3 it is the experiment's own
layout (edge and two middles in zone a, the hanging deep instance in a, the healthy one in b),
beyond that each tier has an equal share of the instances spread over zones a, b and c. **flix**
(scenarios baseline, kill, hung, slow-zone, zone-lost): edge → identity, then merch and history
(history has a fallback) at once, then movie, with instance counts in fixed proportions.

Users arrive as a Poisson process, wait for the answer (30 s at most) and never retry. In the
retry storm each goes straight to an edge instance chosen at random among the registered ones, as
the experiment's user does; flix's users come through a front door (a herd `Caller` outside every
zone), which retries a failed connection on another edge instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine
from typing import Any

import herd
from herd._client.driver import Caller
from herd._model import clock
from herd._model.errors import HerdError
from herd._model.stats import percentile
from herd_tools.simulate import vtime
from herd_tools.simulate.model import CROSS_ZONE_S, FRONT_DOOR, Mode, Node, State, Tier, World

ZONES = ("a", "b", "c")
STORM_EDGE_DEADLINE_S = 3.0
STORM_ATTEMPT_TIMEOUT_S = 1.0
FLIX_DEADLINE_S = 1.0
#: flix's users come through the front door, which gives each request this long.
FRONT_DOOR_TIMEOUT_S = 2.0
#: Users wait this long for an answer, as in the experiment.
USER_PATIENCE_S = 30.0
#: After the load stops, the simulation runs on this long per tier so that abandoned work
#: finishes and is counted: a naive hop keeps a handler busy for up to 3 attempts of 2 s after its
#: caller gave up, and each tier down can start one more such handler just before.
DRAIN_PER_TIER_S = 6.0
#: How long the registry takes to evict an instance that stopped renewing its lease.
EVICTION_S = 5.0

FLIX_SHARES = {"edge": 0.15, "identity": 0.15, "merch": 0.25, "history": 0.15, "movie": 0.30}
FLIX_MEDIANS_S = {
    "edge": 0.002,
    "identity": 0.003,
    "merch": 0.010,
    "history": 0.005,
    "movie": 0.004,
}
SCENARIOS = ("retry-storm", "baseline", "kill", "hung", "slow-zone", "zone-lost", "kong")
"""`kong` is flix in two regions, one evacuated (`herd_tools.simulate.regions`)."""


@dataclasses.dataclass
class Result:
    """What one configuration of one run measured."""

    users: int = 0
    succeeded: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)
    backend_received: int = 0
    """Requests that reached the measured backend tier: deep for the retry storm, every
    dependency of the edge for flix."""
    backend_calls: int = 0
    """What they would be without retries: users for the storm, 4 per user for flix."""
    peak_middle: int = 0
    one_latency_s: float = 0.0
    one_answered: bool = False
    one_deep_received: int = 0
    one_deep_hanging: int = 0
    events: int = 0

    def figures(self) -> dict[str, Any]:
        """The JSON record of this configuration."""
        ordered = sorted(self.latencies)
        return {
            "success_pct": round(100.0 * self.succeeded / self.users, 2) if self.users else 0.0,
            "p50_ms": round(percentile(ordered, 0.5) * 1000, 1) if ordered else 0.0,
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 1) if ordered else 0.0,
            "amplification": (
                round(self.backend_received / self.backend_calls, 3) if self.backend_calls else 0.0
            ),
            "users": self.users,
            "peak_middle_inflight": self.peak_middle,
            "one_request": {
                "edge_latency_s": round(self.one_latency_s, 3),
                "answered": self.one_answered,
                "deep_received": self.one_deep_received,
                "deep_received_hanging": self.one_deep_hanging,
            },
        }


def _spread(tier: Tier, count: int, zones: tuple[str, ...] = ZONES) -> None:
    for index in range(count):
        tier.add(zones[index % len(zones)])


def _storm(world: World, instances: int, depth: int) -> tuple[Tier, Tier, Tier]:
    """The chain; returns (edge, first middle, deep)."""
    names = ["edge", *(f"middle-{n}" for n in range(1, depth - 1)), "deep"]
    if depth == 3:
        names[1] = "middle"
    tiers: list[Tier] = []
    for index, name in enumerate(names):
        below = names[index + 1] if index + 1 < len(names) else None
        tiers.append(world.tier(name, 0.001, _storm_handler(world, below, index == 0)))
    # The telescoped configuration is the talk's, which has no hedged attempts at any hop.
    hedge = None if world.mode is Mode.TELESCOPED else herd.HedgePolicy()
    for name in names[1:-1]:
        # Hops above deep run on the deadline alone (herd's defaults: it telescopes down from
        # the edge's 3 s); capping each at the same 1 s would cut off a lower hop's retry.
        world.policy(name, herd.CallPolicy(timeout=STORM_EDGE_DEADLINE_S, hedge=hedge))
    # The hop into deep caps each attempt at 1 s, one retry: the experiment's middle.
    world.policy(
        names[-1],
        herd.CallPolicy(attempt_timeout=STORM_ATTEMPT_TIMEOUT_S, attempts=2, hedge=hedge),
    )
    edge, middle, deep = tiers[0], tiers[1], tiers[-1]
    if instances == 5 and depth == 3:
        edge.add("a")
        middle.add("a")
        middle.add("a")
        deep.add("a")
        deep.add("b")
    else:
        for tier in tiers:
            _spread(tier, max(2, instances // depth))
    for node in deep.by_zone.get("a", []):
        node.state = State.HUNG
    return edge, middle, deep


def _storm_handler(
    world: World, below: str | None, edge: bool
) -> Callable[[Node], Coroutine[Any, Any, None]]:
    async def handle(node: Node) -> None:
        if below is None:
            return
        if edge and world.mode is not Mode.NAIVE:
            with herd.deadline(STORM_EDGE_DEADLINE_S):
                await world.call(node, below)
        else:
            await world.call(node, below)

    return handle


def _flix(world: World, instances: int) -> Tier:
    """flix's shape; returns the edge."""

    async def edge(node: Node) -> None:
        with herd.deadline(FLIX_DEADLINE_S):
            await world.call(node, "identity")
            await asyncio.gather(world.call(node, "merch"), _history(node))
            await world.call(node, "movie")

    async def _history(node: Node) -> None:
        # An optional row: the page renders without it (the library's fallback).
        with contextlib.suppress(HerdError):
            await world.call(node, "history")

    tiers = {
        name: world.tier(name, FLIX_MEDIANS_S[name], edge if name == "edge" else None)
        for name in FLIX_SHARES
    }
    for name, share in FLIX_SHARES.items():
        _spread(tiers[name], max(3, round(instances * share)))
    return tiers["edge"]


def _fault(world: World, scenario: str, at: float) -> Callable[[], Coroutine[Any, Any, None]]:
    """The scenario's fault, injected `at` seconds into the load."""
    backends = [t for name, t in world.tiers.items() if name != "edge"]

    async def evict(tier: Tier, nodes: list[Node]) -> None:
        await asyncio.sleep(EVICTION_S)
        tier.deregister(nodes)

    async def inject() -> None:
        await asyncio.sleep(at)
        if scenario == "kill":
            # Chaos monkey, at scale: a tenth of every backend's instances die at once.
            for tier in backends:
                dead = world.rng.sample(tier.nodes, max(1, len(tier.nodes) // 10))
                for node in dead:
                    node.state = State.DEAD
                world.background(evict(tier, dead))
        elif scenario == "slow-zone":
            for tier in world.tiers.values():
                for node in tier.by_zone.get("b", []):
                    node.slow = 20.0
        elif scenario == "zone-lost":
            for tier in world.tiers.values():
                lost = tier.by_zone.get("c", [])
                for node in lost:
                    node.state = State.LOST
                world.background(evict(tier, lost))

    return inject


async def _user(
    world: World, edge: Tier, result: Result | None, front: Caller | None = None
) -> bool:
    """One user request: through `front` (the front door: herd's attempt loop, which retries a
    failed connection on another edge instance), or straight to a random registered edge
    instance, as the experiment's user does."""
    started = clock.monotonic()
    registered = edge.registered
    node = edge.by_id[registered[world.arrivals.randrange(len(registered))].id]
    delay = 2 * CROSS_ZONE_S
    ok = False
    try:
        async with asyncio.timeout(USER_PATIENCE_S):
            if front is not None:
                await front.call(edge.spec, edge.args)
                ok = True
            elif node.state in (State.DEAD, State.LOST):
                await asyncio.sleep(delay)
            elif world.mode is Mode.NAIVE:
                ok = await node.serve_naive(delay)
            else:
                status, _ = await node.serve({}, delay)
                ok = status == 200
    except (TimeoutError, HerdError):
        pass
    if result is not None:
        result.users += 1
        result.succeeded += ok
        result.latencies.append(clock.monotonic() - started)
    return ok


async def _load(
    world: World,
    edge: Tier,
    rate: float,
    seconds: float,
    result: Result,
    drain: float,
    front: Caller | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    end = clock.monotonic() + seconds
    users: set[asyncio.Task[bool]] = set()
    while True:
        await asyncio.sleep(world.arrivals.expovariate(rate))
        if clock.monotonic() >= end:
            break
        task = loop.create_task(_user(world, edge, result, front))
        users.add(task)
        task.add_done_callback(users.discard)
    await asyncio.sleep(drain)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to simulate: the options of `herd simulate`."""

    scenario: str = "retry-storm"
    instances: int = 5
    seconds: float = 8.0
    rate: float | None = None
    """User requests per second; None: `default_rate`."""
    depth: int = 3
    seed: int = 1
    per_instance: bool = False
    """One herd client per calling instance rather than per tier and zone."""


def run_config(settings: Settings, mode: Mode, rate: float) -> Result:
    """Simulate one configuration of one scenario on virtual time."""
    result = Result()
    scenario, seconds = settings.scenario, settings.seconds
    drain = DRAIN_PER_TIER_S * settings.depth

    async def main(loop: vtime.VirtualLoop) -> None:
        world = World(mode, settings.seed, per_instance=settings.per_instance)
        if scenario == "retry-storm":
            edge, middle, deep = _storm(world, settings.instances, settings.depth)
            # One request alone first, as the experiment does.
            started = clock.monotonic()
            result.one_answered = await _user(world, edge, None)
            result.one_latency_s = clock.monotonic() - started
            await asyncio.sleep(drain)
            result.one_deep_received = deep.received
            result.one_deep_hanging = sum(n.received for n in deep.nodes if n.state is State.HUNG)
            middle.peak = middle.inflight
            before = deep.received
            await _load(world, edge, rate, seconds, result, drain)
            result.backend_received = deep.received - before
            result.backend_calls = result.users
            result.peak_middle = middle.peak
        else:
            edge = _flix(world, settings.instances)
            if scenario == "hung":
                for name, tier in world.tiers.items():
                    if name != "edge":
                        for node in world.rng.sample(tier.nodes, max(1, len(tier.nodes) // 100)):
                            node.state = State.HUNG
            elif scenario != "baseline":
                world.background(_fault(world, scenario, seconds / 3)())
            world.policy("edge", herd.CallPolicy(timeout=FRONT_DOOR_TIMEOUT_S))
            front = world.caller(FRONT_DOOR, "edge")
            await _load(world, edge, rate, seconds, result, drain, front)
            result.backend_received = sum(
                t.received for name, t in world.tiers.items() if name != "edge"
            )
            result.backend_calls = 4 * result.users
        result.events = sum(t.received for t in world.tiers.values()) + loop.jumps

    vtime.run(main)
    return result


def simulate(settings: Settings, modes: tuple[Mode, ...] | None = None) -> dict[str, Any]:
    """Run every configuration of the scenario (or `modes`) and return the `--json` record."""
    scenario = settings.scenario
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: one of {', '.join(SCENARIOS)}")
    if modes is None:
        modes = tuple(Mode) if scenario == "retry-storm" else (Mode.HERD,)
    rate = settings.rate if settings.rate is not None else default_rate(settings)
    started = time.perf_counter()
    configs: dict[str, Any] = {}
    events = 0
    for mode in modes:
        began = time.perf_counter()
        result = run_config(settings, mode, rate)
        configs[mode.value] = {**result.figures(), "wall_s": round(time.perf_counter() - began, 2)}
        events += result.events
    return {
        "instances": settings.instances,
        "seconds": settings.seconds,
        "scenario": scenario,
        "rate": rate,
        "depth": settings.depth,
        "wall_s": round(time.perf_counter() - started, 2),
        "events": events,
        "configs": configs,
    }


def default_rate(settings: Settings) -> float:
    """User requests per second: the experiment's 20/s at its 5 instances, and one request per
    second per four instances beyond (each flix page is five calls: about 1.25 requests per
    instance per second, every instance's share of a steady site)."""
    if settings.scenario == "retry-storm" and settings.instances <= 5:
        return 20.0
    return max(20.0, settings.instances / 4)
