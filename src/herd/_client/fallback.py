"""Fallbacks, declared in the library layer: what to show when a dependency cannot answer."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from herd._client.metrics import metrics_of
from herd._model.errors import HerdError
from herd._model.outcome import is_caller_fault
from herd._trace import spans as _spans

T = TypeVar("T")


async def fallback(
    call: Awaitable[T],
    otherwise: T | Callable[[Exception], T | Awaitable[T]],
) -> T:
    """Await `call`; if its dependency is unavailable, late or broken, answer `otherwise`.

    `otherwise` is a static value (an empty row, default content) or a function of the error
    (for example one that reads a stale cache). Circuit-open and bulkhead-full calls fail at once,
    so the fallback runs without waiting. The caller's own faults (bad request, forbidden, too
    large, unknown method) and declared service errors are answers, not failures: they reach the
    caller. Outcomes are counted in the dependency's metrics.
    """
    try:
        return await call
    except HerdError as exc:
        if is_caller_fault(exc):
            raise
        counts = metrics_of(exc)
        with _spans.fallback(exc):
            if not callable(otherwise):
                if counts is not None:
                    counts.count("fallback_success")
                return otherwise
            try:
                value = otherwise(exc)
                if inspect.isawaitable(value):
                    value = await value
            except Exception:
                if counts is not None:
                    counts.count("fallback_failure")
                raise
        if counts is not None:
            counts.count("fallback_success")
        return cast(T, value)
