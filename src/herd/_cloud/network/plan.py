"""The names and addresses of one cloud's isolated network, worked out without I/O.

Every namespace and link herd makes carries the prefix `herd-{id}-` (namespaces) or `hd{id}`
(links, whose names the kernel caps at 15 characters), where `id` is the cloud's id: six hex
digits of its run directory's path. A later `herd up` or `herd down` of the same app finds
whatever a crashed control plane left by these names alone, and never touches any other.

Layout (one /24, nothing routed beyond it):

    root namespace (the control plane, its API and the front door)  .1 on hd{id}h
      └─ veth ─┐
    herd-{id}-core: the bridge hd{id}br, .2 (the registry)
      ├─ veth ─ herd-{id}-zone-a  .10  (every process of zone a)
      ├─ veth ─ herd-{id}-zone-b  .11
      └─ veth ─ herd-{id}-zone-c  .12
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from pathlib import Path

NAMESPACE_PREFIX = "herd-"
LINK_PREFIX = "hd"
#: Where the cloud's subnets come from: 10.213.N.0/24, one N per cloud.
SUBNET_BASE = ipaddress.IPv4Network("10.213.0.0/16")
_FIRST_ZONE_HOST = 10


def cloud_id(run_dir: Path) -> str:
    """The cloud's id: six hex digits of its run directory (stable across restarts)."""
    return hashlib.sha256(str(run_dir).encode()).hexdigest()[:6]


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    """One cloud's namespaces, links and addresses."""

    id: str
    zones: tuple[str, ...]
    subnet: int
    """N of 10.213.N.0/24."""

    @property
    def prefix(self) -> str:
        """What every namespace of this cloud's name begins with."""
        return f"{NAMESPACE_PREFIX}{self.id}-"

    @property
    def core(self) -> str:
        """The namespace of the bridge and the registry."""
        return f"{self.prefix}core"

    def namespace(self, zone: str) -> str:
        """The namespace of `zone`'s processes."""
        return f"{self.prefix}zone-{zone}"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace, the core's first."""
        return [self.core, *(self.namespace(zone) for zone in self.zones)]

    @property
    def bridge(self) -> str:
        return f"{LINK_PREFIX}{self.id}br"

    @property
    def host_link(self) -> str:
        """The root namespace's end of its link to the bridge."""
        return f"{LINK_PREFIX}{self.id}h"

    @property
    def host_port(self) -> str:
        """The bridge's end of the root namespace's link."""
        return f"{LINK_PREFIX}{self.id}hp"

    def zone_link(self, zone: str) -> str:
        """`zone`'s end of its link to the bridge (in the zone's namespace)."""
        return f"{LINK_PREFIX}{self.id}z{self.zones.index(zone)}"

    def zone_port(self, zone: str) -> str:
        """The bridge's end of `zone`'s link (in the core namespace)."""
        return f"{LINK_PREFIX}{self.id}p{self.zones.index(zone)}"

    def _address(self, host: int) -> str:
        return str(SUBNET_BASE.network_address + self.subnet * 256 + host)

    @property
    def network(self) -> str:
        """The cloud's /24."""
        return f"{self._address(0)}/24"

    @property
    def host_address(self) -> str:
        """The root namespace's address: the control plane and the front door."""
        return self._address(1)

    @property
    def core_address(self) -> str:
        """The core namespace's address: the registry."""
        return self._address(2)

    def address(self, zone: str) -> str:
        """`zone`'s address: every process of the zone listens on it."""
        return self._address(_FIRST_ZONE_HOST + self.zones.index(zone))

    def zone_of(self, address: str) -> str | None:
        """The zone whose address `address` is; None for any other."""
        for zone in self.zones:
            if self.address(zone) == address:
                return zone
        return None
