"""The registry service: leases, eviction, and long-polled watches.

Run it with ``herd registry`` (or ``python -m herd._registry.service``). With an identity
(`HERD_TLS_DIR`, as `herd up` runs it) every caller proves who it is with its certificate, and a
write is accepted only from the instance it is about; without one (dev mode) any local caller
may write. Every entry is checked (`Instance.problems`) before it is stored or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Sequence

import structlog
import uvloop

from herd._model import deadline as _deadline
from herd._model import identity as _identity
from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError
from herd._model.instance import Instance, Status, clip, id_problem
from herd._model.route import Route
from herd._process import identity
from herd._process.config import TLS_DIR
from herd._process.logging import configure as configure_logging
from herd._process.registry_api import (
    InvalidInstance,
    InvalidRoute,
    NotAuthorized,
    RegistryApi,
    RegistryFull,
    Snapshot,
)
from herd._process.run import serve_until_signalled
from herd._registry.backend import Backend, MemoryBackend
from herd._server.server import Server

log = structlog.get_logger("herd.registry")

#: A watch answers this long before the caller's deadline, so the answer arrives in time.
_WATCH_MARGIN_S = 0.1
#: The most instances a registry holds: one machine's worth, with room to spare.
MAX_INSTANCES = 10_000


class RegistryService(RegistryApi):
    """Serves the registry API over a backend; evicts instances whose lease ran out.

    With `identities` (served over mutual TLS), a write is refused (`NotAuthorized`) unless the
    caller's identity is the instance it is about; without, any caller may write (dev mode).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        identities: bool,
        lease_s: float = 3.0,
        clock: Clock = MONOTONIC,
        max_instances: int = MAX_INSTANCES,
    ) -> None:
        self.backend = backend or MemoryBackend(lease_s, clock)
        self.lease_s = lease_s
        self.max_instances = max_instances
        self.identities = identities
        self._clock = clock
        self._started = clock.now()
        self._evictor: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        # Routes live here, not in the backend: the control plane publishes them again when it
        # sees a restarted registry without them. Each change counts in `_route_changes`, which
        # the snapshot's version adds to the backend's, so a watch sees a route change as one.
        self._routes: dict[str, Route] = {}
        self._route_changes = 0
        self._route_changed = asyncio.Event()

    def release_watches(self) -> None:
        """Answer every open watch now, so a stopping registry does not wait out long polls."""
        self._closing.set()

    def warm(self) -> bool:
        """Whether a full lease period has passed since start.

        Before that, a restarted registry's table is still filling up as instances re-register;
        clients keep their cached copy rather than trust a partial table.
        """
        return self._clock.now() - self._started >= self.lease_s

    def start_evicting(self, every_s: float = 0.25) -> None:
        """Start the background task that evicts expired leases."""

        async def evict() -> None:
            while True:
                await asyncio.sleep(every_s)
                for instance in await self.backend.evict_expired():
                    log.info("evicted", instance=instance.id, service=instance.service)

        self._evictor = asyncio.create_task(evict())

    async def stop_evicting(self) -> None:
        """Stop the eviction task."""
        if self._evictor is not None:
            self._evictor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evictor

    async def register(self, instance: Instance) -> float:
        problems = instance.problems()
        if problems:
            log.info("refused an unfit entry", instance=clip(instance.id), problems=problems)
            raise InvalidInstance("; ".join(problems), problems=problems)
        caller = self._authorize(instance.id)
        if caller is not None and (caller.service, caller.group) != (
            instance.service,
            instance.group,
        ):
            # An instance may not offer itself as another service's: callers would send it
            # that service's calls.
            log.warning("refused an entry for another service", instance=instance.id)
            raise NotAuthorized(
                f"{instance.id} is an instance of {caller.group}, not of {clip(instance.group)}"
            )
        if not await self.backend.register(instance, limit=self.max_instances):
            log.warning("refused a new instance: the table is full", instance=instance.id)
            raise RegistryFull(
                f"the registry already holds {self.max_instances} instances",
                limit=self.max_instances,
            )
        log.info("registered", instance=instance.id, status=instance.status, at=instance.address)
        return self.lease_s

    async def renew(self, instance_id: str) -> bool:
        self._authorize(instance_id)
        return await self.backend.renew(instance_id)

    async def set_status(self, instance_id: str, status: Status) -> bool:
        # The control plane takes a disabled group's instances out of rotation (and back), as
        # Asgard did through Eureka; nothing else may change another instance's status.
        self._authorize(instance_id, control=True)
        return await self.backend.set_status(instance_id, status)

    async def deregister(self, instance_id: str) -> bool:
        # The control plane drops an instance whose process it saw end (a SIGKILL leaves no
        # time to deregister), so callers stop picking it before its lease runs out.
        self._authorize(instance_id, control=True)
        found = await self.backend.deregister(instance_id)
        log.info("deregistered", instance=instance_id, known=found)
        return found

    async def set_route(self, route: Route) -> bool:
        service = route.service
        problem = id_problem(service)
        if problem is not None:
            raise InvalidRoute(problem, problems=[problem])
        if self.identities and not _is_control(_identity.caller()):
            log.warning("refused a route from outside the control plane", service=service)
            raise NotAuthorized(f"only the control plane publishes routes (for {service})")
        if route.splits and (problems := route.problems()):
            raise InvalidRoute("; ".join(problems), problems=problems)
        if self._routes.get(service) == (route if route.splits else None):
            return True
        if route.splits:
            self._routes[service] = route
        else:
            self._routes.pop(service, None)
        self._route_changes += 1
        self._route_changed.set()
        self._route_changed = asyncio.Event()
        log.info("route", service=service, splits={s.group: s.share for s in route.splits})
        return True

    def _authorize(self, instance_id: str, *, control: bool = False) -> _identity.Identity | None:
        """Refuse a write unless `instance_id` is fit and, with identities, the caller is that
        instance (or, with `control`, the control plane); the caller's identity (None in dev
        mode)."""
        problem = id_problem(instance_id)
        if problem is not None:
            log.info("refused an unfit id", instance=clip(instance_id), problem=problem)
            raise InvalidInstance(problem, problems=[problem])
        if not self.identities:
            return None
        caller = _identity.caller()
        if control and _is_control(caller):
            return caller
        if caller is None or caller.instance != instance_id:
            who = "a caller without an identity" if caller is None else caller.instance
            log.warning("refused a write about another instance", instance=instance_id, by=who)
            raise NotAuthorized(f"{who} may not write the entry of {instance_id}")
        return caller

    async def watch(self, epoch: str, version: int) -> Snapshot:
        left = _deadline.remaining()
        wait = 10.0 if left is None else left - _WATCH_MARGIN_S
        # Both parts only grow within an epoch, so an unchanged sum means neither changed.
        seen = self.backend.snapshot()[0]
        if (
            epoch == self.backend.epoch
            and version == seen + self._route_changes
            and not self._closing.is_set()
        ):
            waits = [
                asyncio.ensure_future(self.backend.wait_change(seen, wait)),
                asyncio.ensure_future(self._closing.wait()),
                asyncio.ensure_future(self._route_changed.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        current, instances = self.backend.snapshot()
        return Snapshot(
            self.backend.epoch,
            current + self._route_changes,
            self.warm(),
            instances,
            list(self._routes.values()),
        )


def _is_control(caller: _identity.Identity | None) -> bool:
    return caller is not None and caller.is_control


async def serve_registry(
    host: str,
    port: int,
    lease_s: float,
    *,
    etcd: Sequence[str] = (),
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run the registry until SIGTERM, on the etcd members at `etcd` (`host:port`s) when given,
    else in memory; callers prove an identity with `tls` (else dev mode: anyone writes)."""
    backend: Backend | None = None
    if etcd:
        # Imported here: the etcd client is an extra (herd[etcd]) the embedded registry lacks.
        from herd._registry.etcd import EtcdBackend

        backend = etcd_backend = EtcdBackend(etcd, lease_s)
        await etcd_backend.start()
    service = RegistryService(backend, identities=tls is not None, lease_s=lease_s)
    service.start_evicting()
    # The fixed cap alone: a watch is a long poll that holds its place for the whole wait, so
    # latency says nothing of the registry's load (an adaptive limit would shed watchers).
    server = Server(service, host=host, port=port, max_inflight=4096, tls=tls, limit="fixed")
    try:

        async def release(_: Server) -> None:
            service.release_watches()

        await serve_until_signalled(server, drain_timeout=1.0, before_drain=release)
    finally:
        await service.stop_evicting()
        if etcd:
            await etcd_backend.close()


def run_registry(host: str, port: int, lease_s: float, etcd: Sequence[str] = ()) -> None:
    """Run a standalone registry in this process until SIGTERM or SIGINT (on etcd at `etcd`
    when given); says on stderr who may write."""
    configure_logging()
    try:
        tls = identity.server_context()
    except ConfigurationError as exc:
        raise SystemExit(f"herd registry: {exc}") from None
    if tls is None:
        said = (
            f"no identity ({TLS_DIR} unset): dev mode, any local process may write any entry."
            " Under `herd up` every write must come from the instance it is about."
        )
    else:
        said = "writes only from the instance they are about (mutual TLS)."
    print(f"herd registry: {said}", file=sys.stderr, flush=True)
    try:
        uvloop.run(serve_registry(host, port, lease_s, etcd=etcd, tls=tls))
    except (ConfigurationError, ConnectionError) as exc:
        raise SystemExit(f"herd registry: {exc}") from None


def main() -> None:
    """``python -m herd._registry.service``."""
    parser = argparse.ArgumentParser(description="Run the herd registry.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--lease", type=float, default=3.0, help="seconds without renewal to evict")
    parser.add_argument(
        "--etcd",
        default="",
        help="keep instances on etcd: comma-separated host:port of its members (else in memory)",
    )
    args = parser.parse_args()
    etcd = [part for part in args.etcd.split(",") if part]
    run_registry(args.host, args.port, args.lease, etcd)


if __name__ == "__main__":
    main()
