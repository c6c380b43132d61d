"""`herd experiment chaos`: the steady state checked, not assumed (chaostoolkit's hypothesis
before, during and after each method).

flix runs on the local cloud with open-model load through its front door over 10,000 visitors;
each scenario has three phases of equal length: `before` (steady state), `during` (the fault)
and `after` (the fault removed, the cloud recovering). For every scenario and phase we count
the requests (by their intended send time), the failed ones, the p99 latency and the pages
served degraded (a row omitted because its service did not answer in time: flix's edge lists
it in the page's `omitted`).

The faults, each through the same control plane `herd chaos` drives:

- `monkey`: Chaos Monkey on every group, one kill every 5 s on average across the cloud;
- `zone-outage`: zone b out (every instance SIGKILLed, none started there) for the phase;
- `movie-latency`: 1 s of latency on 20 % of the calls to movie, every instance;
- `merch-errors`: 10 % of the calls to merch fail, every instance;
- `hung`: one UP instance of every group SIGSTOPped for the phase (a gray failure).

Goals: success >= 99.9 % in every scenario and phase (`GOAL_PCT`, or a run's own), and p99
under the edge's deadline while latency is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import msgspec

from herd._cloud.controller import Controller
from herd._cloud.history.store import HistoryQuery
from herd._cloud.interface import InstanceView
from herd._model.stats import percentile
from herd._server.injection import Fault
from herd_tools import figures, options
from herd_tools.experiments import harness
from herd_tools.load import UrlPattern, failure_kind
from herd_tools.output import Column, numbers, out, print_table, say, usage
from herd_tools.schedule import Schedule, open_model

PHASES = ("before", "during", "after")
SCENARIOS = ("monkey", "zone-outage", "movie-latency", "merch-errors", "hung")
#: The success goal, in percent, for every scenario and phase.
GOAL_PCT = 99.9
#: flix's edge answers within this (`FLIX_EDGE_DEADLINE`, default 1 s): the latency goal.
EDGE_DEADLINE_MS = 1000.0
#: A request that has not answered in this long failed.
REQUEST_TIMEOUT_S = 5.0
#: Unmeasured load before the first scenario (at most one phase).
WARMUP_S = 10.0
#: How long the cloud may take to be back at every count, all UP, between scenarios.
SETTLE_TIMEOUT_S = 60.0


class Phase(msgspec.Struct, frozen=True):
    """What users saw during one phase of one scenario."""

    phase: str
    total: int
    failed: int
    success_pct: float
    p99_ms: float
    degraded_pct: float


class Scenario(msgspec.Struct, frozen=True):
    """One fault, before, during and after."""

    name: str
    fault: str
    phases: list[Phase]
    failed_by_kind: dict[str, int]
    first_failures: dict[str, str]
    """The first answer of each failure kind (what the front door or the edge said)."""
    terminated: int
    """Instances that ended during the scenario, as the history recorded them."""


class ChaosResult(msgspec.Struct, frozen=True):
    """What one run measured; `--json` writes exactly this."""

    rate: float
    phase_s: float
    scenarios: list[Scenario]
    goal_pct: float = GOAL_PCT
    """The success target of this run, in percent, for every scenario and phase."""

    def problems(self) -> list[str]:
        """The goals missed, in words (none: every goal met)."""
        missed = []
        for scenario in self.scenarios:
            for phase in scenario.phases:
                if phase.success_pct < self.goal_pct:
                    missed.append(
                        f"{scenario.name}/{phase.phase}: {phase.success_pct:g} % succeeded,"
                        f" target {self.goal_pct:g} %"
                    )
                if (
                    scenario.name == "movie-latency"
                    and phase.phase == "during"
                    and phase.p99_ms >= EDGE_DEADLINE_MS
                ):
                    missed.append(
                        f"movie-latency/during: p99 {phase.p99_ms:g} ms,"
                        f" target < {EDGE_DEADLINE_MS:g} ms"
                    )
        return missed


class _Sample(msgspec.Struct, array_like=True):
    offset: float
    latency: float
    kind: str | None
    degraded: bool
    message: str = ""


class _Home(msgspec.Struct):
    omitted: list[str] = []


_home = msgspec.json.Decoder(_Home)


async def _get(
    session: aiohttp.ClientSession, url: str, intended: float, start: float, out: list[_Sample]
) -> None:
    kind, degraded, message = None, False, ""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S), session.get(url) as response:
            body = await response.read()
            if response.status >= 400:
                kind = f"http_{response.status}"
                message = body[:200].decode(errors="replace")
            else:
                degraded = bool(_home.decode(body).omitted)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        kind = failure_kind(exc)
    except msgspec.DecodeError:
        kind = "bad_page"
    out.append(_Sample(intended - start, time.monotonic() - intended, kind, degraded, message))


def _phase(name: str, samples: list[_Sample]) -> Phase:
    total = len(samples)
    failed = sum(1 for s in samples if s.kind is not None)
    degraded = sum(1 for s in samples if s.degraded)
    ordered = sorted(s.latency for s in samples)
    return Phase(
        phase=name,
        total=total,
        failed=failed,
        success_pct=round(100.0 * (total - failed) / total, 3) if total else 0.0,
        p99_ms=round(percentile(ordered, 0.99) * 1000, 1) if ordered else 0.0,
        degraded_pct=round(100.0 * degraded / total, 3) if total else 0.0,
    )


class _Fault:
    """One scenario's fault: how it begins and how it ends, on the controller."""

    def __init__(self, controller: Controller, phase_s: float, say: harness.Say) -> None:
        self.controller = controller
        self.phase_s = phase_s
        self.say = say
        self.stopped: list[InstanceView] = []

    async def begin(self, name: str) -> str:
        chaos, controller = self.controller.chaos, self.controller
        groups = await controller.groups()
        if name == "monkey":
            mean = 5.0 * len(groups)  # one kill every 5 s across the cloud
            for group in groups:
                await chaos.set_monkey(group.name, mean, 1, False)
            return f"Chaos Monkey on {len(groups)} groups, {mean:g} s mean each"
        if name == "zone-outage":
            stopped = await chaos.zone_outage("b", self.phase_s)
            return f"zone b out: {len(stopped)} instances SIGKILLed"
        if name == "movie-latency":
            fault = Fault(latency_ms=1000, percent=20, duration_s=self.phase_s)
            await chaos.inject("movie", fault, [])
            return "1 s latency on 20 % of movie calls"
        if name == "merch-errors":
            await chaos.inject("merch", Fault(error_rate=0.1, duration_s=self.phase_s), [])
            return "10 % of merch calls fail"
        chosen: dict[str, InstanceView] = {}
        for view in sorted(await controller.ps(), key=lambda v: v.id):
            if view.status == "UP" and view.pid and view.group not in chosen:
                chosen[view.group] = view
        self.stopped = list(chosen.values())
        for view in self.stopped:
            os.kill(view.pid, signal.SIGSTOP)
        return f"SIGSTOP {', '.join(v.id for v in self.stopped)}"

    async def end(self, name: str) -> None:
        if name == "hung":
            for view in self.stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(view.pid, signal.SIGCONT)
        elif name == "zone-outage":
            await self.controller.chaos.zone_open("b")
        else:
            await self.controller.chaos.halt()


