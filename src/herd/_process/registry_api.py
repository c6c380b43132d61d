# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The registry's interface: the registry is one more herd service.

A registry with an identity (mutual TLS, as `herd up` runs it) accepts a write only from the
instance it is about: the caller's certificate names that instance (and, to register, its service
and group). Without one (a standalone `herd registry`, dev mode) any local caller may write.
Reads (`watch`) are open to every caller that may connect.
"""

from __future__ import annotations

import msgspec

from herd._model.instance import Instance, Status
from herd._model.interface import Interface, ServiceError, method
from herd._model.route import Route


class Snapshot(msgspec.Struct, frozen=True):
    """Every instance the registry knows, at one version of one registry epoch.

    The epoch changes when the registry restarts, so a client can tell a restart (and its empty
    table) from instances actually leaving. `routes` are the traffic splits the control plane
    publishes while it deploys (`set_route`); a change to them moves `version` too.
    """

    epoch: str
    version: int
    warm: bool
    instances: list[Instance]
    routes: list[Route] = msgspec.field(default_factory=list)


class InvalidInstance(ServiceError):
    """The entry (or instance id) is unfit for the registry: nothing changed.

    `problems` lists what is wrong (`Instance.problems`), each quoting at most a few dozen
    characters of what was sent.
    """

    problems: list[str]


class NotAuthorized(ServiceError):
    """The caller is not the instance this write is about: nothing changed."""


class RegistryFull(ServiceError):
    """The table already holds `limit` instances: a new one is refused (known ones may still
    register again, renew and leave)."""

    limit: int


class InvalidRoute(ServiceError):
    """The route is unusable (`Route.problems`): nothing changed."""

    problems: list[str]


class RegistryApi(Interface, name="registry"):
    """Register, renew, change status, deregister, and watch instances.

    Every write may raise `InvalidInstance` or `NotAuthorized`; `register` also `RegistryFull`.
    `set_route` (a route with no splits removes the service's route) is the control plane's
    alone, and may raise `InvalidRoute`; so are `set_status` and `deregister` of another
    instance than the caller (a deploy disabling a group; an instance whose process ended).
    """

    @method(idempotent=True)
    async def register(self, instance: Instance) -> float: ...

    @method(idempotent=True)
    async def renew(self, instance_id: str) -> bool: ...

    @method(idempotent=True)
    async def set_status(self, instance_id: str, status: Status) -> bool: ...

    @method(idempotent=True)
    async def deregister(self, instance_id: str) -> bool: ...

    @method(idempotent=True)
    async def set_route(self, route: Route) -> bool: ...

    @method(idempotent=True)
    async def watch(self, epoch: str, version: int) -> Snapshot: ...
