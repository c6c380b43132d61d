"""One transport per instance, made on first use and closed with its owner.

The driver and the front door both keep a transport (a keep-alive connection pool) per instance
they call; this is the one place that does it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from herd._model.instance import Instance


class Closable(Protocol):
    """Anything holding connections."""

    async def close(self) -> None:
        """Release them."""
        ...


TransportT = TypeVar("TransportT", bound=Closable)


class TransportPool(Generic[TransportT]):
    """Transports by instance id, each made by `make` the first time it is needed."""

    __slots__ = ("_make", "_transports")

    def __init__(self, make: Callable[[Instance], TransportT]) -> None:
        self._make = make
        self._transports: dict[str, TransportT] = {}

    def get(self, instance: Instance) -> TransportT:
        """The transport to `instance`."""
        transport = self._transports.get(instance.id)
        if transport is None:
            transport = self._transports[instance.id] = self._make(instance)
        return transport

    async def close(self) -> None:
        """Close every transport; the pool makes new ones if used again."""
        transports, self._transports = self._transports, {}
        for transport in transports.values():
            await transport.close()
