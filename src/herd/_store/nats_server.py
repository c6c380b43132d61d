"""One member of a local NATS JetStream cluster: ``python -m herd._store.nats_server``.

Like herd's memcached and etcd members, this process becomes the system's ``nats-server``
(same pid, so a SIGKILL reaches the server itself), and a forked child prints herd's ready line
once the server says it is healthy (its monitoring port's ``/healthz``: JetStream on and
caught up with the cluster). nats-server comes from the system package (Debian's
``nats-server``; `make system` installs it).

Every member is tagged with its zone (``az:<zone>``) and JetStream is told ``unique_tag:
"az"``, so the replicas of a stream (a store's bucket or log, an event topic) are placed in
distinct zones, the way Cassandra's NetworkTopologyStrategy places them in racks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from herd._model.errors import ConfigurationError
from herd._process.become import become

INSTALL = "sudo apt-get install -y nats-server"
CLUSTER = "herd"


@dataclasses.dataclass(frozen=True)
class Member:
    """One member of a local cluster: its zone and its three loopback ports (clients, the
    other members, monitoring)."""

    zone: str
    port: int
    cluster_port: int
    http_port: int
    leaf_port: int = 0
    """Where other regions' servers connect (leaf nodes, docs/regions.md); 0: none do."""

    @property
    def name(self) -> str:
        """Its server name (what JetStream reports as a stream's leader)."""
        return f"nats-{self.zone}"

    @property
    def endpoint(self) -> str:
        """Where clients connect."""
        return f"127.0.0.1:{self.port}"


def local_members(base_port: int, zones: Sequence[str]) -> list[Member]:
    """A member per zone on consecutive ports from `base_port`, three each."""
    return [
        Member(zone, base_port + 3 * i, base_port + 3 * i + 1, base_port + 3 * i + 2)
        for i, zone in enumerate(zones)
    ]


def member_command(
    members: Sequence[Member],
    zone: str,
    data_dir: Path,
    *,
    domain: str = "",
    leaf_remotes: Sequence[str] = (),
) -> list[str]:
    """The command that runs `zone`'s member of `members` (this module, as a process) with its
    data under `data_dir`; restarted, it finds its data there and rejoins. With `domain` (a
    region's name) its JetStream is that domain, and it connects to `leaf_remotes` (another
    region's servers' leaf ports) as a leaf node."""
    member = next(m for m in members if m.zone == zone)
    routes = ",".join(f"127.0.0.1:{m.cluster_port}" for m in members if m.zone != zone)
    return [
        sys.executable,
        "-m",
        "herd._store.nats_server",
        f"--name={member.name}",
        f"--zone={zone}",
        f"--port={member.port}",
        f"--cluster-port={member.cluster_port}",
        f"--http-port={member.http_port}",
        f"--routes={routes}",
        f"--data-dir={data_dir / member.name}",
        f"--domain={domain}",
        f"--leaf-port={member.leaf_port}",
        f"--leaf-remotes={','.join(leaf_remotes)}",
    ]


def nats_server_binary() -> str:
    """The system's ``nats-server`` (Debian puts it in /usr/sbin); ConfigurationError with the
    install command when missing."""
    found = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        raise ConfigurationError(f"no nats-server binary: install it with `{INSTALL}`")
    return found


def config(
    *,
    name: str,
    zone: str,
    port: int,
    cluster_port: int,
    http_port: int,
    routes: Sequence[str],
    data_dir: Path,
    host: str = "127.0.0.1",
    domain: str = "",
    leaf_port: int = 0,
    leaf_remotes: Sequence[str] = (),
) -> str:
    """The server's configuration file (nats-server's own format; JSON is a subset of it).
    Without `routes` the server stands alone (one copy of everything). A region's server has
    its JetStream `domain` and leaf-node links to the other regions (`leaf_port` to listen on,
    `leaf_remotes` to connect to)."""
    cluster = {
        # A region's own name: a leaf-node link between two clusters of one name is refused.
        "name": f"{CLUSTER}-{domain}" if domain else CLUSTER,
        "host": host,
        "port": cluster_port,
        "routes": [f"nats-route://{route}" for route in routes],
    }
    return json.dumps(
        {
            "server_name": name,
            "host": host,
            "port": port,
            "http": f"{host}:{http_port}",
            "server_tags": [f"az:{zone}"],
            "jetstream": {
                "store_dir": str(data_dir),
                "unique_tag": "az",
                # The machine is shared: small fixed limits instead of a share of RAM and disk.
                "max_memory_store": 64 * 1024 * 1024,
                "max_file_store": 1024 * 1024 * 1024,
                **({"domain": domain} if domain else {}),
            },
            **({"cluster": cluster} if routes else {}),
            **_leafnodes(host, leaf_port, leaf_remotes),
        },
        indent=2,
    )


#: What never crosses a link between regions: each region's own writes (stores' logs and
#: records, events). Only JetStream's API does, through which each region mirrors the
#: others' (`herd._store.replication`); without the denial both regions' streams would store
#: every write, acknowledged by whichever answered first.
REGION_LOCAL = ["herd.>", "$KV.>"]


def _leafnodes(host: str, port: int, remotes: Sequence[str]) -> dict[str, object]:
    leafnodes: dict[str, object] = {}
    if port:
        leafnodes.update(host=host, port=port)
    if remotes:
        urls = [f"nats-leaf://{remote}" for remote in remotes]
        leafnodes["remotes"] = [
            {"urls": urls, "deny_imports": REGION_LOCAL, "deny_exports": REGION_LOCAL}
        ]
    return {"leafnodes": leafnodes} if leafnodes else {}


def healthy(http_port: int, timeout_s: float = 0.5) -> bool:
    """Whether the server on `http_port` says it is healthy."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{http_port}/healthz", timeout=timeout_s
        ) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> None:
    """Write the configuration, become nats-server, announce readiness from a child."""
    parser = argparse.ArgumentParser(description="Run one member of a NATS JetStream cluster.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cluster-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--routes", default="", help="the other members' host:cluster-port")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--domain", default="", help="the JetStream domain: a region's name")
    parser.add_argument("--leaf-port", type=int, default=0, help="where other regions connect")
    parser.add_argument("--leaf-remotes", default="", help="other regions' host:leaf-port")
    args = parser.parse_args()
    try:
        binary = nats_server_binary()
    except ConfigurationError as exc:
        raise SystemExit(f"herd nats-server: {exc}") from None
    args.data_dir.mkdir(parents=True, exist_ok=True)
    conf = args.data_dir / "nats-server.conf"
    conf.write_text(
        config(
            name=args.name,
            zone=args.zone,
            port=args.port,
            cluster_port=args.cluster_port,
            http_port=args.http_port,
            routes=[r for r in args.routes.split(",") if r],
            data_dir=args.data_dir / "jetstream",
            domain=args.domain,
            leaf_port=args.leaf_port,
            leaf_remotes=[r for r in args.leaf_remotes.split(",") if r],
        )
    )
    become(
        binary,
        [binary, "-c", str(conf)],
        address=f"127.0.0.1:{args.port}",
        ready=lambda: healthy(args.http_port),
    )


if __name__ == "__main__":
    main()
