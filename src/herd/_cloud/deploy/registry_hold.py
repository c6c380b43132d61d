"""What deploys want of the registry, written and then held: the routes they publish and the
statuses of the groups they disable or re-enable, checked again and again against what the
registry has (a restarted registry, or a replaced instance of a disabled group that registered
UP)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable

import structlog

from herd._client.driver import static_driver
from herd._client.policy import CallPolicy
from herd._model.errors import HerdError
from herd._model.instance import Status
from herd._model.interface import ServiceError
from herd._model.route import Route
from herd._process.registry_api import RegistryApi
from herd._process.registry_client import RegistryResolver

log = structlog.get_logger("herd.deploy")

#: How often published routes and held statuses are checked against the registry.
RECONCILE_S = 0.5
_RETRY_S = 0.2
_REGISTRY_POLICY = CallPolicy(attempts=2, timeout=1.0, breaker=None)
_WRITE_TRIES = 10


class RegistryHold:
    """The control plane's writes to the registry for deploys, and the loop that holds them."""

    def __init__(
        self, registry_address: str, resolver: Callable[[], RegistryResolver | None]
    ) -> None:
        self._resolver = resolver
        self._api = static_driver(RegistryApi, registry_address, policy=_REGISTRY_POLICY)
        self._routes: dict[str, Route] = {}
        """What the registry should publish, by service."""
        self._wanted: dict[str, Status] = {}
        """Groups whose instances are held UP or OUT_OF_SERVICE, by group name."""
        self._reconciling: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin keeping the registry in line with the routes and statuses held."""
        self._reconciling = asyncio.create_task(self._reconcile(), context=contextvars.Context())

    async def close(self) -> None:
        if self._reconciling is not None:
            self._reconciling.cancel()
            await asyncio.gather(self._reconciling, return_exceptions=True)
        await self._api.aclose()

    def route(self, service: str) -> Route | None:
        """The route held for `service`."""
        return self._routes.get(service)

    async def set_route(self, route: Route) -> None:
        """Publish `route` and hold it; a route with no splits drops the service's route."""
        if route.splits:
            self._routes[route.service] = route
        else:
            self._routes.pop(route.service, None)
        await self._publish(route)

    async def set_status(self, group: str, status: Status) -> int:
        """Set and hold the status of every instance of `group`; how many there are now."""
        self._wanted[group] = status
        resolver = self._resolver()
        assert resolver is not None
        members = [i for i in resolver.all() if i.group == group]
        await asyncio.gather(*(self._status(i.id, status) for i in members))
        return len(members)

    def release(self, group: str) -> None:
        """Hold `group`'s status no more (the group goes)."""
        self._wanted.pop(group, None)

    async def forget(self, instance: str) -> None:
        """Drop an instance from the registry at once, once (the lease evicts it if this write
        is lost)."""
        with contextlib.suppress(HerdError):
            await self._api.deregister(instance)

    async def _publish(self, route: Route) -> None:
        await self._write(lambda: self._api.set_route(route))

    async def _status(self, instance: str, status: Status) -> None:
        await self._write(lambda: self._api.set_status(instance, status))

    async def _write(self, call: Callable[[], Awaitable[bool]]) -> None:
        """A registry write, tried again for a few seconds: a rollback must not stop at one
        lost connection. What still fails is left to `_reconcile`, which holds the routes and
        statuses deploys want until the registry has them."""
        for attempt in range(_WRITE_TRIES):
            try:
                await call()
                return
            except ServiceError:
                raise
            except HerdError as exc:
                if attempt == _WRITE_TRIES - 1:
                    log.warning("registry write failed; reconciling later", error=str(exc))
                    return
                await asyncio.sleep(_RETRY_S)

    async def _reconcile(self) -> None:
        """Keep the registry as deploys left it: publish routes a restarted registry lost, and
        hold the statuses of disabled (and re-enabled) groups, whose replaced instances
        register UP."""
        while True:
            await asyncio.sleep(RECONCILE_S)
            resolver = self._resolver()
            if resolver is None:
                continue
            try:
                for service, route in list(self._routes.items()):
                    if resolver.route(service) != route:
                        await self._publish(route)
                for instance in resolver.all():
                    wanted = self._wanted.get(instance.group)
                    if wanted is None or instance.status == wanted:
                        continue
                    if {instance.status, wanted} == {Status.UP, Status.OUT_OF_SERVICE}:
                        await self._status(instance.id, wanted)
            except HerdError as exc:
                log.warning("could not reconcile the registry", error=str(exc))
