"""The global control plane of an app with regions: a local cloud per region, each in a
process of its own, and the global front door in front of them.

A region is a whole local cloud (`herd._cloud.regions.region` runs the `Controller` on the
region's own ports and run directory), so it fails whole: `herd chaos kong` SIGKILLs its
process and everything it runs dies with it. This plane starts them, steers users over them,
evacuates and returns them (`Kong`), and keeps its own history of all of that.
"""

from __future__ import annotations

import asyncio
import html
import json
import math
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import Client as Nats

from herd._client.driver import plain_transport, static_driver
from herd._cloud.app import App, RegionLinks
from herd._cloud.history.store import Event, History, HistoryQuery
from herd._cloud.interface import CloudApi, GroupView, InstanceView
from herd._cloud.launch.caches import free_port
from herd._cloud.launch.process import Process
from herd._cloud.regions.api import KongRefused, KongStep, KongView, RegionsApi, RegionView
from herd._cloud.regions.door import GlobalFrontDoor
from herd._cloud.state import remove_state, write_state
from herd._model.errors import ConfigurationError
from herd._model.tasks import cancel_and_wait
from herd._model.web import WebRequest, WebResponse, route
from herd._process.config import parse_store_url
from herd._server.server import Server
from herd._store import replication

log = structlog.get_logger("herd.regions")
Say = Callable[[str], None]
#: The environment variable that carries a region's admin token from this plane to its cloud.
TOKEN = "HERD_REGION_TOKEN"
#: The one that carries its store servers' links to the other regions (`RegionLinks`, JSON).
LINKS = "HERD_REGION_LINKS"
#: How often the plane links the regions' stores (new logs replicate from then on).
LINK_EVERY_S = 1.0
#: How long a region's cloud may take to start (every group UP, its front door open).
START_TIMEOUT_S = 180.0
#: How long the other regions' groups may take to be UP at their new counts.
SCALE_TIMEOUT_S = 120.0


def _links(app: App) -> dict[str, RegionLinks]:
    """Leaf ports for every region's store servers (a free port per zone); every region but
    the first connects to the first's (a hub: leaf-node links must not make a cycle)."""
    if not app.spec.stores:
        return {}
    ports = {r: [free_port() for _ in app.spec.zones] for r in app.spec.regions}
    hub = app.spec.regions[0]
    remotes = [f"127.0.0.1:{port}" for port in ports[hub]]
    return {
        region: RegionLinks(leaf_ports=ports[region], remotes=[] if region == hub else remotes)
        for region in app.spec.regions
    }


class Region:
    """One region's cloud: its process, its admin token and, once it announced itself, its
    addresses."""

    def __init__(self, name: str, process: Process, token: str) -> None:
        self.name = name
        self.process = process
        self.token = token
        self.announced: dict[str, Any] = {}
        self.killed = False

    @property
    def up(self) -> bool:
        return self.process.alive and self.process.ready.is_set()

    def control(self) -> CloudApi:
        """A driver of the region's control API, with its token."""
        return static_driver(
            CloudApi,
            str(self.announced["control"]),
            token=self.token,
            transport=plain_transport,
        )


