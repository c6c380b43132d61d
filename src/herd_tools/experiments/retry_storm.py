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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

import herd
from herd._cloud.launch.process import Process
from herd._model.clock import MONOTONIC
from herd._model.stats import percentile
from herd_tools.experiments.chain_interface import StormDeep, StormEdge, StormMiddle
from herd_tools.schedule import Schedule, drive

CONFIGURATIONS = ("naive", "telescoped", "herd")
DEFAULT_RATE = 20.0
DEFAULT_DURATION = 8.0

TALK = {
    "naive": "≈6 s, 9 sent",
    "telescoped": "≈2 s, 2 sent",
    "herd": "≈1 s, answered",
}
"""The figures each configuration should reproduce (the talk's; herd's from the issue)."""

_CHAIN = "herd_tools.experiments.chain_services"
_NAIVE = "herd_tools.experiments.naive_services"

Progress = Callable[[str], None]
Stats = dict[str, int]


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

    def as_json(self) -> dict[str, Any]:
        """The flat per-configuration record of `--json`."""
        data: dict[str, Any] = {}
        if self.single is not None:
            data.update(dataclasses.asdict(self.single))
        if self.load is not None:
            load = dataclasses.asdict(self.load)
            load["load_requests"] = load.pop("requests")
            load["load_succeeded"] = load.pop("succeeded")
            load["load_middle_sent"] = load.pop("middle_sent")
            load["load_deep_received"] = load.pop("deep_received")
            load["load_deep_received_hanging"] = load.pop("deep_received_hanging")
            load["load_failures"] = load.pop("failures")
            data.update(load)
        return data


# ---------------------------------------------------------------------------------------------
# Processes


