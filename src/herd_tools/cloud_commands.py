"""What the `herd up / ps / scale / kill / down` commands do (the CLI only parses arguments)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvloop
from rich.console import Console
from rich.table import Table

from herd._cloud.controller import Controller
from herd._cloud.interface import CloudApi, GroupView, InstanceView
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
        console.print("  try: herd ps · herd scale GROUP N · herd down")

    uvloop.run(up(path, say=console.print, on_ready=announce))


def _ask(call: Callable[[CloudApi], Awaitable[T]]) -> T:
    async def main() -> T:
        api = control()
        try:
            return await call(api)
        finally:
            await api.aclose()

    try:
        return asyncio.run(main())
    except HerdError as exc:
        console.print(f"[red]herd: {exc}[/]")
        raise SystemExit(1) from None


def ps_command() -> None:
    """Print groups and instances."""

    async def both(api: CloudApi) -> tuple[list[GroupView], list[InstanceView]]:
        return await api.groups(), await api.ps()

    groups, instances = _ask(both)
    table = Table("group", "desired", "running", "up", title="server groups")
    for group in groups:
        table.add_row(group.name, str(group.desired), str(group.running), str(group.up))
    console.print(table)
    table = Table(
        "instance", "group", "zone", "status", "address", "pid", "uptime", title="instances"
    )
    for view in instances:
        table.add_row(
            view.id,
            view.group,
            view.zone,
            view.status,
            view.address,
            str(view.pid),
            f"{view.uptime_s:.0f}s",
        )
    console.print(table)


def scale_command(group: str, count: int) -> None:
    """Change a group's desired count."""
    view = _ask(lambda api: api.scale(group, count))
    console.print(f"{view.name}: desired {view.desired} (running {view.running})")


def kill_command(instance: str) -> None:
    """SIGKILL one instance; the control plane replaces it."""
    view = _ask(lambda api: api.kill(instance))
    console.print(f"killed {view.id} (pid {view.pid}, zone {view.zone})")


def down_command() -> None:
    """Stop the running local cloud."""
    _ask(lambda api: api.down())
    console.print("stopping the local cloud")
