"""`herd experiment kong`: flix in two regions under open-model load, with writes; one region
evacuated (Chaos Kong), killed, brought back and its traffic returned.

Home pages at `rate` per second over 10,000 visitors and plays at `write_rate` per second (the
demo accounts, each write with its own idempotency key, sent again with it until acknowledged
or `WRITE_GIVE_UP_S` after it was due) go through the global front door the whole time. Five
phases, by when each request was due:

- `steady`: both regions serve their home visitors;
- `evacuate`: `herd chaos kong REGION`: the other region's groups scaled out and UP, the
  region's weight stepped down to 0, then its cloud SIGKILLed whole;
- `out`: the other region serves everyone;
- `return`: `herd chaos kong REGION --back`: the region's cloud started again, its weight
  stepped back up, the other region scaled back;
- `after`: both regions again.

Per phase: requests, failures, success %, p99, the requests each region served, writes
acknowledged and writes lost (acknowledged, yet in no region's store once the run ends).
Sessions live in each region's memcached, as flix's edge keeps them: a visitor moved to another
region signs in there again (counted as `signed_in_again`; Netflix replicates EVCache across
regions, herd does not yet). On an app with `[[stores]]` (app-regions-nats.toml) each region's
logs replicate to the others (`herd._store.replication`, a mirror of each in every other
region): for every play acknowledged during `steady`, the time until the other region's mirror
has it is measured (`replication_lag_ms`, median and max); on SQLite, regions share nothing and
it stays None.

Targets: success >= 99.9 % in every phase and no acknowledged write lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import msgspec
import nats
import nats.errors
import nats.js.errors
import typer
from nats.js import JetStreamContext

import herd
from herd._cloud.app import load, region_app
from herd._cloud.regions.door import REGION_HEADER
from herd._cloud.regions.plane import Regions
from herd._cloud.up import up_regions
from herd._model.stats import percentile
from herd._process.config import parse_store_url
from herd._store import replication
from herd_tools import figures, options
from herd_tools.experiments import harness
from herd_tools.experiments.durability import Stored, passwords
from herd_tools.load import UrlPattern, failure_kind
from herd_tools.output import Column, Failure, numbers, print_table, say, usage

PHASES = ("steady", "evacuate", "out", "return", "after")
GOAL_PCT = 99.9
REQUEST_TIMEOUT_S = 5.0
WRITE_GIVE_UP_S = 10.0
#: flix's demo accounts (`examples.flix.store.ACCOUNTS`): the visitors who write.
ACCOUNTS = 8
SESSION_COOKIE = "flix_session"
#: The header the global front door steers a visitor's writes by (app-regions.toml).
VISITOR_HEADER = "x-flix-visitor"
#: The stream of flix's plays on JetStream (history's log `plays`, `herd._store.jetstream`).
PLAYS = "LOG_history_plays"


class Phase(msgspec.Struct, frozen=True):
    """What users saw during one phase."""

    phase: str
    seconds: float
    total: int
    failed: int
    success_pct: float
    p99_ms: float
    served_by: dict[str, int]
    failed_by: dict[str, int]
    """Failures by kind (`http_503`, `timeout`, ...)."""
    writes: int
    acknowledged: int
    lost: int


class KongResult(msgspec.Struct, frozen=True):
    """What one run measured; `--json` writes exactly this."""

    region: str
    rate: float
    write_rate: float
    step_s: float
    phases: list[Phase]
    evacuated_s: float
    """From `herd chaos kong` until no visitor was steered to the region (its weight 0)."""
    evacuation_took_s: float
    """From `herd chaos kong` until the region was killed."""
    return_took_s: float
    """From `herd chaos kong --back` until all of its traffic was back."""
    signed_in_again: int
    timeline: list[dict[str, int]]
    """Per second of the run: the requests each region served."""
    replication_lag_ms: float | None = None
    """The median time from a play's acknowledgement in its region until the other region's
    store had it (None: the regions' stores do not replicate)."""
    replication_lag_max_ms: float | None = None
    not_replicated: int = 0
    """Plays acknowledged during `steady` that the other region had not within
    `WRITE_GIVE_UP_S`."""
    goal_pct: float = GOAL_PCT

    def problems(self) -> list[str]:
        """The targets missed, in words (none: every one met)."""
        missed = []
        for phase in self.phases:
            if phase.success_pct < self.goal_pct:
                missed.append(
                    f"{phase.phase}: {phase.success_pct:g} % succeeded, target {self.goal_pct:g} %"
                )
            if phase.lost:
                missed.append(f"{phase.phase}: {phase.lost} acknowledged writes lost, target 0")
        if self.not_replicated:
            missed.append(
                f"{self.not_replicated} plays not in the other region within"
                f" {WRITE_GIVE_UP_S:g} s, target 0"
            )
        return missed


class _Sample(msgspec.Struct, array_like=True):
    offset: float
    latency: float
    kind: str | None
    region: str


class _Write(msgspec.Struct):
    key: str
    visitor: int
    video: int
    offset: float
    acknowledged: bool = False
    region: str = ""
    """Where it was acknowledged."""


async def _get(
    http: aiohttp.ClientSession, url: str, intended: float, start: float, out: list[_Sample]
) -> None:
    kind, region = None, ""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S), http.get(url) as response:
            await response.read()
            region = response.headers.get(REGION_HEADER, "")
            if response.status >= 400:
                kind = f"http_{response.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        kind = failure_kind(exc)
    out.append(_Sample(intended - start, time.monotonic() - intended, kind, region))


