"""The `herd` command."""

from __future__ import annotations

from typing import Annotated

import typer

from herd_tools.chaos_cli import chaos_app, experiment_chaos, history

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
    etcd: str = typer.Option(
        "",
        "--etcd",
        metavar="HOST:PORT,...",
        help="Keep instances on these etcd members (needs herd[etcd]); default: in memory.",
    ),
) -> None:
    """Run the registry: instances register here and clients watch it.

    With HERD_TLS_DIR (an identity from a herd cloud's authority) callers must hold a
    certificate and a write is accepted only from the instance it is about; without it (dev
    mode) any local process may write any entry.
    """
    from herd._registry.service import run_registry

    members = [part for part in etcd.split(",") if part]
    run_registry(host, port, lease, members)


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
def top(
    once: bool = typer.Option(False, "--once", help="Print one snapshot and exit."),
) -> None:
    """Watch the running local cloud live: the dashboard's figures in the terminal (front door,
    services, breakers per dependency, groups and instances)."""
    from herd_tools.cloud_commands import top_command

    top_command(once)


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
def deploy(
    target: str = typer.Argument(
        ...,
        metavar="SERVICE|status|confirm|abort",
        help="The service to deploy; or `status`, `confirm SERVICE`, `abort SERVICE`.",
    ),
    service: str | None = typer.Argument(None, help="The service, for confirm and abort."),
    version: str | None = typer.Option(
        None, "--version", help="The version to deploy, e.g. v002 (a new group: movie-v002)."
    ),
    strategy: str = typer.Option(
        "red-black",
        help="red-black: all traffic moves once the new group is UP, the old one is kept"
        " disabled for a rollback. canary: traffic moves in steps, each judged against a"
        " baseline, rolled back by itself when the judge fails it.",
    ),
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="The new version's settings: module=, instances=, or an environment variable"
            " (UPPER_CASE). Repeatable; laid over the app file's versions table.",
        ),
    ] = None,
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="Follow the deploy, step by step, until it settles."
    ),
    as_json: bool = typer.Option(False, "--json", help="For status: print JSON."),
) -> None:
    """Deploy a new version of a service as a new server group beside the old one.

    `herd deploy movie --version v002 [--strategy canary] [--set FLIX_FAIL_RATE=0.1]`;
    `herd deploy status [--json]` shows every deploy's steps, scores and decisions;
    `herd deploy confirm movie` ends the rollback window (the old group goes);
    `herd deploy abort movie` stops a deploy and goes back to the old group.
    """
    from herd_tools import deploy_commands

    if target == "status":
        deploy_commands.status_command(as_json)
    elif target in ("confirm", "abort"):
        if service is None:
            raise typer.BadParameter(f"say which service: herd deploy {target} SERVICE")
        command = (
            deploy_commands.confirm_command
            if target == "confirm"
            else (deploy_commands.abort_command)
        )
        command(service)
    else:
        if version is None:
            raise typer.BadParameter("say which version: --version v002")
        deploy_commands.deploy_command(target, version, strategy, settings or [], wait)


@app.command()
def rollback(service: str = typer.Argument(..., help="The service whose deploy to undo.")) -> None:
    """Send a service's traffic back to the group it had before its deploy: the old group is
    re-enabled (no process starts) and the new one destroyed."""
    from herd_tools.deploy_commands import rollback_command

    rollback_command(service)


@app.command()
def down() -> None:
    """Stop the running local cloud: instances deregister, drain and exit."""
    from herd_tools.cloud_commands import down_command

    down_command()


@app.command(
    help="Write a new service with everything wired: interface, implementation, library "
    "(look-aside cache, fallback), fake driver, README and tests, and add its group to "
    "DIR/app.toml (made if missing) so `herd up DIR` runs it."
    "\n\nNAME is lowercase letters, digits and single hyphens, at most 24 characters; the "
    "package is NAME with _ for -. Nothing that exists is overwritten: the command stops with "
    "exit code 1 first."
    "\n\nExample: herd new ratings --dir services --calls movie"
)
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
    """Write a new service: see the help text above."""
    from pathlib import Path

    from herd_tools.new import new_command

    new_command(name, Path(directory), calls or [])


app.command()(history)
app.add_typer(chaos_app, name="chaos")

experiment_app = typer.Typer(
    help="Experiments that reproduce the talk's figures with real processes.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")
experiment_app.command("chaos")(experiment_chaos)
experiment_app.command("judge")(__import__("herd_tools.experiments.judge", fromlist=["_"]).command)


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


