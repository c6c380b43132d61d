"""The `herd` command."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="herd: run, inspect and exercise systems of small, resilient services.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """herd: run, inspect and exercise systems of small, resilient services."""


@app.command()
def demo(
    duration: float | None = typer.Option(
        None, help="Run the load generator for this many seconds, report, and exit."
    ),
    load: float = typer.Option(50.0, help="Requests per second for --duration."),
    app_file: str | None = typer.Option(
        None,
        "--app",
        metavar="APP.toml",
        help="Run this app instead of flix (default: examples/flix/app.toml in this checkout).",
    ),
) -> None:
    """Run flix, the reference system, on the local cloud and print where to open it.

    With --duration, load it through the front door and exit 0 only if >= 99.9 % succeeded.
    """
    from pathlib import Path

    from herd_tools.demo import run_demo

    raise typer.Exit(run_demo(duration, load, Path(app_file) if app_file else None))


@app.command()
def registry(
    port: int = typer.Option(8500, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; loopback unless told otherwise."),
    lease: float = typer.Option(
        3.0, help="Seconds without a renewal before an instance is evicted."
    ),
    key_file: str | None = typer.Option(
        None,
        "--key-file",
        metavar="PATH",
        help="File holding the key that checks instances' credentials (default: "
        "HERD_REGISTRY_KEY, else ~/.herd/registry.key, made if missing).",
    ),
) -> None:
    """Run the registry (embedded backend): instances register here and clients watch it.

    Writes need the instance's credential: HERD_CREDENTIAL (issued for its id from the key) or
    HERD_REGISTRY_KEY in the instance's environment (it mints its own).
    """
    from pathlib import Path

    from herd._registry.service import run_registry

    run_registry(host, port, lease, Path(key_file) if key_file else None)


@app.command(
    help="Send GET requests to URL at a fixed rate (open model) and report latency and failures."
    "\n\nRequests go out at their scheduled times however slowly URL answers, and latency counts "
    "from the scheduled time, so stalls show in the figures (no coordinated omission). A live "
    "progress line goes to stderr; the report (sent, succeeded, failed by kind, p50 / p90 / p99 "
    "/ max latency) to stdout."
    "\n\n{a..b} in URL takes a different integer from a to b for each request."
    "\n\nExample: herd load 'http://127.0.0.1:8080/api/home?visitor={1..10000}' --rate 50"
    " --duration 20 --json out.json"
)
def load(
    url: str = typer.Argument(
        ..., metavar="URL", help="Address to GET, e.g. http://127.0.0.1:8080/api/home"
    ),
    rate: float = typer.Option(..., help="Requests per second, sent on a fixed schedule."),
    duration: float = typer.Option(..., help="Seconds to keep sending."),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    timeout: float = typer.Option(5.0, help="Seconds each request may take."),
    concurrency_cap: int = typer.Option(
        10_000, help="Most requests outstanding; beyond it a due request fails (client_overloaded)."
    ),
) -> None:
    """Load-test URL: see the help text above."""
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
) -> None:
    """Run an app on the local cloud until Ctrl-C or `herd down`.

    Starts the registry, every server group as processes spread over the zones (dead instances
    and a dead registry are replaced; restarts of crashing ones back off), the front door, and
    the control API that `herd ps / scale / kill / down` use. Refuses when a local cloud is
    already running.
    """
    from herd_tools.cloud_commands import up_command

    up_command(app_file)


@app.command()
def ps(
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print {"groups": [...], "instances": [...]} as JSON, for scripts.',
    ),
) -> None:
    """Show the running local cloud's server groups and instances (CRASHLOOP: crashing again
    and again, restarts backing off)."""
    from herd_tools.cloud_commands import ps_command

    ps_command(as_json)


@app.command()
def scale(
    group: str = typer.Argument(..., help="Server group, e.g. movie-v001."),
    count: int = typer.Argument(..., help="Desired number of instances."),
) -> None:
    """Change how many instances a server group should have."""
    from herd_tools.cloud_commands import scale_command

    scale_command(group, count)


@app.command()
def kill(instance: str = typer.Argument(..., help="Instance id, as `herd ps` shows it.")) -> None:
    """Kill one instance with SIGKILL; the control plane replaces it."""
    from herd_tools.cloud_commands import kill_command

    kill_command(instance)


@app.command()
def down() -> None:
    """Stop the running local cloud: instances deregister, drain and exit."""
    from herd_tools.cloud_commands import down_command

    down_command()


experiment_app = typer.Typer(
    help="Experiments that reproduce the talk's figures with real processes.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("retry-storm")
def retry_storm(
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw latency and amplification to FILE.png."
    ),
    rate: float = typer.Option(20.0, help="User requests per second in the load phase."),
    duration: float = typer.Option(8.0, help="Seconds of load per configuration."),
) -> None:
    """Edge -> middle -> deep with one deep instance hanging: naive, telescoped and herd
    settings, one request each and then under load (docs/retry-storm.md)."""
    from pathlib import Path

    from herd_tools.experiments.retry_storm import main as retry_storm_main

    json_path = Path(json_file) if json_file else None
    plot_path = Path(plot_file) if plot_file else None
    raise typer.Exit(
        retry_storm_main(rate=rate, duration=duration, json_path=json_path, plot_path=plot_path)
    )


@experiment_app.command("gray-failure")
def gray_failure(
    app_file: str = typer.Option(
        "examples/flix/app.toml", "--app", metavar="APP.toml", help="The app to run (flix)."
    ),
    rate: float = typer.Option(200.0, help="Requests per second through the front door."),
    duration: float = typer.Option(20.0, help="Seconds of load."),
    pause_at: float = typer.Option(5.0, help="Seconds into the load when the stall begins."),
    pause: float = typer.Option(10.0, help="Seconds the stalled instances stay stopped."),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
) -> None:
    """SIGSTOP one instance of every group under load and count what users saw.

    Exits 0 only if no request failed. The talk's gray failure: an instance that accepts
    connections and answers nothing; hedged attempts, outlier ejection and the registry's
    lease keep it from costing requests.
    """
    from pathlib import Path

    from herd_tools.experiments.gray_failure import main as gray_failure_main

    raise typer.Exit(
        gray_failure_main(
            Path(app_file),
            rate=rate,
            duration=duration,
            pause_at=pause_at,
            pause_s=pause,
            json_path=Path(json_file) if json_file else None,
        )
    )


def main() -> None:
    """Entry point of the `herd` console script."""
    app()
