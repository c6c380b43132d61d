# An interface's methods have no body: herd supplies it, in the driver and in the server.
# mypy: disable-error-code="empty-body"
"""The registry's interface: the registry is one more herd service."""

from __future__ import annotations

import msgspec

from herd._model.instance import Instance, Status
from herd._model.interface import Interface, method


class Snapshot(msgspec.Struct, frozen=True):
    """Every instance the registry knows, at one version of one registry epoch.

    The epoch changes when the registry restarts, so a client can tell a restart (and its empty
    table) from instances actually leaving.
    """

    epoch: str
    version: int
    warm: bool
    instances: list[Instance]


class RegistryApi(Interface, name="registry"):
    """Register, renew, change status, deregister, and watch instances."""

    @method(idempotent=True)
    async def register(self, instance: Instance) -> float: ...

    @method(idempotent=True)
    async def renew(self, instance_id: str) -> bool: ...

    @method(idempotent=True)
    async def set_status(self, instance_id: str, status: Status) -> bool: ...

    @method(idempotent=True)
    async def deregister(self, instance_id: str) -> bool: ...

    @method(idempotent=True)
    async def watch(self, epoch: str, version: int) -> Snapshot: ...
