"""Deadlines: an absolute time by which an answer is needed, carried in a context variable.

The deadline flows through `await` and into tasks because it lives in a `ContextVar`; every outgoing
call sends what is left of it, and the server runs its handler under that remainder, so the budget
telescopes through every hop.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from herd._errors import ConfigurationError

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "herd_deadline", default=None
)


def current() -> float | None:
    """The absolute deadline (`time.monotonic()` seconds) in force here, or None."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the deadline in force here (may be negative), or None without one."""
    at = _deadline.get()
    if at is None:
        return None
    return at - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Run the block under a deadline `seconds` from now; yields the absolute deadline.

    A deadline can only shrink: inside an outer deadline, the earlier of the two wins, so a
    library cannot give itself more time than its caller has.
    """
    if seconds != seconds or seconds < 0:
        raise ConfigurationError(
            f"deadline must be a non-negative number of seconds, not {seconds}"
        )
    at = time.monotonic() + seconds
    outer = _deadline.get()
    if outer is not None and outer < at:
        at = outer
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def _at(absolute: float) -> Iterator[None]:
    """Install an absolute deadline (used by the server for an incoming request)."""
    token = _deadline.set(absolute)
    try:
        yield
    finally:
        _deadline.reset(token)
