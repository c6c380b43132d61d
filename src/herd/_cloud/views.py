"""What `herd ps` shows: instances, groups, cache servers and store members as their slots and
the registry say they are."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypedDict, TypeVar

from herd._cloud.autoscale.loop import Autoscaling
from herd._cloud.interface import CacheView, GroupView, InstanceView, StoreView
from herd._cloud.launch import caches, stores
from herd._cloud.supervise.groups import ServerGroups
from herd._cloud.supervise.slot import Slot
from herd._model.instance import Status
from herd._process.registry_client import RegistryResolver

#: An instance (and its group) whose slot waits out a back-off after crashing again soon after a
#: restart.
CRASHLOOP = "CRASHLOOP"
#: A group whose every desired instance is UP; PENDING while some are on their way.
READY = "READY"
PENDING = "PENDING"
#: A group a deploy took out of rotation: alive, OUT_OF_SERVICE, kept for a rollback.
DISABLED = "DISABLED"

T = TypeVar("T")


class Views:
    """Reads the slots of one control plane, and its copy of the registry."""

    def __init__(self, groups: ServerGroups, autoscaling: Autoscaling) -> None:
        self._groups = groups
        self._autoscaling = autoscaling
        self.resolver: RegistryResolver | None = None
        """The control plane's copy of the registry, once it runs."""

    def status(self, slot: Slot) -> str:
        """The registry's status of the slot's process while it runs; DOWN or CRASHLOOP after."""
        process = slot.process
        if process is None or not process.alive:
            return CRASHLOOP if slot.backoff.looping else Status.DOWN
        if self.resolver is not None:
            for instance in self.resolver.all():
                if instance.id == process.name:
                    return str(instance.status)
        return Status.STARTING

    def instance(self, slot: Slot) -> InstanceView | None:
        """The slot's instance; None before its first process."""
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
            status=self.status(slot),
            address=(process.address or "") if alive else "",
            pid=(process.pid or 0) if alive else 0,
            uptime_s=round(time.time() - process.started_at, 1) if alive else 0.0,
        )

    def instances(self) -> list[InstanceView]:
        """Every instance, by group, zone and id."""
        slots = self._groups.instance_slots()
        views = [view for slot in slots if (view := self.instance(slot))]
        return sorted(views, key=lambda v: (v.group, v.zone, v.id))

    def group(self, name: str) -> GroupView:
        """One server group: its counts, its status and its autoscaler's latest verdict."""
        spec, slots = self._groups.specs[name], self._groups.slots[name]
        desired = self._groups.desired[name]
        members = [view for slot in slots if (view := self.instance(slot))]
        up = sum(1 for v in members if v.status == Status.UP)
        # Still looping while the latest restart has not got ready, not only between them.
        if any(slot.backoff.looping and not slot.filled for slot in slots):
            status = CRASHLOOP
        elif members and all(v.status == Status.OUT_OF_SERVICE for v in members):
            status = DISABLED
        else:
            status = READY if up == desired else PENDING
        return GroupView(
            name=name,
            service=spec.service,
            version=spec.version,
            desired=desired,
            running=sum(1 for v in members if v.pid),
            up=up,
            status=status,
            autoscale=self._autoscaling.policy(name),
            autoscale_reason=self._autoscaling.reason(name),
        )

    def groups(self) -> list[GroupView]:
        """Every server group."""
        return [self.group(name) for name in self._groups.specs]

    @staticmethod
    def caches(slots: list[Slot]) -> list[CacheView]:
        """The cache servers of `slots`."""
        return [caches.view(_present(slot.cache), **_server(slot)) for slot in slots]

    @staticmethod
    def stores(slots: list[Slot]) -> list[StoreView]:
        """The store cluster's members of `slots`."""
        return [stores.view(_present(slot.store), **_server(slot)) for slot in slots]


class _Running(TypedDict):
    """What `herd ps` shows of a server slot's process, whatever it serves."""

    status: str
    pid: int | None
    uptime_s: float
    log: Path


def _present(what: T | None) -> T:
    """What a server slot of this kind always holds."""
    assert what is not None
    return what


def _server(slot: Slot) -> _Running:
    """A server slot's (no instance's) status, pid, uptime and log."""
    process = slot.process
    alive = slot.filled
    status = Status.UP if alive else CRASHLOOP if slot.backoff.looping else Status.DOWN
    if process is None or not alive:
        return _Running(status=status, pid=None, uptime_s=0.0, log=slot.log)
    uptime_s = time.time() - process.started_at
    return _Running(status=status, pid=process.pid, uptime_s=uptime_s, log=slot.log)
