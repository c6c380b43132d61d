"""The numeric options herd's commands share, each unit's metavar said once.

Every command that takes seconds, a count or a rate shows the same metavar for it in `--help`;
these build such a `typer.Option` from its default and help (and its flags and bounds where a
command names them).
"""

from __future__ import annotations

from typing import Any

import typer


def seconds(
    default: Any, text: str, *flags: str, min: float | None = None, max: float | None = None
) -> Any:
    """A duration in seconds (`SECONDS`)."""
    return typer.Option(default, *flags, metavar="SECONDS", help=text, min=min, max=max)


def count(
    default: Any, text: str, *flags: str, min: float | None = None, max: float | None = None
) -> Any:
    """A whole number of things (`N`)."""
    return typer.Option(default, *flags, metavar="N", help=text, min=min, max=max)


def per_second(
    default: Any, text: str, *flags: str, min: float | None = None, max: float | None = None
) -> Any:
    """A rate (`PER_SECOND`)."""
    return typer.Option(default, *flags, metavar="PER_SECOND", help=text, min=min, max=max)


def share(default: float, text: str, *flags: str) -> Any:
    """A share of things, 0 to 1 (`SHARE`)."""
    return typer.Option(default, *flags, metavar="SHARE", help=text, min=0.0, max=1.0)


def percent(default: float, text: str, *flags: str) -> Any:
    """A percentage, 0 to 100 (`PERCENT`)."""
    return typer.Option(default, *flags, metavar="PERCENT", help=text, min=0.0, max=100.0)


def only(flag: str, names: str) -> Any:
    """A repeatable `--FLAG NAME` choosing which of a run's parts to run, for
    `Annotated[list[str] | None, only(...)] = None` (None: all of them)."""
    return typer.Option(flag, metavar="NAME", help=f"Run only these (repeat): {names}.")
