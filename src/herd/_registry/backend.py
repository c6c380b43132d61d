"""Registry backends: where the registry keeps instances and leases.

The embedded backend keeps them in memory in the registry process; an etcd backend (leases and
watch) plugs in behind the same protocol when one machine is not enough.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Protocol

import msgspec

from herd._model.clock import MONOTONIC, Clock
from herd._model.instance import Instance, Status


class Backend(Protocol):
    """What the registry service needs from storage."""

    epoch: str

    async def register(self, instance: Instance, *, limit: int) -> bool:
        """Add or replace an instance and start its lease; False (and nothing changed) if it is
        new and the table already holds `limit` instances."""
        ...

    async def renew(self, instance_id: str) -> bool:
        """Extend a lease; False if the instance is unknown (evicted, or the registry restarted)."""
        ...

    async def set_status(self, instance_id: str, status: Status) -> bool:
        """Change an instance's status; False if unknown."""
        ...

    async def deregister(self, instance_id: str) -> bool:
        """Remove an instance; False if unknown."""
        ...

    async def evict_expired(self) -> list[Instance]:
        """Remove instances whose lease ran out; returns them."""
        ...

    def snapshot(self) -> tuple[int, list[Instance]]:
        """The current version and every instance."""
        ...

    async def wait_change(self, version: int, timeout: float) -> None:
        """Return when the version moves past `version`, or after `timeout` seconds."""
        ...


class MemoryBackend:
    """Instances and leases in this process's memory (the embedded default)."""

    def __init__(self, lease_s: float = 3.0, clock: Clock = MONOTONIC) -> None:
        self.epoch = secrets.token_hex(8)
        self.lease_s = lease_s
        self._clock = clock
        self._instances: dict[str, Instance] = {}
        self._expires: dict[str, float] = {}
        self._version = 0
        self._changed = asyncio.Event()

    def _bump(self) -> None:
        self._version += 1
        # Wake every waiter, then give later waiters a fresh event to wait on.
        self._changed.set()
        self._changed = asyncio.Event()

    async def register(self, instance: Instance, *, limit: int) -> bool:
        """Add or replace an instance and start its lease; False if it is new and the table
        already holds `limit` instances."""
        if instance.id not in self._instances and len(self._instances) >= limit:
            return False
        self._instances[instance.id] = instance
        self._expires[instance.id] = self._clock.now() + self.lease_s
        self._bump()
        return True

    async def renew(self, instance_id: str) -> bool:
        """Extend a lease; False if the instance is unknown."""
        if instance_id not in self._instances:
            return False
        self._expires[instance_id] = self._clock.now() + self.lease_s
        return True

    async def set_status(self, instance_id: str, status: Status) -> bool:
        """Change an instance's status; False if unknown."""
        current = self._instances.get(instance_id)
        if current is None:
            return False
        if current.status != status:
            self._instances[instance_id] = msgspec.structs.replace(current, status=status)
            self._bump()
        return True

    async def deregister(self, instance_id: str) -> bool:
        """Remove an instance; False if unknown."""
        if self._instances.pop(instance_id, None) is None:
            return False
        self._expires.pop(instance_id, None)
        self._bump()
        return True

    async def evict_expired(self) -> list[Instance]:
        """Remove instances whose lease ran out; returns them."""
        now = self._clock.now()
        gone = [self._instances[i] for i, at in self._expires.items() if at <= now]
        for instance in gone:
            del self._instances[instance.id]
            del self._expires[instance.id]
        if gone:
            self._bump()
        return gone

    def snapshot(self) -> tuple[int, list[Instance]]:
        """The current version and every instance."""
        return self._version, list(self._instances.values())

    async def wait_change(self, version: int, timeout: float) -> None:
        """Return when the version moves past `version`, or after `timeout` seconds."""
        if self._version != version or timeout <= 0:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return
