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
    keeps crashing and waits out a back-off before its next start, DISABLED while a deploy keeps
    it out of rotation for a rollback (every instance OUT_OF_SERVICE), PENDING otherwise.
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


class DeployEvent(msgspec.Struct, frozen=True):
    """One step or decision of a deploy: `at` is wall-clock time (seconds since the epoch)."""

    at: float
    kind: str
    message: str
    score: float | None = None


class DeployView(msgspec.Struct, frozen=True):
    """A deploy of one service, as `herd deploy status` shows it.

    `state` is where it is: starting, analysing (a canary step), promoting, window (the new
    group serves; the old one is disabled and kept for a rollback until `window_ends_at`), or
    one of the ends: promoted, rolled_back, aborted, failed. `shares` is the traffic split now
    (group -> percent).
    """

    service: str
    version: str
    strategy: str
    old_group: str
    new_group: str
    state: str
    decision: str
    shares: dict[str, int]
    started_at: float
    window_ends_at: float | None = None
    canary_score: float | None = None
    rollback_s: float | None = None
    events: list[DeployEvent] = msgspec.field(default_factory=list)


class DeployRefused(ServiceError):
    """The deploy, confirm, abort or rollback cannot be done now: the message says why."""


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

    @method(admin=True)
    async def scale(self, group: str, count: int) -> GroupView: ...

    @method(admin=True)
    async def kill(self, instance: str) -> InstanceView: ...

    @method(admin=True)
    async def down(self) -> bool: ...

    @method(admin=True)
    async def deploy(
        self, service: str, version: str, strategy: str, settings: dict[str, str]
    ) -> DeployView: ...

    @method(idempotent=True)
    async def deploys(self) -> list[DeployView]: ...

    @method(admin=True)
    async def confirm(self, service: str) -> DeployView: ...

    @method(admin=True)
    async def abort(self, service: str) -> DeployView: ...

    @method(admin=True)
    async def rollback(self, service: str) -> DeployView: ...
