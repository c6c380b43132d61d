"""The routing context: what a request carries about where it should be served, through every hop.

A few short `key=value` entries (the visitor's cohort, the version a test cell is pinned to, a
failure to inject on this request's path) that the front door or a test sets once. They live in a
`ContextVar` like the deadline: every driver call sends them, and the server sets them again
around its handler, so the next hop's calls carry them too, with no application code. Istio
routes by header only per hop and needs every app to copy the headers; here the library does it.

The entries are strictly bounded and of a small alphabet, because they arrive from other
processes: at most `MAX_ENTRIES` entries, `MAX_LENGTH` characters in all.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from herd._model import criticality as _criticality
from herd._model.errors import ConfigurationError

MAX_ENTRIES = 16
MAX_LENGTH = 1024
_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_VALUE = re.compile(r"[A-Za-z0-9_.:/+-]{0,128}")


class RoutingContext(Mapping[str, str]):
    """The routing entries in force for the current request: an immutable mapping.

    Read it with `herd.routing_context()`; add to it with `herd.routing(**entries)`.
    """

    __slots__ = ("_entries", "header")

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        items = dict(entries or {})
        _check(items)
        self._entries = items
        #: The entries as they travel: `key=value` pairs joined by `,` (empty when there are none).
        self.header = ",".join(f"{key}={value}" for key, value in sorted(items.items()))

    def __getitem__(self, key: str) -> str:
        return self._entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"RoutingContext({self._entries!r})"

    def with_entries(self, entries: Mapping[str, str]) -> RoutingContext:
        """A copy with `entries` added (an empty value removes its key). The `criticality`
        entry is only ever lowered (`herd.criticality`)."""
        if _criticality.KEY in entries:
            level = _criticality.lowered(self._entries, entries[_criticality.KEY])
            entries = {**entries, _criticality.KEY: level}
        merged = {**self._entries, **entries}
        return RoutingContext({key: value for key, value in merged.items() if value})


def _check(entries: Mapping[str, str]) -> None:
    if len(entries) > MAX_ENTRIES:
        raise ConfigurationError(f"{len(entries)} routing entries; at most {MAX_ENTRIES}")
    for key, value in entries.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigurationError(f"bad routing key {str(key)[:40]!r}: [a-z][a-z0-9_.-]{{0,31}}")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise ConfigurationError(f"bad routing value for {key}: {str(value)[:40]!r}")


EMPTY = RoutingContext()
_current: contextvars.ContextVar[RoutingContext] = contextvars.ContextVar(
    "herd_routing", default=EMPTY
)


def parse(header: str) -> RoutingContext:
    """The routing context sent as `header`; `ValueError` (a `ConfigurationError`) when it is
    malformed."""
    if not header:
        return EMPTY
    if len(header) > MAX_LENGTH:
        raise ValueError(f"routing context of {len(header)} characters; at most {MAX_LENGTH}")
    entries: dict[str, str] = {}
    for pair in header.split(","):
        key, sep, value = pair.partition("=")
        if not sep or key in entries:
            raise ValueError(f"bad routing entry {pair[:40]!r}")
        entries[key] = value
    return RoutingContext(entries)


def current() -> RoutingContext:
    """The routing context in force here (empty when none was set)."""
    return _current.get()


def use(context: RoutingContext) -> contextvars.Token[RoutingContext]:
    """Put `context` in force until `reset` (the server, around a handler)."""
    return _current.set(context)


def reset(token: contextvars.Token[RoutingContext]) -> None:
    """Undo `use`."""
    _current.reset(token)


@contextmanager
def routing(**entries: str) -> Iterator[RoutingContext]:
    """Add routing entries for the calls made inside the block, and every hop below them.

    ```python
    with herd.routing(cohort="v002"):
        await movies.presentation(videos)  # and whatever movie calls, at every hop
    ```

    An empty value removes an entry. Raises `herd.ConfigurationError` for keys or values outside
    the routing alphabet.
    """
    context = _current.get().with_entries(entries)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def criticality(level: str | int) -> contextlib.AbstractContextManager[RoutingContext]:
    """Lower the criticality of the calls made inside the block, and of every hop below them.

    ```python
    with herd.criticality("best_effort"):  # a prefetch: shed first when anyone is overloaded
        await movies.presentation(upcoming)
    ```

    `level` is `critical`, `degraded`, `best_effort` or a number from 0 to 99 (higher matters
    more). It never raises the level in force: the block gets the lower of the two. Raises
    `herd.ConfigurationError` for anything else.
    """
    return routing(**{_criticality.KEY: str(_criticality.parse(level))})


def current_criticality() -> int:
    """The criticality in force here, 0 to 99 (`degraded`, 50, when none was set)."""
    return _criticality.of(_current.get())
