"""`herd experiment gray-failure`: one instance of every flix group stalls (SIGSTOP), under load
through the front door, and we count what the users saw.

A stalled instance is the failure that timeouts and breakers handle worst: it accepts
connections and answers nothing. herd's answer is the hedged attempt (an idempotent call that
has not answered within the dependency's recent p95 goes to another instance too), with the
retry budget capping the extra load, outlier ejection taking the instance out after a few
stalls, and the registry evicting it when its lease runs out.

Target: no request fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import msgspec

from herd._cloud.controller import Controller
from herd._cloud.interface import InstanceView
from herd._model.stats import percentile
from herd_tools import options
from herd_tools.experiments import harness
from herd_tools.load import run_load
from herd_tools.output import Column, numbers, print_table, say, usage


class Window(msgspec.Struct, frozen=True):
    """The requests whose intended send time fell in one phase of the run."""

    phase: str
    sent: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class GrayFailure(msgspec.Struct, frozen=True, kw_only=True):
    """What one run measured; `--json` writes exactly this."""

    rate: float
    duration_s: float
    pause_at_s: float
    pause_s: float
    paused: list[str]
    windows: list[Window]
    failed_by_kind: dict[str, int]

    @property
    def failed(self) -> int:
        """Failed requests over the whole run."""
        return sum(self.failed_by_kind.values())


def _window(phase: str, samples: list[tuple[float, float, str | None]]) -> Window:
    ordered = sorted(latency for _, latency, _ in samples)

    def ms(fraction: float) -> float:
        return round(percentile(ordered, fraction) * 1000, 1)

    failed = sum(1 for _, _, kind in samples if kind is not None)
    return Window(phase, len(samples), failed, ms(0.5), ms(0.99), ms(1.0))


def _victims(instances: list[InstanceView]) -> list[InstanceView]:
    """One UP instance of every group, the first by id."""
    chosen: dict[str, InstanceView] = {}
    for view in sorted(instances, key=lambda v: v.id):
        if view.status == "UP" and view.pid and view.group not in chosen:
            chosen[view.group] = view
    return list(chosen.values())


async def experiment(
    app: Path,
    *,
    rate: float,
    duration: float,
    pause_at: float,
    pause_s: float,
    say: harness.Say = say,
) -> GrayFailure:
    """Run the app, load its front door, stall one instance per group midway (the pause lies
    within the run), report."""

    async def body(controller: Controller) -> GrayFailure:
        door = controller.front_door
        if door is None:
            raise ValueError(f"{app} has no front door to load")
        victims = _victims(await controller.ps())
        samples: list[tuple[float, float, str | None]] = []
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def stall() -> None:
            await asyncio.sleep(pause_at)
            say(f"SIGSTOP {', '.join(v.id for v in victims)} for {pause_s:g} s")
            for view in victims:
                os.kill(view.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(pause_s)
            finally:
                for view in victims:
                    os.kill(view.pid, signal.SIGCONT)
                say("SIGCONT: the stalled instances run again")

        staller = asyncio.create_task(stall())
        try:
            report = await run_load(
                f"{door.url}api/home?visitor={{1..10000}}",
                rate,
                duration,
                record=lambda intended, latency, kind: samples.append(
                    (intended - started, latency, kind)
                ),
            )
        finally:
            await staller
        phases = {
            "before": [s for s in samples if s[0] < pause_at],
            "stalled": [s for s in samples if pause_at <= s[0] < pause_at + pause_s],
            "after": [s for s in samples if s[0] >= pause_at + pause_s],
        }
        return GrayFailure(
            rate=rate,
            duration_s=duration,
            pause_at_s=pause_at,
            pause_s=pause_s,
            paused=[v.id for v in victims],
            windows=[_window("all", samples)]
            + [_window(name, part) for name, part in phases.items()],
            failed_by_kind=report.failed_by_kind,
        )

    return await harness.on_cloud(app, body, say=say)


def missed(result: GrayFailure) -> list[str]:
    """The target missed, in words (none: no request failed)."""
    if result.failed == 0:
        return []
    return [f"{result.failed} requests failed ({result.failed_by_kind}), target 0"]


def report(result: GrayFailure) -> None:
    """The figures on stdout."""
    print_table(
        f"gray failure: stalled {', '.join(result.paused)}",
        [
            Column("phase"),
            *numbers("sent", "failed", "p50 ms", "p99 ms", "max ms"),
        ],
        [
            [w.phase, str(w.sent), str(w.failed), f"{w.p50_ms:g}", f"{w.p99_ms:g}", f"{w.max_ms:g}"]
            for w in result.windows
        ],
    )


def command(
    app: Path = harness.APP,
    rate: float = harness.RATE,
    duration: float = options.seconds(20.0, "Seconds of load."),
    pause_at: float = options.seconds(5.0, "Seconds into the load when the stall begins."),
    pause: float = options.seconds(10.0, "Seconds the stalled instances stay stopped."),
    json_path: Path | None = harness.JSON,
) -> None:
    """Stall one instance of every group; count what users saw.

    The talk's gray failure: an instance that accepts connections and answers nothing; hedged
    attempts, outlier ejection and the registry's lease keep it from costing requests. Target:
    no request fails; exits 0 only if it was met, 1 if not (benchmarks/RESULTS.md, "Gray failure").

    Example: herd experiment gray-failure --duration 20 --json gray.json
    """
    if not (pause_at >= 0 and pause_at + pause <= duration):
        raise usage("the pause must lie within the run", "--pause-at + --pause <= --duration")
    result = harness.run(
        experiment(app, rate=rate, duration=duration, pause_at=pause_at, pause_s=pause)
    )
    report(result)
    harness.conclude(result, missed(result), json_path=json_path)
