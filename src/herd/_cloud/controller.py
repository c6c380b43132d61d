"""The control plane of the local cloud: runs the registry and every server group as processes,
holds each group at its desired count, and serves the API the `herd` command drives."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from herd._cloud.app import App, GroupSpec
from herd._cloud.front_door import FrontDoor
from herd._cloud.interface import (
    CloudApi,
    GroupView,
    InstanceView,
    InvalidCount,
    UnknownGroup,
    UnknownInstance,
)
from herd._cloud.process import Process
from herd._process.registry_client import RegistryResolver
from herd._server.server import Server

log = structlog.get_logger("herd.cloud")

Say = Callable[[str], None]

#: How long an instance may take from exec to its ready line.
START_TIMEOUT_S = 30.0
#: How often the control plane compares what runs with what should.
RECONCILE_S = 0.25


def state_file() -> Path:
    """Where `herd up` tells other `herd` commands how to reach it (and its admin token)."""
    return Path(os.environ.get("HERD_HOME", Path.home() / ".herd")) / "cloud.json"


@dataclasses.dataclass
class _Managed:
    process: Process
    group: GroupSpec
    zone: str
    id: str


class Controller(CloudApi):
    """Runs one app on this machine."""

    def __init__(self, app: App, *, say: Say | None = None) -> None:
        self.app = app
        self.token = secrets.token_urlsafe(24)
        self._say = say or (lambda _: None)
        self._groups = {g.name: g for g in app.spec.groups}
        self._desired = {g.name: g.instances for g in app.spec.groups}
        self._instances: dict[str, _Managed] = {}
        self._sequence = 0
        self._registry: Process | None = None
        self.resolver: RegistryResolver | None = None
        self.front_door: FrontDoor | None = None
        self._server: Server | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._starting: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()

    @property
    def registry_address(self) -> str:
        """The registry's `host:port`."""
        return f"127.0.0.1:{self.app.spec.registry_port}"

    @property
    def control_address(self) -> str:
        """The control API's `host:port`."""
        return f"127.0.0.1:{self.app.spec.control_port}"

    async def start(self) -> None:
        """Set up, start the registry, every group, the front door and the control API."""
        spec = self.app.spec
        self.app.run_dir.mkdir(parents=True, exist_ok=True)
        for command in spec.setup:
            expanded = [self.app.expand(part) for part in command]
            if expanded and expanded[0] == "python":
                expanded[0] = sys.executable
            self._say(f"setup: {' '.join(command)}")
            await asyncio.to_thread(
                subprocess.run, expanded, cwd=self.app.root, env=self._base_env(), check=True
            )
        self._registry = Process(
            "registry",
            [sys.executable, "-m", "herd._registry.service", "--port", str(spec.registry_port)],
            self._base_env(),
            self.app.root,
            self.app.run_dir / "logs" / "registry.log",
        )
        await self._registry.start()
        if not await self._registry.wait_ready(START_TIMEOUT_S):
            raise RuntimeError(f"the registry did not start: see {self._registry.log_path}")
        self._say(f"registry on {self.registry_address}")
        self.resolver = RegistryResolver(self.registry_address)
        await self.resolver.start()
        await asyncio.gather(
            *(self._launch(group) for group in spec.groups for _ in range(group.instances))
        )
        self._say(f"{len(self._instances)} instances started in zones {', '.join(spec.zones)}")
        if spec.front_door is not None:
            door = spec.front_door
            self.front_door = FrontDoor(
                door.service,
                self.resolver,
                host=door.host,
                port=door.port,
                timeout_s=door.timeout_s,
            )
            await self.front_door.start()
            self._say(f"front door {self.front_door.url} → {door.service}")
        self._server = Server(self, port=spec.control_port, admin_token=self.token)
        await self._server.start()
        self._write_state()
        self._reconciler = asyncio.create_task(self._reconcile())

    async def stop(self) -> None:
        """Stop everything: instances drain, then the registry goes."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        for task in list(self._starting):
            task.cancel()
        if self.front_door is not None:
            await self.front_door.close()
        await asyncio.gather(*(m.process.stop() for m in self._instances.values()))
        self._instances.clear()
        if self.resolver is not None:
            await self.resolver.close()
        if self._registry is not None:
            await self._registry.stop()
        if self._server is not None:
            await self._server.close()
        with contextlib.suppress(FileNotFoundError):
            state_file().unlink()

    def _base_env(self) -> dict[str, str]:
        env = {k: self.app.expand(v) for k, v in self.app.spec.env.items()}
        path = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{self.app.root}{os.pathsep}{path}" if path else str(self.app.root)
        env["HERD_REGISTRY"] = self.registry_address
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
        }
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(state))

    def _zone_for(self, group: GroupSpec) -> str:
        """The zone with the fewest live instances of the group (spreads, and refills holes)."""
        counts = {zone: 0 for zone in self.app.spec.zones}
        for managed in self._instances.values():
            if managed.group.name == group.name and managed.zone in counts:
                counts[managed.zone] += 1
        return min(self.app.spec.zones, key=lambda zone: counts[zone])

    async def _launch(self, group: GroupSpec) -> None:
        self._sequence += 1
        zone = self._zone_for(group)
        instance_id = f"{group.name}-{zone}{self._sequence}"
        env = {
            **self._base_env(),
            **{k: self.app.expand(v) for k, v in group.env.items()},
            "HERD_ZONE": zone,
            "HERD_GROUP": group.name,
            "HERD_VERSION": group.version,
            "HERD_INSTANCE": instance_id,
            "HERD_PORT": "0",
        }
        process = Process(
            instance_id,
            [sys.executable, "-m", group.module, *(self.app.expand(a) for a in group.args)],
            env,
            self.app.root,
            self.app.run_dir / "logs" / f"{instance_id}.log",
        )
        self._instances[instance_id] = _Managed(process, group, zone, instance_id)
        await process.start()
        if not await process.wait_ready(START_TIMEOUT_S):
            log.warning("instance failed to start", instance=instance_id, log=str(process.log_path))
            await process.stop(grace_s=1.0)

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            for instance_id, managed in list(self._instances.items()):
                if managed.process.proc is not None and not managed.process.alive:
                    code = managed.process.proc.returncode
                    log.info("instance exited", instance=instance_id, code=code)
                    await managed.process.closed()
                    del self._instances[instance_id]
            for name, group in self._groups.items():
                live = [m for m in self._instances.values() if m.group.name == name]
                missing = self._desired[name] - len(live)
                for _ in range(max(0, missing)):
                    task = asyncio.create_task(self._launch(group))
                    self._starting.add(task)
                    task.add_done_callback(self._starting.discard)
                for extra in sorted(live, key=lambda m: m.process.started_at)[: max(0, -missing)]:
                    del self._instances[extra.id]
                    task = asyncio.create_task(self._retire(extra))
                    self._starting.add(task)
                    task.add_done_callback(self._starting.discard)

    async def _retire(self, managed: _Managed) -> None:
        await managed.process.stop()

    def _status(self, managed: _Managed) -> str:
        if not managed.process.alive:
            return "DOWN"
        if self.resolver is not None:
            for instance in self.resolver.all():
                if instance.id == managed.id:
                    return str(instance.status)
        return "STARTING"

    def _view(self, managed: _Managed) -> InstanceView:
        process = managed.process
        return InstanceView(
            id=managed.id,
            group=managed.group.name,
            service=managed.group.service,
            version=managed.group.version,
            zone=managed.zone,
            status=self._status(managed),
            address=process.address or "",
            pid=process.pid or 0,
            uptime_s=round(time.time() - process.started_at, 1) if process.started_at else 0.0,
        )

    async def ps(self) -> list[InstanceView]:
        return sorted(
            (self._view(m) for m in self._instances.values()), key=lambda v: (v.group, v.zone, v.id)
        )

    async def groups(self) -> list[GroupView]:
        views = []
        for name, group in self._groups.items():
            members = [self._view(m) for m in self._instances.values() if m.group.name == name]
            views.append(
                GroupView(
                    name=name,
                    service=group.service,
                    version=group.version,
                    desired=self._desired[name],
                    running=sum(1 for v in members if v.status != "DOWN"),
                    up=sum(1 for v in members if v.status == "UP"),
                )
            )
        return views

    async def scale(self, group: str, count: int) -> GroupView:
        if group not in self._groups:
            raise UnknownGroup(f"no server group {group!r}", group=group)
        if count < 0:
            raise InvalidCount("a group cannot have fewer than 0 instances", count=count)
        self._desired[group] = count
        log.info("scaled", group=group, desired=count)
        return next(v for v in await self.groups() if v.name == group)

    async def kill(self, instance: str) -> InstanceView:
        managed = self._instances.get(instance)
        if managed is None or not managed.process.alive:
            raise UnknownInstance(f"no running instance {instance!r}", instance=instance)
        view = self._view(managed)
        managed.process.signal(9)
        return view

    async def down(self) -> bool:
        self.stopped.set()
        return True
