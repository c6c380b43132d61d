"""The server groups the control plane runs: each a list of instance slots fitted to a desired
count, spread over the zones."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from pathlib import Path

from herd._cloud.app import GroupSpec
from herd._cloud.history.recorder import Recorder
from herd._cloud.interface import UnknownInstance
from herd._cloud.launch.process import Process
from herd._cloud.supervise.slot import Slot, Supervisor


class ServerGroups:
    """Every server group and its instance slots: the app file's and the deploys'. `desired`
    is each group's count at the start; `launch` makes an instance of a group in a zone, logging
    to a path."""

    def __init__(
        self,
        groups: list[GroupSpec],
        zones: list[str],
        *,
        desired: dict[str, int],
        supervisor: Supervisor,
        recorder: Recorder,
        launch: Callable[[GroupSpec, str, Path], Process],
        log_dir: Path,
    ) -> None:
        self.specs = {g.name: g for g in groups}
        self.desired = dict(desired)
        self.slots: dict[str, list[Slot]] = {g.name: [] for g in groups}
        self._zones = zones
        self._supervisor = supervisor
        self._recorder = recorder
        self._launch = launch
        self._log_dir = log_dir
        self._retiring: set[Slot] = set()

    def instance_slots(self) -> list[Slot]:
        """Every group's slots."""
        return [slot for slots in self.slots.values() for slot in slots]

    def scale(self, group: str, count: int, *, cause: str) -> None:
        """Give `group` `count` instances: start or retire some at once, recording `cause`."""
        self._recorder.record("group.scaled", cause=cause, group=group, desired=count)
        self.desired[group] = count
        self.fit(group)

    def add(self, spec: GroupSpec, count: int, *, cause: str) -> None:
        """Start a new group of `count` instances beside the others."""
        self._recorder.record(
            "group.created",
            cause=cause,
            group=spec.name,
            service=spec.service,
            version=spec.version,
            desired=count,
        )
        self.specs[spec.name] = spec
        self.desired[spec.name] = count
        self.slots[spec.name] = []
        self.fit(spec.name)

    def remove(self, group: str, *, cause: str) -> None:
        """Retire every instance of the group (each deregisters and drains) and forget it."""
        self._recorder.record("group.destroyed", cause=cause, group=group)
        self.desired[group] = 0
        self.fit(group)
        for table in (self.specs, self.desired, self.slots):
            table.pop(group, None)

    def fit(self, group: str) -> None:
        """Add or retire slots until the group has its desired count."""
        slots = self.slots[group]
        while len(slots) < self.desired[group]:
            self._supervisor.supervise(self._add_slot(self.specs[group]))
        # The last added go first: the ones left are still spread over the zones.
        for slot in sorted(slots, key=lambda s: s.index)[self.desired[group] :]:
            slots.remove(slot)
            self._retiring.add(slot)
            self._supervisor.retire(slot, self._retiring.discard)

    def _add_slot(self, group: GroupSpec) -> Slot:
        slots = self.slots[group.name]
        # A retiring slot's process still writes to its log until it has drained.
        taken = {s.index for s in slots} | {
            s.index for s in self._retiring if s.group is not None and s.group.name == group.name
        }
        index = next(i for i in itertools.count() if i not in taken)
        counts = {zone: 0 for zone in self._zones}
        for slot in slots:
            counts[slot.zone] += 1
        zone = min(self._zones, key=lambda z: counts[z])
        name = f"{group.name}.slot{index}"
        log = self._log_dir / f"{name}.log"
        slot = Slot(
            name, log, functools.partial(self._launch, group, zone, log), group, zone, index
        )
        slots.append(slot)
        return slot

    def running(self, instance: str) -> Slot:
        """The slot whose running process is `instance`; UnknownInstance if none is."""
        for slot in self.instance_slots():
            process = slot.process
            if process is not None and process.name == instance and process.alive:
                return slot
        raise UnknownInstance(f"no running instance {instance!r}", instance=instance)

    def addresses(self, group: str) -> list[str]:
        """Where the group's running, ready instances listen."""
        return [
            slot.process.address
            for slot in self.slots.get(group, [])
            if slot.process is not None and slot.process.address and slot.filled
        ]
