"""The registry service: leases, eviction, and long-polled watches.

Run it with ``herd registry`` (or ``python -m herd._registry.service``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import structlog
import uvloop

from herd._model import deadline as _deadline
from herd._model.clock import MONOTONIC, Clock
from herd._model.instance import Instance, Status
from herd._process.logging import configure as configure_logging
from herd._process.registry_api import RegistryApi, Snapshot
from herd._process.run import serve_until_signalled
from herd._registry.backend import Backend, MemoryBackend
from herd._server.server import Server

log = structlog.get_logger("herd.registry")

#: A watch answers this long before the caller's deadline, so the answer arrives in time.
_WATCH_MARGIN_S = 0.1


class RegistryService(RegistryApi):
    """Serves the registry API over a backend; evicts instances whose lease ran out."""

    def __init__(
        self, backend: Backend | None = None, *, lease_s: float = 3.0, clock: Clock = MONOTONIC
    ) -> None:
        self.backend = backend or MemoryBackend(lease_s, clock)
        self.lease_s = lease_s
        self._clock = clock
        self._started = clock.now()
        self._evictor: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

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
        await self.backend.register(instance)
        log.info("registered", instance=instance.id, status=instance.status, at=instance.address)
        return self.lease_s

    async def renew(self, instance_id: str) -> bool:
        return await self.backend.renew(instance_id)

    async def set_status(self, instance_id: str, status: Status) -> bool:
        return await self.backend.set_status(instance_id, status)

    async def deregister(self, instance_id: str) -> bool:
        found = await self.backend.deregister(instance_id)
        log.info("deregistered", instance=instance_id, known=found)
        return found

    async def watch(self, epoch: str, version: int) -> Snapshot:
        left = _deadline.remaining()
        wait = 10.0 if left is None else left - _WATCH_MARGIN_S
        if epoch == self.backend.epoch and not self._closing.is_set():
            changed = asyncio.ensure_future(self.backend.wait_change(version, wait))
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait({changed, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                closing.cancel()
        current, instances = self.backend.snapshot()
        return Snapshot(self.backend.epoch, current, self.warm(), instances)


async def serve_registry(host: str, port: int, lease_s: float) -> None:
    """Run the registry until SIGTERM."""
    service = RegistryService(lease_s=lease_s)
    service.start_evicting()
    server = Server(service, host=host, port=port, max_inflight=4096)
    try:

        async def release(_: Server) -> None:
            service.release_watches()

        await serve_until_signalled(server, drain_timeout=1.0, before_drain=release)
    finally:
        await service.stop_evicting()


def main() -> None:
    """``python -m herd._registry.service``."""
    parser = argparse.ArgumentParser(description="Run the herd registry (embedded backend).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--lease", type=float, default=3.0, help="seconds without renewal to evict")
    args = parser.parse_args()
    configure_logging()
    uvloop.run(serve_registry(args.host, args.port, args.lease))


if __name__ == "__main__":
    main()
