"""Criticality: how much a request matters, carried with it through every hop.

A number from 0 to 99 (higher matters more) with three named levels, after the classes Netflix
sheds by: `critical` (a user waits for it: a click, a play), `degraded` (the page is worse
without it; what an unmarked request is) and `best_effort` (nobody waits: a prefetch, a
precompute). It travels as the routing context's `criticality` entry, so the front door sets it
once (from the app file's rules) and every hop below sees it without application code. A
handler may lower it for the calls it makes (`herd.criticality("best_effort")`), never raise it:
the routing context keeps the lower of the two whenever the entry is set again.

An overloaded server sheds the least critical work first (`herd._server.admission`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from herd._model.errors import ConfigurationError

KEY = "criticality"
"""The routing context's entry that carries it."""

HIGHEST = 99


class Criticality(enum.IntEnum):
    """The named levels of criticality (any number from 0 to 99 is one too)."""

    CRITICAL = 90
    """A user is waiting for the answer: kept until the very end of an overload."""
    DEGRADED = 50
    """The answer makes a page better, not possible: the level of an unmarked request."""
    BEST_EFFORT = 10
    """Nobody waits for it (prefetch, warm-up): shed first."""


DEFAULT = Criticality.DEGRADED


def parse(value: str | int) -> int:
    """The criticality `value` names: a level's name (`critical`, `degraded`, `best_effort`,
    any case) or a number from 0 to 99; `ConfigurationError` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 2:
        number = int(value)
    elif isinstance(value, str) and value.upper() in Criticality.__members__:
        return int(Criticality[value.upper()])
    else:
        raise ConfigurationError(
            f"criticality {str(value)[:40]!r}: critical, degraded, best_effort or 0 to {HIGHEST}"
        )
    if not 0 <= number <= HIGHEST:
        raise ConfigurationError(f"criticality {number}: 0 to {HIGHEST}")
    return number


def of(entries: Mapping[str, str]) -> int:
    """The criticality a routing context carries; `DEFAULT` when it carries none, or one this
    process cannot read (it came from elsewhere: never an error)."""
    value = entries.get(KEY)
    if value is None:
        return DEFAULT
    try:
        return parse(value)
    except ConfigurationError:
        return DEFAULT


def lowered(current: Mapping[str, str], value: str) -> str:
    """The entry's value after setting it to `value` where `current` is in force: the level
    `value` names, as a number, but never more critical than one already in force (nor removed,
    which would raise it to the default). Where none is in force yet (the front door, a
    process's own background work), any level may be set."""
    if KEY not in current:
        return str(parse(value)) if value else value
    if not value:
        return current[KEY]
    return str(min(parse(value), of(current)))
