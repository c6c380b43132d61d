"""`herd experiment deploy`: four deploys of flix under steady load, counting what users saw.

One local cloud runs flix while an open-model load goes through the front door over `visitors`
visitors; visitors 1 to 1 % of them form a test cell pinned to v002. First `steady`: three holds
with no deploy, the control. Then, in order:

- `red_black`: history v002, red/black; held, then confirmed (promoted).
- `canary_pass`: edge v002, canary (steps and judge from the app's `[deploy]`); promoted.
- `canary_fail`: edge v003, a bad build (`FLIX_FAIL_RATE=0.1`), canary: the judge fails it at
  its first step and the deploy rolls back by itself.
- `rollback`: history v003, red/black; held, then `rollback` (v002 re-enabled).

Every second the experiment reads each instance's /metrics: the requests each group served (the
traffic share per version over time) and the requests it took by bucket and pin, from which
`cohorts.py` measures cohort consistency at every hop whose route splits traffic over two UP
groups or more, per service and phase, bucketed and pinned visitors apart.

Targets (`expected`): each deploy ends as it should (red_black and canary_pass promoted,
canary_fail and rollback rolled back); the bad canary rolls back at its first step with at most
1 % of its scenario's requests failed and no other scenario fails a request; rollbacks take
under 2 s; every counted hop keeps 100 % of its visitors on their cohort's group.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import socket
import time
from pathlib import Path
from typing import Annotated

import aiohttp
import msgspec
import typer

from herd._cloud.app import App, CellSpec, CohortSpec, DeploySpec, load
from herd._cloud.controller import Controller
from herd._cloud.interface import DeployView, InstanceView
from herd._model.route import Route
from herd._wire.http_client import InstanceSession
from herd_tools import figures, options
from herd_tools.experiments import harness
from herd_tools.experiments.cohorts import (
    Cohorts,
    HopCohort,
    Taken,
    consistency_pct,
    counted,
    read,
)
from herd_tools.load import run_load
from herd_tools.output import Column, numbers, print_table, say, usage

PIN = "v002"
FAIL_RATE = 0.1
#: The bad canary may fail at most this share of its scenario's requests; a rollback takes less.
FAILED_SHARE = 0.01
ROLLBACK_S = 2.0
#: The longest a deploy may take to reach the state the experiment waits for.
SETTLE_TIMEOUT_S = 300.0
#: The control before the first deploy (what users see with no deploy) lasts this many holds.
STEADY_HOLDS = 3
#: The load runs until the scenarios end; this only bounds it.
LOAD_LIMIT_S = 3600.0
SETTLED = ("window", "promoted", "rolled_back", "aborted", "failed")
ENDED = ("promoted", "rolled_back", "aborted", "failed")
COUNTS = {"identity": 1, "movie": 1, "merch": 1, "history": 1, "edge": 2}
#: (scenario, service, version, strategy, settings, rolled back by hand), in the order they run.
PLANS: list[tuple[str, str, str, str, dict[str, str], bool]] = [
    ("red_black", "history", "v002", "red-black", {}, False),
    ("canary_pass", "edge", "v002", "canary", {}, False),
    ("canary_fail", "edge", "v003", "canary", {"FLIX_FAIL_RATE": str(FAIL_RATE)}, False),
    ("rollback", "history", "v003", "red-black", {}, True),
]
SCENARIOS = [plan[0] for plan in PLANS]


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    """What one deploy did and what users saw while it ran."""

    name: str
    service: str
    version: str
    strategy: str
    start_s: float
    duration_s: float
    total: int
    failed: int
    failed_by_kind: dict[str, int]
    decision: str
    canary_score: float | None
    rollback_s: float | None
    cohort_consistency_pct: float | None
    """Over every hop whose route split traffic over two UP groups or more, the share of
    bucketed and pinned requests that reached the group their bucket or pin says."""
    failed_bound: int | None = None
    """For the bad canary: the failures it may cause (`_bound`)."""
    cohorts: list[HopCohort] = msgspec.field(default_factory=list)
    """The same per service and phase, bucketed and pinned visitors apart."""
    decided_at_step: int | None = None
    """For a canary: the share of the step its decision was taken at."""


class Tick(msgspec.Struct, frozen=True):
    """One second: requests each group served, and failed requests users saw."""

    t: float
    served: dict[str, float]
    failed: int


class DeployResult(msgspec.Struct, frozen=True):
    """The whole run."""

    rate: float
    visitors: int
    deploy: DeploySpec
    scenarios: list[Scenario]
    timeline: list[Tick]


class _Watch:
    """Reads every instance's /metrics each second: served requests per group, and requests
    by bucket and pin at every hop whose route splits them over two UP groups or more."""

    def __init__(self, controller: Controller, started: float) -> None:
        self.controller = controller
        self.started = started
        self.ticks: list[tuple[float, dict[str, float]]] = []
        self.cohorts = Cohorts()
        self._served: dict[str, float] = {}
        self._taken: dict[str, Taken] = {}
        self._before: dict[str, tuple[Route | None, set[str]]] = {}

    async def run(self, session: InstanceSession) -> None:
        second = 0
        while True:
            second += 1
            await asyncio.sleep(max(0.0, self.started + second - time.monotonic()))
            with contextlib.suppress(Exception):
                await self._look(session)

    async def _look(self, session: InstanceSession) -> None:
        instances = [i for i in await self.controller.ps() if i.address]
        readings = await asyncio.gather(
            *(self._read(session, i) for i in instances), return_exceptions=True
        )
        resolver = self.controller.resolver
        assert resolver is not None
        now: dict[str, tuple[Route | None, set[str]]] = {
            service: (
                resolver.route(service),
                {i.group for i in instances if i.service == service and i.status == "UP"},
            )
            for service in {i.service for i in instances}
        }
        served: dict[str, float] = collections.defaultdict(float)
        for instance, reading in zip(instances, readings, strict=True):
            if isinstance(reading, BaseException):
                continue
            total, counts = reading
            served[instance.group] += max(0.0, total - self._served.get(instance.id, total))
            before = self._taken.get(instance.id, counts)
            fresh = {key: n - before.get(key, 0.0) for key, n in counts.items()}
            self._served[instance.id], self._taken[instance.id] = total, counts
            route, up = now[instance.service]
            # Only seconds in which the hop's route and UP groups stayed as they were: a
            # request counted now may have been routed just before a change.
            if (
                route is not None
                and counted(route, up)
                and self._before.get(instance.service)
                == (
                    route,
                    up,
                )
            ):
                self.cohorts.add(route, up, instance.group, fresh)
        self._before = now
        self.ticks.append((time.monotonic() - self.started, dict(served)))

    @staticmethod
    async def _read(scrape: InstanceSession, instance: InstanceView) -> tuple[float, Taken]:
        assert instance.address is not None
        async with scrape.session.get(scrape.url(instance.address, "/metrics")) as response:
            return read(await response.text())


def experiment_app(app: App, *, visitors: int, spec: DeploySpec) -> App:
    """flix at small counts on free ports, a test cell of 1 % of the visitors pinned to v002,
    and `spec`."""
    groups = [
        msgspec.structs.replace(g, instances=COUNTS.get(g.service, g.instances), autoscale=None)
        for g in app.spec.groups
    ]
    door = app.spec.front_door
    if door is None:
        raise ValueError(f"{app.source} has no front door to load")
    cell = CellSpec(name="beta", version=PIN, visitors=list(range(1, max(2, visitors // 100) + 1)))
    cohorts = CohortSpec(visitor_query="visitor", pin_header="x-flix-pin", cells=[cell])
    # Free ports: the experiment must not need the machine's usual ones.
    door = msgspec.structs.replace(door, cohorts=cohorts, port=_free_port())
    changed = msgspec.structs.replace(
        app.spec,
        groups=groups,
        front_door=door,
        deploy=spec,
        registry_port=_free_port(),
        control_port=_free_port(),
    )
    return App(changed, app.source)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _settle(controller: Controller, service: str, states: tuple[str, ...]) -> DeployView:
    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        while True:
            view = next(v for v in await controller.deploys() if v.service == service)
            if view.state in states:
                return view
            await asyncio.sleep(0.1)


async def _scenarios(
    controller: Controller,
    *,
    rate: float,
    visitors: int,
    hold_s: float,
    chosen: list[str],
    fail_rate: float,
    say: harness.Say,
) -> DeployResult:
    door = controller.front_door
    assert door is not None
    url = f"{door.url}api/home?visitor={{1..{visitors}}}"
    started = time.monotonic()
    samples: list[tuple[float, str | None]] = []

    def record(intended: float, _latency: float, kind: str | None) -> None:
        samples.append((intended - started, kind))

    async def drive() -> None:
        # One load until the scenarios are done (then cancelled): loads of a second each would
        # start the URL pattern over every second and send the same `rate` visitors each time.
        await run_load(url, rate, LOAD_LIMIT_S, record=record)

    watch = _Watch(controller, started)
    plans = [plan for plan in PLANS if plan[0] in chosen]
    scenarios = []
    # The controller runs in this process: the session presents the control plane's identity.
    async with InstanceSession(aiohttp.ClientTimeout(total=0.8)) as session:
        loading = asyncio.create_task(drive())
        watching = asyncio.create_task(watch.run(session))
        try:
            # A steady state before the first deploy: what users see with no deploy at all.
            steady_s = STEADY_HOLDS * hold_s
            await asyncio.sleep(steady_s)
            part = [kind for at, kind in samples if at < steady_s]
            scenarios.append(
                Scenario(
                    name="steady",
                    service="",
                    version="",
                    strategy="none",
                    start_s=0.0,
                    duration_s=steady_s,
                    total=len(part),
                    failed=sum(1 for kind in part if kind is not None),
                    failed_by_kind=dict(collections.Counter(k for k in part if k is not None)),
                    decision="",
                    canary_score=None,
                    rollback_s=None,
                    cohort_consistency_pct=None,
                )
            )
            for name, service, version, strategy, planned, roll in plans:
                settings = {
                    key: str(fail_rate) if key == "FLIX_FAIL_RATE" else value
                    for key, value in planned.items()
                }
                say(f"{name}: {strategy} of {service}-{version}")
                begin = time.monotonic() - started
                hops_before = watch.cohorts.hops()
                await controller.deploy(service, version, strategy, settings)
                view = await _settle(controller, service, SETTLED)
                if view.state == "window":
                    await asyncio.sleep(hold_s)
                    if roll:
                        view = await controller.rollback(service)
                    else:
                        await controller.confirm(service)
                        view = await _settle(controller, service, ENDED)
                await asyncio.sleep(hold_s)  # the old group drains under load
                end = time.monotonic() - started
                part = [kind for at, kind in samples if begin <= at < end]
                hops = watch.cohorts.hops(since=hops_before)
                scenario = Scenario(
                    name=name,
                    service=service,
                    version=version,
                    strategy=strategy,
                    start_s=round(begin, 1),
                    duration_s=round(end - begin, 1),
                    total=len(part),
                    failed=sum(1 for kind in part if kind is not None),
                    failed_by_kind=dict(collections.Counter(k for k in part if k is not None)),
                    decision=view.decision,
                    canary_score=view.canary_score,
                    rollback_s=view.rollback_s,
                    cohort_consistency_pct=consistency_pct(hops),
                    failed_bound=_bound(view, controller.app.spec.deploy, rate)
                    if name == "canary_fail"
                    else None,
                    cohorts=hops,
                    decided_at_step=_decided_at(view),
                )
                say(f"  {msgspec.json.encode(scenario).decode()}")
                scenarios.append(scenario)
        finally:
            for task in (loading, watching):
                task.cancel()
            await asyncio.gather(loading, watching, return_exceptions=True)
    failures = collections.Counter(int(at) for at, kind in samples if kind is not None)
    timeline = [
        Tick(round(t, 1), {g: round(n, 1) for g, n in served.items()}, failures.get(int(t), 0))
        for t, served in watch.ticks
    ]
    spec = controller.app.spec.deploy
    return DeployResult(rate, visitors, spec, scenarios, timeline)


def _decided_at(view: DeployView) -> int | None:
    """The share of the canary's last step before its decision (None: no canary step)."""
    steps = [e.message for e in view.events if e.kind == "canary_step"]
    return int(steps[-1].split(" get ")[1].split(" %")[0]) if steps else None


