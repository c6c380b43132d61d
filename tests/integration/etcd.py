"""Real etcd for tests: members of herd's local cluster (the system's `etcd` binary, through
`python -m herd._cloud.launch.etcd`) on free loopback ports in a test's directory.
"""

from __future__ import annotations

import json
import random
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import aetcd  # type: ignore[import-untyped]
import aiohttp

from herd._registry.etcd_cluster import local_members
from tests.helpers import ServiceProcess


def free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports that nobody listens on right now, below
    the ephemeral range: members connect to each other while later ones start, and an outgoing
    connection's port taken from the ephemeral range could be one a member is about to bind."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(100):
        base = random.randrange(10_000, low - count)
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise AssertionError(f"no {count} consecutive free ports")


class EtcdCluster:
    """`size` etcd members on this machine, each a process with its own log."""

    def __init__(self, directory: Path, size: int = 1) -> None:
        self.directory = directory
        self.members = local_members(free_ports(2 * size), size)
        self.token = f"herd-test-{secrets.token_hex(4)}"
        self.processes: list[ServiceProcess | None] = [None] * size

    @property
    def endpoints(self) -> list[str]:
        """Every member's `host:port`."""
        return [member.endpoint for member in self.members]

    def command(self, index: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "herd._cloud.launch.etcd",
            f"--base-port={self.members[0].client_port}",
            f"--members={len(self.members)}",
            f"--index={index}",
            f"--data-dir={self.directory / 'etcd'}",
            f"--token={self.token}",
        ]

    def start(self, index: int) -> ServiceProcess:
        """Start (or restart, on its data) one member; returns without waiting for it."""
        name = self.members[index].name
        running = ServiceProcess(name, self.command(index), self.directory / f"etcd-{name}.log")
        self.processes[index] = running
        return running

    def start_all(self, timeout: float = 30.0) -> None:
        """Start every member and wait until each is part of a healthy cluster."""
        for index in range(len(self.members)):
            self.start(index)
        for running in self.processes:
            assert running is not None
            running.wait_ready(timeout)

    def kill(self, index: int) -> None:
        """SIGKILL one member."""
        running = self.processes[index]
        assert running is not None
        running.kill()
        running.wait()

    def stop(self) -> None:
        for running in self.processes:
            if running is not None and running.alive:
                running.kill()
                running.wait()

    async def put(self, key: bytes, value: bytes) -> None:
        """Write a key straight to etcd, as any client with access could."""
        member = self.members[0]
        async with aetcd.Client("127.0.0.1", member.client_port) as client:
            await client.put(key, value)


async def leader(endpoints: Sequence[str]) -> int:
    """The index of the member at `endpoints` that leads now, from each member's own status
    (etcd's HTTP gateway); members that do not answer are skipped."""
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index, endpoint in enumerate(endpoints):
            url = f"http://{endpoint}/v3/maintenance/status"
            try:
                async with session.post(url, json={}) as answer:
                    status = await answer.json()
            except (aiohttp.ClientError, TimeoutError):
                continue
            if status.get("leader") == status["header"]["member_id"]:
                return index
    raise AssertionError(f"no member of {', '.join(endpoints)} leads")


async def healthy(endpoints: Sequence[str]) -> list[bool]:
    """Whether each member says it is part of a quorum (its /health)."""
    # Generous: a member answers /health only once a quorum read went through raft.
    timeout = aiohttp.ClientTimeout(total=3.0)
    found = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for endpoint in endpoints:
            try:
                async with session.get(f"http://{endpoint}/health") as answer:
                    # Not json() alone: etcd says text/plain.
                    found.append(json.loads(await answer.read()).get("health") == "true")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                found.append(False)
    return found
