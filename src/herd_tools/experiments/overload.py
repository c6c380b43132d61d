"""`herd experiment overload`: three times capacity through flix's front door, without collapse.

For each configuration of the instances' limits (`HERD_LIMIT`: `none`, `fixed`, `adaptive`,
`adaptive_priority`), flix starts on the local cloud and:

1. warms up (unmeasured); on the first configuration, measures its capacity: closed-loop
   clients sending user pages back to back; the successful pages per second are
   `capacity_rps`, the same for every configuration so that all see the same load;
2. runs open-model load through the front door: `base` (half the capacity), `spike` (three
   times it), `after` (half again). Half the requests are user pages (critical, by the app
   file's default) and half prefetches (`x-flix-prefetch: 1`: best-effort, by its rule).

Reported per configuration and phase: goodput (successful requests/s), critical and
best-effort success %, p99 of successful requests; and `recovery_s`, how long after the spike
ended until a second of requests was back to the base's success and p99. The load runs in a
process of its own (`overload_load`), so the generator does not take the front door's core.

Targets, on `adaptive_priority`'s spike: critical success >= 99.5 %, goodput >= 0.9 x capacity,
recovery <= 2 s (a short run states its own with the options).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import msgspec

from herd._cloud.app import App, load
from herd._cloud.controller import Controller
from herd._model.stats import percentile
from herd._process.config import LIMIT
from herd_tools import figures, options
from herd_tools.experiments.harness import (
    APP,
    JSON,
    Say,
    conclude,
    on_cloud,
    plot_option,
    run,
    target_option,
)
from herd_tools.experiments.overload_load import Sample
from herd_tools.output import Column, numbers, print_table, say, usage

CONFIGS = ("none", "fixed", "adaptive", "adaptive_priority")
PHASES = ("base", "spike", "after")
BASE_X = 0.5
SPIKE_X = 3.0
CRITICAL_SHARE = 0.5
CRITICAL_TARGET_PCT = 99.5
GOODPUT_TARGET = 0.9
RECOVERY_TARGET_S = 2.0
#: Recovery is judged on windows this long, moved by `_STEP_S`.
_WINDOW_S = 1.0
_STEP_S = 0.25
#: Back to the base: success within this of the base's, p99 within this factor and slack.
_SUCCESS_SLACK_PCT = 0.5
_P99_FACTOR, _P99_SLACK_MS = 1.5, 10.0
WARMUP_S = 3.0
_WARMUP_RATE = 20.0
_LOAD_MODULE = "herd_tools.experiments.overload_load"


class PhaseFigures(msgspec.Struct, frozen=True):
    """What users saw during one phase."""

    phase: str
    goodput_rps: float
    critical_success_pct: float
    best_effort_success_pct: float
    p99_ms: float
    critical_p99_ms: float = 0.0
    """The p99 of successful critical requests (the issue's "p99 of critical requests")."""


class ConfigFigures(msgspec.Struct, frozen=True):
    """One configuration of the limits, through its three phases."""

    name: str
    capacity_rps: float
    recovery_s: float | None
    phases: list[PhaseFigures]
    front_door_shed: dict[str, int] = {}
    """Requests the front door's own admission refused, by criticality (its share of the
    shedding; the instances shed the rest)."""


class OverloadResult(msgspec.Struct, frozen=True):
    """What one run measured; `--json` writes exactly this."""

    configs: list[ConfigFigures]
    phase_s: float
    spike_s: float
    base_x: float = BASE_X
    spike_x: float = SPIKE_X
    critical_share: float = CRITICAL_SHARE
    """The share of the load that is user pages (critical); the rest is prefetches."""
    critical_target_pct: float = CRITICAL_TARGET_PCT
    goodput_target: float = GOODPUT_TARGET
    recovery_target_s: float = RECOVERY_TARGET_S
    timelines: dict[str, list[tuple[float, float, float]]] = {}
    """Per configuration: (seconds, goodput/s, critical success %) per `_STEP_S` (the plot)."""

    def problems(self) -> list[str]:
        """The targets missed on `adaptive_priority`'s spike, in words (none: all met)."""
        missed = []
        for config in self.configs:
            if config.name != "adaptive_priority":
                continue
            spike = next(p for p in config.phases if p.phase == "spike")
            if spike.critical_success_pct < self.critical_target_pct:
                missed.append(
                    f"critical success {spike.critical_success_pct:g} % in the spike,"
                    f" target {self.critical_target_pct:g} %"
                )
            if spike.goodput_rps < self.goodput_target * config.capacity_rps:
                missed.append(
                    f"goodput {spike.goodput_rps:g}/s in the spike, target"
                    f" {self.goodput_target:g} x {config.capacity_rps:g}/s"
                )
            late = config.recovery_s is None or config.recovery_s > self.recovery_target_s
            if late and not math.isinf(self.recovery_target_s):
                missed.append(
                    f"recovery {config.recovery_s} s after the spike, target"
                    f" {self.recovery_target_s:g} s"
                )
        return missed


async def _measure(job: dict[str, Any]) -> Any:
    """Run the load process on `job` and return what it wrote."""
    with tempfile.TemporaryDirectory(prefix="herd-overload-") as scratch:
        out = Path(scratch) / "out.msgpack"
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", _LOAD_MODULE, json.dumps({**job, "out": str(out)})
        )
        if await child.wait() != 0:
            raise RuntimeError(f"the load process exited with {child.returncode}")
        return msgspec.msgpack.decode(out.read_bytes(), type=float | list[Sample])