#: The experiments that run flix share their `--app` option.
_FLIX_APP = typer.Option(
    "examples/flix/app.toml", "--app", metavar="APP.toml", help="The app to run (flix)."
)


@experiment_app.command("deploy")
def deploy_experiment(
    app_file: str = _FLIX_APP,
    rate: float = typer.Option(200.0, help="Requests per second through the front door."),
    visitors: int = typer.Option(
        10_000, help="Visitors the load spreads over (1 % are a test cell)."
    ),
    analysis: float = typer.Option(10.0, help="Seconds of analysis per canary step."),
    interval: float = typer.Option(1.0, help="Seconds between the analysis' samples."),
    min_points: int = typer.Option(8, help="Data points per metric before the judge may pass."),
    hold: float = typer.Option(3.0, help="Seconds each promoted deploy is held before its end."),
    steps: str = typer.Option("5,25,50,100", help="The canary's traffic steps, in percent."),
    fail_rate: float = typer.Option(
        0.1, min=0.0, max=1.0, help="Share of pages the bad canary (canary_fail) fails."
    ),
    scenarios: str = typer.Option(
        "red_black,canary_pass,canary_fail,rollback",
        help="Which scenarios to run (comma-separated; they run in this order).",
    ),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw traffic share per group over time."
    ),
) -> None:
    """Four deploys of flix under load: red/black, a canary that passes, a bad canary that
    rolls back by itself, and a rollback (docs/deploy.md). Exits 0 only if every one ends as
    it should and no request failed but those the bad canary failed."""
    from pathlib import Path

    from herd._cloud.app import DeploySpec
    from herd_tools.experiments.deploy import SCENARIOS
    from herd_tools.experiments.deploy import main as deploy_main

    chosen = [name.strip() for name in scenarios.split(",") if name.strip()]
    if not chosen or any(name not in SCENARIOS for name in chosen):
        raise typer.BadParameter(f"scenarios are among {', '.join(SCENARIOS)}")
    try:
        canary_steps = [int(step) for step in steps.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"--steps takes whole percents, e.g. 5,25,50,100: {steps!r}"
        ) from None
    spec = DeploySpec(
        rollback_window_s=600.0,
        canary_steps=canary_steps,
        analysis_s=analysis,
        interval_s=interval,
        min_points=min_points,
    )
    if (problem := spec.problem()) is not None:
        raise typer.BadParameter(problem)
    raise typer.Exit(
        deploy_main(
            Path(app_file),
            rate=rate,
            visitors=visitors,
            spec=spec,
            hold_s=hold,
            chosen=chosen,
            json_path=Path(json_file) if json_file else None,
            plot_path=Path(plot_file) if plot_file else None,
            fail_rate=fail_rate,
        )
    )


