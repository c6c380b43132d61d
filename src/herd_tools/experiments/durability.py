"""`herd experiment durability`: writes through flix's front door while instances die, then
every write read back from where it is stored; and a memcached zone killed under read load.

Phase 1 (writes): visitors 1..8 sign in; `rate` writes per second for `duration` seconds
alternate between play (history) and rate (merch), each with a fresh idempotency key and a
distinct (kind, visitor, video), so a write applied twice shows as two rows. A client that gets
no answer or a failure tries the same write again with the same key (as a real client would)
until `give_up_s` after it was due. Every `kill_every` seconds a random history, merch or edge
instance is SIGKILLed. Then each service's store is read back (`examples.flix.writes`: SQLite
files, or the engine of an app with `[[stores]]`):

- `acknowledged`: writes answered 200; `lost`: acknowledged but not stored (must be 0);
- `duplicated`: extra rows of a write stored more than once (must be 0);
- `failed_pct`: writes never acknowledged, percent of `sent`.

On the engine (an app with `[[stores]]`, e.g. flix's app-nats.toml), two more phases of
open-model writes for `engine_seconds` each, every write retried with its key for up to
`ENGINE_GIVE_UP_S`, then read back (`durability_engine.Phase`): `zone_outage` (zone b's
instances and nats-server SIGKILLed and held out for half the phase) and `leader_kill` (the
leader of history's plays log SIGKILLed). Targets: nothing lost or duplicated, >= 99.9 % of
writes acknowledged.

Phase 2 (cache), once every group is back to its count: home pages at `rate` per second,
`warmup_s` to fill the caches (not counted), then `cache_seconds` counted; halfway through
those, zone a's memcached is SIGKILLed. A page is whole when it answered 200 with every part
(no `omitted`, the visitor's name): at least 99.9 % must be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

import herd
from herd._cloud.controller import Controller
from herd._cloud.interface import StoreView
from herd._process.config import STORE_URL
from herd_tools import options
from herd_tools.experiments import durability_engine as engine
from herd_tools.experiments import harness
from herd_tools.output import Column, numbers, print_table, say, usage

#: Visitors who can sign in (flix seeds accounts for 1..8: `examples.flix.store.ACCOUNTS`).
ACCOUNTS = 8
VIDEOS = 1000
VICTIM_SERVICES = ("history", "merch", "edge")
WHOLE_PCT = 99.9
#: How long a client sends a write again on the engine phases: a stream's leader election
#: takes 5 to 7 s on Debian's nats-server 2.9, and a write due as it began may have a 2 s
#: attempt under way when it ends (the front door's deadline, kept for pages' sake).
ENGINE_GIVE_UP_S = 15.0
#: The stream whose leader the leader-kill phase kills: history's plays log, the first write
#: of every play.
LEADER_STREAM = "LOG_history_plays"


class Writes(msgspec.Struct, frozen=True, kw_only=True):
    """Phase 1's figures."""

    sent: int
    acknowledged: int
    lost: int
    duplicated: int
    failed_pct: float
    retries: int
    stored_unacknowledged: int
    killed: list[str]


class CachePhase(msgspec.Struct, frozen=True, kw_only=True):
    """Phase 2's figures."""

    killed: str
    pages: int
    whole: int
    whole_pct: float
    broken_by_reason: dict[str, int]
    """Why the other pages were not whole: `http_NNN`, `omitted_<part>`, `no_name`, or the
    client's exception (`TimeoutError`, ...)."""
    broken_after_kill: int
    """Of those, the pages asked for once memcached was killed."""