def _success(samples: list[Sample]) -> float:
    return round(100.0 * sum(s.ok for s in samples) / len(samples), 3) if samples else 0.0


def _p99_ms(samples: list[Sample]) -> float:
    ordered = sorted(s.latency for s in samples if s.ok)
    return round(percentile(ordered, 0.99) * 1000, 1) if ordered else 0.0


def _phase(name: str, samples: list[Sample], seconds: float) -> PhaseFigures:
    return PhaseFigures(
        phase=name,
        goodput_rps=round(sum(s.ok for s in samples) / seconds, 1),
        critical_success_pct=_success([s for s in samples if s.critical]),
        best_effort_success_pct=_success([s for s in samples if not s.critical]),
        p99_ms=_p99_ms(samples),
        critical_p99_ms=_p99_ms([s for s in samples if s.critical]),
    )


def _window(samples: list[Sample], start: float, seconds: float) -> list[Sample]:
    return [s for s in samples if start <= s.offset < start + seconds]


def phase_figures(samples: list[Sample], phase_s: float, spike_s: float) -> list[PhaseFigures]:
    """The figures of base, spike and after, each from the samples sent within it (the real
    run's and the simulation's alike)."""
    bounds = [0.0, phase_s, phase_s + spike_s, 2 * phase_s + spike_s]
    return [
        _phase(phase, _window(samples, start, end - start), end - start)
        for phase, start, end in zip(PHASES, bounds, bounds[1:], strict=False)
    ]


def recovery_s(samples: list[Sample], phase_s: float, spike_s: float) -> float | None:
    """Seconds from the spike's end to the first window of requests back to the base's
    success and p99; None if none was within the run."""
    base = _window(samples, 0.0, phase_s)
    success, p99 = _success(base), _p99_ms(base)
    ended = phase_s + spike_s
    step = 0
    while (start := ended + step * _STEP_S) + _WINDOW_S <= ended + phase_s + 1e-9:
        window = _window(samples, start, _WINDOW_S)
        if (
            window
            and _success(window) >= success - _SUCCESS_SLACK_PCT
            and _p99_ms(window) <= p99 * _P99_FACTOR + _P99_SLACK_MS
        ):
            return round(start - ended, 2)
        step += 1
    return None


def timeline(samples: list[Sample], seconds: float) -> list[tuple[float, float, float]]:
    """Goodput per second and critical success % for every `_STEP_S` of the run."""
    points = []
    for index in range(int(seconds / _STEP_S)):
        window = _window(samples, index * _STEP_S, _STEP_S)
        good = sum(s.ok for s in window) / _STEP_S
        critical = _success([s for s in window if s.critical])
        points.append((round(index * _STEP_S, 2), round(good, 1), critical))
    return points


