"""Fallbacks, declared in the library layer: what to show when a dependency cannot answer."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from herd._client.metrics import CLIENT_METRICS
from herd._model.errors import DeadlineExceeded, RemoteError, Unavailable

T = TypeVar("T")

#: The failures a fallback covers: the dependency could not answer. Declared service errors and
#: bad requests are answers, and reach the caller.
FALLBACK_ERRORS = (Unavailable, DeadlineExceeded, RemoteError)


async def fallback(
    call: Awaitable[T],
    otherwise: T | Callable[[Exception], T | Awaitable[T]],
) -> T:
    """Await `call`; if its dependency is unavailable, late or broken, answer `otherwise`.

    `otherwise` is a static value (an empty row, default content) or a function of the error
    (for example one that reads a stale cache). Circuit-open and bulkhead-full calls fail at once,
    so the fallback runs without waiting. Outcomes are counted in the dependency's metrics.
    """
    try:
        return await call
    except FALLBACK_ERRORS as exc:
        if isinstance(exc, RemoteError) and exc.kind in {"bad_request", "unknown_method"}:
            raise
        metrics = CLIENT_METRICS.of(exc.service or "unknown")
        if not callable(otherwise):
            metrics.count("fallback_success")
            return otherwise
        try:
            value = otherwise(exc)
            if inspect.isawaitable(value):
                value = await value
        except Exception:
            metrics.count("fallback_failure")
            raise
        metrics.count("fallback_success")
        return cast(T, value)
