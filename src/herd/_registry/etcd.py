"""The registry's etcd backend: one key per instance, on a lease of its own, followed by a watch.

Every instance is a key ``{prefix}instances/{id}`` holding its entry (JSON), attached to a lease
with the registry's TTL: renewing is a keep-alive of that lease, and etcd deletes the key when
the lease runs out, so eviction needs no timer here. The backend keeps a mirror of the prefix,
loaded once and then kept current by a watch from the revision after that load (no polling);
reads answer from the mirror, so the registry keeps serving the last table it saw while etcd is
unreachable or has lost its quorum, and picks up every change (or, after a gap, the whole
table again) when etcd is back.

The version is etcd's revision and the epoch etcd's cluster id: both outlive the registry
process, so a restarted registry (or a second one on the same etcd) continues its clients' copy
rather than starting a new one. Needs the ``aetcd`` package (``pip install 'herd[etcd]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
import structlog

from herd._model.errors import ConfigurationError
from herd._model.instance import Instance, Status, clip

try:
    import aetcd  # type: ignore[import-untyped]
except ImportError as missing:  # pragma: no cover - depends on the installation
    raise ConfigurationError(
        "the etcd registry backend needs the aetcd package: pip install 'herd[etcd]'"
    ) from missing

log = structlog.get_logger("herd.registry")
T = TypeVar("T")

#: Where herd's keys live in etcd, unless told otherwise.
DEFAULT_PREFIX = "/herd/"
#: How long one etcd request may take: a member without a quorum never answers a write.
REQUEST_TIMEOUT_S = 2.0
#: Between attempts to reload and watch again after etcd was lost.
RETRY_S = 0.25
#: gRPC pings to notice a member that vanished without closing the connection (etcd refuses
#: clients that ping more often than every 5 s), and reconnects at most 0.5 s apart: gRPC's own
#: back-off grows to 2 minutes, and a registry that waits that long after etcd is back holds
#: every change back as long.
_CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 500,
    "grpc.keepalive_time_ms": 5_000,
    "grpc.keepalive_timeout_ms": 2_000,
    "grpc.keepalive_permit_without_calls": 1,
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    instance: Instance
    lease: int


def grpc_target(endpoints: Sequence[str]) -> str:
    """One gRPC target for every endpoint, so the channel fails over between members on its
    own: ``ipv4:a:p,b:q`` for addresses (gRPC's static list), the name itself for one DNS name
    (e.g. a Kubernetes Service in front of the members)."""
    if not endpoints:
        raise ConfigurationError("etcd needs at least one endpoint")
    if len(endpoints) == 1:
        return endpoints[0]
    hosts = [endpoint.rpartition(":")[0] for endpoint in endpoints]
    if not all(_is_ipv4(host) for host in hosts):
        raise ConfigurationError(
            "several etcd endpoints must be IPv4 addresses; give one DNS name (a Service"
            f" in front of the members) instead: {', '.join(endpoints)}"
        )
    return "ipv4:" + ",".join(endpoints)


def _is_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isascii() and p.isdigit() and int(p) < 256 for p in parts)


class EtcdBackend:
    """Instances on etcd leases, mirrored in memory by a watch. `start` before use, `close`
    after."""

    def __init__(
        self,
        endpoints: Sequence[str],
        lease_s: float = 3.0,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.endpoints = list(endpoints)
        self.epoch = ""
        # etcd counts leases in whole seconds; rounding up never evicts a renewing instance.
        self.ttl = max(1, math.ceil(lease_s))
        self._timeout_s = timeout_s
        self._prefix = f"{prefix}instances/".encode()
        host, _, port = grpc_target(self.endpoints).rpartition(":")
        # aetcd joins host and port into the channel's target; a static list is one target.
        self._client = aetcd.Client(
            host=host, port=int(port), timeout=timeout_s, options=_CHANNEL_OPTIONS
        )
        self._entries: dict[str, _Entry] = {}
        self._version = 0
        self._changed = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()

    async def start(self, wait_s: float = 10.0) -> None:
        """Load the table and start following it; ConnectionError if etcd did not answer
        within `wait_s` (the follower keeps trying until `close`)."""
        self._follower = asyncio.create_task(self._follow())
        try:
            async with asyncio.timeout(wait_s):
                await self._loaded.wait()
        except TimeoutError:
            await self.close()
            raise ConnectionError(
                f"etcd did not answer within {wait_s:g} s at {', '.join(self.endpoints)}"
            ) from None

    async def close(self) -> None:
        """Stop following and close the connection."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        await self._client.close()

    # -- following etcd

    async def _follow(self) -> None:
        """Load, then apply watch events; after any failure, load and watch again. Runs until
        cancelled: a registry that stopped following would serve a stale table for good."""
        while True:
            try:
                revision = await self._load()
                self._loaded.set()
                watch = await self._client.watch_prefix(self._prefix, start_revision=revision + 1)
                try:
                    async for event in watch:
                        self._apply(event)
                finally:
                    with contextlib.suppress(Exception):
                        await watch.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Lost etcd, or its quorum, or a compacted revision: keep the mirror, try again.
                log.info("etcd unreachable; serving the last table", error=repr(exc))
            await asyncio.sleep(RETRY_S)

    async def _load(self) -> int:
        """Replace the mirror with etcd's table; the revision it was read at."""
        found = await self._client.get_prefix(self._prefix)
        header = found.header
        self.epoch = f"etcd-{header.cluster_id:x}"
        entries: dict[str, _Entry] = {}
        for kv in found:
            entry = self._decode(kv.key, kv.value, kv.lease)
            if entry is not None:
                entries[entry.instance.id] = entry
        revision = int(header.revision)
        if entries != self._entries:
            self._entries = entries
            self._bump(revision)
        return revision

    def _apply(self, event: Any) -> None:
        kv = event.kv
        instance_id = bytes(kv.key)[len(self._prefix) :].decode(errors="replace")
        if event.kind == "DELETE":
            self._entries.pop(instance_id, None)
        else:
            entry = self._decode(kv.key, kv.value, kv.lease)
            if entry is None:
                return
            self._entries[entry.instance.id] = entry
        self._bump(int(kv.mod_revision))

    def _decode(self, key: bytes, value: bytes, lease: int) -> _Entry | None:
        """An entry from etcd, or None (logged) when the key does not hold one: anyone who can
        write to etcd can put anything under the prefix."""
        try:
            instance = msgspec.json.decode(value, type=Instance)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("skipped an undecodable etcd entry", key=clip(repr(key)), error=str(exc))
            return None
        if self._prefix + instance.id.encode() != key:
            log.warning("skipped an etcd entry under another id", key=clip(repr(key)))
            return None
        return _Entry(instance, int(lease))

    def _bump(self, revision: int) -> None:
        self._version = max(self._version + 1, revision)
        # Wake every waiter, then give later waiters a fresh event to wait on.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _seen(self, revision: int) -> None:
        """Wait until the mirror has caught up with a write at `revision`, so a write is
        visible in the next snapshot, as with the embedded backend. The watch delivers it in
        milliseconds; after `timeout_s` the write still stands, only seen later."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                while self._version < revision:
                    await self._changed.wait()

    def _key(self, instance_id: str) -> bytes:
        return self._prefix + instance_id.encode()

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, tried again while the channel reconnects, for up to `timeout_s`: gRPC
        fails a call at once while it waits to reconnect, and etcd may be back already."""
        give_up = time.monotonic() + self._timeout_s
        while True:
            try:
                return await call()
            except aetcd.ConnectionFailedError:
                if time.monotonic() >= give_up:
                    raise
                await asyncio.sleep(RETRY_S / 2)

    # -- the Backend protocol

    async def register(self, instance: Instance, *, limit: int) -> bool:
        """Put the entry on a new lease of `ttl` seconds; False if it is new and the table
        already holds `limit` instances. A lease it had before is left to run out: its key
        now hangs on the new one."""
        if instance.id not in self._entries and len(self._entries) >= limit:
            return False
        lease = await self._call(lambda: self._client.lease(self.ttl))
        put = await self._call(
            lambda: self._client.put(
                self._key(instance.id), msgspec.json.encode(instance), lease=lease.id
            )
        )
        await self._seen(int(put.header.revision))
        return True

    async def renew(self, instance_id: str) -> bool:
        """Keep the instance's lease alive; False if the instance (or its lease) is gone."""
        entry = self._entries.get(instance_id)
        if entry is None:
            return False
        reply = await self._call(lambda: self._client.refresh_lease(entry.lease))
        return reply is not None and int(reply.TTL) > 0

    async def set_status(self, instance_id: str, status: Status) -> bool:
        """Put the entry again with `status`, on its lease; False if unknown."""
        entry = self._entries.get(instance_id)
        if entry is None:
            return False
        if entry.instance.status != status:
            changed = msgspec.structs.replace(entry.instance, status=status)
            put = await self._call(
                lambda: self._client.put(
                    self._key(instance_id), msgspec.json.encode(changed), lease=entry.lease
                )
            )
            await self._seen(int(put.header.revision))
        return True

    async def deregister(self, instance_id: str) -> bool:
        """Delete the entry and revoke its lease; False if unknown."""
        entry = self._entries.get(instance_id)
        deleted = await self._call(lambda: self._client.delete(self._key(instance_id)))
        if deleted is None:
            return False
        await self._seen(int(deleted.header.revision))
        if entry is not None:
            # Only tidiness: an unrenewed lease runs out by itself.
            with contextlib.suppress(aetcd.ClientError):
                await self._client.revoke_lease(entry.lease)
        return True

    async def evict_expired(self) -> list[Instance]:
        """Nothing to do: etcd deletes the key of a lease that ran out, and the watch removes
        it from the mirror."""
        return []

    def snapshot(self) -> tuple[int, list[Instance]]:
        """The mirror's revision and every instance in it."""
        return self._version, [entry.instance for entry in self._entries.values()]

    async def wait_change(self, version: int, timeout: float) -> None:
        """Return when the mirror moves past `version`, or after `timeout` seconds."""
        if self._version != version or timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()