Timeline = list[tuple[float, float, float]]


async def _config(
    app: App,
    name: str,
    *,
    phase_s: float,
    spike_s: float,
    capacity_s: float,
    capacity: float | None,
    critical_share: float,
    say: Say,
) -> tuple[ConfigFigures, Timeline]:
    # The instances' limits and the front door's, alike.
    door = app.spec.front_door
    if door is None:
        raise ValueError(f"{app.source} has no front door to load")
    door = msgspec.structs.replace(door, limit=name)
    spec = msgspec.structs.replace(app.spec, env={**app.spec.env, LIMIT: name}, front_door=door)

    async def body(
        controller: Controller,
    ) -> tuple[ConfigFigures, list[tuple[float, float, float]]]:
        assert controller.front_door is not None
        url = f"{controller.front_door.url}api/home?visitor={{1..10000}}"
        warmup = [(_WARMUP_RATE, min(WARMUP_S, phase_s))]
        await _measure({"url": url, "mode": "open", "segments": warmup})
        measured = capacity
        if measured is None:
            # One reading, on a freshly started app: a sizing, not flix's saturation goodput
            # (docs/overload.md: later readings were 2-3x higher, and three times those
            # collapsed the load generator and the front door on the same two cores).
            job = {"url": url, "mode": "capacity", "seconds": capacity_s}
            measured = float(await _measure(job))
        if measured <= 0:
            raise RuntimeError(f"{name}: flix served nothing while its capacity was measured")
        base, spike = BASE_X * measured, SPIKE_X * measured
        say(f"{name}: capacity {measured:.0f}/s; {base:.0f}/s, {spike:.0f}/s, {base:.0f}/s")
        segments = [(base, phase_s), (spike, spike_s), (base, phase_s)]
        job = {"url": url, "mode": "open", "segments": segments, "critical_share": critical_share}
        samples: list[Sample] = await _measure(job)
        phases = phase_figures(samples, phase_s, spike_s)
        shed = {str(level): count for level, count in controller.front_door.admission.shed.items()}
        figures_ = ConfigFigures(
            name, round(measured, 1), recovery_s(samples, phase_s, spike_s), phases, shed
        )
        return figures_, timeline(samples, 2 * phase_s + spike_s)

    return await on_cloud(App(spec, app.source), body, say=say)


async def experiment(
    app: Path,
    *,
    configs: list[str],
    phase_s: float,
    spike_s: float,
    capacity_s: float,
    critical_share: float = CRITICAL_SHARE,
    say: Say = say,
    **targets: float,
) -> OverloadResult:
    """Each configuration in turn, on a cloud of its own, at the same rates: those of the
    capacity measured on the first (a second measurement would differ by the machine's noise
    more than by the configuration, which a closed loop never overloads)."""
    loaded = load(app)
    measured: list[ConfigFigures] = []
    timelines = {}
    for name in configs:
        say(f"{name}: flix with HERD_LIMIT={name}")
        figures_, points = await _config(
            loaded,
            name,
            phase_s=phase_s,
            spike_s=spike_s,
            capacity_s=capacity_s,
            capacity=measured[0].capacity_rps if measured else None,
            critical_share=critical_share,
            say=say,
        )
        measured.append(figures_)
        timelines[name] = points
    return OverloadResult(
        measured,
        phase_s,
        spike_s,
        critical_share=critical_share,
        timelines=timelines,
        **targets,
    )


def plot(result: OverloadResult, path: Path) -> None:
    """Goodput and critical success over time, one line per configuration."""
    figure, (goodput, critical) = figures.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name, points in result.timelines.items():
        seconds = [p[0] for p in points]
        goodput.plot(seconds, [p[1] for p in points], label=name, linewidth=1)
        critical.plot(seconds, [p[2] for p in points], label=name, linewidth=1)
    for axis in (goodput, critical):
        axis.axvspan(result.phase_s, result.phase_s + result.spike_s, color="grey", alpha=0.15)
    goodput.set_ylabel("successful requests/s")
    goodput.legend(loc="upper right", ncols=2)
    critical.axhline(result.critical_target_pct, color="red", linewidth=0.8, linestyle="--")
    critical.set_ylabel("critical success %")
    critical.set_xlabel("seconds (the spike shaded)")
    figure.suptitle(f"herd experiment overload: {result.spike_x:g}x capacity, half best-effort")
    figures.save(figure, path)


