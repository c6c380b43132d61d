"""The `herd chaos ...` commands' arguments; the work is in `chaos_commands`."""

from __future__ import annotations

from typing import Annotated

import typer

from herd_tools import options

chaos_app = typer.Typer(
    help="Break the running local cloud on purpose: Chaos Monkey, failure injection, zone "
    "outages (docs/chaos.md). Every action needs the control token and is recorded."
    "\n\nExample: herd chaos inject movie --latency 300ms --percent 20 --for 60s",
    rich_markup_mode=None,
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Print what chaos does now as JSON.")


@chaos_app.command()
def status(as_json: bool = _JSON) -> None:
    """Show what chaos does now: the monkey's groups, injected faults, zone outages.

    Example: herd chaos status
    """
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_status(), as_json)


@chaos_app.command()
def monkey(
    group: str = typer.Option(..., "--group", metavar="GROUP", help="The group, e.g. movie-v001."),
    mean: str = typer.Option(
        "60s", "--mean", metavar="DURATION", help="Mean time between kills (exponential)."
    ),
    min_healthy: int = options.count(
        1, "Never leave fewer instances UP than N.", "--min-healthy", min=0
    ),
    leashed: bool = typer.Option(
        False, "--leashed", help="Record whom it would kill, and kill nobody."
    ),
    off: bool = typer.Option(False, "--off", help="Call the monkey off this group."),
    as_json: bool = _JSON,
) -> None:
    """Let Chaos Monkey loose on a group.

    It kills a random UP instance at exponentially distributed times, never two at once, never
    below --min-healthy.

    Example: herd chaos monkey --group movie-v001 --mean 30s
    """
    from herd_tools.chaos_commands import chaos_command, duration

    seconds = 0.0 if off else duration(mean, "--mean")
    chaos_command(lambda api: api.chaos_monkey(group, seconds, min_healthy, leashed), as_json)


@chaos_app.command()
def pause(as_json: bool = _JSON) -> None:
    """Pause Chaos Monkey in every group (injections and outages go on).

    Example: herd chaos pause
    """
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_pause(True), as_json)


@chaos_app.command()
def resume(as_json: bool = _JSON) -> None:
    """Resume Chaos Monkey.

    Example: herd chaos resume
    """
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_pause(False), as_json)


@chaos_app.command()
def inject(
    target: str = typer.Argument(
        ..., metavar="SERVICE[.METHOD]", help="The service, or one method of it."
    ),
    latency: str = typer.Option("0ms", "--latency", metavar="DURATION", help="Added latency."),
    error_rate: float = options.share(
        0.0, "Share of affected requests that fail, 0 to 1.", "--error-rate"
    ),
    percent: float = options.percent(100.0, "Percent of requests affected.", "--percent"),
    lasts: str = typer.Option("60s", "--for", metavar="DURATION", help="How long it lasts."),
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance", metavar="ID", help="Only these instances (repeat); default: all."
        ),
    ] = None,
    as_json: bool = _JSON,
) -> None:
    """Inject latency and errors into a service's running instances.

    Affected requests wait --latency before their handler, and --error-rate of them fail as
    the instance failing would (kind `internal`). Each instance ends it by itself after --for.

    Example: herd chaos inject movie.presentation --latency 300ms --percent 20 --for 60s
    """
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
    zone: str = typer.Argument(..., metavar="ZONE", help="The zone, e.g. b."),
    lasts: str = typer.Option("60s", "--for", metavar="DURATION", help="How long it lasts."),
    as_json: bool = _JSON,
) -> None:
    """Take a zone out (Chaos Gorilla).

    SIGKILL every instance in ZONE, and its store member (an app with [[stores]]), and start
    none there until the outage ends; the other zones carry the load, then the zone is
    repopulated and its store member comes back on its ports and data.

    Example: herd chaos zone-outage b --for 60s
    """
    from herd_tools.chaos_commands import chaos_command, duration

    seconds = duration(lasts, "--for")
    chaos_command(lambda api: api.chaos_zone_outage(zone, seconds), as_json)


@chaos_app.command()
def net(
    zone: str = typer.Option("", "--zone", metavar="ZONE", help="The zone the fault is on."),
    instance: str = typer.Option(
        "", "--instance", metavar="ID", help="Or one instance (its server port) instead."
    ),
    to: str = typer.Option(
        "", "--to", metavar="ZONE|registry", help="Only toward this peer; default: everything."
    ),
    partition: bool = typer.Option(False, "--partition", help="Drop every packet both ways."),
    one_way: bool = typer.Option(
        False, "--one-way", help="With --partition: drop only what it sends (answers are lost)."
    ),
    latency: str = typer.Option("0ms", "--latency", metavar="DURATION", help="Added delay."),
    jitter: str = typer.Option("0ms", "--jitter", metavar="DURATION", help="± on the delay."),
    loss: float = typer.Option(
        0.0, "--loss", min=0.0, max=100.0, metavar="PERCENT", help="Packets lost, each way."
    ),
    bandwidth: float = typer.Option(
        0.0, "--bandwidth", min=0.0, metavar="KBIT_S", help="Limit what it sends, kbit/s."
    ),
    lasts: str = typer.Option("60s", "--for", metavar="DURATION", help="How long it lasts."),
    as_json: bool = _JSON,
) -> None:
    """Break the network between zones, the registry and instances (`--network isolated`).

    Partitions (both ways or one way), loss, latency with jitter and bandwidth, with nftables
    and tc in the zone's network namespace; recorded in the history, ended by `herd chaos
    halt` or after --for (docs/network.md).

    Example: herd chaos net --zone b --to a --partition --for 30s
    """
    from herd._cloud.network.faults import NetFault
    from herd_tools.chaos_commands import chaos_command, duration

    fault = NetFault(
        zone=zone,
        instance=instance,
        peer=to,
        partition=partition,
        one_way=one_way,
        latency_ms=duration(latency, "--latency") * 1000,
        jitter_ms=duration(jitter, "--jitter") * 1000,
        loss_pct=loss,
        rate_kbit=bandwidth,
        duration_s=duration(lasts, "--for"),
    )
    chaos_command(lambda api: api.chaos_net(fault), as_json)


@chaos_app.command()
def halt(as_json: bool = _JSON) -> None:
    """Stop everything chaos does, at once: the monkey, every injection, every zone outage,
    every network fault.

    Example: herd chaos halt
    """
    from herd_tools.chaos_commands import chaos_command

    chaos_command(lambda api: api.chaos_halt(), as_json)


@chaos_app.command()
def kong(
    region: str = typer.Argument(..., metavar="REGION", help="The region, e.g. us."),
    back: bool = typer.Option(
        False, "--back", help="Start the region again and return its traffic in steps."
    ),
    step: str = typer.Option(
        "", "--step", metavar="DURATION", help="Between steps; default: the app file's."
    ),
    as_json: bool = _JSON,
) -> None:
    """Evacuate a region (Chaos Kong), in an app with regions (docs/regions.md).

    Scale every group of the other regions out to take its load, move its visitors to them
    in steps of its weight (global_front_door.kong_steps), then kill the region whole; with
    --back, start it again, move its visitors back in steps and scale the others back.
    Recorded in the global history; the command returns once it is done.

    Example: herd chaos kong us --step 5s; herd chaos kong us --back
    """
    from herd_tools.chaos_commands import duration, kong_command

    seconds = duration(step, "--step") if step else -1.0
    kong_command(region, back, seconds, as_json)
