"""What `herd chaos ...` does: one action through the control API, then what chaos does now,
as tables or JSON on stdout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec

import herd
from herd._cloud.history.store import InvalidTime, parse_duration
from herd._cloud.interface import ChaosView, CloudApi
from herd._cloud.regions.api import KongView
from herd._cloud.up import regions_control
from herd_tools.cloud_commands import ask
from herd_tools.output import Column, Failure, fails_cleanly, numbers, print_table, say, usage

#: How long `herd chaos kong` waits for the evacuation or return to be done.
KONG_TIMEOUT_S = 600.0


def duration(text: str, option: str) -> float:
    """Seconds in a `--for`-style duration; a malformed one is a usage mistake (exit 2)."""
    try:
        return parse_duration(text)
    except InvalidTime as exc:
        raise usage(f"{option}: {exc}", "e.g. 30s, 5m, 250ms") from None


def chaos_command(call: Callable[[CloudApi], Awaitable[ChaosView]], as_json: bool) -> None:
    """Run one chaos action (or read the status) and print what chaos does now."""
    view = ask(call)
    if as_json:
        print(msgspec.json.encode(view).decode())
        return
    state = "paused" if view.paused else "on"
    print_table(
        f"monkey ({state})",
        [
            Column("group"),
            Column("mean", right=True),
            Column("min healthy", right=True, drop=2),
            Column("leashed", drop=3),
            Column("next in", right=True),
            Column("waiting", drop=1),
        ],
        [
            [
                watched.group,
                f"{watched.mean_interval_s:g}s",
                str(watched.min_healthy),
                "yes" if watched.leashed else "no",
                f"{watched.next_in_s:.1f}s",
                watched.waiting or "-",
            ]
            for watched in view.monkey
        ],
    )
    print_table(
        "faults",
        [
            Column("instance"),
            Column("method", drop=2),
            *numbers("latency", "error rate"),
            Column("percent", right=True, drop=1),
            Column("left", right=True, drop=3),
        ],
        [
            [
                injected.instance,
                injected.fault.method or "*",
                f"{injected.fault.latency_ms:g}ms",
                f"{injected.fault.error_rate:g}",
                f"{injected.fault.percent:g}",
                f"{injected.left_s:.0f}s",
            ]
            for injected in view.injections
        ],
    )
    print_table(
        "zone outages",
        [Column("zone"), Column("left", right=True), Column("stopped")],
        [[o.zone, f"{o.left_s:.0f}s", " ".join(o.stopped)] for o in view.outages],
    )
    if view.network:
        print_table(
            "network faults",
            [Column("fault"), Column("left", right=True)],
            [[n.fault.describe(), f"{n.left_s:.0f}s"] for n in view.network],
        )


def kong_command(region: str, back: bool, step_s: float, as_json: bool) -> None:
    """Evacuate `region` or bring it back, and print what was done, step by step."""

    async def main() -> KongView:
        api = regions_control()
        if api is None:
            raise Failure("the running cloud has no regions", "see docs/regions.md")
        try:
            # Scaling out, the steps and a region's start take minutes at most.
            with herd.deadline(KONG_TIMEOUT_S):
                return await api.kong(region, back, step_s)
        finally:
            await api.aclose()

    with fails_cleanly():
        view = asyncio.run(main())
    if as_json:
        print(msgspec.json.encode(view).decode())
        return
    print_table(
        f"kong {'--back ' if back else ''}{region}: {view.took_s:.1f} s",
        [Column("at"), Column("step"), Column("what")],
        [[time.strftime("%H:%M:%S", time.localtime(s.at)), s.kind, s.message] for s in view.steps],
    )
    if view.evacuated_s is not None:
        say(f"{region} evacuated in {view.evacuated_s:.1f} s, then killed")
