"""Real NATS JetStream for tests: members of a local cluster (the system's `nats-server`,
through herd's launcher `python -m herd._store.nats_server`), one per zone, tagged ``az:<zone>``,
on free loopback ports in a test's directory.

Its fixtures (registered for every test in tests/conftest.py): `shared_nats`, one cluster for
a test module, and `engine`, which runs a test once on SQLite and once on that cluster."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd._model.errors import ConfigurationError
from herd._process.config import StoreAddress
from herd._store.nats_server import INSTALL, local_members, member_command, nats_server_binary
from tests.helpers import ServiceProcess, ZoneServers
from tests.integration.etcd import free_ports


def require_nats_server() -> None:
    """Fail (never skip) with the command that installs nats-server when it is missing."""
    try:
        nats_server_binary()
    except ConfigurationError:
        raise AssertionError(
            f"nats-server is not installed: run `{INSTALL}` (or `make system`)"
        ) from None


class NatsCluster(ZoneServers):
    """One nats-server per zone, each a process with its own log and data directory; a member
    restarts on its ports and data. One zone alone makes a standalone server."""

    def __init__(self, directory: Path, zones: tuple[str, ...] = ("a", "b", "c")) -> None:
        require_nats_server()
        super().__init__()
        self.directory = directory
        self.zones = zones
        self.members = local_members(free_ports(3 * len(zones)), zones)

    def zone_of(self, server_name: str) -> str:
        """The zone of the member called `server_name`."""
        return next(m.zone for m in self.members if m.name == server_name)

    @property
    def servers(self) -> list[str]:
        """Every member's client `host:port`."""
        return [member.endpoint for member in self.members]

    def address(self, replicas: int | None = None) -> StoreAddress:
        """A `StoreAddress` on every member, with one copy per zone unless told."""
        return StoreAddress(servers=tuple(self.servers), replicas=replicas or len(self.zones))

    def start(self, zone: str) -> ServiceProcess:
        """Start (or restart, on its data) one member; returns without waiting for it."""
        command = member_command(self.members, zone, self.directory)
        running = ServiceProcess(f"nats-{zone}", command, self.directory / f"nats-{zone}.log")
        self.processes[zone] = running
        return running

    def start_all(self, timeout: float = 30.0) -> None:
        """Start every member and wait until each is healthy (the cluster has formed)."""
        for zone in self.zones:
            self.start(zone)
        for running in self.processes.values():
            running.wait_ready(timeout)

    def monitor(self, zone: str, path: str) -> dict[str, Any]:
        """One member's monitoring answer (``/jsz?...``, ``/healthz``) as JSON."""
        port = next(m.http_port for m in self.members if m.zone == zone)
        url = f"http://127.0.0.1:{port}{path}"
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