def report(result: OverloadResult) -> None:
    """A row per configuration and phase on stdout."""
    print_table(
        f"overload: base {result.base_x:g}x, spike {result.spike_x:g}x capacity for"
        f" {result.spike_s:g} s",
        [
            Column("config"),
            Column("phase"),
            *numbers("goodput/s", "critical %", "best-effort %", "p99 ms"),
            *numbers("capacity/s", drop=1),
            *numbers("recovery s", drop=2),
        ],
        [
            [
                config.name,
                phase.phase,
                f"{phase.goodput_rps:g}",
                f"{phase.critical_success_pct:g}",
                f"{phase.best_effort_success_pct:g}",
                f"{phase.p99_ms:g}",
                f"{config.capacity_rps:g}",
                "-" if config.recovery_s is None else f"{config.recovery_s:g}",
            ]
            for config in result.configs
            for phase in config.phases
        ],
    )


def command(
    app: Path = APP,
    config: Annotated[
        list[str] | None, options.only("--config", "none, fixed, adaptive, adaptive_priority")
    ] = None,
    phase_seconds: float = options.seconds(
        10.0, "Seconds of the base and after phases.", "--phase-seconds"
    ),
    spike_seconds: float = options.seconds(30.0, "Seconds of the spike.", "--spike-seconds"),
    capacity_seconds: float = options.seconds(
        5.0, "Seconds of measuring the capacity.", "--capacity-seconds"
    ),
    critical_share: float = options.share(
        CRITICAL_SHARE,
        "The share of the load that is user pages (critical); the rest is prefetches.",
        "--critical-share",
    ),
    critical_target: float = target_option(
        CRITICAL_TARGET_PCT,
        "--critical-target",
        "Critical success in the spike",
        "docs/overload.md",
    ),
    goodput_target: float = options.share(
        GOODPUT_TARGET, "Goodput in the spike, as a share of the capacity.", "--goodput-target"
    ),
    recovery_target: float = options.seconds(
        RECOVERY_TARGET_S,
        "Seconds after the spike until success and p99 are the base's again (inf: none).",
        "--recovery-target",
        min=0.0,
    ),
    json_path: Path | None = JSON,
    plot_path: Annotated[Path | None, plot_option("goodput and critical success over time")] = None,
) -> None:
    """Three times flix's capacity, half of it best-effort, under four kinds of limit.

    No limit, the fixed cap, adaptive limits, adaptive limits with priorities: each on its own
    cloud, through base, spike and after. Targets on adaptive_priority's spike: critical success
    >= 99.5 %, goodput >= 0.9 x capacity, recovery <= 2 s; exits 0 only if all were met, 1 if
    not (docs/overload.md).

    Example: herd experiment overload --json overload.json --plot overload.png
    """
    chosen = config or list(CONFIGS)
    unknown = sorted(set(chosen) - set(CONFIGS))
    if unknown:
        raise usage(f"unknown configurations {unknown}", f"choose from {', '.join(CONFIGS)}")
    if not (phase_seconds > 0 and spike_seconds > 0 and capacity_seconds > 0):
        raise usage("--phase-seconds, --spike-seconds and --capacity-seconds must be > 0")
    result = run(
        experiment(
            app,
            configs=chosen,
            phase_s=phase_seconds,
            spike_s=spike_seconds,
            capacity_s=capacity_seconds,
            critical_share=critical_share,
            critical_target_pct=critical_target,
            goodput_target=goodput_target,
            recovery_target_s=recovery_target,
        )
    )
    report(result)
    conclude(result, result.problems(), json_path=json_path, plot=plot, plot_path=plot_path)
