"""The `herd experiment ...` commands' arguments: experiments that reproduce the talk's figures
with real processes. Each exits 0 only when its stated targets were met."""

from __future__ import annotations

from typing import Annotated

import typer

from herd_tools.output import usage

experiment_app = typer.Typer(
    help="Experiments that reproduce the talk's figures with real processes. Each prints its "
    "figures on stdout, its progress on stderr, and exits 0 only when its targets were met."
    "\n\nExample: herd experiment retry-storm --json storm.json --plot storm.png",
    rich_markup_mode=None,
    no_args_is_help=True,
)


@experiment_app.command("retry-storm")
def retry_storm(
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw latency and amplification to FILE.png."
    ),
    rate: float = typer.Option(
        20.0, metavar="PER_SECOND", help="User requests per second in the load phase."
    ),
    duration: float = typer.Option(
        8.0, metavar="SECONDS", help="Seconds of load per configuration."
    ),
) -> None:
    """The talk's retry storm: naive, telescoped and herd settings side by side.

    Edge -> middle -> deep with one deep instance hanging, one request each and then under
    load (docs/retry-storm.md).

    Example: herd experiment retry-storm --json storm.json --plot storm.png
    """
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


@experiment_app.command("chaos")
def chaos(
    app_file: str = _FLIX_APP,
    rate: float = typer.Option(
        200.0, metavar="PER_SECOND", help="Requests per second through the front door."
    ),
    phase_seconds: float = typer.Option(
        20.0,
        "--phase-seconds",
        metavar="SECONDS",
        help="Seconds of each phase: before, during, after.",
    ),
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            metavar="NAME",
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
    """Each fault under load through flix's front door: before, during and after.

    Chaos Monkey, a zone outage, 1 s latency on 20 % of movie calls, 10 % errors from merch,
    a hung instance per group. Exits 0 only if every phase served >= 99.9 % and p99 stayed
    under the edge's deadline during the latency (docs/chaos.md).

    Example: herd experiment chaos --scenario monkey --phase-seconds 10 --json chaos.json
    """
    from pathlib import Path

    from herd_tools.experiments.chaos import SCENARIOS
    from herd_tools.experiments.chaos import main as chaos_main

    chosen = scenario or list(SCENARIOS)
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        raise usage(f"unknown scenarios {unknown}", f"choose from {', '.join(SCENARIOS)}")
    if not (phase_seconds > 0 and rate > 0):
        raise usage("--rate and --phase-seconds must be > 0")
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


@experiment_app.command("deploy")
def deploy_experiment(
    app_file: str = _FLIX_APP,
    rate: float = typer.Option(
        200.0, metavar="PER_SECOND", help="Requests per second through the front door."
    ),
    visitors: int = typer.Option(
        10_000, metavar="N", help="Visitors the load spreads over (1 % are a test cell)."
    ),
    analysis: float = typer.Option(
        10.0, metavar="SECONDS", help="Seconds of analysis per canary step."
    ),
    interval: float = typer.Option(
        1.0, metavar="SECONDS", help="Seconds between the analysis' samples."
    ),
    min_points: int = typer.Option(
        8, metavar="N", help="Data points per metric before the judge may pass."
    ),
    hold: float = typer.Option(
        3.0, metavar="SECONDS", help="Seconds each promoted deploy is held before its end."
    ),
    steps: str = typer.Option(
        "5,25,50,100", metavar="PERCENTS", help="The canary's traffic steps, in percent."
    ),
    fail_rate: float = typer.Option(
        0.1,
        min=0.0,
        max=1.0,
        metavar="SHARE",
        help="Share of pages the bad canary (canary_fail) fails.",
    ),
    scenarios: str = typer.Option(
        "red_black,canary_pass,canary_fail,rollback",
        metavar="NAMES",
        help="Which scenarios to run (comma-separated; they run in this order).",
    ),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
    plot_file: str | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Draw traffic share per group over time."
    ),
) -> None:
    """Four deploys of flix under load, each counted as its users saw it.

    Red/black, a canary that passes, a bad canary that rolls back by itself, and a rollback
    (docs/deploy.md). Exits 0 only if every one ends as it should and no request failed but
    those the bad canary failed.

    Example: herd experiment deploy --scenarios canary_fail --json deploy.json
    """
    from pathlib import Path

    from herd._cloud.app import DeploySpec
    from herd_tools.experiments.deploy import SCENARIOS
    from herd_tools.experiments.deploy import main as deploy_main

    chosen = [name.strip() for name in scenarios.split(",") if name.strip()]
    if not chosen or any(name not in SCENARIOS for name in chosen):
        raise usage(f"scenarios are among {', '.join(SCENARIOS)}")
    try:
        canary_steps = [int(step) for step in steps.split(",")]
    except ValueError:
        raise usage(f"--steps takes whole percents, e.g. 5,25,50,100: {steps!r}") from None
    spec = DeploySpec(
        rollback_window_s=600.0,
        canary_steps=canary_steps,
        analysis_s=analysis,
        interval_s=interval,
        min_points=min_points,
    )
    if (problem := spec.problem()) is not None:
        raise usage(problem)
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
    rate: float = typer.Option(
        200.0, metavar="PER_SECOND", help="Requests per second through the front door."
    ),
    duration: float = typer.Option(20.0, metavar="SECONDS", help="Seconds of load."),
    pause_at: float = typer.Option(
        5.0, metavar="SECONDS", help="Seconds into the load when the stall begins."
    ),
    pause: float = typer.Option(
        10.0, metavar="SECONDS", help="Seconds the stalled instances stay stopped."
    ),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
) -> None:
    """SIGSTOP one instance of every group under load and count what users saw.

    Exits 0 only if no request failed. The talk's gray failure: an instance that accepts
    connections and answers nothing; hedged attempts, outlier ejection and the registry's
    lease keep it from costing requests.

    Example: herd experiment gray-failure --rate 100 --duration 20
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
    rate: float = typer.Option(
        100.0, metavar="PER_SECOND", help="Writes (then pages) per second, through the door."
    ),
    duration: float = typer.Option(30.0, metavar="SECONDS", help="Seconds of writes."),
    kill_every: float = typer.Option(
        3.0,
        metavar="SECONDS",
        help="Seconds between SIGKILLs of a random history, merch or edge instance.",
    ),
    cache_seconds: float = typer.Option(
        10.0,
        metavar="SECONDS",
        help="Seconds of page reads counted; memcached zone a is killed halfway.",
    ),
    warmup: float = typer.Option(
        5.0, metavar="SECONDS", help="Seconds of page reads before, not counted."
    ),
    json_file: str | None = typer.Option(
        None, "--json", metavar="FILE", help="Also write the figures as JSON to FILE."
    ),
) -> None:
    """Write through flix's front door while instances die, then read every write back.

    Reports sent, acknowledged, lost (acknowledged but not stored), duplicated (applied twice)
    and failed_pct; then kills a memcached zone under read load and counts whole pages. Exits 0
    only if nothing was lost or duplicated and >= 99.9 % of pages were whole (docs/data.md).

    Example: herd experiment durability --duration 30 --kill-every 3 --json durability.json
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
    low: float = typer.Option(
        20.0, metavar="PER_SECOND", help="Requests per second at the ramp's start and end."
    ),
    peak: float = typer.Option(
        400.0, metavar="PER_SECOND", help="Requests per second at the ramp's top."
    ),
    duration: float = typer.Option(180.0, metavar="SECONDS", help="Seconds the whole ramp takes."),
    min_instances: int = typer.Option(2, "--min", metavar="N", help="Fewest instances per group."),
    max_instances: int = typer.Option(6, "--max", metavar="N", help="Most instances per group."),
    target_cpu: float = typer.Option(
        5.0, metavar="PERCENT", help="Percent of one core per instance the autoscaler aims at."
    ),
    scale_in_after: float = typer.Option(
        30.0, metavar="SECONDS", help="Seconds of low load before a group sheds an instance."
    ),
    scale_in_every: float = typer.Option(
        5.0, metavar="SECONDS", help="Seconds between two scale-ins of a group."
    ),
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
    """Ramp load low -> peak -> low through flix's front door, autoscaled and fixed.

    Every group autoscaled, then at the app's fixed counts; exits 0 only if the autoscaled
    run served >= 99.9 % (docs/autoscale.md).

    Example: herd experiment autoscale --peak 400 --duration 180 --plot autoscale.png
    """
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
        raise usage(str(exc)) from None
    if (problem := policy.problem()) is not None:
        raise usage(problem)
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
