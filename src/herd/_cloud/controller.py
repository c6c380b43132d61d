"""The control plane of the local cloud: runs the registry and every server group as processes,
keeps each of them running (restarting what exits, backing off what keeps crashing), and serves
the API the `herd` command drives.

Every process fills a **slot**: the registry's, or one of a group's `instances`. A slot is kept
filled by a task of its own (start, wait for the exit, back off, start again), so one slot's
trouble never stalls another's, and every process that fills a slot in turn writes to the slot's
one log file.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from herd._cloud import caches
from herd._cloud.app import App, GroupSpec
from herd._cloud.autoscale import Autoscaler, Decision, initial_count
from herd._cloud.ca import CertificateAuthority
from herd._cloud.chaos import Chaos, ChaosApi
from herd._cloud.dashboard.deploys import deploys_panel
from herd._cloud.dashboard.routes import Dashboard, DashboardRoutes
from herd._cloud.deploy import Deployer
from herd._cloud.front_door import FrontDoor
from herd._cloud.history import History
from herd._cloud.history_api import HistoryRoutes
from herd._cloud.interface import (
    CacheView,
    CloudApi,
    DeployView,
    GroupView,
    InstanceView,
    InvalidCount,
    UnknownGroup,
    UnknownInstance,
)
from herd._cloud.process import Process
from herd._cloud.watch import InstanceWatch
from herd._model.identity import CONTROL, FRONT_DOOR, REGISTRY, Identity
from herd._process.config import ALLOW, TLS_DIR, child_env, settings
from herd._process.registry_client import RegistryResolver
from herd._registry.etcd_cluster import (
    ETCD,
    ETCD_SCHEME,
    LOCAL_MEMBERS,
    etcd_endpoints,
    local_members,
)
from herd._server.server import Server
from herd._wire import tls
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.cloud")

Say = Callable[[str], None]

#: How long a process may take from exec to its ready line.
START_TIMEOUT_S = 30.0
#: How often autoscaled groups' figures are gathered and their autoscalers asked.
AUTOSCALE_INTERVAL_S = 1.0
#: An instance (and its group) whose slot waits out a back-off after crashing again soon after a
#: restart.
CRASHLOOP = "CRASHLOOP"
#: A group whose every desired instance is UP; PENDING while some are on their way.
READY = "READY"
PENDING = "PENDING"
#: A group a deploy took out of rotation: alive, OUT_OF_SERVICE, kept for a rollback.
DISABLED = "DISABLED"
#: Settings of the shell that started `herd up`, which no child inherits: each process gets
#: its own identity, and its own allow rules.
_NOT_INHERITED = (TLS_DIR, ALLOW)
#: /proc counts a process's CPU time in these per second.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def state_file() -> Path:
    """Where `herd up` tells other `herd` commands how to reach it (and its admin token)."""
    return settings().home / "cloud.json"


class Backoff:
    """How long a slot waits before starting a process again after one exited.

    A process that had run for `forgive_after_s` (or the first one) is replaced at once: one
    crash is no loop. One that exits sooner after its restart is in a crash loop: the next start
    waits `first_s`, doubling with each such exit up to `most_s`, so a broken build costs a
    start every `most_s` rather than a CPU.
    """

    def __init__(
        self, first_s: float = 0.5, most_s: float = 30.0, forgive_after_s: float = 60.0
    ) -> None:
        self.first_s = first_s
        self.most_s = most_s
        self.forgive_after_s = forgive_after_s
        self.failures = 0
        """Exits since the last process that ran for `forgive_after_s`."""
        self.delay_s = 0.0

    def crashed(self, ran_s: float) -> float:
        """Count an exit after `ran_s` seconds of running; the wait before the next start."""
        if ran_s >= self.forgive_after_s:
            self.failures = 0
        self.failures += 1
        if self.failures == 1:
            self.delay_s = 0.0
        else:
            self.delay_s = min(self.most_s, max(self.first_s, self.delay_s * 2))
        return self.delay_s

    @property
    def looping(self) -> bool:
        """Whether it exited again soon after a restart: its restarts back off."""
        return self.failures >= 2


@dataclasses.dataclass(eq=False)
class _Slot:
    """One place the control plane keeps filled: the registry's, or one instance of a group."""

    name: str
    log: Path
    group: GroupSpec | None = None
    """None for the registry, etcd members and cache servers."""
    zone: str = ""
    index: int = 0
    process: Process | None = None
    """The process filling the slot now, or the last one."""
    backoff: Backoff = dataclasses.field(default_factory=Backoff)
    cache: caches.CacheServer | None = None
    """The memcached server the slot runs, for a cache's slot."""
    replace: bool = False
    """Killed on purpose (`herd kill`): start the next one at once; no crash to count."""
    cause: str = ""
    """Why its process is ending, for the history ("": it crashed)."""
    tried: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set once the first process is ready or has failed to start."""
    task: asyncio.Task[None] | None = None


class Controller(DashboardRoutes, HistoryRoutes, ChaosApi, CloudApi):
    """Runs one app on this machine, and serves its API and dashboard."""

    def __init__(self, app: App, *, say: Say | None = None) -> None:
        self.app = app
        self.token = secrets.token_urlsafe(24)
        self._authority = CertificateAuthority(app.spec.name)
        self._say = say or (lambda _: None)
        self._groups = {g.name: g for g in app.spec.groups}
        self._desired = {g.name: initial_count(g) for g in app.spec.groups}
        self._autoscalers = {
            g.name: Autoscaler(g.autoscale) for g in app.spec.groups if g.autoscale is not None
        }
        self._autoscale_reasons: dict[str, str] = {}
        self.autoscaled: collections.deque[tuple[float, str, Decision]] = collections.deque(
            maxlen=1000
        )
        """The latest autoscale decisions that changed a count: (`time.monotonic()`, group,
        decision), oldest first."""
        self._cpu_seen: dict[int, tuple[int, float]] = {}
        """pid -> (CPU clock ticks used, monotonic time) at the last reading."""
        self._autoscaling: asyncio.Task[None] | None = None
        self._slots: dict[str, list[_Slot]] = {name: [] for name in self._groups}
        self._retiring: set[_Slot] = set()
        self._sequence = itertools.count(1)
        self._registry: _Slot | None = None
        self._etcd: list[_Slot] = []
        """The members of the local etcd cluster (`registry = "etcd"`), started first."""
        self._etcd_token = ""
        self._cache_servers = caches.plan(app)
        self._caches: list[_Slot] = []
        """One memcached per cache and zone, started before the instances that use them."""
        self.resolver: RegistryResolver | None = None
        self.front_door: FrontDoor | None = None
        self.deployer: Deployer | None = None
        self._server: Server | None = None
        self._chores: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()
        self.dashboard = Dashboard(self)
        self.history = History(app.run_dir / "history.sqlite")
        self._live: set[str] = set()
        """Instances launched whose end the history has not recorded yet."""
        self.chaos = Chaos(self)
        self.watch = InstanceWatch(self)
        self.dashboard.gatherer.add_panel(self.chaos_panel)
        self.dashboard.gatherer.add_panel(self.history_panel)
        self.dashboard.gatherer.add_panel(self.deploys_panel)

    async def deploys_panel(self) -> Mapping[str, Any]:
        """The dashboard's panel: every deploy's route, step, judge and decision."""
        return deploys_panel(self.deployer.views() if self.deployer is not None else [])

    def record(
        self,
        kind: str,
        *,
        cause: str = "",
        group: str | None = None,
        instance: str | None = None,
        **detail: object,
    ) -> None:
        """Record one change in the cloud's history (and the log)."""
        self.history.record(kind, cause=cause, group=group, instance=instance, **detail)
        named = {"cause": cause, "group": group, "instance": instance}
        log.info(kind, **{k: v for k, v in named.items() if v}, **detail)

    @property
    def registry_address(self) -> str:
        """The registry's `host:port`."""
        return f"127.0.0.1:{self.app.spec.registry_port}"

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

    @property
    def tls_dir(self) -> Path:
        """Where every process's identity is written, one directory each (mode 700)."""
        return self.app.run_dir / "tls"

    def _identity(self, service: str, group: str, instance: str) -> Path:
        """Issue an identity's certificate into its own directory; the directory."""
        identity = Identity(self.app.spec.name, service, group, instance)
        return self._authority.write(identity, self.tls_dir / instance)

    async def start(self) -> None:
        """Set up, start the registry, every group, the front door and the control API."""
        spec = self.app.spec
        self.app.run_dir.mkdir(parents=True, exist_ok=True)
        # A new authority per cloud: the certificates of a previous one are worthless now.
        await asyncio.to_thread(shutil.rmtree, self.tls_dir, ignore_errors=True)
        self.tls_dir.mkdir(mode=0o700)
        control = self._identity(CONTROL, CONTROL, CONTROL)
        # The control plane's own drivers (the registry watch), scrapes and dashboard use it.
        tls.set_client_context(tls.client_context(control))
        for command in spec.setup:
            expanded = [self.app.expand(part) for part in command]
            if expanded and expanded[0] == "python":
                expanded[0] = sys.executable
            self._say(f"setup: {' '.join(command)}")
            await asyncio.to_thread(
                subprocess.run, expanded, cwd=self.app.root, env=self._base_env(), check=True
            )
        self.record("cloud.started", app=spec.name, pid=os.getpid())
        for name, group in self._groups.items():
            self.record(
                "group.created",
                cause="start",
                group=name,
                service=group.service,
                version=group.version,
                desired=self._desired[name],
            )
        # Without a registry no change reaches any driver, and it starts in a fraction of a
        # second: even a crash-looping one is tried again every second.
        if spec.registry == ETCD:
            await self._start_etcd()
        await self._start_caches()
        registry_backoff = Backoff(most_s=1.0)
        self._registry = _Slot("registry", self._log_dir / "registry.log", backoff=registry_backoff)
        self._supervise(self._registry)
        await self._registry.tried.wait()
        if not self._filled(self._registry):
            raise RuntimeError(f"the registry did not start: see {self._registry.log}")
        self._say(f"registry on {self.registry_address}")
        self.resolver = RegistryResolver(self.registry_address)
        await self.resolver.start()
        self.deployer = Deployer(self, spec.deploy)
        self.deployer.start()
        for name in self._groups:
            self._fit(name)
        await asyncio.gather(*(slot.tried.wait() for slot in self._instance_slots()))
        slots = self._instance_slots()
        running = sum(1 for slot in slots if self._filled(slot))
        self._say(f"{running} of {len(slots)} instances started in zones {', '.join(spec.zones)}")
        if spec.front_door is not None:
            door = spec.front_door
            self.front_door = FrontDoor(
                door.service,
                self.resolver,
                host=door.host,
                port=door.port,
                timeout_s=door.timeout_s,
                cohorts=door.cohorts,
                tls=tls.client_context(self._identity(FRONT_DOOR, FRONT_DOOR, FRONT_DOOR)),
            )
            await self.front_door.start()
            self._say(f"front door {self.front_door.url} → {door.service}")
        self._server = Server(self, port=spec.control_port, admin_token=self.token)
        await self._server.start()
        self._say(f"dashboard {self.dashboard_url}")
        self._write_state()
        await self.chaos.start()
        self.watch.start()
        if self._autoscalers:
            self._autoscaling = asyncio.create_task(
                self._autoscale(), context=contextvars.Context()
            )

    async def stop(self) -> None:
        """Stop everything: instances drain, then the registry goes."""
        if self.deployer is not None:
            await self.deployer.close()
        if self._autoscaling is not None:
            # First: it would otherwise start instances while the others stop.
            self._autoscaling.cancel()
            await asyncio.gather(self._autoscaling, return_exceptions=True)
        await self.chaos.close()
        await self.watch.close()
        slots = self._instance_slots()
        supervised = [
            *slots,
            *([self._registry] if self._registry else []),
            *self._etcd,
            *self._caches,
        ]
        for slot in supervised:
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(
            *(slot.task for slot in supervised if slot.task), return_exceptions=True
        )
        if self.front_door is not None:
            await self.front_door.close()
        for slot in slots:
            slot.cause = "shutdown"
        await asyncio.gather(
            *(slot.process.stop() for slot in slots if slot.process), *self._chores
        )
        for slot in slots:
            self._ended(slot, slot.process.returncode if slot.process else None)
        if self.resolver is not None:
            await self.resolver.close()
        if self._registry is not None and self._registry.process is not None:
            await self._registry.process.stop()
        await asyncio.gather(
            *(slot.process.stop() for slot in [*self._etcd, *self._caches] if slot.process)
        )
        if self._server is not None:
            # Open dashboard streams end first: the server's close waits for its handlers.
            await self.dashboard.close()
            await self._server.close()
        self.record("cloud.stopped", cause="shutdown")
        self.history.close()
        self._remove_state()

    def _base_env(self) -> dict[str, str]:
        env = {k: self.app.expand(v) for k, v in self.app.spec.env.items()}
        path = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{self.app.root}{os.pathsep}{path}" if path else str(self.app.root)
        env.update(caches.environment(self._cache_servers))
        return env

    def _write_state(self) -> None:
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "app": self.app.spec.name,
            "control": self.control_address,
            "token": self.token,
            "pid": os.getpid(),
            "front_door": self.front_door.url if self.front_door else None,
            "tls": str(self.tls_dir / CONTROL),
        }
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(state))

    def _remove_state(self) -> None:
        """Remove the state file if this cloud wrote it: one that failed to start must not cut
        the running cloud off from the `herd` command."""
        path = state_file()
        try:
            ours = json.loads(path.read_text()).get("pid") == os.getpid()
        except (OSError, ValueError, AttributeError):
            return
        if ours:
            path.unlink(missing_ok=True)

    # -- slots

    def _instance_slots(self) -> list[_Slot]:
        return [slot for slots in self._slots.values() for slot in slots]

    @staticmethod
    def _filled(slot: _Slot) -> bool:
        return slot.process is not None and slot.process.alive and slot.process.ready.is_set()

    def _fit(self, name: str) -> None:
        """Add or retire slots until the group has its desired count."""
        group, slots = self._groups[name], self._slots[name]
        while len(slots) < self._desired[name]:
            self._supervise(self._add_slot(group))
        # The last added go first: the ones left are still spread over the zones.
        for slot in sorted(slots, key=lambda s: s.index)[self._desired[name] :]:
            slots.remove(slot)
            self._retiring.add(slot)
            self._chore(self._retire(slot))

    def _add_slot(self, group: GroupSpec) -> _Slot:
        slots = self._slots[group.name]
        # A retiring slot's process still writes to its log until it has drained.
        taken = {s.index for s in slots} | {
            s.index for s in self._retiring if s.group is not None and s.group.name == group.name
        }
        index = next(i for i in itertools.count() if i not in taken)
        counts = {zone: 0 for zone in self.app.spec.zones}
        for slot in slots:
            counts[slot.zone] += 1
        zone = min(self.app.spec.zones, key=lambda z: counts[z])
        name = f"{group.name}.slot{index}"
        slot = _Slot(name, self._log_dir / f"{name}.log", group, zone, index)
        slots.append(slot)
        return slot

    def _supervise(self, slot: _Slot) -> None:
        # A fresh context: created while serving `scale`, the task would inherit its deadline.
        slot.task = asyncio.create_task(self._keep(slot), context=contextvars.Context())

    def _chore(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, context=contextvars.Context())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _retire(self, slot: _Slot) -> None:
        try:
            if slot.task is not None:
                slot.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.task
            if slot.process is not None:
                slot.cause = slot.cause or "scale"
                await slot.process.stop()
                self._ended(slot, slot.process.returncode)
        finally:
            self._retiring.discard(slot)

    async def _keep(self, slot: _Slot) -> None:
        """Keep `slot` filled until cancelled: start a process, wait for its exit, back off,
        and again. Nothing that goes wrong in one round ends the loop: a supervisor that died
        would leave the slot empty for good, and silently."""
        while True:
            if slot.group is not None:
                await self.chaos.zone_open(slot.zone)
            began = time.monotonic()
            try:
                await self._run(slot)
            except Exception as exc:
                # A plain traceback: a rich one would print local variables, which need not
                # end up in a log.
                log.error(
                    "start failed",
                    slot=slot.name,
                    error=str(exc),
                    exception=traceback.format_exc(),
                )
            slot.tried.set()
            if slot.replace:
                slot.replace = False
                continue
            delay = slot.backoff.crashed(time.monotonic() - began)
            if delay:
                log.warning(
                    "crash loop: backing off",
                    slot=slot.name,
                    crashes=slot.backoff.failures,
                    delay_s=delay,
                )
            await asyncio.sleep(delay)

    async def _run(self, slot: _Slot) -> None:
        """One process in `slot`, from its start to its exit."""
        process = slot.process = self._spawn(slot)
        with process.log_path.open("a") as log_file:
            # One file holds every process of the slot in turn: say where each one begins.
            log_file.write(f"--- herd: {process.name} starts ({time.strftime('%F %T')})\n")
        try:
            await process.start()
            self._started(slot)
            ready = await process.wait_ready(START_TIMEOUT_S)
            slot.tried.set()
            if not ready:
                log.warning(
                    "not ready",
                    instance=process.name,
                    code=process.returncode,  # None: still silent after START_TIMEOUT_S
                    log=str(process.log_path),
                )
                slot.cause = "not-ready"
                await process.stop(grace_s=1.0)
                self._ended(slot, process.returncode)
                return
            if slot.group is not None:
                self.record("instance.up", group=slot.group.name, instance=process.name)
            code = await process.wait()
            log.info("exited", instance=process.name, code=code)
            self._ended(slot, code)
        finally:
            if slot.group is not None:
                # An instance's key is of no use to anyone once it is gone (its successor gets
                # an identity of its own).
                shutil.rmtree(self.tls_dir / process.name, ignore_errors=True)

    def _started(self, slot: _Slot) -> None:
        """Record a process's launch: an instance's, or the registry's (again, after a crash)."""
        process = slot.process
        assert process is not None
        slot.cause = ""
        if slot is self._registry:
            self.record("registry.started", pid=process.pid)
        elif slot.group is not None:
            self._live.add(process.name)
            self.record(
                "instance.launched",
                group=slot.group.name,
                instance=process.name,
                zone=slot.zone,
                pid=process.pid,
                version=slot.group.version,
            )

    def _ended(self, slot: _Slot, code: int | None) -> None:
        """Record the end of the slot's instance, once, with why it ended."""
        process = slot.process
        if process is None or slot.group is None or process.name not in self._live:
            return
        self._live.discard(process.name)
        if self.deployer is not None:
            # A killed process never deregisters: the control plane, which saw it end, does.
            self._chore(self.deployer.forget(process.name))
        self.record(
            "instance.terminated",
            cause=slot.cause or "crash",
            group=slot.group.name,
            instance=process.name,
            zone=slot.zone,
            code=code,
        )

    def _spawn(self, slot: _Slot) -> Process:
        slot.log.parent.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        group = slot.group
        if slot in self._etcd:
            return self._etcd_member(slot)
        if slot.cache is not None:
            command = slot.cache.command()
            return Process(slot.name, command, {}, self.app.root, slot.log, base_env=inherited)
        if group is None:
            command = [sys.executable, "-m", "herd._registry.service"]
            command += ["--port", str(self.app.spec.registry_port)]
            if etcd := self._etcd_endpoints():
                command += ["--etcd", ",".join(etcd)]
            env = {
                **self._base_env(),
                TLS_DIR: str(self._identity(REGISTRY, REGISTRY, REGISTRY)),
            }
            return Process("registry", command, env, self.app.root, slot.log, base_env=inherited)
        instance = f"{group.name}-{slot.zone}{next(self._sequence)}"
        env = {
            **self._base_env(),
            **{k: self.app.expand(v) for k, v in group.env.items()},
            **child_env(
                registry=self.registry_address,
                zone=slot.zone,
                group=group.name,
                version=group.version,
                instance=instance,
                tls_dir=self._identity(group.service, group.name, instance),
            ),
        }
        allow = self._allow(group)
        if allow is not None:
            env[ALLOW] = ",".join(sorted(allow))
        command = [sys.executable, "-m", group.module, *(self.app.expand(a) for a in group.args)]
        return Process(instance, command, env, self.app.root, slot.log, base_env=inherited)

    def _allow(self, group: GroupSpec) -> set[str] | None:
        """Who may call the group's instances: its allow rules, and the front door when the
        group serves the front door's service."""
        if group.allow is None:
            return None
        door = self.app.spec.front_door
        extra = {FRONT_DOOR} if door is not None and door.service == group.service else set()
        return {*group.allow, *extra}

    # -- etcd

    def _etcd_endpoints(self) -> list[str]:
        """Where the registry keeps instances: etcd's members, or none (its own memory)."""
        registry = self.app.spec.registry
        if registry == ETCD:
            return [member.endpoint for member in local_members(self.app.spec.etcd_port)]
        if registry.startswith(ETCD_SCHEME):
            return etcd_endpoints(registry)
        return []

    async def _start_etcd(self) -> None:
        """Start the local etcd cluster, every member in a slot of its own, on a fresh data
        directory: like the embedded registry's table, a cloud's instances start from none."""
        data = self.app.run_dir / "etcd"
        await asyncio.to_thread(shutil.rmtree, data, ignore_errors=True)
        self._etcd_token = f"herd-{self.app.spec.name}-{secrets.token_hex(4)}"
        for index, member in enumerate(local_members(self.app.spec.etcd_port)):
            slot = _Slot(
                f"etcd-{member.name}",
                self._log_dir / f"etcd-{member.name}.log",
                index=index,
                # A member that lost its quorum comes back within a second, like the registry.
                backoff=Backoff(most_s=1.0),
            )
            self._etcd.append(slot)
            self._supervise(slot)
        await asyncio.gather(*(slot.tried.wait() for slot in self._etcd))
        failed = [slot for slot in self._etcd if not self._filled(slot)]
        if failed:
            raise RuntimeError(f"etcd did not start: see {', '.join(str(s.log) for s in failed)}")
        endpoints = ", ".join(self._etcd_endpoints())
        self._say(f"etcd: {len(self._etcd)} members on {endpoints}")

    def _etcd_member(self, slot: _Slot) -> Process:
        command = [
            sys.executable,
            "-m",
            "herd._registry.etcd_cluster",
            f"--base-port={self.app.spec.etcd_port}",
            f"--members={LOCAL_MEMBERS}",
            f"--index={slot.index}",
            f"--data-dir={self.app.run_dir / 'etcd'}",
            f"--token={self._etcd_token}",
        ]
        inherited = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        return Process(slot.name, command, {}, self.app.root, slot.log, base_env=inherited)

    # -- caches

    async def _start_caches(self) -> None:
        """Start every cache's memcached servers, each in a slot of its own."""
        for server in self._cache_servers:
            slot = _Slot(server.id, self._log_dir / f"{server.id}.log", cache=server)
            self._caches.append(slot)
            self._supervise(slot)
        await asyncio.gather(*(slot.tried.wait() for slot in self._caches))
        failed = [slot for slot in self._caches if not self._filled(slot)]
        if failed:
            logs = ", ".join(str(slot.log) for slot in failed)
            raise RuntimeError(f"memcached did not start: see {logs}")
        for server in self._cache_servers:
            self._say(f"cache {server.name} zone {server.zone}: memcached on {server.address}")

    async def caches(self) -> list[CacheView]:
        views = []
        for slot in self._caches:
            assert slot.cache is not None
            process = slot.process
            alive = self._filled(slot)
            status = "UP" if alive else CRASHLOOP if slot.backoff.looping else "DOWN"
            started = process.started_at if process is not None and alive else time.time()
            views.append(
                caches.view(
                    slot.cache,
                    status=status,
                    pid=process.pid if process is not None and alive else None,
                    uptime_s=time.time() - started,
                    log=slot.log,
                )
            )
        return views

    # -- autoscaling

    async def _autoscale(self) -> None:
        """Every `AUTOSCALE_INTERVAL_S`, give each autoscaled group's autoscaler its instances'
        figures and apply what it decides, until cancelled."""
        timeout = aiohttp.ClientTimeout(total=AUTOSCALE_INTERVAL_S / 2)
        async with InstanceSession(timeout) as session:
            while True:
                await asyncio.sleep(AUTOSCALE_INTERVAL_S)
                # A copy: a deploy adds and removes groups while this round awaits figures.
                for name, scaler in list(self._autoscalers.items()):
                    try:
                        figures = await self._figures(name, scaler.spec.metric, session)
                        self._apply(name, scaler.decide(self._desired[name], figures))
                    except Exception as exc:
                        # One bad round must not end autoscaling for good.
                        log.error("autoscale failed", group=name, error=repr(exc))
                live = {slot.process.pid for slot in self._instance_slots() if slot.process}
                for pid in self._cpu_seen.keys() - live:
                    del self._cpu_seen[pid]

    async def _figures(self, name: str, metric: str, session: InstanceSession) -> list[float]:
        """One figure per UP instance of the group that has one: requests in flight (its own
        `/health`), or percent of one core since the last round (`/proc`, no request at all).
        An instance's first round only sets the CPU baseline: its start-up is not load."""
        up = [
            slot.process
            for slot in self._slots[name]
            if slot.process is not None and self._filled(slot) and self._status(slot) == "UP"
        ]
        if metric == "cpu":
            return [f for process in up if (f := self._cpu_percent(process)) is not None]
        answers = await asyncio.gather(
            *(self._inflight(session, process) for process in up), return_exceptions=True
        )
        return [a for a in answers if isinstance(a, float)]

    def _cpu_percent(self, process: Process) -> float | None:
        pid = process.pid
        if pid is None:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 0
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        now = time.monotonic()
        last = self._cpu_seen.get(pid)
        self._cpu_seen[pid] = (ticks, now)
        if last is None or now <= last[1]:
            return None
        return 100.0 * (ticks - last[0]) / _CLOCK_TICKS / (now - last[1])

    @staticmethod
    async def _inflight(scrape: InstanceSession, process: Process) -> float:
        assert process.address is not None
        async with scrape.session.get(scrape.url(process.address, "/health")) as response:
            body = await response.json()
        return float(body["inflight"])

    def _apply(self, name: str, decision: Decision) -> None:
        self._autoscale_reasons[name] = decision.reason
        if decision.desired == decision.current:
            return
        self._desired[name] = decision.desired
        self._fit(name)
        self.record("group.scaled", cause="autoscale", group=name, desired=decision.desired)
        self.autoscaled.append((time.monotonic(), name, decision))
        # One event name and flat fields: what a history reads back.
        log.info(
            "autoscaled",
            group=name,
            action=decision.action,
            current=decision.current,
            desired=decision.desired,
            reason=decision.reason,
            panic=decision.panic,
            per_instance=round(decision.per_instance, 3),
            reporting=decision.reporting,
        )

    # -- the API

    def _status(self, slot: _Slot) -> str:
        process = slot.process
        if process is None or not process.alive:
            return CRASHLOOP if slot.backoff.looping else "DOWN"
        if self.resolver is not None:
            for instance in self.resolver.all():
                if instance.id == process.name:
                    return str(instance.status)
        return "STARTING"

    def _view(self, slot: _Slot) -> InstanceView | None:
        process, group = slot.process, slot.group
        if process is None or group is None:
            return None
        alive = process.alive
        return InstanceView(
            id=process.name,
            group=group.name,
            service=group.service,
            version=group.version,
            zone=slot.zone,
            status=self._status(slot),
            address=(process.address or "") if alive else "",
            pid=(process.pid or 0) if alive else 0,
            uptime_s=round(time.time() - process.started_at, 1) if alive else 0.0,
        )

    async def ps(self) -> list[InstanceView]:
        views = [view for slot in self._instance_slots() if (view := self._view(slot))]
        return sorted(views, key=lambda v: (v.group, v.zone, v.id))

    async def groups(self) -> list[GroupView]:
        views = []
        for name, group in self._groups.items():
            slots = self._slots[name]
            members = [view for slot in slots if (view := self._view(slot))]
            up = sum(1 for v in members if v.status == "UP")
            # Still looping while the latest restart has not got ready, not only between them.
            if any(slot.backoff.looping and not self._filled(slot) for slot in slots):
                status = CRASHLOOP
            elif members and all(v.status == "OUT_OF_SERVICE" for v in members):
                status = DISABLED
            else:
                status = READY if up == self._desired[name] else PENDING
            views.append(
                GroupView(
                    name=name,
                    service=group.service,
                    version=group.version,
                    desired=self._desired[name],
                    running=sum(1 for v in members if v.pid),
                    up=up,
                    status=status,
                    autoscale=scaler.policy if (scaler := self._autoscalers.get(name)) else "",
                    autoscale_reason=self._autoscale_reasons.get(name, ""),
                )
            )
        return views

    async def scale(self, group: str, count: int) -> GroupView:
        if group not in self._groups:
            raise UnknownGroup(f"no server group {group!r}", group=group)
        if count < 0:
            raise InvalidCount("a group cannot have fewer than 0 instances", count=count)
        self._desired[group] = count
        self._fit(group)
        self.record("group.scaled", cause="scale", group=group, desired=count)
        return next(v for v in await self.groups() if v.name == group)

    async def kill(self, instance: str) -> InstanceView:
        return self.terminate(instance, cause="kill")

    def terminate(self, instance: str, *, cause: str) -> InstanceView:
        """SIGKILL a running instance (its slot starts another at once), recording `cause`."""
        for slot in self._instance_slots():
            process = slot.process
            if process is not None and process.name == instance and process.alive:
                view = self._view(slot)
                assert view is not None
                slot.replace = True
                slot.cause = cause
                process.signal(signal.SIGKILL)
                return view
        raise UnknownInstance(f"no running instance {instance!r}", instance=instance)

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
        return list(self._groups.values())

    def add_group(self, spec: GroupSpec, count: int) -> None:
        """Start a new server group of `count` instances beside the others."""
        self.record(
            "group.created",
            cause="deploy",
            group=spec.name,
            service=spec.service,
            version=spec.version,
            desired=count,
        )
        self._groups[spec.name] = spec
        self._desired[spec.name] = count
        self._slots[spec.name] = []
        if spec.autoscale is not None:
            self._autoscalers[spec.name] = Autoscaler(spec.autoscale)
            if self._autoscaling is None:
                self._autoscaling = asyncio.create_task(
                    self._autoscale(), context=contextvars.Context()
                )
        self._fit(spec.name)

    def set_count(self, group: str, count: int) -> None:
        """Change a group's desired count, as `herd scale` does."""
        self.record("group.scaled", cause="deploy", group=group, desired=count)
        self._desired[group] = count
        self._fit(group)

    def remove_group(self, group: str) -> None:
        """Retire every instance of the group (each deregisters and drains) and forget it."""
        self.record("group.destroyed", cause="deploy", group=group)
        self._desired[group] = 0
        self._fit(group)
        for table in (self._groups, self._desired, self._slots, self._autoscalers):
            table.pop(group, None)

    def addresses(self, group: str) -> list[str]:
        """Where the group's running, ready instances listen."""
        return [
            slot.process.address
            for slot in self._slots.get(group, [])
            if slot.process is not None and slot.process.address and self._filled(slot)
        ]