class _Writer:
    """Plays through the global front door, each visitor with a session per region it met."""

    def __init__(self, http: aiohttp.ClientSession, door: str, secrets_: dict[int, str]):
        self.http = http
        self.door = door
        self.passwords = secrets_
        self.sessions: dict[tuple[int, str], str] = {}
        self.last_region: dict[int, str] = {}
        self.signed_in_again = 0

    async def sign_in(self, visitor: int) -> None:
        """Sign in wherever the door sends the visitor now; keep that region's session."""
        body = {"visitor": visitor, "password": self.passwords[visitor]}
        headers = {VISITOR_HEADER: str(visitor)}
        url = f"{self.door}api/signin"
        async with self.http.post(url, json=body, headers=headers) as answer:
            await answer.read()
            region = answer.headers.get(REGION_HEADER, "")
            cookie = answer.cookies.get(SESSION_COOKIE)
            if answer.status == 200 and region and cookie is not None:
                self.sessions[visitor, region] = cookie.value
                if visitor in self.last_region:
                    self.signed_in_again += 1
                self.last_region[visitor] = region

    async def send(self, write: _Write, give_up_at: float) -> None:
        while time.monotonic() < give_up_at:
            visitor = write.visitor
            region = self.last_region.get(visitor, "")
            session = self.sessions.get((visitor, region), "")
            headers = {
                VISITOR_HEADER: str(visitor),
                "Idempotency-Key": write.key,
                "Cookie": f"{SESSION_COOKIE}={session}",
            }
            try:
                async with (
                    asyncio.timeout(REQUEST_TIMEOUT_S),
                    self.http.post(
                        f"{self.door}api/play", json={"video": write.video}, headers=headers
                    ) as answer,
                ):
                    await answer.read()
                    status, answered = answer.status, answer.headers.get(REGION_HEADER, "")
            except (TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.sleep(0.2)
                continue
            if status == 200:
                write.acknowledged = True
                write.region = answered
                return
            if status == 401:
                # Moved to a region that has no session of this visitor: sign in there.
                if (visitor, answered) in self.sessions and answered != region:
                    self.last_region[visitor] = answered
                else:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                        await self.sign_in(visitor)
                continue
            await asyncio.sleep(0.2)


async def _until(
    stop: asyncio.Event, rate: float, send: Callable[[float], Any], start: float
) -> None:
    """Open-model arrivals at `rate` per second from `start` until `stop`; each one's task
    runs to its end before this returns, and one that failed fails the run."""
    tasks: list[asyncio.Task[None]] = []
    for index in itertools.count():
        due = start + index / rate
        if stop.is_set():
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(send(due)))
    await asyncio.gather(*tasks)


def _engines(plane: Regions) -> dict[str, str]:
    """Where each region keeps flix's writes: its JetStream cluster, else its SQLite files."""
    engines = {}
    for region, cloud in plane.clouds.items():
        store = str(cloud.announced.get("store") or "")
        if not store:
            regional = region_app(plane.app, region)
            store = f"sqlite://{regional.expand(regional.spec.env['FLIX_WRITES'])}"
        engines[region] = store
    return engines


