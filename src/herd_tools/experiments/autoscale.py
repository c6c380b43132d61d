"""`herd experiment autoscale`: load through flix's front door ramps low → peak → low, once
with every group autoscaled and once at flix's fixed counts, and we compare what users saw and
how the groups moved.

The ramp has five phases: `low` (1/9 of the duration), `up` (2/9, linear to the peak), `peak`
(2/9), `down` (2/9, linear back) and `after` (2/9). It is sent as a sequence of one-second
open-model loads (`run_load`), each at the ramp's rate in the middle of its second.

Target: the autoscaled run serves >= 99.9 % of its requests (`SUCCESS_PCT`, or a run's own).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from herd._cloud.app import App, AutoscaleSpec, load
from herd._cloud.controller import Controller
from herd._model.stats import percentile
from herd_tools import figures, options
from herd_tools.experiments import harness
from herd_tools.load import run_load
from herd_tools.output import Column, numbers, out, print_table, say, usage

Sample = tuple[float, float, str | None]
"""A finished request: intended send time (s from the ramp's start), latency (s), failure."""

STEP_S = 1.0
"""The ramp is sent as loads of this many seconds, each at one rate."""
PHASES = (("low", 1), ("up", 2), ("peak", 2), ("down", 2), ("after", 2))
"""The ramp's phases and their shares (ninths) of the duration."""
SUCCESS_PCT = 99.9
"""The autoscaled run's success target in every phase, in percent."""
COST_TARGET = 0.6
"""The autoscaled run's instance-seconds, at most this share of the fixed run's."""
P99_FACTOR = 1.5
"""The autoscaled run's p99, at most this multiple of the fixed run's."""
#: The policy's defaults (docs/autoscale.md): down to one instance per group, a target a
#: single instance reaches well before it saturates, and a scale-in window shorter than the
#: ramp's fall, so that a grown group is back at its minimum before the run ends.
MIN, MAX = 1, 4
TARGET_CPU = 20.0
SCALE_IN_AFTER_S = 15.0
SCALE_IN_EVERY_S = 3.0


@dataclass(frozen=True)
class Ramp:
    """Requests per second over time: `low`, up to `peak`, back to `low`."""

    low: float
    peak: float
    duration: float

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.peak) or not self.duration >= 9 * STEP_S:
            raise ValueError("the ramp needs 0 < low <= peak and a duration of at least 9 s")

    def phases(self) -> list[tuple[str, float, float]]:
        """(name, start, end) of each phase, in seconds from the start."""
        bounds, start = [], 0.0
        for name, share in PHASES:
            end = start + self.duration * share / 9
            bounds.append((name, start, end))
            start = end
        return bounds

    def rate(self, t: float) -> float:
        """Requests per second `t` seconds into the ramp."""
        for name, start, end in self.phases():
            if t < end:
                done = (t - start) / (end - start)
                if name == "up":
                    return self.low + (self.peak - self.low) * done
                if name == "down":
                    return self.peak - (self.peak - self.low) * done
                return self.peak if name == "peak" else self.low
        return self.low

    def start_of(self, phase: str) -> float:
        """When `phase` begins."""
        return next(start for name, start, _ in self.phases() if name == phase)


class Phase(msgspec.Struct, frozen=True):
    """What users saw of the requests intended during one phase."""

    phase: str
    start_s: float
    end_s: float
    sent: int
    failed: int
    success_pct: float
    p99_ms: float


class GroupFigures(msgspec.Struct, frozen=True):
    """How one group moved: its UP instances, and how long growing and shrinking took.

    `scale_out_s` runs from the start of the `up` phase to the first moment the group had its
    most instances; `scale_in_s` from the start of the `down` phase until it was back to the
    count it had when the `up` phase began (0 if it already was). None when it never grew, or
    never got back within the run.
    """

    group: str
    min_instances: int
    max_instances: int
    scale_out_s: float | None
    scale_in_s: float | None


