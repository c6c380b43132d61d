"""`herd top`: the dashboard's figures, live in the terminal.

It reads the same server-sent events as the page (one snapshot a second from the control plane's
one gatherer), so a terminal watching costs the instances nothing more than a page does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from herd._cloud.state import state_file
from herd._model.errors import ConfigurationError
from herd_tools.output import Column, numbers, print_table

#: How long to wait before reconnecting after the stream broke (it also ends at its deadline).
RECONNECT_S = 0.5
_BARS = "▁▂▃▄▅▆▇█"
#: The dependency table's columns of words (the rest are figures, aligned right).
_LEFT = ("caller → dependency", "breaker")
_STATUS_STYLE = {"UP": "green", "STARTING": "cyan", "OUT_OF_SERVICE": "yellow"}


def control_address() -> str:
    """The running local cloud's control address, from the state `herd up` wrote."""
    try:
        state = json.loads(state_file().read_text())
        return str(state["control"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigurationError(
            "no local cloud is running: start one with `herd up APP`"
        ) from None


def health(error_pct: float, breaker: str = "closed") -> str:
    """The page's colour rule: red for an open breaker or ≥ 50 % errors, yellow from 5 %."""
    if breaker == "open" or error_pct >= 50:
        return "red"
    if breaker == "half_open" or error_pct >= 5:
        return "yellow"
    return "green"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """The last `width` values as block characters, scaled from 0 to their maximum."""
    shown = list(values)[-width:]
    top = max(shown, default=0.0)
    if top <= 0:
        return _BARS[0] * len(shown)
    return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1)))] for v in shown)


def render(snapshot: dict[str, Any]) -> RenderableType:
    """One snapshot as rich tables: front door, services, dependencies, groups."""
    parts: list[RenderableType] = [
        Text.assemble((snapshot["app"], "bold"), "  live · updated every second · Ctrl-C quits")
    ]
    door = snapshot.get("front_door")
    if door:
        history = door["history"]
        table = Table(title=f"front door {door['url']} → {door['service']}", title_justify="left")
        table.add_column("figure")
        table.add_column("now", justify="right")
        table.add_column("last minutes")
        table.add_row("requests/s", f"{door['rps']:.1f}", sparkline([p[1] for p in history]))
        table.add_row(
            "success %",
            Text(f"{door['success_pct']:.2f}", style=health(100 - door["success_pct"])),
            sparkline([p[2] for p in history]),
        )
        table.add_row(
            f"p99 ms served by {door['service']}",
            f"{door['p99_ms']:.1f}",
            sparkline([p[3] for p in history]),
        )
        parts.append(table)
    services = Table(title="services", title_justify="left")
    for column in ("service", "served/s", "error %", *(f"zone {z}" for z in snapshot["zones"])):
        services.add_column(column, justify="left" if column == "service" else "right")
    for service in snapshot["services"]:
        zones = [service["zones"].get(z, {"up": 0, "total": 0}) for z in snapshot["zones"]]
        services.add_row(
            service["name"],
            f"{service['rps']:.1f}",
            Text(f"{service['error_pct']:.1f}", style=health(service["error_pct"])),
            *(f"{zone['up']}/{zone['total']} up" for zone in zones),
        )
    parts.append(services)
    if snapshot["edges"]:
        edges = Table(title="dependencies (window: last 10 s)", title_justify="left")
        for column in (*_LEFT, "calls/s", "error %", "p50 ms", "p99 ms"):
            edges.add_column(column, justify="left" if column in _LEFT else "right")
        edges.add_column("window req/failed", justify="right")
        edges.add_column("budget", justify="right")
        edges.add_column("bulkhead", justify="right")
        for edge in snapshot["edges"]:
            style = health(edge["error_pct"], edge["breaker"])
            budget = edge["budget_balance"]
            edges.add_row(
                f"{edge['from']} → {edge['to']}",
                Text(f"{edge['breaker']} ({edge['open']}/{edge['reporting']})", style=style),
                f"{edge['rps']:.1f}",
                Text(f"{edge['error_pct']:.1f}", style=style),
                f"{edge['p50_ms']:.1f}",
                f"{edge['p99_ms']:.1f}",
                f"{edge['requests']}/{edge['failures']}",
                "-" if budget is None else f"{budget:.1f}",
                f"{edge['bulkhead_in_use']}/{edge['bulkhead_max']}",
            )
        parts.append(edges)
    groups = Table(title="server groups", title_justify="left")
    for column in ("group", "version", "desired", "running", "up", "status", "instances"):
        groups.add_column(column)
    for group in snapshot["groups"]:
        members = Text()
        for instance in group["instances"]:
            style = _STATUS_STYLE.get(instance["status"], "red")
            members.append(f"{instance['id']} ", style=style)
            members.append(f"{instance['zone']} {instance['rps']:.0f}/s  ", style="dim")
        groups.add_row(
            group["name"],
            group["version"],
            str(group["desired"]),
            str(group["running"]),
            str(group["up"]),
            Text(group["status"], style="green" if group["status"] == "READY" else "yellow"),
            members,
        )
    parts.append(groups)
    for panel in snapshot.get("panels", []):
        table = Table(*panel["columns"], title=panel["title"], title_justify="left")
        for row in panel["rows"]:
            # A link cell (the dashboard's) shows its text.
            table.add_row(*(str(c["text"] if isinstance(c, dict) else c) for c in row))
        parts.append(table)
    return Group(*parts)