def _bound(view: DeployView, spec: DeploySpec, rate: float) -> int:
    """The requests the bad canary could fail: all those its shares sent it, step by step,
    from its first step to the decision (rounded up)."""
    steps = [e.at for e in view.events if e.kind == "canary_step"]
    if not steps:
        return 0
    decided = next((e.at for e in view.events if e.kind == "decision"), steps[-1])
    ends = [*steps[1:], decided]
    sent = sum(
        rate * spec.canary_steps[i] / 100 * max(0.0, end - start)
        for i, (start, end) in enumerate(zip(steps, ends, strict=True))
    )
    return math.ceil(sent)


async def experiment(
    app_path: Path,
    *,
    rate: float,
    visitors: int,
    spec: DeploySpec,
    hold_s: float,
    chosen: list[str],
    fail_rate: float = FAIL_RATE,
    say: harness.Say = say,
) -> DeployResult:
    """Run the `chosen` scenarios on flix (`app_path`), in their order, and return the
    figures."""
    app = experiment_app(load(app_path), visitors=visitors, spec=spec)

    async def body(controller: Controller) -> DeployResult:
        return await _scenarios(
            controller,
            rate=rate,
            visitors=visitors,
            hold_s=hold_s,
            chosen=chosen,
            fail_rate=fail_rate,
            say=say,
        )

    return await harness.on_cloud(app, body, say=say)