class Tick(msgspec.Struct, frozen=True):
    """One second of the run: the ramp's rate, each group's UP instances, and the p99 of the
    requests intended in that second."""

    t: float
    rate: float
    up: dict[str, int]
    p99_ms: float


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """One pass of the ramp, autoscaled or at fixed counts."""

    autoscale: bool
    success_pct: float
    p99_ms: float
    instance_seconds: float
    """UP instances of every group, summed over the ramp's seconds: what the run cost."""
    phases: list[Phase]
    groups: list[GroupFigures]
    timeline: list[Tick]
    decisions: list[str]
    """The autoscaler's decisions that changed a count during the ramp, in order, with their
    reasons."""


class AutoscaleResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the experiment measured; `--json` writes exactly this."""

    low: float
    peak: float
    duration_s: float
    policy: dict[str, str]
    """Each group's autoscale settings in the autoscaled run."""
    runs: list[Run]
    success_target_pct: float = SUCCESS_PCT

    def missed(self) -> list[str]:
        """The targets missed, in words (none: all met). The autoscaled run serves the target
        in every phase, brings every group it grew back before the run ends, and, beside a
        run at fixed counts, costs at most `COST_TARGET` of its instance-seconds with a p99 at
        most `P99_FACTOR` times its."""
        scaled = self.runs[0]
        missed = [
            f"the autoscaled run served {phase.success_pct:g} % in {phase.phase},"
            f" target {self.success_target_pct:g} %"
            for phase in scaled.phases
            if phase.success_pct < self.success_target_pct
        ]
        missed += [
            f"{group.group} grew to {group.max_instances} and was not back within the run"
            for group in scaled.groups
            if group.scale_out_s is not None and group.scale_in_s is None
        ]
        fixed = next((one for one in self.runs if not one.autoscale), None)
        if fixed is not None and scaled.instance_seconds > COST_TARGET * fixed.instance_seconds:
            missed.append(
                f"autoscaled {scaled.instance_seconds:g} instance-seconds, target"
                f" {COST_TARGET:g} x the fixed run's {fixed.instance_seconds:g}"
            )
        if fixed is not None and scaled.p99_ms > P99_FACTOR * fixed.p99_ms:
            missed.append(
                f"autoscaled p99 {scaled.p99_ms:g} ms, target {P99_FACTOR:g} x the fixed"
                f" run's {fixed.p99_ms:g} ms"
            )
        return missed


def autoscaled(app: App, policy: AutoscaleSpec) -> App:
    """`app` with every group autoscaled by `policy`, each starting at its minimum: a group
    started at the fixed counts pays the fixed run's price until its first scale-in window
    has passed, and the ramp's low phase is shorter than that window."""
    groups = [
        msgspec.structs.replace(g, autoscale=policy, instances=policy.min) for g in app.spec.groups
    ]
    return App(msgspec.structs.replace(app.spec, groups=groups), app.source)


def _pct(samples: list[Sample]) -> float:
    ok = sum(1 for _, _, kind in samples if kind is None)
    return round(100.0 * ok / len(samples), 3) if samples else 100.0


def _p99(samples: list[Sample]) -> float:
    return round(percentile(sorted(s[1] for s in samples), 0.99) * 1000, 1)


def _moves(name: str, ticks: list[Tick], ramp: Ramp) -> GroupFigures:
    counts = [(tick.t, tick.up.get(name, 0)) for tick in ticks]
    values = [count for _, count in counts]
    rise, fall = ramp.start_of("up"), ramp.start_of("down")
    # What it had when the load began to rise (the low phase may already have shrunk it).
    base = next((c for t, c in reversed(counts) if t <= rise), values[0])
    most = max(values)
    out = next((t for t, c in counts if t >= rise and c == most), None) if most > base else None
    scale_out = round(out - rise, 1) if out is not None else None
    back = next((t for t, c in counts if t >= fall and c <= base), None)
    scale_in = round(back - fall, 1) if out is not None and back is not None else None
    return GroupFigures(name, min(values), most, scale_out, scale_in)