async def _settled(controller: Controller) -> None:
    """Wait until every group has its desired count, all UP."""
    give_up = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < give_up:
        groups, instances = await controller.groups(), await controller.ps()
        if all(g.up == g.desired for g in groups) and all(i.status == "UP" for i in instances):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the cloud did not settle between scenarios")


async def _load(url: str, rate: float, seconds: float, start: float, out: list[_Sample]) -> None:
    """Open-model load on `url` from `start` for `seconds`; every answer lands in `out`."""
    pattern = UrlPattern(url)
    connector = aiohttp.TCPConnector(limit=0)
    count = itertools.count(1)
    async with aiohttp.ClientSession(connector=connector) as session:

        def send(intended: float) -> Coroutine[Any, Any, None]:
            return _get(session, pattern.at(next(count)), intended, start, out)

        await open_model(Schedule(rate, seconds), start, send)


async def _scenario(
    controller: Controller, name: str, url: str, rate: float, phase_s: float, say: harness.Say
) -> Scenario:
    await _settled(controller)
    began = time.time()
    samples: list[_Sample] = []
    fault = _Fault(controller, phase_s, say)
    described = ""
    start = time.monotonic()

    async def method() -> None:
        nonlocal described
        await asyncio.sleep(phase_s)
        described = await fault.begin(name)
        say(f"  {name}: {described}")
        await asyncio.sleep(max(0.0, start + 2 * phase_s - time.monotonic()))
        await fault.end(name)

    running = asyncio.create_task(method())
    try:
        await _load(url, rate, 3 * phase_s, start, samples)
    finally:
        await running
    phases = [
        _phase(phase, [s for s in samples if index * phase_s <= s.offset < (index + 1) * phase_s])
        for index, phase in enumerate(PHASES)
    ]
    kinds: dict[str, int] = {}
    first: dict[str, str] = {}
    for sample in sorted(samples, key=lambda s: s.offset):
        if sample.kind is not None:
            kinds[sample.kind] = kinds.get(sample.kind, 0) + 1
            first.setdefault(sample.kind, sample.message)
    ended = controller.history.events(HistoryQuery(since=began, kind="instance.terminated"))
    return Scenario(name, described, phases, dict(sorted(kinds.items())), first, len(ended))