class Regions(RegionsApi):
    """Runs an app with regions on this machine and serves the global control API."""

    def __init__(self, app: App, *, say: Say | None = None) -> None:
        spec = app.spec
        assert spec.regions and spec.global_front_door is not None
        self.app = app
        self.token = secrets.token_urlsafe(24)
        self._say = say or (lambda _: None)
        self.history = History(app.run_dir / "history.sqlite")
        self.record = self.history.record
        self.door = GlobalFrontDoor(spec.global_front_door, list(spec.regions))
        self.clouds: dict[str, Region] = {}
        self._lock = asyncio.Lock()
        """One evacuation or return at a time."""
        self._scaled_from: dict[str, dict[str, int]] = {}
        """Per evacuated region: the other regions' groups (`region/group`) and the counts
        they had before it, to scale back to once it returns."""
        self._server: Server | None = None
        self.stopped = asyncio.Event()
        self.links = _links(app)
        """Each region's store servers' leaf-node links, chosen once: a region that comes back
        listens where the others connect (none without `[[stores]]`)."""
        self._linking: asyncio.Task[None] | None = None

    @property
    def control_address(self) -> str:
        """The global control API's `host:port`."""
        return f"127.0.0.1:{self.app.spec.control_port}"

    async def start(self) -> None:
        """Start every region's cloud (at once), the global front door and the control API."""
        self.app.run_dir.mkdir(parents=True, exist_ok=True)
        self.record("cloud.started", app=self.app.spec.name, regions=self.app.spec.regions)
        await asyncio.gather(*(self._start_region(name) for name in self.app.spec.regions))
        await self.door.start()
        self._say(f"global front door {self.door.url} → {', '.join(self.clouds)}")
        self._server = Server(self, port=self.app.spec.control_port, admin_token=self.token)
        await self._server.start()
        self._write_state()
        if self.links:
            self._linking = asyncio.create_task(self._link_stores())

    def _write_state(self) -> None:
        """Tell `herd` commands where the global API and each region's are (a region that
        starts again has a new token)."""
        write_state(
            {
                "app": self.app.spec.name,
                "control": self.control_address,
                "token": self.token,
                "front_door": self.door.url,
                "regions": {
                    name: {**r.announced, "token": r.token} for name, r in self.clouds.items()
                },
            }
        )

    async def _start_region(self, name: str) -> None:
        command = [sys.executable, "-m", "herd._cloud.regions.region", str(self.app.source), name]
        log = self.app.run_dir / "logs" / f"region-{name}.log"
        token = secrets.token_urlsafe(24)
        env = {TOKEN: token}
        if name in self.links:
            env[LINKS] = msgspec.json.encode(self.links[name]).decode()
        process = Process(f"region-{name}", command, env, self.app.root, log)
        region = self.clouds[name] = Region(name, process, token)
        await process.start()
        self._say(f"region {name}: starting (log {log})")
        if not await process.wait_ready(START_TIMEOUT_S):
            await process.stop(grace_s=5.0)
            raise ConfigurationError(
                f"region {name} did not start within {START_TIMEOUT_S:g} s:\n{process.tail()}"
            )
        region.announced = dict(process.announced or {})
        region.killed = False
        host, port = str(region.announced["address"]).rsplit(":", 1)
        self.door.attach(name, host, int(port))
        self.record("region.started", region=name, pid=process.pid, **region.announced)
        self._say(f"region {name}: up, front door {region.announced['address']}")

    async def _link_stores(self) -> None:
        """Every second, make each running region's logs source the others' (new logs, a
        region back from an evacuation); each change recorded."""
        clients: dict[str, Nats] = {}
        try:
            while True:
                await asyncio.sleep(LINK_EVERY_S)
                up = {n: r for n, r in self.clouds.items() if r.up and r.announced.get("store")}
                for name in set(clients) - set(up):
                    await clients.pop(name).close()
                try:
                    for name, region in up.items():
                        if name not in clients:
                            servers = parse_store_url(str(region.announced["store"])).servers
                            clients[name] = await nats.connect(
                                [f"nats://{s}" for s in servers], connect_timeout=1
                            )
                    if len(clients) > 1:
                        jetstreams = {n: c.jetstream(timeout=2.0) for n, c in clients.items()}
                        copies = max(s.replicas for s in self.app.spec.stores)
                        if changed := await replication.link(jetstreams, copies):
                            self.record("store.linked", streams=changed)
                except (nats.errors.Error, OSError, TimeoutError) as exc:
                    log.warning("linking the regions' stores failed", error=str(exc))
                    for client in clients.values():
                        await client.close()
                    clients.clear()
        finally:
            for client in clients.values():
                await client.close()

    async def stop(self) -> None:
        """Stop the door, every region (each drains its instances), the API."""
        if self._linking is not None:
            await cancel_and_wait(self._linking)
        await self.door.close()
        await asyncio.gather(*(r.process.stop(grace_s=30.0) for r in self.clouds.values()))
        if self._server is not None:
            await self._server.close()
        self.record("cloud.stopped", cause="shutdown")
        self.history.close()
        remove_state()

    # -- the API

    async def regions(self) -> list[RegionView]:
        """What each region is now."""
        steering = self.door.steering
        views = []
        for name, region in self.clouds.items():
            status = "UP" if region.up else ("STARTING" if region.process.alive else "DOWN")
            announced = region.announced
            views.append(
                RegionView(
                    name=name,
                    status=status,
                    healthy=steering.healthy[name] and region.up,
                    weight=steering.weights[name],
                    base_weight=steering.base[name],
                    served=self.door.served[name],
                    front_door=str(announced.get("address", "")),
                    control=str(announced.get("control", "")),
                    dashboard=str(announced.get("dashboard", "")),
                    pid=(region.process.pid or 0) if region.process.alive else 0,
                )
            )
        return views

    async def _each(self, ask: Callable[[CloudApi], Any]) -> list[tuple[str, Any]]:
        """`ask` of every region that runs: (region, its answer)."""

        async def one(region: Region) -> tuple[str, Any]:
            api = region.control()
            try:
                return region.name, await ask(api)
            finally:
                await api.aclose()

        return await asyncio.gather(*(one(r) for r in self.clouds.values() if r.up))

    async def ps(self) -> list[InstanceView]:
        return [
            msgspec.structs.replace(view, region=name)
            for name, views in await self._each(lambda api: api.ps())
            for view in views
        ]

    async def groups(self) -> list[GroupView]:
        return [
            msgspec.structs.replace(view, region=name)
            for name, views in await self._each(lambda api: api.groups())
            for view in views
        ]

    async def history_events(self, query: HistoryQuery) -> list[Event]:
        return self.history.events(query)

    async def down(self) -> bool:
        self.stopped.set()
        return True

    async def kong(self, region: str, back: bool = False, step_s: float = -1.0) -> KongView:
        if region not in self.clouds:
            raise KongRefused(f"no region {region!r} (regions: {', '.join(self.clouds)})")
        door = self.app.spec.global_front_door
        assert door is not None
        step = door.kong_step_s if step_s < 0 else step_s
        if self._lock.locked():
            raise KongRefused("an evacuation or a return is already under way")
        async with self._lock:
            if back:
                return await self._return(region, step)
            return await self._evacuate(region, step)

    async def _evacuate(self, name: str, step_s: float) -> KongView:
        region = self.clouds[name]
        others = [r for r in self.clouds.values() if r.name != name and r.up]
        steering = self.door.steering
        if not region.up or steering.weights[name] == 0:
            raise KongRefused(f"region {name} is already evacuated or down")
        if not others:
            raise KongRefused(f"region {name} is the last one running: nowhere to send its users")
        started, began = time.monotonic(), time.time()
        steps: list[KongStep] = []

        def step(kind: str, message: str, **detail: object) -> None:
            fields: dict[str, Any] = {"region": name, **detail}
            self.record(f"kong.{kind}", cause="kong", **fields)
            steps.append(KongStep(time.time(), kind, message))
            self._say(f"kong {name}: {message}")

        step("started", f"evacuating {name} to {', '.join(r.name for r in others)}")
        # Scale out first, as Netflix does: the others take the region's share of the load.
        moved = steering.weights[name]
        remaining = sum(steering.weights[r.name] for r in others) or 1
        factor = (remaining + moved) / remaining
        before: dict[str, int] = {}
        scaled: dict[str, int] = {}
        for other in others:
            api = other.control()
            try:
                for group in await api.groups():
                    count = math.ceil(group.desired * factor)
                    before[f"{other.name}/{group.name}"] = group.desired
                    if count != group.desired:
                        await api.scale(group.name, count)
                        scaled[f"{other.name}/{group.name}"] = count
            finally:
                await api.aclose()
        self._scaled_from[name] = before
        step("scaled", f"scaled out {len(scaled)} groups by {factor:.2g}x", counts=scaled)
        await self._all_up(others)
        step("ready", "every scaled group is UP")
        evacuated_s = None
        base = steering.base[name]
        spec = self.app.spec.global_front_door
        assert spec is not None
        for share in spec.kong_steps:
            await asyncio.sleep(step_s)
            weight = base * share // 100
            steering.set_weight(name, weight)
            step("shifted", f"weight {weight} ({share} % of {base})", weight=weight)
        evacuated_s = time.monotonic() - started
        # Requests already sent there finish first: the region's front door answers within
        # its timeout.
        await asyncio.sleep(step_s)
        region.killed = True
        region.process.signal(signal.SIGKILL)
        await region.process.wait()
        await self.door.detach(name)
        step("killed", f"region {name} killed whole (SIGKILL of its cloud)", pid=region.process.pid)
        return KongView(name, False, began, time.monotonic() - started, evacuated_s, scaled, steps)

    async def _return(self, name: str, step_s: float) -> KongView:
        region = self.clouds[name]
        steering = self.door.steering
        if region.up and steering.weights[name] == steering.base[name]:
            raise KongRefused(f"region {name} runs and has all its traffic")
        started, began = time.monotonic(), time.time()
        steps: list[KongStep] = []

        def step(kind: str, message: str, **detail: object) -> None:
            fields: dict[str, Any] = {"region": name, **detail}
            self.record(f"kong.{kind}", cause="kong-back", **fields)
            steps.append(KongStep(time.time(), kind, message))
            self._say(f"kong --back {name}: {message}")

        step("returning", f"bringing {name} back")
        if not region.up:
            steering.set_weight(name, 0)
            await self._start_region(name)
            self._write_state()
            step("started", f"region {name} runs again")
        base = steering.base[name]
        spec = self.app.spec.global_front_door
        assert spec is not None
        for share in [*reversed(spec.kong_steps[:-1]), 100]:
            weight = base * share // 100
            steering.set_weight(name, weight)
            step("shifted", f"weight {weight} ({share} % of {base})", weight=weight)
            await asyncio.sleep(step_s)
        scaled: dict[str, int] = {}
        for key, count in self._scaled_from.pop(name, {}).items():
            other_name, group = key.split("/", 1)
            other = self.clouds.get(other_name)
            if other is None or not other.up:
                continue
            api = other.control()
            try:
                await api.scale(group, count)
            finally:
                await api.aclose()
            scaled[key] = count
        step("scaled", f"scaled {len(scaled)} groups back", counts=scaled)
        return KongView(name, True, began, time.monotonic() - started, None, scaled, steps)

    async def _all_up(self, regions: list[Region]) -> None:
        give_up = time.monotonic() + SCALE_TIMEOUT_S
        while True:
            pending = []
            for region in regions:
                api = region.control()
                try:
                    pending += [g.name for g in await api.groups() if g.up < g.desired]
                finally:
                    await api.aclose()
            if not pending:
                return
            if time.monotonic() > give_up:
                raise KongRefused(f"scaled groups not UP in {SCALE_TIMEOUT_S:g} s: {pending}")
            await asyncio.sleep(0.2)

    # -- the region view: a page of the regions, beside the regions' own dashboards

    @route("GET", "/")
    async def page(self, request: WebRequest) -> WebResponse:
        """The regions, their weights and traffic; each links to its region's dashboard."""
        rows = "".join(
            f"<tr><td>{v.name}</td><td>{v.status}</td><td>{'yes' if v.healthy else 'no'}</td>"
            f"<td>{v.weight} / {v.base_weight}</td><td>{v.served}</td>"
            f"<td><a href='{v.dashboard}'>{v.dashboard}</a></td></tr>"
            for v in await self.regions()
        )
        events = "".join(
            f"<li>{time.strftime('%H:%M:%S', time.localtime(e.at))} {e.kind}"
            f" {html.escape(json.dumps(e.detail))}</li>"
            for e in self.history.events(HistoryQuery(limit=30))
        )
        page = (
            "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=2>"
            f"<title>{self.app.spec.name}: regions</title><h1>{self.app.spec.name}: regions</h1>"
            f"<p>global front door <a href='{self.door.url}'>{self.door.url}</a></p>"
            "<table border=1 cellpadding=4><tr><th>region<th>status<th>healthy<th>weight"
            f"<th>served<th>dashboard</tr>{rows}</table><h2>history</h2><ul>{events}</ul>"
        )
        return WebResponse(page.encode(), content_type="text/html; charset=utf-8")