def expected(result: DeployResult) -> list[str]:
    """What went other than the targets: decisions; the bad canary rolled back at its first
    step with at most 1 % of its scenario's requests failed, no failure elsewhere; rollbacks
    under 2 s; every counted hop's requests on the group their bucket or pin says."""
    wanted = {
        "steady": "",
        "red_black": "promoted",
        "canary_pass": "promoted",
        "canary_fail": "rolled_back",
        "rollback": "rolled_back",
    }
    first = result.deploy.canary_steps[0]
    problems = []
    for scenario in result.scenarios:
        name = scenario.name
        if scenario.decision != wanted[name]:
            problems.append(f"{name}: {scenario.decision}, not {wanted[name]}")
        allowed = math.floor(FAILED_SHARE * scenario.total) if name == "canary_fail" else 0
        if scenario.failed > allowed:
            problems.append(f"{name}: {scenario.failed} failed (allowed {allowed})")
        if name == "canary_fail" and scenario.decided_at_step != first:
            problems.append(f"{name}: decided at {scenario.decided_at_step} %, not {first} %")
        if scenario.rollback_s is not None and scenario.rollback_s >= ROLLBACK_S:
            problems.append(f"{name}: rolled back in {scenario.rollback_s} s")
        if scenario.cohort_consistency_pct not in (None, 100.0):
            problems.append(f"{name}: cohort consistency {scenario.cohort_consistency_pct} %")
    return problems