def _child_env() -> dict[str, str]:
    # The chain is wired with fixed addresses: no registry, zone or port from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERD_")}
    src = str(Path(herd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Processes:
    """Starts processes, learns their addresses, and stops them all at the end."""

    def __init__(self, logdir: Path, startup_timeout: float) -> None:
        self.logdir = logdir
        self.startup_timeout = startup_timeout
        self.started: list[Process] = []

    async def spawn(self, name: str, module: str, *args: str) -> str:
        """Start `python -m module args` and wait for its ready line; its address."""
        argv = [sys.executable, "-m", module, *args]
        log = self.logdir / f"{name}.log"
        process = Process(name, argv, {}, Path.cwd(), log, base_env=_child_env())
        self.started.append(process)
        await process.start()
        if not await process.wait_ready(self.startup_timeout):
            if process.alive:
                raise RuntimeError(
                    f"{name} not ready after {self.startup_timeout} s:\n{process.tail(20)}"
                )
            raise RuntimeError(f"{name} exited ({process.returncode}):\n{process.tail(20)}")
        assert process.address is not None
        return process.address

    async def stop_all(self) -> None:
        """SIGTERM every process, SIGKILL those still running 5 s later."""
        await asyncio.gather(*(process.stop(grace_s=5.0) for process in self.started))


# ---------------------------------------------------------------------------------------------
# The chains, as the orchestrator sees them


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    middles: list[Stats]
    hanging: Stats
    healthy: Stats

    @property
    def middle_sent(self) -> int:
        return sum(m["sent"] for m in self.middles)

    @property
    def middle_running(self) -> int:
        return sum(m["running"] for m in self.middles)

    @property
    def deep_received(self) -> int:
        return self.hanging["received"] + self.healthy["received"]


class _Chain(Protocol):
    name: str

    async def user_call(self, item: int) -> tuple[bool, str]:
        """One user request to the edge: (answered, outcome)."""
        ...

    async def middle_stats(self, reset_peak: bool = False) -> list[Stats]: ...

    async def deep_stats(self) -> tuple[Stats, Stats]:
        """The hanging and the healthy deep instance's counters."""
        ...

    async def close(self) -> None: ...


async def _snapshot(chain: _Chain, reset_peak: bool = False) -> _Snapshot:
    middles, (hanging, healthy) = await asyncio.gather(
        chain.middle_stats(reset_peak), chain.deep_stats()
    )
    return _Snapshot(middles, hanging, healthy)


_NEVER_OPEN = herd.BreakerPolicy(volume_threshold=1_000_000_000)


class _HerdChain:
    """The `telescoped` or `herd` chain: herd services, read through herd drivers."""

    def __init__(
        self,
        name: str,
        edge: str,
        middles: Sequence[str],
        hanging: str,
        healthy: str,
        user_timeout: float,
    ) -> None:
        self.name = name
        # The user and the operator call with one attempt and no breaker, so that what they
        # measure is the chain, not their own client.
        user = herd.CallPolicy(
            timeout=user_timeout, attempts=1, max_concurrent=1_000_000, breaker=_NEVER_OPEN
        )
        ops = herd.CallPolicy(timeout=5.0, attempts=1, breaker=_NEVER_OPEN)
        self.user = herd.driver(StormEdge, address=edge, policy=user)
        self.middles = [herd.driver(StormMiddle, address=a, policy=ops) for a in middles]
        self.hanging = herd.driver(StormDeep, address=hanging, policy=ops)
        self.healthy = herd.driver(StormDeep, address=healthy, policy=ops)

    async def user_call(self, item: int) -> tuple[bool, str]:
        try:
            await self.user.handle(item)
        except herd.HerdError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, "ok"

    async def middle_stats(self, reset_peak: bool = False) -> list[Stats]:
        stats = await asyncio.gather(*(m.stats(reset_peak) for m in self.middles))
        return [msgspec.structs.asdict(s) for s in stats]

    async def deep_stats(self) -> tuple[Stats, Stats]:
        hanging, healthy = await asyncio.gather(self.hanging.stats(), self.healthy.stats())
        return msgspec.structs.asdict(hanging), msgspec.structs.asdict(healthy)

    async def close(self) -> None:
        for driver in (self.user, *self.middles, self.hanging, self.healthy):
            await driver.aclose()


class _NaiveChain:
    """The `naive` chain: plain HTTP and JSON, read with httpx."""

    def __init__(
        self, edge: str, middles: Sequence[str], hanging: str, healthy: str, user_timeout: float
    ) -> None:
        import httpx

        self.name = "naive"
        self._httpx = httpx
        self.edge = f"http://{edge}"
        self.middles = [f"http://{a}" for a in middles]
        self.hanging = f"http://{hanging}"
        self.healthy = f"http://{healthy}"
        unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self.user = httpx.AsyncClient(timeout=user_timeout, limits=unlimited)
        self.ops = httpx.AsyncClient(timeout=5.0)

    async def user_call(self, item: int) -> tuple[bool, str]:
        try:
            response = await self.user.post(f"{self.edge}/handle", json={"item": item})
        except self._httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return True, "ok"
        return False, f"HTTP {response.status_code}: {response.text[:200]}"

    async def _stats(self, base: str, reset_peak: bool = False) -> Stats:
        url = f"{base}/stats" + ("?reset_peak=1" if reset_peak else "")
        response = await self.ops.get(url)
        response.raise_for_status()
        data: Stats = response.json()
        return data

    async def middle_stats(self, reset_peak: bool = False) -> list[Stats]:
        return list(await asyncio.gather(*(self._stats(m, reset_peak) for m in self.middles)))

    async def deep_stats(self) -> tuple[Stats, Stats]:
        hanging, healthy = await asyncio.gather(
            self._stats(self.hanging), self._stats(self.healthy)
        )
        return hanging, healthy

    async def close(self) -> None:
        await self.user.aclose()
        await self.ops.aclose()


async def _start_chain(name: str, processes: _Processes, user_timeout: float) -> _Chain:
    module = _NAIVE if name == "naive" else _CHAIN
    hanging, healthy = await asyncio.gather(
        processes.spawn(f"{name}-deep-hanging", module, "deep", "--hang"),
        processes.spawn(f"{name}-deep-healthy", module, "deep"),
    )
    if name == "naive":
        # The middle calls one deep URL: the hanging instance. It has no notion of another.
        middle_args = ["--deep", f"http://{hanging}"]
    else:
        middle_args = ["--mode", name, "--hanging", hanging, "--healthy", healthy]
    middles = await asyncio.gather(
        *(processes.spawn(f"{name}-middle-{i}", module, "middle", *middle_args) for i in (1, 2))
    )
    scheme = "http://" if name == "naive" else ""
    edge_args = [a for m in middles for a in ("--middle", f"{scheme}{m}")]
    edge = await processes.spawn(f"{name}-edge", module, "edge", *edge_args)
    if name == "naive":
        return _NaiveChain(edge, middles, hanging, healthy, user_timeout)
    return _HerdChain(name, edge, middles, hanging, healthy, user_timeout)


# ---------------------------------------------------------------------------------------------
# Measurements


async def _drain(chain: _Chain, timeout: float) -> bool:
    """Wait until no middle handler is running (abandoned work included); True if it happened."""
    end = time.monotonic() + timeout
    while True:
        if sum(m["running"] for m in await chain.middle_stats()) == 0:
            return True
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.1)


async def run_single(chain: _Chain, settings: Settings, progress: Progress) -> Single:
    """One user request; then wait for the work it left behind, and count."""
    before = await _snapshot(chain)
    started = time.perf_counter()
    answered, outcome = await chain.user_call(0)
    latency = time.perf_counter() - started
    at_answer = await _snapshot(chain)
    progress(
        f"  {chain.name}: edge answered in {latency:.2f} s ({'ok' if answered else 'error'});"
        f" {at_answer.middle_running} middle handler(s) still running"
    )
    if not await _drain(chain, settings.drain_timeout):
        progress(f"  {chain.name}: middle still busy after {settings.drain_timeout} s")
    after = await _snapshot(chain)
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


async def run_load(chain: _Chain, settings: Settings, progress: Progress) -> Load:
    """`rate` user requests per second for `duration` seconds, sent on schedule (open model);
    each latency runs from the request's intended send time."""
    schedule = Schedule(settings.rate, settings.duration)
    count = schedule.count
    await chain.middle_stats(reset_peak=True)
    before = await _snapshot(chain)
    results: list[tuple[float, bool]] = []
    failures: collections.Counter[str] = collections.Counter()
    items = itertools.count(1)

    async def one(item: int, intended: float) -> None:
        answered, outcome = await chain.user_call(item)
        results.append((MONOTONIC.now() - intended, answered))
        if not answered:
            failures[_failure_kind(outcome)] += 1

    async def report() -> None:
        while True:
            await asyncio.sleep(2.0)
            done = len(results)
            ok = sum(1 for _, a in results if a)
            progress(f"  {chain.name}: {done}/{count} answered, {ok} successfully")

    reporter = asyncio.create_task(report())
    try:
        async with asyncio.TaskGroup() as calls:

            def fire(intended: float) -> None:
                calls.create_task(one(next(items), intended))

            await drive(schedule, MONOTONIC.now(), fire)
        if not await _drain(chain, settings.drain_timeout):
            progress(f"  {chain.name}: middle still busy after {settings.drain_timeout} s")
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    after = await _snapshot(chain)
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


async def experiment(
    settings: Settings | None = None,
    *,
    single: bool = True,
    load: bool = True,
    configurations: Sequence[str] = CONFIGURATIONS,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Start the three chains, run the single request and the load phase, stop everything."""
    settings = settings or Settings()
    say: Progress = progress or (lambda _: None)
    unknown = set(configurations) - set(CONFIGURATIONS)
    if unknown:
        raise ValueError(f"unknown configurations {sorted(unknown)}")
    logdir = Path(tempfile.mkdtemp(prefix="herd-retry-storm-"))
    processes = _Processes(logdir, settings.startup_timeout)
    chains: list[_Chain] = []
    failed = True
    try:
        say(f"starting {5 * len(configurations)} processes (logs in {logdir})")
        started = time.monotonic()
        chains = list(
            await asyncio.gather(
                *(_start_chain(n, processes, settings.user_timeout) for n in configurations)
            )
        )
        say(f"all up in {time.monotonic() - started:.1f} s")
        singles: dict[str, Single] = {}
        loads: dict[str, Load] = {}
        if single:
            say("single request per configuration (first attempt to the hanging deep instance)")
            for chain in chains:
                singles[chain.name] = await run_single(chain, settings, say)
        if load:
            for chain in chains:
                say(f"load: {chain.name}, {settings.rate:g} requests/s for {settings.duration:g} s")
                result = loads[chain.name] = await run_load(chain, settings, say)
                say(
                    f"  {chain.name}: {result.success_pct:.1f} % succeeded, p99 {result.p99_s:.2f}"
                    f" s, amplification {result.amplification:.2f}"
                )
        failed = False
        return [Outcome(name, singles.get(name), loads.get(name)) for name in configurations]
    finally:
        for chain in chains:
            with contextlib.suppress(Exception):
                await chain.close()
        await processes.stop_all()
        if failed:
            say(f"logs kept in {logdir}")
        else:
            shutil.rmtree(logdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Output


def to_json(outcomes: Sequence[Outcome], settings: Settings) -> dict[str, Any]:
    """`--json`: one record per configuration, and the settings under `settings`."""
    data: dict[str, Any] = {o.name: o.as_json() for o in outcomes}
    data["settings"] = {
        "rate": settings.rate,
        "duration": settings.duration,
        "talk": TALK,
    }
    return data


def tables(outcomes: Sequence[Outcome], settings: Settings) -> list[Any]:
    """The rich tables printed on the terminal."""
    from rich.table import Table

    result: list[Any] = []
    if any(o.single for o in outcomes):
        one = Table(
            title="One user request; its first attempt reaches the hanging deep instance",
            caption="talk: naive ≈6 s and 9 sent by the middle; telescoped ≈2 s."
            " herd ≈1 s, answered",
            box=None,
            pad_edge=False,
            header_style="bold",
        )
        for column in (
            "config",
            "edge\nlatency",
            "answered",
            "middle\nsent",
            "deep recv\nhang+ok",
            "busy at\nanswer",
            "sent\nafter",
            "deep\nheld",
        ):
            one.add_column(column, justify="left" if column == "config" else "right")
        for o in outcomes:
            s = o.single
            if s is None:
                continue
            one.add_row(
                o.name,
                f"{s.edge_latency_s:.2f} s",
                "yes" if s.answered else "[red]no[/]",
                str(s.middle_sent),
                f"{s.deep_received_hanging}+{s.deep_received_healthy}",
                str(s.middle_running_at_answer),
                str(s.middle_sent_after_answer),
                str(s.deep_still_held),
            )
        result.append(one)
    if any(o.load for o in outcomes):
        many = Table(
            title=f"Under load: {settings.rate:g} user requests/s for {settings.duration:g} s,"
            " deep instance hanging",
            box=None,
            pad_edge=False,
            header_style="bold",
        )
        for column in (
            "config",
            "users",
            "success",
            "p50\nedge",
            "p99\nedge",
            "middle\nsent",
            "deep\nreceived",
            "amplifi-\ncation",
            "peak\nmiddle",
        ):
            many.add_column(column, justify="left" if column == "config" else "right")
        for o in outcomes:
            ld = o.load
            if ld is None:
                continue
            many.add_row(
                o.name,
                str(ld.requests),
                f"{ld.success_pct:.1f} %",
                f"{ld.p50_s:.2f} s",
                f"{ld.p99_s:.2f} s",
                str(ld.middle_sent),
                str(ld.deep_received),
                f"{ld.amplification:.2f}x",
                str(ld.peak_middle_inflight),
            )
        result.append(many)
        for o in outcomes:
            if o.load is not None and o.load.failures:
                kinds = "; ".join(f"{n} x {kind}" for kind, n in list(o.load.failures.items())[:3])
                result.append(f"[dim]{o.name} failures: {kinds}[/]")
    return result


def _tick(outcome: Outcome) -> str:
    lines = [outcome.name]
    if outcome.single is not None:
        lines.append("answered" if outcome.single.answered else "not answered")
    if outcome.load is not None:
        lines.append(f"{outcome.load.success_pct:.1f} % ok under load")
    return "\n".join(lines)


def plot(outcomes: Sequence[Outcome], settings: Settings, path: Path) -> None:
    """A PNG: edge latency and work amplification per configuration, one request and under load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [o.name for o in outcomes]
    xs = list(range(len(names)))
    width = 0.38
    colours = ("#4c72b0", "#dd8452")
    fig, (lat, amp) = plt.subplots(1, 2, figsize=(11, 4.4))
    load_label = f"under load ({settings.rate:g}/s, {settings.duration:g} s)"

    single_lat = [o.single.edge_latency_s if o.single else 0.0 for o in outcomes]
    load_p99 = [o.load.p99_s if o.load else 0.0 for o in outcomes]
    bars = lat.bar([x - width / 2 for x in xs], single_lat, width, color=colours[0])
    bars.set_label("one request")
    lat.bar_label(bars, fmt="%.2f s", fontsize=8)
    bars = lat.bar([x + width / 2 for x in xs], load_p99, width, color=colours[1])
    bars.set_label(f"p99 {load_label}")
    lat.bar_label(bars, fmt="%.2f s", fontsize=8)
    talk = {"naive": 6.0, "telescoped": 2.0}
    for x, name in zip(xs, names, strict=True):
        if name in talk:
            lat.hlines(talk[name], x - 0.45, x + 0.45, colors="black", linestyles="dashed")
    lat.plot([], [], "k--", label="the talk's figure")
    lat.axhline(3.0, color="grey", linewidth=0.8, linestyle=":", label="edge deadline (herd)")
    lat.set_xticks(xs, [_tick(o) for o in outcomes], fontsize=8)
    lat.set_ylabel("edge latency as the user saw it (s)")
    lat.set_title("Edge latency")
    lat.legend(fontsize=8, loc="upper right")

    single_amp = [float(o.single.deep_received) if o.single else 0.0 for o in outcomes]
    load_amp = [o.load.amplification if o.load else 0.0 for o in outcomes]
    bars = amp.bar([x - width / 2 for x in xs], single_amp, width, color=colours[0])
    bars.set_label("one request")
    amp.bar_label(bars, fmt="%.1f", fontsize=8)
    bars = amp.bar([x + width / 2 for x in xs], load_amp, width, color=colours[1])
    bars.set_label(load_label)
    amp.bar_label(bars, fmt="%.2f", fontsize=8)
    amp.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    amp.set_xticks(xs, [_tick(o) for o in outcomes], fontsize=8)
    amp.set_ylabel("requests reaching deep per user request")
    amp.set_title("Work amplification")
    amp.legend(fontsize=8, loc="upper right")

    fig.suptitle("Retry storm: edge → middle → deep, one deep instance hanging")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(
    *,
    rate: float = DEFAULT_RATE,
    duration: float = DEFAULT_DURATION,
    json_path: Path | None = None,
    plot_path: Path | None = None,
) -> int:
    """The `herd experiment retry-storm` command; returns the exit status."""
    from rich.console import Console

    console = Console()
    try:
        import httpx  # noqa: F401
        import tenacity  # noqa: F401

        if plot_path is not None:
            import matplotlib  # noqa: F401
    except ImportError as exc:
        console.print(
            f"[red]retry-storm needs httpx, tenacity and matplotlib[/] ({exc.name} is missing):"
            " pip install 'herd[bench]'"
        )
        return 2
    settings = Settings(rate=rate, duration=duration)
    console.print(
        "[bold]retry storm[/]: edge → middle → deep, one deep instance hanging;"
        " configurations naive, telescoped, herd"
    )

    def say(line: str) -> None:
        console.print(line, highlight=False)

    outcomes = asyncio.run(experiment(settings, progress=say))
    console.print()
    for table in tables(outcomes, settings):
        console.print(table)
        if not isinstance(table, str):
            console.print()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(to_json(outcomes, settings), indent=2) + "\n")
        console.print(f"wrote {json_path}")
    if plot_path is not None:
        plot(outcomes, settings, plot_path)
        console.print(f"wrote {plot_path}")
    return 0
