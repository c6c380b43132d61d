"""`herd simulate --scenario kong`: flix in two regions on virtual time, one evacuated and
killed (Chaos Kong) at any scale.

Each region is a `World` of its own (flix's shape, half the instances, zones a, b and c, its
own front door: herd's attempt loop), as a region is a whole cloud. Users arrive as a Poisson
process, each a visitor with a home region by the global front door's own steering
(`herd._cloud.regions.steering`); a request served away from home pays the way between the
regions, `INTER_REGION_S` each way. Three phases of equal length: `steady`; `evacuate` (every
tier of the other region scaled out 2x at once, the model has no start-up time, then the
evacuated region's weight stepped through 75, 50, 25 and 0 % of itself, then every instance of
it dead and the door told it is unhealthy); `out`. A request whose region does not answer is
sent to the next one, as the global front door does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import herd
from herd._cloud.regions.steering import Steering
from herd._model import clock
from herd._model.errors import HerdError
from herd._model.stats import percentile
from herd_tools import figures
from herd_tools.simulate import vtime
from herd_tools.simulate.model import FRONT_DOOR, Mode, State, World
from herd_tools.simulate.scenarios import (
    FRONT_DOOR_TIMEOUT_S,
    USER_PATIENCE_S,
    Settings,
    _flix,
    _spread,
    default_rate,
)

REGIONS = ("us", "eu")
EVACUATED = "us"
#: One way between the regions: 70 ms a round trip, as between AWS's us-east-1 and eu-west-1.
INTER_REGION_S = 0.035
PHASES = ("steady", "evacuate", "out")
KONG_STEPS = (75, 50, 25, 0)


def simulate_kong(settings: Settings) -> dict[str, Any]:
    """Run the evacuation and return the `--json` record: per phase, users, success, p50, p99
    and the requests each region served; the evacuation's time."""
    rate = settings.rate if settings.rate is not None else default_rate(settings)
    third = settings.seconds / 3
    samples: list[tuple[float, bool, float, str]] = []
    marks: dict[str, float] = {}
    events = 0

    async def main(loop: vtime.VirtualLoop) -> None:
        nonlocal events
        worlds = {r: World(Mode.HERD, settings.seed + i) for i, r in enumerate(REGIONS)}
        edges = {r: _flix(w, max(1, settings.instances // len(REGIONS))) for r, w in worlds.items()}
        for world in worlds.values():
            world.policy("edge", herd.CallPolicy(timeout=FRONT_DOOR_TIMEOUT_S))
        fronts = {r: w.caller(FRONT_DOOR, "edge") for r, w in worlds.items()}
        steering = Steering(REGIONS, {})
        started = clock.monotonic()

        async def user(visitor: str) -> None:
            began = clock.monotonic()
            home = steering.home(visitor)
            ok, served = False, ""
            for region in steering.order(visitor)[:2]:
                away = INTER_REGION_S if region != home else 0.0
                await asyncio.sleep(away)
                with contextlib.suppress(TimeoutError, HerdError):
                    async with asyncio.timeout(USER_PATIENCE_S):
                        await fronts[region].call(edges[region].spec, edges[region].args)
                    ok, served = True, region
                await asyncio.sleep(away)
                if ok:
                    break
            samples.append((began - started, ok, clock.monotonic() - began, served))

        async def kong() -> None:
            await asyncio.sleep(third)
            marks["evacuate"] = clock.monotonic() - started
            for other in REGIONS:
                if other != EVACUATED:
                    for tier in worlds[other].tiers.values():
                        _spread(tier, len(tier.nodes))
            step_s = third / (len(KONG_STEPS) + 1)
            base = steering.base[EVACUATED]
            for share in KONG_STEPS:
                await asyncio.sleep(step_s)
                steering.set_weight(EVACUATED, base * share // 100)
            marks["evacuated"] = clock.monotonic() - started
            await asyncio.sleep(step_s)
            for tier in worlds[EVACUATED].tiers.values():
                for node in tier.nodes:
                    node.state = State.DEAD
            steering.healthy[EVACUATED] = False
            marks["out"] = clock.monotonic() - started

        arrivals = worlds[REGIONS[0]].arrivals
        kill = loop.create_task(kong())
        users: set[asyncio.Task[None]] = set()
        end = started + settings.seconds
        while True:
            await asyncio.sleep(arrivals.expovariate(rate))
            if clock.monotonic() >= end:
                break
            task = loop.create_task(user(str(arrivals.randrange(1_000_000))))
            users.add(task)
            task.add_done_callback(users.discard)
        await kill
        await asyncio.gather(*users)
        events = loop.jumps + sum(t.received for w in worlds.values() for t in w.tiers.values())

    began = time.perf_counter()
    vtime.run(main)
    bounds = [0.0, marks["evacuate"], marks["out"], settings.seconds]
    return {
        "scenario": "kong",
        "instances": settings.instances,
        "seconds": settings.seconds,
        "rate": rate,
        "inter_region_ms": INTER_REGION_S * 2000,
        "evacuated_s": round(marks["evacuated"] - marks["evacuate"], 2),
        "wall_s": round(time.perf_counter() - began, 2),
        "events": events,
        "phases": [
            _phase(name, [s for s in samples if bounds[i] <= s[0] < bounds[i + 1]])
            for i, name in enumerate(PHASES)
        ],
    }


def _phase(name: str, samples: list[tuple[float, bool, float, str]]) -> dict[str, Any]:
    ordered = sorted(latency for _, _, latency, _ in samples)
    served: dict[str, int] = {}
    for _, ok, _, region in samples:
        if ok:
            served[region] = served.get(region, 0) + 1
    users = len(samples)
    return {
        "phase": name,
        "users": users,
        "success_pct": round(100.0 * sum(ok for _, ok, _, _ in samples) / users, 3) if users else 0,
        "p50_ms": round(percentile(ordered, 0.5) * 1000, 1) if ordered else 0.0,
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 1) if ordered else 0.0,
        "served_by": dict(sorted(served.items())),
    }


def table(record: dict[str, Any]) -> str:
    """The run's figures as a plain-text table."""
    lines = [
        f"kong: {record['instances']:,} instances in {len(REGIONS)} regions"
        f" ({record['inter_region_ms']:g} ms apart), {record['rate']:g} users/s for"
        f" {record['seconds']:g} s (virtual); {EVACUATED} evacuated in"
        f" {record['evacuated_s']:g} s; {record['events']:,} events in {record['wall_s']:.1f} s",
        f"{'phase':<10}{'users':>8}{'success':>9}{'p50':>9}{'p99':>9}  served by",
    ]
    for p in record["phases"]:
        served = " ".join(f"{r}={n}" for r, n in p["served_by"].items())
        lines.append(
            f"{p['phase']:<10}{p['users']:>8,}{p['success_pct']:>8.2f}%"
            f"{p['p50_ms'] / 1000:>8.3f}s{p['p99_ms'] / 1000:>8.3f}s  {served}"
        )
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """The requests each region served in each phase, and each phase's success."""
    figure, axes = figures.subplots(1, 1, figsize=(7, 4))
    phases = record["phases"]
    bottom = [0] * len(phases)
    for region in REGIONS:
        counts = [p["served_by"].get(region, 0) for p in phases]
        axes.bar([p["phase"] for p in phases], counts, bottom=bottom, label=region)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    for index, p in enumerate(phases):
        axes.text(index, bottom[index], f"{p['success_pct']:g} %", ha="center", va="bottom")
    axes.set_ylabel("requests served")
    axes.legend()
    figure.suptitle(f"herd simulate kong: {record['instances']:,} instances, {EVACUATED} evacuated")
    figures.save(figure, path)
