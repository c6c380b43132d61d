"""Chaos on the local cloud: Chaos Monkey (`monkey.py` decides), failure injection on chosen
instances, zone outages.

- **Chaos Monkey**: each opted-in group (`chaos = {...}` in the app file, or `herd chaos
  monkey`) loses a random UP instance at exponentially distributed times, `mean_interval_s`
  apart on average. It never leaves fewer than `min_healthy` instances UP, and never strikes a
  group twice at once: the previous victim must be gone and the group back at its count, all
  UP, first. Leashed, it records whom it would kill and kills nobody. Pausable; every strike is
  recorded.
- **Injection**: a `Fault` set on the running instances of a service through their
  `/herd/faults`, which takes it only from the control plane's identity (or the admin token);
  each instance ends it by itself when it expires.
- **Zone outage** (Chaos Gorilla): every instance in the zone is SIGKILLed, and the zone's
  member of the store cluster (an app with `[[stores]]`), which comes back when the outage
  ends, on its ports and data, as a zone's machines would. A killed instance
  does not deregister itself, but the control plane sees its process exit and deregisters it
  at once, so callers stop choosing it within a registry watch round (outlier ejection covers
  the calls already under way; the registry's lease would evict it too, should that write be
  lost). Its slots start nothing until the outage ends; the group runs on what it has in the
  other zones (no replacement there: the point is to learn whether the other zones carry the
  load), and is repopulated in the zone after.

Every action is recorded in the history with cause `chaos` or `zone-outage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import time
from collections.abc import Sequence

import aiohttp
import msgspec
import structlog

from herd._cloud.app import ChaosSpec
from herd._cloud.chaos.monkey import Monkey
from herd._cloud.cloud import Cloud
from herd._cloud.interface import (
    ChaosRefused,
    ChaosView,
    InjectionView,
    InstanceView,
    OutageView,
    UnknownGroup,
    UnknownInstance,
)
from herd._model.tasks import cancel_and_wait
from herd._server.injection import FAULTS_PATH, Fault
from herd._wire.http_client import InstanceSession

log = structlog.get_logger("herd.chaos")

#: How often the monkey looks at its groups.
TICK_S = 0.25
#: How long the control plane waits for an instance to take (or drop) its faults.
_POST_TIMEOUT_S = 2.0


@dataclasses.dataclass
class _Injected:
    instance: str
    service: str
    fault: Fault
    ends: float


@dataclasses.dataclass
class _Outage:
    zone: str
    ends: float
    stopped: list[str]
    reopened: asyncio.Event
    timer: asyncio.TimerHandle | None = None


class Chaos:
    """Everything chaos does on one control plane."""

    def __init__(self, cloud: Cloud, *, monkey: Monkey | None = None) -> None:
        self._cloud = cloud
        self.monkey = monkey or Monkey()
        self._injected: list[_Injected] = []
        self._outages: dict[str, _Outage] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: InstanceSession | None = None

    async def start(self) -> None:
        """Watch the groups that opted in in the app file, and start striking."""
        for group in self._cloud.app.spec.groups:
            if group.chaos is not None:
                self.monkey.watch(group.name, group.chaos)
                settings = msgspec.to_builtins(group.chaos)
                self._cloud.record("chaos.monkey", cause="app", group=group.name, **settings)
        self._task = asyncio.create_task(self._run(), context=contextvars.Context())

    async def close(self) -> None:
        """Stop striking and timing outages (the cloud is stopping: nothing restarts)."""
        await cancel_and_wait(self._task)
        for outage in self._outages.values():
            if outage.timer is not None:
                outage.timer.cancel()
        if self._session is not None:
            await self._session.close()

    # -- the monkey

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if not self.monkey.watching or self.monkey.paused:
                continue
            try:
                await self._strike()
            except Exception:
                # One bad round must not end chaos for good (nor take the control plane down).
                log.exception("chaos round failed")

    async def _strike(self) -> None:
        instances = await self._cloud.ps()
        desired = {group.name: group.desired for group in await self._cloud.groups()}
        members: dict[str, list[InstanceView]] = {}
        for view in instances:
            members.setdefault(view.group, []).append(view)
        for strike in self.monkey.due(members, desired):
            self._cloud.record(
                "chaos.kill",
                cause="chaos",
                group=strike.group,
                instance=strike.instance,
                leashed=strike.leashed,
            )
            if not strike.leashed:
                with contextlib.suppress(UnknownInstance):  # it died meanwhile
                    self._cloud.terminate(strike.instance, cause="chaos")

    async def set_monkey(
        self, group: str, mean_interval_s: float, min_healthy: int, leashed: bool
    ) -> None:
        """Watch `group` with these settings; `mean_interval_s` 0 stops watching it."""
        if group not in {g.name for g in await self._cloud.groups()}:
            raise UnknownGroup(f"no server group {group!r}", group=group)
        if mean_interval_s == 0:
            self.monkey.unwatch(group)
            self._cloud.record("chaos.monkey", cause="chaos", group=group, mean_interval_s=0)
            return
        spec = ChaosSpec(mean_interval_s, min_healthy, leashed)
        if (problem := spec.problem()) is not None:
            raise ChaosRefused(problem)
        self.monkey.watch(group, spec)
        self._cloud.record("chaos.monkey", cause="chaos", group=group, **msgspec.to_builtins(spec))

    def pause(self, paused: bool) -> None:
        """Pause or resume the monkey."""
        self.monkey.paused = paused
        self._cloud.record("chaos.paused" if paused else "chaos.resumed", cause="chaos")

    # -- injection

    async def inject(self, target: str, fault: Fault, instances: Sequence[str]) -> list[str]:
        """Set `fault` on the running instances of `target`'s service (or the named ones)."""
        service, _, method = target.partition(".")
        if method:
            fault = msgspec.structs.replace(fault, method=method)
        if (problem := fault.problem()) is not None:
            raise ChaosRefused(problem)
        running = [v for v in await self._cloud.ps() if v.service == service and v.address]
        if instances:
            unknown = set(instances) - {v.id for v in running}
            if unknown:
                raise ChaosRefused(f"no running instance of {service} named {sorted(unknown)}")
            running = [v for v in running if v.id in instances]
        if not running:
            raise ChaosRefused(f"no running instance of service {service!r}")
        now = time.monotonic()
        added = [_Injected(view.id, service, fault, now + fault.duration_s) for view in running]
        self._injected += added
        results = await asyncio.gather(
            *(self._send(view) for view in running), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        # What an instance did not take is not in force: forget it, and say which.
        refused = {id(i) for i, result in zip(added, results, strict=True) if result is not None}
        self._injected = [i for i in self._injected if id(i) not in refused]
        chosen = [view.id for view, result in zip(running, results, strict=True) if result is None]
        if chosen:
            settings = msgspec.to_builtins(fault)
            self._cloud.record(
                "chaos.injected", cause="chaos", instances=chosen, service=service, **settings
            )
        if failed:
            raise ChaosRefused("; ".join(str(r) for r in failed))
        return chosen

    async def _send(self, view: InstanceView) -> None:
        """Give one instance every fault it should have now."""
        now = time.monotonic()
        faults = [
            msgspec.structs.replace(i.fault, duration_s=i.ends - now)
            for i in self._injected
            if i.instance == view.id and i.ends > now
        ]
        if self._session is None:
            # The control plane's identity (this process's) is what lets the faults in.
            self._session = InstanceSession(aiohttp.ClientTimeout(total=_POST_TIMEOUT_S))
        url = self._session.url(view.address, FAULTS_PATH)
        try:
            async with self._session.session.post(url, data=msgspec.json.encode(faults)) as answer:
                if answer.status != 200:
                    message = json.loads(await answer.read()).get("message", "")
                    raise ChaosRefused(f"{view.id} refused the faults: {message}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChaosRefused(f"{view.id} did not take the faults: {exc!r}") from None

    # -- zone outage

    async def zone_outage(self, zone: str, duration_s: float) -> list[str]:
        """Stop every instance in `zone`, and its store member, and start none there for
        `duration_s`; what was stopped."""
        if zone not in self._cloud.app.spec.zones:
            raise ChaosRefused(f"no zone {zone!r}: the zones are {self._cloud.app.spec.zones}")
        if zone in self._outages:
            raise ChaosRefused(f"zone {zone} is already out")
        if not 0 < duration_s <= 86_400:
            raise ChaosRefused("an outage lasts more than 0 s and at most a day")
        loop = asyncio.get_running_loop()
        outage = _Outage(zone, time.monotonic() + duration_s, [], asyncio.Event())
        self._outages[zone] = outage
        outage.timer = loop.call_later(duration_s, self._end_outage, zone, "chaos")
        for view in await self._cloud.ps():
            if view.zone == zone and view.pid:
                with contextlib.suppress(UnknownInstance):
                    self._cloud.terminate(view.id, cause="zone-outage")
                    outage.stopped.append(view.id)
        member = self._cloud.terminate_store(zone, cause="zone-outage")
        if member is not None:
            outage.stopped.append(member)
        self._cloud.record(
            "chaos.zone-outage",
            cause="chaos",
            zone=zone,
            duration_s=duration_s,
            stopped=outage.stopped,
        )
        return outage.stopped

    def _end_outage(self, zone: str, cause: str) -> None:
        outage = self._outages.pop(zone, None)
        if outage is None:
            return
        if outage.timer is not None:
            outage.timer.cancel()
        outage.reopened.set()
        self._cloud.record("chaos.zone-restored", cause=cause, zone=zone)

    async def zone_open(self, zone: str) -> None:
        """Return once `zone` is not out (at once when it is not)."""
        while (outage := self._outages.get(zone)) is not None:
            await outage.reopened.wait()

    # -- all of it

    async def halt(self) -> None:
        """Stop everything at once: the monkey, every injection, every outage."""
        self.monkey.unwatch()
        for zone in list(self._outages):
            self._end_outage(zone, cause="halt")
        injected = {i.instance for i in self._injected}
        self._injected.clear()
        running = [v for v in await self._cloud.ps() if v.id in injected and v.address]
        results = await asyncio.gather(
            *(self._send(view) for view in running), return_exceptions=True
        )
        failed = [str(r) for r in results if isinstance(r, Exception)]
        self._cloud.record("chaos.halted", cause="chaos", unreachable=failed)

    def view(self) -> ChaosView:
        """What chaos does now."""
        now = time.monotonic()
        self._injected = [i for i in self._injected if i.ends > now]
        return ChaosView(
            paused=self.monkey.paused,
            monkey=self.monkey.views(),
            injections=[
                InjectionView(i.instance, i.service, i.fault, round(i.ends - now, 3))
                for i in self._injected
            ],
            outages=[
                OutageView(o.zone, round(max(0.0, o.ends - now), 3), list(o.stopped))
                for o in self._outages.values()
            ],
        )
