"""The process of each kind of slot (the registry, an etcd member, a cache server, a store
member, an instance),
each with one child environment and, for the registry and instances, an identity of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from herd._cloud.app import App, GroupSpec
from herd._cloud.launch import caches, stores
from herd._cloud.launch.ca import CertificateAuthority
from herd._cloud.launch.process import Process
from herd._cloud.network.plan import NetworkPlan
from herd._model.identity import FRONT_DOOR, REGISTRY, Identity
from herd._process.config import ALLOW, HOST, TLS_DIR, child_env
from herd._registry.etcd_cluster import (
    ETCD,
    ETCD_SCHEME,
    LOCAL_MEMBERS,
    etcd_endpoints,
    local_members,
)
from herd._store.nats_server import Member

#: Settings of the shell that started `herd up`, which no child inherits: each process gets
#: its own identity, and its own allow rules.
_NOT_INHERITED = (TLS_DIR, ALLOW)


class Launcher:
    """Makes the processes of one app's local cloud (not started: a slot starts them)."""

    def __init__(
        self,
        app: App,
        cache_servers: Sequence[caches.CacheServer],
        store_members: Sequence[Member] = (),
    ) -> None:
        self.app = app
        self._cache_servers = list(cache_servers)
        self._store_members = list(store_members)
        self.network: NetworkPlan | None = None
        """The isolated network (`--network isolated`), once made; None on loopback."""
        self._authority = CertificateAuthority(app.spec.name)
        self._sequence = itertools.count(1)
        self._etcd_token = ""

    @property
    def registry_address(self) -> str:
        """The registry's `host:port`."""
        host = self.network.core_address if self.network else "127.0.0.1"
        return f"{host}:{self.app.spec.registry_port}"

    def isolate(self, network: NetworkPlan) -> list[caches.CacheServer]:
        """Run every process made from now on in `network`: each zone's in its namespace, on
        its address; the registry in the core namespace. The cache servers, moved to their
        zones' addresses."""
        self.network = network
        self._cache_servers = [
            dataclasses.replace(server, host=network.address(server.zone))
            for server in self._cache_servers
        ]
        return self._cache_servers

    def _namespace(self, zone: str) -> str | None:
        return self.network.namespace(zone) if self.network else None

    @property
    def tls_dir(self) -> Path:
        """Where every process's identity is written, one directory each (mode 700)."""
        return self.app.run_dir / "tls"

    async def new_authority(self) -> None:
        """Start with no identity issued: the certificates of a previous cloud are worthless."""
        await asyncio.to_thread(shutil.rmtree, self.tls_dir, ignore_errors=True)
        self.tls_dir.mkdir(mode=0o700)

    def identity(self, service: str, group: str, instance: str) -> Path:
        """Issue an identity's certificate into its own directory; the directory."""
        identity = Identity(self.app.spec.name, service, group, instance)
        return self._authority.write(identity, self.tls_dir / instance)

    def environment(self) -> dict[str, str]:
        """What every herd process of the app gets beside its own settings: the app's `env`,
        its root on `PYTHONPATH`, and where the caches and the stores are."""
        env = {k: self.app.expand(v) for k, v in self.app.spec.env.items()}
        path = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{self.app.root}{os.pathsep}{path}" if path else str(self.app.root)
        env.update(caches.environment(list(self._cache_servers)))
        env.update(stores.environment(self.app, self._store_members))
        return env

    async def setup(self, command: Sequence[str]) -> None:
        """Run one of the app's setup commands to its end (`python` is this interpreter)."""
        expanded = [self.app.expand(part) for part in command]
        if expanded and expanded[0] == "python":
            expanded[0] = sys.executable
        await asyncio.to_thread(
            subprocess.run, expanded, cwd=self.app.root, env=self.environment(), check=True
        )

    def registry(self, log: Path) -> Process:
        """The registry, on the app's registry port, keeping its table in etcd if it uses it."""
        command = [sys.executable, "-m", "herd._registry.service"]
        command += ["--port", str(self.app.spec.registry_port)]
        if self.network is not None:
            command += ["--host", self.network.core_address]
        if etcd := self.etcd_endpoints():
            command += ["--etcd", ",".join(etcd)]
        env = {
            **self.environment(),
            TLS_DIR: str(self.identity(REGISTRY, REGISTRY, REGISTRY)),
        }
        return self._process(
            "registry", command, env, log, self.network.core if self.network else None
        )

    def new_etcd_cluster(self) -> None:
        """Name a new local etcd cluster, which its members' first start creates."""
        self._etcd_token = f"herd-{self.app.spec.name}-{secrets.token_hex(4)}"

    def etcd_member(self, name: str, index: int, log: Path) -> Process:
        """Member `index` of the local etcd cluster (`herd._cloud.launch.etcd`)."""
        command = [
            sys.executable,
            "-m",
            "herd._cloud.launch.etcd",
            f"--base-port={self.app.spec.etcd_port}",
            f"--members={LOCAL_MEMBERS}",
            f"--index={index}",
            f"--data-dir={self.etcd_data}",
            f"--token={self._etcd_token}",
        ]
        return self._process(name, command, {}, log)

    @property
    def etcd_data(self) -> Path:
        """The local etcd cluster's data, a directory per member."""
        return self.app.run_dir / "etcd"

    def etcd_endpoints(self) -> list[str]:
        """Where the registry keeps instances: etcd's members, or none (its own memory)."""
        registry = self.app.spec.registry
        if registry == ETCD:
            return [member.endpoint for member in local_members(self.app.spec.etcd_port)]
        if registry.startswith(ETCD_SCHEME):
            return etcd_endpoints(registry)
        return []

    def cache(self, server: caches.CacheServer, log: Path) -> Process:
        """One memcached server (`herd._cloud.launch.memcached`)."""
        return self._process(server.id, server.command(), {}, log, self._namespace(server.zone))

    def store_member(self, member: Member, log: Path) -> Process:
        """One nats-server of the store cluster (`herd._store.nats_server`)."""
        command = stores.command(self.app, self._store_members, member)
        return self._process(stores.slot_name(member), command, {}, log)

    def instance(self, group: GroupSpec, zone: str, log: Path) -> Process:
        """A new instance of `group` in `zone`, with a new id and identity."""
        instance = f"{group.name}-{zone}{next(self._sequence)}"
        env = {
            **self.environment(),
            # Its own store's copies, where the app file names them.
            **stores.environment(self.app, self._store_members, group.service),
            **{k: self.app.expand(v) for k, v in group.env.items()},
            **child_env(
                registry=self.registry_address,
                zone=zone,
                group=group.name,
                version=group.version,
                instance=instance,
                tls_dir=self.identity(group.service, group.name, instance),
            ),
        }
        if self.network is not None:
            env[HOST] = self.network.address(zone)
        allow = self._allow(group)
        if allow is not None:
            env[ALLOW] = ",".join(sorted(allow))
        command = [sys.executable, "-m", group.module, *(self.app.expand(a) for a in group.args)]
        return self._process(instance, command, env, log, self._namespace(zone))

    def _allow(self, group: GroupSpec) -> set[str] | None:
        """Who may call the group's instances: its allow rules, and the front door when the
        group serves the front door's service."""
        if group.allow is None:
            return None
        door = self.app.spec.front_door
        extra = {FRONT_DOOR} if door is not None and door.service == group.service else set()
        return {*group.allow, *extra}

    def _process(
        self,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        log: Path,
        netns: str | None = None,
    ) -> Process:
        """The one child environment: this process's, less what is not inherited, under `env`;
        in network namespace `netns` when given."""
        inherited = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        return Process(name, command, env, self.app.root, log, base_env=inherited, netns=netns)
