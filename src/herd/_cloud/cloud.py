"""What the parts of the control plane (chaos, the instance watch) read and do of the cloud."""

from __future__ import annotations

from typing import Protocol

from herd._cloud.app import App
from herd._cloud.history.recorder import Recorder
from herd._cloud.interface import GroupView, InstanceView


class Cloud(Recorder, Protocol):
    """The local cloud as its parts see it (the `Controller`): its app, what runs, what may be
    killed, and its history."""

    app: App

    async def ps(self) -> list[InstanceView]:
        """Every instance."""
        ...

    async def groups(self) -> list[GroupView]:
        """Every server group."""
        ...

    def terminate(self, instance: str, *, cause: str) -> InstanceView:
        """SIGKILL a running instance (its slot starts another at once), recording `cause`."""
        ...

    def terminate_store(self, zone: str, *, cause: str) -> str | None:
        """SIGKILL the store member of `zone` if one runs (its slot starts another once the
        zone is open), recording `cause`; the member's id, or None."""
        ...
