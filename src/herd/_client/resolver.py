"""Where a driver learns which instances exist: a fixed list, or the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from herd._model.errors import ConfigurationError
from herd._model.instance import Instance, Status
from herd._model.route import Route


class Resolver(Protocol):
    """A source of the UP instances of a service."""

    def instances(self, service: str) -> Sequence[Instance]:
        """The instances to call now (cached; never blocks)."""
        ...

    async def start(self) -> None:
        """Begin following changes."""
        ...

    async def close(self) -> None:
        """Stop following changes."""
        ...


@runtime_checkable
class RouteSource(Protocol):
    """A resolver that also knows the routes the control plane publishes (the registry's)."""

    def route(self, service: str) -> Route | None:
        """The service's current route; None when it has none (every UP instance serves)."""
        ...


def parse_address(address: str) -> tuple[str, int]:
    """Split `host:port`, with a clear error for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigurationError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def up_at(
    address: str, service: str, *, zone: str, group: str, version: str, id_: str | None = None
) -> Instance:
    """An UP instance of `service` at `host:port` (its id the address unless given): one the
    caller knows of without a registry."""
    host, port = parse_address(address)
    return Instance(
        id=id_ or address,
        service=service,
        group=group,
        version=version,
        zone=zone,
        host=host,
        port=port,
        status=Status.UP,
    )


class StaticResolver:
    """A fixed list of addresses, for tests, scripts and the edge of a system."""

    def __init__(
        self, service: str, addresses: Sequence[str | Instance], zone: str = "local"
    ) -> None:
        """`addresses` are `host:port` strings, all in `zone`, or `Instance`s taken as given
        (each with its own zone)."""
        if not addresses:
            raise ConfigurationError(f"no addresses given for {service}")
        self._instances: list[Instance] = []
        for address in addresses:
            if isinstance(address, Instance):
                self._instances.append(address)
                continue
            self._instances.append(
                up_at(address, service, zone=zone, group=f"{service}-static", version="static")
            )

    def instances(self, service: str) -> Sequence[Instance]:
        """The fixed list."""
        return self._instances

    async def start(self) -> None:
        """Nothing to follow."""

    async def close(self) -> None:
        """Nothing to stop."""
