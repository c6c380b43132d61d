"""The `herd experiment ...` group: experiments that reproduce the talk's figures with real
processes. Each command lives beside its experiment (`herd_tools.experiments.<name>.command`)
and is registered here with one line; each exits 0 only when its stated targets were met."""

from __future__ import annotations

import typer

from herd_tools.experiments import (
    autoscale,
    chaos,
    deploy,
    durability,
    gray_failure,
    judge,
    kong,
    network,
    overload,
    retry_storm,
)

experiment_app = typer.Typer(
    help="Experiments that reproduce the talk's figures with real processes. Each prints its "
    "figures on stdout, its progress on stderr, and exits 0 only when its targets were met "
    "(1 when one was missed)."
    "\n\nExample: herd experiment retry-storm --json storm.json --plot storm.png",
    rich_markup_mode=None,
    no_args_is_help=True,
)

experiment_app.command("retry-storm")(retry_storm.command)
experiment_app.command("chaos")(chaos.command)
experiment_app.command("deploy")(deploy.command)
experiment_app.command("gray-failure")(gray_failure.command)
experiment_app.command("durability")(durability.command)
experiment_app.command("autoscale")(autoscale.command)
experiment_app.command("judge")(judge.command)
experiment_app.command("network")(network.command)
experiment_app.command("overload")(overload.command)
experiment_app.command("kong")(kong.command)
