"""The `herd history` and `herd chaos ...` commands: arguments here, the work in
`chaos_commands`."""

from __future__ import annotations

from typing import Annotated

import typer

chaos_app = typer.Typer(
    help="Break the running local cloud on purpose: Chaos Monkey, failure injection, zone "
    "outages (docs/chaos.md). Every action needs the control token and is recorded.",
    no_args_is_help=True,
)

_TIME_HELP = "ISO time (2026-11-30T08:15), seconds since the epoch, or how long ago (90s, 5m, 2h)"


def history(
    since: str | None = typer.Option(None, "--since", metavar="T", help=f"From T: {_TIME_HELP}."),
    until: str | None = typer.Option(None, "--until", metavar="T", help="Before T."),
    at: str | None = typer.Option(
        None, "--at", metavar="T", help="Show the groups and instances as of T instead."
    ),
    diff: str | None = typer.Option(
        None, "--diff", metavar="T1,T2", help="Show what changed between T1 and T2 instead."
    ),
    group: str | None = typer.Option(None, "--group", metavar="G", help="Only group G."),
    kind: str | None = typer.Option(
        None, "--kind", metavar="K", help="Only kind K (or its prefix: `instance`, `chaos`)."
    ),
    limit: int = typer.Option(200, "--limit", min=1, help="At most the last N events."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, for scripts."),
) -> None:
    """Show the cloud's history (Edda): what changed, when and why (launches, terminations
    and their cause, scaling, chaos, injections, breakers, registry restarts)."""
    from herd_tools.chaos_commands import history_command

    history_command(
        since=since,
        until=until,
        at=at,
        diff=diff,
        group=group,
        kind=kind,
        limit=limit,
        as_json=as_json,
    )


_JSON = typer.Option(False, "--json", help="Print what chaos does now as JSON.")


@chaos_app.command()
def status(as_json: bool = _JSON) -> None:
    """Show what chaos does now: the monkey's groups, injected faults, zone outages."""
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_status(), as_json)


@chaos_app.command()
def monkey(
    group: str = typer.Option(..., "--group", metavar="G", help="The group, e.g. movie-v001."),
    mean: str = typer.Option(
        "60s", "--mean", metavar="DURATION", help="Mean time between kills (exponential)."
    ),
    min_healthy: int = typer.Option(
        1, "--min-healthy", min=0, help="Never leave fewer instances UP than this."
    ),
    leashed: bool = typer.Option(
        False, "--leashed", help="Record whom it would kill, and kill nobody."
    ),
    off: bool = typer.Option(False, "--off", help="Call the monkey off this group."),
    as_json: bool = _JSON,
) -> None:
    """Let Chaos Monkey loose on a group: it kills a random UP instance at exponentially
    distributed times, never two at once, never below --min-healthy."""
    from herd_tools.chaos_commands import chaos_command, duration

    seconds = 0.0 if off else duration(mean, "--mean")
    chaos_command(lambda api: api.chaos_monkey(group, seconds, min_healthy, leashed), as_json)


@chaos_app.command()
def pause(as_json: bool = _JSON) -> None:
    """Pause Chaos Monkey in every group (injections and outages go on)."""
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_pause(True), as_json)


@chaos_app.command()
def resume(as_json: bool = _JSON) -> None:
    """Resume Chaos Monkey."""
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_pause(False), as_json)


@chaos_app.command()
def inject(
    target: str = typer.Argument(
        ..., metavar="SERVICE[.METHOD]", help="The service, or one method of it."
    ),
    latency: str = typer.Option("0ms", "--latency", metavar="DURATION", help="Added latency."),
    error_rate: float = typer.Option(
        0.0, "--error-rate", min=0.0, max=1.0, help="Share of affected requests that fail."
    ),
    percent: float = typer.Option(
        100.0, "--percent", min=0.0, max=100.0, help="Percent of requests affected."
    ),
    lasts: str = typer.Option("60s", "--for", metavar="DURATION", help="How long it lasts."),
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance", metavar="ID", help="Only these instances (repeat); default: all."
        ),
    ] = None,
    as_json: bool = _JSON,
) -> None:
    """Inject latency and/or errors into a service's running instances: affected requests
    wait --latency before their handler, and --error-rate of them fail as the instance
    failing would (kind `internal`). Each instance ends it by itself after --for."""
    from herd._server.injection import Fault
    from herd_tools.chaos_commands import chaos_command, duration

    fault = Fault(
        latency_ms=duration(latency, "--latency") * 1000,
        error_rate=error_rate,
        percent=percent,
        duration_s=duration(lasts, "--for"),
    )
    chaos_command(lambda api: api.chaos_inject(target, fault, instance or []), as_json)


@chaos_app.command("zone-outage")
def zone_outage(
    zone: str = typer.Argument(..., help="The zone, e.g. b."),
    lasts: str = typer.Option("60s", "--for", metavar="DURATION", help="How long it lasts."),
    as_json: bool = _JSON,
) -> None:
    """Take a zone out (Chaos Gorilla): SIGKILL every instance in it and start none there until
    the outage ends; the other zones carry the load, then the zone is repopulated."""
    from herd_tools.chaos_commands import chaos_command, duration

    seconds = duration(lasts, "--for")
    chaos_command(lambda api: api.chaos_zone_outage(zone, seconds), as_json)


@chaos_app.command()
def halt(as_json: bool = _JSON) -> None:
    """Stop everything chaos does, at once: the monkey, every injection, every zone outage."""
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_halt(), as_json)


def experiment_chaos(
    app_file: str = typer.Option(
        "examples/flix/app.toml", "--app", metavar="APP.toml", help="The app to run (flix)."
    ),
    rate: float = typer.Option(200.0, help="Requests per second through the front door."),
    phase_seconds: float = typer.Option(
        20.0, "--phase-seconds", help="Seconds of each phase: before, during, after."
    ),
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="Run only these (repeat): monkey, zone-outage, movie-latency, merch-errors, hung.",
        ),
    ] = None,
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw success and p99 per phase to FILE.png."
    ),
) -> None:
    """Run each fault under load through flix's front door, before, during and after:
    Chaos Monkey, a zone outage, 1 s latency on 20 % of movie calls, 10 % errors from merch,
    a hung instance per group. Exits 0 only if every phase served >= 99.9 % and p99 stayed
    under the edge's deadline during the latency (docs/chaos.md)."""
    from pathlib import Path

    from herd_tools.experiments.chaos import SCENARIOS
    from herd_tools.experiments.chaos import main as chaos_main

    chosen = scenario or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        raise typer.BadParameter(f"unknown scenarios {unknown}: choose from {list(SCENARIOS)}")
    if not (phase_seconds > 0 and rate > 0):
        raise typer.BadParameter("--rate and --phase-seconds must be > 0")
    raise typer.Exit(
        chaos_main(
            Path(app_file),
            rate=rate,
            phase_s=phase_seconds,
            scenarios=chosen,
            json_path=Path(json_file) if json_file else None,
            plot_path=Path(plot_file) if plot_file else None,
        )
    )