@experiment_app.command("gray-failure")
def gray_failure(
    app_file: str = _FLIX_APP,
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


@experiment_app.command("durability")
def durability(
    app_file: str = _FLIX_APP,
    rate: float = typer.Option(100.0, help="Writes (then pages) per second, through the door."),
    duration: float = typer.Option(30.0, help="Seconds of writes."),
    kill_every: float = typer.Option(
        3.0, help="Seconds between SIGKILLs of a random history, merch or edge instance."
    ),
    cache_seconds: float = typer.Option(
        10.0, help="Seconds of page reads counted; memcached zone a is killed halfway."
    ),
    warmup: float = typer.Option(5.0, help="Seconds of page reads before, not counted."),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
) -> None:
    """Write through flix's front door while instances die, then read every write back.

    Reports sent, acknowledged, lost (acknowledged but not stored), duplicated (applied twice)
    and failed_pct; then kills a memcached zone under read load and counts whole pages. Exits 0
    only if nothing was lost or duplicated and >= 99.9 % of pages were whole (docs/data.md).
    """
    from pathlib import Path

    from herd_tools.experiments.durability import main as durability_main

    raise typer.Exit(
        durability_main(
            Path(app_file),
            rate=rate,
            duration=duration,
            kill_every=kill_every,
            cache_seconds=cache_seconds,
            warmup_s=warmup,
            json_path=Path(json_file) if json_file else None,
        )
    )


@experiment_app.command("autoscale")
def autoscale(
    app_file: str = _FLIX_APP,
    low: float = typer.Option(20.0, help="Requests per second at the ramp's start and end."),
    peak: float = typer.Option(400.0, help="Requests per second at the ramp's top."),
    duration: float = typer.Option(180.0, help="Seconds the whole ramp takes."),
    min_instances: int = typer.Option(2, "--min", help="Fewest instances per group."),
    max_instances: int = typer.Option(6, "--max", help="Most instances per group."),
    target_cpu: float = typer.Option(
        5.0, help="Percent of one core per instance the autoscaler aims at."
    ),
    scale_in_after: float = typer.Option(
        30.0, help="Seconds of low load before a group sheds an instance."
    ),
    scale_in_every: float = typer.Option(5.0, help="Seconds between two scale-ins of a group."),
    baseline: bool = typer.Option(
        True, help="Also run the ramp at the app's fixed counts, for comparison."
    ),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw load, instances and p99 to FILE.png."
    ),
) -> None:
    """Ramp load low -> peak -> low through flix's front door with every group autoscaled,
    then at fixed counts; exits 0 only if the autoscaled run served >= 99.9 %
    (docs/autoscale.md)."""
    from pathlib import Path

    from herd._cloud.app import AutoscaleSpec
    from herd_tools.experiments.autoscale import Ramp
    from herd_tools.experiments.autoscale import main as autoscale_main

    policy = AutoscaleSpec(
        min=min_instances,
        max=max_instances,
        target_cpu=target_cpu,
        scale_in_after_s=scale_in_after,
        scale_in_every_s=scale_in_every,
    )
    try:
        ramp = Ramp(low, peak, duration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if (problem := policy.problem()) is not None:
        raise typer.BadParameter(problem)
    raise typer.Exit(
        autoscale_main(
            Path(app_file),
            ramp=ramp,
            policy=policy,
            baseline=baseline,
            json_path=Path(json_file) if json_file else None,
            plot_path=Path(plot_file) if plot_file else None,
        )
    )


@app.command()
def simulate(
    instances: int = typer.Option(5, min=5, help="Simulated instances, over zones a, b, c."),
    seconds: float = typer.Option(8.0, min=1.0, help="Seconds of load, in virtual time."),
    scenario: str = typer.Option(
        "retry-storm",
        help="retry-storm, baseline, kill, hung, slow-zone or zone-lost.",
    ),
    rate: float | None = typer.Option(
        None, help="User requests per second (default: 20 at 5 instances, instances / 4 beyond)."
    ),
    depth: int = typer.Option(3, min=3, max=8, help="Tiers in the retry-storm chain."),
    seed: int = typer.Option(1, help="Seed of every random draw."),
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
    """Simulate a system at scale on virtual time, with herd's own call path deciding:
    the retry storm (naive, telescoped, herd) or flix under faults (docs/simulation.md)."""
    from pathlib import Path

    from herd_tools.simulate.report import main as simulate_main
    from herd_tools.simulate.scenarios import SCENARIOS, Settings

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"one of {', '.join(SCENARIOS)}", param_hint="--scenario")
    settings = Settings(scenario, instances, seconds, rate, depth, seed, per_instance)
    raise typer.Exit(
        simulate_main(
            settings,
            json_path=Path(json_file) if json_file else None,
            plot_path=Path(plot_file) if plot_file else None,
            sweep_json=Path(sweep_json) if sweep_json else None,
        )
    )


k8s_app = typer.Typer(help="Run an app's server groups on Kubernetes.", no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")


@k8s_app.command(
    "render",
    help="Write Kubernetes manifests for APP.toml: a Deployment and a PodDisruptionBudget per "
    "server group (labelled by service, group and version, spread over zones, probed on "
    "/health, given herd's drain to stop), the registry on etcd, and a Service for the front "
    "door's service. JSON files, one per manifest, for `kubectl apply -f DIR`; without --out, "
    "one List on stdout. See docs/kubernetes.md."
    "\n\nExample: herd k8s render examples/flix/app.toml --out k8s/",
)
def k8s_render(
    app_file: str = typer.Argument(..., metavar="APP.toml", help="The app description."),
    version: str | None = typer.Option(
        None, "--version", metavar="V", help="Only the groups of this version (e.g. v002)."
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
    """Write Kubernetes manifests: see the help text above."""
    from pathlib import Path

    from herd._model.errors import ConfigurationError
    from herd_tools.k8s import render_command

    try:
        written = render_command(Path(app_file), version, Path(out) if out else None, image)
    except (ConfigurationError, ValueError) as exc:
        typer.echo(f"herd k8s render: {exc}", err=True)
        raise typer.Exit(1) from None
    if written:
        typer.echo(f"wrote {len(written)} manifests to {out}", err=True)


def main() -> None:
    """Entry point of the `herd` console script."""
    app()
