"""`herd experiment network`: faults in the network itself, before/during/after, under load.

flix runs on its own network (`herd up --network isolated`: a namespace per zone) with
open-model load through its front door, and each fault takes the middle of three equal phases,
put in force and ended through the same control plane `herd chaos net` drives:

- `partition-zones`: zone b partitioned from zone a, both ways;
- `partition-registry`: zone b cut off from the registry only (its callers still reach it);
- `one-way-edge`: one edge instance's answers lost (requests arrive, nothing comes back);
- `loss`: 5 % of the packets lost each way on every link between two zones;
- `zone-latency`: +200 ms on everything zone b sends (needs tc netem in the kernel).

Per scenario and phase: requests, failures, success %, p99, and requests past the edge's
deadline; per scenario, the time to route around the fault (from its start to the last
request sent during it that failed or was slow) and to recover after it (from its end to the
last such request). Goal: success >= 99.9 % in every phase (`GOAL_PCT`, or a run's own).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from herd._cloud.app import load, with_network
from herd._cloud.controller import Controller
from herd._cloud.interface import ChaosRefused
from herd._cloud.network.faults import REGISTRY, NetFault
from herd_tools.experiments import harness
from herd_tools.experiments.chaos import (
    EDGE_DEADLINE_MS,
    PHASES,
    Phase,
    _load,
    _phase,
    _Sample,
    _settled,
    warmed_front_door,
)
from herd_tools.output import Column, numbers, out, print_table, say, usage

SCENARIOS = ("partition-zones", "partition-registry", "one-way-edge", "loss", "zone-latency")
GOAL_PCT = 99.9
#: A request slower than this many times the steady state's p99 (and 100 ms) counts as hit.
_SLOW_FACTOR = 3.0


class NetScenario(msgspec.Struct, frozen=True):
    """One network fault, before, during and after."""

    name: str
    fault: str
    phases: list[Phase]
    past_deadline: int
    """Requests (all phases) that took longer than the edge's deadline."""
    route_around_s: float
    """From the fault's start to the last request sent during it that failed or was slow."""
    recover_s: float
    """From the fault's end to the last request sent after it that failed or was slow."""
    failed_by_kind: dict[str, int]


class NetworkResult(msgspec.Struct, frozen=True):
    """What one run measured; `--json` writes exactly this."""

    rate: float
    phase_s: float
    scenarios: list[NetScenario]
    skipped: dict[str, str]
    """Scenarios this machine cannot run, and why."""
    goal_pct: float = GOAL_PCT

    def problems(self) -> list[str]:
        """The goals missed, in words (none: every goal met)."""
        return [
            f"{s.name}/{p.phase}: {p.success_pct:g} % succeeded, target {self.goal_pct:g} %"
            for s in self.scenarios
            for p in s.phases
            if p.success_pct < self.goal_pct
        ]


async def _faults(controller: Controller, name: str, phase_s: float) -> list[NetFault]:
    if name == "partition-zones":
        return [NetFault(zone="b", peer="a", partition=True, duration_s=phase_s)]
    if name == "partition-registry":
        return [NetFault(zone="b", peer=REGISTRY, partition=True, duration_s=phase_s)]
    if name == "one-way-edge":
        edges = sorted(v.id for v in await controller.ps() if v.service == "edge" and v.address)
        return [NetFault(instance=edges[0], partition=True, one_way=True, duration_s=phase_s)]
    if name == "loss":
        zones = controller.app.spec.zones
        return [
            NetFault(zone=zone, peer=peer, loss_pct=5.0, duration_s=phase_s)
            for i, zone in enumerate(zones)
            for peer in zones[i + 1 :]
        ]
    return [NetFault(zone="b", latency_ms=200.0, duration_s=phase_s)]


def _hit_until(samples: list[_Sample], start: float, end: float, slow_s: float) -> float:
    """Seconds from `start` to the last request sent in [start, end) that failed or was slow."""
    hit = [s.offset for s in samples if start <= s.offset < end and (s.kind or s.latency > slow_s)]
    return round(max(hit) - start, 3) if hit else 0.0