#: One colour per version on every panel; a baseline is hatched in its version's colour.
_COLORS = {"v001": "tab:blue", "v002": "tab:green", "v003": "tab:red"}


def plot(result: DeployResult, path: Path) -> None:
    """Traffic share per group of each deployed service over time, with failures marked."""
    services = ["history", "edge"]
    figure, axes = figures.subplots(len(services) + 1, 1, figsize=(10, 9), sharex=True)
    times = [tick.t for tick in result.timeline]
    for axis, service in zip(axes, services, strict=False):
        groups = sorted(
            {g for tick in result.timeline for g in tick.served if g.startswith(service)}
        )
        shares = []
        for group in groups:
            row = []
            for tick in result.timeline:
                total = sum(n for g, n in tick.served.items() if g.startswith(f"{service}-"))
                row.append(100 * tick.served.get(group, 0.0) / total if total else 0.0)
            shares.append(row)
        if groups:
            colors = [_COLORS.get(group.rsplit("-", 1)[1], "grey") for group in groups]
            hatches = ["//" if "-baseline-" in group else "" for group in groups]
            stacks = axis.stackplot(times, shares, labels=groups, colors=colors)
            for stack, hatch in zip(stacks, hatches, strict=True):
                stack.set_hatch(hatch)
        axis.set_ylabel(f"{service} %")
        axis.set_ylim(0, 100)
        axis.legend(loc="upper left", fontsize=7)
    failures = axes[-1]
    failures.bar(times, [tick.failed for tick in result.timeline], width=0.9, color="red")
    failures.set_ylabel("failed req/s")
    failures.set_xlabel("seconds")
    for scenario in result.scenarios:
        for axis in axes:
            axis.axvline(scenario.start_s, color="k", lw=0.6, ls="--")
        axes[0].annotate(scenario.name, (scenario.start_s, 102), fontsize=7, annotation_clip=False)
    figure.suptitle(f"flix deploys under {result.rate:g} req/s: traffic share per group")
    figures.save(figure, path)