class Durability(msgspec.Struct, frozen=True, kw_only=True):
    """What one run measured; `--json` writes exactly this."""

    rate: float
    duration_s: float
    kill_every_s: float
    writes: Writes
    cache: CachePhase
    whole_target_pct: float = WHOLE_PCT
    """This run's target for whole pages, in percent."""
    phases: list[engine.Phase] = msgspec.field(default_factory=list)
    """The phases on the engine (`zone_outage`, `leader_kill`): none without `[[stores]]`."""
    success_target_pct: float = engine.SUCCESS_PCT
    """This run's target for the writes acknowledged in each engine phase, in percent."""

    def missed(self) -> list[str]:
        """The targets missed, in words (none: nothing lost, nothing applied twice, and pages
        whole through a cache zone's loss)."""
        problems = []
        if self.writes.lost:
            problems.append(f"{self.writes.lost} acknowledged writes lost, target 0")
        if self.writes.duplicated:
            problems.append(f"{self.writes.duplicated} writes applied twice, target 0")
        if self.cache.whole_pct < self.whole_target_pct:
            problems.append(
                f"{self.cache.whole_pct:g} % of pages whole, target {self.whole_target_pct:g} %"
            )
        for phase in self.phases:
            problems += phase.missed(self.success_target_pct)
        return problems


class Stored(msgspec.Struct, frozen=True):
    """What flix stores of a write (`examples.flix.writes.Written`: the fields read here)."""

    visitor: int
    video: int
    at_ms: int


class _Write(msgspec.Struct):
    kind: str
    visitor: int
    video: int
    key: str
    acknowledged: bool = False
    tries: int = 0
    due: float = 0.0
    acked_at: float = 0.0


def _plan(index: int, key: str, phase: int) -> _Write:
    """Write `index`'s distinct (kind, visitor, video); each phase its own videos, so a phase
    read back never counts another's writes as its own."""
    kind = "play" if index % 2 == 0 else "rate"
    visitor = 1 + (index // 2) % ACCOUNTS
    video = 1 + phase * VIDEOS + (index // (2 * ACCOUNTS)) % VIDEOS
    return _Write(kind, visitor, video, key)


async def _sign_in(
    http: aiohttp.ClientSession, door: str, passwords: dict[int, str]
) -> dict[int, str]:
    cookies = {}
    for visitor, password in passwords.items():
        body = {"visitor": visitor, "password": password}
        async with http.post(f"{door}/api/signin", json=body) as answer:
            if answer.status != 200:
                raise RuntimeError(f"visitor {visitor} could not sign in: {await answer.text()}")
            cookies[visitor] = answer.headers["Set-Cookie"].split(";")[0]
    return cookies


async def _send(
    http: aiohttp.ClientSession, door: str, cookie: str, write: _Write, give_up_at: float
) -> None:
    loop = asyncio.get_running_loop()
    path = "/api/play" if write.kind == "play" else "/api/rate"
    body: dict[str, Any] = {"video": write.video}
    if write.kind == "rate":
        body["thumbs"] = 1 if write.video % 2 else -1
    headers = {"Cookie": cookie, "Idempotency-Key": write.key}
    while loop.time() < give_up_at:
        write.tries += 1
        try:
            async with http.post(f"{door}{path}", json=body, headers=headers) as answer:
                await answer.read()
                if answer.status == 200:
                    write.acknowledged = True
                    write.acked_at = loop.time()
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.2)


async def _killer(
    controller: Controller, every: float, killed: list[str], say: harness.Say
) -> None:
    rng = random.Random(12)
    while True:
        await asyncio.sleep(every)
        victims = [
            view
            for view in await controller.ps()
            if view.service in VICTIM_SERVICES and view.status == "UP"
        ]
        if victims:
            victim = rng.choice(victims)
            await controller.kill(victim.id)
            killed.append(victim.id)
            say(f"SIGKILL {victim.id}")


async def passwords(root: Path) -> dict[int, str]:
    """The demo accounts' passwords, as flix's own tool prints them (they are flix's data),
    flix's package under `root`."""

    async def one(visitor: int) -> str:
        command = [sys.executable, "-m", "examples.flix.store", "password", str(visitor)]
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=root, capture_output=True, check=True
        )
        return done.stdout.decode().strip()

    visitors = range(1, ACCOUNTS + 1)
    # At once: each is a Python start of its own.
    return dict(zip(visitors, await asyncio.gather(*map(one, visitors)), strict=True))


def _engine(controller: Controller) -> str:
    """Where flix's services keep their writes: the engine `herd up` gave them, else the
    SQLite files in the app's ``FLIX_WRITES`` (`examples.flix.writes.where`)."""
    given = controller.launcher.environment().get(STORE_URL)
    return given or f"sqlite://{controller.app.expand(controller.app.spec.env['FLIX_WRITES'])}"