async def _scenario(
    controller: Controller, name: str, url: str, rate: float, phase_s: float, say: harness.Say
) -> NetScenario:
    await _settled(controller)
    faults = await _faults(controller, name, phase_s)
    samples: list[_Sample] = []
    start = time.monotonic()

    async def method() -> None:
        await asyncio.sleep(phase_s)
        for fault in faults:
            await controller.net_chaos.add(fault)
        say(f"  {name}: {'; '.join(f.describe() for f in faults)}")
        await asyncio.sleep(max(0.0, start + 2 * phase_s - time.monotonic()))
        await controller.net_chaos.halt()

    running = asyncio.create_task(method())
    try:
        await _load(url, rate, 3 * phase_s, start, samples)
    finally:
        await running
    parts = [
        [s for s in samples if index * phase_s <= s.offset < (index + 1) * phase_s]
        for index in range(len(PHASES))
    ]
    phases = [_phase(phase, part) for phase, part in zip(PHASES, parts, strict=True)]
    slow_s = max(0.1, _SLOW_FACTOR * phases[0].p99_ms / 1000)
    kinds: dict[str, int] = {}
    for sample in samples:
        if sample.kind is not None:
            kinds[sample.kind] = kinds.get(sample.kind, 0) + 1
    return NetScenario(
        name=name,
        fault="; ".join(f.describe() for f in faults),
        phases=phases,
        past_deadline=sum(1 for s in samples if s.latency * 1000 > EDGE_DEADLINE_MS),
        route_around_s=_hit_until(samples, phase_s, 2 * phase_s, slow_s),
        recover_s=_hit_until(samples, 2 * phase_s, 3 * phase_s, slow_s),
        failed_by_kind=dict(sorted(kinds.items())),
    )


async def experiment(
    app: Path,
    *,
    rate: float,
    phase_s: float,
    scenarios: list[str],
    goal_pct: float = GOAL_PCT,
    say: harness.Say = say,
) -> NetworkResult:
    """Run the app on its own network and every scenario in turn under load."""

    async def body(controller: Controller) -> NetworkResult:
        url = await warmed_front_door(controller, app, rate, phase_s, say)
        results, skipped = [], {}
        for name in scenarios:
            if name == "zone-latency" and not controller.net_chaos.netem:
                skipped[name] = "this kernel has no tc netem: latency cannot be injected"
                say(f"{name}: skipped ({skipped[name]})")
                continue
            say(f"{name}: {phase_s:g} s before, during and after, {rate:g} requests/s")
            try:
                results.append(await _scenario(controller, name, url, rate, phase_s, say))
            except ChaosRefused as exc:
                skipped[name] = str(exc)
        return NetworkResult(rate, phase_s, results, skipped, goal_pct)

    return await harness.on_cloud(with_network(load(app), "isolated"), body, say=say)


def report(result: NetworkResult) -> None:
    """The figures on stdout: a row per scenario and phase, then each scenario's timings."""
    print_table(
        f"network faults under {result.rate:g} requests/s, {result.phase_s:g} s phases",
        [
            Column("scenario"),
            Column("phase"),
            *numbers("total", "failed", "success %", "p99 ms"),
        ],
        [
            [s.name, p.phase, str(p.total), str(p.failed), f"{p.success_pct:g}", f"{p.p99_ms:g}"]
            for s in result.scenarios
            for p in s.phases
        ],
    )
    console = out()
    for s in result.scenarios:
        console.print(
            f"{s.name}: {s.fault}; routed around in {s.route_around_s:g} s, recovered in"
            f" {s.recover_s:g} s; {s.past_deadline} past the deadline; failed {s.failed_by_kind}",
            markup=False,
        )
    for name, why in result.skipped.items():
        console.print(f"{name}: not run: {why}", markup=False)


def command(
    app: Path = harness.APP,
    rate: float = harness.RATE,
    phase_seconds: float = typer.Option(
        20.0, "--phase-seconds", metavar="SECONDS", help="Seconds of each phase."
    ),
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", metavar="NAME", help=f"Only these (repeat): {SCENARIOS}."),
    ] = None,
    goal: float = harness.target_option(
        GOAL_PCT, "--goal", "The success target of every phase", "docs/network.md"
    ),
    json_path: Path | None = harness.JSON,
) -> None:
    """Network faults under load through flix on its own network (Linux, root).

    Zone b partitioned from zone a; zone b cut off from the registry; one edge instance's
    answers lost; 5 % loss between zones; +200 ms on zone b. Target: every phase serves
    >= 99.9 % (--goal); exits 0 only if met (docs/network.md).

    Example: herd experiment network --json network.json
    """
    chosen = scenario or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        raise usage(f"unknown scenarios {unknown}", f"choose from {', '.join(SCENARIOS)}")
    if not (phase_seconds > 0 and rate > 0):
        raise usage("--rate and --phase-seconds must be > 0")
    result = harness.run(
        experiment(app, rate=rate, phase_s=phase_seconds, scenarios=chosen, goal_pct=goal)
    )
    report(result)
    harness.conclude(result, result.problems(), json_path=json_path)
