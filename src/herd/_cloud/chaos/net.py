"""`herd chaos net`: partitions, loss, latency and bandwidth in an isolated cloud's network.

Each fault is placed in its side's namespace (`herd._cloud.network.faults` writes the rules),
ends by itself after its duration, is recorded in the history when it begins and ends, and
`herd chaos halt` ends them all. Every change rewrites the whole rule set of the namespaces it
touches, so what is in force is always exactly the faults listed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec

from herd._cloud.cloud import Cloud
from herd._cloud.interface import ChaosRefused, NetFaultView
from herd._cloud.network import isolated
from herd._cloud.network.faults import REGISTRY, NetFault, Placed, nft_script, tc_commands
from herd._cloud.network.plan import NetworkPlan
from herd._model.tasks import cancel_and_wait

#: Each way across a zone's link: 1 ms between two zones, as between a region's zones.
DEFAULT_DELAY_MS = 0.5


@dataclasses.dataclass
class _Active:
    placed: Placed
    ends: float
    expiry: asyncio.Task[None] | None = None


class NetChaos:
    """The network faults in force in one isolated cloud (none on loopback)."""

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud
        self.network: NetworkPlan | None = None
        self.netem = False
        """Whether this kernel has tc's netem (latency needs it)."""
        self._active: list[_Active] = []

    async def start(self, network: NetworkPlan) -> None:
        """Take charge of `network`: its links get their default delay."""
        self.network = network
        first = network.zones[0]
        self.netem = await asyncio.to_thread(
            isolated.netem_available, network.namespace(first), network.zone_link(first)
        )
        await self._apply(set(network.zones))
        if not self.netem:
            self._cloud.record(
                "network.no-delay",
                cause="start",
                reason="this kernel has no tc netem: links carry no delay, latency faults"
                " cannot be injected",
            )

    async def close(self) -> None:
        """Stop the expiry timers (the namespaces, and their rules, go with the cloud)."""
        for active in self._active:
            if active.expiry is not None:
                await cancel_and_wait(active.expiry)
        self._active.clear()

    async def add(self, fault: NetFault) -> None:
        """Put `fault` in force for its duration; ChaosRefused if it cannot be."""
        if (problem := fault.problem()) is not None:
            raise ChaosRefused(problem)
        placed = await self._place(fault)
        if fault.latency_ms and not self.netem:
            raise ChaosRefused(
                "this kernel has no tc netem (sch_netem): latency cannot be injected;"
                " partitions, loss and bandwidth can"
            )
        active = _Active(placed, time.monotonic() + fault.duration_s)
        self._active.append(active)
        try:
            await self._apply({self._zone_of(placed)})
        except BaseException:
            self._active.remove(active)
            raise
        active.expiry = asyncio.create_task(self._expire(active))
        self._cloud.record(
            "chaos.net",
            cause="chaos",
            instance=fault.instance or None,
            fault=fault.describe(),
            settings=_settings(fault),
        )

    async def halt(self) -> int:
        """End every fault now; how many there were."""
        ended = list(self._active)
        self._active.clear()
        for active in ended:
            if active.expiry is not None:
                await cancel_and_wait(active.expiry)
        if ended:
            await self._apply({self._zone_of(a.placed) for a in ended})
            self._cloud.record("chaos.net-ended", cause="halt", faults=len(ended))
        return len(ended)

    def views(self) -> list[NetFaultView]:
        """The faults in force, with the seconds each has left."""
        now = time.monotonic()
        return [
            NetFaultView(a.placed.fault, round(max(0.0, a.ends - now), 3)) for a in self._active
        ]

    async def _expire(self, active: _Active) -> None:
        await asyncio.sleep(max(0.0, active.ends - time.monotonic()))
        self._active.remove(active)
        active.expiry = None
        await self._apply({self._zone_of(active.placed)})
        fault = active.placed.fault
        self._cloud.record("chaos.net-ended", cause="expired", fault=fault.describe())

    def _require(self) -> NetworkPlan:
        if self.network is None:
            raise ChaosRefused(
                "network faults need a cloud on its own network: herd up APP --network isolated"
            )
        return self.network

    def _zone_of(self, placed: Placed) -> str:
        network = self._require()
        return next(z for z in network.zones if network.namespace(z) == placed.namespace)

    async def _place(self, fault: NetFault) -> Placed:
        network = self._require()
        zone, port = fault.zone, None
        if fault.instance:
            found = [v for v in await self._cloud.ps() if v.id == fault.instance and v.address]
            if not found:
                raise ChaosRefused(f"no running instance {fault.instance!r}")
            zone, port = found[0].zone, int(found[0].address.rsplit(":", 1)[1])
        if zone not in network.zones:
            raise ChaosRefused(f"no zone {zone!r}: the zones are {', '.join(network.zones)}")
        if fault.peer == REGISTRY:
            peers: tuple[str, ...] = (network.core_address,)
        elif fault.peer in network.zones and fault.peer != zone:
            peers = (network.address(fault.peer),)
        elif fault.peer:
            raise ChaosRefused(
                f"the peer is another zone ({', '.join(network.zones)}), {REGISTRY}, or none"
            )
        else:
            peers = ()
        return Placed(fault, network.namespace(zone), network.zone_link(zone), port, peers)

    async def _apply(self, zones: set[str]) -> None:
        """Rewrite the rules and queues of `zones` from the faults in force."""
        network = self._require()
        for zone in sorted(zones):
            namespace, link = network.namespace(zone), network.zone_link(zone)
            here = [a.placed for a in self._active if a.placed.namespace == namespace]
            script = nft_script(f"herd_{network.id}", here)
            tc = tc_commands(link, here, default_delay_ms=DEFAULT_DELAY_MS, netem=self.netem)
            await asyncio.to_thread(_write, namespace, link, script, tc)


def _write(namespace: str, link: str, script: str, tc: list[list[str]]) -> None:
    inside = ["ip", "netns", "exec", namespace]
    isolated.run([*inside, "nft", "-f", "-"], stdin=script)
    isolated.run([*inside, "tc", "qdisc", "del", "dev", link, "root"], check=False)
    for command in tc:
        isolated.run([*inside, *command])


def _settings(fault: NetFault) -> dict[str, object]:
    """The fault's fields that differ from the defaults, for the history."""
    defaults = msgspec.structs.asdict(NetFault())
    return {k: v for k, v in msgspec.structs.asdict(fault).items() if v != defaults[k]}