async def warmed_front_door(
    controller: Controller, app: Path, rate: float, phase_s: float, say: harness.Say
) -> str:
    """The URL of flix's home page through the app's front door, after an unmeasured warm-up:
    caches and connections start cold, and the first scenario's `before` would measure the
    start-up instead of the steady state."""
    door = controller.front_door
    if door is None:
        raise ValueError(f"{app} has no front door to load")
    url = f"{door.url}api/home?visitor={{1..10000}}"
    warmup = min(phase_s, WARMUP_S)
    say(f"warm-up: {warmup:g} s at {rate:g} requests/s, not measured")
    await _load(url, rate, warmup, time.monotonic(), [])
    return url


async def experiment(
    app: Path,
    *,
    rate: float,
    phase_s: float,
    scenarios: list[str],
    goal_pct: float = GOAL_PCT,
    say: harness.Say = say,
) -> ChaosResult:
    """Run the app and every scenario in turn under load through its front door."""

    async def body(controller: Controller) -> ChaosResult:
        url = await warmed_front_door(controller, app, rate, phase_s, say)
        results = []
        for name in scenarios:
            say(f"{name}: {phase_s:g} s before, during and after, {rate:g} requests/s")
            results.append(await _scenario(controller, name, url, rate, phase_s, say))
        return ChaosResult(rate, phase_s, results, goal_pct)

    return await harness.on_cloud(app, body, say=say)


def plot(result: ChaosResult, path: Path) -> None:
    """Success and p99 per scenario and phase, side by side."""
    figure, (success, p99) = figures.subplots(2, 1, figsize=(9, 6), sharex=True)
    names = [s.name for s in result.scenarios]
    width = 0.27
    for offset, phase in enumerate(PHASES):
        xs = [i + (offset - 1) * width for i in range(len(names))]
        rows = [next(p for p in s.phases if p.phase == phase) for s in result.scenarios]
        success.bar(xs, [r.success_pct for r in rows], width, label=phase)
        p99.bar(xs, [r.p99_ms for r in rows], width, label=phase)
    success.axhline(result.goal_pct, color="red", linewidth=0.8, linestyle="--")
    lowest = min(p.success_pct for s in result.scenarios for p in s.phases)
    success.set_ylim(max(0.0, min(99.0, lowest) - 5), 100.5)
    success.set_ylabel("success %")
    success.legend(loc="lower left", ncols=3)
    p99.axhline(EDGE_DEADLINE_MS, color="red", linewidth=0.8, linestyle="--")
    p99.set_ylabel("p99 ms")
    p99.set_xticks(range(len(names)), names)
    figure.suptitle(
        f"herd experiment chaos: {result.rate:g} requests/s, {result.phase_s:g} s phases"
    )
    figures.save(figure, path)


def report(result: ChaosResult) -> None:
    """The figures on stdout: a row per scenario and phase, then each fault and its failures."""
    print_table(
        f"chaos under {result.rate:g} requests/s, {result.phase_s:g} s phases",
        [
            Column("scenario"),
            Column("phase"),
            *numbers("total", "failed", "success %", "p99 ms"),
            Column("degraded %", right=True, drop=1),
        ],
        [
            [
                scenario.name,
                phase.phase,
                str(phase.total),
                str(phase.failed),
                f"{phase.success_pct:g}",
                f"{phase.p99_ms:g}",
                f"{phase.degraded_pct:g}",
            ]
            for scenario in result.scenarios
            for phase in scenario.phases
        ],
    )
    console = out()
    for scenario in result.scenarios:
        console.print(
            f"{scenario.name}: {scenario.fault}; {scenario.terminated} terminated", markup=False
        )
        for kind, count in scenario.failed_by_kind.items():
            first = scenario.first_failures.get(kind, "")
            console.print(f"  {count} x {kind}: {first}", markup=False)


def command(
    app: Path = harness.APP,
    rate: float = harness.RATE,
    phase_seconds: float = options.seconds(
        20.0, "Seconds of each phase: before, during, after.", "--phase-seconds"
    ),
    scenario: Annotated[
        list[str] | None,
        options.only("--scenario", "monkey, zone-outage, movie-latency, merch-errors, hung"),
    ] = None,
    goal: float = harness.target_option(
        GOAL_PCT, "--goal", "The success target of every phase", "docs/chaos.md"
    ),
    json_path: Path | None = harness.JSON,
    plot_path: Annotated[Path | None, harness.plot_option("success and p99 per phase")] = None,
) -> None:
    """Faults under load through flix: before, during, after each.

    Chaos Monkey, a zone outage, 1 s latency on 20 % of movie calls, 10 % errors from merch,
    a hung instance per group. Targets: every phase serves >= 99.9 % (--goal) and p99 stays
    under the edge's deadline during the latency; exits 0 only if both were met, 1 if not
    (docs/chaos.md).

    Example: herd experiment chaos --rate 50 --scenario zone-outage --json chaos.json
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
    harness.conclude(result, result.problems(), json_path=json_path, plot=plot, plot_path=plot_path)
