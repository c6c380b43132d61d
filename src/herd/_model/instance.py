"""The registry's data model: an instance and its status."""

from __future__ import annotations

import enum

import msgspec


class Status(enum.StrEnum):
    """Lifecycle of an instance as the registry sees it."""

    STARTING = "STARTING"
    UP = "UP"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"
    DOWN = "DOWN"


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """One running copy of a service, in one zone, at one address."""

    id: str
    service: str
    group: str
    version: str
    zone: str
    host: str
    port: int
    status: Status = Status.STARTING

    @property
    def address(self) -> str:
        """`host:port`."""
        return f"{self.host}:{self.port}"
