"""The app's caches as the local cloud runs them: one memcached server per cache and zone.

Each server fills a slot of the controller (started, supervised, restarted with back-off like
an instance). Its port is chosen once, at `herd up`, and kept across restarts, so the
`HERD_CACHES` every child was given stays true: a restarted server comes back empty on the same
address, and `herd.Cache` warms it from the other zones.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
from pathlib import Path

from herd._cloud.app import App
from herd._cloud.interface import CacheView
from herd._process.config import CACHES, CacheZones, caches_value


@dataclasses.dataclass(frozen=True)
class CacheServer:
    """One memcached server: cache `name`'s replica in `zone`."""

    name: str
    zone: str
    port: int
    memory_mb: int
    host: str = "127.0.0.1"
    """Where it listens: loopback, or its zone's address on an isolated network."""

    @property
    def id(self) -> str:
        """`cache-{name}-{zone}`: its slot, log and `herd ps` name."""
        return f"cache-{self.name}-{self.zone}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        """The launcher that becomes memcached and announces readiness (`_cloud.memcached`)."""
        return [
            sys.executable,
            "-m",
            "herd._cloud.launch.memcached",
            f"--port={self.port}",
            f"--host={self.host}",
            f"--memory-mb={self.memory_mb}",
        ]


def free_port() -> int:
    """A port free on loopback now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plan(app: App) -> list[CacheServer]:
    """A server per cache and zone: on `port + i` for zone i, or on free ports."""
    return [
        CacheServer(
            cache.name,
            zone,
            cache.port + index if cache.port else free_port(),
            cache.memory_mb,
        )
        for cache in app.spec.caches
        for index, zone in enumerate(app.spec.zones)
    ]


def environment(servers: list[CacheServer]) -> dict[str, str]:
    """`HERD_CACHES` for every child of the cloud (nothing when the app has no cache)."""
    caches: dict[str, CacheZones] = {}
    for server in servers:
        caches.setdefault(server.name, {}).setdefault(server.zone, []).append(server.address)
    return {CACHES: caches_value(caches)} if caches else {}


def view(
    server: CacheServer, *, status: str, pid: int | None, uptime_s: float, log: Path
) -> CacheView:
    """How `herd ps` shows one server."""
    return CacheView(
        id=server.id,
        cache=server.name,
        zone=server.zone,
        status=status,
        address=server.address,
        pid=pid or 0,
        uptime_s=round(uptime_s, 1),
        memory_mb=server.memory_mb,
        log=str(log),
    )
