"""Where the registry finds etcd: the app file's `registry` values that mean etcd, and the
members of a local cluster (`herd up` starts them: `herd._cloud.launch.etcd`).
"""

from __future__ import annotations

import dataclasses

from herd._model.errors import ConfigurationError

#: The app file's `registry` values that mean etcd.
ETCD = "etcd"
ETCD_SCHEME = "etcd://"
#: Members of a local cluster: three survive the loss of any one.
LOCAL_MEMBERS = 3


def etcd_endpoints(registry: str) -> list[str]:
    """The `host:port`s in ``etcd://host:port,host:port``; ConfigurationError when malformed."""
    if not registry.startswith(ETCD_SCHEME):
        raise ConfigurationError(f"not an etcd address (etcd://host:port,...): {registry!r}")
    endpoints = [part.strip() for part in registry[len(ETCD_SCHEME) :].split(",")]
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"{registry!r}: {endpoint!r} is not host:port")
    return endpoints


@dataclasses.dataclass(frozen=True)
class Member:
    """One member of a local cluster: its name and its two loopback ports."""

    name: str
    client_port: int
    peer_port: int

    @property
    def endpoint(self) -> str:
        """Where clients reach it: `127.0.0.1:port`."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """Where the other members reach it."""
        return f"http://127.0.0.1:{self.peer_port}"


def local_members(base_port: int, count: int = LOCAL_MEMBERS) -> list[Member]:
    """`count` members on consecutive ports from `base_port` (client, peer, client, peer...)."""
    return [Member(f"m{i}", base_port + 2 * i, base_port + 2 * i + 1) for i in range(count)]
