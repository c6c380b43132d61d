"""The dashboard's servers panel shows every cache server and store member as `herd ps` does:
a member held out by a zone outage shows DOWN with neither address nor uptime."""

from __future__ import annotations

from herd._cloud.dashboard.servers import servers_panel
from herd._cloud.interface import CacheView, StoreView


def _member(zone: str, *, pid: int = 0, status: str = "DOWN") -> StoreView:
    return StoreView(
        id=f"store-nats-{zone}",
        zone=zone,
        status=status,
        address=f"127.0.0.1:42{ord(zone)}",
        monitor="http://127.0.0.1:8222/",
        pid=pid,
        uptime_s=12.4,
        log="/tmp/log",
    )


def test_caches_then_store_members_with_status_and_no_address_while_down() -> None:
    cache = CacheView(
        id="cache-pages-a",
        cache="pages",
        zone="a",
        status="UP",
        address="127.0.0.1:11211",
        pid=10,
        uptime_s=3.6,
        memory_mb=64,
        log="/tmp/log",
    )
    panel = servers_panel([cache], [_member("a", pid=11, status="UP"), _member("b")])
    assert panel["id"] == "servers"
    assert panel["columns"] == ["server", "serves", "zone", "status", "address", "uptime"]
    assert panel["rows"] == [
        ["cache-pages-a", "cache pages (memcached)", "a", "UP", "127.0.0.1:11211", "4s"],
        ["store-nats-a", "store (nats-server)", "a", "UP", "127.0.0.1:4297", "12s"],
        ["store-nats-b", "store (nats-server)", "b", "DOWN", "-", "-"],
    ]


def test_no_servers_no_rows() -> None:
    assert servers_panel([], [])["rows"] == []
