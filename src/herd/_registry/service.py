"""The registry service: leases, eviction, and long-polled watches.

Run it with ``herd registry`` (or ``python -m herd._registry.service``). Every write must carry
the credential issued to the instance it changes, checked against the registry's key; every entry
is checked (`Instance.problems`) before it is stored or logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import os
import secrets
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
import uvloop

from herd._model import deadline as _deadline
from herd._model.clock import MONOTONIC, Clock
from herd._model.errors import ConfigurationError
from herd._model.instance import Instance, Status, clip, id_problem
from herd._process import identity
from herd._process.config import CREDENTIAL, REGISTRY_KEY, credential_for, settings
from herd._process.logging import configure as configure_logging
from herd._process.registry_api import (
    InvalidInstance,
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
#: Where a standalone registry keeps the key it made, under `HERD_HOME`.
KEY_FILE = "registry.key"


class RegistryService(RegistryApi):
    """Serves the registry API over a backend; evicts instances whose lease ran out."""

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        key: str,
        lease_s: float = 3.0,
        clock: Clock = MONOTONIC,
        max_instances: int = MAX_INSTANCES,
    ) -> None:
        if not key:
            raise ConfigurationError("the registry needs a key to check instances' credentials")
        self.backend = backend or MemoryBackend(lease_s, clock)
        self.lease_s = lease_s
        self.max_instances = max_instances
        self._key = key
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

    async def register(self, instance: Instance, *, credential: str) -> float:
        problems = instance.problems()
        if problems:
            log.info("refused an unfit entry", instance=clip(instance.id), problems=problems)
            raise InvalidInstance("; ".join(problems), problems=problems)
        self._authorize(instance.id, credential)
        if not await self.backend.register(instance, limit=self.max_instances):
            log.warning("refused a new instance: the table is full", instance=instance.id)
            raise RegistryFull(
                f"the registry already holds {self.max_instances} instances",
                limit=self.max_instances,
            )
        log.info("registered", instance=instance.id, status=instance.status, at=instance.address)
        return self.lease_s

    async def renew(self, instance_id: str, *, credential: str) -> bool:
        self._authorize(instance_id, credential)
        return await self.backend.renew(instance_id)

    async def set_status(self, instance_id: str, status: Status, *, credential: str) -> bool:
        self._authorize(instance_id, credential)
        return await self.backend.set_status(instance_id, status)

    async def deregister(self, instance_id: str, *, credential: str) -> bool:
        self._authorize(instance_id, credential)
        found = await self.backend.deregister(instance_id)
        log.info("deregistered", instance=instance_id, known=found)
        return found

    def _authorize(self, instance_id: str, credential: str) -> None:
        """Refuse a write unless `instance_id` is fit and `credential` was issued for it."""
        problem = id_problem(instance_id)
        if problem is not None:
            log.info("refused an unfit id", instance=clip(instance_id), problem=problem)
            raise InvalidInstance(problem, problems=[problem])
        expected = credential_for(self._key, instance_id)
        # compare_digest compares str only when ASCII; a non-ASCII credential is wrong anyway.
        if not (credential.isascii() and hmac.compare_digest(credential, expected)):
            log.warning("refused a write without the instance's credential", instance=instance_id)
            raise NotAuthorized(f"the credential was not issued for instance {instance_id}")

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


async def serve_registry(
    host: str,
    port: int,
    lease_s: float,
    *,
    key: str,
    etcd: Sequence[str] = (),
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run the registry until SIGTERM, checking credentials with `key`; on the etcd members at
    `etcd` (`host:port`s) when given, else in memory; callers prove an identity with `tls`."""
    backend: Backend | None = None
    if etcd:
        # Imported here: the etcd client is an extra (herd[etcd]) the embedded registry lacks.
        from herd._registry.etcd import EtcdBackend

        backend = etcd_backend = EtcdBackend(etcd, lease_s)
        await etcd_backend.start()
    service = RegistryService(backend, key=key, lease_s=lease_s)
    service.start_evicting()
    server = Server(service, host=host, port=port, max_inflight=4096, tls=tls)
    try:

        async def release(_: Server) -> None:
            service.release_watches()

        await serve_until_signalled(server, drain_timeout=1.0, before_drain=release)
    finally:
        await service.stop_evicting()
        if etcd:
            await etcd_backend.close()


def registry_key(key_file: Path | None = None) -> tuple[str, str]:
    """The standalone registry's key, and a phrase saying where it came from.

    From `key_file` if given, else `HERD_REGISTRY_KEY`, else `registry.key` under `HERD_HOME`
    (default ~/.herd), which is made (mode 600) with a new random key when missing, so that a
    restarted registry keeps accepting the credentials it accepted before.
    """
    if key_file is not None:
        return _read_key(key_file), f"the key in {key_file}"
    env = settings()
    if env.registry_key:
        return env.registry_key, f"the key in {REGISTRY_KEY}"
    path = env.home / KEY_FILE
    if path.exists():
        return _read_key(path), f"the key in {path}"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # Made with its mode, never widened and narrowed: nobody else can read it at any moment.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(key + "\n")
    return key, f"a new key, written to {path} (mode 600)"


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ConfigurationError(f"{path} holds no key")
    return key


def run_registry(
    host: str,
    port: int,
    lease_s: float,
    key_file: Path | None = None,
    etcd: Sequence[str] = (),
) -> None:
    """Run a standalone registry in this process until SIGTERM or SIGINT (the key: see
    `registry_key`; on etcd at `etcd` when given); says on stderr where its key came from."""
    configure_logging()
    try:
        key, where = registry_key(key_file)
    except (ConfigurationError, OSError) as exc:
        raise SystemExit(f"herd registry: {exc}") from None
    print(
        f"herd registry: {where}. Instances register with {CREDENTIAL} (issued for their id)"
        f" or {REGISTRY_KEY} (to mint their own).",
        file=sys.stderr,
        flush=True,
    )
    try:
        tls = identity.server_context()
        uvloop.run(serve_registry(host, port, lease_s, key=key, etcd=etcd, tls=tls))
    except (ConfigurationError, ConnectionError) as exc:
        raise SystemExit(f"herd registry: {exc}") from None


def main() -> None:
    """``python -m herd._registry.service``."""
    parser = argparse.ArgumentParser(description="Run the herd registry.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--lease", type=float, default=3.0, help="seconds without renewal to evict")
    parser.add_argument(
        "--key-file",
        type=Path,
        help=f"file holding the key that checks credentials (else {REGISTRY_KEY}, else"
        f" ~/.herd/{KEY_FILE}, made if missing)",
    )
    parser.add_argument(
        "--etcd",
        default="",
        help="keep instances on etcd: comma-separated host:port of its members (else in memory)",
    )
    args = parser.parse_args()
    etcd = [part for part in args.etcd.split(",") if part]
    run_registry(args.host, args.port, args.lease, args.key_file, etcd)


if __name__ == "__main__":
    main()