async def _pass(controller: Controller, ramp: Ramp, say: harness.Say) -> Run:
    door = controller.front_door
    if door is None:
        raise ValueError(f"{controller.app.source} has no front door to load")
    url = f"{door.url}api/home?visitor={{1..10000}}"
    # The load generator's clock: its intended send times are `time.monotonic()`.
    started = time.monotonic()
    samples: list[Sample] = []
    ticks: list[tuple[float, dict[str, int]]] = []

    def record(intended: float, latency: float, kind: str | None) -> None:
        samples.append((intended - started, latency, kind))

    async def watch() -> None:
        for second in itertools.count(1):
            groups = await controller.groups()
            ticks.append((time.monotonic() - started, {g.name: g.up for g in groups}))
            # On the clock, not after each look: a slow look must not thin the timeline out.
            await asyncio.sleep(max(0.0, started + second * STEP_S - time.monotonic()))

    async def one_step(index: int) -> None:
        mid = (index + 0.5) * STEP_S
        await asyncio.sleep(max(0.0, started + index * STEP_S - time.monotonic()))
        await run_load(url, ramp.rate(mid), STEP_S, record=record)

    watcher = asyncio.create_task(watch())
    try:
        steps = math.ceil(ramp.duration / STEP_S)
        async with asyncio.TaskGroup() as group:
            for index in range(steps):
                group.create_task(one_step(index))
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    phases = []
    for name, start, end in ramp.phases():
        part = [s for s in samples if start <= s[0] < end]
        failed = sum(1 for s in part if s[2] is not None)
        phases.append(
            Phase(name, round(start, 1), round(end, 1), len(part), failed, _pct(part), _p99(part))
        )
    timeline = []
    for t, up_counts in ticks:
        second = [s for s in samples if t - STEP_S <= s[0] < t]
        timeline.append(Tick(round(t, 1), round(ramp.rate(t), 1), up_counts, _p99(second)))
    names = sorted(ticks[0][1]) if ticks else []
    decisions = [
        f"{at - started:6.1f} s {group}: {d.current} -> {d.desired} ({d.reason})"
        for at, group, d in controller.autoscaled
        if at >= started
    ]
    autoscale = any(g.autoscale for g in controller.app.spec.groups)
    # Each look counts its UP instances for the time since the one before it.
    looked = [0.0] + [t for t, _ in ticks]
    cost = sum(
        sum(counts.values()) * (t - before)
        for before, (t, counts) in zip(looked, ticks, strict=False)
    )
    say(f"{'autoscaled' if autoscale else 'fixed'}: {_pct(samples):.3f} % ok, p99 {_p99(samples)}")
    return Run(
        autoscale=autoscale,
        success_pct=_pct(samples),
        p99_ms=_p99(samples),
        instance_seconds=round(cost, 1),
        phases=phases,
        groups=[_moves(name, timeline, ramp) for name in names],
        timeline=timeline,
        decisions=decisions,
    )


async def experiment(
    app_path: Path,
    *,
    ramp: Ramp,
    policy: AutoscaleSpec,
    baseline: bool,
    success_pct: float = SUCCESS_PCT,
    say: harness.Say = say,
) -> AutoscaleResult:
    """The ramp on the app autoscaled by `policy` and, with `baseline`, at its fixed counts."""
    app = load(app_path)

    async def body(controller: Controller) -> Run:
        return await _pass(controller, ramp, say)

    runs = [await harness.on_cloud(autoscaled(app, policy), body, say=say)]
    if baseline:
        runs.append(await harness.on_cloud(app, body, say=say))
    described = {g.name: _describe(policy) for g in app.spec.groups}
    return AutoscaleResult(
        low=ramp.low,
        peak=ramp.peak,
        duration_s=ramp.duration,
        policy=described,
        runs=runs,
        success_target_pct=success_pct,
    )


def _describe(policy: AutoscaleSpec) -> str:
    unit = "in flight" if policy.metric == "inflight" else "% of a core"
    return (
        f"{policy.min}..{policy.max} instances at {policy.target:g} {unit} each;"
        f" scale-in after {policy.scale_in_after_s:g} s, one per {policy.scale_in_every_s:g} s"
    )


def plot(result: AutoscaleResult, path: Path) -> None:
    """Load, UP instances (all groups) and p99 over time, autoscaled beside fixed."""
    figure, axes = figures.subplots(3, 1, figsize=(9, 8), sharex=True)
    for one in result.runs:
        label = "autoscaled" if one.autoscale else "fixed counts"
        style = "-" if one.autoscale else "--"
        times = [tick.t for tick in one.timeline]
        if one.autoscale:
            axes[0].plot(times, [tick.rate for tick in one.timeline], "k-")
        axes[1].plot(times, [sum(tick.up.values()) for tick in one.timeline], style, label=label)
        axes[2].plot(times, [tick.p99_ms for tick in one.timeline], style, label=label)
    axes[0].set_ylabel("load (req/s)")
    axes[1].set_ylabel("UP instances (all groups)")
    axes[2].set_ylabel("p99 per second (ms)")
    axes[2].set_xlabel("seconds from the ramp's start")
    axes[1].legend()
    axes[2].legend()
    figure.suptitle(f"flix, load {result.low:g} -> {result.peak:g} -> {result.low:g} req/s")
    figures.save(figure, path)


