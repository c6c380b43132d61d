"""One member of a local etcd cluster, as `herd up` runs it (``registry = "etcd"``):
``python -m herd._cloud.launch.etcd``.

Each member fills a slot of its own (restarted like the registry). Like a memcached server, this
process becomes the system's ``etcd`` (same pid, so signals reach etcd itself) and a forked child
prints the herd ready line once the member answers ``/health``, which etcd does only while it is
part of a quorum. Nothing here imports the etcd client: starting members needs only the ``etcd``
binary (Debian's ``etcd-server``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from herd._model.errors import ConfigurationError
from herd._process.become import become
from herd._registry.etcd_cluster import LOCAL_MEMBERS, Member, local_members

#: etcd's clock, scaled for one machine: heartbeats every 50 ms and an election after 500 ms of
#: silence, so a dead leader is replaced in well under a second (etcd's defaults: 100 and 1000).
HEARTBEAT_MS = 50
ELECTION_MS = 500


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
    """Whether the member says it is part of a quorum."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/health", timeout=1.0) as answer:
            return bool(json.loads(answer.read()).get("health") == "true")
    except (OSError, ValueError, urllib.error.URLError):
        return False


def main() -> None:
    """Run one member of a local cluster: become etcd; announce readiness from a child."""
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
    endpoint = members[args.index].endpoint
    become(
        binary,
        member_command(members, args.index, args.data_dir, token=args.token),
        address=endpoint,
        ready=lambda: _healthy(endpoint),
        # Generous: a member answers /health only once a quorum read went through raft.
        timeout_s=60.0,
        poll_s=0.05,
    )


if __name__ == "__main__":
    main()
