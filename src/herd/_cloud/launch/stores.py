"""The app's stores as the local cloud runs them: one NATS JetStream cluster, a nats-server per
zone (`herd._store.nats_server`), tagged with its zone so each stream's replicas land in distinct
zones.

Each member fills a slot of the controller (started, supervised, restarted with back-off like a
cache server). Its ports are chosen once, at `herd up`, and kept across restarts, and so is its
data directory: a restarted member rejoins on the same addresses with what it had and catches up
from the others, and the `HERD_STORE_URL` every child was given stays true.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from herd._cloud.app import App
from herd._cloud.interface import StoreView
from herd._cloud.launch.caches import free_port
from herd._process.config import STORE_URL, StoreAddress
from herd._store.nats_server import Member, local_members, member_command


def plan(app: App) -> list[Member]:
    """A member per zone on `store_port` and the ports after it, or on free ports; none when
    the app has no `[[stores]]` (its services keep SQLite)."""
    spec = app.spec
    if not spec.stores:
        return []
    if spec.store_port:
        members = local_members(spec.store_port, spec.zones)
    else:
        members = [Member(zone, free_port(), free_port(), free_port()) for zone in spec.zones]
    if spec.region_links is not None:
        # A region's members also listen for the other regions' (docs/regions.md).
        ports = spec.region_links.leaf_ports
        members = [dataclasses.replace(m, leaf_port=p) for m, p in zip(members, ports, strict=True)]
    return members


def data_dir(app: App) -> Path:
    """The members' data, a directory each, kept across restarts and `herd up`s."""
    return app.run_dir / "nats"


def slot_name(member: Member) -> str:
    """`store-nats-{zone}`: its slot, log and `herd ps` name."""
    return f"store-{member.name}"


def command(app: App, members: list[Member], member: Member) -> list[str]:
    """The launcher that becomes `member`'s nats-server (`herd._store.nats_server`)."""
    links = app.spec.region_links
    return member_command(
        members,
        member.zone,
        data_dir(app),
        domain=app.spec.region,
        leaf_remotes=links.remotes if links is not None else (),
    )


def replicas(app: App, service: str | None) -> int:
    """The copies `service`'s store keeps: its `[[stores]]` entry's, else the most any entry
    asks (the events every service shares, a service without an entry)."""
    stores = app.spec.stores
    named = [store.replicas for store in stores if store.name == service]
    return named[0] if named else max(store.replicas for store in stores)


def environment(app: App, members: list[Member], service: str | None = None) -> dict[str, str]:
    """`HERD_STORE_URL` for a child of the cloud (nothing without stores: SQLite)."""
    if not members:
        return {}
    address = StoreAddress(
        servers=tuple(m.endpoint for m in members), replicas=replicas(app, service)
    )
    return {STORE_URL: address.url}


def view(member: Member, *, status: str, pid: int | None, uptime_s: float, log: Path) -> StoreView:
    """How `herd ps` shows one member."""
    return StoreView(
        id=slot_name(member),
        zone=member.zone,
        status=status,
        address=member.endpoint,
        monitor=f"http://127.0.0.1:{member.http_port}/",
        pid=pid or 0,
        uptime_s=round(uptime_s, 1),
        log=str(log),
    )
