"""`herd experiment retry-storm`: the talk's retry storm, reproduced with real processes.

A chain edge → middle → deep, two instances of deep (one hangs: it accepts requests and never
answers; the other is healthy), two of middle and one edge, in three configurations:

- `naive`: aiohttp servers and httpx clients with tenacity, 2 s timeout and 2 retries at every hop,
  retrying the same instance; no deadline propagation, no cancellation of abandoned work
  (`herd_tools.experiments.naive_services`; nothing of herd).
- `telescoped`: herd, edge deadline 3 s, middle 1 s per attempt and one retry, to the same instance.
- `herd`: the same, but the retry goes to a different instance (in another zone), inside the retry
  budget (`herd_tools.experiments.chain_services`).

Each configuration gets one user request (its first attempt reaches the hanging instance in all
three), then a fixed arrival rate for a fixed time (an open model: requests are sent on schedule
whether or not earlier ones were answered).

Targets (the talk's figures and herd's answer: `retry_storm_report`): one request, naive gives
up after 5.5 to 7 s with 9 sent by the middle, telescoped after 1.8 to 2.6 s with 2, herd
answers within 1.5 s; under load herd serves >= 99 % with an amplification <= 1.3, naive's is
>= 3. The command exits 0 only if every target was met, 1 if not.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from herd._model.clock import MONOTONIC
from herd._model.stats import percentile
from herd_tools import options
from herd_tools.experiments import harness
from herd_tools.experiments.retry_storm_chains import (
    Chain,
    Processes,
    drain,
    snapshot,
    start_chain,
)
from herd_tools.experiments.retry_storm_report import missed, plot, report, to_json
from herd_tools.output import Failure, say, usage
from herd_tools.schedule import Schedule, open_model

CONFIGURATIONS = ("naive", "telescoped", "herd")
DEFAULT_RATE = 20.0
DEFAULT_DURATION = 8.0

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Settings:
    """How hard and how long to push; the defaults finish in about a minute on 2 cores."""

    rate: float = DEFAULT_RATE
    """User requests per second at the edge, during the load phase."""
    duration: float = DEFAULT_DURATION
    """Seconds of load per configuration."""
    user_timeout: float = 30.0
    """How long the user waits for the edge (far longer than any configuration needs)."""
    drain_timeout: float = 15.0
    """How long to wait for abandoned work in the middle to finish before counting."""
    startup_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError("rate and duration must be positive")


@dataclasses.dataclass(frozen=True)
class Single:
    """One user request, its first attempt sent to the hanging deep instance."""

    edge_latency_s: float
    """From the user's request to the edge's answer (success or error)."""
    answered: bool
    """Whether the user got a successful answer."""
    outcome: str
    middle_sent: int
    """Requests the middle tier sent to deep for this one user request (all, eventually)."""
    deep_received: int
    """Requests that reached a deep instance (both instances)."""
    deep_received_hanging: int
    deep_received_healthy: int
    middle_running_at_answer: int
    """Middle handlers still running when the user got the answer: work nobody will use."""
    middle_sent_after_answer: int
    """Requests the middle sent to deep after the user got the answer."""
    deep_still_held: int
    """Requests the hanging deep instance still holds once the middle is done: never released."""


@dataclasses.dataclass(frozen=True)
class Load:
    """A fixed arrival rate at the edge for a fixed time, while the deep instance hangs."""

    requests: int
    succeeded: int
    success_pct: float
    p50_s: float
    p99_s: float
    """99th percentile of the edge's latency as the user saw it, answers and errors alike."""
    middle_sent: int
    deep_received: int
    deep_received_hanging: int
    """Of `deep_received`, how many reached the hanging instance."""
    amplification: float
    """Requests that reached deep per user request (after abandoned work finished)."""
    peak_middle_inflight: int
    """Most requests held at once in the middle tier (the sum of both instances' peaks)."""
    middle_pool_timeouts: int = 0
    """naive only: middle attempts that never left, for want of a free pooled connection."""
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    """What the failed requests' users saw, by kind (addresses and numbers blanked)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one configuration did."""

    name: str
    single: Single | None = None
    load: Load | None = None


async def run_single(chain: Chain, settings: Settings, progress: Progress) -> Single:
    """One user request; then wait for the work it left behind, and count."""
    before = await snapshot(chain)
    started = time.perf_counter()
    answered, outcome = await chain.user_call(0)
    latency = time.perf_counter() - started
    at_answer = await snapshot(chain)
    progress(
        f"  {chain.name}: edge answered in {latency:.2f} s ({'ok' if answered else 'error'});"
        f" {at_answer.middle_running} middle handler(s) still running"
    )
    if not await drain(chain, settings.drain_timeout):
        progress(f"  {chain.name}: middle still busy after {settings.drain_timeout} s")
    after = await snapshot(chain)
    return Single(
        edge_latency_s=round(latency, 3),
        answered=answered,
        outcome=outcome,
        middle_sent=after.middle_sent - before.middle_sent,
        deep_received=after.deep_received - before.deep_received,
        deep_received_hanging=after.hanging["received"] - before.hanging["received"],
        deep_received_healthy=after.healthy["received"] - before.healthy["received"],
        middle_running_at_answer=at_answer.middle_running - before.middle_running,
        middle_sent_after_answer=after.middle_sent - at_answer.middle_sent,
        deep_still_held=after.hanging["running"] - before.hanging["running"],
    )


