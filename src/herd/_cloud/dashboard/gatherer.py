"""The one gatherer: asks every instance for its figures once a second, and hands every open page
(and `herd top`) the same snapshot.

However many pages watch, one task polls: each instance's `/metrics` (what it served) and
`/herd/dependencies` (what it saw of the services it calls: counters, latency, breaker, budget,
bulkhead) at most once a second. Counters become rates and error percentages over a rolling
window by keeping the totals of the last `WINDOW_S` seconds. The task runs while someone
watches, and for `LINGER_S` after the last one went, so a page's reconnect finds it warm.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import aiohttp
import msgspec
import structlog
from prometheus_client.parser import text_string_to_metric_families

from herd._cloud.app import App
from herd._cloud.front_door import FrontDoor
from herd._cloud.interface import GroupView, InstanceView
from herd._model.instance import Status
from herd._model.outcome import is_server_failure
from herd._model.stats import sketch_quantile
from herd._model.tasks import cancel_and_wait
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.dashboard")

#: Seconds between two polls of one instance.
INTERVAL_S = 1.0
#: The rolling window of error percentages and latency percentiles (Hystrix's is 10 s).
WINDOW_S = 10.0
#: The front door's counters' key in a tick's totals (it is not an instance).
_DOOR = "front-door"
#: How much of the front door's history the sparklines show.
HISTORY_S = 300.0
#: How long the gatherer keeps polling after the last watcher left.
LINGER_S = 15.0
#: An instance that has not answered within this long is shown without figures this round.
POLL_TIMEOUT_S = 0.8
#: Call outcomes a dependency is blamed for (the Hystrix error percentage).
_DEPENDENCY_ERRORS = ("failure", "timeout", "short_circuited", "rejected")
_DEPENDENCY_CALLS = ("success", "service_error", *_DEPENDENCY_ERRORS)
#: Breaker states from best to worst: a service's edge shows the worst of its instances'.
_BREAKER_ORDER = ("closed", "half_open", "open")


#: A panel another part of the control plane adds to the page (deploys, chaos, history): called
#: once per snapshot, it answers `{"id": str, "title": str, "columns": [str], "rows": [[str]]}`,
#: which the page shows as a titled table.
Panel = Callable[[], Awaitable[Mapping[str, Any]]]


class Source(Protocol):
    """What the gatherer reads of the control plane (the `Controller`)."""

    app: App
    front_door: FrontDoor | None

    async def ps(self) -> list[InstanceView]:
        """Every instance."""
        ...

    async def groups(self) -> list[GroupView]:
        """Every server group."""
        ...


class _Seen(msgspec.Struct):
    """What one instance answered in one poll."""

    dependencies: dict[str, dict[str, Any]]
    served: dict[str, float]
    """Cumulative: `requests`, `failed`, `web` and `web_failed` (web requests: the front door's
    traffic when this instance serves it); gauges: `limit`; `shed`."""


def _served(exposition: str) -> dict[str, float]:
    """The server's own counters from a Prometheus exposition."""
    totals: dict[str, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        if family.name == "herd_server_requests":
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                failed = is_server_failure(sample.labels.get("outcome", ""))
                web = " " in sample.labels.get("method", "")  # web routes are "GET /path"
                totals["requests"] += sample.value
                totals["failed"] += sample.value if failed else 0.0
                if web:
                    totals["web"] += sample.value
                    totals["web_failed"] += sample.value if failed else 0.0
        elif family.name == "herd_server_limit":
            # A gauge: what the instance runs at once now (docs/overload.md).
            totals["limit"] = sum(sample.value for sample in family.samples)
        elif family.name == "herd_server_shed":
            totals["shed"] += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return dict(totals)


class Gatherer:
    """Polls every instance once a second while anyone watches; every watcher gets the same
    snapshot (a JSON document, described in docs/dashboard.md)."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._task: asyncio.Task[None] | None = None
        self._session: InstanceSession | None = None
        self._watchers = 0
        self._wanted_at = 0.0
        self._latest: bytes | None = None
        self._next: asyncio.Future[bytes] | None = None
        # Totals per tick, oldest first: (monotonic time, key -> cumulative count).
        self._totals: collections.deque[tuple[float, dict[str, float]]] = collections.deque()
        self._history: collections.deque[list[float]] = collections.deque()
        self._closed = False
        self._panels: list[Panel] = []

    def add_panel(self, panel: Panel) -> None:
        """Show `panel` on the page, below the groups, from the next snapshot on."""
        self._panels.append(panel)

    async def latest(self) -> bytes:
        """The newest snapshot, gathering one first if none is fresh."""
        self._wanted_at = time.monotonic()
        if self._latest is not None and self._task is not None:
            return self._latest
        return await asyncio.shield(self._upcoming())

    async def watch(self) -> AsyncGenerator[bytes, None]:
        """Every snapshot from now on (the newest one first), until closed."""
        self._watchers += 1
        try:
            if self._latest is not None and self._task is not None:
                yield self._latest
            while not self._closed:
                try:
                    yield await asyncio.shield(self._upcoming())
                except asyncio.CancelledError:
                    if self._closed:
                        return
                    raise
        finally:
            self._watchers -= 1
            self._wanted_at = time.monotonic()

    def _upcoming(self) -> asyncio.Future[bytes]:
        if self._closed:
            raise asyncio.CancelledError
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        if self._task is None:
            # A fresh context: started while serving a request, the task would inherit its
            # deadline and die with it.
            self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        return self._next

    async def close(self) -> None:
        """Stop polling; every watcher's stream ends."""
        self._closed = True
        if self._next is not None and not self._next.done():
            self._next.cancel()
        await cancel_and_wait(self._task)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        if self._session is None:
            # The control plane's own identity: instances take no call without one.
            self._session = InstanceSession(aiohttp.ClientTimeout(total=POLL_TIMEOUT_S))
        try:
            while self._watchers or time.monotonic() - self._wanted_at < LINGER_S:
                began = time.monotonic()
                try:
                    snapshot = await self._gather(self._session)
                except Exception:
                    log.exception("gathering failed")
                else:
                    self._latest = snapshot
                    upcoming, self._next = self._next, None
                    if upcoming is not None and not upcoming.done():
                        upcoming.set_result(snapshot)
                await asyncio.sleep(max(0.0, INTERVAL_S - (time.monotonic() - began)))
        finally:
            self._task = None
            # Stale by the time anyone asks again: the next watcher starts afresh.
            self._latest = None
            self._totals.clear()
            self._history.clear()

    async def _poll(self, scrape: InstanceSession, view: InstanceView) -> _Seen | None:
        session = scrape.session
        try:
            async with session.get(scrape.url(view.address, "/herd/dependencies")) as answer:
                dependencies = await answer.json() if answer.status == 200 else {}
            async with session.get(scrape.url(view.address, "/metrics")) as answer:
                exposition = await answer.text() if answer.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None  # killed, stopped or stalled: the page shows it without figures
        return _Seen(dependencies if isinstance(dependencies, dict) else {}, _served(exposition))

    async def _gather(self, session: InstanceSession) -> bytes:
        groups, instances = await self._source.groups(), await self._source.ps()
        polled = [view for view in instances if view.address]
        answers = await asyncio.gather(*(self._poll(session, view) for view in polled))
        seen = {view.id: answer for view, answer in zip(polled, answers, strict=True) if answer}
        now = time.monotonic()
        totals = self._count(instances, seen)
        door = self._source.front_door
        if door is not None:
            totals.update({f"{_DOOR}|{name}": value for name, value in door.totals().items()})
        self._totals.append((now, totals))
        while len(self._totals) > 2 and now - self._totals[1][0] >= WINDOW_S:
            self._totals.popleft()
        window = _Window(self._totals)
        snapshot = {
            "app": _titled(self._source.app.spec.name, self._source.app.spec.region),
            "at": time.time(),
            "interval_s": INTERVAL_S,
            "window_s": WINDOW_S,
            "zones": list(self._source.app.spec.zones),
            "groups": self._groups(groups, instances, window),
            "services": self._services(groups, instances, window),
            "edges": self._edges(instances, seen, window, {g.service for g in groups}),
            "front_door": self._front_door(instances, window, now),
            "panels": [dict(await panel()) for panel in self._panels],
        }
        return json.dumps(snapshot, separators=(",", ":")).encode()

    @staticmethod
    def _count(instances: Iterable[InstanceView], seen: Mapping[str, _Seen]) -> dict[str, float]:
        """This tick's cumulative counters, keyed `instance|what`."""
        totals: dict[str, float] = {}
        for view in instances:
            answer = seen.get(view.id)
            if answer is None:
                continue
            for name, value in answer.served.items():
                totals[f"{view.id}|{name}"] = value
            for dependency, figures in answer.dependencies.items():
                calls = sum(float(figures.get(k, 0)) for k in _DEPENDENCY_CALLS)
                errors = sum(float(figures.get(k, 0)) for k in _DEPENDENCY_ERRORS)
                totals[f"{view.id}|dep:{dependency}|calls"] = calls
                totals[f"{view.id}|dep:{dependency}|errors"] = errors
                for index, count in (figures.get("sketch") or {}).items():
                    totals[f"{view.id}|dep:{dependency}|q={index}"] = float(count)
        return totals

    def _groups(
        self, groups: list[GroupView], instances: list[InstanceView], window: _Window
    ) -> list[dict[str, Any]]:
        shown = []
        for group in groups:
            members = []
            for view in instances:
                if view.group != group.name:
                    continue
                requests = window.delta(view.id, "requests", INTERVAL_S)
                failed = window.delta(view.id, "failed", WINDOW_S)
                recent = window.delta(view.id, "requests", WINDOW_S)
                members.append(
                    {
                        **msgspec.structs.asdict(view),
                        "rps": round(requests / window.span(INTERVAL_S), 1),
                        "error_pct": round(100 * failed / recent, 1) if recent else 0.0,
                        "limit": window.current(view.id, "limit"),
                        "shed_rps": round(
                            window.delta(view.id, "shed", INTERVAL_S) / window.span(INTERVAL_S), 1
                        ),
                    }
                )
            shown.append({**msgspec.structs.asdict(group), "instances": members})
        return shown

    def _services(
        self, groups: list[GroupView], instances: list[InstanceView], window: _Window
    ) -> list[dict[str, Any]]:
        zones = self._source.app.spec.zones
        services: dict[str, dict[str, Any]] = {}
        for group in groups:
            entry = services.setdefault(
                group.service,
                {
                    "name": group.service,
                    "groups": [],
                    "zones": {zone: {"up": 0, "total": 0} for zone in zones},
                    "rps": 0.0,
                    "error_pct": 0.0,
                },
            )
            entry["groups"].append(group.name)
        recent: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
        for view in instances:
            entry = services[view.service]
            zone = entry["zones"].setdefault(view.zone, {"up": 0, "total": 0})
            zone["total"] += 1
            zone["up"] += view.status == Status.UP
            entry["rps"] += window.delta(view.id, "requests", INTERVAL_S) / window.span(INTERVAL_S)
            recent[view.service][0] += window.delta(view.id, "requests", WINDOW_S)
            recent[view.service][1] += window.delta(view.id, "failed", WINDOW_S)
        for name, entry in services.items():
            requests, failed = recent[name]
            entry["rps"] = round(entry["rps"], 1)
            entry["error_pct"] = round(100 * failed / requests, 1) if requests else 0.0
        return list(services.values())

    @staticmethod
    def _edges(
        instances: list[InstanceView],
        seen: Mapping[str, _Seen],
        window: _Window,
        services: set[str],
    ) -> list[dict[str, Any]]:
        """Per calling service and dependency: the Hystrix figures, summed over the caller's
        instances (latency: the quantiles of their merged sketches; breaker: the worst
        instance's)."""
        edges: dict[tuple[str, str], dict[str, Any]] = {}
        latencies: dict[tuple[str, str], dict[int, float]] = {}
        # The app's services only: every driver's resolver also long-polls the registry, whose
        # figures (a watch answers when something changes) would only look like trouble.
        for view in instances:
            answer = seen.get(view.id)
            if answer is None:
                continue
            for dependency, figures in answer.dependencies.items():
                if dependency not in services:
                    continue
                edge = edges.setdefault(
                    (view.service, dependency),
                    {
                        "from": view.service,
                        "to": dependency,
                        "rps": 0.0,
                        "calls": 0.0,
                        "errors": 0.0,
                        "p50_ms": 0.0,
                        "p99_ms": 0.0,
                        "breaker": "closed",
                        "open": 0,
                        "reporting": 0,
                        "requests": 0,
                        "failures": 0,
                        "budget_balance": None,
                        "bulkhead_in_use": 0,
                        "bulkhead_max": 0,
                    },
                )
                key = f"dep:{dependency}"
                edge["rps"] += window.delta(view.id, f"{key}|calls", INTERVAL_S) / window.span(
                    INTERVAL_S
                )
                edge["calls"] += window.delta(view.id, f"{key}|calls", WINDOW_S)
                edge["errors"] += window.delta(view.id, f"{key}|errors", WINDOW_S)
                # Every instance's latency sketch over the window, merged: the quantiles of
                # all the calls along the edge, not the worst instance's.
                merged = latencies.setdefault((view.service, dependency), {})
                for name, count in window.changes(view.id, f"{key}|q=", WINDOW_S).items():
                    index = int(name.rpartition("=")[2])
                    merged[index] = merged.get(index, 0.0) + count
                edge["reporting"] += 1
                breaker = figures.get("breaker") or {}
                state = str(breaker.get("state", "closed"))
                if state in _BREAKER_ORDER and _BREAKER_ORDER.index(state) > _BREAKER_ORDER.index(
                    edge["breaker"]
                ):
                    edge["breaker"] = state
                edge["open"] += state == "open"
                edge["requests"] += int(breaker.get("requests", 0))
                edge["failures"] += int(breaker.get("failures", 0))
                budget = figures.get("budget") or {}
                if "balance" in budget:
                    balance = float(budget["balance"])
                    current = edge["budget_balance"]
                    edge["budget_balance"] = balance if current is None else min(current, balance)
                bulkhead = figures.get("bulkhead") or {}
                edge["bulkhead_in_use"] += int(bulkhead.get("in_use", 0))
                edge["bulkhead_max"] += int(bulkhead.get("max_concurrent", 0))
        for pair, edge in edges.items():
            counts = latencies.get(pair, {})
            edge["p50_ms"] = round(sketch_quantile(counts, 0.5) * 1000, 3)
            edge["p99_ms"] = round(sketch_quantile(counts, 0.99) * 1000, 3)
            calls = edge.pop("calls")
            errors = edge.pop("errors")
            edge["rps"] = round(edge["rps"], 1)
            edge["error_pct"] = round(100 * errors / calls, 1) if calls else 0.0
        return sorted(edges.values(), key=lambda e: (e["from"], e["to"]))

    def _front_door(
        self, instances: list[InstanceView], window: _Window, now: float
    ) -> dict[str, Any] | None:
        door = self._source.front_door
        if door is None:
            return None
        # The front door runs in this process: what users saw is read from it, not from the
        # instances behind it.
        web = window.delta(_DOOR, "web", INTERVAL_S)
        failed = window.delta(_DOOR, "web_failed", INTERVAL_S)
        # The front door's latency sketch over the window: within 1 % of the true p99.
        counts = {int(name[2:]): n for name, n in window.changes(_DOOR, "q=", WINDOW_S).items()}
        rps = web / window.span(INTERVAL_S)
        success = 100 * (web - failed) / web if web else 100.0
        p99 = round(sketch_quantile(counts, 0.99) * 1000, 2)
        self._history.append([round(time.time(), 1), round(rps, 1), round(success, 2), p99])
        while self._history and self._history[0][0] < time.time() - HISTORY_S:
            self._history.popleft()
        return {
            "service": door.service,
            "url": door.url,
            "rps": round(rps, 1),
            "success_pct": round(success, 2),
            "p99_ms": p99,
            "history": list(self._history),
        }


class _Window:
    """Differences of cumulative counters between now and about `seconds` ago.

    A counter that went down belongs to a restarted process: it counts from zero. One missing
    from the older totals is new (a new instance, or a dependency it just began to call).
    """

    def __init__(self, totals: collections.deque[tuple[float, dict[str, float]]]) -> None:
        self._totals = totals
        self._now = totals[-1]

    def _then(self, seconds: float) -> tuple[float, dict[str, float]]:
        now = self._now[0]
        for at, totals in reversed(self._totals):
            if now - at >= seconds - 0.05:
                return at, totals
        return self._totals[0]

    def span(self, seconds: float) -> float:
        """The seconds between now and the totals `delta(..., seconds)` compares with (at
        least one interval, so a first tick shows no burst)."""
        return max(INTERVAL_S, self._now[0] - self._then(seconds)[0])

    def delta(self, instance: str, name: str, seconds: float) -> float:
        """How much `instance|name` grew in the last `seconds` (0 on the first tick)."""
        key = f"{instance}|{name}"
        current = self._now[1].get(key)
        if current is None or len(self._totals) < 2:
            return 0.0
        before = self._then(seconds)[1].get(key, 0.0)
        return current if current < before else current - before

    def current(self, instance: str, name: str) -> float | None:
        """The latest value of the gauge `instance|name` (None: the instance has none)."""
        return self._now[1].get(f"{instance}|{name}")

    def changes(self, instance: str, prefix: str, seconds: float) -> dict[str, float]:
        """`delta` of every counter of `instance` whose name starts with `prefix`."""
        start = f"{instance}|{prefix}"
        names = [key[len(instance) + 1 :] for key in self._now[1] if key.startswith(start)]
        return {name: self.delta(instance, name, seconds) for name in names}


def _titled(app: str, region: str) -> str:
    """The app's name as the page shows it: with its region, in one region's cloud."""
    return f"{app} (region {region})" if region else app
