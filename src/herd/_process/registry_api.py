# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The registry's interface: the registry is one more herd service.

Writes carry the credential the cloud issued to the instance they change (`credential_for` of its
id under the registry's key); reads (`watch`) are open to every local caller.
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
    """The credential does not prove the right to write this instance's entry: nothing changed."""


class RegistryFull(ServiceError):
    """The table already holds `limit` instances: a new one is refused (known ones may still
    register again, renew and leave)."""

    limit: int


class InvalidRoute(ServiceError):
    """The route is unusable (`Route.problems`): nothing changed."""

    problems: list[str]


def route_id(service: str) -> str:
    """The name a route's credential is issued for: never an instance's id (those hold no `:`)."""
    return f"route:{service}"


class RegistryApi(Interface, name="registry"):
    """Register, renew, change status, deregister, and watch instances.

    Every write may raise `InvalidInstance` or `NotAuthorized`; `register` also `RegistryFull`.
    `set_route` (a route with no splits removes the service's route) takes the credential issued
    for `route_id(service)`, which only the control plane can mint, and may raise `InvalidRoute`.
    """

    @method(idempotent=True)
    async def register(self, instance: Instance, *, credential: str) -> float: ...

    @method(idempotent=True)
    async def renew(self, instance_id: str, *, credential: str) -> bool: ...

    @method(idempotent=True)
    async def set_status(self, instance_id: str, status: Status, *, credential: str) -> bool: ...

    @method(idempotent=True)
    async def deregister(self, instance_id: str, *, credential: str) -> bool: ...

    @method(idempotent=True)
    async def set_route(self, route: Route, *, credential: str) -> bool: ...

    @method(idempotent=True)
    async def watch(self, epoch: str, version: int) -> Snapshot: ...