async def _stored(engine: str, since_ms: int) -> dict[str, list[tuple[str, str, int, int]]]:
    """key -> entries as (kind, key, visitor, video) stored since `since_ms`, from both
    services' stores (a run directory keeps the writes of earlier runs)."""
    rows: dict[str, list[tuple[str, str, int, int]]] = {}
    for kind, service, log in (("play", "history", "plays"), ("rate", "merch", "ratings")):
        async with herd.store(service, where=engine, timeout_s=30.0) as store:
            entries = store.log(log, Stored)
            for visitor in range(1, ACCOUNTS + 1):
                for entry in await entries.last(visitor, 1_000_000):
                    if entry.value.at_ms >= since_ms:
                        found = (kind, entry.id, entry.value.visitor, entry.value.video)
                        rows.setdefault(entry.id, []).append(found)
    return rows


def _count(
    writes: list[_Write], stored: dict[str, list[tuple[str, str, int, int]]], killed: list[str]
) -> Writes:
    by_content: dict[tuple[str, int, int], int] = {}
    for found in stored.values():
        for kind, _, visitor, video in found:
            by_content[(kind, visitor, video)] = by_content.get((kind, visitor, video), 0) + 1
    acknowledged = [w for w in writes if w.acknowledged]
    sent = len(writes)
    return Writes(
        sent=sent,
        acknowledged=len(acknowledged),
        lost=sum(1 for w in acknowledged if w.key not in stored),
        duplicated=sum(count - 1 for count in by_content.values() if count > 1),
        failed_pct=round(100.0 * (sent - len(acknowledged)) / sent, 3) if sent else 0.0,
        retries=sum(w.tries - 1 for w in writes if w.tries > 1),
        stored_unacknowledged=sum(1 for w in writes if not w.acknowledged and w.key in stored),
        killed=killed,
    )


async def _open_model(
    http: aiohttp.ClientSession,
    door: str,
    cookies: dict[int, str],
    *,
    rate: float,
    duration: float,
    give_up_s: float,
    phase: int,
) -> list[_Write]:
    """Writes due at `rate` per second for `duration` seconds whatever the answers (an open
    model: a slow answer delays no later write), each sent until acknowledged or `give_up_s`
    after it was due; every one once all have ended."""
    loop = asyncio.get_running_loop()
    writes: list[_Write] = []
    sending: list[asyncio.Task[None]] = []
    started = loop.time()
    while (due := started + len(writes) / rate) < started + duration:
        await asyncio.sleep(max(0.0, due - loop.time()))
        write = _plan(len(writes), secrets.token_urlsafe(16), phase)
        write.due = due
        writes.append(write)
        cookie = cookies[write.visitor]
        sending.append(asyncio.create_task(_send(http, door, cookie, write, due + give_up_s)))
    await asyncio.gather(*sending)
    return writes


def _since_ms() -> int:
    """A phase's start on the services' clock (this machine's), a second early."""
    return int(time.time() * 1000) - 1000


async def _write_phase(
    controller: Controller,
    http: aiohttp.ClientSession,
    door: str,
    cookies: dict[int, str],
    *,
    rate: float,
    duration: float,
    kill_every: float,
    give_up_s: float,
    say: harness.Say,
) -> Writes:
    killed: list[str] = []
    killer = asyncio.create_task(_killer(controller, kill_every, killed, say))
    since_ms = _since_ms()
    try:
        writes = await _open_model(
            http, door, cookies, rate=rate, duration=duration, give_up_s=give_up_s, phase=0
        )
    finally:
        killer.cancel()
        await asyncio.gather(killer, return_exceptions=True)
    say(f"{len(writes)} writes sent; reading every one back")
    return _count(writes, await _stored(_engine(controller), since_ms), killed)


