"""Real memcached for tests: the system's binary, through herd's launcher
(`python -m herd._cloud.launch.memcached`), one server per zone on free loopback ports."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from herd._cloud.launch.memcached import INSTALL
from tests.helpers import ServiceProcess, ZoneServers, free_port


def require_memcached() -> None:
    """Fail (never skip) with the command that installs memcached when it is missing."""
    if shutil.which("memcached") is None and not Path("/usr/bin/memcached").exists():
        raise AssertionError(f"memcached is not installed: run `{INSTALL}` (or `make system`)")


class MemcachedZones(ZoneServers):
    """One memcached per zone, each a process with its own log; restartable on its port."""

    def __init__(self, directory: Path, zones: tuple[str, ...] = ("a", "b", "c")) -> None:
        require_memcached()
        super().__init__()
        self.directory = directory
        self.ports = {zone: free_port() for zone in zones}
        for zone in zones:
            self.start(zone)

    @property
    def servers(self) -> dict[str, list[str]]:
        """zone -> its `host:port`s, as `herd.Cache` takes them."""
        return {zone: [f"127.0.0.1:{port}"] for zone, port in self.ports.items()}

    def env(self, name: str = "flix") -> str:
        """The `HERD_CACHES` value naming these servers cache `name`."""
        return ",".join(f"{name}@{zone}=127.0.0.1:{port}" for zone, port in self.ports.items())

    def start(self, zone: str) -> None:
        """Start (or restart, empty) one zone's server and wait until it answers."""
        command = [
            sys.executable,
            "-m",
            "herd._cloud.launch.memcached",
            f"--port={self.ports[zone]}",
        ]
        running = ServiceProcess(f"memcached-{zone}", command, self.directory / f"mc-{zone}.log")
        self.processes[zone] = running
        running.wait_ready()