def report(result: AutoscaleResult) -> None:
    """The figures on stdout: each run's phases, its groups' moves, its decisions."""
    for one in result.runs:
        title = "autoscaled" if one.autoscale else "fixed counts"
        print_table(
            title,
            [
                Column("phase"),
                *numbers("sent", "failed", "success %", "p99 ms"),
            ],
            [
                [p.phase, str(p.sent), str(p.failed), f"{p.success_pct:.3f}", f"{p.p99_ms:g}"]
                for p in one.phases
            ],
        )
        print_table(
            title,
            [
                Column("group"),
                *numbers("min", "max", "scale_out_s", "scale_in_s"),
            ],
            [
                [
                    g.group,
                    str(g.min_instances),
                    str(g.max_instances),
                    "-" if g.scale_out_s is None else f"{g.scale_out_s:g}",
                    "-" if g.scale_in_s is None else f"{g.scale_in_s:g}",
                ]
                for g in one.groups
            ],
        )
        out().print(f"{title}: {one.instance_seconds:g} instance-seconds", markup=False)
        for line in one.decisions:
            out().print(line, markup=False)


def command(
    app: Path = harness.APP,
    low: float = options.per_second(20.0, "Requests per second at the ramp's start and end."),
    peak: float = options.per_second(400.0, "Requests per second at the ramp's top."),
    duration: float = options.seconds(180.0, "Seconds the whole ramp takes."),
    min_instances: int = options.count(MIN, "Fewest instances per group.", "--min"),
    max_instances: int = options.count(MAX, "Most instances per group.", "--max"),
    target_cpu: float = typer.Option(
        TARGET_CPU,
        metavar="PERCENT",
        help="Percent of one core per instance the autoscaler aims at.",
    ),
    scale_in_after: float = options.seconds(
        SCALE_IN_AFTER_S, "Seconds of low load before a group sheds an instance."
    ),
    scale_in_every: float = options.seconds(
        SCALE_IN_EVERY_S, "Seconds between two scale-ins of a group."
    ),
    baseline: bool = typer.Option(
        True, help="Also run the ramp at the app's fixed counts, for comparison."
    ),
    success: float = harness.target_option(
        SUCCESS_PCT, "--success", "The autoscaled run's success target", "docs/autoscale.md"
    ),
    json_path: Path | None = harness.JSON,
    plot_path: Annotated[Path | None, harness.plot_option("load, instances and p99")] = None,
) -> None:
    """Ramp load up and down: autoscaled, then at fixed counts.

    Load goes low -> peak -> low through flix's front door. Every group is autoscaled by the policy
    given here; the baseline runs the same ramp at the app's fixed counts. Target: the autoscaled
    run serves >= 99.9 % in every phase (--success), costs at most 0.6 x the fixed run's
    instance-seconds with a p99 at most 1.5 x its, and brings every group it grew back before
    the run ends; exits 0 only if all held, 1 if not (docs/autoscale.md).

    Example: herd experiment autoscale --duration 90 --peak 200 --json autoscale.json
    """
    policy = AutoscaleSpec(
        min=min_instances,
        max=max_instances,
        target_cpu=target_cpu,
        scale_in_after_s=scale_in_after,
        scale_in_every_s=scale_in_every,
    )
    try:
        ramp = Ramp(low, peak, duration)
    except ValueError as exc:
        raise usage(str(exc)) from None
    if (problem := policy.problem()) is not None:
        raise usage(problem)
    result = harness.run(
        experiment(app, ramp=ramp, policy=policy, baseline=baseline, success_pct=success)
    )
    report(result)
    harness.conclude(result, result.missed(), json_path=json_path, plot=plot, plot_path=plot_path)