async def _replicated(
    write: _Write,
    engines: dict[str, str],
    lags: list[float],
    missed: list[_Write],
    give_up_s: float = WRITE_GIVE_UP_S,
) -> None:
    """How long until every other region's mirror of flix's plays has `write` (its own
    region's log has it once acknowledged), into `lags`, or into `missed` after
    `give_up_s`."""
    acknowledged = time.monotonic()
    subject = f"herd.history.plays.{write.visitor}.{write.key}"
    for region, where in engines.items():
        if region == write.region:
            continue
        servers = parse_store_url(where).servers
        client = await nats.connect([f"nats://{s}" for s in servers], connect_timeout=2)
        try:
            js = client.jetstream(timeout=2.0)
            while not await _copied(js, write.region, subject):
                if time.monotonic() > acknowledged + give_up_s:
                    missed.append(write)
                    return
                await asyncio.sleep(0.01)
        finally:
            # nats-py on uvloop raises here when the region died meanwhile (Chaos Kong).
            with contextlib.suppress(RuntimeError):
                await client.close()
    lags.append(time.monotonic() - acknowledged)


async def _copied(js: JetStreamContext, origin: str, subject: str) -> bool:
    """Whether the mirror of `origin`'s plays has `subject`; not yet while the mirror is being
    made or elects its leader (JetStream answers nothing, or 503, for a few seconds)."""
    try:
        return await replication.copied(js, origin, PLAYS, subject)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.APIError):
        return False


async def _stored(engines: dict[str, str]) -> set[str]:
    """Every play's idempotency key stored in any region."""
    keys: set[str] = set()
    for where in engines.values():
        async with herd.store("history", where=where, timeout_s=30.0) as store:
            entries = store.log("plays", Stored)
            for visitor in range(1, ACCOUNTS + 1):
                keys.update(entry.id for entry in await entries.last(visitor, 1_000_000))
    return keys


def _phases(
    marks: list[float], samples: list[_Sample], writes: list[_Write], stored: set[str]
) -> list[Phase]:
    phases = []
    for index, name in enumerate(PHASES):
        low, high = marks[index], marks[index + 1]
        inside = [s for s in samples if low <= s.offset < high]
        wrote = [w for w in writes if low <= w.offset < high]
        acked = [w for w in wrote if w.acknowledged]
        failed = sum(1 for s in inside if s.kind is not None)
        total = len(inside)
        served: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for sample in inside:
            if sample.region:
                served[sample.region] = served.get(sample.region, 0) + 1
            if sample.kind is not None:
                kind = f"{sample.kind}@{sample.region}" if sample.region else sample.kind
                kinds[kind] = kinds.get(kind, 0) + 1
        ordered = sorted(s.latency for s in inside)
        phases.append(
            Phase(
                phase=name,
                seconds=round(high - low, 2),
                total=total,
                failed=failed,
                success_pct=round(100.0 * (total - failed) / total, 3) if total else 0.0,
                p99_ms=round(percentile(ordered, 0.99) * 1000, 1) if ordered else 0.0,
                served_by=dict(sorted(served.items())),
                failed_by=dict(sorted(kinds.items())),
                writes=len(wrote),
                acknowledged=len(acked),
                lost=sum(1 for w in acked if w.key not in stored),
            )
        )
    return phases


def _timeline(samples: list[_Sample]) -> list[dict[str, int]]:
    seconds: list[dict[str, int]] = []
    for sample in samples:
        second = int(sample.offset)
        while len(seconds) <= second:
            seconds.append({})
        if sample.region and sample.kind is None:
            seconds[second][sample.region] = seconds[second].get(sample.region, 0) + 1
    return seconds


