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
def demo() -> None:
    """Start the example system and make a few calls through it, printing what happened."""
    from herd._demo import run_demo

    raise typer.Exit(run_demo())


def main() -> None:
    """Entry point of the `herd` console script."""
    app()
