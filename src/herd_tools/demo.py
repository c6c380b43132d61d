"""`herd demo`: flix, the reference system, on the local cloud; optionally under load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import uvloop

from herd._cloud.app import App, load
from herd._cloud.controller import Controller
from herd._cloud.up import up
from herd._process.logging import configure
from herd_tools.load import format_report, run_load
from herd_tools.output import err, fails_cleanly, out, say, usage

#: The share of requests that must succeed for `herd demo --duration` to pass.
PASS_PCT = 99.9
#: Visitors the demo's load is spread over (flix seeds 10,000), so caches see misses too.
VISITORS = 10_000


#: Where `herd demo` finds flix when run from a herd checkout (the Makefile's `make demo`).
FLIX_APP = Path("examples") / "flix" / "app.toml"


@dataclass(frozen=True)
class Ports:
    """Ports to use instead of the app's own (None: the app's), so a demo can run beside
    another cloud or in a test."""

    front_door: int | None = None
    control: int | None = None
    registry: int | None = None

    def apply(self, app: App) -> App:
        """`app` with these ports laid over its own."""
        spec = app.spec
        if self.front_door is not None:
            if spec.front_door is None:
                raise usage(f"{app.source} has no front door to give --port to")
            door = msgspec.structs.replace(spec.front_door, port=self.front_door)
            spec = msgspec.structs.replace(spec, front_door=door)
        if self.control is not None:
            spec = msgspec.structs.replace(spec, control_port=self.control)
        if self.registry is not None:
            spec = msgspec.structs.replace(spec, registry_port=self.registry)
        return App(spec, app.source)


def flix_app(app: Path | None = None) -> Path:
    """The app to run: `app` if given, else flix in the current directory's checkout."""
    candidate = app or Path.cwd() / FLIX_APP
    if not candidate.exists():
        raise usage(
            f"{candidate} not found",
            "run herd demo from a herd checkout (flix lives in examples/flix) or pass --app PATH",
        )
    return candidate


def run_demo(
    duration: float | None = None,
    load_rate: float = 50.0,
    app: Path | None = None,
    ports: Ports = Ports(),
) -> int:
    """Run flix until Ctrl-C; with `duration`, load it for that long and return the verdict."""
    configure()
    verdict = 0

    async def ready(controller: Controller) -> None:
        nonlocal verdict
        door = controller.front_door
        assert door is not None
        say(f"\n{controller.app.spec.name} is up: open {door.url}", style="bold green")
        say(f"  JSON API:   {door.url}api/home?visitor=42")
        say(f"  dashboard:  {controller.dashboard_url} (or: herd top)")
        say("  try:        herd ps · herd kill INSTANCE · herd scale movie-v001 5")
        say(
            f"              herd load '{door.url}api/home?visitor={{1..10000}}'"
            " --rate 50 --duration 10"
        )
        if duration is None:
            say("  Ctrl-C stops everything.")
            return
        say(
            f"\nload: {load_rate:g} requests/s for {duration:g} s against the front door,"
            f" spread over {VISITORS:,} visitors"
        )
        url = f"{door.url}api/home?visitor={{1..{VISITORS}}}"
        report = await run_load(url, load_rate, duration, progress=err())
        out().print(format_report(report), markup=False)
        ok_pct = 100.0 * report.ok / report.sent if report.sent else 0.0
        passed = ok_pct >= PASS_PCT
        verdict = 0 if passed else 1
        colour = "green" if passed else "red"
        say(f"{ok_pct:.2f} % succeeded (needs ≥ {PASS_PCT} %)", style=colour)
        controller.stopped.set()

    with fails_cleanly():
        chosen = ports.apply(load(flix_app(app)))
        uvloop.run(up(chosen, say=say, on_ready=ready))
    return verdict
