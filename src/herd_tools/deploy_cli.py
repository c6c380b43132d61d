"""The `herd deploy ...` commands' arguments; the work is in `deploy_commands`."""

from __future__ import annotations

from typing import Annotated

import typer

deploy_app = typer.Typer(
    help="Ship a new version as a new server group beside the old one, move traffic to it, "
    "and keep the old one for an instant rollback (docs/deploy.md)."
    "\n\nExample: herd deploy start movie --version v002 --strategy canary",
    rich_markup_mode=None,
    no_args_is_help=True,
)

_SERVICE = typer.Argument(..., metavar="SERVICE", help="The service, e.g. movie.")


@deploy_app.command()
def start(
    service: str = _SERVICE,
    version: str = typer.Option(
        ..., "--version", metavar="VERSION", help="The version, e.g. v002 (group movie-v002)."
    ),
    strategy: str = typer.Option(
        "red-black",
        metavar="STRATEGY",
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
) -> None:
    """Deploy VERSION of SERVICE as a new server group beside the old one.

    With --wait (the default) the deploy's steps are followed on stderr; the exit code is 0
    when it was promoted or waits in its rollback window, 1 when it was rolled back.

    Example: herd deploy start movie --version v002 --strategy canary --set FLIX_FAIL_RATE=0.1
    """
    from herd_tools.deploy_commands import deploy_command

    deploy_command(service, version, strategy, settings or [], wait)


@deploy_app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON, for scripts.")) -> None:
    """Show every service's latest deploy: its steps, scores and decisions.

    Example: herd deploy status --json | jq '.[] | {service, state}'
    """
    from herd_tools.deploy_commands import status_command

    status_command(as_json)


@deploy_app.command()
def confirm(service: str = _SERVICE) -> None:
    """End SERVICE's rollback window now: the old group is destroyed.

    Example: herd deploy confirm movie
    """
    from herd_tools.deploy_commands import confirm_command

    confirm_command(service)


@deploy_app.command()
def abort(service: str = _SERVICE) -> None:
    """Stop SERVICE's deploy and send its traffic back to the old group.

    Example: herd deploy abort movie
    """
    from herd_tools.deploy_commands import abort_command

    abort_command(service)


@deploy_app.command()
def rollback(service: str = _SERVICE) -> None:
    """Send SERVICE's traffic back to the group it had before its deploy.

    The old group is re-enabled (no process starts) and the new one destroyed. Also
    `herd rollback SERVICE`, the short form for the moment it matters.

    Example: herd rollback movie
    """
    from herd_tools.deploy_commands import rollback_command

    rollback_command(service)
