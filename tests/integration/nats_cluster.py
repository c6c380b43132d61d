"""Real NATS JetStream for tests: members of a local cluster (the system's `nats-server`,
through herd's launcher `python -m herd._store.nats_server`), one per zone, tagged ``az:<zone>``,
on free loopback ports in a test's directory.

Its fixtures (registered for every test in tests/conftest.py): `shared_nats`, one cluster for
a test module, and `engine`, which runs a test once on SQLite and once on that cluster."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd._model.errors import ConfigurationError
from herd._process.config import StoreAddress
from herd._store.nats_server import INSTALL, nats_server_binary
from tests.helpers import ServiceProcess
from tests.integration.etcd import free_ports


def require_nats_server() -> None:
    """Fail (never skip) with the command that installs nats-server when it is missing."""
    try:
        nats_server_binary()
    except ConfigurationError:
        raise AssertionError(
            f"nats-server is not installed: run `{INSTALL}` (or `make system`)"
        ) from None


class NatsCluster:
    """One nats-server per zone, each a process with its own log and data directory; a member
    restarts on its ports and data. One zone alone makes a standalone server."""

    def __init__(self, directory: Path, zones: tuple[str, ...] = ("a", "b", "c")) -> None:
        require_nats_server()
        self.directory = directory
        self.zones = zones
        base = free_ports(3 * len(zones))
        self.ports = {zone: base + 3 * i for i, zone in enumerate(zones)}
        self.processes: dict[str, ServiceProcess] = {}

    def name(self, zone: str) -> str:
        """The member's server name (what JetStream reports as a stream's leader)."""
        return f"nats-{zone}"

    def zone_of(self, server_name: str) -> str:
        """The zone of the member called `server_name`."""
        return server_name.removeprefix("nats-")

    @property
    def servers(self) -> list[str]:
        """Every member's client `host:port`."""
        return [f"127.0.0.1:{port}" for port in self.ports.values()]

    def address(self, replicas: int | None = None) -> StoreAddress:
        """A `StoreAddress` on every member, with one copy per zone unless told."""
        return StoreAddress(servers=tuple(self.servers), replicas=replicas or len(self.zones))

    @property
    def url(self) -> str:
        """The `HERD_STORE_URL` naming this cluster."""
        return "nats://" + ",".join(self.servers) + f"?replicas={len(self.zones)}"

    def start(self, zone: str) -> ServiceProcess:
        """Start (or restart, on its data) one member; returns without waiting for it."""
        port = self.ports[zone]
        routes = [f"127.0.0.1:{p + 1}" for z, p in self.ports.items() if z != zone]
        command = [
            sys.executable,
            "-m",
            "herd._store.nats_server",
            f"--name={self.name(zone)}",
            f"--zone={zone}",
            f"--port={port}",
            f"--cluster-port={port + 1}",
            f"--http-port={port + 2}",
            f"--routes={','.join(routes)}",
            f"--data-dir={self.directory / f'nats-{zone}'}",
        ]
        running = ServiceProcess(self.name(zone), command, self.directory / f"nats-{zone}.log")
        self.processes[zone] = running
        return running

    def start_all(self, timeout: float = 30.0) -> None:
        """Start every member and wait until each is healthy (the cluster has formed)."""
        for zone in self.zones:
            self.start(zone)
        for running in self.processes.values():
            running.wait_ready(timeout)

    def kill(self, zone: str) -> None:
        """SIGKILL one member."""
        self.processes[zone].kill()
        self.processes[zone].wait()

    def stop(self) -> None:
        for running in self.processes.values():
            if running.alive:
                running.kill()
                running.wait()

    def monitor(self, zone: str, path: str) -> dict[str, Any]:
        """One member's monitoring answer (``/jsz?...``, ``/healthz``) as JSON."""
        url = f"http://127.0.0.1:{self.ports[zone] + 2}{path}"
        with urllib.request.urlopen(url, timeout=2.0) as answer:
            found: dict[str, Any] = json.load(answer)
            return found


@pytest.fixture(scope="module")
def shared_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A 3-zone cluster for a whole test module: its tests use names of their own."""
    running = NatsCluster(tmp_path_factory.mktemp("nats"))
    try:
        running.start_all()
        yield running
    finally:
        running.stop()


@pytest.fixture(params=["sqlite", "jetstream"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> StoreAddress:
    """Where a store or events live: SQLite in the test's directory, then the module's
    3-zone cluster."""
    if request.param == "sqlite":
        return StoreAddress(directory=tmp_path / "stores")
    cluster: NatsCluster = request.getfixturevalue("shared_nats")
    return cluster.address()
