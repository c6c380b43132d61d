"""What the `herd up / ps / top / scale / kill / down` commands do (the CLI only parses
arguments): data on stdout, messages on stderr (`herd_tools.output`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import msgspec
import uvloop

from herd._cloud.controller import Controller
from herd._cloud.interface import CacheView, CloudApi, GroupView, InstanceView, StoreView
from herd._cloud.network.isolated import remove_orphans as orphans_removed
from herd._cloud.regions.api import RegionView
from herd._cloud.up import control, regions_control, running, up
from herd._process.logging import configure
from herd_tools.output import Column, fails_cleanly, numbers, out, print_table, say

T = TypeVar("T")


def up_command(path: str, network: str | None = None) -> None:
    """Run the app until Ctrl-C or `herd down`, on `network` when given."""
    configure()

    async def announce(controller: Controller) -> None:
        say(f"{controller.app.spec.name} is up", style="green")
        if controller.front_door is not None:
            say(f"  open {controller.front_door.url}")
        say(f"  dashboard {controller.dashboard_url} (or: herd top)")
        say("  try: herd ps · herd scale GROUP N · herd down")

    with fails_cleanly():
        uvloop.run(up(path, say=say, on_ready=announce, network=network))


def ask(call: Callable[[CloudApi], Awaitable[T]]) -> T:
    """Run `call` against the running cloud's control API; no cloud running is a `Failure`."""

    async def main() -> T:
        api = control()
        try:
            return await call(api)
        finally:
            await api.aclose()

    with fails_cleanly():
        return asyncio.run(main())


def ps_command(as_json: bool = False) -> None:
    """Print groups, instances, cache servers and store members: as tables, or as JSON for
    scripts; in a cloud with regions, its regions and every region's groups and instances."""
    with fails_cleanly():
        regional = asyncio.run(_regional())
    if regional is not None:
        _print_regions(*regional, as_json=as_json)
        return

    async def every(
        api: CloudApi,
    ) -> tuple[list[GroupView], list[InstanceView], list[CacheView], list[StoreView]]:
        return await api.groups(), await api.ps(), await api.caches(), await api.stores()

    groups, instances, caches, stores = ask(every)
    if as_json:
        figures = {"groups": groups, "instances": instances, "caches": caches, "stores": stores}
        print(msgspec.json.encode(figures).decode())
        return
    group_columns = [
        Column("group"),
        Column("desired", right=True),
        Column("running", right=True, drop=2),
        Column("up", right=True),
        Column("status"),
    ]
    # Only an app that autoscales gets the column: the others' table stays as narrow as it was.
    autoscaling = any(group.autoscale for group in groups)
    if autoscaling:
        group_columns.append(Column("autoscale", drop=3))
    group_rows = []
    for group in groups:
        cells = [group.name, str(group.desired), str(group.running), str(group.up), group.status]
        if autoscaling:
            cells.append(f"{group.autoscale}: {group.autoscale_reason}" if group.autoscale else "-")
        group_rows.append(cells)
    print_table("server groups", group_columns, group_rows)
    print_table(
        "instances",
        [Column("instance"), Column("group", drop=3), *_PROCESS_COLUMNS],
        [[view.id, view.group, *_process_cells(view)] for view in instances],
    )
    if caches:
        print_table(
            "caches (memcached)",
            [Column("cache server"), *_PROCESS_COLUMNS, Column("memory", right=True, drop=3)],
            [[view.id, *_process_cells(view), f"{view.memory_mb} MB"] for view in caches],
        )
    if stores:
        print_table(
            "stores (nats-server)",
            [Column("store member"), *_PROCESS_COLUMNS],
            [[view.id, *_process_cells(view)] for view in stores],
        )


async def _regional() -> tuple[list[RegionView], list[GroupView], list[InstanceView]] | None:
    """The regions, groups and instances of a cloud with regions; None for one without."""
    api = regions_control()
    if api is None:
        return None
    try:
        return await api.regions(), await api.groups(), await api.ps()
    finally:
        await api.aclose()


def _print_regions(
    regions: list[RegionView],
    groups: list[GroupView],
    instances: list[InstanceView],
    *,
    as_json: bool,
) -> None:
    if as_json:
        figures = {"regions": regions, "groups": groups, "instances": instances}
        print(msgspec.json.encode(figures).decode())
        return
    print_table(
        "regions",
        [
            Column("region"),
            Column("status"),
            Column("healthy", drop=3),
            *numbers("weight", "served"),
            Column("front door", drop=2),
            Column("dashboard", drop=1),
        ],
        [
            [
                r.name,
                r.status,
                "yes" if r.healthy else "no",
                f"{r.weight}/{r.base_weight}",
                str(r.served),
                r.front_door or "-",
                r.dashboard or "-",
            ]
            for r in regions
        ],
    )
    print_table(
        "server groups",
        [Column("region"), Column("group"), *numbers("desired", "up"), Column("status")],
        [[g.region, g.name, str(g.desired), str(g.up), g.status] for g in groups],
    )
    print_table(
        "instances",
        [Column("region"), Column("instance"), *_PROCESS_COLUMNS],
        [[view.region, view.id, *_process_cells(view)] for view in instances],
    )


#: What `herd ps` shows of every process the cloud runs: an instance, a cache server or a store
#: member.
_PROCESS_COLUMNS = [
    Column("zone", drop=1),
    Column("status"),
    Column("address", drop=2),
    Column("pid", right=True, drop=5),
    Column("uptime", right=True, drop=4),
]


class _Process(Protocol):
    """An instance's, a cache server's or a store member's view, as far as `herd ps` shows
    them alike."""

    @property
    def zone(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def uptime_s(self) -> float: ...


def _process_cells(view: _Process) -> list[str]:
    """The cells of `_PROCESS_COLUMNS`: a process in a back-off has no address, pid or uptime."""
    uptime = f"{view.uptime_s:.0f}s" if view.pid else "-"
    return [view.zone, view.status, view.address or "-", str(view.pid or "-"), uptime]


def top_command(once: bool) -> None:
    """`herd top`: the dashboard's figures, live, until Ctrl-C (or one snapshot with `once`)."""
    from herd_tools.top import top

    with fails_cleanly(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(top(out(), once))


def scale_command(group: str, count: int) -> None:
    """Change a group's desired count."""
    view = ask(lambda api: api.scale(group, count))
    say(f"{view.name}: desired {view.desired} (running {view.running})")


def kill_command(instance: str) -> None:
    """SIGKILL one instance; the control plane replaces it."""
    view = ask(lambda api: api.kill(instance))
    say(f"killed {view.id} (pid {view.pid}, zone {view.zone})")


def down_command() -> None:
    """Stop the running local cloud; with none running, remove the networks that a killed
    control plane left behind (`--network isolated`)."""
    if running() is None:
        removed = orphans_removed()
        if removed:
            say(f"no local cloud is running; removed what a killed one left: {', '.join(removed)}")
            return

    async def regional_down() -> bool:
        api = regions_control()
        if api is None:
            return False
        try:
            return await api.down()
        finally:
            await api.aclose()

    with fails_cleanly():
        stopped = asyncio.run(regional_down())
    if not stopped:
        ask(lambda api: api.down())
    say("stopping the local cloud")
