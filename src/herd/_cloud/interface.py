# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The control plane's API, which the `herd` command drives. It is one more herd service."""

from __future__ import annotations

import msgspec

from herd._model.interface import Interface, ServiceError, method


class InstanceView(msgspec.Struct, frozen=True):
    """One instance as `herd ps` shows it.

    `status` is the registry's (STARTING, UP, OUT_OF_SERVICE) while the process runs; DOWN once it
    exited, until its replacement starts; CRASHLOOP while its slot waits out a back-off after
    crashing again soon after a restart (`pid` 0, no address).
    """

    id: str
    group: str
    service: str
    version: str
    zone: str
    status: str
    address: str
    pid: int
    uptime_s: float


class GroupView(msgspec.Struct, frozen=True):
    """One server group: how many instances it should have and has.

    `status` is READY when every desired instance is UP, CRASHLOOP while one of its instances
    keeps crashing and waits out a back-off before its next start, PENDING otherwise.
    `autoscale` is the group's autoscaling policy ("" when it has none) and `autoscale_reason`
    the autoscaler's latest verdict, which set `desired` when it changed it.
    """

    name: str
    service: str
    version: str
    desired: int
    running: int
    up: int
    status: str
    autoscale: str = ""
    autoscale_reason: str = ""


class CacheView(msgspec.Struct, frozen=True):
    """One memcached server of a cache (one per cache and zone), as `herd ps` shows it.

    `status` is UP while it answers, DOWN between an exit and its restart, CRASHLOOP while its
    restarts back off.
    """

    id: str
    cache: str
    zone: str
    status: str
    address: str
    pid: int
    uptime_s: float
    memory_mb: int
    log: str


class UnknownGroup(ServiceError):
    """No server group has that name."""

    group: str


class UnknownInstance(ServiceError):
    """No running instance has that id."""

    instance: str


class InvalidCount(ServiceError):
    """A group cannot have a negative number of instances."""

    count: int


class CloudApi(Interface, name="cloud"):
    """Inspect and change the local cloud. Changes need the admin token."""

    @method(idempotent=True)
    async def ps(self) -> list[InstanceView]: ...

    @method(idempotent=True)
    async def groups(self) -> list[GroupView]: ...

    @method(idempotent=True)
    async def caches(self) -> list[CacheView]: ...

    @method(admin=True)
    async def scale(self, group: str, count: int) -> GroupView: ...

    @method(admin=True)
    async def kill(self, instance: str) -> InstanceView: ...

    @method(admin=True)
    async def down(self) -> bool: ...
