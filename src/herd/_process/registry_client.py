"""The registry as its clients see it: a watched, cached copy (resolver) and a lease (registrar).

Clients keep calling what they last knew while the registry is unreachable, and do not trust a
restarted registry's table until it has had a full lease period to fill up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import socket
from collections.abc import Sequence
from typing import ClassVar

import msgspec
import structlog

from herd._client.driver import static_driver
from herd._client.policy import CallPolicy
from herd._model import deadline as _deadline
from herd._model.errors import ConfigurationError, HerdError
from herd._model.instance import Instance, Status, clip
from herd._model.interface import ServiceError
from herd._model.route import Route
from herd._model.tasks import cancel_and_wait
from herd._process.config import REGISTRY, settings
from herd._process.registry_api import RegistryApi, Snapshot

log = structlog.get_logger("herd.registry")

# The registry is called with one attempt and no breaker: its callers retry on their own schedule
# and must keep trying forever while it is down. (A breaker here would stay open for a sleep
# window after the registry came back, and hold changes back from every driver meanwhile.)
_REGISTRY_POLICY = CallPolicy(attempts=1, timeout=2.0, breaker=None)


def _api(address: str) -> RegistryApi:
    return static_driver(RegistryApi, address, policy=_REGISTRY_POLICY)


class RegistryResolver:
    """Follows the registry with long-polled watches; answers from the cached copy.

    Entries unfit to call (`Instance.problems`: an impossible port, a host that is no address)
    never reach the cached copy: `skipped` counts those in the registry's current table.
    """

    def __init__(self, address: str, *, poll_s: float = 5.0, retry_s: float = 0.5) -> None:
        self.address = address
        self._api = _api(address)
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._epoch = ""
        self._version = -1
        self._by_service: dict[str, list[Instance]] = {}
        self._all: list[Instance] = []
        self._routes: dict[str, Route] = {}
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._unfit: frozenset[Instance] = frozenset()
        self.skipped = 0

    def instances(self, service: str) -> Sequence[Instance]:
        """The UP instances of `service` in the cached copy."""
        return self._by_service.get(service, ())

    def all(self) -> list[Instance]:
        """Every instance in the cached copy, whatever its status."""
        return list(self._all)

    def route(self, service: str) -> Route | None:
        """The route the control plane publishes for `service`; None when it has none."""
        return self._routes.get(service)

    async def start(self, wait_s: float = 2.0) -> None:
        """Start watching; wait up to `wait_s` for the first copy (later calls return at once)."""
        if self._task is None:
            # A fresh context: started lazily by a driver's first call, the watch would otherwise
            # inherit that call's deadline and stop following the registry when it passed.
            self._task = asyncio.create_task(self._follow(), context=contextvars.Context())
        if not self._first.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._first.wait()

    async def close(self) -> None:
        """Stop watching."""
        await cancel_and_wait(self._task)
        self._task = None
        await self._api.aclose()

    def _apply(self, snapshot: Snapshot) -> None:
        instances = self._fit(snapshot.instances)
        restarted = snapshot.epoch != self._epoch
        if restarted and not snapshot.warm and self._all:
            # A restarted registry refills as instances re-register; until a lease period has
            # passed, what it lacks is more likely unregistered than gone. Keep the old copy.
            self._by_service = _merge(self._all, instances)
            self._routes = {**self._routes, **_routes(snapshot)}
            return
        self._routes = _routes(snapshot)
        self._epoch = snapshot.epoch
        self._version = snapshot.version
        self._all = instances
        by_service: dict[str, list[Instance]] = {}
        for instance in instances:
            if instance.status == Status.UP:
                by_service.setdefault(instance.service, []).append(instance)
        self._by_service = by_service

    def _fit(self, instances: list[Instance]) -> list[Instance]:
        """The entries fit to call. The others are counted in `skipped` and logged once each,
        quoting a few dozen characters of what they hold."""
        fit: list[Instance] = []
        unfit: set[Instance] = set()
        for instance in instances:
            if instance.problems():
                unfit.add(instance)
            else:
                fit.append(instance)
        for instance in unfit - self._unfit:
            log.warning(
                "skipped an unfit registry entry",
                instance=clip(instance.id),
                problems=instance.problems(),
            )
        self._unfit = frozenset(unfit)
        self.skipped = len(unfit)
        return fit

    async def _follow(self) -> None:
        while True:
            try:
                with _deadline.deadline(self._poll_s + 1.0):
                    snapshot = await self._api.watch(self._epoch, self._version)
            except HerdError as exc:
                log.debug("registry unreachable; keeping the cached copy", error=str(exc))
                await asyncio.sleep(self._retry_s)
                continue
            self._apply(snapshot)
            if snapshot.epoch != self._epoch:
                # Still warming up: poll again soon rather than wait for a change.
                await asyncio.sleep(self._retry_s)
            self._first.set()


def _routes(snapshot: Snapshot) -> dict[str, Route]:
    return {route.service: route for route in snapshot.routes if not route.problems()}


def _merge(old: list[Instance], new: list[Instance]) -> dict[str, list[Instance]]:
    merged = {i.id: i for i in old}
    merged.update({i.id: i for i in new})
    by_service: dict[str, list[Instance]] = {}
    for instance in merged.values():
        if instance.status == Status.UP:
            by_service.setdefault(instance.service, []).append(instance)
    return by_service


class SharedResolver:
    """One process-wide `RegistryResolver` per registry, shared by counted handles.

    Every driver that follows the registry holds a handle; closing a handle releases it, and
    the watch stops only when the last handle is closed, so closing one driver never blinds
    another.
    """

    _shared: ClassVar[dict[str, tuple[RegistryResolver, int]]] = {}

    def __init__(self, address: str) -> None:
        resolver, count = self._shared.get(address, (None, 0))
        if resolver is None:
            resolver = RegistryResolver(address)
        self._shared[address] = (resolver, count + 1)
        self.address = address
        self._resolver: RegistryResolver | None = resolver

    def _live(self) -> RegistryResolver:
        if self._resolver is None:
            raise RuntimeError("this handle on the registry watch is closed")
        return self._resolver

    def instances(self, service: str) -> Sequence[Instance]:
        """The UP instances of `service` in the shared cached copy."""
        return self._live().instances(service)

    def route(self, service: str) -> Route | None:
        """The service's route in the shared cached copy."""
        return self._live().route(service)

    @property
    def skipped(self) -> int:
        """How many entries of the registry's table the shared watch skips as unfit to call."""
        return self._live().skipped

    async def start(self) -> None:
        """Start the shared watch (once) and wait briefly for its first copy."""
        await self._live().start()

    async def close(self) -> None:
        """Release this handle; the last one stops the watch."""
        resolver, self._resolver = self._resolver, None
        if resolver is None:
            return
        _, count = self._shared[self.address]
        if count > 1:
            self._shared[self.address] = (resolver, count - 1)
            return
        del self._shared[self.address]
        await resolver.close()


