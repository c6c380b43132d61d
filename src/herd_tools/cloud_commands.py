"""What the `herd up / ps / scale / kill / down` commands do (the CLI only parses arguments)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import msgspec
import uvloop
from rich.console import Console
from rich.table import Column, Table

from herd._cloud.controller import Controller
from herd._cloud.interface import CacheView, CloudApi, GroupView, InstanceView
from herd._cloud.up import control, up
from herd._model.errors import HerdError
from herd._process.logging import configure

console = Console()
T = TypeVar("T")


def up_command(path: str) -> None:
    """Run the app until Ctrl-C or `herd down`."""
    configure()

    async def announce(controller: Controller) -> None:
        console.print(f"[green]{controller.app.spec.name} is up[/]")
        if controller.front_door is not None:
            console.print(f"  open {controller.front_door.url}")
        console.print(f"  dashboard {controller.dashboard_url} (or: herd top)")
        console.print("  try: herd ps · herd scale GROUP N · herd down")

    with fails_cleanly():
        uvloop.run(up(path, say=console.print, on_ready=announce))


@contextlib.contextmanager
def fails_cleanly() -> Iterator[None]:
    """herd's own errors (no cloud running, a cloud already running, ...) end the command with
    their message and exit code 1, not a traceback."""
    try:
        yield
    except HerdError as exc:
        console.print(f"herd: {exc}", style="red", markup=False, highlight=False)
        raise SystemExit(1) from None


def ask(call: Callable[[CloudApi], Awaitable[T]]) -> T:
    async def main() -> T:
        api = control()
        try:
            return await call(api)
        finally:
            await api.aclose()

    with fails_cleanly():
        return asyncio.run(main())


def _column(header: str, *, whole: bool = False) -> Column:
    """A `herd ps` column that never hides part of a value: ids and addresses stay on one line
    (other columns give way first); the rest fold onto more lines when the terminal is narrow."""
    return Column(header, no_wrap=whole, overflow="fold")


def ps_command(as_json: bool = False) -> None:
    """Print groups and instances: as tables, or as JSON for scripts."""

    async def every(
        api: CloudApi,
    ) -> tuple[list[GroupView], list[InstanceView], list[CacheView]]:
        return await api.groups(), await api.ps(), await api.caches()

    groups, instances, caches = ask(every)
    if as_json:
        # Plain stdout: rich would highlight and wrap it.
        figures = {"groups": groups, "instances": instances, "caches": caches}
        print(msgspec.json.encode(figures).decode())
        return
    table = Table(
        _column("group", whole=True),
        _column("desired"),
        _column("running"),
        _column("up"),
        _column("status"),
        title="server groups",
    )
    # Only an app that autoscales gets the column: the others' table stays as narrow as it was.
    autoscaling = any(group.autoscale for group in groups)
    if autoscaling:
        table.add_column("autoscale", overflow="fold")
    for group in groups:
        cells = [group.name, str(group.desired), str(group.running), str(group.up), group.status]
        if autoscaling:
            cells.append(f"{group.autoscale}: {group.autoscale_reason}" if group.autoscale else "-")
        table.add_row(*cells)
    console.print(table)
    table = Table(
        _column("instance", whole=True),
        _column("group"),
        _column("zone"),
        _column("status"),
        _column("address", whole=True),
        _column("pid"),
        _column("uptime"),
        title="instances",
    )
    for view in instances:
        table.add_row(
            view.id,
            view.group,
            view.zone,
            view.status,
            view.address or "-",
            str(view.pid or "-"),
            f"{view.uptime_s:.0f}s" if view.pid else "-",
        )
    console.print(table)
    if caches:
        _print_caches(caches)


def _print_caches(caches: list[CacheView]) -> None:
    table = Table(
        _column("cache server", whole=True),
        _column("zone"),
        _column("status"),
        _column("address", whole=True),
        _column("pid"),
        _column("uptime"),
        _column("memory"),
        title="caches (memcached)",
    )
    for view in caches:
        table.add_row(
            view.id,
            view.zone,
            view.status,
            view.address,
            str(view.pid or "-"),
            f"{view.uptime_s:.0f}s" if view.pid else "-",
            f"{view.memory_mb} MB",
        )
    console.print(table)


def top_command(once: bool) -> None:
    """`herd top`: the dashboard's figures, live, until Ctrl-C (or one snapshot with `once`)."""
    from herd_tools.top import top

    with fails_cleanly(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(top(console, once))


def scale_command(group: str, count: int) -> None:
    """Change a group's desired count."""
    view = ask(lambda api: api.scale(group, count))
    console.print(f"{view.name}: desired {view.desired} (running {view.running})")


def kill_command(instance: str) -> None:
    """SIGKILL one instance; the control plane replaces it."""
    view = ask(lambda api: api.kill(instance))
    console.print(f"killed {view.id} (pid {view.pid}, zone {view.zone})")


def down_command() -> None:
    """Stop the running local cloud."""
    ask(lambda api: api.down())
    console.print("stopping the local cloud")