async def experiment(
    path: Path,
    *,
    region: str,
    rate: float,
    write_rate: float,
    phase_s: float,
    step_s: float,
    goal_pct: float = GOAL_PCT,
    say: harness.Say = say,
) -> KongResult:
    """Run the app's regions, load them, evacuate `region`, kill it, bring it back."""
    app = load(path)
    if region not in app.spec.regions or len(app.spec.regions) < 2:
        raise Failure(f"{path}: no region {region!r} beside another", "see docs/regions.md")
    outcome: list[KongResult] = []

    async def body(plane: Regions) -> None:
        try:
            outcome.append(
                await _run(plane, region, rate, write_rate, phase_s, step_s, goal_pct, say)
            )
        finally:
            plane.stopped.set()

    await up_regions(app, say=say, on_ready=body)
    if not outcome:
        raise Failure("the app stopped before the experiment finished", "was it interrupted?")
    return outcome[0]


async def _run(
    plane: Regions,
    region: str,
    rate: float,
    write_rate: float,
    phase_s: float,
    step_s: float,
    goal_pct: float,
    say: harness.Say,
) -> KongResult:
    door = plane.door.url
    pattern = UrlPattern(f"{door}api/home?visitor={{1..10000}}")
    samples: list[_Sample] = []
    writes: list[_Write] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        writer = _Writer(http, door, await passwords(plane.app.root))
        for visitor in range(1, ACCOUNTS + 1):
            await writer.sign_in(visitor)
        stop = asyncio.Event()
        count = itertools.count(1)
        keys = itertools.count()

        def page(due: float) -> Any:
            return _get(http, pattern.at(next(count)), due, start, samples)

        engines = _engines(plane)
        replicated = all(where.startswith("nats") for where in engines.values())
        lags: list[float] = []
        missed: list[_Write] = []
        steady = True
        if replicated:
            # A play of each visitor first, not measured: each region's log is made by its
            # first write and the plane mirrors it in the other within seconds (a leader
            # election each), so the lag measured is the steady state's.
            first = [
                _Write(secrets.token_urlsafe(16), visitor, visitor, 0.0)
                for visitor in writer.passwords
            ]
            await asyncio.gather(*(writer.send(w, time.monotonic() + 30.0) for w in first))
            setup: list[float] = []
            await asyncio.gather(
                *(_replicated(w, engines, setup, missed, 60.0) for w in first if w.acknowledged)
            )
            say(
                f"regions' logs mirrored: the first plays in the other region within"
                f" {max(setup, default=0.0):.1f} s"
            )
            missed.clear()
        start = time.monotonic()

        async def play(due: float) -> None:
            index = next(keys)
            write = _Write(secrets.token_urlsafe(16), 1 + index % ACCOUNTS, 1 + index, due - start)
            writes.append(write)
            await writer.send(write, due + WRITE_GIVE_UP_S)
            if replicated and steady and write.acknowledged:
                await _replicated(write, engines, lags, missed)

        loads = [
            asyncio.create_task(_until(stop, rate, page, start)),
            asyncio.create_task(_until(stop, write_rate, play, start)),
        ]
        marks = [0.0]
        try:
            say(f"steady: {phase_s:g} s at {rate:g} pages/s and {write_rate:g} plays/s")
            await asyncio.sleep(phase_s)
            marks.append(time.monotonic() - start)
            steady = False
            gone = await plane.kong(region, step_s=step_s)
            marks.append(time.monotonic() - start)
            say(f"out: {phase_s:g} s without {region}")
            await asyncio.sleep(phase_s)
            marks.append(time.monotonic() - start)
            back = await plane.kong(region, back=True, step_s=step_s)
            marks.append(time.monotonic() - start)
            say(f"after: {phase_s:g} s")
            await asyncio.sleep(phase_s)
            marks.append(time.monotonic() - start)
        finally:
            stop.set()
            await asyncio.gather(*loads)
    stored = await _stored(_engines(plane))
    ordered = sorted(lags)
    return KongResult(
        region=region,
        rate=rate,
        write_rate=write_rate,
        step_s=step_s,
        phases=_phases(marks, samples, writes, stored),
        evacuated_s=round(gone.evacuated_s or 0.0, 2),
        evacuation_took_s=round(gone.took_s, 2),
        return_took_s=round(back.took_s, 2),
        signed_in_again=writer.signed_in_again,
        timeline=_timeline(samples),
        replication_lag_ms=round(percentile(ordered, 0.5) * 1000, 1) if ordered else None,
        replication_lag_max_ms=round(ordered[-1] * 1000, 1) if ordered else None,
        not_replicated=len(missed),
        goal_pct=goal_pct,
    )