async def _engine_phase(
    controller: Controller,
    http: aiohttp.ClientSession,
    door: str,
    cookies: dict[int, str],
    name: str,
    *,
    rate: float,
    seconds: float,
    give_up_s: float,
    say: harness.Say,
) -> engine.Phase:
    """Writes for `seconds` while the engine loses zone b (its nats-server and its instances,
    for half the phase) or the leader of history's plays log; every write read back."""
    killed: list[str] = []
    elections: list[asyncio.Task[float | None]] = []

    async def disrupt() -> float | None:
        await asyncio.sleep(seconds / 5)
        members = await controller.stores()
        servers = [m.address for m in members]
        names = await engine.stream_names(servers)
        if name == engine.ZONE_OUTAGE:
            victim = next(m for m in members if m.zone == "b")
            outage_s = seconds / 2
            # The outage SIGKILLs the zone's store member with its instances; their slots
            # start nothing until it ends.
            killed.extend(await controller.chaos.zone_outage(victim.zone, outage_s))
            say(f"zone b out for {outage_s:g} s: SIGKILL {', '.join(killed)}")
        else:
            leader = await engine.stream_leader(servers, LEADER_STREAM)
            victim = next(m for m in members if m.id == f"store-{leader}")
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.id)
            say(f"SIGKILL {victim.id}, the leader of {LEADER_STREAM}")
        member = victim.id.removeprefix("store-")
        back = asyncio.Event()
        elections.append(asyncio.create_task(engine.elected(member, servers, names, back)))
        if name == engine.ZONE_OUTAGE:
            await asyncio.sleep(outage_s)
        started_ago = await _returned(controller, victim)
        if started_ago is None:
            say(f"{victim.id} did not come back")
            return None
        back.set()
        caught_up = await engine.caught_up(member, servers, say=say)
        return None if caught_up is None else round(started_ago + caught_up, 2)

    since_ms = _since_ms()
    disruption = asyncio.create_task(disrupt())
    try:
        writes = await _open_model(
            http,
            door,
            cookies,
            rate=rate,
            duration=seconds,
            give_up_s=give_up_s,
            phase=1 + [engine.ZONE_OUTAGE, engine.LEADER_KILL].index(name),
        )
    finally:
        catch_up_s = await disruption
        election_s = await elections[0] if elections else None
    say(f"{name}: {len(writes)} writes sent; reading every one back")
    counted = _count(writes, await _stored(_engine(controller), since_ms), killed)
    acknowledged = [w for w in writes if w.acknowledged]
    return engine.Phase(
        phase=name,
        killed=killed,
        sent=counted.sent,
        acknowledged=counted.acknowledged,
        lost=counted.lost,
        duplicated=counted.duplicated,
        success_pct=round(100 - counted.failed_pct, 3),
        write_p99_ms=engine.p99_ms([w.acked_at - w.due for w in acknowledged]),
        catch_up_s=catch_up_s,
        retries=counted.retries,
        election_s=election_s,
    )


