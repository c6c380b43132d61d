"""A local etcd cluster, one member per process, and where the registry finds etcd.

``herd up`` with ``registry = "etcd"`` runs three members on this machine, each in a slot of its
own (restarted like the registry), with ``python -m herd._registry.etcd_cluster``: it becomes the
system's ``etcd`` (same pid, so signals reach etcd itself) and announces the herd ready line once
the member answers ``/health``, which etcd does only while it is part of a quorum.

Nothing here imports the etcd client: starting members needs only the ``etcd`` binary (Debian's
``etcd-server``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from herd._model.errors import ConfigurationError
from herd._process.become import become

#: The app file's `registry` values that mean etcd.
ETCD = "etcd"
ETCD_SCHEME = "etcd://"
#: Members of a local cluster: three survive the loss of any one.
LOCAL_MEMBERS = 3
#: etcd's clock, scaled for one machine: heartbeats every 50 ms and an election after 500 ms of
#: silence, so a dead leader is replaced in well under a second (etcd's defaults: 100 and 1000).
HEARTBEAT_MS = 50
ELECTION_MS = 500


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


def member_command(
    members: Sequence[Member], index: int, data_dir: Path, *, token: str
) -> list[str]:
    """The ``etcd`` command line that runs ``members[index]`` in a cluster of `members`.

    `token` names the cluster, so members of another local cluster never join this one. A
    member that restarts finds its data in `data_dir` and rejoins with it (the initial-cluster
    flags only matter the first time).
    """
    member = members[index]
    client_url = f"http://{member.endpoint}"
    return [
        "etcd",
        f"--name={member.name}",
        f"--data-dir={data_dir / member.name}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={member.peer_url}",
        f"--initial-advertise-peer-urls={member.peer_url}",
        "--initial-cluster=" + ",".join(f"{m.name}={m.peer_url}" for m in members),
        "--initial-cluster-state=new",
        f"--initial-cluster-token={token}",
        f"--heartbeat-interval={HEARTBEAT_MS}",
        f"--election-timeout={ELECTION_MS}",
        "--logger=zap",
        "--log-outputs=stderr",
    ]


def etcd_binary() -> str:
    """The system's ``etcd``; ConfigurationError naming the package when it is missing."""
    found = shutil.which("etcd")
    if found is None:
        raise ConfigurationError(
            "no etcd binary on PATH: install Debian's etcd-server (`make system` does)"
        )
    return found


def _healthy(endpoint: str) -> bool:
    """Whether the member's /health says it is part of a quorum (the ready line's sign)."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/health", timeout=1.0) as answer:
            return bool(json.loads(answer.read()).get("health") == "true")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def main() -> None:
    """``python -m herd._registry.etcd_cluster``: run one member of a local cluster."""
    parser = argparse.ArgumentParser(description="Run one member of herd's local etcd cluster.")
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--members", type=int, default=LOCAL_MEMBERS)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    members = local_members(args.base_port, args.members)
    try:
        binary = etcd_binary()
    except ConfigurationError as exc:
        raise SystemExit(f"herd etcd member: {exc}") from None
    command = member_command(members, args.index, args.data_dir, token=args.token)
    endpoint = members[args.index].endpoint
    become(binary, command, endpoint, lambda: _healthy(endpoint))


if __name__ == "__main__":
    main()
