"""The control API's chaos methods and the dashboard's chaos panel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from herd._cloud.chaos.chaos import Chaos
from herd._cloud.chaos.net import NetChaos
from herd._cloud.interface import ChaosView
from herd._cloud.network.faults import NetFault
from herd._server.injection import Fault


def _fault_text(fault: Fault) -> str:
    parts = [f"{fault.method or '*'}:"]
    if fault.latency_ms:
        parts.append(f"+{fault.latency_ms:g}ms")
    if fault.error_rate:
        parts.append(f"{fault.error_rate:g} errors")
    parts.append(f"on {fault.percent:g}%")
    return " ".join(parts)


class ChaosApi:
    """The control API's chaos methods, mixed into the control plane."""

    chaos: Chaos
    net_chaos: NetChaos

    def _chaos_view(self) -> ChaosView:
        return msgspec.structs.replace(self.chaos.view(), network=self.net_chaos.views())

    async def chaos_panel(self) -> Mapping[str, Any]:
        """The dashboard's panel: what chaos does now, a row per monkey, fault and outage."""
        view = self._chaos_view()
        rows = [
            [
                "monkey",
                m.group,
                f"mean {m.mean_interval_s:g}s" + (" leashed" if m.leashed else ""),
                m.waiting or f"next in {m.next_in_s:.0f}s",
            ]
            for m in view.monkey
        ]
        rows += [
            ["fault", i.instance, _fault_text(i.fault), f"{i.left_s:.0f}s left"]
            for i in view.injections
        ]
        rows += [
            ["zone outage", o.zone, f"{len(o.stopped)} stopped", f"{o.left_s:.0f}s left"]
            for o in view.outages
        ]
        rows += [
            [
                "network",
                n.fault.zone or n.fault.instance,
                n.fault.describe(),
                f"{n.left_s:.0f}s left",
            ]
            for n in view.network
        ]
        return {
            "id": "chaos",
            "title": "chaos" + (" (paused)" if view.paused else ""),
            "columns": ["what", "where", "how", "state"],
            "rows": rows,
        }

    async def chaos_status(self) -> ChaosView:
        return self._chaos_view()

    async def chaos_monkey(
        self, group: str, mean_interval_s: float, min_healthy: int = 1, leashed: bool = False
    ) -> ChaosView:
        await self.chaos.set_monkey(group, mean_interval_s, min_healthy, leashed)
        return self._chaos_view()

    async def chaos_pause(self, paused: bool) -> ChaosView:
        self.chaos.pause(paused)
        return self._chaos_view()

    async def chaos_inject(self, target: str, fault: Fault, instances: list[str]) -> ChaosView:
        await self.chaos.inject(target, fault, instances)
        return self._chaos_view()

    async def chaos_zone_outage(self, zone: str, duration_s: float) -> ChaosView:
        await self.chaos.zone_outage(zone, duration_s)
        return self._chaos_view()

    async def chaos_net(self, fault: NetFault) -> ChaosView:
        await self.net_chaos.add(fault)
        return self._chaos_view()

    async def chaos_halt(self) -> ChaosView:
        await self.chaos.halt()
        await self.net_chaos.halt()
        return self._chaos_view()