async def _returned(
    controller: Controller, victim: StoreView, timeout_s: float = 30.0
) -> float | None:
    """Wait until `victim`'s slot runs a new process (its restart, once a zone outage ended)
    that answers on its monitoring port: how long ago that process started (the slot shows it
    only once it said it was ready: nats-server's /healthz, itself waiting on JetStream); None
    if not within `timeout_s`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while loop.time() < give_up:
        now = next(m for m in await controller.stores() if m.id == victim.id)
        if now.pid and now.pid != victim.pid and await asyncio.to_thread(engine.answers, now):
            return now.uptime_s
        await asyncio.sleep(0.05)
    return None


async def _cache_phase(
    controller: Controller,
    http: aiohttp.ClientSession,
    door: str,
    rate: float,
    seconds: float,
    warmup_s: float,
) -> CachePhase:
    loop = asyncio.get_running_loop()
    zone_a = next(view for view in await controller.caches() if view.zone == "a")
    results: list[str | None] = []
    after_kill: list[str] = []
    rng = random.Random(7)
    started = loop.time()
    warming: list[asyncio.Task[None]] = []
    while (due := started + len(warming) / rate) < started + warmup_s:
        await asyncio.sleep(max(0.0, due - loop.time()))
        warming.append(asyncio.create_task(_get(http, door, rng.randint(1, 10_000))))
    await asyncio.gather(*warming)

    async def page(visitor: int) -> None:
        sent_at = loop.time()
        try:
            async with http.get(f"{door}/api/home?visitor={visitor}") as answer:
                if answer.status != 200:
                    results.append(f"http_{answer.status}")
                    return
                body = await answer.json(content_type=None)
            if body["omitted"]:
                results.append("omitted_" + "_".join(body["omitted"]))
            else:
                results.append(None if body["name"] else "no_name")
        except (aiohttp.ClientError, TimeoutError) as exc:
            results.append(type(exc).__name__)
        if results[-1] is not None and sent_at >= started + seconds / 2:
            after_kill.append(results[-1])

    async def kill_midway() -> None:
        await asyncio.sleep(seconds / 2)
        os.kill(zone_a.pid, signal.SIGKILL)

    killer = asyncio.create_task(kill_midway())
    started = loop.time()
    tasks: list[asyncio.Task[None]] = []
    while (due := started + len(tasks) / rate) < started + seconds:
        await asyncio.sleep(max(0.0, due - loop.time()))
        tasks.append(asyncio.create_task(page(rng.randint(1, 10_000))))
    await asyncio.gather(*tasks, killer)
    whole = results.count(None)
    reasons: dict[str, int] = {}
    for reason in results:
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    return CachePhase(
        killed=zone_a.id,
        pages=len(results),
        whole=whole,
        whole_pct=round(100.0 * whole / len(results), 3) if results else 0.0,
        broken_by_reason=reasons,
        broken_after_kill=len(after_kill),
    )


async def _settled(controller: Controller, timeout_s: float = 30.0) -> None:
    """Wait until every group is back to its count, all UP, so that phase 2 sees the loss of a
    memcached zone and not phase 1's last kills."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while loop.time() < give_up:
        if all(group.status == "READY" for group in await controller.groups()):
            return
        await asyncio.sleep(0.2)


async def _get(http: aiohttp.ClientSession, door: str, visitor: int) -> None:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.get(f"{door}/api/home?visitor={visitor}") as answer:
            await answer.read()