def _failure_kind(outcome: str) -> str:
    """An outcome with addresses and numbers blanked, so that failures group by kind."""
    outcome = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+(#\d)?", "ADDR", outcome)
    return re.sub(r"\d+(\.\d+)?", "N", outcome)[:160]


async def run_load(chain: Chain, settings: Settings, progress: Progress) -> Load:
    """`rate` user requests per second for `duration` seconds, sent on schedule (open model);
    each latency runs from the request's intended send time."""
    schedule = Schedule(settings.rate, settings.duration)
    count = schedule.count
    await chain.middle_stats(reset_peak=True)
    before = await snapshot(chain)
    results: list[tuple[float, bool]] = []
    failures: collections.Counter[str] = collections.Counter()
    items = itertools.count(1)

    async def one(item: int, intended: float) -> None:
        answered, outcome = await chain.user_call(item)
        results.append((MONOTONIC.now() - intended, answered))
        if not answered:
            failures[_failure_kind(outcome)] += 1

    async def tell() -> None:
        while True:
            await asyncio.sleep(2.0)
            done = len(results)
            ok = sum(1 for _, a in results if a)
            progress(f"  {chain.name}: {done}/{count} answered, {ok} successfully")

    reporter = asyncio.create_task(tell())
    try:

        def send(intended: float) -> Coroutine[Any, Any, None]:
            return one(next(items), intended)

        await open_model(schedule, MONOTONIC.now(), send)
        if not await drain(chain, settings.drain_timeout):
            progress(f"  {chain.name}: middle still busy after {settings.drain_timeout} s")
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    after = await snapshot(chain)
    latencies = sorted(latency for latency, _ in results)
    succeeded = sum(1 for _, answered in results if answered)
    deep_received = after.deep_received - before.deep_received
    return Load(
        requests=count,
        succeeded=succeeded,
        success_pct=round(100.0 * succeeded / count, 2),
        p50_s=round(percentile(latencies, 0.50), 3),
        p99_s=round(percentile(latencies, 0.99), 3),
        middle_sent=after.middle_sent - before.middle_sent,
        deep_received=deep_received,
        deep_received_hanging=after.hanging["received"] - before.hanging["received"],
        amplification=round(deep_received / count, 3),
        peak_middle_inflight=sum(m["peak"] for m in after.middles),
        middle_pool_timeouts=sum(
            a.get("pool_timeouts", 0) - b.get("pool_timeouts", 0)
            for a, b in zip(after.middles, before.middles, strict=True)
        ),
        failures=dict(failures.most_common()),
    )


async def experiment(settings: Settings, progress: Progress = say) -> list[Outcome]:
    """Start the three chains, run the single request and the load phase on each, stop
    everything, and return what each configuration did."""
    logdir = Path(tempfile.mkdtemp(prefix="herd-retry-storm-"))
    processes = Processes(logdir, settings.startup_timeout)
    chains: list[Chain] = []
    failed = True
    try:
        progress(f"starting {5 * len(CONFIGURATIONS)} processes (logs in {logdir})")
        started = time.monotonic()
        chains = list(
            await asyncio.gather(
                *(start_chain(n, processes, settings.user_timeout) for n in CONFIGURATIONS)
            )
        )
        progress(f"all up in {time.monotonic() - started:.1f} s")
        progress("single request per configuration (first attempt to the hanging deep instance)")
        singles = {chain.name: await run_single(chain, settings, progress) for chain in chains}
        loads: dict[str, Load] = {}
        for chain in chains:
            progress(
                f"load: {chain.name}, {settings.rate:g} requests/s for {settings.duration:g} s"
            )
            result = loads[chain.name] = await run_load(chain, settings, progress)
            progress(
                f"  {chain.name}: {result.success_pct:.1f} % succeeded, p99 {result.p99_s:.2f}"
                f" s, amplification {result.amplification:.2f}"
            )
        failed = False
        return [Outcome(name, singles[name], loads[name]) for name in CONFIGURATIONS]
    finally:
        for chain in chains:
            with contextlib.suppress(Exception):
                await chain.close()
        await processes.stop_all()
        if failed:
            progress(f"logs kept in {logdir}")
        else:
            shutil.rmtree(logdir, ignore_errors=True)


def command(
    json_path: Path | None = harness.JSON,
    plot_path: Annotated[Path | None, harness.plot_option("latency and amplification")] = None,
    rate: float = options.per_second(DEFAULT_RATE, "User requests per second in the load phase."),
    duration: float = options.seconds(DEFAULT_DURATION, "Seconds of load per configuration."),
) -> None:
    """The talk's retry storm: naive, telescoped and herd settings.

    Edge -> middle -> deep with one deep instance hanging. Each configuration gets one request and
    then a load (docs/retry-storm.md). Targets: naive ≈6 s with 9 sent by the middle, telescoped ≈2
    s with 2, herd answered within 1.5 s; under load herd >= 99 % served with amplification <= 1.3,
    naive >= 3. Exits 0 only if every target was met, 1 if not.

    Example: herd experiment retry-storm --json storm.json --plot storm.png
    """
    try:
        import httpx  # noqa: F401
        import tenacity  # noqa: F401

        if plot_path is not None:
            import matplotlib  # noqa: F401
    except ImportError as exc:
        raise Failure(
            f"retry-storm needs httpx, tenacity and matplotlib ({exc.name} is missing)",
            "pip install 'herd[bench]'",
        ) from None
    try:
        settings = Settings(rate=rate, duration=duration)
    except ValueError as exc:
        raise usage(str(exc)) from None
    say("retry storm: edge → middle → deep, one deep instance hanging; naive, telescoped, herd")
    outcomes = harness.run(experiment(settings))
    report(outcomes, settings)
    harness.conclude(
        to_json(outcomes, settings),
        missed(outcomes),
        json_path=json_path,
        plot=lambda _, path: plot(outcomes, settings, path),
        plot_path=plot_path,
    )
