"""An isolated network made and removed: namespaces, the bridge, veth links, addresses.

Only addresses inside namespaces herd made: no namespace has a default route, nothing is
NATed, and the root namespace reaches the cloud's /24 through its one link (the control plane
and the front door, so a browser on this machine still works). Removing the namespaces removes
every link, rule and queue in them; the root namespace's link goes with its peer.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from herd._cloud.network.plan import SUBNET_BASE, NetworkPlan, cloud_id
from herd._model.errors import ConfigurationError
from herd._process.config import settings

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
#: The programs isolation needs, and the Debian package of each.
TOOLS = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}


def require() -> None:
    """ConfigurationError, saying what is missing, unless this process can make namespaces."""
    if sys.platform != "linux":
        raise ConfigurationError("--network isolated needs Linux (network namespaces)")
    if os.geteuid() != 0:
        raise ConfigurationError(
            "--network isolated needs root (it makes network namespaces): run herd up as root,"
            " or leave --network at loopback"
        )
    missing = sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise ConfigurationError(
            f"--network isolated needs {', '.join(missing)}: apt-get install {' '.join(missing)}"
        )


def enter(namespace: str) -> None:
    """Move this (single-threaded, just forked) process into `namespace`: run before exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
    finally:
        os.close(fd)


def run(command: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """Run one `ip`/`tc`/`nft` command; its output. A failure names the command."""
    done = subprocess.run(list(command), input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ConfigurationError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def namespaces() -> list[str]:
    """Every network namespace with a name (`ip netns list`)."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line]


def leftovers(cloud: str) -> list[str]:
    """The namespaces of cloud `cloud` that exist now."""
    return [name for name in namespaces() if name.startswith(f"herd-{cloud}-")]


def remove(cloud: str) -> list[str]:
    """Remove every namespace and link of cloud `cloud` (what a crash left, too); their
    names."""
    removed = leftovers(cloud)
    for name in removed:
        run(["ip", "netns", "del", name], check=False)
    host_link = f"hd{cloud}h"
    if run(["ip", "-o", "link", "show", host_link], check=False):
        run(["ip", "link", "del", host_link], check=False)
        removed.append(host_link)
    return removed


def _free_subnet() -> int:
    """N of a 10.213.N.0/24 that no route of the root namespace uses."""
    routes = run(["ip", "-4", "route", "show"])
    for n in range(1, 255):
        prefix = str(SUBNET_BASE.network_address + n * 256).rsplit(".", 1)[0] + "."
        if prefix not in routes:
            return n
    raise ConfigurationError("no free 10.213.N.0/24 for an isolated network")


def netem_available(namespace: str, link: str) -> bool:
    """Whether this kernel has tc's netem (some, e.g. micro-VMs', are built without it)."""
    added = subprocess.run(
        ["ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", link, "root", "netem"],
        capture_output=True,
        check=False,
    )
    if added.returncode != 0:
        return False
    run(["ip", "netns", "exec", namespace, "tc", "qdisc", "del", "dev", link, "root"])
    return True


def create(run_dir: Path, zones: Sequence[str]) -> NetworkPlan:
    """Make the cloud's network (after removing whatever a crashed one left); its plan."""
    require()
    cloud = cloud_id(run_dir)
    remove(cloud)
    plan = NetworkPlan(cloud, tuple(zones), _free_subnet())
    try:
        _make(plan)
    except BaseException:
        remove(cloud)
        raise
    return plan


def _make(plan: NetworkPlan) -> None:
    core = plan.core
    ip = ["ip", "-n", core]
    run(["ip", "netns", "add", core])
    run([*ip, "link", "set", "lo", "up"])
    run([*ip, "link", "add", plan.bridge, "type", "bridge"])
    run([*ip, "addr", "add", f"{plan.core_address}/24", "dev", plan.bridge])
    run([*ip, "link", "set", plan.bridge, "up"])
    run(["ip", "link", "add", plan.host_link, "type", "veth", "peer", "name", plan.host_port,
         "netns", core])  # fmt: skip
    run(["ip", "addr", "add", f"{plan.host_address}/24", "dev", plan.host_link])
    run(["ip", "link", "set", plan.host_link, "up"])
    run([*ip, "link", "set", plan.host_port, "master", plan.bridge, "up"])
    for zone in plan.zones:
        namespace, link, port = plan.namespace(zone), plan.zone_link(zone), plan.zone_port(zone)
        run(["ip", "netns", "add", namespace])
        run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        run(["ip", "-n", namespace, "link", "add", link, "type", "veth", "peer", "name", port,
             "netns", core])  # fmt: skip
        run(["ip", "-n", namespace, "addr", "add", f"{plan.address(zone)}/24", "dev", link])
        run(["ip", "-n", namespace, "link", "set", link, "up"])
        run([*ip, "link", "set", port, "master", plan.bridge, "up"])


async def create_async(run_dir: Path, zones: Sequence[str]) -> NetworkPlan:
    """`create` off the event loop."""
    return await asyncio.to_thread(create, run_dir, zones)


def _markers() -> Path:
    return settings().home / "networks"


def mark(cloud: str) -> None:
    """Note that this process made cloud `cloud`'s network, so that `herd down` can remove
    it after a crash of this process."""
    _markers().mkdir(parents=True, exist_ok=True)
    (_markers() / cloud).write_text(str(os.getpid()))


def unmark(cloud: str) -> None:
    """Forget cloud `cloud`'s network (removed)."""
    (_markers() / cloud).unlink(missing_ok=True)


def remove_orphans() -> list[str]:
    """Remove the networks whose control plane no longer runs (killed, crashed); what was
    removed."""
    removed: list[str] = []
    if not _markers().is_dir():
        return removed
    for marker in _markers().iterdir():
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            pid = 0
        if (pid > 0 and Path(f"/proc/{pid}").exists()) or os.geteuid() != 0:
            continue  # still running, or not ours to remove: kept for one who may
        removed += remove(marker.name)
        unmark(marker.name)
    return removed
