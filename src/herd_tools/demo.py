"""`herd demo`: flix, the reference system, on the local cloud; optionally under load."""

from __future__ import annotations

from pathlib import Path

import uvloop
from rich.console import Console

from herd._cloud.controller import Controller
from herd._cloud.up import up
from herd._process.logging import configure
from herd_tools.cloud_commands import fails_cleanly
from herd_tools.load import format_report, run_load

console = Console()

#: The share of requests that must succeed for `herd demo --duration` to pass.
PASS_PCT = 99.9
#: Visitors the demo's load is spread over (flix seeds 10,000), so caches see misses too.
VISITORS = 10_000


#: Where `herd demo` finds flix when run from a herd checkout (the Makefile's `make demo`).
FLIX_APP = Path("examples") / "flix" / "app.toml"


def flix_app(app: Path | None = None) -> Path:
    """The app to run: `app` if given, else flix in the current directory's checkout."""
    candidate = app or Path.cwd() / FLIX_APP
    if not candidate.exists():
        raise SystemExit(
            f"herd demo: {candidate} not found; run it from a herd checkout"
            " (flix lives in examples/flix) or pass --app PATH"
        )
    return candidate


def run_demo(duration: float | None = None, load: float = 50.0, app: Path | None = None) -> int:
    """Run flix until Ctrl-C; with `duration`, load it for that long and return the verdict."""
    configure()
    verdict = 0

    async def ready(controller: Controller) -> None:
        nonlocal verdict
        door = controller.front_door
        assert door is not None
        console.print(f"\n[bold green]flix is up[/]: open {door.url}")
        console.print(f"  JSON API:   {door.url}api/home?visitor=42")
        console.print(f"  dashboard:  {controller.dashboard_url} (or: herd top)")
        console.print("  try:        herd ps · herd kill INSTANCE · herd scale movie-v001 5")
        console.print(
            f"              herd load '{door.url}api/home?visitor={{1..10000}}'"
            " --rate 50 --duration 10"
        )
        if duration is None:
            console.print("  Ctrl-C stops everything.")
            return
        console.print(
            f"\nload: {load:g} requests/s for {duration:g} s against the front door,"
            f" spread over {VISITORS:,} visitors"
        )
        url = f"{door.url}api/home?visitor={{1..{VISITORS}}}"
        report = await run_load(url, load, duration, progress=console)
        console.print(format_report(report))
        ok_pct = 100.0 * report.ok / report.sent if report.sent else 0.0
        passed = ok_pct >= PASS_PCT
        verdict = 0 if passed else 1
        colour = "green" if passed else "red"
        console.print(f"[{colour}]{ok_pct:.2f} % succeeded (needs ≥ {PASS_PCT} %)[/]")
        controller.stopped.set()

    with fails_cleanly():
        uvloop.run(up(flix_app(app), say=console.print, on_ready=ready))
    return verdict