def plot(result: KongResult, path: Path) -> None:
    """Requests served per region per second, the phases marked."""
    figure, axes = figures.subplots(1, 1, figsize=(9, 4))
    regions = sorted({r for second in result.timeline for r in second})
    xs = list(range(len(result.timeline)))
    for name in regions:
        axes.plot(xs, [second.get(name, 0) for second in result.timeline], label=name)
    at = 0.0
    for phase in result.phases:
        axes.axvline(at, color="grey", linewidth=0.6, linestyle=":")
        axes.text(at + 0.2, 0, phase.phase, fontsize=8, rotation=90, va="bottom")
        at += phase.seconds
    axes.set_xlabel("seconds")
    axes.set_ylabel("requests served per second")
    axes.legend(loc="upper right")
    figure.suptitle(f"herd experiment kong: {result.region} evacuated, killed and brought back")
    figures.save(figure, path)


def report(result: KongResult) -> None:
    """The figures on stdout: a row per phase, then the evacuation's times."""
    print_table(
        f"kong {result.region}: {result.rate:g} pages/s, {result.write_rate:g} plays/s",
        [
            Column("phase"),
            *numbers("seconds", "total", "failed", "success %", "p99 ms"),
            Column("served by", drop=1),
            *numbers("acked writes", "lost"),
        ],
        [
            [
                p.phase,
                f"{p.seconds:g}",
                str(p.total),
                str(p.failed),
                f"{p.success_pct:g}",
                f"{p.p99_ms:g}",
                " ".join(f"{r}={n}" for r, n in p.served_by.items()),
                str(p.acknowledged),
                str(p.lost),
            ]
            for p in result.phases
        ],
    )
    say(
        f"evacuated in {result.evacuated_s:g} s (killed at {result.evacuation_took_s:g} s),"
        f" returned in {result.return_took_s:g} s; {result.signed_in_again} sign-ins again"
    )
    if result.replication_lag_ms is not None:
        say(
            f"replication lag: median {result.replication_lag_ms:g} ms, max"
            f" {result.replication_lag_max_ms:g} ms; {result.not_replicated} not replicated"
        )


_APP = typer.Option(
    Path("examples/flix/app-regions.toml"),
    "--app",
    metavar="APP.toml",
    help="The app with regions to run (flix in us and eu).",
)
_REGION = typer.Option("us", "--region", metavar="REGION", help="The one evacuated.")


def command(
    app: Path = _APP,
    region: str = _REGION,
    rate: float = options.per_second(
        100.0, "Home pages per second through the global door.", "--rate"
    ),
    write_rate: float = options.per_second(5.0, "Plays per second.", "--write-rate"),
    phase_seconds: float = options.seconds(
        10.0, "Seconds of the steady, out and after phases.", "--phase-seconds"
    ),
    step_seconds: float = options.seconds(
        2.0, "Seconds between the steps of the evacuation and the return.", "--step-seconds"
    ),
    goal: float = harness.target_option(
        GOAL_PCT, "--goal", "The success target of every phase", "docs/regions.md"
    ),
    json_path: Path | None = harness.JSON,
    plot_path: Annotated[Path | None, harness.plot_option("traffic per region")] = None,
) -> None:
    """Chaos Kong under load: a region evacuated, killed, brought back.

    flix in two regions (examples/flix/app-regions.toml) with pages and writes through the
    global front door; phases steady, evacuate, out, return, after. Targets: every phase
    serves >= 99.9 % (--goal) and no acknowledged write is lost; exits 0 only if both were
    met (docs/regions.md).

    Example: herd experiment kong --json kong.json --plot kong.png
    """
    if not (rate > 0 and write_rate > 0 and phase_seconds > 0 and step_seconds >= 0):
        raise usage("--rate, --write-rate and --phase-seconds must be > 0")
    result = harness.run(
        experiment(
            app,
            region=region,
            rate=rate,
            write_rate=write_rate,
            phase_s=phase_seconds,
            step_s=step_seconds,
            goal_pct=goal,
        )
    )
    report(result)
    harness.conclude(result, result.problems(), json_path=json_path, plot=plot, plot_path=plot_path)