def registry_resolver(address: str | None = None) -> SharedResolver:
    """A handle on the process's shared resolver for a registry (default: `HERD_REGISTRY`)."""
    address = address or settings().registry
    if not address:
        raise ConfigurationError(
            f"no instances given: pass address= or a resolver, or set {REGISTRY}"
        )
    return SharedResolver(address)


class Registrar:
    """Keeps one instance registered: registers, renews its lease, re-registers after a
    registry restart, and deregisters on shutdown.

    Under `herd up` the process's identity (its certificate) proves it is the instance it
    writes about.
    """

    def __init__(self, address: str, instance: Instance, *, renew_s: float = 1.0) -> None:
        self.instance = instance
        self._api = _api(address)
        self._renew_s = renew_s
        self._task: asyncio.Task[None] | None = None
        self._refusal = ""

    async def start(self, status: Status = Status.UP) -> None:
        """Register with `status` (best effort) and keep the lease renewed."""
        self.instance = _with_status(self.instance, status)
        await self._register()
        self._task = asyncio.create_task(self._renew(), context=contextvars.Context())

    async def stop(self) -> None:
        """Stop renewing and deregister, so callers stop choosing this instance."""
        await cancel_and_wait(self._task)
        with contextlib.suppress(HerdError), _deadline.deadline(1.0):
            await self._api.deregister(self.instance.id)
        await self._api.aclose()

    async def _register(self) -> bool:
        try:
            await self._api.register(self.instance)
        except ServiceError as exc:
            # An answer, not an outage: say it loudly, once per reason (renewals that find the
            # instance unknown register it again, and would repeat it every second).
            if str(exc) != self._refusal:
                log.error("the registry refused this instance", error=str(exc))
            self._refusal = str(exc)
            return False
        except HerdError as exc:
            log.warning("registry unreachable; will retry", error=str(exc))
            return False
        self._refusal = ""
        return True

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._renew_s)
            try:
                known = await self._api.renew(self.instance.id)
            except HerdError:
                continue
            if not known:
                await self._register()


def _with_status(instance: Instance, status: Status) -> Instance:
    return msgspec.structs.replace(instance, status=status)


def instance_from_env(service: str, host: str, port: int) -> Instance:
    """Describe this process's instance from `HERD_*` environment variables (set by the cloud)."""
    env = settings()
    return Instance(
        id=env.instance or f"{service}-{socket.gethostname()}-{os.getpid()}",
        service=service,
        group=env.group or f"{service}-{env.version}",
        version=env.version,
        zone=env.zone or "local",
        host=host,
        port=port,
        status=Status.STARTING,
    )
