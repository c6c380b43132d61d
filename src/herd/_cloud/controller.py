"""The control plane of the local cloud: runs the registry and every server group as processes,
keeps each of them running, and serves the API the `herd` command drives.

It composes the rooms of `herd._cloud`: `launch` makes each process, `supervise` keeps slots
filled and groups at their count, `views` says what runs, `autoscale` runs the autoscaler loop,
`deploy` and `chaos` do what their names say, and every change is recorded in the `history`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from herd._cloud.app import App, GroupSpec
from herd._cloud.autoscale.loop import Autoscaling
from herd._cloud.autoscale.policy import Decision, initial_count
from herd._cloud.chaos.api import ChaosApi
from herd._cloud.chaos.chaos import Chaos
from herd._cloud.chaos.net import NetChaos
from herd._cloud.dashboard.deploys import deploys_panel
from herd._cloud.dashboard.routes import Dashboard, DashboardRoutes
from herd._cloud.dashboard.servers import servers_panel
from herd._cloud.deploy.deployer import Deployer
from herd._cloud.front_door import FrontDoor
from herd._cloud.history.routes import HistoryRoutes
from herd._cloud.history.store import History
from herd._cloud.interface import (
    CacheView,
    CloudApi,
    DeployView,
    GroupView,
    InstanceView,
    InvalidCount,
    StoreView,
    UnknownGroup,
)
from herd._cloud.launch import caches, stores
from herd._cloud.launch.launcher import Launcher
from herd._cloud.network import isolated
from herd._cloud.network.plan import NetworkPlan
from herd._cloud.state import remove_state, write_state
from herd._cloud.supervise.backoff import Backoff
from herd._cloud.supervise.groups import ServerGroups
from herd._cloud.supervise.slot import Slot, Supervisor
from herd._cloud.traces.api import TracesApi
from herd._cloud.traces.collector import TraceCollector
from herd._cloud.traces.flow import FLOW_SERVED, Flow
from herd._cloud.traces.store import TraceStore
from herd._cloud.views import Views
from herd._cloud.watch import InstanceWatch
from herd._model.identity import CONTROL, FRONT_DOOR
from herd._model.instance import Status
from herd._process.registry_client import RegistryResolver
from herd._registry.etcd_cluster import ETCD, local_members
from herd._server.server import Server
from herd._trace import setup as trace_setup
from herd._trace.recent import PROCESS_SPANS
from herd._wire import tls

Say = Callable[[str], None]


class Controller(DashboardRoutes, HistoryRoutes, ChaosApi, TracesApi, CloudApi):
    """Runs one app on this machine, and serves its API and dashboard."""

    def __init__(
        self, app: App, *, say: Say | None = None, state: bool = True, token: str | None = None
    ) -> None:
        """`state` False: a region's cloud, which the global control plane runs and names in
        the state file (docs/regions.md); it writes none of its own, and takes its admin
        `token` from that plane."""
        self.app = app
        self._state = state
        self.token = token or secrets.token_urlsafe(24)
        self._say = say or (lambda _: None)
        self._cache_servers = caches.plan(app)
        self._store_members = stores.plan(app)
        self.launcher = Launcher(app, self._cache_servers, self._store_members)
        self.history = History(app.run_dir / "history.sqlite", quiet=[FLOW_SERVED])
        self.record = self.history.record
        """Where the control plane and its parts record (and log) every change they make."""
        self.chaos = Chaos(self)
        self.net_chaos = NetChaos(self)
        self.watch = InstanceWatch(self)
        self.supervisor = Supervisor(
            self.history, zone_open=self.chaos.zone_open, tls_dir=self.launcher.tls_dir
        )
        self.server_groups = ServerGroups(
            app.spec.groups,
            app.spec.zones,
            desired={g.name: initial_count(g) for g in app.spec.groups},
            supervisor=self.supervisor,
            recorder=self.history,
            launch=self.launcher.instance,
            log_dir=self._log_dir,
        )
        self.autoscaling = Autoscaling(
            self.server_groups, up=lambda slot: self.views.status(slot) == Status.UP
        )
        self.views = Views(self.server_groups, self.autoscaling)
        self._registry: Slot | None = None
        self._etcd: list[Slot] = []
        """The members of the local etcd cluster (`registry = "etcd"`), started first."""
        self._caches: list[Slot] = []
        """One memcached per cache and zone, started before the instances that use them."""
        self._stores: list[Slot] = []
        """One nats-server per zone when the app has `[[stores]]`, started before the setup
        commands and instances that use them."""
        self.network: NetworkPlan | None = None
        """The isolated network (`--network isolated`) once made; None on loopback."""
        self.resolver: RegistryResolver | None = None
        self.front_door: FrontDoor | None = None
        self.traces_kept = TraceStore()
        self._collector = TraceCollector(
            self.traces_kept, self._addresses, PROCESS_SPANS, Flow(self.history)
        )
        self.deployer: Deployer | None = None
        self._server: Server | None = None
        self.stopped = asyncio.Event()
        self.dashboard = Dashboard(self)
        self.dashboard.gatherer.add_panel(self.chaos_panel)
        self.dashboard.gatherer.add_panel(self.history_panel)
        self.dashboard.gatherer.add_panel(self.deploys_panel)
        if self._cache_servers or self._store_members:
            self.dashboard.gatherer.add_panel(self.servers_panel)
        self.dashboard.gatherer.add_panel(self.traces_panel)

    async def deploys_panel(self) -> Mapping[str, Any]:
        """The dashboard's panel: every deploy's route, step, judge and decision."""
        return deploys_panel(self.deployer.views() if self.deployer is not None else [])

    async def servers_panel(self) -> Mapping[str, Any]:
        """The dashboard's panel: every cache server and store member, as `herd ps` shows
        them."""
        return servers_panel(await self.caches(), await self.stores())

    @property
    def autoscaled(self) -> Sequence[tuple[float, str, Decision]]:
        """The latest autoscale decisions that changed a count: (`time.monotonic()`, group,
        decision), oldest first."""
        return self.autoscaling.decisions

    @property
    def registry_address(self) -> str:
        """The registry's `host:port`."""
        return self.launcher.registry_address

    @property
    def control_address(self) -> str:
        """The control API's `host:port`."""
        return f"127.0.0.1:{self.app.spec.control_port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard's address (read-only; actions ask for the token)."""
        return f"http://{self.control_address}/"

    @property
    def _log_dir(self) -> Path:
        return self.app.run_dir / "logs"

    async def start(self) -> None:
        """Set up, start the registry, every group, the front door and the control API."""
        spec = self.app.spec
        self.app.run_dir.mkdir(parents=True, exist_ok=True)
        if spec.network == "isolated":
            await self._isolate()
        await self.launcher.new_authority()
        control = self.launcher.identity(CONTROL, CONTROL, CONTROL)
        # The control plane's own drivers (the registry watch), scrapes and dashboard use it.
        tls.set_client_context(tls.client_context(control))
        await self._start_stores()
        # The registry (a process that takes a second to start) needs neither the app's setup
        # nor the caches: it starts while they run.
        registry = asyncio.create_task(self._start_registry())
        try:
            for command in spec.setup:
                self._say(f"setup: {' '.join(command)}")
                await self.launcher.setup(command)
            self.record("cloud.started", app=spec.name, pid=os.getpid())
            for name, group in self.server_groups.specs.items():
                self.record(
                    "group.created",
                    cause="start",
                    group=name,
                    service=group.service,
                    version=group.version,
                    desired=self.server_groups.desired[name],
                )
            await self._start_caches()
        except BaseException:
            registry.cancel()
            await asyncio.gather(registry, return_exceptions=True)
            raise
        await registry
        self.resolver = self.views.resolver = RegistryResolver(self.registry_address)
        await self.resolver.start()
        self.deployer = Deployer(self, spec.deploy)
        self.supervisor.forget = self.deployer.forget
        self.deployer.start()
        for name in self.server_groups.specs:
            self.server_groups.fit(name)
        slots = self.server_groups.instance_slots()
        await asyncio.gather(*(slot.tried.wait() for slot in slots))
        running = sum(1 for slot in slots if slot.filled)
        self._say(f"{running} of {len(slots)} instances started in zones {', '.join(spec.zones)}")
        if spec.front_door is not None:
            await self._start_front_door()
        # The fixed cap alone: the dashboard's streams and the long control calls (a deploy)
        # hold their places by design, which an adaptive limit would read as queueing.
        self._server = Server(self, port=spec.control_port, admin_token=self.token, limit="fixed")
        await self._server.start()
        self._say(f"dashboard {self.dashboard_url}")
        if self._state:
            write_state(
                {
                    "app": spec.name,
                    "control": self.control_address,
                    "token": self.token,
                    "front_door": self.front_door.url if self.front_door else None,
                    "tls": str(self.launcher.tls_dir / CONTROL),
                }
            )
        await self.chaos.start()
        self.watch.start()
        self.autoscaling.start()

    async def _isolate(self) -> None:
        """Make the isolated network; every process from now on runs in it."""
        self.network = await isolated.create_async(self.app.run_dir, self.app.spec.zones)
        isolated.mark(self.network.id)
        self._cache_servers = self.launcher.isolate(self.network)
        await self.net_chaos.start(self.network)
        zones = {zone: self.network.address(zone) for zone in self.network.zones}
        self.record(
            "network.created",
            cloud=self.network.id,
            namespaces=self.network.namespaces,
            registry=self.network.core_address,
            control=self.network.host_address,
            **{f"zone_{zone}": address for zone, address in zones.items()},
        )
        shown = ", ".join(f"{zone} {address}" for zone, address in zones.items())
        self._say(f"network isolated: a namespace per zone ({shown}), {self.network.network}")

    async def _start_etcd(self) -> None:
        """Start the local etcd cluster, every member in a slot of its own, on a fresh data
        directory: like the embedded registry's table, a cloud's instances start from none."""
        await asyncio.to_thread(shutil.rmtree, self.launcher.etcd_data, ignore_errors=True)
        self.launcher.new_etcd_cluster()
        for index, member in enumerate(local_members(self.app.spec.etcd_port)):
            name = f"etcd-{member.name}"
            log = self._log_dir / f"{name}.log"
            launch = functools.partial(self.launcher.etcd_member, name, index, log)
            # A member that lost its quorum comes back within a second, like the registry.
            self._etcd.append(Slot(name, log, launch, index=index, backoff=Backoff(most_s=1.0)))
        await self.supervisor.fill(self._etcd, "etcd")
        endpoints = ", ".join(self.launcher.etcd_endpoints())
        self._say(f"etcd: {len(self._etcd)} members on {endpoints}")

    async def _start_caches(self) -> None:
        """Start every cache's memcached servers, each in a slot of its own."""
        for server in self._cache_servers:
            log = self._log_dir / f"{server.id}.log"
            launch = functools.partial(self.launcher.cache, server, log)
            self._caches.append(Slot(server.id, log, launch, cache=server))
        await self.supervisor.fill(self._caches, "memcached")
        for server in self._cache_servers:
            self._say(f"cache {server.name} zone {server.zone}: memcached on {server.address}")

    async def _start_stores(self) -> None:
        """Start the store cluster's members, each in a slot of its own, all at once: a member
        is healthy only once JetStream has a quorum of them."""
        for member in self._store_members:
            name = stores.slot_name(member)
            log = self._log_dir / f"{name}.log"
            launch = functools.partial(self.launcher.store_member, member, log)
            details = {"member": member.name, "zone": member.zone, "address": member.endpoint}
            self._stores.append(
                Slot(
                    name,
                    log,
                    launch,
                    zone=member.zone,
                    store=member,
                    started_kind="store.started",
                    details=details,
                )
            )
        if self._stores:
            await self.supervisor.fill(self._stores, "nats-server")
            endpoints = ", ".join(m.endpoint for m in self._store_members)
            self._say(f"stores: NATS JetStream, a member per zone on {endpoints}")

    async def _start_registry(self) -> None:
        """Start the registry, and first the etcd cluster it keeps its table in, if it does."""
        if self.app.spec.registry == ETCD:
            await self._start_etcd()
        log = self._log_dir / "registry.log"
        self._registry = Slot(
            "registry",
            log,
            functools.partial(self.launcher.registry, log),
            started_kind="registry.started",
            # Without a registry no change reaches any driver, and it starts in a fraction of a
            # second: even a crash-looping one is tried again every second.
            backoff=Backoff(most_s=1.0),
        )
        await self.supervisor.fill([self._registry], "the registry")
        self._say(f"registry on {self.registry_address}")

    async def _start_front_door(self) -> None:
        door = self.app.spec.front_door
        assert door is not None and self.resolver is not None
        self.front_door = FrontDoor(
            door.service,
            self.resolver,
            host=door.host,
            port=door.port,
            timeout_s=door.timeout_s,
            cohorts=door.cohorts,
            criticality=door.criticality,
            limit=door.limit,
            max_inflight=door.max_inflight,
            traces_per_s=door.traces_per_s,
            tls=tls.client_context(self.launcher.identity(FRONT_DOOR, FRONT_DOOR, FRONT_DOOR)),
            kept=self.traces_kept,
        )
        # The front door's spans start the traces the control plane keeps by its tail rule.
        trace_setup.process_provider({"service.name": FRONT_DOOR}, share=None)
        await self.front_door.start()
        self._collector.start()
        self._say(f"front door {self.front_door.url} → {door.service}")

    async def stop(self) -> None:
        """Stop everything: instances drain, then the registry goes."""
        if self.deployer is not None:
            await self.deployer.close()
        # First: it would otherwise start instances while the others stop.
        await self.autoscaling.close()
        await self.chaos.close()
        await self.net_chaos.close()
        await self.watch.close()
        slots = self.server_groups.instance_slots()
        registry = [self._registry] if self._registry else []
        await self.supervisor.unsupervise(
            [*slots, *registry, *self._etcd, *self._caches, *self._stores]
        )
        if self.front_door is not None:
            await self.front_door.close()
            await self._collector.stop()
            trace_setup.uninstall()
        await self.supervisor.stop(slots, cause="shutdown")
        if self.resolver is not None:
            await self.resolver.close()
        await self.supervisor.stop(registry)
        await self.supervisor.stop([*self._etcd, *self._caches, *self._stores])
        if self._server is not None:
            # Open dashboard streams end first: the server's close waits for its handlers.
            await self.dashboard.close()
            await self._server.close()
        if self.network is not None:
            removed = await asyncio.to_thread(isolated.remove, self.network.id)
            isolated.unmark(self.network.id)
            self.record("network.removed", cloud=self.network.id, removed=removed)
        self.record("cloud.stopped", cause="shutdown")
        self.history.close()
        if self._state:
            remove_state()

    async def _addresses(self) -> list[str]:
        """Where every running instance answers (for the spans of kept traces)."""
        return [view.address for view in await self.ps() if view.address]

    # -- the API: `herd ps`, `herd scale`, `herd kill`, `herd down`

    async def ps(self) -> list[InstanceView]:
        return self.views.instances()

    async def groups(self) -> list[GroupView]:
        return self.views.groups()

    async def caches(self) -> list[CacheView]:
        return self.views.caches(self._caches)

    async def stores(self) -> list[StoreView]:
        return self.views.stores(self._stores)

    async def scale(self, group: str, count: int) -> GroupView:
        if group not in self.server_groups.specs:
            raise UnknownGroup(f"no server group {group!r}", group=group)
        if count < 0:
            raise InvalidCount("a group cannot have fewer than 0 instances", count=count)
        self.server_groups.scale(group, count, cause="scale")
        return self.views.group(group)

    async def kill(self, instance: str) -> InstanceView:
        return self.terminate(instance, cause="kill")

    def terminate(self, instance: str, *, cause: str) -> InstanceView:
        """SIGKILL a running instance (its slot starts another at once), recording `cause`."""
        slot = self.server_groups.running(instance)
        view = self.views.instance(slot)
        assert view is not None
        slot.kill(cause=cause)
        return view

    def terminate_store(self, zone: str, *, cause: str) -> str | None:
        """SIGKILL the store member of `zone` if one runs (its slot starts another once the
        zone is open), recording `cause`; the member's id, or None."""
        for slot in self._stores:
            process = slot.process
            if slot.zone == zone and process is not None and process.alive:
                self.record("store.terminated", cause=cause, pid=process.pid, **slot.details)
                slot.kill(cause=cause)
                return slot.name
        return None

    async def down(self) -> bool:
        self.stopped.set()
        return True

    # -- deploys (herd._cloud.deploy decides; these are its hands here)

    def _deploys(self) -> Deployer:
        if self.deployer is None:
            raise RuntimeError("the control plane has not started")
        return self.deployer

    async def deploy(
        self, service: str, version: str, strategy: str, settings: dict[str, str]
    ) -> DeployView:
        return await self._deploys().deploy(service, version, strategy, settings)

    async def deploys(self) -> list[DeployView]:
        return self._deploys().views()

    async def confirm(self, service: str) -> DeployView:
        return await self._deploys().confirm(service)

    async def abort(self, service: str) -> DeployView:
        return await self._deploys().abort(service)

    async def rollback(self, service: str) -> DeployView:
        return await self._deploys().rollback(service)

    def group_specs(self) -> list[GroupSpec]:
        """Every group running now: the app file's and the deploys'."""
        return list(self.server_groups.specs.values())

    def add_group(self, spec: GroupSpec, count: int) -> None:
        """Start a new server group of `count` instances beside the others."""
        self.server_groups.add(spec, count, cause="deploy")
        self.autoscaling.add(spec)

    def set_count(self, group: str, count: int) -> None:
        """Change a group's desired count, as `herd scale` does."""
        self.server_groups.scale(group, count, cause="deploy")

    def remove_group(self, group: str) -> None:
        """Retire every instance of the group (each deregisters and drains) and forget it."""
        self.server_groups.remove(group, cause="deploy")
        self.autoscaling.remove(group)

    def addresses(self, group: str) -> list[str]:
        """Where the group's running, ready instances listen."""
        return self.server_groups.addresses(group)