def print_plain(snapshot: dict[str, Any]) -> None:
    """One snapshot as plain aligned tables on stdout, for a pipe: the figures `render` shows,
    with no box to draw and no cell cut to fit a width."""
    door = snapshot.get("front_door")
    if door:
        print_table(
            f"front door {door['url']} → {door['service']}",
            [Column("figure"), *numbers("now")],
            [
                ["requests/s", f"{door['rps']:.1f}"],
                ["success %", f"{door['success_pct']:.2f}"],
                [f"p99 ms served by {door['service']}", f"{door['p99_ms']:.1f}"],
            ],
        )
    zones = snapshot["zones"]
    print_table(
        "services",
        [Column("service"), *numbers("served/s", "error %", *(f"zone {z}" for z in zones))],
        [
            [
                service["name"],
                f"{service['rps']:.1f}",
                f"{service['error_pct']:.1f}",
                *(
                    "{up}/{total} up".format(**service["zones"].get(z, {"up": 0, "total": 0}))
                    for z in zones
                ),
            ]
            for service in snapshot["services"]
        ],
    )
    if snapshot["edges"]:
        figures = ("calls/s", "error %", "p50 ms", "p99 ms", "window req/failed", "budget")
        print_table(
            "dependencies (window: last 10 s)",
            [Column("caller → dependency"), Column("breaker"), *numbers(*figures, "bulkhead")],
            [
                [
                    f"{edge['from']} → {edge['to']}",
                    f"{edge['breaker']} ({edge['open']}/{edge['reporting']})",
                    f"{edge['rps']:.1f}",
                    f"{edge['error_pct']:.1f}",
                    f"{edge['p50_ms']:.1f}",
                    f"{edge['p99_ms']:.1f}",
                    f"{edge['requests']}/{edge['failures']}",
                    "-" if edge["budget_balance"] is None else f"{edge['budget_balance']:.1f}",
                    f"{edge['bulkhead_in_use']}/{edge['bulkhead_max']}",
                ]
                for edge in snapshot["edges"]
            ],
        )
    print_table(
        "server groups",
        [
            Column(c)
            for c in ("group", "version", "desired", "running", "up", "status", "instances")
        ],
        [
            [
                group["name"],
                group["version"],
                str(group["desired"]),
                str(group["running"]),
                str(group["up"]),
                group["status"],
                ", ".join(
                    f"{i['id']} {i['zone']} {i['status']} {i['rps']:.0f}/s"
                    for i in group["instances"]
                ),
            ]
            for group in snapshot["groups"]
        ],
    )
    for panel in snapshot.get("panels", []):
        print_table(
            panel["title"],
            [Column(c) for c in panel["columns"]],
            [[str(c["text"] if isinstance(c, dict) else c) for c in row] for row in panel["rows"]],
        )


async def snapshots(address: str) -> AsyncIterator[dict[str, Any]]:
    """Every snapshot the control plane sends, reconnecting when a stream ends."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(f"http://{address}/events") as answer:
                    data: list[str] = []
                    async for raw in answer.content:
                        line = raw.decode().rstrip("\r\n")
                        if line.startswith("data: "):
                            data.append(line[len("data: ") :])
                        elif not line and data:
                            yield json.loads("\n".join(data))
                            data = []
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The control plane restarting, or gone: say so, and keep trying.
                yield {"error": f"{address}: {exc or type(exc).__name__}"}
            await asyncio.sleep(RECONNECT_S)


async def top(console: Console, once: bool = False) -> None:
    """Show the snapshots as they come; with `once`, print the first and return."""
    address = control_address()
    if once:
        async for snapshot in snapshots(address):
            if "error" in snapshot:
                raise ConfigurationError(snapshot["error"])
            if console.is_terminal:
                console.print(render(snapshot))
            else:
                print_plain(snapshot)
            return
    with Live(console=console, auto_refresh=False, screen=False) as live:
        async for snapshot in snapshots(address):
            if "error" in snapshot:
                live.update(Text(snapshot["error"], style="red"), refresh=True)
            else:
                live.update(render(snapshot), refresh=True)
