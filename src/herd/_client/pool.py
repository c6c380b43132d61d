"""One transport per instance, made on first use, dropped when the instance leaves, and closed
with its owner.

The driver and the front door both keep a transport (a keep-alive connection pool) per instance
they call; this is the one place that does it. An instance that leaves the registry (killed,
scaled in, drained) takes its transport with it, so a long-lived client under churn holds
transports only for the instances that exist: the departed one's is closed after a grace period
(`grace_s`) in which answers to calls still in flight on it (a draining instance finishes them)
can arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from herd._model.instance import Instance

#: How long a departed instance's transport stays open for the calls still in flight on it.
GRACE_S = 30.0


class Closable(Protocol):
    """Anything holding connections."""

    async def close(self) -> None:
        """Release them."""
        ...


TransportT = TypeVar("TransportT", bound=Closable)


class TransportPool(Generic[TransportT]):
    """Transports by instance id, each made by `make` the first time it is needed."""

    __slots__ = ("_grace_s", "_make", "_retiring", "_transports")

    def __init__(self, make: Callable[[Instance], TransportT], grace_s: float = GRACE_S) -> None:
        self._make = make
        self._grace_s = grace_s
        self._transports: dict[str, TransportT] = {}
        self._retiring: dict[asyncio.Task[None], TransportT] = {}

    def __len__(self) -> int:
        """Transports held, those of departed instances still in their grace period included."""
        return len(self._transports) + len(self._retiring)

    def get(self, instance: Instance) -> TransportT:
        """The transport to `instance`."""
        transport = self._transports.get(instance.id)
        if transport is None:
            transport = self._transports[instance.id] = self._make(instance)
        return transport

    def drop(self, instance_id: str) -> None:
        """`instance_id` left: close its transport once the grace period is over."""
        transport = self._transports.pop(instance_id, None)
        if transport is None:
            return
        task = asyncio.get_running_loop().create_task(self._retire(transport))
        self._retiring[task] = transport
        task.add_done_callback(self._retired)

    async def close(self) -> None:
        """Close every transport; the pool makes new ones if used again."""
        transports, self._transports = self._transports, {}
        retiring, self._retiring = self._retiring, {}
        for task in retiring:
            task.cancel()
        for transport in [*transports.values(), *retiring.values()]:
            await transport.close()

    async def _retire(self, transport: TransportT) -> None:
        await asyncio.sleep(self._grace_s)
        await transport.close()

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)
