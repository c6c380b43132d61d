"""The dashboard's servers panel: the processes beside the instances that the cloud keeps
running, as `herd ps` shows them: each cache's memcached per zone and the store cluster's
nats-server per zone, with their status, so a zone outage or a crash loop shows on the page."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from herd._cloud.interface import CacheView, StoreView


def servers_panel(caches: Iterable[CacheView], stores: Iterable[StoreView]) -> Mapping[str, Any]:
    """A row per cache server, then per store member: its id, what it serves, zone, status,
    address and uptime (a server between two processes has neither)."""
    served: list[tuple[CacheView | StoreView, str]]
    served = [(view, f"cache {view.cache} (memcached)") for view in caches]
    served += [(view, "store (nats-server)") for view in stores]
    rows = [
        [
            view.id,
            what,
            view.zone,
            view.status,
            view.address if view.pid else "-",
            f"{view.uptime_s:.0f}s" if view.pid else "-",
        ]
        for view, what in served
    ]
    return {
        "id": "servers",
        "title": "servers (herd ps)",
        "columns": ["server", "serves", "zone", "status", "address", "uptime"],
        "rows": rows,
    }
