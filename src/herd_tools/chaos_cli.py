"""The `herd history` and `herd chaos ...` commands: arguments here, the work in
`chaos_commands`."""

from __future__ import annotations

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