def report(result: DeployResult) -> None:
    """The figures on stdout: a row per scenario."""
    print_table(
        f"deploys under {result.rate:g} req/s over {result.visitors} visitors",
        [
            Column("scenario"),
            *numbers("duration_s", "total", "failed"),
            Column("decision"),
            *numbers("canary_score", "rollback_s"),
            Column("cohort_consistency_pct", right=True, drop=1),
        ],
        [
            [
                s.name,
                f"{s.duration_s:g}",
                str(s.total),
                f"{s.failed}" + ("" if s.failed_bound is None else f" (bound {s.failed_bound})"),
                s.decision,
                "-" if s.canary_score is None else f"{s.canary_score:.0f}",
                "-" if s.rollback_s is None else f"{s.rollback_s:.3f}",
                "-" if s.cohort_consistency_pct is None else f"{s.cohort_consistency_pct:g}",
            ]
            for s in result.scenarios
        ],
    )


def command(
    app: Path = harness.APP,
    rate: float = harness.RATE,
    visitors: int = options.count(10_000, "Visitors the load spreads over (1 % are a test cell)."),
    analysis: float = options.seconds(
        30.0, "Seconds of analysis per canary step (less if the judge fails it sooner)."
    ),
    interval: float = options.seconds(1.0, "Seconds between the analysis' samples."),
    min_points: int = options.count(
        8, "Intervals with requests on each side before a metric has data."
    ),
    hold: float = options.seconds(3.0, "Seconds each promoted deploy is held before its end."),
    steps: str = typer.Option(
        "5,25,50,100", metavar="PERCENTS", help="The canary's traffic steps, in percent."
    ),
    fail_rate: float = options.share(
        FAIL_RATE, "Share of pages the bad canary (canary_fail) fails."
    ),
    scenarios: str = typer.Option(
        ",".join(SCENARIOS),
        metavar="NAMES",
        help="Which scenarios to run (comma-separated; they run in this order).",
    ),
    json_path: Path | None = harness.JSON,
    plot_path: Annotated[
        Path | None, harness.plot_option("traffic share per group over time")
    ] = None,
) -> None:
    """Four deploys of flix under load, counting what users saw.

    A red/black deploy, a canary that passes, a bad canary that rolls back by itself, and a
    rollback. Targets: every deploy ends as it should (promoted, promoted, rolled back, rolled
    back); the bad canary at its first step with at most 1 % of its scenario's requests failed,
    and no other request failed; rollbacks under 2 s; every hop the route splits keeps 100 %
    of its visitors on their cohort's group. Exits 0 only if all were met, 1 if not
    (docs/deploy.md).

    Example: herd experiment deploy --scenarios canary_pass,canary_fail --json deploy.json
    """
    chosen = [name.strip() for name in scenarios.split(",") if name.strip()]
    if not chosen or any(name not in SCENARIOS for name in chosen):
        raise usage(f"scenarios are among {', '.join(SCENARIOS)}")
    try:
        canary_steps = [int(step) for step in steps.split(",")]
    except ValueError:
        raise usage(f"--steps takes whole percents, e.g. 5,25,50,100: {steps!r}") from None
    spec = DeploySpec(
        rollback_window_s=600.0,
        canary_steps=canary_steps,
        analysis_s=analysis,
        interval_s=interval,
        min_points=min_points,
    )
    if (problem := spec.problem()) is not None:
        raise usage(problem)
    result = harness.run(
        experiment(
            app,
            rate=rate,
            visitors=visitors,
            spec=spec,
            hold_s=hold,
            chosen=chosen,
            fail_rate=fail_rate,
        )
    )
    report(result)
    harness.conclude(result, expected(result), json_path=json_path, plot=plot, plot_path=plot_path)