async def experiment(
    app: Path,
    *,
    rate: float,
    duration: float,
    kill_every: float,
    cache_seconds: float,
    warmup_s: float = 5.0,
    give_up_s: float = 10.0,
    whole_pct: float = WHOLE_PCT,
    engine_seconds: float = 30.0,
    engine_give_up_s: float = ENGINE_GIVE_UP_S,
    success_pct: float = engine.SUCCESS_PCT,
    say: harness.Say = say,
) -> Durability:
    """Run the app, write through its front door under kills, read back; on the engine (an app
    with `[[stores]]`), the same through a zone's outage and a leader's loss; then the cache."""

    async def body(controller: Controller) -> Durability:
        door = controller.front_door
        if door is None or not await controller.caches():
            raise ValueError(f"{app} needs a front door and a [[caches]] entry")
        url = door.url.rstrip("/")
        timeout = aiohttp.ClientTimeout(total=3.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            cookies = await _sign_in(http, url, await passwords(controller.app.root))
            say(f"phase 1: {rate:g} writes/s for {duration:g} s, a kill every {kill_every:g} s")
            writes = await _write_phase(
                controller,
                http,
                url,
                cookies,
                rate=rate,
                duration=duration,
                kill_every=kill_every,
                give_up_s=give_up_s,
                say=say,
            )
            await _settled(controller)
            phases = []
            on_engine = bool(await controller.stores())
            for name in [engine.ZONE_OUTAGE, engine.LEADER_KILL] if on_engine else []:
                say(f"{name}: {rate:g} writes/s for {engine_seconds:g} s on the engine")
                phase = await _engine_phase(
                    controller,
                    http,
                    url,
                    cookies,
                    name,
                    rate=rate,
                    seconds=engine_seconds,
                    give_up_s=engine_give_up_s,
                    say=say,
                )
                phases.append(phase)
                await _settled(controller)
            say(
                f"phase 2: {rate:g} pages/s, {warmup_s:g} s to warm up, then {cache_seconds:g} s"
                " counted with memcached zone a killed halfway"
            )
            cache = await _cache_phase(controller, http, url, rate, cache_seconds, warmup_s)
        return Durability(
            rate=rate,
            duration_s=duration,
            kill_every_s=kill_every,
            writes=writes,
            cache=cache,
            whole_target_pct=whole_pct,
            phases=phases,
            success_target_pct=success_pct,
        )

    return await harness.on_cloud(app, body, say=say)


def report(result: Durability) -> None:
    """The figures on stdout."""
    writes, cache = result.writes, result.cache
    rows = [
        [name, f"{getattr(writes, name):g}"]
        for name in ("sent", "acknowledged", "lost", "duplicated", "failed_pct", "retries")
    ]
    rows += [
        ["stored, not acknowledged", str(writes.stored_unacknowledged)],
        ["instances killed", str(len(writes.killed))],
        [f"pages whole ({cache.killed} killed)", f"{cache.whole}/{cache.pages}"],
        ["pages whole %", f"{cache.whole_pct:g}"],
        *([f"  not whole: {r}", str(n)] for r, n in sorted(cache.broken_by_reason.items())),
        ["  of them after the kill", str(cache.broken_after_kill)],
    ]
    print_table("durability", [Column("figure"), Column("value", right=True)], rows)
    if result.phases:
        print_table(
            "on the engine",
            [Column("phase"), *numbers(*_PHASE_FIGURES)],
            [
                [phase.phase, *(_figure(getattr(phase, name)) for name in _PHASE_FIGURES)]
                for phase in result.phases
            ],
        )


_PHASE_FIGURES = (
    "sent",
    "acknowledged",
    "lost",
    "duplicated",
    "success_pct",
    "write_p99_ms",
    "election_s",
    "catch_up_s",
)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def command(
    app: Path = harness.APP,
    rate: float = options.per_second(100.0, "Writes (then pages) per second, through the door."),
    duration: float = options.seconds(30.0, "Seconds of writes."),
    kill_every: float = options.seconds(
        3.0, "Seconds between SIGKILLs of a random history, merch or edge instance."
    ),
    cache_seconds: float = options.seconds(
        10.0, "Seconds of page reads counted; memcached zone a is killed halfway."
    ),
    warmup: float = options.seconds(5.0, "Seconds of page reads before, not counted."),
    whole: float = harness.target_option(
        WHOLE_PCT, "--whole", "The target share of whole pages", "docs/data.md"
    ),
    engine_seconds: float = options.seconds(
        30.0, "Seconds of writes in each phase on the engine (an app with [[stores]])."
    ),
    success: float = harness.target_option(
        engine.SUCCESS_PCT,
        "--success",
        "The target share of writes acknowledged in each phase on the engine",
        "docs/data.md",
    ),
    json_path: Path | None = harness.JSON,
) -> None:
    """Writes under kills, every one read back; a cache zone lost.

    Writes through flix's front door while instances die, then reads every write back. Reports sent,
    acknowledged, lost (acknowledged but not stored), duplicated (applied twice) and failed_pct;
    on an app with [[stores]], the same through zone b's outage and a stream leader's SIGKILL
    (--engine-seconds each); then kills a memcached zone under read load and counts whole pages.
    Targets: nothing lost, nothing duplicated, >= 99.9 % of writes acknowledged in each engine
    phase (--success), >= 99.9 % of pages whole (--whole); exits 0 only if all were met, 1 if not
    (docs/data.md).

    Example: herd experiment durability --app examples/flix/app-nats.toml --json durability.json
    """
    if min(rate, duration, kill_every, cache_seconds, engine_seconds) <= 0 or warmup < 0:
        raise usage(
            "--rate, --duration, --kill-every, --cache-seconds and --engine-seconds must be > 0"
        )
    result = harness.run(
        experiment(
            app,
            rate=rate,
            duration=duration,
            kill_every=kill_every,
            cache_seconds=cache_seconds,
            warmup_s=warmup,
            whole_pct=whole,
            engine_seconds=engine_seconds,
            success_pct=success,
        )
    )
    report(result)
    harness.conclude(result, result.missed(), json_path=json_path)
