"""The `herd` command: its commands and groups, and its one error path.

Every command's arguments are parsed here (or in the `*_cli` module of its group); the work is
done in the `*_commands` modules. Data goes to stdout, messages and errors to stderr, and the
exit code is 0 when the work was done, 1 when it failed, 2 for a usage mistake: see
`herd_tools.output`, which every command writes through.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from herd._model.errors import HerdError
from herd_tools import options
from herd_tools.chaos_cli import chaos_app
from herd_tools.deploy_cli import deploy_app, rollback
from herd_tools.experiment_cli import experiment_app
from herd_tools.output import (
    FAILED,
    INTERRUPTED,
    USAGE,
    Failure,
    UsageMistake,
    report_error,
    say,
)

#: Plain click help (no rich boxes): it reads the same at 80 columns, in a pipe and in a log.
HELP = {"rich_markup_mode": None, "add_completion": False, "no_args_is_help": True}

app = typer.Typer(
    help="Run, inspect and exercise systems of small, resilient services."
    "\n\nExit codes: 0 the work was done, 1 it failed, 2 a usage mistake. Data goes to "
    "stdout, messages and errors to stderr."
    "\n\nExample: herd demo, then herd ps in another terminal.",
    **HELP,  # type: ignore[arg-type]
)

_TIME_HELP = "ISO time (2026-11-30T08:15), seconds since the epoch, or how long ago (90s, 5m, 2h)"


@app.command()
def demo(
    duration: float | None = options.seconds(
        None, "Load the front door for this many seconds, report, and exit."
    ),
    load: float = options.per_second(50.0, "Requests per second."),
    app_file: str | None = typer.Option(
        None,
        "--app",
        metavar="APP.toml",
        help="Run this app instead of flix (default: examples/flix/app.toml in this checkout).",
    ),
    port: int | None = typer.Option(
        None, metavar="PORT", help="The front door's port, instead of the app's (8080)."
    ),
    control_port: int | None = typer.Option(
        None, metavar="PORT", help="The control API's and dashboard's port (8400)."
    ),
    registry_port: int | None = typer.Option(
        None, metavar="PORT", help="The registry's port (8500)."
    ),
) -> None:
    """Run flix, the reference system, on the local cloud and print where to open it.

    Runs until Ctrl-C. With --duration, loads it through the front door and exits 0 only if
    >= 99.9 % of requests succeeded.

    Example: herd demo --duration 20 --load 50
    """
    from pathlib import Path

    from herd_tools.demo import Ports, run_demo

    ports = Ports(front_door=port, control=control_port, registry=registry_port)
    raise typer.Exit(run_demo(duration, load, Path(app_file) if app_file else None, ports))


@app.command()
def registry(
    port: int = typer.Option(8500, metavar="PORT", help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1", metavar="ADDRESS", help="Address to bind; loopback unless told otherwise."
    ),
    lease: float = options.seconds(3.0, "Seconds without a renewal before an instance is evicted."),
    etcd: str = typer.Option(
        "",
        "--etcd",
        metavar="HOST:PORT,...",
        help="Keep instances on these etcd members (needs herd[etcd]); default: in memory.",
    ),
) -> None:
    """Run the registry on its own: instances register here and clients watch it.

    With HERD_TLS_DIR (an identity from a herd cloud's authority) callers must hold a
    certificate and a write is accepted only from the instance it is about; without it (dev
    mode) any local process may write any entry.

    Example: herd registry --port 8500 --etcd 127.0.0.1:2379
    """
    from herd._registry.service import run_registry

    members = [part for part in etcd.split(",") if part]
    run_registry(host, port, lease, members)


@app.command()
def load(
    url: str = typer.Argument(
        ..., metavar="URL", help="Address to GET, e.g. http://127.0.0.1:8080/api/home"
    ),
    rate: float = options.per_second(..., "Requests per second, sent on a fixed schedule."),
    duration: float = options.seconds(..., "Seconds to keep sending."),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    timeout: float = options.seconds(5.0, "Seconds each request may take."),
    concurrency_cap: int = options.count(
        10_000, "Most requests outstanding; beyond it a due request fails (client_overloaded)."
    ),
) -> None:
    """Send GET requests to URL at a fixed rate (open model); report latency and failures.

    Requests go out at their scheduled times however slowly URL answers, and latency counts
    from the scheduled time, so stalls show in the figures (no coordinated omission). A live
    progress line goes to stderr; the report (sent, succeeded, failed by kind, p50 / p90 / p99
    / max latency) to stdout. {a..b} in URL takes a different integer from a to b for each
    request.

    Example: herd load 'http://127.0.0.1:8080/api/home?visitor={1..10000}' --rate 50
    --duration 20 --json out.json
    """
    from herd_tools.load import load_command

    load_command(
        url,
        rate=rate,
        duration=duration,
        json_path=json_file,
        timeout=timeout,
        concurrency_cap=concurrency_cap,
    )


@app.command()
def up(
    app_file: str = typer.Argument(
        ..., metavar="APP", help="The app description (TOML), or its folder."
    ),
    network: str | None = typer.Option(
        None,
        "--network",
        metavar="loopback|isolated",
        help="loopback (default): every process on 127.0.0.1; isolated: a network namespace"
        " per zone joined by a bridge (Linux, root; docs/network.md).",
    ),
) -> None:
    """Run an app on the local cloud until Ctrl-C or `herd down`.

    Starts the registry, every server group as processes spread over the zones (dead instances
    and a dead registry are replaced; restarts of crashing ones back off), the front door, and
    the control API that `herd ps / scale / kill / down` use. Refuses when a local cloud is
    already running.

    Example: herd up examples/flix/app.toml --network isolated
    """
    from herd_tools.cloud_commands import up_command

    up_command(app_file, network)


@app.command()
def ps(
    as_json: bool = typer.Option(
        False, "--json", help='Print {"groups", "instances", "caches"} as JSON, for scripts.'
    ),
) -> None:
    """Show the running local cloud's server groups, instances and cache servers.

    A group in CRASHLOOP crashes again and again (its restarts back off). On a narrow
    terminal the least needed columns give way; in a pipe every column is printed.

    Example: herd ps --json | jq '.instances[] | select(.status == "UP") | .id'
    """
    from herd_tools.cloud_commands import ps_command

    ps_command(as_json)


@app.command()
def top(
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
) -> None:
    """Watch the running local cloud live: the dashboard's figures in the terminal.

    Front door, services, breakers per dependency, groups and instances; Ctrl-C stops. With
    --once in a pipe, plain aligned tables with every name whole.

    Example: herd top --once
    """
    from herd_tools.cloud_commands import top_command

    top_command(once)


@app.command()
def scale(
    group: str = typer.Argument(..., metavar="GROUP", help="Server group, e.g. movie-v001."),
    count: int = typer.Argument(..., metavar="N", help="Desired number of instances."),
) -> None:
    """Change how many instances a server group should have.

    Example: herd scale movie-v001 5
    """
    from herd_tools.cloud_commands import scale_command

    scale_command(group, count)


@app.command()
def kill(
    instance: str = typer.Argument(
        ..., metavar="INSTANCE", help="Instance id, as `herd ps` shows it."
    ),
) -> None:
    """Kill one instance with SIGKILL; the control plane replaces it.

    Example: herd kill movie-v001-a-1
    """
    from herd_tools.cloud_commands import kill_command

    kill_command(instance)


@app.command()
def down() -> None:
    """Stop the running local cloud: instances deregister, drain and exit.

    Example: herd down
    """
    from herd_tools.cloud_commands import down_command

    down_command()


@app.command()
def trace(
    trace_id: str | None = typer.Argument(
        None,
        metavar="TRACE_ID",
        help="A kept trace's id (32 hex digits, from the front door's traceresponse header).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, for scripts."),
) -> None:
    """Show one request's trace across services as a waterfall, or the recent kept traces.

    The control plane keeps the traces of failed and slow requests through the front door, and
    a small share of the rest.

    Example: herd trace 4bf92f3577b34da6a3ce929d0e0e4736 --json
    """
    from herd_tools.trace_commands import trace_command

    trace_command(trace_id, as_json=as_json)


@app.command()
def history(
    since: str | None = typer.Option(None, "--since", metavar="T", help=f"From T: {_TIME_HELP}."),
    until: str | None = typer.Option(None, "--until", metavar="T", help="Before T."),
    at: str | None = typer.Option(
        None, "--at", metavar="T", help="Show the groups and instances as of T instead."
    ),
    diff: str | None = typer.Option(
        None, "--diff", metavar="T1,T2", help="Show what changed between T1 and T2 instead."
    ),
    group: str | None = typer.Option(None, "--group", metavar="GROUP", help="Only GROUP."),
    kind: str | None = typer.Option(
        None, "--kind", metavar="KIND", help="Only KIND (or its prefix: `instance`, `chaos`)."
    ),
    limit: int = options.count(200, "At most the last N.", "--limit", min=1),
    served_by: str | None = typer.Option(
        None,
        "--served",
        metavar="SERVICE",
        help="Which instances and versions served SERVICE's requests (with --since/--until).",
    ),
    address: str | None = typer.Option(
        None, "--address", metavar="HOST:PORT", help="Every instance that ever had this address."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, for scripts."),
) -> None:
    """Show the cloud's history (Edda): what changed, when and why.

    Launches, terminations and their cause, scaling, deploys, chaos, injections, breakers,
    registry restarts; and the request flow, from the kept traces.

    Example: herd history --since 10m --kind chaos
    """
    from herd_tools.history_commands import history_command

    history_command(
        since=since,
        until=until,
        at=at,
        diff=diff,
        group=group,
        kind=kind,
        limit=limit,
        as_json=as_json,
        served_by=served_by,
        address=address,
    )


@app.command()
def new(
    name: str = typer.Argument(..., metavar="NAME", help="The service's name, e.g. ratings."),
    directory: str = typer.Option(
        ".", "--dir", metavar="DIR", help="Where the package and app.toml go."
    ),
    # Annotated: ruff (B008) refuses a call as the default of a list-typed parameter.
    calls: Annotated[
        list[str] | None,
        typer.Option(
            "--calls",
            metavar="SERVICE",
            help="A service of DIR/app.toml the new one calls: its driver is wired in "
            "library.py. Repeat it, or separate services with commas.",
        ),
    ] = None,
) -> None:
    """Write a new service with everything wired, and add its group to DIR/app.toml.

    Interface, implementation, library (look-aside cache, fallback), fake driver, README and
    tests; DIR/app.toml is made if missing, so `herd up DIR` runs it. NAME is lowercase
    letters, digits and single hyphens, at most 24 characters; the package is NAME with _ for
    -. Nothing that exists is overwritten: the command stops with exit code 1 first.

    Example: herd new ratings --dir services --calls movie
    """
    from pathlib import Path

    from herd_tools.new import new_command

    new_command(name, Path(directory), calls or [])


@app.command()
def simulate(
    instances: int = options.count(5, "Simulated instances, over zones a, b, c.", min=5),
    seconds: float = options.seconds(8.0, "Seconds of load, in virtual time.", min=1.0),
    scenario: str = typer.Option(
        "retry-storm",
        metavar="NAME",
        help="retry-storm, baseline, kill, hung, slow-zone, zone-lost, overload or kong (regions).",
    ),
    rate: float | None = options.per_second(
        None, "User requests per second (default: 20 at 5 instances, instances / 4 beyond)."
    ),
    depth: int = typer.Option(
        3, min=3, max=8, metavar="TIERS", help="Tiers in the retry-storm chain."
    ),
    seed: int = options.count(1, "Seed of every random draw."),
    per_instance: bool = typer.Option(
        False, "--per-instance", help="One herd client per calling instance, not per zone."
    ),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw the figures to FILE.png (matplotlib)."
    ),
    sweep_json: str | None = typer.Option(
        None,
        "--sweep",
        metavar="FILE",
        help="Instead: the retry storm over instance counts and depths, as JSON to FILE.",
    ),
) -> None:
    """Simulate a system at scale on virtual time, with herd's own call path deciding.

    The retry storm (naive, telescoped, herd), flix under faults (docs/simulation.md), or
    `herd experiment overload` (docs/overload.md: --seconds is its spike, a third of it each
    base and after; --rate is ignored, the load follows the capacity).

    Example: herd simulate --instances 10000 --scenario kill --json sim.json
    """
    from pathlib import Path

    from herd_tools.output import usage
    from herd_tools.simulate.report import main as simulate_main
    from herd_tools.simulate.scenarios import SCENARIOS, Settings

    if scenario == "overload":
        from herd_tools.simulate.overload import main as overload_main

        if plot_file or sweep_json:
            raise usage("--plot and --sweep are for the other scenarios, not overload")

        json_path = Path(json_file) if json_file else None
        raise typer.Exit(overload_main(instances, seconds, seed, json_path))
    if scenario not in SCENARIOS:
        names = ", ".join((*SCENARIOS, "overload"))
        raise usage(f"--scenario {scenario!r} is not one of {names}")
    settings = Settings(scenario, instances, seconds, rate, depth, seed, per_instance)
    raise typer.Exit(
        simulate_main(
            settings,
            json_path=Path(json_file) if json_file else None,
            plot_path=Path(plot_file) if plot_file else None,
            sweep_json=Path(sweep_json) if sweep_json else None,
        )
    )


k8s_app = typer.Typer(help="Run an app's server groups on Kubernetes.", **HELP)  # type: ignore[arg-type]


@k8s_app.command("render")
def k8s_render(
    app_file: str = typer.Argument(..., metavar="APP.toml", help="The app description."),
    version: str | None = typer.Option(
        None, "--version", metavar="VERSION", help="Only the groups of VERSION (e.g. v002)."
    ),
    out: str | None = typer.Option(None, "--out", metavar="DIR", help="Write files here."),
    image: str | None = typer.Option(
        None,
        "--image",
        metavar="REPOSITORY",
        help="Image repository; each group runs REPOSITORY:GROUP, the registry "
        "REPOSITORY:registry (default: the app's name).",
    ),
) -> None:
    """Write Kubernetes manifests for APP.toml.

    A Deployment and a PodDisruptionBudget per server group (labelled by service, group and
    version, spread over zones, probed on /health, given herd's drain to stop), the registry
    on etcd, and a Service for the front door's service. JSON files, one per manifest, for
    `kubectl apply -f DIR`; without --out, one List on stdout. See docs/kubernetes.md.

    Example: herd k8s render examples/flix/app.toml --out k8s/
    """
    from pathlib import Path

    from herd_tools.k8s import render_command
    from herd_tools.output import fails_cleanly, say

    with fails_cleanly():
        try:
            written = render_command(Path(app_file), version, Path(out) if out else None, image)
        except ValueError as exc:
            raise Failure(str(exc)) from None
    if written:
        say(f"wrote {len(written)} manifests to {out}")


app.add_typer(deploy_app, name="deploy")
app.command()(rollback)
app.add_typer(chaos_app, name="chaos")
app.add_typer(experiment_app, name="experiment")
app.add_typer(k8s_app, name="k8s")


def _plain_arguments(command: Any) -> None:
    """Help names each argument by its metavar alone: typer would add a type placeholder
    (`SERVICE <str>`) that tells a person nothing the metavar does not."""
    for param in getattr(command, "params", []):
        if param.param_type_name == "argument" and param.metavar is not None:
            param.display_type_rich = lambda ctx: None
    for child in getattr(command, "commands", {}).values():
        _plain_arguments(child)


def command() -> Any:
    """The `herd` command as click runs it (for `run` and for tests that read its help)."""
    built = typer.main.get_command(app)
    _plain_arguments(built)
    return built


def _command_path(args: Sequence[str]) -> str:
    """`herd deploy start` for the arguments given: the command a usage hint names."""
    words = ["herd"]
    commands = getattr(command(), "commands", {})
    for arg in args:
        if arg not in commands:
            break
        words.append(arg)
        commands = getattr(commands[arg], "commands", {})
    return " ".join(words)


def run(args: Sequence[str] | None = None) -> int:
    """Run the `herd` command with `args` (default: the process's), and return its exit code.

    The one place where errors become messages: usage mistakes (click's, and `UsageMistake`)
    exit 2, failures (`Failure`, `HerdError`) exit 1, each as one line on stderr; a command
    group run without its command prints its help on stderr and exits 2.
    """
    argv = list(sys.argv[1:] if args is None else args)
    try:
        code = command().main(args=argv, prog_name="herd", standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group run without its command: its help as it reads, not folded into an error
            # line (the class is click's, which typer vendors privately: matched by name).
            say(exc.format_message())
            return exc.exit_code
        # click's own: a usage mistake (its UsageError, exit code 2) or another refusal.
        usage_mistake = exc.exit_code == USAGE
        hint = f"see `{_command_path(argv)} --help`" if usage_mistake else ""
        report_error(exc.format_message(), hint)
        return exc.exit_code
    except UsageMistake as exc:
        report_error(str(exc), exc.hint or f"see `{_command_path(argv)} --help`")
        return USAGE
    except Failure as exc:
        report_error(str(exc), exc.hint)
        return FAILED
    except HerdError as exc:
        report_error(str(exc))
        return FAILED
    except typer.Abort:
        report_error("stopped")
        return INTERRUPTED
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the `herd` console script."""
    sys.exit(run())
