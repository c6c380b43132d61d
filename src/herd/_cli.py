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


@app.command()
def registry(
    port: int = typer.Option(8500, help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; loopback unless told otherwise."),
    lease: float = typer.Option(
        3.0, help="Seconds without a renewal before an instance is evicted."
    ),
) -> None:
    """Run the registry (embedded backend): instances register here and clients watch it."""
    import uvloop

    from herd._logging import configure
    from herd._registry.service import serve_registry

    configure()
    uvloop.run(serve_registry(host, port, lease))


def main() -> None:
    """Entry point of the `herd` console script."""
    app()
